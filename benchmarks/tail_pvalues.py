"""min-p with chi-square tails for the local p-values: size and power on stored studies.

An alternative we tried for the Z >= 3 powers, not adopted (BENCHMARKS.md, "Power with
several kernel widths"). With ``n`` null toys a rank local p-value cannot go below
``1 / (n + 1)``; near Z = 3 min-p then decides between data sets that are all "beyond
every toy" at some width by a tie-break (the default min-p orders them by the
standardised t). Here each member of the pool (the ``n`` toys and the data set) gets,
at each width, its rank p-value ``(1 + #{others >= t}) / (n + 1)`` up to the ``K``-th
largest member and, from there on,

    p(t) = K / (n + 1) * S(t) / S(t_(K)),

with ``S`` the survival function of a chi-square whose degrees of freedom are fitted
to the null toys (KS, as for the single-width extrapolation). Per width the map is
non-increasing in ``t``, a step function in the bulk that joins the chi-square tail
continuously at ``t_(K)``. The combined statistic ``max_k -log p_k`` is calibrated on
the toys by rank like the default min-p, but every tie counts against the data set
(no tie-break; conservative). The fitted dof depends on the toys only, not on the data
set: exact exchangeability would refit on the pool; the held-out size below checks
that this does not matter. Each held-out null toy is tested against ``blocks - 1``
calibration blocks, so the held-out rejections are not independent.

For each stored study: the held-out false-positive rate (blocks of ``--n-cal`` toys
calibrate in turn, the others are held-out null data sets, as in ``size_check.py``)
and the power on the stored signal toys calibrated on all null toys, for the default
min-p (``K = 0`` in the output) and for each ``K``.

    python benchmarks/tail_pvalues.py results/power_exp1d8_6w_null3000.json \
        results/power_gauss2d_default_seed2_null3000.json --k 5,10,20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

from nplearn.multitest import combined_pvalues
from nplearn.stats import fit_chi2_dof

from _common import save

NOMINAL = {"2": float(stats.norm.sf(2.0)), "3": float(stats.norm.sf(3.0))}


def pool_neglogp(v: np.ndarray, K: int, dof: float) -> np.ndarray:
    """``-log p`` of every member of a pool (values ``v`` at one width)."""
    n1 = v.size
    srt = np.sort(v)
    out = -np.log((n1 - np.searchsorted(srt, v, side="left")) / n1)
    tK = srt[n1 - K]
    tail = v >= tK
    out[tail] = -(np.log(K / n1) + stats.chi2.logsf(v[tail], dof)
                  - stats.chi2.logsf(tK, dof))
    return out


def tail_min_p(X: np.ndarray, T: np.ndarray, K: int) -> np.ndarray:
    """Toy-calibrated p-value of min-p with chi-square tails for each row of ``X``."""
    n, k = T.shape
    if not 1 <= K <= n + 1:
        raise ValueError(f"K = {K} must lie in [1, n + 1] = [1, {n + 1}]")
    dofs = [fit_chi2_dof(T[:, j])[0] for j in range(k)]
    out = np.empty(X.shape[0])
    for b in range(X.shape[0]):
        S = np.column_stack([pool_neglogp(np.r_[T[:, j], X[b, j]], K, dofs[j])
                             for j in range(k)])
        m = S.max(1)
        out[b] = (1 + np.count_nonzero(m[:-1] >= m[-1])) / (n + 1)
    return out


def pvalues(K: int, X: np.ndarray, T: np.ndarray) -> np.ndarray:
    return combined_pvalues(X, T, "min-p")[1] if K == 0 else tail_min_p(X, T, K)


def study(path: Path, ks: list[int], n_cal: int) -> dict:
    d = json.loads(path.read_text())
    T_all = np.asarray(d["null"]["t"], dtype=np.float64)
    n_all = T_all.shape[0]
    blocks = n_all // n_cal
    res = {"sigmas": d["sigmas"], "n_null": n_all, "blocks": blocks, "by_k": {}}
    for K in [0, *ks]:
        rej = dict.fromkeys(NOMINAL, 0)
        n_tested = 0
        for b in range(blocks):
            cal = T_all[b * n_cal:(b + 1) * n_cal]
            held = T_all[np.r_[0:b * n_cal, (b + 1) * n_cal:n_all]]
            p = pvalues(K, held, cal)
            n_tested += p.size
            for z, a in NOMINAL.items():
                rej[z] += int(np.count_nonzero(p <= a))
        power = {}
        for sig, e in d["signals"].items():
            p = pvalues(K, np.asarray(e["t"], dtype=np.float64), T_all)
            power[sig] = {z: float(np.mean(p <= a)) for z, a in NOMINAL.items()}
        size = {z: rej[z] / n_tested for z in NOMINAL} if n_tested else None
        res["by_k"][str(K)] = {"size": size,
                               "rejected": rej, "n_tested": n_tested, "power": power}
        print(path.name, "K =", K, {z: f"{rej[z]}/{n_tested}" for z in NOMINAL},
              {s: " / ".join(f"{v:.3f}" for v in w.values()) for s, w in power.items()},
              flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--k", default="5,10,20", help="tail anchors K (comma-separated)")
    p.add_argument("--n-cal", type=int, default=1000)
    a = p.parse_args()
    ks = [int(x) for x in a.k.split(",")]
    out = {"k": ks, "n_cal": a.n_cal,
           "studies": {f.name: study(f, ks, a.n_cal) for f in a.files}}
    save("tail_pvalues", out)


if __name__ == "__main__":
    main()
