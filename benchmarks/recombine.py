"""Recompute derived rows of stored power studies with the current code.

A power study keeps every toy's statistics (``power.py`` since commit e7154c0), so a
change of the combination procedure needs no new toys. The file is rewritten with
the new combination entries and a ``combinations_recomputed`` record (commit and
command); everything else is left as the study wrote it.

With ``--ideal`` the ideal (Neyman-Pearson) rows are recomputed instead
(:func:`nplearn.power.refresh_ideal`): the ideal toys are redrawn from the study's
seed and each signal's stream, the stored power at the exact thresholds must come out
identical (a check that the generator and the densities have not changed), and the
power at the sizes the study's toy-calibrated tests use (``k / (n_null + 1)``) is
added as ``power_at_size``, the like-for-like row of the tables. The record is
``ideal_refreshed``.

    python benchmarks/recombine.py benchmarks/results/power_exp1d8_6w.json
    python benchmarks/recombine.py --ideal benchmarks/results/power_gauss2d_1k_null3000.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nplearn.io import write_json_atomic
from nplearn.power import recombine, refresh_ideal, study_benchmark

from _common import commit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--ideal", action="store_true",
                   help="recompute the ideal rows instead of the combinations")
    a = p.parse_args()
    record = {"command": "recombine.py " + " ".join(sys.argv[1:])}
    for path in a.files:
        d = json.loads(path.read_text())
        if not a.ideal:
            new = recombine(d)
            new["combinations_recomputed"] = {"commit": commit(), **record}
            write_json_atomic(path, new)
            print(f"{path}: recomputed {', '.join(d['combinations'])}")
            continue
        if not any("ideal" in e for e in d.get("signals", {}).values()):
            print(f"{path}: no ideal test, skipped")
            continue
        new = refresh_ideal(d, study_benchmark(d))
        new["ideal_refreshed"] = {"commit": commit(), **record}
        write_json_atomic(path, new)
        z = f"{float(new['z_thresholds'][-1]):g}"
        rows = "; ".join(f"{s}: {e['ideal']['power'][z]:.3f} -> "
                         f"{e['ideal'].get('power_at_size', e['ideal']['power'])[z]:.3f}"
                         for s, e in new["signals"].items() if "ideal" in e)
        print(f"{path}: reproduced; Z >= {z} exact -> at the study's size: {rows}")


if __name__ == "__main__":
    main()
