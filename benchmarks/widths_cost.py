"""Cost of one toy fitted at several kernel widths, against each width fitted alone.

For the same toys (same samples, same candidate centres) the script times

* ``each width alone``: one engine per width; the sum over widths of the per-toy
  times (what fitting the widths one by one costs);
* ``all widths, cold``: one engine fitting every width on each toy's sample, each
  fit from zero (``ToyEngine(warm_start=False)``);
* ``all widths, warm``: the same with warm starts (the default): the widths are fitted
  from the widest to the narrowest, each PCG fit starting from the previous width's
  solution (:func:`nplearn.toys.fit_widths`).

It reports the median time per toy, its ratio to the sum of the single widths, the
Newton steps per toy, and the largest difference of ``t`` between warm and cold (the
optimum does not depend on the start: the difference is the convergence tolerance).
Per-fit centres by default; ``--shared`` uses one set of centres drawn from a
reference pool of ``--pool`` events and reuses its features across toys. The toys of
each configuration run inside :func:`nplearn.learners.kernel.reuse_feature_memory`,
as in a calibration.

    python benchmarks/widths_cost.py --benchmark exp1d8 --sigma 0.1,0.3,0.7,1.4,2.3,4.5 \
        --centers 1000 --toys 5
    python benchmarks/widths_cost.py --benchmark gauss5d --sigma 2.98,4.33,5.51 \
        --centers 2000 --toys 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nplearn.benchmarks.suite import get_benchmark
from nplearn.learners.kernel import reuse_feature_memory
from nplearn.power import BenchmarkToy
from nplearn.toys import ToyEngine

from _common import save, warm_up


def engine(a: argparse.Namespace, bench, sigmas: tuple[float, ...], warm: bool,
           pool: np.ndarray | None) -> ToyEngine:
    params = {"sigma": sigmas[0], "n_centers": a.centers, "lam": a.lam, "inner": a.inner,
              "device": a.device}
    multi = sigmas if len(sigmas) > 1 else ()
    if pool is not None:
        return ToyEngine(params, float(bench.expected), a.seed, pool=pool,
                         shared_centers=True, sigmas=multi, warm_start=warm)
    return ToyEngine(params, float(bench.expected), a.seed,
                     generator=BenchmarkToy(bench, "none"), sigmas=multi, warm_start=warm)


def timed(eng: ToyEngine, toys: range) -> tuple[list[float], list[int], list[list[float]]]:
    # as in a calibration's toy loop: successive fits share one feature buffer
    with reuse_feature_memory():
        return _timed(eng, toys)


def _timed(eng: ToyEngine, toys: range) -> tuple[list[float], list[int], list[list[float]]]:
    times, iters, ts = [], [], []
    if eng.shared_centers:
        eng.run(toys[0])  # builds the shared basis and pool features (cached per engine)
    for i in toys:
        t0 = time.perf_counter()
        r = eng.run(i)
        times.append(time.perf_counter() - t0)
        if not r.ok:
            raise RuntimeError(f"toy {i} failed: {r.message}")
        iters.append(r.n_iter)
        ts.append(list(r.t_widths) if r.t_widths else [r.t])
    return times, iters, ts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", default="exp1d8")
    p.add_argument("--sigma", required=True, help="comma-separated kernel widths")
    p.add_argument("--centers", type=int, default=1000)
    p.add_argument("--lam", type=float, default=1e-6)
    p.add_argument("--inner", default="auto", choices=("auto", "direct", "cg"))
    p.add_argument("--toys", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--shared", action="store_true", help="shared centres from a pool")
    p.add_argument("--pool", type=int, default=None,
                   help="reference pool size with --shared (default 3 x N_R)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tag", default="")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    warm_up(a.device)
    sigmas = tuple(float(s) for s in a.sigma.split(","))
    bench = get_benchmark(a.benchmark)
    pool = None
    if a.shared:
        pool = bench.sample_reference_events(np.random.default_rng(a.seed),
                                             a.pool or 3 * bench.n_ref)
    toys = range(a.toys)
    single = {s: timed(engine(a, bench, (s,), True, pool), toys) for s in sigmas}
    alone = np.sum([single[s][0] for s in sigmas], axis=0)
    rows = [{"config": "each width alone (sum)", "median_s": float(np.median(alone)),
             "times_s": [float(x) for x in alone],
             "per_width_median_s": {str(s): float(np.median(single[s][0])) for s in sigmas},
             "newton_steps": float(np.median(np.sum([single[s][1] for s in sigmas], axis=0)))}]
    t_all = {}
    for warm in (False, True):
        times, iters, ts = timed(engine(a, bench, sigmas, warm, pool), toys)
        t_all[warm] = np.asarray(ts)
        rows.append({"config": f"all widths, {'warm' if warm else 'cold'}",
                     "median_s": float(np.median(times)),
                     "times_s": [float(x) for x in times],
                     "ratio_to_alone": float(np.median(np.asarray(times) / alone)),
                     "newton_steps": float(np.median(iters))})
    t_alone = np.column_stack([np.asarray(single[s][2])[:, 0] for s in sigmas])
    out = {
        "benchmark": a.benchmark, "n_ref": bench.n_ref, "expected": bench.expected,
        "sigmas": list(sigmas), "n_centers": a.centers, "lam": a.lam, "inner": a.inner,
        "centers_mode": "shared" if a.shared else "per-fit",
        "pool": None if pool is None else int(pool.shape[0]), "toys": a.toys,
        "threads": a.threads, "device": a.device, "rows": rows,
        "max_abs_dt_warm_vs_cold": float(np.abs(t_all[True] - t_all[False]).max()),
        "max_abs_dt_cold_vs_alone": float(np.abs(t_all[False] - t_alone).max()),
        "median_t": [float(x) for x in np.median(t_all[True], axis=0)],
    }
    mode = "shared" if a.shared else "perfit"
    path = save(f"widths_cost_{a.benchmark}_{mode}{a.tag}", out)
    for r in rows:
        print(r)
    print("max |t warm - t cold|", out["max_abs_dt_warm_vs_cold"],
          "max |t cold - t alone|", out["max_abs_dt_cold_vs_alone"], "->", path)


if __name__ == "__main__":
    main()
