"""Recompute the combination rows of stored power studies with the current code.

A power study keeps every toy's statistics (``power.py`` since commit e7154c0), so a
change of the combination procedure needs no new toys. The file is rewritten with
the new combination entries and a ``combinations_recomputed`` record (commit and
command); everything else is left as the study wrote it.

    python benchmarks/recombine.py benchmarks/results/power_exp1d8_6w.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nplearn.io import write_json_atomic
from nplearn.power import recombine

from _common import commit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    a = p.parse_args()
    for path in a.files:
        d = json.loads(path.read_text())
        new = recombine(d)
        new["combinations_recomputed"] = {
            "commit": commit(),
            "command": "recombine.py " + " ".join(sys.argv[1:]),
        }
        write_json_atomic(path, new)
        print(f"{path}: recomputed {', '.join(d['combinations'])}")


if __name__ == "__main__":
    main()
