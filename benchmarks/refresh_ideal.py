"""Recompute the ideal (Neyman-Pearson) rows of stored power studies.

The ideal toys are redrawn from each study's seed and each signal's stream
(:func:`nplearn.power.refresh_ideal`); the stored power at the exact thresholds must
come out identical, which checks that the generator and the densities have not
changed. The refreshed entry adds ``power_at_size``: the power at the sizes the
toy-calibrated tests of the same study use (``k / (n_null + 1)``), the like-for-like
row of the tables. The file is rewritten with an ``ideal_refreshed`` record (commit and
command); everything else is left as the study wrote it.

    python benchmarks/refresh_ideal.py benchmarks/results/power_gauss2d_1k_null3000.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nplearn.io import write_json_atomic
from nplearn.power import refresh_ideal, study_benchmark

from _common import commit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    a = p.parse_args()
    for path in a.files:
        d = json.loads(path.read_text())
        if not any("ideal" in e for e in d.get("signals", {}).values()):
            print(f"{path}: no ideal test, skipped")
            continue
        new = refresh_ideal(d, study_benchmark(d))
        new["ideal_refreshed"] = {"commit": commit(),
                                  "command": "refresh_ideal.py " + " ".join(sys.argv[1:])}
        write_json_atomic(path, new)
        rows = "; ".join(f"{s}: {e['ideal']['power']['3']:.3f} -> "
                         f"{e['ideal']['power_at_size']['3']:.3f}"
                         for s, e in new["signals"].items() if "ideal" in e)
        print(f"{path}: reproduced; Z >= 3 exact -> at the study's size: {rows}")


if __name__ == "__main__":
    main()
