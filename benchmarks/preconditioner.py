"""PCG preconditioner of the converged schedule: weighted subsample against centres.

For the same toys (same samples, same candidate centres, one kernel width) the script
fits every toy twice with the converged schedule and PCG: once with Falkon's
preconditioner (the Hessian estimated on the ``M`` candidate centres, which the
one-step schedule keeps) and once with the Hessian estimated on a weight-proportional
subsample of the events (the default since this script was added). It reports the
median fit time, the CG iterations and Newton steps per fit, and the largest
difference of ``t`` between the two (the optimum does not depend on the
preconditioner: the difference is the convergence tolerance).

    python benchmarks/preconditioner.py --benchmark exp1d8 --sigma 0.01 --centers 1000
    python benchmarks/preconditioner.py --benchmark gauss5d --sigma 2.98 --centers 2000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nplearn import KernelLogisticRegression
from nplearn.benchmarks.suite import get_benchmark
from nplearn.learners import kernel as kernel_mod
from nplearn.nplm import nplm_fit
from nplearn.power import BenchmarkToy
from nplearn.toys import ToyEngine, toy_seed

from _common import save, warm_up


def fit(eng: ToyEngine, sigma: float, index: int, precond: str) -> dict:
    """Toy ``index`` of ``eng`` (the sample and centres its ``run`` would use), fitted
    with ``precond`` as the converged schedule's preconditioner."""
    s_sample, s_fit, _ = toy_seed(eng.seed, index, eng.stream).spawn(3)
    ref, data, w = eng.sample(np.random.default_rng(s_sample))
    old = kernel_mod.CONVERGED_PRECONDITIONER
    kernel_mod.CONVERGED_PRECONDITIONER = precond
    try:
        t0 = time.perf_counter()
        t, _, info, _ = nplm_fit(ref, data, w, KernelLogisticRegression(
            **eng.width_params(sigma)), s_fit, None)
        wall = time.perf_counter() - t0
    finally:
        kernel_mod.CONVERGED_PRECONDITIONER = old
    if not info.converged:
        raise RuntimeError(f"toy {index} ({precond}) did not converge: {info.message}")
    return {"t": float(t), "time_s": wall, "time_setup_s": info.time_setup,
            "n_cg": info.n_cg, "newton": info.n_iter, "rank": info.rank,
            "preconditioner": info.preconditioner}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", default="exp1d8")
    p.add_argument("--sigma", type=float, required=True)
    p.add_argument("--centers", type=int, default=1000)
    p.add_argument("--lam", type=float, default=1e-6)
    p.add_argument("--toys", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tag", default="")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    warm_up(a.device)
    bench = get_benchmark(a.benchmark)
    params = {"sigma": a.sigma, "n_centers": a.centers, "lam": a.lam, "inner": "cg",
              "schedule": "converged", "device": a.device}
    eng = ToyEngine(params, float(bench.expected), a.seed,
                    generator=BenchmarkToy(bench, "none"))
    runs = {pc: [] for pc in kernel_mod.PRECONDITIONERS}
    for i in range(a.toys):
        for pc in kernel_mod.PRECONDITIONERS:
            runs[pc].append(fit(eng, a.sigma, i, pc))
            print(i, pc, runs[pc][-1], flush=True)
    rows = [{"preconditioner": pc,
             "median_s": float(np.median([r["time_s"] for r in rs])),
             "median_setup_s": float(np.median([r["time_setup_s"] for r in rs])),
             "median_cg": float(np.median([r["n_cg"] for r in rs])),
             "median_newton": float(np.median([r["newton"] for r in rs])),
             "fits": rs} for pc, rs in runs.items()]
    dt = [abs(x["t"] - y["t"]) for x, y in zip(runs["centres"], runs["sample"], strict=True)]
    out = {"benchmark": a.benchmark, "n_ref": bench.n_ref, "expected": bench.expected,
           "sigma": a.sigma, "n_centers": a.centers, "lam": a.lam, "toys": a.toys,
           "threads": a.threads, "device": a.device,
           "median_rank": float(np.median([r["rank"] for r in runs["sample"]])),
           "max_abs_dt": float(max(dt)),
           "median_t": float(np.median([r["t"] for r in runs["sample"]])), "rows": rows}
    path = save(f"preconditioner_{a.benchmark}_s{a.sigma:g}_M{a.centers}{a.tag}", out)
    for r in rows:
        print({k: v for k, v in r.items() if k != "fits"})
    print("max |t sample - t centres|", out["max_abs_dt"], "->", path)


if __name__ == "__main__":
    main()
