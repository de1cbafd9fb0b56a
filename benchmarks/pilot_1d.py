"""Pilots on the 1D suite: do other Nyström centres or a smaller λ raise a single width's power?

Two variants of the kernel fit, each compared with the published one (M = 1000
centres drawn uniformly from the training set, λ = 1e-6) on the same toys:

* ``centres``: residual-adaptive candidates. Half of the M candidates are drawn
  uniformly; the Nyström residual ``1 - |phi(x)|^2`` of every training event under
  that half is computed, and the other half is drawn with probability proportional
  to it (events far from every centre, e.g. in the exponential tail, are favoured).
* ``lam``: the same uniform centres with λ = 1e-10 (the penalty of the 1806.02350
  reproduction) against λ = 1e-6.

Toy ``i`` of a signal draws its reference and data from ``default_rng([11, i, s])``
(``s`` = 0 for the null, then tail, bulk, mid4, narrow4, wide4) and its centres from
``default_rng([11, i, 7])``, so every variant sees the same data and the same uniform
draw. Powers at Z >= 2 are empirical (400 null toys); Z >= 3 uses the KS-fitted χ²
of the null (``P(Zchi2>=3)``), for orientation only.

    python pilot_1d.py run --variant lam --signal none --toys 400 --sigma 0.3,0.7,2.3
    python pilot_1d.py run --variant lam --signal tail --toys 150 --sigma 0.3,0.7,2.3
    python pilot_1d.py table --variant lam

A pilot, not a power study: a few hundred toys, one seed, no combinations.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import stats

from nplearn.benchmarks.suite import get_benchmark
from nplearn.learners.kernel import KernelLogisticRegression, NystromBasis
from nplearn.stats import nplm_statistic

from _common import RESULTS, store_pilot

STREAMS = {"none": 0, "tail": 1, "bulk": 2, "mid4": 3, "narrow4": 4, "wide4": 5}
VARIANTS = {"centres": {"uniform": ("uniform", 1e-6), "adaptive": ("adaptive", 1e-6)},
            "lam": {"lam1e-6": ("uniform", 1e-6), "lam1e-10": ("uniform", 1e-10)}}
M = 1000
SEED = 11


def candidates(X: np.ndarray, sigma: float, rng: np.random.Generator, sampling: str,
               rank_tol: float) -> np.ndarray:
    """Indices of the M candidate centres (uniform, or half uniform half residual)."""
    n = len(X)
    if sampling == "uniform":
        return np.sort(rng.choice(n, size=M, replace=False))
    m2 = M // 2
    idx1 = rng.choice(n, size=M - m2, replace=False)
    b1 = NystromBasis.build(X, np.sort(idx1), sigma, rank_tol, torch.device("cpu"))
    Xt = torch.as_tensor(X, dtype=torch.float64)
    resid = np.empty(n)
    for s in range(0, n, 50000):
        K = torch.exp(-torch.cdist(Xt[s:s + 50000], b1.P) ** 2 / (2 * sigma**2))
        ph = torch.linalg.solve_triangular(b1.L_P, K.T, upper=False)
        resid[s:s + 50000] = (1 - (ph**2).sum(0)).clamp_min(0).numpy()
    resid[idx1] = 0
    k = min(m2, int((resid > 0).sum()))
    idx2 = rng.choice(n, size=k, replace=False, p=resid / resid.sum())
    return np.sort(np.concatenate([idx1, idx2]))


def fit_t(X, y, sw, sigma, sampling, lam, rng) -> tuple[float, int]:
    """t and the kept rank of one fit."""
    learner = KernelLogisticRegression(sigma=sigma, n_centers=M, lam=lam)
    idx = candidates(X, sigma, rng, sampling, learner.resolved_rank_tol())
    basis = NystromBasis.build(X, idx, sigma, learner.resolved_rank_tol(), torch.device("cpu"))
    learner._validate_params()
    learner._fit_basis(X, y, sw, basis)
    f = learner.train_decision_
    nr = int((y == 0).sum())
    t, _ = nplm_statistic(f[:nr], f[nr:], sw[:nr])
    return float(t), basis.rank


def run(variant: str, signal: str, n_toys: int, sigmas: list[float]) -> dict:
    bench = get_benchmark("exp1d8")
    arms = VARIANTS[variant]
    t = {a: {str(s): [] for s in sigmas} for a in arms}
    rank = {a: {str(s): [] for s in sigmas} for a in arms}
    t0 = time.time()
    for i in range(n_toys):
        rng = np.random.default_rng([SEED, i, STREAMS[signal]])
        ref = bench.sample_reference_events(rng, bench.n_ref)
        data = bench.sample_data(rng, signal)
        X = np.concatenate([ref, data])
        y = np.r_[np.zeros(len(ref), int), np.ones(len(data), int)]
        sw = np.r_[np.full(len(ref), bench.expected / len(ref)), np.ones(len(data))]
        for a, (sampling, lam) in arms.items():
            for s in sigmas:
                ti, r = fit_t(X, y, sw, s, sampling, lam, np.random.default_rng([SEED, i, 7]))
                t[a][str(s)].append(ti)
                rank[a][str(s)].append(r)
    return {"variant": variant, "signal": signal, "t": t, "rank": rank,
            "time_s": time.time() - t0}


def table(d: dict) -> str:
    null = d["none"]["t"]
    lines = ["| signal | arm | σ | P(Z ≥ 2) | median Z | null χ² dof | P(Zχ² ≥ 3) |",
             "|---|---|---|---|---|---|---|"]
    for sig, entry in d.items():
        if sig == "none":
            continue
        for arm, per in entry["t"].items():
            for s, t1 in per.items():
                t0, t1 = np.asarray(null[arm][s]), np.asarray(t1)
                p = (1 + (t0[None, :] >= t1[:, None]).sum(1)) / (1 + len(t0))
                z = stats.norm.isf(p)
                dof = stats.chi2.fit(t0, floc=0, fscale=1)[0]
                zc = stats.norm.isf(stats.chi2.sf(t1, dof))
                lines.append(f"| {sig} | {arm} | {s} | {np.mean(z >= 2):.3f} | "
                             f"{np.median(z):.2f} | {dof:.1f} | {np.mean(zc >= 3):.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("run", "table"))
    p.add_argument("--variant", choices=tuple(VARIANTS), required=True)
    p.add_argument("--signal", choices=tuple(STREAMS), default="none")
    p.add_argument("--toys", type=int, default=100)
    p.add_argument("--sigma", default="0.3,0.7,1.4")
    a = p.parse_args()
    torch.set_num_threads(1)
    res = (run(a.variant, a.signal, a.toys, [float(s) for s in a.sigma.split(",")])
           if a.action == "run" else None)
    store_pilot(RESULTS / f"pilot_1d_{a.variant}.json", a.signal, res, table)


if __name__ == "__main__":
    main()
