"""Is the null t heavier-tailed than a chi-square? Empirical against fitted tails.

For each width of a stored power study: the chi-square whose degrees of freedom fit
the null toys (KS, as everywhere in nplearn), the dispersion ``var(t) / (2 mean(t))``
(1 for a chi-square), the number of null toys beyond the fitted chi-square's Z = 2 and
Z = 3 quantiles against the number a chi-square would put there, and the Z >= 3 power of
each signal with the empirical threshold (the ``ceil``-th largest null toy, as the
study's tables) and with the fitted chi-square's quantile. A null tail heavier than the
chi-square would put more toys beyond the quantile and lower the empirical powers
below the chi-square ones.

    python benchmarks/null_tail.py results/power_exp1d8_6w_null6000.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

from nplearn.stats import fit_chi2_dof

from _common import save

Z_LEVELS = (2.0, 3.0)


def empirical_threshold(t: np.ndarray, z: float) -> float:
    """Smallest t whose rank p-value ``(1 + #{null >= t}) / (n + 1)`` is at most
    the one-sided p of ``z``: beyond all but ``k - 1`` of the null toys."""
    n = t.size
    k = math.floor(stats.norm.sf(z) * (n + 1))  # p <= k / (n + 1)
    return float(np.sort(t)[n - k])  # a data set must lie above the k-th largest toy


def study(path: Path) -> dict:
    d = json.loads(path.read_text())
    T0 = np.asarray(d["null"]["t"], dtype=float)
    n = T0.shape[0]
    widths = []
    for j, sigma in enumerate(d["sigmas"]):
        t = T0[:, j]
        dof = float(fit_chi2_dof(t)[0])
        row: dict = {"sigma": sigma, "dof": dof, "mean": float(t.mean()),
                     "dispersion": float(t.var(ddof=1) / (2 * t.mean())), "levels": {}}
        for z in Z_LEVELS:
            p = float(stats.norm.sf(z))
            q_chi2 = float(stats.chi2.isf(p, dof))
            q_emp = empirical_threshold(t, z)
            beyond = int(np.count_nonzero(t >= q_chi2))
            lo, hi = stats.poisson.interval(0.68, n * p)
            power = {}
            for name, sig in d["signals"].items():
                ts = np.asarray(sig["t"], dtype=float)[:, j]
                power[name] = {"empirical": float(np.mean(ts > q_emp)),
                               "chi2": float(np.mean(ts >= q_chi2))}
            row["levels"][f"{z:g}"] = {
                "threshold_empirical": q_emp, "threshold_chi2": q_chi2,
                "null_beyond_chi2": beyond, "expected_beyond": n * p,
                "expected_beyond_68": [float(lo), float(hi)], "power": power}
        widths.append(row)
    return {"study": path.name, "n_null": n, "signals": list(d["signals"]), "widths": widths}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("studies", nargs="+", type=Path)
    a = p.parse_args()
    for path in a.studies:
        out = study(path)
        dest = save(f"null_tail_{path.stem}", out)
        for w in out["widths"]:
            z3 = w["levels"]["3"]
            print(f"sigma {w['sigma']:g}: dof {w['dof']:.1f}, dispersion {w['dispersion']:.2f}, "
                  f"beyond chi2 Z=3: {z3['null_beyond_chi2']} (chi2: {z3['expected_beyond']:.1f})")
        print(f"-> {dest}")


if __name__ == "__main__":
    main()
