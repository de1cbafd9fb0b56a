"""Toys per second for a whole 1D calibration (resampled toys, all cores).

Runs ``nplearn.nplm_test`` on the 1D exponential benchmark (N_R = 2e5 reference
events as the pool, N(R) = 2000, sigma = 0.3, lambda = 1e-10) with 1000 toys,
per-fit centres (the published procedure) and shared centres, and reports the
wall-clock toys per second including worker start-up.

    python benchmarks/many_toys.py --toys 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from nplearn import nplm_test
from nplearn.benchmarks import Exp1D

from _common import save


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--toys", type=int, default=1000)
    p.add_argument("--centers", default="3000,1000")
    p.add_argument("--modes", default="per-fit,shared")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    ref = Exp1D.sample_reference_events(rng, 200_000)
    data = Exp1D("none").sample_data(rng)
    rows = []
    for M in (int(c) for c in a.centers.split(",")):
        for mode in a.modes.split(","):
            t0 = time.perf_counter()
            res = nplm_test(ref, data, n_toys=a.toys, expected=2000.0, sigma=0.3, n_centers=M,
                            lam=1e-10, standardize=False, centers=mode, workers=a.workers,
                            device=a.device, seed=1)
            wall = time.perf_counter() - t0
            rows.append({"M": M, "mode": mode, "toys": a.toys, "wall_s": wall,
                         "toys_per_s": a.toys / res.timings["toys"],
                         "toys_per_s_incl_startup": a.toys / wall,
                         "median_toy_s": res.timings["per_toy_median"],
                         "workers": res.provenance["workers"], "chi2_dof": res.chi2_dof,
                         "n_failed": res.n_failed_toys,
                         "n_not_converged": sum(not t.converged for t in res.toys)})
            print(rows[-1], flush=True)
            # saved after every row: a run stopped early keeps what it measured
            save(f"many_toys_{a.device.replace(':', '')}", {"device": a.device, "rows": rows})


if __name__ == "__main__":
    main()
