"""Time per toy on the 1D benchmark, and proof that the fast solver's t is exact.

Part 1 (speed): median time per toy (fresh reference and data, fit + statistic)
at the paper's settings (N_R = 2e5, N(R) = 2000, sigma = 0.3, lambda = 1e-10)
for M = 3000 and M by the default rule, both schedules, one torch thread.

Part 2 (exactness): on a few of those toys, the objective J and t from nplearn
against the independent dense float64 Newton solver (``nplearn.learners.reference``,
eigenbasis truncated at 1e-14 and 1e-16) on the very same candidate centres.

    python benchmarks/speed_1d.py --toys 30 --check-toys 5
    python benchmarks/speed_1d.py --toys 10 --check-toys 1 --device cuda   # speed_1d_cuda.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nplearn import KernelLogisticRegression, default_n_centers, nplm_statistic
from nplearn.benchmarks import Exp1D
from nplearn.learners.reference import dense_newton
from nplearn.toys import toy_seed

from _common import save, warm_up


def toy(i: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.random.SeedSequence]:
    s_sample, s_fit = toy_seed(seed, i).spawn(2)
    ref, data = Exp1D("none")(np.random.default_rng(s_sample))
    X = np.vstack([ref, data])
    y = np.r_[np.zeros(len(ref)), np.ones(len(data))]
    sw = np.r_[np.full(len(ref), 2000.0 / len(ref)), np.ones(len(data))]
    return X, y, sw, s_fit


def t_of(f: np.ndarray, y: np.ndarray, sw: np.ndarray) -> float:
    ref = y == 0
    return nplm_statistic(f[ref], f[~ref], sw[ref])[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--toys", type=int, default=30)
    p.add_argument("--check-toys", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (the dense check runs on CPU)")
    a = p.parse_args()
    name = "speed_1d" if a.device == "cpu" else f"speed_1d_{a.device.replace(':', '')}"
    torch.set_num_threads(a.threads)
    warm_up(a.device)
    rows = []
    m_rule = default_n_centers(202_000)
    for M in (3000, m_rule):
        for schedule in ("converged", "onestep"):
            times, ranks, iters, hess = [], [], [], []
            for i in range(a.toys):
                X, y, sw, s_fit = toy(i, a.seed)
                t0 = time.perf_counter()
                m = KernelLogisticRegression(sigma=0.3, n_centers=M, lam=1e-10,
                                             schedule=schedule, device=a.device,
                                             random_state=np.random.default_rng(s_fit))
                m.fit(X, y, sw)
                t_of(m.train_decision_, y, sw)
                times.append(time.perf_counter() - t0)
                ranks.append(m.rank_)
                iters.append(m.fit_info_.n_iter)
                hess.append(m.fit_info_.n_hessian)
            rows.append({"M": M, "schedule": schedule, "toys": a.toys,
                         "median_s": float(np.median(times)),
                         "p90_s": float(np.quantile(times, 0.9)),
                         "median_rank": float(np.median(ranks)),
                         "median_newton": float(np.median(iters)),
                         "median_hessians": float(np.median(hess))})
            print(rows[-1], flush=True)
            save(name, {"threads": a.threads, "device": a.device, "speed": rows})
    checks = []
    for i in range(a.check_toys):
        X, y, sw, s_fit = toy(i, a.seed)
        m = KernelLogisticRegression(sigma=0.3, n_centers=3000, lam=1e-10, device=a.device,
                                     random_state=np.random.default_rng(s_fit)).fit(X, y, sw)
        row = {"t_nplearn": t_of(m.train_decision_, y, sw), "J_nplearn": m.fit_info_.objective}
        for rel in (1e-14, 1e-16):  # eigen-truncation of the dense reference
            t0 = time.perf_counter()
            _, f_ref, J_ref = dense_newton(X, y, sw, X[m.candidate_indices_], 0.3, 1e-10,
                                           rel_eig=rel)
            row[f"t_dense_{rel:g}"] = t_of(f_ref, y, sw)
            row[f"J_dense_{rel:g}"] = J_ref
            row["dense_s"] = time.perf_counter() - t0
        checks.append(row)
        print(checks[-1], flush=True)
        save(name, {"threads": a.threads, "device": a.device, "speed": rows,
                    "exactness": checks})


if __name__ == "__main__":
    main()
