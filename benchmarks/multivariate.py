"""Time per toy on the synthetic multivariate benchmarks (5D and 20D).

Sizes of the kernel-NPLM paper's DIMUON (5D: N_R = 1e5, N(R) = 2e4, M = 2e4) and
HIGGS (21D, here 20D: N_R = 5e5, N(R) = 1e5, M = 1e4) problems, lambda = 1e-6,
sigma from the 90th-percentile rule, on a correlated Gaussian mixture reference
(``nplearn.benchmarks.gaussmix``). Each configuration runs null toys: with
``per-fit`` centres every toy draws a fresh reference and data set; with
``shared`` centres toys are resampled from one reference and reuse its basis
and kernel features (the first toy in a process pays for building them, and
its time is reported separately).

    python benchmarks/multivariate.py --case 5d --toys 3
    python benchmarks/multivariate.py --case 20d --toys 1 --device cuda
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nplearn import NPLMConfig, default_n_centers, sigma_from_percentile
from nplearn.benchmarks.gaussmix import GaussianMixture
from nplearn.toys import ToyEngine

from _common import gpu_peak_mib, peak_rss_mib, reset_gpu_peak, save, warm_up

CASES = {
    "5d": {"d": 5, "n_ref": 100_000, "expected": 20_000.0, "centers": [20_000, None]},
    "20d": {"d": 20, "n_ref": 500_000, "expected": 100_000.0, "centers": [10_000]},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", choices=sorted(CASES), default="5d")
    p.add_argument("--toys", type=int, default=3)
    p.add_argument("--modes", default="per-fit,shared")
    p.add_argument("--centers", default=None,
                   help="comma-separated M values (default: the paper's and our rule)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float64")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--memory-budget", type=float, default=None,
                   help="GiB allowed for cached kernel features (default: nplearn's)")
    p.add_argument("--inner", default=None, choices=["auto", "direct", "cg"],
                   help="inner Newton solver (default: nplearn's rule)")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    case = CASES[a.case]
    gen = GaussianMixture(d=case["d"], n_ref=case["n_ref"], expected=case["expected"])
    ref0 = gen.sample(np.random.default_rng(1), case["n_ref"])
    sigma = sigma_from_percentile(ref0, 90.0, rng=np.random.default_rng(2))
    n = case["n_ref"] + int(case["expected"])
    centers = ([int(c) for c in a.centers.split(",")] if a.centers else
               [c if c is not None else default_n_centers(n) for c in case["centers"]])
    warm_up(a.device)
    rows = []
    for M in centers:
        for mode in a.modes.split(","):
            reset_gpu_peak(a.device)  # each row's own peak
            budget = None if a.memory_budget is None else int(a.memory_budget * 2**30)
            cfg = NPLMConfig(sigma=sigma, n_centers=M, lam=1e-6, device=a.device,
                             dtype=a.dtype, standardize=False, memory_budget=budget)
            params = {**cfg.learner_params(), "sigma": sigma, "n_centers": M}
            if a.inner:
                params["inner"] = a.inner
            if mode == "shared":
                engine = ToyEngine(params, gen.expected, seed=0, pool=ref0, shared_centers=True)
                t0 = time.perf_counter()
                engine.shared_state()
                if a.device.startswith("cuda"):
                    torch.cuda.synchronize(a.device)
                build_s = time.perf_counter() - t0
            else:
                engine = ToyEngine(params, gen.expected, seed=0, generator=gen)
                build_s = 0.0
            results = [engine.run(i) for i in range(a.toys)]
            row = {"M": M, "mode": mode, "sigma": sigma, "toys": a.toys,
                   "shared_build_s": build_s,
                   "median_toy_s": float(np.median([r.time for r in results])),
                   "toy_s": [r.time for r in results],
                   "rank": [r.rank for r in results], "newton": [r.n_iter for r in results],
                   "converged": [r.converged for r in results], "t": [r.t for r in results],
                   "peak_rss_mib": peak_rss_mib(),
                   "gpu_peak_mib": gpu_peak_mib(a.device), "gpu_peak_per_row": True}
            rows.append(row)
            print(row, flush=True)
            # saved after every row: a run stopped early keeps what it measured
            save(f"multivariate_{a.case}_{a.device.replace(':', '')}{a.tag}",
                 {"case": a.case, **{k: v for k, v in case.items() if k != "centers"},
                  "device": a.device, "dtype": a.dtype, "threads": torch.get_num_threads(),
                  "memory_budget_gib": a.memory_budget, "inner": a.inner or "auto",
                  "rows": rows})


if __name__ == "__main__":
    main()
