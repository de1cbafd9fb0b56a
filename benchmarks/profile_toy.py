"""Where a toy's time goes: the solver's phases, measured with cProfile.

Runs toys of the 1D benchmark (paper settings) and, optionally, of the 5D
benchmark, under cProfile, and groups the time by phase: centre draw and
pivoted Cholesky, kernel features, Hessian (direct solve), Hessian-vector
products and preconditioner (PCG), loss evaluations, other.

    python benchmarks/profile_toy.py --toys 10 --five-d
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

import numpy as np
import torch

from nplearn import NPLMConfig, sigma_from_percentile
from nplearn.benchmarks import Exp1D
from nplearn.benchmarks.gaussmix import GaussianMixture
from nplearn.toys import ToyEngine

from _common import save

# Top-level functions of each phase (cumulative times; none is nested in another).
PHASES = {
    "toy sampling": ("sample",),
    "pivoted Cholesky (centres)": ("pivoted_cholesky",),
    "kernel features": ("features",),
    "Hessian (direct solve)": ("gram",),
    "PCG (Hessian-vector products)": ("_pcg",),
    "preconditioner": ("_build_preconditioner",),
    "gradient / f products": ("rmv", "mv"),
    "loss and derivatives": ("value", "derivatives"),
}


def profile(engine: ToyEngine, toys: int) -> dict:
    engine.run(10_000)  # warm-up (imports, allocator)
    pr = cProfile.Profile()
    pr.enable()
    for i in range(toys):
        engine.run(i)
    pr.disable()
    st = pstats.Stats(pr)
    total = 0.0
    by = dict.fromkeys(PHASES, 0.0)
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in st.stats.items():
        if func == "run" and file.endswith("toys.py"):
            total += ct
    for phase, names in PHASES.items():
        for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in st.stats.items():
            if "nplearn" in file and func in names:
                by[phase] += ct
    per_toy = {k: v / toys for k, v in by.items()}
    per_toy["total"] = total / toys
    return per_toy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--toys", type=int, default=10)
    p.add_argument("--five-d", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    out = {}
    cfg = NPLMConfig(sigma=0.3, n_centers=3000, lam=1e-10, standardize=False)
    params = {**cfg.learner_params(), "sigma": 0.3, "n_centers": 3000}
    out["1d_paper"] = profile(ToyEngine(params, 2000.0, 0, generator=Exp1D("none")), a.toys)
    print("1d", out["1d_paper"], flush=True)
    if a.five_d:
        torch.set_num_threads(2)
        g = GaussianMixture(d=5)
        s = sigma_from_percentile(g.sample(np.random.default_rng(1), 100_000), 90.0,
                                  rng=np.random.default_rng(2))
        params5 = {**cfg.learner_params(), "lam": 1e-6, "rank_tol": None, "sigma": s,
                   "n_centers": 20_000}
        out["5d_M20000"] = profile(ToyEngine(params5, g.expected, 0, generator=g), 1)
        print("5d", out["5d_M20000"], flush=True)
    save("profile_toy", out)


if __name__ == "__main__":
    main()
