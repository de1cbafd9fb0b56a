"""The neural-network learner on the 1D exponential benchmark (REFERENCE.md §2), or on
a multivariate power-suite benchmark (``--benchmark gauss5d``) at its default sizes.

Every toy draws its own reference (N_R events of the reference density) and data set
(Poisson(N(R)) reference events plus Poisson(N(S)) signal events), standardised with
the toy's reference, and trains the NPLM network (1-4-1, sigmoid, weight clip 9 by
default) with ``--n-init`` starts by L-BFGS-B. The t of every start is recorded, so the
statistic of one start (the first, which is the ``n_init = 1`` fit of the same
generator) and of the best of all starts come from the same toys.

Reported (``tables.py``): the chi-square dof of the null against the network's number
of parameters, the median Z of each signal from the fitted chi-square (how the
published studies quote it), the time per toy, and the cost of one Adam epoch (the
published optimiser) measured on one toy.

    python neural_1d.py --null 100 --signal-toys 20 --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from typing import Any

import numpy as np
import torch

from nplearn.benchmarks import Exp1D
from nplearn.benchmarks.suite import get_benchmark
from nplearn.learners import NeuralNetworkLearner
from nplearn.preprocess import Standardizer
from nplearn.toys import nplm_fit

from _common import save

SIGNALS = ("tail", "bulk", "nonres")


def _sample(kind: str, rng: np.random.Generator, opt: dict[str, Any]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Reference and data of one toy: the 1D benchmark (``exp1d``) or a power-suite
    benchmark (``gauss2d``, ``gauss5d``, ...) at its default sizes."""
    if opt["benchmark"] == "exp1d":
        gen = Exp1D("none" if kind == "null" else kind, n_ref=opt["n_ref"],
                    expected=opt["expected"])
        return Exp1D.sample_reference_events(rng, opt["n_ref"]), gen.sample_data(rng)
    bench = get_benchmark(opt["benchmark"])
    return (bench.sample_reference_events(rng, bench.n_ref),
            bench.sample_data(rng, "none" if kind == "null" else kind))


def _toy(args: tuple[str, int, dict[str, Any]]) -> dict[str, Any]:
    """One toy: sample, standardise with its reference, train, record every start."""
    kind, index, opt = args
    torch.set_num_threads(1)
    signals = opt["signals"]
    ss = np.random.SeedSequence(opt["seed"], spawn_key=(signals.index(kind) + 1
                                                         if kind in signals else 0, index))
    s_sample, s_fit = ss.spawn(2)
    rng = np.random.default_rng(s_sample)
    ref, data = _sample(kind, rng, opt)
    std = Standardizer.fit(ref)  # as nplm_test does
    w = np.full(len(ref), opt["expected"] / len(ref))  # N(R) of the benchmark
    t0 = time.perf_counter()
    learner = NeuralNetworkLearner(hidden=opt["hidden"], weight_clip=opt["weight_clip"],
                                   n_init=opt["n_init"])
    t, n_w, info, _ = nplm_fit(std.transform(ref), std.transform(data), w, learner, s_fit)
    dt = time.perf_counter() - t0
    return {"kind": kind, "index": index, "n_data": len(data), "t": t, "n_w": n_w,
            "start_t": info.start_t, "time_s": dt, "n_evals": info.n_evals,
            "converged": info.converged, "at_clip": info.at_clip, "grad_norm": info.grad_norm}


def adam_epoch_cost(opt: dict[str, Any], epochs: int) -> dict[str, float]:
    """Seconds per full-batch Adam epoch on one null toy of the benchmark's size."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(opt["seed"])
    ref = Exp1D.sample_reference_events(rng, opt["n_ref"])
    data = Exp1D("none", n_ref=opt["n_ref"], expected=opt["expected"]).sample_data(rng)
    std = Standardizer.fit(ref)
    w = np.full(len(ref), opt["expected"] / len(ref))
    out = {}
    for dtype in ("float64", "float32"):
        t0 = time.perf_counter()
        learner = NeuralNetworkLearner(hidden=opt["hidden"], weight_clip=opt["weight_clip"],
                                       optimizer="adam", epochs=epochs, n_init=1,
                                       dtype=dtype)
        nplm_fit(std.transform(ref), std.transform(data), w, learner,
                 np.random.SeedSequence(0))
        out[dtype] = (time.perf_counter() - t0) / epochs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--null", type=int, default=100, help="null toys")
    ap.add_argument("--signal-toys", type=int, default=20, help="toys per signal")
    ap.add_argument("--benchmark", default="exp1d",
                    help="exp1d (default) or a power-suite benchmark (gauss2d, gauss5d, "
                         "gauss10d) at its default sizes")
    ap.add_argument("--n-ref", type=int, default=200_000, help="exp1d only")
    ap.add_argument("--expected", type=float, default=2000.0, help="exp1d only")
    ap.add_argument("--hidden", type=int, nargs="+", default=None,
                    help="default: the learner's (1-4-1 in 1D, d-d-d-d-1 otherwise)")
    ap.add_argument("--weight-clip", type=float, default=None,
                    help="default: the learner's (9 in 1D, 2.15 otherwise)")
    ap.add_argument("--n-init", type=int, default=4)
    ap.add_argument("--adam-epochs", type=int, default=300,
                    help="epochs of the Adam cost measurement (0: skip)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    if a.benchmark == "exp1d":
        d, signals, n_ref, expected = 1, list(SIGNALS), a.n_ref, a.expected
    else:
        bench = get_benchmark(a.benchmark)
        d, signals, n_ref, expected = bench.d, bench.signals(), bench.n_ref, bench.expected
    net = NeuralNetworkLearner(hidden=a.hidden, weight_clip=a.weight_clip)
    opt = {"seed": a.seed, "benchmark": a.benchmark, "n_ref": n_ref, "expected": expected,
           "hidden": list(net.resolved_hidden(d)), "weight_clip": net.resolved_weight_clip(d),
           "n_init": a.n_init, "signals": signals, "d": d}
    jobs = [("null", i, opt) for i in range(a.null)]
    jobs += [(s, i, opt) for s in signals for i in range(a.signal_toys)]
    t0 = time.perf_counter()
    toys = []
    with mp.get_context("spawn").Pool(a.workers) as pool:
        for k, r in enumerate(pool.imap_unordered(_toy, jobs), 1):
            toys.append(r)
            if k % 10 == 0 or k == len(jobs):
                print(f"{k}/{len(jobs)} toys, {time.perf_counter() - t0:.0f} s", flush=True)
    toys.sort(key=lambda r: (r["kind"], r["index"]))
    wall = time.perf_counter() - t0
    adam = adam_epoch_cost(opt, a.adam_epochs) if a.adam_epochs and a.benchmark == "exp1d" \
        else None
    name = "neural_1d" if a.benchmark == "exp1d" else f"neural_{a.benchmark}"
    out = save(f"{name}{a.tag}", {
        "benchmark": a.benchmark, "options": opt, "signals": signals, "workers": a.workers,
        "wall_s": wall, "toys": toys, "adam_s_per_epoch": adam,
        "adam_epochs_measured": a.adam_epochs,
        "torch": torch.__version__})
    print(f"written {out}")


if __name__ == "__main__":
    main()
