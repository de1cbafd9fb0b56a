"""Add null toys to a stored power study and recompute every power from the larger null.

The new toys are the ones a study run with more null toys would have drawn, so the
result equals that study (``nplearn.power.extend_null``); the first stored null toy
is rerun first and the extension is refused if the current code no longer
reproduces it. With 3000 null toys ``Z >= 3`` is decided at p <= 4/3001 (Z >= 3.004)
instead of "beyond all 1000 toys" (Z >= 3.09).

    python benchmarks/extend_null.py benchmarks/results/power_exp1d8_6w.json --more 2000

writes ``power_exp1d8_6w_null3000.json`` next to the input (``--out`` to choose); the
input study is left as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nplearn.io import write_json_atomic
from nplearn.power import extend_null, format_power_table, study_benchmark

from _common import commit, progress_printer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--more", type=int, required=True, help="null toys to add")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    d = json.loads(a.file.read_text())
    total = int(d["null"]["n_requested"]) + a.more
    out = a.out or a.file.with_name(f"{a.file.stem}_null{total}.json")

    progress = progress_printer()
    new = extend_null(d, study_benchmark(d), a.more, workers=a.workers, progress=progress)
    new["null"]["extensions"][-1].update(
        commit=commit(), command="extend_null.py " + " ".join(sys.argv[1:]))
    write_json_atomic(out, new)
    print(f"wrote {out}", file=sys.stderr)
    print(format_power_table(new))


if __name__ == "__main__":
    main()
