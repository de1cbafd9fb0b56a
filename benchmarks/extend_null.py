"""Add null toys (or signal toys) to a stored power study and recompute every power.

The new toys are the ones a study run with more toys would have drawn, so the result
equals that study (``nplearn.power.extend_study``); the first stored toy of each
extended sample is rerun first and the extension is refused if the current code no
longer reproduces it. With 3000 null toys ``Z >= 3`` is decided at p <= 4/3001
(Z >= 3.004) instead of "beyond all 1000 toys" (Z >= 3.09).

    python benchmarks/extend_null.py benchmarks/results/power_exp1d8_6w.json --more 2000
    python benchmarks/extend_null.py results/power_gauss10d_default_seed2.json --more-signal 100

writes ``power_exp1d8_6w_null3000.json`` (``..._sig300.json`` for signal toys) next to
the input (``--out`` to choose); the input study is left as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nplearn.io import write_json_atomic
from nplearn.power import extend_study, format_power_table, study_benchmark

from _common import commit, progress_printer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--more", type=int, default=0, help="null toys to add")
    p.add_argument("--more-signal", type=int, default=0, help="toys to add to each signal")
    p.add_argument("--signals", default=None,
                   help="comma-separated signals that get --more-signal toys (default all)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    if a.more < 0 or a.more_signal < 0 or a.more + a.more_signal == 0:
        p.error("give --more and/or --more-signal (non-negative)")
    if a.signals is not None and not a.more_signal:
        p.error("--signals chooses the signals that get --more-signal toys")
    d = json.loads(a.file.read_text())
    signals = None if a.signals is None else a.signals.split(",")
    targets = list(d["signals"]) if signals is None else signals
    unknown = sorted(set(targets) - set(d["signals"]))
    if a.more_signal and unknown:
        p.error(f"signal(s) {', '.join(unknown)} are not in {a.file.name}")
    suffix = ""
    if a.more > 0:
        suffix += f"_null{int(d['null']['n_requested']) + a.more}"
    if a.more_signal > 0:
        counts = {int(d["signals"][s]["n_requested"]) + a.more_signal for s in targets}
        suffix += "_sig" + "-".join(str(c) for c in sorted(counts))
    out = a.out or a.file.with_name(f"{a.file.stem}{suffix}.json")

    new = extend_study(d, study_benchmark(d), n_null=a.more, n_signal=a.more_signal,
                       signals=signals, workers=a.workers, progress=progress_printer(),
                       record=dict(commit=commit(),
                                   command="extend_null.py " + " ".join(sys.argv[1:])))
    write_json_atomic(out, new)
    print(f"wrote {out}", file=sys.stderr)
    print(format_power_table(new))


if __name__ == "__main__":
    main()
