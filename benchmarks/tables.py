"""Render the Markdown tables of BENCHMARKS.md from ``benchmarks/results/*.json``.

    python benchmarks/tables.py > /tmp/tables.md
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from _common import RESULTS, study_pvalues

if TYPE_CHECKING:
    import numpy as np


def load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def fmt(v, nd=2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}" if abs(v) >= 10 ** (-nd) or v == 0 else f"{v:.1e}"
    return str(v)


def header(d: dict) -> str:
    note = (f" (the file's `commit_note` says why it first recorded {d['commit_recorded']})"
            if d.get("commit_recorded") else "")
    return f"_{d['machine']}; commit {d['commit']}{note}; `{d.get('command', '')}`_\n"


def speed_1d() -> None:
    d = load("speed_1d")
    if d:
        _speed_1d(d, "one CPU thread")
    for path in sorted(RESULTS.glob("speed_1d_cuda*.json")):
        d = json.loads(path.read_text())
        _speed_1d(d, f"{d['machine'].split('GPU ')[-1]}, `{path.name}`")


def _speed_1d(d: dict, title: str) -> None:
    print(f"### Time per toy, 1D benchmark ({title})\n")
    print(header(d))
    print("| M | schedule | toys | median s/toy | 90% s/toy | kept rank r | Newton steps | "
          "Hessians formed |")
    print("|---|---|---|---|---|---|---|---|")
    for r in d["speed"]:
        hess = r.get("median_hessians")
        print(f"| {r['M']} | {r['schedule']} | {r['toys']} | {r['median_s']:.3f} | "
              f"{r['p90_s']:.3f} | {r['median_rank']:.0f} | {r['median_newton']:.0f} | "
              f"{'–' if hess is None else f'{hess:.0f}'} |")
    if not d.get("exactness"):
        print()
        return
    print("\n| toy | t nplearn | t dense (eig ≥ 1e-14) | t dense (eig ≥ 1e-16) | "
          "J nplearn − min J dense |")
    print("|---|---|---|---|---|")
    for i, c in enumerate(d["exactness"]):
        dj = c["J_nplearn"] - min(c["J_dense_1e-14"], c["J_dense_1e-16"])
        print(f"| {i} | {c['t_nplearn']:.5f} | {c['t_dense_1e-14']:.5f} | "
              f"{c['t_dense_1e-16']:.5f} | {dj:.1e} |")
    print()


def sklearn(M: int) -> None:
    d = load(f"vs_sklearn_M{M}")
    if not d:
        return
    print(f"### nplearn vs scikit-learn, M = {M}\n")
    print(header(d))
    print("| toy | nplearn s | sklearn tol 1e-4 s | sklearn tol 1e-6 s | t nplearn (same "
          "centres) | t dense | t sklearn 1e-4 | t sklearn 1e-6 | lbfgs iters (1e-4 / 1e-6) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in d["toys"]:
        print(f"| {r['toy']} | {r['nplearn_s']:.2f} | {r['sklearn_tol1e-4_s']:.1f} | "
              f"{r['sklearn_tol1e-6_s']:.1f} | {r['t_nplearn']:.3f} | {fmt(r.get('t_dense'), 3)}"
              f" | {r['t_sklearn_tol1e-4']:.3f} | {r['t_sklearn_tol1e-6']:.3f} | "
              f"{r['sklearn_tol1e-4_iter']} / {r['sklearn_tol1e-6_iter']} |")
    s = d["summary"]
    print(f"\nMedian per toy: nplearn {s['nplearn_s']:.2f} s, scikit-learn "
          f"{s['sklearn_tol1e-4_s']:.1f} s (tol 1e-4) and {s['sklearn_tol1e-6_s']:.1f} s "
          f"(tol 1e-6): **{s['speedup_vs_tol1e-4']:.0f}× and {s['speedup_vs_tol1e-6']:.0f}× "
          "faster**.\n")


def many() -> None:
    for name, title in (("many_toys_cpu", "all CPU cores"), ("many_toys_cuda", "one H100")):
        d = load(name)
        if d:
            _many(d, title)


def _many(d: dict, title: str) -> None:
    print(f"### 1000-toy 1D calibration (resampled toys, {title})\n")
    print(header(d))
    print("| M | centres | toys | workers | toys/s | toys/s incl. start-up | median s/toy | "
          "null χ² dof |")
    print("|---|---|---|---|---|---|---|---|")
    for r in d["rows"]:
        print(f"| {r['M']} | {r['mode']} | {r['toys']} | {r['workers']} | "
              f"{r['toys_per_s']:.2f} | {r['toys_per_s_incl_startup']:.2f} | "
              f"{r['median_toy_s']:.3f} | {r['chi2_dof']:.2f} |")
    print()


def multivariate() -> None:
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("multivariate_*.json"))]
    for d in sorted(runs, key=lambda d: (d.get("device", "cpu") != "cpu", d["d"])):
        budget = d.get("memory_budget_gib")
        extra = f", memory budget {budget:g} GiB" if budget else ""
        gpu = d.get("device", "cpu") != "cpu"
        where = f"{d['device']} ({d['dtype']})" if gpu else f"CPU, {d['threads']} threads"
        nd = 2 if gpu else 1
        print(f"### Multivariate {d['case'].upper()} (N_R = {d['n_ref']:g}, N(R) = "
              f"{d['expected']:g}), {where}{extra}\n")
        print(header(d))
        print("| M | centres | toys | median s/toy | one-off basis+features s | rank r | "
              "Newton steps | peak RSS MiB |" + (" peak GPU MiB |" if gpu else ""))
        print("|---|---|---|---|---|---|---|---|" + ("---|" if gpu else ""))
        for i, r in enumerate(d["rows"]):
            print(f"| {r['M']} | {r['mode']} | {r['toys']} | {r['median_toy_s']:.{nd}f} | "
                  f"{r['shared_build_s']:.{nd}f} | {min(r['rank'])}–{max(r['rank'])} | "
                  f"{min(r['newton'])}–{max(r['newton'])} | {r['peak_rss_mib']:.0f} |"
                  + (f" {_gpu_peak(r, i)} |" if gpu else ""))
        print()


def _gpu_peak(r: dict, i: int) -> str:
    """GPU peak of a row; files written before per-row resets carry the running peak."""
    v = f"{r['gpu_peak_mib']:.0f}"
    return v if r.get("gpu_peak_per_row") or i == 0 else f"≤ {v} (running peak)"


def scaling() -> None:
    for path in sorted(RESULTS.glob("scaling_c*.json")):
        _scaling(json.loads(path.read_text()))


def _scaling(d: dict) -> None:
    gpu = d.get("device", "cpu") != "cpu"
    where = (f"{d.get('device')}, GPU memory is peak allocated" if gpu else
             f"CPU, {d['threads']} threads")
    print(f"### Scaling of one fit ({where})\n")
    print(header(d))
    for scan in ("n_ref_1d", "n_ref_5d", "centers_5d", "dim", "large_5d"):
        if scan not in d["scans"]:
            continue
        pts = d["scans"][scan]
        print(f"**{scan}**\n")
        print("| parameters | fit s | peak RSS MiB |" + (" peak GPU MiB |" if gpu else "")
              + " input MiB | rank r | inner | features held | Newton / CG |")
        print("|---|---|---|---|---|---|---|---|" + ("---|" if gpu else ""))
        for p in pts:
            pr = p["params"]
            par = f"d={pr['d']}, N_R={pr['n_ref']:g}, N(R)={pr['expected']:g}, M={pr['M']}"
            if "error" in p:
                print(f"| {par} | failed: {p['error'][:80]} |" + " |" * (7 + gpu))
                continue
            gmem = f" {p['gpu_peak_mib']:.0f} |" if gpu else ""
            print(f"| {par} | {p['wall_s']:.{3 if gpu else 2}f} | {p['peak_rss_mib']:.0f} |{gmem} "
                  f"{p['input_mib']:.0f} | {p['rank']} | {p['inner']} | "
                  f"{'yes' if p['materialised'] else 'no (lazy)'} | {p['newton']} / "
                  f"{p['cg']} |")
        print()


def profile() -> None:
    d = load("profile_toy")
    if not d:
        return
    print("### Where a toy's time goes\n")
    print(header(d))
    from profile_toy import PHASES

    keys = [k for k in PHASES if k in d["1d_paper"]]
    cases = [c for c in ("1d_paper", "5d_M20000") if c in d]
    print("| phase | " + " | ".join(cases) + " |")
    print("|---|" + "---|" * len(cases))
    for k in keys:
        print(f"| {k} | " + " | ".join(
            f"{d[c][k]:.3f} s ({100 * d[c][k] / d[c]['total']:.0f}%)" for c in cases) + " |")
    print("| total per toy | " + " | ".join(f"{d[c]['total']:.3f} s" for c in cases) + " |\n")


def reproduction() -> None:
    rows = [load(f"exp1d_{s}") for s in ("converged", "onestep")]
    rows = [r for r in rows if r]
    if not rows:
        return
    print("### 1D reproduction of the published behaviour\n")
    print(header(rows[0]))
    print("| schedule | null toys | null χ² dof | signal | toys | median Z [16%, 84%] | "
          "published kernel | ideal (ours) | ideal (published) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for sig in ("tail", "bulk", "nonres"):
            s = r["signals"][sig]
            print(f"| {r['schedule']} | {r['null']['n']} | {r['null']['chi2_dof']:.2f} | {sig}"
                  f" | {s['n']} | {s['median_z_chi2']:.2f} [{s['z_chi2_q16']:.2f}, "
                  f"{s['z_chi2_q84']:.2f}] | {s['published_kernel']} | "
                  f"{s['ideal_median_z']:.2f} | {s['published_ideal']} |")
    for r in rows:
        print(f"\n{r['schedule']}: median fit time per toy {r['null']['median_time_s']:.3f} s; "
              f"negative null t: {r['null']['n_negative']} of {r['null']['n']}; "
              f"not converged: {r['null']['n_not_converged']}; wall {r['wall_s']:.0f} s.")
    print()


def _pw(x: dict) -> str:
    return f"{x['power']['2']['value']:.3f} / {x['power']['3']['value']:.3f}"


_EXT_SUFFIX = r"((?:_null[0-9]+)?)((?:_sig[0-9-]+)?)"


def _toy_counts(stem: str) -> tuple[str, int, int]:
    """``(base, null toys, signal toys)`` named by a study file's stem (0: not named)."""
    m = re.fullmatch(r"(.*?)" + _EXT_SUFFIX, stem)
    base, null, sig = m.group(1), m.group(2), m.group(3)
    return (base, int(null[5:]) if null else 0,
            max((int(x) for x in sig[4:].split("-")), default=0) if sig else 0)


def _extensions(path: Path) -> list[Path]:
    """Stored extensions of the study in ``path``, the largest last: ``<stem>_null3000``
    and ``<stem>_sig300`` files, and, for ``<base>_null3000``, ``<base>_null4000`` (the
    same study with more toys, written with ``extend_null.py --out``)."""
    base, n0, s0 = _toy_counts(path.stem)
    out = []
    for q in RESULTS.glob(f"{base}_*.json"):
        if q == path or not re.fullmatch(_EXT_SUFFIX, q.stem[len(base):]):
            continue
        _, n, s = _toy_counts(q.stem)
        if q.stem.startswith(path.stem) or (n >= n0 and s >= s0 and (n, s) != (n0, s0)):
            out.append(q)
    return sorted(out, key=lambda q: _toy_counts(q.stem)[1:])


def _is_check(path: Path) -> bool:
    """Whether a ``power_*`` file is a pilot, scan or refit check, not a study."""
    return any(tag in path.name for tag in ("_lamscan_", "_lampilot_", "_schedcheck_",
                                            "_recheck"))


def power() -> None:
    from nplearn.benchmarks.suite import EXP1D8_PUBLISHED_POWER
    from nplearn.power import format_power_table, ideal_table_rows

    merged_into = {}
    for path in sorted(RESULTS.glob("power_*.json")):
        if not _is_check(path):
            for name in json.loads(path.read_text()).get("merged_from", {}).get("files", []):
                merged_into[name] = path.name
    for path in sorted(RESULTS.glob("power_*.json")):
        if _is_check(path):
            continue
        if path.name in merged_into and not path.name.startswith("power_exp1d8_6w"):
            print(f"_{path.name}: merged into {merged_into[path.name]} (its widths are "
                  "shown there); its table is omitted._\n")
            continue
        extended = _extensions(path)
        if extended and path.name not in ("power_exp1d8_6w.json",
                                          "power_exp1d8_6w_null3000.json"):
            # superseded by its extension (the notes compare the versions of the main
            # 1D study)
            print(f"_{path.name}: superseded by {extended[-1].name} (the same study with "
                  "more toys); its table is omitted._\n")
            continue
        d = json.loads(path.read_text())
        nsig = {s: e["n_ok"] for s, e in d["signals"].items()}
        print(f"### Power: {d['benchmark']} (N_R = {d['n_ref']:g}, N(R) = {d['expected']:g}, "
              f"M = {d['n_centers']}, λ = {d['lam']:g}, {d['schedule']}"
              f"{', shape-only' if d.get('shape_only') else ''}; seed {d['seed']}; "
              f"`{path.name}`)\n")
        print(header(d))
        print(f"{d['null']['n_ok']} null toys; signal toys: "
              + ", ".join(f"{s} {n}" for s, n in nsig.items())
              + f"; widths {', '.join(f'{s:g}' for s in d['sigmas'])}; null χ² dof per "
              "width " + ", ".join(f"{x:.1f}" for x in d["null"]["chi2_dof"])
              + f"; T = {d['temperature']:g}; wall {d['wall_s'] / 60:.0f} min.\n")
        if "combination_ranks" not in d:
            # made before the fix of the toys' local p-values (leave-one-out ranks made
            # min-p anti-conservative): those rows are not shown
            d = _without_combinations(d)
            print("Combination rows omitted: this run predates commit e7154c0 (its "
                  "combinations used leave-one-out ranks for the null toys, which made "
                  "min-p anti-conservative) and kept no raw statistics to recompute "
                  "them. Single widths, comparison tests and the ideal test are "
                  "unaffected.\n")
        if "merged_from" in d:
            m = d["merged_from"]
            print(f"Merged by `{m['merge_command']}` (commit {m['merge_commit']}) from "
                  + " and ".join(f"`{f}` (`{c}`, commit {k}, {mach})" for f, c, k, mach in
                                 zip(m["files"], m["commands"], m["commits"], m["machines"],
                                     strict=True))
                  + ": the same toys (the settings, the toy indices and every comparison "
                  "statistic both kept agree toy by toy), each width fitted in one of the "
                  "runs. Combinations over the widths "
                  + ", ".join(f"{x:g}" for x in d["combination_widths"])
                  + "; single widths as their own run computed them (against the same null "
                  "toys); the comparison tests and the ideal test of the first run.\n")
        for ext in d["null"].get("extensions", []):
            print(f"Null toys extended by {ext['n_added']} at commit {ext.get('commit', '?')} "
                  f"(`{ext['command']}`, {ext['wall_s'] / 60:.0f} min): every power below "
                  "is computed from all the null toys.\n")
        sig_ext: dict[tuple, list[str]] = {}
        for sig, e in d["signals"].items():
            for ext in e.get("extensions", []):
                key = (ext["n_added"], ext.get("commit", "?"), ext.get("command", "?"))
                sig_ext.setdefault(key, []).append(sig)
        for (n_added, ext_commit, command), sigs in sig_ext.items():
            wall = sum(ext["wall_s"] for s in sigs for ext in d["signals"][s]["extensions"]
                       if ext.get("command", "?") == command)
            print(f"Signal toys extended by {n_added} per signal ({', '.join(sigs)}) at "
                  f"commit {ext_commit} (`{command}`, {wall / 60:.0f} min): the new toys are "
                  "those a study with more toys per signal draws.\n")
        if "combinations_recomputed" in d:
            r = d["combinations_recomputed"]
            print(f"Combination rows recomputed from the kept statistics at commit "
                  f"{r['commit']} (`{r['command']}`).\n")
        if d["benchmark"] == "exp1d8" and "t" in d["null"] and len(d["sigmas"]) == 6:
            _add_subset_min_p(d, [1, 2, 3, 4, 5], "min-p, widths 0.3-4.5 only")
        if "combination_widths" in d:
            ours = [0.1, 0.3, 0.7, 1.4, 2.3, 4.5]
            for name, widths in (("min-p, our widths 0.1-4.5", ours),
                                 ("min-p, our widths and 0.01", [0.01, *ours]),
                                 ("min-p, all widths", d["sigmas"])):
                if widths != d["combination_widths"] and all(w in d["sigmas"] for w in widths):
                    _add_subset_min_p(d, [d["sigmas"].index(w) for w in widths], name)
        print(format_power_table(d))
        print()
        if "combination_widths" in d and d["benchmark"] == "exp1d8":
            _published_vs_our_widths(d)
        i90 = _sigma90_index(d)
        if (d["benchmark"] != "exp1d8" and "min-p" in d["combinations"] and "t" in d["null"]
                and i90 is not None):
            print(f"min-p minus the 90th-percentile width (σ = {d['sigmas'][i90]:g}) on the "
                  "same toys, Z ≥ 2 / Z ≥ 3, ± the paired error sqrt(b + c)/n:\n")
            print("| " + " | ".join(d["signals"]) + " |")
            print("|---" * len(d["signals"]) + "|")
            print("| " + " | ".join(_paired_diff(d, e, i90) for e in d["signals"].values())
                  + " |")
            print()
        if d["benchmark"] == "exp1d8" and d["combinations"] and d["null"]["n_ok"] < 740:
            print("No comparison with the published powers: Z ≥ 3 needs at least 740 null "
                  "toys.\n")
        elif d["benchmark"] == "exp1d8" and d["combinations"]:
            combos = d["combinations"]
            s90 = f"{d['sigmas'][i90]:g}" if i90 is not None else "–"
            print("Against the published powers (Z ≥ 2 / Z ≥ 3). `min-p` is our default "
                  "combination, fixed before the run; the best combination is chosen per "
                  "signal afterwards (shown for information). ± is the 68% Clopper–Pearson "
                  "half-width at Z ≥ 3; the column min-p − σ90 is min-p minus the single "
                  f"90th-percentile width (σ = {s90}) at Z ≥ 2 / Z ≥ 3, ± its paired "
                  "standard error sqrt(b + c)/n from the toys only one of the two "
                  "detects.\n")
            same, ideal_rows = ideal_table_rows(
                [e.get("ideal") for e in d["signals"].values()], int(d["null"]["n_ok"]))
            print("| signal | published min-p | published best single σ | ours: min-p | "
                  f"ours: best combination | ours: σ = {s90} (90th pct) | min-p − σ90 | "
                  f"ideal ({'at the same sizes' if same else 'exact thresholds'}) |")
            print("|---|---|---|---|---|---|---|---|")
            for (s, e), ipw in zip(d["signals"].items(), ideal_rows, strict=True):
                pub = EXP1D8_PUBLISHED_POWER.get(s)
                if pub is None or not combos:
                    continue
                t = e["tests"]
                best = max(combos, key=lambda m, t=t: t[m]["power"]["3"]["value"])
                single = t.get(f"sigma={d['sigmas'][i90]:g}") if i90 is not None else None
                ideal_s = f"{ipw['2']:.3f} / {ipw['3']:.3f}" if ipw else "–"
                mp = t.get("min-p")
                diff = "–"
                if mp and single:
                    diff = _paired_diff(d, e, i90)
                print(f"| {s} | {pub['min-p'][0]:.3f} / {pub['min-p'][1]:.3f} | "
                      f"{pub['best single'][0]:.3f} / {pub['best single'][1]:.3f} | "
                      f"{_pw_err(mp) if mp else '–'} | {best}: {_pw_err(t[best])} | "
                      f"{_pw(single) if single else '–'} | {diff} | {ideal_s} |")
            print()


def _sigma90_index(d: dict) -> int | None:
    """The width within 5% of the 90th percentile of the benchmark's reference pair
    distances (10 000 reference events, seed 0), if the study has one."""
    import numpy as np

    from nplearn.benchmarks.suite import get_benchmark
    from nplearn.preprocess import pairwise_distance_percentile

    bench = get_benchmark(d["benchmark"])
    ref = bench.sample_reference_events(np.random.default_rng(0), 10000)
    q90 = float(pairwise_distance_percentile(ref, 90.0))
    i = int(np.argmin([abs(s - q90) for s in d["sigmas"]]))
    return i if abs(d["sigmas"][i] - q90) <= 0.05 * q90 else None


def _paired(pa: np.ndarray, pb: np.ndarray, n: int, z: float) -> str:
    """Power of test a minus test b at ``Z >= z`` on the same ``n`` toys, ± the paired
    error ``sqrt(b + c)/n`` (b, c: toys only one of the two detects; failed toys,
    absent from ``pa`` and ``pb``, detect nothing in either)."""
    import numpy as np
    from scipy import stats as sps

    a, b = pa <= sps.norm.sf(z), pb <= sps.norm.sf(z)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    return f"{(only_a - only_b) / n:+.3f} ± {np.sqrt(only_a + only_b) / n:.3f}"


def _paired_diff(d: dict, e: dict, col: int) -> str:
    """min-p minus one width's power on the same toys, with the paired error."""
    pm = study_pvalues(d, e, "min-p")
    ps = study_pvalues(d, e, f"sigma={d['sigmas'][col]:g}")
    return " / ".join(_paired(pm, ps, int(e["n_requested"]), z) for z in (2.0, 3.0))


def _published_vs_our_widths(d: dict) -> None:
    """min-p over the published widths minus min-p over ours, on the same toys."""
    ours = [0.1, 0.3, 0.7, 1.4, 2.3, 4.5]
    if not all(w in d["sigmas"] for w in ours):
        return
    print("min-p over the published widths (" + ", ".join(f"{w:g}" for w in
          d["combination_widths"]) + ") minus min-p over ours (0.1–4.5) on the same "
          "toys, Z ≥ 2 / Z ≥ 3, ± the paired error sqrt(b + c)/n:\n")
    print("| " + " | ".join(d["signals"]) + " |")
    print("|---" * len(d["signals"]) + "|")
    cells = []
    for e in d["signals"].values():
        pp = study_pvalues(d, e, "min-p")
        po = study_pvalues(d, e, "min-p", ours)
        cells.append(" / ".join(_paired(pp, po, int(e["n_requested"]), z)
                                for z in (2.0, 3.0)))
    print("| " + " | ".join(cells) + " |\n")


def _without_combinations(d: dict) -> dict:
    out = json.loads(json.dumps(d))
    for e in out["signals"].values():
        for m in out["combinations"]:
            e["tests"].pop(m, None)
    out["combinations"] = []
    return out


def _add_subset_min_p(d: dict, cols: list[int], name: str) -> None:
    """Add a row: min-p over a subset of the widths, from the kept statistics."""
    import numpy as np

    from nplearn.multitest import combined_pvalues
    from nplearn.power import power_summary

    T0 = np.asarray(d["null"]["t"])[:, cols]
    zs = tuple(float(z) for z in d["z_thresholds"])
    for e in d["signals"].values():
        _, p, _ = combined_pvalues(np.asarray(e["t"])[:, cols], T0, "min-p")
        # failed toys count as not detected, as in every other row
        n_failed = int(e["n_requested"]) - int(e["n_ok"])
        e["tests"][name] = power_summary(np.r_[p, np.ones(n_failed)], zs, len(T0))


def lam_scan() -> None:
    """One table per benchmark from the single-width runs tagged ``_lamscan_<lam>``."""
    from nplearn.power import median_z_label

    runs: dict[str, list[dict]] = {}
    for path in RESULTS.glob("power_*_lamscan_*.json"):
        d = json.loads(path.read_text())
        runs.setdefault(d["benchmark"], []).append(d)
    for bench, ds in sorted(runs.items()):
        ds.sort(key=lambda d: d["lam"])
        d0 = ds[0]
        sigs = list(d0["signals"])
        print(f"### Regularisation scan: {bench} (N_R = {d0['n_ref']:g}, "
              f"N(R) = {d0['expected']:g}, M = {d0['n_centers']}, "
              f"σ = {', '.join(f'{s:g}' for s in d0['sigmas'])}, {d0['schedule']})\n")
        cmd = re.sub(r"(--lam |_lamscan_)\S+", r"\1LAM", d0["command"])
        lams = ", ".join(f"{d['lam']:g}" for d in ds)
        print(f"_{d0['machine']}; commit {d0['commit']}; `{cmd}` for LAM in {lams}_\n")
        print(f"{d0['null']['n_ok']} null toys, "
              + ", ".join(f"{e['n_ok']} {s}" for s, e in d0["signals"].items())
              + " toys per λ. Power at Z ≥ 2 (median Z); with this many null toys "
              "Z ≥ 3 is out of reach.\n")
        print("| λ | null χ² dof | median null t | "
              + " | ".join(f"{s}: power Z ≥ 2 (median Z)" for s in sigs) + " |")
        print("|---" * (3 + len(sigs)) + "|")
        for d in ds:
            cells = []
            for s in sigs:
                (t,) = d["signals"][s]["tests"].values()
                b = t["power"]["2"]
                cells.append(f"{b['value']:.3f} ± {(b['hi68'] - b['lo68']) / 2:.3f} "
                             f"({median_z_label(t, int(d['null']['n_ok']))})")
            print(f"| {d['lam']:g} | {d['null']['chi2_dof'][0]:.1f} | "
                  f"{d['null']['median_t'][0]:.1f} | " + " | ".join(cells) + " |")
        print()


def lam_pilot() -> None:
    """Paired λ comparison of the multi-width runs tagged ``_lampilot_<lam>``."""
    ds = sorted((json.loads(p.read_text()) for p in RESULTS.glob("power_*_lampilot_*.json")),
                key=lambda d: d["lam"])
    if not ds:
        return
    d0 = ds[0]
    sigs = list(d0["signals"])
    print(f"### Regularisation pilot: {d0['benchmark']} (N_R = {d0['n_ref']:g}, "
          f"N(R) = {d0['expected']:g}, M = {d0['n_centers']}, {d0['schedule']})\n")
    cmd = re.sub(r"(--lam |_lam)(\d\S*)", r"\1LAM", d0["command"])
    print(f"_{d0['machine']}; commit {d0['commit']}; `{cmd}` for LAM in "
          + ", ".join(f"{d['lam']:g}" for d in ds)
          + f" (files renamed to `power_{d0['benchmark']}_lampilot_LAM.json`)_\n")
    print(f"Seed {d0['seed']} (not the seed of the power table); {d0['null']['n_ok']} null "
          f"toys and {d0['signals'][sigs[0]]['n_ok']} toys per signal per λ, the same toys "
          "for both λ. Power at Z ≥ 2 (Z ≥ 3 is out of reach with 200 null toys).\n")
    print("| λ | test | null χ² dof | " + " | ".join(sigs) + " |")
    print("|---" * (3 + len(sigs)) + "|")
    for d in ds:
        names = [f"sigma={s:g}" for s in d["sigmas"]] + ["min-p"]
        dofs = [f"{x:.1f}" for x in d["null"]["chi2_dof"]] + ["–"]
        for name, dof in zip(names, dofs, strict=True):
            cells = [_pw_err2(d["signals"][s]["tests"][name]) for s in sigs]
            print(f"| {d['lam']:g} | {name} | {dof} | " + " | ".join(cells) + " |")
    print()


def size_check() -> None:
    """Actual size of min-p (pooled vs leave-one-out) and the power at equal size."""
    from nplearn.benchmarks.suite import EXP1D8_PUBLISHED_POWER

    for path in sorted(RESULTS.glob("size_check_*.json")):
        d = json.loads(path.read_text())
        print(f"### Size of min-p: pooled ranks vs the leave-one-out construction "
              f"({d['source']})\n")
        print(header(d))
        print(f"{d['n_null']} null toys in {d['blocks']} blocks of {d['n_cal']}; each block "
              f"calibrates in turn and the other {d['n_null'] - d['n_cal']} toys are "
              f"held-out null data sets ({d['n_tested']} tests, {d['n_widths']} widths). "
              "Rate [68% interval on the number of distinct toys] (tests rejected, "
              "distinct toys rejected).\n")
        print("| construction | false-positive rate at Z ≥ 2 (nominal 0.0228) | "
              "at Z ≥ 3 (nominal 0.00135) |")
        print("|---|---|---|")
        for m, v in d["size"].items():
            cells = []
            for z in ("2", "3"):
                s = v[z]
                lo, hi = s["interval68"]
                cells.append(f"{s['rate']:.5f} [{lo:.5f}, {hi:.5f}] "
                             f"({s['k']}, {s['distinct_toys_rejected']})")
            print(f"| {m} | " + " | ".join(cells) + " |")
        print()
        pub_col = d["benchmark"] == "exp1d8"
        print(f"Power (Z ≥ 2 / Z ≥ 3) on the study's signal toys, calibrated on the first "
              f"{d['n_cal']} null toys: each construction at the nominal thresholds, and "
              "pooled min-p at the largest threshold where its held-out false-positive rate "
              "does not exceed the leave-one-out construction's (its rate in brackets).\n")
        methods = list(next(iter(d["power"].values())))
        at = d["size"]["pooled"]
        names = [m + (f" (held-out rate {at['2']['at_loo_size']['rate']:.4f} / "
                      f"{at['3']['at_loo_size']['rate']:.4f})" if m.endswith("size") else "")
                 for m in methods]
        print("| signal | " + ("published min-p | " if pub_col else "")
              + " | ".join(names) + " |")
        print("|---" * (1 + pub_col + len(methods)) + "|")
        for sig, v in d["power"].items():
            pub = EXP1D8_PUBLISHED_POWER.get(sig) if pub_col else None
            pub_s = (f"{pub['min-p'][0]:.3f} / {pub['min-p'][1]:.3f} | " if pub
                     else ("– | " if pub_col else ""))
            cells = [" / ".join(f"{v[m][z]:.3f}" for z in ("2", "3")) for m in methods]
            print(f"| {sig} | {pub_s}" + " | ".join(cells) + " |")
        print()


def _find_study(benchmark: str, match: Callable[[dict], bool],
                last: bool = False) -> tuple[str, dict] | None:
    """File name and content of the first stored power study of ``benchmark`` (in name
    order; the last with ``last``) for which ``match`` holds."""
    for q in sorted(RESULTS.glob(f"power_{benchmark}_*.json"), reverse=last):
        if _is_check(q):
            continue
        e = json.loads(q.read_text())
        if match(e):
            return q.name, e
    return None


def refit_checks() -> None:
    """Paired t of refits of a stored study's first toys: with another schedule
    (``power_<bench>_schedcheck_<schedule>.json``, against the converged study with the
    same benchmark, seed and widths) or with the same options at a later commit
    (``power_<...>_recheck.json``, against the study it was named after)."""
    import numpy as np
    from scipy import stats as sps

    from nplearn.multitest import combined_pvalues, empirical_p

    checks = sorted(RESULTS.glob("power_*_schedcheck_*.json"))
    checks += sorted(RESULTS.glob("power_*_recheck.json"))
    for path in checks:
        d = json.loads(path.read_text())
        recheck = path.stem.endswith("_recheck")
        if recheck:
            q = path.with_name(path.name.replace("_recheck", ""))
            base = (q.name, json.loads(q.read_text())) if q.exists() else None
        else:
            base = _find_study(d["benchmark"], lambda e, d=d: (
                e.get("schedule") == "converged" and e["seed"] == d["seed"]
                and bool(e.get("shape_only")) == bool(d.get("shape_only"))
                and e["sigmas"] == d["sigmas"] and e["lam"] == d["lam"]
                and e["n_centers"] == d["n_centers"]
                and list(e["signals"]) == list(d["signals"])
                and "t" in e["null"]), last=True)
        if base is None:
            continue
        name, e = base
        if recheck:
            print(f"### Refit check: `{name}` (commit {e['commit']}) refitted at commit "
                  f"{d['commit']}\n")
            how = f"refitted with the same options at commit {d['commit']}"
        else:
            print(f"### Schedule check: {d['schedule']} vs converged, {d['benchmark']} "
                  f"(λ = {d['lam']:g}, M = {d['n_centers']}; seed {d['seed']})\n")
            how = f"refitted with the {d['schedule']} schedule"
        print(header(d))
        print(f"The first {d['null']['n_ok']} null toys and the first "
              f"{next(iter(d['signals'].values()))['n_ok']} toys of each signal of "
              f"`{name}`, {how} (same data sets, same centres). Per width: correlation of "
              "t between the two fits, and the mean and largest |Δt| in units of the "
              "stored null standard deviation.\n")
        sd = np.asarray(e["null"]["t"]).std(0, ddof=1)
        print("| toys | " + " | ".join(f"σ = {s:g}" for s in d["sigmas"]) + " |")
        print("|---" * (1 + len(d["sigmas"])) + "|")
        rows = [("null", d["null"]["t"], e["null"]["t"])]
        rows += [(s, v["t"], e["signals"][s]["t"]) for s, v in d["signals"].items()]
        for label, a, b in rows:
            a = np.asarray(a)
            b = np.asarray(b)[: len(a)]
            cells = []
            for k in range(a.shape[1]):
                r = np.corrcoef(a[:, k], b[:, k])[0, 1]
                dz = np.abs(a[:, k] - b[:, k]) / sd[k]
                cells.append(f"{r:.4f} ({dz.mean():.1e}, {dz.max():.1e})" if recheck
                             else f"{r:.4f} ({dz.mean():.3f}, {dz.max():.2f})")
            print(f"| {label} | " + " | ".join(cells) + " |")
        print()
        if recheck:
            # every refitted signal toy scored against the stored study's null toys
            T0 = np.asarray(e["null"]["t"])
            tests = [f"sigma={s:g}" for s in d["sigmas"]] + list(e["combinations"])
            flips = total = 0
            for s, v in d["signals"].items():
                a = np.asarray(v["t"])
                b = np.asarray(e["signals"][s]["t"])[: len(a)]
                for test in tests:
                    if test.startswith("sigma="):
                        k = tests.index(test)
                        pa, pb = empirical_p(a[:, k], T0[:, k])[0], \
                            empirical_p(b[:, k], T0[:, k])[0]
                    else:
                        pa = combined_pvalues(a, T0, test, e["temperature"])[1]
                        pb = combined_pvalues(b, T0, test, e["temperature"])[1]
                    for z in (2.0, 3.0):
                        flips += int(np.sum((pa <= sps.norm.sf(z)) != (pb <= sps.norm.sf(z))))
                        total += len(a)
            print(f"Scored against the stored study's {len(T0)} null toys, {flips} of "
                  f"{total} decisions (signal toys × tests {', '.join(tests)} × Z ≥ 2, 3) "
                  "differ between the two fits.\n")


def _kept(entry: dict) -> list[int] | None:
    """Indices of the toys a study kept (older files record none when all were kept)."""
    if "ok_indices" in entry:
        return list(entry["ok_indices"])
    n = int(entry["n_requested"])
    return list(range(n)) if int(entry["n_ok"]) == n else None


def _same_toys(d: dict, e: dict) -> bool:
    """Whether the extended study ``e`` fitted the data sets of the shape-only study
    ``d``: the same benchmark, seed and fit, the same null toys, and every signal of
    ``d`` drawn from the same random stream with the same toys kept."""
    from nplearn import InputError
    from nplearn.power import _signal_stream, study_benchmark

    keys = ("seed", "sigmas", "n_centers", "lam", "schedule", "temperature",
            "learner_options")
    if (e.get("shape_only") or "t" not in e.get("null", {})
            or any(e.get(k) != d.get(k) for k in keys)
            or _kept(e["null"]) != _kept(d["null"]) or _kept(d["null"]) is None
            or not set(d["signals"]) <= set(e.get("signals", {}))):
        return False
    try:
        bench = study_benchmark(d)
        if study_benchmark(e) != bench:
            return False
        return all(_signal_stream(e, bench, s) == _signal_stream(d, bench, s)
                   and _kept(e["signals"][s]) == _kept(v) is not None
                   for s, v in d["signals"].items())
    except InputError:
        return False


def shape_only_check() -> None:
    """Each shape-only study against the extended study on the same data sets (same
    benchmark, seed, widths, fit and number of null toys), paired toy by toy."""
    import numpy as np
    from scipy import stats as sps

    for path in sorted(RESULTS.glob("power_*.json")):
        if _extensions(path):
            continue  # compared in its extended version
        d = json.loads(path.read_text())
        if not d.get("shape_only"):
            continue
        base = _find_study(d["benchmark"], lambda e, d=d: _same_toys(d, e))
        if base is None:
            continue
        name, e = base
        print(f"### Shape-only against extended: {d['benchmark']} (`{path.name}` vs "
              f"`{name}`)\n")
        print(header(d))
        print(f"The same data sets and centres ({d['null']['n_ok']} null toys, seed "
              f"{d['seed']}); the shape-only test normalises each toy's reference to its own "
              "data count. Mean null t per width, shape-only − extended: "
              + ", ".join(f"{x:+.2f}" for x in (np.asarray(d["null"]["t"])
                                                 - np.asarray(e["null"]["t"])).mean(0))
              + ". Cells: shape-only power at Z ≥ 2 / Z ≥ 3, then shape-only minus "
              "extended ± the paired error sqrt(b + c)/n (b, c: toys only one of the two "
              "detects).\n")
        sigs = list(d["signals"])
        print("| test | " + " | ".join(sigs) + " |")
        print("|---" * (1 + len(sigs)) + "|")
        tests = [f"sigma={s:g}" for s in d["sigmas"]] + list(d["combinations"])
        for test in tests:
            cells = []
            for sig in sigs:
                a, b = d["signals"][sig], e["signals"][sig]
                pa, pb = study_pvalues(d, a, test), study_pvalues(e, b, test)
                n = int(a["n_requested"])
                parts = [f"{np.sum(pa <= sps.norm.sf(z)) / n:.3f}" for z in (2.0, 3.0)]
                diffs = [_paired(pa, pb, n, z) for z in (2.0, 3.0)]
                cells.append(f"{' / '.join(parts)} ({' / '.join(diffs)})")
            print(f"| {test} | " + " | ".join(cells) + " |")
        print()


def _runs_table(pattern: str, title: str, italic: Callable[[dict], str], text: str,
                columns: list[str]) -> list[dict]:
    """The results matching ``pattern``; when there are any, prints the table's
    heading, its italic line (from the first run), ``text`` and the column header."""
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob(pattern))]
    if runs:
        print(f"### {title}\n")
        print(f"_{italic(runs[0])}_\n")
        print(f"{text}\n")
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
    return runs


def widths_cost() -> None:
    runs = _runs_table(
        "widths_cost_*.json", "Cost of several kernel widths per toy (`widths_cost.py`)",
        lambda d: f"{d['threads']} torch threads; each row names its machine after the commit",
        "Median time per toy over the same toys; ratio = median over toys of (time with all "
        "widths) / (sum of the single-width times). |Δt| warm − cold: largest difference of "
        "t over toys and widths.",
        ["case", "commit", "widths", "M", "centres", "each width alone (sum)",
         "all widths, cold", "all widths, warm", "Newton steps alone / cold / warm",
         "max abs dt warm - cold"])
    for d in runs:
        r = {x["config"]: x for x in d["rows"]}
        alone, cold, warm = (r["each width alone (sum)"], r["all widths, cold"],
                             r["all widths, warm"])
        case = f"{d['benchmark']} (N_R = {d['n_ref']}, N(R) = {d['expected']:g})"
        print(f"| {case} | {d['commit']} ({d['machine'].split(',')[0]}) "
              f"| {', '.join(f'{s:g}' for s in d['sigmas'])} "
              f"| {d['n_centers']} | {d['centers_mode']} | {alone['median_s']:.2f} s "
              f"| {cold['median_s']:.2f} s ({cold['ratio_to_alone']:.2f}) "
              f"| {warm['median_s']:.2f} s ({warm['ratio_to_alone']:.2f}) "
              f"| {alone['newton_steps']:g} / {cold['newton_steps']:g} / "
              f"{warm['newton_steps']:g} | {d['max_abs_dt_warm_vs_cold']:.1e} |")
    if runs:
        print()


def preconditioner() -> None:
    runs = _runs_table(
        "preconditioner_*.json",
        "PCG preconditioner of the converged schedule (`preconditioner.py`)",
        lambda d: f"{d['machine']}; {d['threads']} torch threads; PCG forced "
                  "(`inner=\"cg\"`), one width, the same toys for both",
        "centres: Falkon's Hessian estimate on the M candidate centres (kept by the "
        "one-step schedule); sample: on a weight-proportional subsample of the events "
        "(the converged schedule's default). Medians over toys; |Δt|: the largest "
        "difference of t between the two.",
        ["case", "commit", "σ", "M", "rank", "toys", "time centres / sample", "setup",
         "CG iterations centres / sample", "Newton steps", "max abs dt (t ≈)"])
    for d in runs:
        r = {x["preconditioner"]: x for x in d["rows"]}
        c, s = r["centres"], r["sample"]
        case = f"{d['benchmark']} (N_R = {d['n_ref']}, N(R) = {d['expected']:g})"
        print(f"| {case} | {d['commit']} | {d['sigma']:g} | {d['n_centers']} "
              f"| {d['median_rank']:g} | {d['toys']} "
              f"| {c['median_s']:.2f} s / {s['median_s']:.2f} s "
              f"| {s['median_setup_s']:.2f} s | {c['median_cg']:g} / {s['median_cg']:g} "
              f"| {c['median_newton']:g} / {s['median_newton']:g} "
              f"| {d['max_abs_dt']:.1e} ({d['median_t']:.3g}) |")
    if runs:
        print()


#: switch_ab.py result files: (glob, title, note, arm labels)
SWITCH_TABLES = (
    ("kernel_floor_*.json", "Subnormal numbers in narrow kernels (`switch_ab.py --switch floor`)",
     "Without the floor, kernel entries underflow: `exp` of arguments below about −708 "
     "and GEMM products below 2.2·10⁻³⁰⁸ (subnormal numbers) take a slow path of the "
     "CPU. The floor clips kernel entries at 3.5·10⁻³⁹ (float64). Median time per toy "
     "(all widths); speed-up = off / on; |Δt|/t: the largest relative difference of t "
     "between the two over toys and widths.", ("floor off", "floor on")),
    ("window_features_*.json",
     "Windowed features of narrow kernels (`switch_ab.py --switch window`)",
     "Dense: the n × r features. Windows: for each block of 256 events sorted along one "
     "coordinate, the kernel columns of the W centres that can give an entry above the "
     "floor (used where W ≤ 0.7 r, with PCG). Median time per toy (all widths); speed-up "
     "= dense / windows; |Δt|/t: the largest relative difference of t between the two "
     "over toys and widths (the convergence tolerance n(J − J*) ≤ 1e-8 allows ~1e-6).",
     ("dense", "windows")),
)


def switch_ab() -> None:
    for pattern, title, note, (off, on) in SWITCH_TABLES:
        runs = _runs_table(
            pattern, title,
            lambda d, on=on, off=off: f"{d['machine']}; {d['threads']} torch threads; the "
                                      f"same toys, each run {off}, then {on}",
            note,
            ["case", "commit", "widths", "M", "λ", "inner", "rank", "toys", off, on,
             "speed-up", "max rel dt"])
        for d in sorted(runs, key=lambda d: (d["benchmark"], -d["speedup"])):
            case = f"{d['benchmark']} (N_R = {d['n_ref']}, N(R) = {d['expected']:g})"
            print(f"| {case} | {d['commit']} | {', '.join(f'{s:g}' for s in d['sigmas'])} "
                  f"| {d['n_centers']} | {d['lam']:g} | {d['inner']} "
                  f"| {', '.join(f'{r:g}' for r in d['median_rank'])} | {d['toys']} "
                  f"| {d['median_s_off']:.2f} s | {d['median_s_on']:.2f} s "
                  f"| {d['speedup']:.2f} | {d['max_rel_dt']:.1e} |")
        if runs:
            print()


def window_threshold() -> None:
    """The sweep behind ``WINDOW_MAX_FRACTION`` (``switch_ab.py --max-fraction``)."""
    import numpy as np

    from nplearn.learners.kernel import AUTO_DIRECT_MAX_RANK, WINDOW_MAX_FRACTION

    runs = _runs_table(
        "window_threshold_*.json",
        "Where windows pay: the threshold sweep (`switch_ab.py --switch window --max-fraction 1`)",
        lambda d: f"{d['machine']}; {d['threads']} torch threads; the same toys, each run "
                  "dense, then windowed at any width",
        "Windows forced wherever they can be built (`WINDOW_MAX_FRACTION = 1`); W / r: the "
        "windows' width as a fraction of the kept centres (median over toys). Dense inner: "
        f"what `inner=\"auto\"` solves the dense features with (direct up to rank "
        f"{AUTO_DIRECT_MAX_RANK}); windows always use PCG. Times: median [min, max] over "
        f"the toys. The library windows a width when W / r ≤ {WINDOW_MAX_FRACTION}.",
        ["case", "commit", "σ", "M", "rank", "W / r", "dense inner", "toys", "dense",
         "windows", "speed-up", "max rel dt"])

    def span(rs: list[dict]) -> str:
        x = [r["time_s"] for r in rs]
        return f"{np.median(x):.2f} s [{min(x):.2f}, {max(x):.2f}]"

    for d in sorted(runs, key=lambda d: (d["benchmark"], d["sigmas"])):
        rank = d["median_rank"][0]
        print(f"| {d['benchmark']} (N_R = {d['n_ref']}, N(R) = {d['expected']:g}) "
              f"| {d['commit']} | {', '.join(f'{s:g}' for s in d['sigmas'])} "
              f"| {d['n_centers']} | {rank:g} | {d['median_window_fraction']:.2f} "
              f"| {'direct' if rank <= AUTO_DIRECT_MAX_RANK else 'PCG'} | {d['toys']} "
              f"| {span(d['runs']['off'])} | {span(d['runs']['on'])} "
              f"| {d['speedup']:.2f} | {d['max_rel_dt']:.1e} |")
    if runs:
        print()


def null_tail() -> None:
    """Empirical null tails against fitted chi-squares (``null_tail.py``)."""
    for path in sorted(RESULTS.glob("null_tail_*.json")):
        d = json.loads(path.read_text())
        print(f"### Is the null heavier-tailed than a chi-square? (`{d['study']}`)\n")
        print(header(d))
        print(f"{d['n_null']} null toys. Dispersion: var(t) / (2 mean t), 1 for a chi-square. "
              "Beyond: null toys at or above the fitted chi-square's Z = 2 / Z = 3 quantile "
              "(a chi-square puts n·p there, 68% Poisson range in brackets). Power at Z ≥ 3 "
              "per signal with the empirical threshold (the toys, as in the power tables) / "
              "with the fitted chi-square's quantile.\n")
        sigs = d["signals"]
        print("| σ | dof | dispersion | beyond Z = 2 | beyond Z = 3 | "
              + " | ".join(f"{s}: Z ≥ 3 toys / χ²" for s in sigs) + " |")
        print("|---|---|---|---|---|" + "---|" * len(sigs))
        for w in d["widths"]:
            cells = []
            for z in ("2", "3"):
                e = w["levels"][z]
                lo, hi = e["expected_beyond_68"]
                cells.append(f"{e['null_beyond_chi2']} ({e['expected_beyond']:.1f} "
                             f"[{lo:.0f}, {hi:.0f}])")
            pw = w["levels"]["3"]["power"]
            print(f"| {w['sigma']:g} | {w['dof']:.1f} | {w['dispersion']:.2f} | "
                  + " | ".join(cells) + " | "
                  + " | ".join(f"{pw[s]['empirical']:.3f} / {pw[s]['chi2']:.3f}" for s in sigs)
                  + " |")
        print()


def tail_pvalues() -> None:
    d = load("tail_pvalues")
    if not d:
        return
    print("### min-p with chi-square tails for the local p-values (`tail_pvalues.py`; "
          "not adopted)\n")
    print(header(d))
    print("K = 0 is the default min-p (rank local p-values, ties at the best rank ordered by "
          "the standardised t); for K > 0 every tie counts against the data set. Size: "
          "held-out null toys rejected at Z ≥ 2 / Z ≥ 3 "
          f"(blocks of {d['n_cal']} calibrate in turn; nominal 0.0228 / 0.00135). Power at "
          "Z ≥ 2 / Z ≥ 3 on the study's signal toys, calibrated on all its null toys.\n")
    for name, st in d["studies"].items():
        sigs = list(next(iter(st["by_k"].values()))["power"])
        print(f"`{name}` ({st['n_null']} null toys)\n")
        print("| K | size | " + " | ".join(sigs) + " |")
        print("|---|---|" + "---|" * len(sigs))
        for k, e in sorted(st["by_k"].items(), key=lambda kv: int(kv[0])):
            size = ("–" if e["size"] is None else
                    f"{e['size']['2']:.4f} / {e['size']['3']:.5f}")
            print(f"| {k} | {size} | " + " | ".join(
                f"{e['power'][s]['2']:.3f} / {e['power'][s]['3']:.3f}" for s in sigs) + " |")
        print()


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def published_rule() -> None:
    """Our 1D tests under the published power rule, the size the published powers
    imply, and the toy noise of Z >= 3 thresholds (``published_rule.py``)."""
    from nplearn.benchmarks.suite import EXP1D8_PUBLISHED_POWER
    from published_rule import rule_rank

    paths = sorted(RESULTS.glob("published_rule_*.json"))
    for path in paths:
        # the same analysis of an extended study replaces it
        newer = [q for q in paths if q.stem.startswith(path.stem + "_")]
        if newer:
            print(f"_{path.name}: superseded by {newer[-1].name} (the same analysis of the "
                  "study with more toys); its tables are omitted._\n")
            continue
        d = json.loads(path.read_text())
        r = d["rule"]
        print(f"### The published power rule on our toys ({d['source']})\n")
        print(header(d))
        print("Authors' rule (their `tests.py`, read for facts): a test rejects when its "
              "score reaches the null toys' empirical 1 − α quantile taken with numpy's "
              "`method=\"higher\"`; combinations score leave-one-out local p-values (see "
              f"the script). Published: {d['published_null_toys']} null toys (threshold at "
              "Z ≥ 3: the 6th largest), 2000 toys per signal (4000 for narrow4). Ours: "
              f"the same rule calibrated on our first {r['n_cal']} null toys (the "
              f"{_ordinal(rule_rank(r['n_cal'], 3.0))} largest), "
              f"{min(d['n_signal'].values())} toys per signal. Our widths are "
              f"{', '.join(f'{s:g}' for s in d['sigmas'])}; the published ones 0.01, 0.3, "
              "0.7, 1.4, 4.5, 9.0 (2.3 alone for the 90th percentile). Z ≥ 2 / Z ≥ 3.\n")
        singles = [t for t in next(iter(r["power"].values())) if t.startswith("sigma=")]
        cols = [("min-p", "min-p"), ("product-p", "product-p"), ("90th pct", "sigma=2.3")]
        print("| signal | " + " | ".join(f"published {c} | ours {t}" for c, t in cols)
              + " | published best single | ours best single |")
        print("|---" * (3 + 2 * len(cols)) + "|")
        for sig, v in r["power"].items():
            pub = EXP1D8_PUBLISHED_POWER[sig]
            parts = [f"{pub[c][0]:.3f} / {pub[c][1]:.3f} | {v[t]['2']:.3f} / {v[t]['3']:.3f}"
                     for c, t in cols]
            bs = pub["best single"]
            best = [max(singles, key=lambda t, z=z: v[t][z]) for z in ("2", "3")]
            parts.append(f"{bs[0]:.3f} / {bs[1]:.3f} | "
                         + " / ".join(f"{v[b][z]:.3f} ({b.split('=')[1]})"
                                      for b, z in zip(best, ("2", "3"), strict=True)))
            print(f"| {sig} | " + " | ".join(parts) + " |")
        print()
        scan = dict(sorted(d["size_by_n_cal"].items(), key=lambda kv: int(kv[0])))
        print("Size of the rule when calibrated on N of our null toys (blocks of N calibrate "
              "in turn; rate on the held-out toys at Z ≥ 3, nominal 0.00135; single widths: "
              "the range over our widths):\n")
        print("| N | " + " | ".join(scan) + " |")
        print("|---" * (1 + len(scan)) + "|")
        for name, pick in (("min-p", ["min-p"]), ("product-p", ["product-p"]),
                           ("single width", singles)):
            rates = [[s[t]["3"]["rate"] for t in pick] for s in scan.values()]
            print(f"| {name} | " + " | ".join(
                f"{min(x):.4f}" if len(x) == 1 else f"{min(x):.4f}–{max(x):.4f}"
                for x in rates) + " |")
        print()
        print("The size each published power needs from our valid p-values (all "
              f"{d['n_null']} null toys): α* rejects the published fraction of our signal "
              "toys (68% interval from both studies' signal-toy counts; × the nominal "
              "rate; no interval where fewer than 10 of our toys are rejected). Chance: if "
              "both studies ran our test, the probability that the published power exceeds "
              "ours by at least the observed amount, both studies' null thresholds "
              f"({d['published_null_toys']} and {d['n_null']} toys) and signal-toy counts "
              "drawn at random (Monte Carlo; shown where α* has an interval). Powers are "
              "ours at the nominal size and the published ones.\n")
        print("| signal | published column | our test | Z ≥ 2: ours / published | α* | "
              "chance | Z ≥ 3: ours / published | α* | chance |")
        print("|---|---|---|---|---|---|---|---|---|")
        rows: dict[tuple[str, str], dict[str, dict]] = {}
        for row in d["implied"]:
            rows.setdefault((row["signal"], row["column"]), {})[row["z"]] = row
        for (sig, col), by_z in rows.items():
            cells = []
            for z in ("2", "3"):
                x = by_z[z]
                lo, hi = x["alpha68"]
                iv = f" [{lo:.4f}, {hi:.4f}]" if lo is not None else ""
                cells += [f"{x['our_power']:.3f} / {x['published_power']:.3f}",
                          f"{x['alpha']:.4f}{iv} (×{x['ratio_to_nominal']:.1f})",
                          "–" if x["chance"] is None else f"{x['chance']:.3f}"]
            tests = sorted({x["test"] for x in by_z.values()})
            print(f"| {sig} | {col} | {', '.join(tests)} | " + " | ".join(cells) + " |")
        print()
        joint = d.get("joint_chance", {})
        if joint:
            print("Summed gap per published column: the chance that toy noise makes the "
                  "published powers exceed ours by at least the observed sum of the gaps "
                  "over the signals with an interval (each study's null threshold is "
                  "shared by its signals, so the same threshold draws serve every signal) "
                  "— "
                  + "; ".join(f"{col}: Z ≥ 2 {v['2']:.3f}, Z ≥ 3 {v['3']:.3f}"
                              for col, v in joint.items() if "2" in v and "3" in v)
                  + ".\n")


def neural_1d() -> None:
    """The neural-network learner on the 1D benchmark (``neural_1d.py``)."""
    import numpy as np

    from nplearn.benchmarks.exp1d import PUBLISHED
    from nplearn.learners.neural import n_parameters
    from nplearn.stats import chi2_pvalue, fit_chi2_dof

    for path in sorted(RESULTS.glob("neural_*.json")):
        d = json.loads(path.read_text())
        if "toys" not in d:  # neural_pass.json
            continue
        o = d["options"]
        d_in = o.get("d", 1)
        arch = "-".join(str(k) for k in (d_in, *o["hidden"], 1))
        n_par = n_parameters(d_in, tuple(o["hidden"]))
        what = ("1D exponential benchmark" if o.get("benchmark", "exp1d") == "exp1d"
                else f"{o['benchmark']} (default sizes)")
        print(f"### Neural-network learner, {what} (`{path.name}`)\n")
        print(header(d))
        toys = d["toys"]
        null = [r for r in toys if r["kind"] == "null"]
        signals = [s for s in d["signals"] if any(r["kind"] == s for r in toys)]
        counts = ", ".join(f"{s} {sum(r['kind'] == s for r in toys)}" for s in signals) \
            or "none"
        print(f"N_R = {o['n_ref']}, N(R) = {o['expected']:g}; network {arch} (sigmoid), "
              f"{n_par} parameters, weight clip {o['weight_clip']:g}, L-BFGS-B, "
              f"{o['n_init']} start(s) per fit; {len(null)} null toys, signal toys: {counts}; "
              f"every toy has its own reference sample; {d['workers']} workers, "
              f"wall {d['wall_s'] / 60:.0f} min. Median Z from the chi-square fitted to the "
              "null toys (the published convention; the null toys alone resolve Z < 2.4)."
              + (" 'one start' is the first start of each fit (an `n_init = 1` fit), 'best "
                 f"of {o['n_init']}' the fit kept." if o["n_init"] > 1 else "") + "\n")
        print("| statistic | null mean t | null chi2 dof (KS distance) | "
              + "".join(f"{s}: median Z [16%, 84%] | " for s in signals)
              + "median time per toy |")
        print("|---|---|---|" + "---|" * len(signals) + "---|")
        rows = [("one start", lambda r: r["start_t"][0])]
        if o["n_init"] > 1:
            rows.append((f"best of {o['n_init']}", lambda r: r["t"]))
        for label, key in rows:
            tn = np.array([key(r) for r in null])
            dof, ks, _ = fit_chi2_dof(tn)
            cells = []
            for s in signals:
                ts = np.array([key(r) for r in toys if r["kind"] == s])
                z = [chi2_pvalue(float(q), dof)[1] for q in np.quantile(ts, [0.5, 0.16, 0.84])]
                cells.append(f"{z[0]:.2f} [{z[1]:.2f}, {z[2]:.2f}]")
            frac = (1 / o["n_init"]) if label == "one start" else 1.0
            tt = np.median([r["time_s"] for r in toys]) * frac
            est = f" (1/{o['n_init']} of the fit)" if frac != 1.0 else ""
            print(f"| {label} | {tn.mean():.2f} | {dof:.2f} ({ks:.3f}) | "
                  + "".join(f"{c} | " for c in cells) + f"{tt:.1f} s{est} |")
        pub = ", ".join(f"{s} {PUBLISHED[s]['kernel']:g} (ideal {PUBLISHED[s]['ideal']:g})"
                        for s in signals if s in PUBLISHED)
        # starts that diverged are stored as null (NaN)
        finite = [[x for x in r["start_t"] if x is not None] for r in toys]
        spread = np.array([max(x) - min(x) for x in finite])
        n_div = sum(len(r["start_t"]) - len(x) for r, x in zip(toys, finite, strict=True))
        print(f"\nThe network has {n_par} parameters; the published clip is tuned so that "
              "the null dof matches it. "
              + (f"Spread of t between the starts of one fit (max − min): median "
                 f"{np.median(spread):.2f}, 90th percentile {np.quantile(spread, 0.9):.2f}, "
                 f"largest {spread.max():.2f}. " if o["n_init"] > 1 else "")
              + "Not converged: "
              f"{sum(not r['converged'] for r in toys)} of {len(toys)} kept fits; starts "
              f"that diverged (e^f overflowed in a line search): {n_div} of "
              f"{sum(len(r['start_t']) for r in toys)}."
              + (f" Published median Z of the kernel NPLM for comparison: {pub}." if pub
                 else ""))
        adam = d.get("adam_s_per_epoch")
        if adam:
            print(f"Adam (the published optimiser), one full-batch epoch on a toy of this "
                  f"size, one thread: {adam['float64'] * 1e3:.1f} ms in float64, "
                  f"{adam['float32'] * 1e3:.1f} ms in float32 (measured over "
                  f"{d['adam_epochs_measured']} epochs): 50 000 epochs take "
                  f"{adam['float64'] * 5e4 / 60:.0f} min (float64) per start.")
        print()


def neural_reruns() -> None:
    """The same network toys fitted by two versions of the code: how much of ``t``
    survives a change of the arithmetic (rounding) alone."""
    import numpy as np

    runs = []
    for path in sorted(RESULTS.glob("neural_*.json")):
        d = json.loads(path.read_text())
        if "toys" in d and d["options"]["n_init"] == 1:
            runs.append((path.name, d))
    for (na, a), (nb, b) in [(x, y) for i, x in enumerate(runs) for y in runs[i + 1:]]:
        if a["options"] != b["options"]:
            continue
        if _commit_time(a["commit"]) > _commit_time(b["commit"]):
            (na, a), (nb, b) = (nb, b), (na, a)
        ta = {(r["kind"], r["index"]): r["t"] for r in a["toys"]}
        tb = {(r["kind"], r["index"]): r["t"] for r in b["toys"]}
        keys = sorted(set(ta) & set(tb))
        diff = np.array([tb[k] - ta[k] for k in keys])
        ad = np.abs(diff)
        print(f"### Network reruns: `{na}` (commit {a['commit']}) and `{nb}` (commit "
              f"{b['commit']})\n")
        print(f"The same {len(keys)} toys, the same initial weights, the same loss, "
              "constraint and stopping rule; the two commits differ in how a pass is "
              "computed (rounding only). Fraction of toys whose t agrees within a "
              "tolerance: "
              + ", ".join(f"{tol:g}: {np.mean(ad <= tol):.2f}"
                          for tol in (1e-6, 1e-3, 0.1, 1.0))
              + f"; largest |Δt| {ad.max():.2f}.\n")
        print("| toys | n | median abs(Δt) | mean Δt (later − earlier) ± s.e. | t higher in "
              "the later run / lower |")
        print("|---|---|---|---|---|")
        kinds = np.array([k[0] for k in keys])
        for kind in dict.fromkeys(kinds):
            m = kinds == kind
            dd = diff[m]
            se = dd.std(ddof=1) / math.sqrt(m.sum()) if m.sum() > 1 else math.nan
            print(f"| {kind} | {m.sum()} | {np.median(np.abs(dd)):.3f} | {dd.mean():+.3f} "
                  f"± {se:.3f} | {(dd > 1e-6).sum()} / {(dd < -1e-6).sum()} |")
        print()


def network_vs_kernel() -> None:
    """The NPLM network (comparison test ``nplm_network``) and the kernel widths on the
    same toys of the 1D suite, and the kernel's t against the main study's toy by toy."""
    import numpy as np
    from scipy import stats as sps

    from nplearn.multitest import empirical_p

    path = RESULTS / "power_exp1d8_6w_network.json"
    if not path.exists():
        return
    path = ([path, *_extensions(path)])[-1]  # the study with the most toys
    d = json.loads(path.read_text())
    main = load("power_exp1d8_6w_null6000_sig800-800-800")
    n0 = d["null"]["n_ok"]
    zs = (2.0, 3.0) if n0 >= 740 else (2.0,)
    ths = " and ".join(f"Z ≥ {z:g} (p ≤ {math.floor(sps.norm.sf(z) * (n0 + 1))}/{n0 + 1})"
                       for z in zs)
    print(f"### The network and the kernel on the same toys (`{path.name}`)\n")
    print("Every toy of the study above was also fitted by the NPLM network (1-4-1, clip 9, "
          "one start, standardised with the toy's reference); both are calibrated on the "
          f"same {n0} null toys"
          + ("" if n0 >= 740 else ", so Z ≥ 3 cannot be resolved (it needs 740)")
          + f". Power at {ths} (median Z); network minus a kernel test on the same toys, "
          "± the paired error sqrt(b + c)/n.\n")
    X0 = np.asarray(d["null"]["extra"]["nplm_network"])
    cols = ("min-p", "σ = 0.3", "σ = 0.7")
    print("| signal | network | " + " | ".join(cols) + " | "
          + " | ".join(f"network − {c}" for c in cols) + " |")
    print("|---|---|" + "---|" * (2 * len(cols)))
    for sig, e in d["signals"].items():
        n = int(e["n_requested"])
        pn = empirical_p(np.asarray(e["extra"]["nplm_network"]), X0)[0]
        tests = [study_pvalues(d, e, "min-p"), study_pvalues(d, e, "sigma=0.3"),
                 study_pvalues(d, e, "sigma=0.7")]

        def cell(p: np.ndarray, n: int = n) -> str:
            # "≥": more than half the toys are beyond every null toy (a bound)
            bound = "≥" if np.median(p) <= 1.0 / (n0 + 1) else ""
            return (" / ".join(f"{np.sum(p <= sps.norm.sf(z)) / n:.3f}" for z in zs)
                    + f" ({bound}{sps.norm.isf(np.median(p)):.2f})")

        print(f"| {sig} | {cell(pn)} | " + " | ".join(cell(p) for p in tests) + " | "
              + " | ".join(" / ".join(_paired(pn, p, n, z) for z in zs) for p in tests)
              + " |")
    print()
    if main is None:
        return
    worst, count = 0.0, 0
    for e_new, e_old in [(d["null"], main["null"])] + [
            (d["signals"][s], main["signals"][s]) for s in d["signals"] if s in main["signals"]]:
        row_old = {int(i): r for r, i in enumerate(e_old["ok_indices"])}
        t_old = np.asarray(e_old["t"])
        for r, i in enumerate(e_new["ok_indices"]):
            if int(i) in row_old:
                diff = np.abs(np.asarray(e_new["t"][r]) - t_old[row_old[int(i)]])
                worst, count = max(worst, float(diff.max())), count + 1
    print(f"The kernel's t of these {count} toys (every width) against the same toys of "
          f"`power_exp1d8_6w_null6000_sig800-800-800.json` (commit {main['commit']}): largest "
          f"difference {worst:.2g}.\n")


def _commit_time(commit: str) -> int:
    """Commit time of a recorded commit (0 if git does not know it)."""
    import subprocess

    try:
        out = subprocess.run(["git", "log", "-1", "--format=%ct", commit.split("+")[0]],
                             capture_output=True, text=True, cwd=RESULTS, check=True)
        return int(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 0


def neural_pass() -> None:
    """Cost of one network pass, library vs the autograd implementation it replaced."""
    d = load("neural_pass")
    if d is None:
        return
    print("### Network: one pass (loss and gradient) on one thread (`neural_pass.json`)\n")
    print(header(d))
    print(f"Median of {d['repeats']} runs of {d['passes']} passes each.\n")
    print("| network | N_R | N_D | autograd, row-major (before) | library | speed-up | "
          "largest relative difference (loss / gradient) |")
    print("|---|---|---|---|---|---|---|")
    for r in d["rows"]:
        print(f"| {r['architecture']} | {r['n_ref']} | {r['n_data']} | "
              f"{r['autograd_ms']:.2f} ms | {r['library_ms']:.2f} ms | {r['speedup']:.1f}x | "
              f"{r['loss_rel_diff']:.1e} / {r['grad_rel_diff']:.1e} |")
    print()


def _pw_err2(x: dict) -> str:
    b = x["power"]["2"]
    return f"{b['value']:.2f} ± {(b['hi68'] - b['lo68']) / 2:.2f}"


def _pw_err(x: dict) -> str:
    b = x["power"]["3"]
    return f"{_pw(x)} ± {(b['hi68'] - b['lo68']) / 2:.3f}"


if __name__ == "__main__":
    reproduction()
    speed_1d()
    sklearn(1000)
    sklearn(3000)
    many()
    multivariate()
    scaling()
    profile()
    widths_cost()
    preconditioner()
    switch_ab()
    window_threshold()
    power()
    size_check()
    published_rule()
    null_tail()
    tail_pvalues()
    lam_scan()
    lam_pilot()
    refit_checks()
    shape_only_check()
    neural_1d()
    neural_reruns()
    neural_pass()
    network_vs_kernel()
