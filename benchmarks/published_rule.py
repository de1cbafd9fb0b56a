"""Our 1D study against the published powers: their power rule, and toy noise at Z >= 3.

The published multiple-testing powers (REFERENCE.md §4) come from the authors' code
(repository ``mletizia/multiple-testing-nplm``: ``tests.py`` and the stored output of
``powers.ipynb``; facts read from them, no code taken):

* a test rejects when its score is ``>=`` the null toys' empirical ``1 - alpha``
  quantile taken with numpy's ``method="higher"`` (``alpha = Phi(-Z)``). With N null
  toys that is the k-th largest toy, k = N - ceil((N - 1)(1 - alpha)): k = 6 at Z = 3
  for the published N = 4000 (size 6/4001 = 0.0015), k = 2 for N = 1000 (0.0020);
* a combination first turns each width's ``t`` into a local p-value: a null toy's is
  ``(1 + #{other toys with a strictly larger t}) / N`` (leave-one-out), a signal toy's
  ``(1 + #{toys with a strictly larger t}) / (N + 1)``; min-p scores ``-min_k p_k``,
  product-p ``-sum_k log p_k``, thresholded by the same quantile rule;
* the printed powers and their Clopper-Pearson errors give the toy counts: 4000 null
  toys (the null set's own rejection rates are 91/4000 and 6/4000), 2000 toys per
  signal, 4000 for narrow4.

This script (analysis of stored ``t``; nothing is refitted) reports

1. **the rule on our toys**: every test of the study thresholded by that rule, calibrated
   on the study's first 4000 null toys (``--rule-toys``; all of them if it has fewer),
   and the rule's size on held-out null toys when calibrated on blocks of N toys
   (``--n-cal-scan``);
2. **the size each published power implies**: the false-positive rate ``alpha*`` at which
   our own valid p-values (all null toys) reject the published fraction of our signal
   toys; 68% interval from the binomial errors of both studies' signal toys; left out
   where fewer than 10 of our toys would be rejected. "best single" takes, per signal,
   our width that needs the smallest ``alpha*`` (chosen after the fact, as the
   published column is);
3. **how likely toy noise makes the difference**: if both studies ran our test, the
   chance that the published power exceeds ours by at least the observed amount, with
   both studies' null thresholds (a threshold at the k-th largest of N toys has a true
   tail probability ~ Beta(k, N + 1 - k)) and both studies' signal-toy counts drawn at
   random (``chance_same_test``). For "best single" the published column is a maximum
   over six widths, which this does not model (it makes the chance larger). The
   published powers are used to three decimals.

    python benchmarks/published_rule.py benchmarks/results/power_exp1d8_6w_null3000.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from nplearn.benchmarks.suite import EXP1D8_PUBLISHED_POWER

from _common import save, study_pvalues

Z_LEVELS = (2.0, 3.0)
COMBOS = ("min-p", "product-p")
#: signal toys per published power, read from the authors' notebook output
PUBLISHED_TOYS = {"narrow4": 4000}
PUBLISHED_TOYS_DEFAULT = 2000
#: null toys of the published 1D set (its own rejection rates are 91/4000 and 6/4000)
PUBLISHED_NULL_TOYS = 4000
MIN_REJECTED = 10


def rule_rank(n: int, z: float) -> int:
    """k: the published rule's threshold is the k-th largest of ``n`` null toys."""
    return n - math.ceil((n - 1) * (1.0 - stats.norm.sf(z)))


def _threshold_draws(z: float, n_null: int, draws: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """True tail probabilities of our threshold and of the published one.

    A threshold at the k-th largest of N null toys has U ~ Beta(k, N + 1 - k). Ours is the
    valid p-value threshold at nominal size (k = floor(alpha (n + 1)) of ``n_null``), the
    published one the rule's (:func:`rule_rank` of 4000).
    """
    k_ours = math.floor(float(stats.norm.sf(z)) * (n_null + 1) + 1e-9)
    k_pub = rule_rank(PUBLISHED_NULL_TOYS, z)
    return (rng.beta(k_ours, n_null + 1 - k_ours, draws),
            rng.beta(k_pub, PUBLISHED_NULL_TOYS + 1 - k_pub, draws))


def _gap_draws(p_sig: np.ndarray, published_n: int, u_ours: np.ndarray,
               u_pub: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per draw, published power minus ours if both studies ran our test. The power at
    true size u is read from our signal toys' p-values, S(u) = mean(p <= u); each study
    counts Binomial(n, S(U)) of its signal toys."""
    srt = np.sort(p_sig)
    n = srt.size
    ours = rng.binomial(n, np.searchsorted(srt, u_ours, side="right") / n) / n
    pub = rng.binomial(published_n, np.searchsorted(srt, u_pub, side="right") / n)
    return pub / published_n - ours


def _n_greater(sorted_col: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``#{toys with t > x}`` for each entry of ``x``."""
    return sorted_col.size - np.searchsorted(sorted_col, x, side="right")


def local_p(T: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The published local p-values: leave-one-out for the toys ``T``, against all
    toys for the data sets ``X`` (strictly larger counts)."""
    n = T.shape[0]
    srt = np.sort(T, axis=0)
    pT, pX = np.empty_like(T), np.empty_like(X)
    for k in range(T.shape[1]):
        pT[:, k] = (1.0 + _n_greater(srt[:, k], T[:, k])) / n
        pX[:, k] = (1.0 + _n_greater(srt[:, k], X[:, k])) / (n + 1.0)
    return pT, pX


def score(p: np.ndarray, method: str) -> np.ndarray:
    """Larger is more anomalous."""
    if method == "min-p":
        return -p.min(axis=1)
    if method == "product-p":
        return -np.log(p).sum(axis=1)
    raise ValueError(method)


def rejects(T: np.ndarray, X: np.ndarray, test: str, sigmas: list[float], z: float
            ) -> np.ndarray:
    """Which rows of ``X`` the published rule rejects at ``z``, calibrated on ``T``."""
    if test.startswith("sigma="):
        k = sigmas.index(float(test.split("=", 1)[1]))
        null, s = T[:, k], X[:, k]
    else:
        pT, pX = local_p(T, X)
        null, s = score(pT, test), score(pX, test)
    q = np.quantile(null, 1.0 - stats.norm.sf(z), method="higher")
    return s >= q


def implied_alpha(p: np.ndarray, power: float, n_pub: int
                  ) -> tuple[float, float | None, float | None]:
    """``alpha*`` at which the fraction of ``p <= alpha*`` equals ``power``, with its
    68% interval (``None`` when fewer than :data:`MIN_REJECTED` toys are rejected)."""
    srt = np.sort(p)
    n = srt.size

    def at(frac: float) -> float:
        return float(srt[min(n, max(1, math.ceil(frac * n - 1e-9))) - 1])

    centre = at(power)
    if power * n < MIN_REJECTED:
        return centre, None, None
    err = math.sqrt(power * (1 - power) * (1.0 / n_pub + 1.0 / n))
    return centre, at(max(power - err, 1.0 / n)), at(min(power + err, 1.0))


def _blocks(T_all: np.ndarray, n_cal: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Calibration blocks of ``n_cal`` toys and, for each, the held-out toys."""
    blocks = T_all.shape[0] // n_cal
    if blocks < 2:
        sys.exit(f"{T_all.shape[0]} null toys: fewer than two blocks of {n_cal}")
    cal = [T_all[b * n_cal:(b + 1) * n_cal] for b in range(blocks)]
    held = [np.delete(T_all, np.s_[b * n_cal:(b + 1) * n_cal], axis=0)
            for b in range(blocks)]
    return cal, held


def rule_size(T_all: np.ndarray, n_cal: int, tests: list[str], sigmas: list[float]
              ) -> dict:
    """Rate at which the rule, calibrated on blocks of ``n_cal`` toys, rejects the
    held-out null toys."""
    cal, held = _blocks(T_all, n_cal)
    size: dict = {}
    for test in tests:
        size[test] = {}
        for z in Z_LEVELS:
            k = sum(int(np.count_nonzero(rejects(c, h, test, sigmas, z)))
                    for c, h in zip(cal, held, strict=True))
            n = sum(h.shape[0] for h in held)
            size[test][f"{z:g}"] = {"rate": k / n, "k": k, "n": n,
                                    "nominal": float(stats.norm.sf(z))}
    return size


def rule_table(d: dict, n_rule: int) -> dict:
    """Power of every test under the published rule, calibrated on the study's first
    ``n_rule`` null toys (all of them when it has fewer)."""
    T = np.asarray(d["null"]["t"], dtype=np.float64)[:n_rule]
    sigmas = [float(s) for s in d["sigmas"]]
    tests = [f"sigma={s:g}" for s in sigmas] + list(COMBOS)
    power: dict = {}
    for sig, e in d["signals"].items():
        X = np.asarray(e["t"], dtype=np.float64)
        power[sig] = {t: {f"{z:g}": float(np.mean(rejects(T, X, t, sigmas, z)))
                          for z in Z_LEVELS} for t in tests}
    return {"n_cal": int(T.shape[0]), "power": power}


def implied_table(d: dict, n_draws: int = 20000, seed: int = 0
                  ) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """``alpha*`` and the chance for every published power, and per published column
    the chance of the summed gap over the signals with an interval (the same draws of
    the thresholds for every signal, as in each study; see the module notes)."""
    singles = [f"sigma={float(s):g}" for s in d["sigmas"]]
    n_null = len(d["null"]["t"])
    rng = np.random.default_rng(seed)
    # one pair of thresholds per draw, shared by every signal (as in each study)
    draws = {f"{z:g}": _threshold_draws(z, n_null, n_draws, rng) for z in Z_LEVELS}
    gaps: dict[tuple[str, str], list[tuple[float, np.ndarray]]] = {}
    rows = []
    for sig, pub in EXP1D8_PUBLISHED_POWER.items():
        e = d["signals"][sig]
        pv = {t: study_pvalues(d, e, t) for t in singles + list(COMBOS)}
        n_pub = PUBLISHED_TOYS.get(sig, PUBLISHED_TOYS_DEFAULT)
        for col, powers in pub.items():
            for zi, z in enumerate(Z_LEVELS):
                if col == "best single":
                    test = min(singles, key=lambda t: implied_alpha(pv[t], powers[zi],
                                                                    n_pub)[0])
                elif col == "90th pct":
                    test = "sigma=2.3"
                else:
                    test = col
                if test not in pv:
                    sys.exit(f"no test {test!r} in the study")
                alpha, lo, hi = implied_alpha(pv[test], powers[zi], n_pub)
                nominal = float(stats.norm.sf(z))
                gap = powers[zi] - float(np.mean(pv[test] <= nominal))
                sim = _gap_draws(pv[test], n_pub, *draws[f"{z:g}"], rng)
                if lo is not None:
                    gaps.setdefault((col, f"{z:g}"), []).append((gap, sim))
                rows.append({"signal": sig, "column": col, "z": f"{z:g}", "test": test,
                             "published_power": powers[zi],
                             "our_power": float(np.mean(pv[test] <= nominal)),
                             "alpha": alpha, "alpha68": [lo, hi],
                             "ratio_to_nominal": alpha / nominal,
                             "chance": (float(np.mean(sim >= gap - 1e-12))
                                        if lo is not None else None)})
    joint: dict[str, dict[str, float]] = {}
    for (col, z), gs in gaps.items():
        if len(gs) > 1 and col != "best single":
            observed = sum(g for g, _ in gs)
            joint.setdefault(col, {})[z] = float(np.mean(sum(s for _, s in gs)
                                                         >= observed - 1e-12))
    return rows, joint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--rule-toys", type=int, default=PUBLISHED_NULL_TOYS,
                    help="null toys the rule is calibrated on (the first ones; default "
                         "the published count, or all when the study has fewer)")
    ap.add_argument("--n-cal-scan", default="300,500,1000,1500",
                    help="null-toy counts at which the rule's size is also measured")
    a = ap.parse_args()
    d = json.loads(a.file.read_text())
    if d.get("benchmark") != "exp1d8" or d.get("shape_only"):
        sys.exit(f"{a.file}: the published powers are for the extended statistic on "
                 "exp1d8")
    T = np.asarray(d["null"]["t"], dtype=np.float64)
    sigmas = [float(s) for s in d["sigmas"]]
    tests = [f"sigma={s:g}" for s in sigmas] + list(COMBOS)
    scan = [int(x) for x in a.n_cal_scan.split(",") if x.strip()]
    out = {"source": a.file.name, "n_null": len(d["null"]["t"]),
           "n_signal": {s: len(e["t"]) for s, e in d["signals"].items()},
           "sigmas": d["sigmas"], "rule": rule_table(d, a.rule_toys),
           "size_by_n_cal": {str(n): rule_size(T, n, tests, sigmas) for n in scan},
           **dict(zip(("implied", "joint_chance"), implied_table(d), strict=True)),
           "published_null_toys": PUBLISHED_NULL_TOYS,
           "published_toys": PUBLISHED_TOYS,
           "published_toys_default": PUBLISHED_TOYS_DEFAULT}
    path = save(f"published_rule_{a.file.stem}", out)
    for n, sz in out["size_by_n_cal"].items():
        print("size at N =", n, {t: "/".join(f"{v[z]['rate']:.4f}" for z in v)
                                 for t, v in sz.items()})
    for sig, v in out["rule"]["power"].items():
        print(sig, {t: "/".join(f"{w[z]:.3f}" for z in w) for t, w in v.items()})
    for row in out["implied"]:
        print(row["signal"], row["column"], row["z"], row["test"],
              f"alpha* {row['alpha']:.5f} x{row['ratio_to_nominal']:.2f} "
              f"ours {row['our_power']:.3f} pub {row['published_power']:.3f} "
              f"chance {row['chance']}")
    print("joint chance", out["joint_chance"])
    print(path)


if __name__ == "__main__":
    main()
