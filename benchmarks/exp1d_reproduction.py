"""Reproduce the 1D exponential benchmark: null chi2 dof and median Z per signal.

Runs N null toys and N toys for each of the tail, bulk and non-resonant signals
(fresh reference and data per toy, exact densities), for one or both solver
schedules, and writes ``benchmarks/results/exp1d_<schedule>.json`` plus a
Markdown table on stdout. Paper settings by default: N_R = 2e5, N(R) = 2000,
sigma = 0.3, M = 3000, lambda = 1e-10.

    python benchmarks/exp1d_reproduction.py --null-toys 300 --signal-toys 100
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from nplearn import NPLMConfig, calibrate, fit_chi2_dof
from nplearn.benchmarks import PUBLISHED, Exp1D
from nplearn.benchmarks.runner import exp1d_engine, signal_stream
from nplearn.nplm import provenance
from nplearn.toys import run_toys

from _common import RESULTS, commit, machine, save


def run(schedule: str, n_null: int, n_sig: int, args: argparse.Namespace) -> dict:
    cfg = NPLMConfig(sigma=args.sigma, n_centers=args.centers, lam=args.lam, schedule=schedule,
                     standardize=False, workers=args.workers, seed=args.seed)
    t0 = time.perf_counter()
    null = run_toys(exp1d_engine(Exp1D("none"), cfg, 0), range(n_null), workers=args.workers)
    t_null = np.array([r.t for r in null if r.ok])
    dof, ksd, ksp = fit_chi2_dof(t_null)
    out = {
        "schedule": schedule, "config": cfg.to_dict(), "machine": machine(), "commit": commit(),
        "null": {"n": int(t_null.size), "n_failed": sum(not r.ok for r in null),
                 "n_not_converged": sum(not r.converged for r in null),
                 "chi2_dof": dof, "ks_distance": ksd, "ks_pvalue": ksp,
                 "mean_t": float(t_null.mean()), "median_t": float(np.median(t_null)),
                 "n_negative": int((t_null < 0).sum()),
                 "median_time_s": float(np.median([r.time for r in null])),
                 "t": t_null.tolist()},
        "signals": {},
    }
    for sig in ("tail", "bulk", "nonres"):
        gen = Exp1D(sig)
        toys = run_toys(exp1d_engine(gen, cfg, signal_stream(sig)), range(n_sig),
                        workers=args.workers)
        t = np.array([r.t for r in toys if r.ok])
        q16, q50, q84 = np.quantile(t, [0.16, 0.5, 0.84])
        c16, c50, c84 = (calibrate(q, t_null) for q in (q16, q50, q84))
        ideal = gen.ideal_median_z(np.random.default_rng(np.random.SeedSequence(
            args.seed, spawn_key=(5, signal_stream(sig)))), args.ideal_toys)
        out["signals"][sig] = {
            "n": int(t.size), "median_t": float(q50), "median_z_chi2": c50.z_chi2,
            "z_chi2_q16": c16.z_chi2, "z_chi2_q84": c84.z_chi2,
            "median_z_empirical": c50.z_empirical, "n_negative": int((t < 0).sum()),
            "ideal_median_z": ideal["z"], "ideal_toys": ideal["n_toys"],
            "published_kernel": PUBLISHED[sig]["kernel"],
            "published_ideal": PUBLISHED[sig]["ideal"],
            "median_time_s": float(np.median([r.time for r in toys])), "t": t.tolist(),
        }
        print(f"  [{schedule}] {sig}: median Z = {c50.z_chi2:.2f}", file=sys.stderr)
    out["wall_s"] = time.perf_counter() - t0
    out["provenance"] = provenance()
    return out


def table(results: list[dict]) -> str:
    lines = ["| schedule | null toys | null chi2 dof | signal | toys | median Z (chi2) "
             "[16%, 84%] | published kernel | ideal (ours) | ideal (published) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for sig, s in r["signals"].items():
            lines.append(
                f"| {r['schedule']} | {r['null']['n']} | {r['null']['chi2_dof']:.2f} | {sig} | "
                f"{s['n']} | {s['median_z_chi2']:.2f} [{s['z_chi2_q16']:.2f}, "
                f"{s['z_chi2_q84']:.2f}] | {s['published_kernel']} | "
                f"{s['ideal_median_z']:.2f} | {s['published_ideal']} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--null-toys", type=int, default=300)
    p.add_argument("--signal-toys", type=int, default=100)
    p.add_argument("--schedules", default="converged,onestep")
    p.add_argument("--sigma", type=float, default=0.3)
    p.add_argument("--centers", type=int, default=3000)
    p.add_argument("--lam", type=float, default=1e-10)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ideal-toys", type=int, default=20000)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    results = []
    for sched in args.schedules.split(","):
        r = run(sched, args.null_toys, args.signal_toys, args)
        save(f"exp1d_{sched}", r, args.out)
        results.append(r)
    print(f"machine: {results[0]['machine']}, commit {results[0]['commit']}")
    print(table(results))
    print(json.dumps({r["schedule"]: round(r["wall_s"], 1) for r in results}))


if __name__ == "__main__":
    main()
