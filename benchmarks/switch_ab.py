"""A/B timing of a solver switch: the same toys with the switch off, then on.

``--switch floor`` (``nplearn.learners.kernel.KERNEL_FLOOR``, windows off in both
arms): subnormal numbers in narrow kernels. A Gaussian kernel of width sigma on
events spread over many sigma has entries down to ``exp(-10^4)``: most of them
underflow, and x86 CPUs compute ``exp`` of arguments below -708 and products that
land in the subnormal range (below ~2.2e-308) on a slow path, up to ~100x slower.
The floor clips the kernel at :func:`nplearn.learners.kernel.negligible` (~3.5e-39
in float64) before the exponential and zeroes the entries of ``L_P^{-1}`` below it,
which keeps every product in the solver a normal number.

``--switch window`` (``WINDOWED_FEATURES``, floor on in both arms): narrow kernels
keep, for each block of events sorted along one coordinate, only the kernel columns
of the centres that can give an entry above the floor (``"window"`` features).

For the same toys the script runs each toy twice, alternating, off then on (so
drifts of the machine's speed hit both alike), and reports the median time per toy
and the largest relative difference of ``t`` between the two.

    python benchmarks/switch_ab.py --switch floor --benchmark exp1d8 --sigma 0.01 \
        --inner direct --toys 3
    python benchmarks/switch_ab.py --switch window --benchmark exp1d8 \
        --sigma 0.1,0.3,0.7,1.4,2.3,4.5 --toys 5

``--max-fraction 1`` windows every width it can (``WINDOW_MAX_FRACTION = 1``) and
records the windows' width as a fraction of the kept centres: the sweep that sets the
threshold (results ``window_threshold_*.json``).

    python benchmarks/switch_ab.py --switch window --benchmark gauss2d --sigma 0.1 \
        --toys 3 --max-fraction 1 --tag _mf1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nplearn.benchmarks.suite import get_benchmark
from nplearn.learners import kernel as kernel_mod
from nplearn.power import BenchmarkToy
from nplearn.toys import ToyEngine

from _common import save, warm_up

#: switch -> (module attribute switched, other attributes held fixed in both arms,
#: prefix of the result files)
SWITCHES = {
    "floor": ("KERNEL_FLOOR", {"WINDOWED_FEATURES": False}, "kernel_floor"),
    "window": ("WINDOWED_FEATURES", {"KERNEL_FLOOR": True}, "window_features"),
}


def run(eng: ToyEngine, index: int, switch: str, on: bool,
        max_fraction: float | None = None) -> dict:
    """Toy ``index`` of ``eng`` with ``switch`` on or off (``max_fraction``: the
    ``WINDOW_MAX_FRACTION`` of both arms; ``None`` keeps the library's)."""
    name, fixed, _ = SWITCHES[switch]
    settings = {**fixed, name: on}
    if max_fraction is not None:
        settings["WINDOW_MAX_FRACTION"] = max_fraction
    old = {k: getattr(kernel_mod, k) for k in settings}
    for k, v in settings.items():
        setattr(kernel_mod, k, v)
    # the window plans of the fit (their width as a fraction of the kept centres)
    plans: list[float] = []
    real_plan = kernel_mod._window_plan

    def spy(X, P, *args, **kwargs):
        plan = real_plan(X, P, *args, **kwargs)
        if plan is not None:
            plans.append(plan.width / P.shape[0])
        return plan

    kernel_mod._window_plan = spy
    try:
        t0 = time.perf_counter()
        r = eng.run(index)
        wall = time.perf_counter() - t0
    finally:
        kernel_mod._window_plan = real_plan
        for k, v in old.items():
            setattr(kernel_mod, k, v)
    if not r.ok or not r.converged:
        raise RuntimeError(f"toy {index} ({switch} {on}) failed: {r.message}")
    ts = list(r.t_widths) if r.t_widths else [r.t]
    ranks = list(r.rank_widths) if r.rank_widths else [r.rank]
    return {"t": [float(x) for x in ts], "rank": [int(x) for x in ranks], "time_s": wall,
            "window_fraction": plans}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--switch", default="floor", choices=tuple(SWITCHES))
    p.add_argument("--benchmark", default="exp1d8")
    p.add_argument("--sigma", required=True, help="one width or a comma-separated list")
    p.add_argument("--centers", type=int, default=1000)
    p.add_argument("--lam", type=float, default=1e-6)
    p.add_argument("--inner", default="auto", choices=kernel_mod.INNER_SOLVERS)
    p.add_argument("--toys", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    p.add_argument("--max-fraction", type=float, default=None,
                   help="WINDOW_MAX_FRACTION in both arms (default: the library's "
                        f"{kernel_mod.WINDOW_MAX_FRACTION}); 1 windows every width it can")
    a = p.parse_args()
    if a.max_fraction is not None and (a.switch != "window" or not 0 < a.max_fraction <= 1):
        p.error("--max-fraction needs --switch window and a value in (0, 1]")
    torch.set_num_threads(a.threads)
    warm_up("cpu")
    sigmas = tuple(float(s) for s in a.sigma.split(","))
    bench = get_benchmark(a.benchmark)
    params = {"sigma": sigmas[0], "n_centers": a.centers, "lam": a.lam, "inner": a.inner}
    eng = ToyEngine(params, float(bench.expected), a.seed, generator=BenchmarkToy(bench, "none"),
                    sigmas=sigmas if len(sigmas) > 1 else ())
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for i in range(a.toys):
        for key, on in (("off", False), ("on", True)):
            runs[key].append(run(eng, i, a.switch, on, a.max_fraction))
            print(i, key, runs[key][-1], flush=True)
    rel = [abs(x - y) / max(abs(y), 1e-300)
           for on, off in zip(runs["on"], runs["off"], strict=True)
           for x, y in zip(on["t"], off["t"], strict=True)]
    med = {k: float(np.median([r["time_s"] for r in v])) for k, v in runs.items()}
    out = {"switch": a.switch, "benchmark": a.benchmark, "n_ref": bench.n_ref,
           "expected": bench.expected,
           "sigmas": list(sigmas), "n_centers": a.centers, "lam": a.lam, "inner": a.inner,
           "toys": a.toys, "threads": a.threads,
           "window_max_fraction": (kernel_mod.WINDOW_MAX_FRACTION if a.max_fraction is None
                                   else a.max_fraction),
           "median_window_fraction": float(np.median(
               [x for r in runs["on"] for x in r["window_fraction"]]))
           if any(r["window_fraction"] for r in runs["on"]) else None,
           "median_rank": [float(np.median([r["rank"][k] for r in runs["on"]]))
                           for k in range(len(sigmas))],
           "median_s_off": med["off"], "median_s_on": med["on"],
           "speedup": med["off"] / med["on"], "max_rel_dt": float(max(rel)), "runs": runs}
    name = "_".join(f"{s:g}" for s in sigmas) if len(sigmas) <= 2 else \
        f"{min(sigmas):g}-{max(sigmas):g}_{len(sigmas)}w"
    # a run with its own threshold is a threshold sweep, tabulated apart
    prefix = SWITCHES[a.switch][2] if a.max_fraction is None else "window_threshold"
    path = save(f"{prefix}_{a.benchmark}_s{name}_M{a.centers}_{a.inner}{a.tag}", out)
    print(f"{a.switch} off {med['off']:.2f} s, on {med['on']:.2f} s "
          f"(x{out['speedup']:.2f}); max relative |dt| {out['max_rel_dt']:.1e} -> {path}")


if __name__ == "__main__":
    main()
