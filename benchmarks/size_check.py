"""Actual false-positive rate of min-p built two ways, from a study's null toys.

The null toys of a power study are cut into blocks of ``--n-cal`` toys; each block
in turn calibrates, and every toy outside it is a held-out null data set tested
against it with

* ``pooled``: :func:`nplearn.multitest.combined_pvalues` (data set and toys ranked
  as one exchangeable pool; ties at the best rank ordered by the standardised t);
* ``leave-one-out``: our reading of the construction REFERENCE.md describes for the
  published multiple-testing study ("local p-values per width (leave-one-out on the
  null toys)"): the data set's local p-value is its empirical p-value
  ``(1 + #{j: t_j >= t}) / (n + 1)`` (REFERENCE.md §1), each toy's the same formula
  on the other ``n - 1`` toys, ``(1 + #{j != i: t_j >= t_i}) / n``; min-p is
  calibrated on the toys' minima, ties counted against the data set;
* ``leave-one-out, data on the toys' grid``: the same, but the data set's local
  p-value is ``(1 + #{j: t_j >= t}) / n`` (a variant we also checked).

A valid test rejects a held-out null set at most as often as the nominal rate
(1.35e-3 at Z >= 3). Held-out toys are reused across rotations (each is tested
``blocks - 1`` times, against different calibration blocks), so the rates' 68%
Clopper-Pearson intervals are computed on the number of distinct toys, which
overstates the precision less; the number of distinct toys ever rejected is shown.

Then the power on the study's signal toys with the first block as calibration: each
construction at the nominal thresholds, and the pooled min-p at the largest threshold
where its own held-out false-positive rate does not exceed the leave-one-out
construction's rate at Z >= 2 and 3 (the comparison at equal or smaller size).

    python benchmarks/size_check.py benchmarks/results/power_exp1d8_6w_null3000.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from nplearn.multitest import combined_pvalues
from nplearn.power import clopper_pearson

from _common import save

NOMINAL = {"2": float(stats.norm.sf(2.0)), "3": float(stats.norm.sf(3.0))}
METHODS = ("pooled", "leave-one-out", "leave-one-out, data on the toys' grid")


def loo_min_p(X: np.ndarray, T: np.ndarray, data_grid: int = 1) -> np.ndarray:
    """Combined min-p of data sets ``X`` against toys ``T``, leave-one-out toy ranks.

    ``data_grid = 1``: the data set's local p-values are ``(1 + #) / (n + 1)``;
    ``0``: ``(1 + #) / n``, the toys' grid.
    """
    n = T.shape[0]
    srt = np.sort(T, axis=0)
    toy_p = np.empty_like(T)
    data_p = np.empty_like(X)
    for k in range(T.shape[1]):
        toy_p[:, k] = (n - np.searchsorted(srt[:, k], T[:, k], side="left")) / n
        data_p[:, k] = ((1 + n - np.searchsorted(srt[:, k], X[:, k], side="left"))
                        / (n + data_grid))
    m_toys = np.sort(toy_p.min(1))
    n_le = np.searchsorted(m_toys, data_p.min(1), side="right")  # toys at least as extreme
    return (1.0 + n_le) / (1.0 + n)


def pvalues(method: str, X: np.ndarray, T: np.ndarray) -> np.ndarray:
    if method == "pooled":
        return combined_pvalues(X, T, "min-p")[1]
    return loo_min_p(X, T, data_grid=1 if method == "leave-one-out" else 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--n-cal", type=int, default=1000)
    a = p.parse_args()
    d = json.loads(a.file.read_text())
    T_all = np.asarray(d["null"]["t"], dtype=np.float64)
    n_all = T_all.shape[0]
    blocks = n_all // a.n_cal
    if blocks < 2:
        sys.exit(f"{n_all} null toys: fewer than two blocks of {a.n_cal}")
    null_p: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    held_ids: list[np.ndarray] = []
    for b in range(blocks):
        cal = T_all[b * a.n_cal:(b + 1) * a.n_cal]
        ids = np.r_[0:b * a.n_cal, (b + 1) * a.n_cal:n_all]
        held_ids.append(ids)
        for m in METHODS:
            null_p[m].append(pvalues(m, T_all[ids], cal))
    ids_all = np.concatenate(held_ids)
    n_tested = ids_all.size
    size: dict[str, dict] = {}
    for m in METHODS:
        pn = np.concatenate(null_p[m])
        size[m] = {}
        for z, a_z in NOMINAL.items():
            rej = pn <= a_z
            k = int(np.count_nonzero(rej))
            lo, hi = clopper_pearson(round(k * n_all / n_tested), n_all)
            size[m][z] = {"rate": k / n_tested, "k": k, "interval68": [lo, hi],
                          "distinct_toys_rejected": int(np.unique(ids_all[rej]).size),
                          "nominal": a_z}
    # the largest pooled threshold whose held-out rate does not exceed the leave-one-out
    # construction's (the p-values are discrete: equality is rarely possible)
    pooled_null = np.sort(np.concatenate(null_p["pooled"]))
    levels, counts = np.unique(pooled_null, return_counts=True)
    cum = np.cumsum(counts)
    thr = {}
    for z in NOMINAL:
        k = size["leave-one-out"][z]["k"]
        fit = levels[cum <= k]
        thr[z] = float(fit[-1]) if fit.size else 0.0
        size["pooled"][z]["at_loo_size"] = {
            "threshold": thr[z],
            "rate": float(np.count_nonzero(pooled_null <= thr[z]) / n_tested)}
    cal = T_all[:a.n_cal]
    power: dict[str, dict] = {}
    for sig, e in d["signals"].items():
        X = np.asarray(e["t"], dtype=np.float64)
        ps = {m: pvalues(m, X, cal) for m in METHODS}
        power[sig] = {m: {z: float(np.mean(ps[m] <= a_z)) for z, a_z in NOMINAL.items()}
                      for m in METHODS}
        power[sig]["pooled at the leave-one-out size"] = {
            z: float(np.mean(ps["pooled"] <= thr[z])) for z in NOMINAL}
    out = {"source": a.file.name, "benchmark": d["benchmark"], "n_widths": T_all.shape[1],
           "n_null": n_all, "n_cal": a.n_cal, "blocks": blocks, "n_tested": n_tested,
           "size": size, "power": power}
    save(f"size_check_{a.file.stem}", out)
    for m, v in size.items():
        print(m, {z: f"{s['rate']:.5f} ({s['k']}/{n_tested}, {s['distinct_toys_rejected']} "
                     f"toys; nominal {s['nominal']:.5f})" for z, s in v.items()})
    for sig, v in power.items():
        print(sig, {m: " / ".join(f"{x:.3f}" for x in w.values()) for m, w in v.items()})


if __name__ == "__main__":
    main()
