"""Power table of single widths, combinations, comparison tests and the ideal test.

Runs :func:`nplearn.power.power_study` on a benchmark of
:mod:`nplearn.benchmarks.suite` and writes ``results/power_<benchmark><tag>.json``.
The 1D suite at the published multiple-testing settings (x' = 8x scale,
N_R = 2e5, N(R) = 2000, M = 1000, lambda = 1e-6):

    python benchmarks/power.py --benchmark exp1d8 --null-toys 1000 --signal-toys 300
    python benchmarks/power.py --benchmark gauss2d --n-ref 20000 --expected 1000 \\
        --signal-scale 0.45 --null-toys 300 --signal-toys 100 --sigma 0.7,1.5,3 \\
        --centers 300 --tag _small
"""

from __future__ import annotations

import argparse
import dataclasses

from nplearn.benchmarks.suite import get_benchmark
from nplearn.power import format_power_table, power_study

from _common import progress_printer, save


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", default="exp1d8")
    p.add_argument("--signals", default=None, help="comma-separated (default all)")
    p.add_argument("--null-toys", type=int, default=1000)
    p.add_argument("--signal-toys", type=int, default=300)
    p.add_argument("--n-ref", type=int, default=None)
    p.add_argument("--expected", type=float, default=None)
    p.add_argument("--signal-scale", type=float, default=None,
                   help="multiply the benchmark's signal yields (n_signal_scale)")
    p.add_argument("--sigma", default="0.1,0.3,0.7,1.4,2.3,4.5")
    p.add_argument("--centers", type=int, default=1000)
    p.add_argument("--lam", type=float, default=1e-6)
    p.add_argument("--schedule", default="converged")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--baselines", default=None, help="comma-separated, 'none' or default all")
    p.add_argument("--baseline-max-ref", type=int, default=None,
                   help="reference subsample of the energy and MMD tests (default 20000)")
    p.add_argument("--ideal-toys", type=int, default=20000)
    p.add_argument("--shape-only", action="store_true",
                   help="reference normalised to each toy's data count (power_study)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    a = p.parse_args()
    bench = get_benchmark(a.benchmark)
    changes = {k: v for k, v in (("n_ref", a.n_ref), ("expected", a.expected),
                                 ("n_signal_scale", a.signal_scale)) if v is not None}
    if changes:
        bench = dataclasses.replace(bench, **changes)
    baselines = None if a.baselines is None else (
        [] if a.baselines == "none" else a.baselines.split(","))

    progress = progress_printer()
    res = power_study(bench, signals=None if a.signals is None else a.signals.split(","),
                      n_null=a.null_toys, n_signal=a.signal_toys,
                      sigmas=[float(s) for s in a.sigma.split(",")], n_centers=a.centers,
                      lam=a.lam, schedule=a.schedule, temperature=a.temperature,
                      baselines=baselines, baseline_max_ref=a.baseline_max_ref,
                      ideal_toys=a.ideal_toys, shape_only=a.shape_only, seed=a.seed,
                      workers=a.workers, progress=progress)
    save(f"power_{a.benchmark}{a.tag}", res)
    print(format_power_table(res))


if __name__ == "__main__":
    main()
