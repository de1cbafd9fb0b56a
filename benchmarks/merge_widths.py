"""Merge the kernel widths of two power studies run on the same toys.

Two studies with the same benchmark, seed and toy counts draw the same samples (every
toy's random stream comes from the master seed, its stream and its index), so the
statistics of widths fitted in different runs can be put side by side and combined as
if one study had fitted them all. The script checks that the toys are the same (the
settings, the indices of the toys that succeeded, and every comparison-test statistic
the two studies share, toy by toy), writes a study holding the widths of both, and
computes the combinations over ``--combine`` (the published 1D widths by default; kept
as ``combination_widths``) with :func:`nplearn.power.recombine`. Single widths keep the
powers their own study computed (against the same null toys).

    python benchmarks/merge_widths.py results/power_exp1d8_6w_null6000.json \\
        results/power_exp1d8_pubextra_null6000.json \\
        --combine 0.01,0.3,0.7,1.4,4.5,9.0 --out results/power_exp1d8_pubwidths_null6000.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

from nplearn.io import write_json_atomic
from nplearn.power import recombine
from nplearn.stats import fit_chi2_dof

from _common import commit

#: settings two studies must share for their toys to be the same samples and fits
SAME = ("benchmark", "seed", "n_ref", "expected", "n_centers", "lam", "schedule", "d",
        "z_thresholds", "temperature", "combinations")


def _indices(entry: dict) -> list[int] | None:
    """Indices of an entry's successful toys (older studies kept them only when a toy
    failed: all of them otherwise); ``None`` when unknown."""
    if entry.get("ok_indices") is not None:
        return [int(i) for i in entry["ok_indices"]]
    n = int(entry["n_requested"])
    return list(range(n)) if int(entry["n_ok"]) == n else None


def _check_same_toys(a: dict, b: dict) -> list[str]:
    """What differs between the toys of ``a`` and ``b`` (empty when they are the same)."""
    bad = [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in SAME if a.get(k) != b.get(k)]
    pairs = [("null", a["null"], b["null"])]
    pairs += [(s, a["signals"][s], b["signals"].get(s)) for s in a["signals"]]
    for name, ea, eb in pairs:
        if eb is None:
            bad.append(f"{name}: missing in the second study")
            continue
        if _indices(ea) is None or _indices(ea) != _indices(eb):
            bad.append(f"{name}: different toys (indices or counts)")
            continue
        shared = sorted(set(ea.get("extra", {})) & set(eb.get("extra", {})))
        if not shared:
            bad.append(f"{name}: no comparison test in common to check the samples with")
        for test in shared:
            xa, xb = np.asarray(ea["extra"][test]), np.asarray(eb["extra"][test])
            if xa.shape != xb.shape or not np.allclose(xa, xb, rtol=1e-9, atol=1e-12):
                bad.append(f"{name}: the {test} statistics differ: not the same samples")
    return bad


def merge(a: dict, b: dict, combine: list[float]) -> dict:
    """Study with the widths of ``a`` and ``b`` (sorted), combinations over ``combine``."""
    sig = sorted(set(a["sigmas"]) | set(b["sigmas"]))
    missing = [s for s in combine if s not in sig]
    if missing:
        raise SystemExit(f"--combine widths not in either study: {missing}")

    def columns(entry_a: dict, entry_b: dict) -> np.ndarray:
        cols = []
        for s in sig:
            src, e = (a, entry_a) if s in a["sigmas"] else (b, entry_b)
            T = np.asarray(e["t"], dtype=np.float64).reshape(-1, len(src["sigmas"]))
            cols.append(T[:, src["sigmas"].index(s)])
        return np.column_stack(cols)

    # a width fitted in both runs is the most direct check that the toys are the same
    for s in sorted(set(a["sigmas"]) & set(b["sigmas"])):
        for name in ["null", *a["signals"]]:
            ea = a["null"] if name == "null" else a["signals"][name]
            eb = b["null"] if name == "null" else b["signals"][name]
            ta = np.asarray(ea["t"]).reshape(-1, len(a["sigmas"]))[:, a["sigmas"].index(s)]
            tb = np.asarray(eb["t"]).reshape(-1, len(b["sigmas"]))[:, b["sigmas"].index(s)]
            if ta.shape != tb.shape or not np.allclose(ta, tb, rtol=1e-5, atol=1e-8):
                raise SystemExit(f"width {s:g}, {name}: the two runs disagree on t "
                                 "(not the same toys, or not the same fit)")

    out = copy.deepcopy(a)
    out["sigmas"] = [float(s) for s in sig]
    out["combination_widths"] = [float(s) for s in combine]
    T0 = columns(a["null"], b["null"])
    out["null"]["t"] = T0.tolist()
    out["null"]["chi2_dof"] = [fit_chi2_dof(T0[:, j])[0] for j in range(T0.shape[1])]
    out["null"]["median_t"] = [float(np.median(T0[:, j])) for j in range(T0.shape[1])]
    for name, e in out["signals"].items():
        e["t"] = columns(a["signals"][name], b["signals"][name]).tolist()
        # single widths of both studies, each computed against the same null toys
        single = {f"sigma={s:g}": (a if s in a["sigmas"] else b)["signals"][name]["tests"][
            f"sigma={s:g}"] for s in sig}
        e["tests"] = {k: v for k, v in e["tests"].items() if not k.startswith("sigma=")}
        e["tests"].update(single)
    out["wall_s"] = float(a["wall_s"]) + float(b["wall_s"])
    return recombine(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    p.add_argument("--combine", default="0.01,0.3,0.7,1.4,4.5,9.0",
                   help="comma-separated widths the combinations use")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    d1, d2 = (json.loads(x.read_text()) for x in (a.first, a.second))
    bad = _check_same_toys(d1, d2)
    if bad:
        raise SystemExit("not the same toys:\n  " + "\n  ".join(bad))
    merged = merge(d1, d2, [float(s) for s in a.combine.split(",")])
    merged["merged_from"] = {
        "files": [a.first.name, a.second.name],
        "commands": [d1["command"], d2["command"]],
        "commits": [d1["commit"], d2["commit"]],
        "machines": [d1.get("machine"), d2.get("machine")],
        "merge_commit": commit(),
        "merge_command": "merge_widths.py " + " ".join(sys.argv[1:]),
    }
    write_json_atomic(a.out, merged)
    print(f"{a.out}: widths {merged['sigmas']}, combinations over "
          f"{merged['combination_widths']}")


if __name__ == "__main__":
    main()
