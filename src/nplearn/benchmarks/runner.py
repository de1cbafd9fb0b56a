"""Driver of ``nplearn bench exp1d``: null and signal toys, Z table, ideal test."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from ..config import NPLMConfig, budget_bytes
from ..errors import InputError
from ..stats import calibrate, fit_chi2_dof
from ..toys import ToyEngine, ToyResult, resolve_workers, run_toys
from .exp1d import PUBLISHED, SIGNALS, Exp1D

__all__ = ["exp1d_engine", "exp1d_study", "run_exp1d", "signal_stream"]


def signal_stream(signal: str) -> int:
    """Random-stream family of the toys of ``signal`` (0 for the null)."""
    return list(SIGNALS).index(signal)


def exp1d_engine(gen: Exp1D, cfg: NPLMConfig, stream: int) -> ToyEngine:
    """Toy engine drawing fresh reference and data sets from ``gen`` (no standardisation).

    ``cfg.sigma`` and ``cfg.n_centers`` must be set. Null toys use stream 0; the
    signal toys of signal ``s`` use ``signal_stream(s)``.
    """
    params = {**cfg.learner_params(), "sigma": float(cfg.sigma), "n_centers": cfg.n_centers}
    return ToyEngine(params, gen.expected, cfg.seed, generator=gen, stream=stream)


def exp1d_study(
    signal: str,
    n_toys: int,
    n_null: int,
    cfg: NPLMConfig,
    *,
    n_ref: int = 200_000,
    expected: float = 2000.0,
    ideal_toys: int = 20000,
    progress: Any = None,
) -> dict[str, Any]:
    """Run the 1D benchmark: ``n_null`` null toys and ``n_toys`` signal toys.

    Every toy draws a fresh reference sample and data set from the exact
    densities. Signal toys use a random stream separate from the null toys.

    Returns
    -------
    dict
        Per-toy results, null chi-square fit, median Z (chi-square and toys) and
        the ideal test's median Z.
    """
    null_gen = Exp1D("none", n_ref=n_ref, expected=expected)
    null = run_toys(exp1d_engine(null_gen, cfg, 0), range(n_null), workers=cfg.workers,
                    threads_per_worker=cfg.threads_per_worker,
                    progress=progress("null toys") if progress else None)
    t_null = np.array([r.t for r in null if r.ok])
    out: dict[str, Any] = {
        "benchmark": "exp1d", "signal": signal, "n_ref": n_ref, "expected": expected,
        "config": cfg.to_dict(), "null_toys": [r.to_dict() for r in null],
        "workers": resolve_workers(cfg.workers, cfg.device, max(n_null, n_toys)),
    }
    if t_null.size >= 5:
        dof, ksd, ksp = fit_chi2_dof(t_null)
        out["null"] = {"n": int(t_null.size), "mean_t": float(t_null.mean()),
                       "median_t": float(np.median(t_null)), "chi2_dof": dof,
                       "ks_distance": ksd, "ks_pvalue": ksp,
                       "n_negative": int((t_null < 0).sum()),
                       "median_time_s": float(np.median([r.time for r in null]))}
    if signal == "none":
        return out
    gen = Exp1D(signal, n_ref=n_ref, expected=expected)
    stream = signal_stream(signal)
    sig = run_toys(exp1d_engine(gen, cfg, stream), range(n_toys), workers=cfg.workers,
                   threads_per_worker=cfg.threads_per_worker,
                   progress=progress(f"{signal} toys") if progress else None)
    out["signal_toys"] = [r.to_dict() for r in sig]
    t_sig = np.array([r.t for r in sig if r.ok])
    # Z is monotone in t, so the median (quantile) Z is the Z of the median
    # (quantile) t; this also stays defined when a toy has p = 1 (Z = -inf).
    q16, q50, q84 = np.quantile(t_sig, [0.16, 0.5, 0.84])
    med, lo, hi = (calibrate(q, t_null) for q in (q50, q16, q84))
    ideal = gen.ideal_median_z(np.random.default_rng(
        np.random.SeedSequence(cfg.seed, spawn_key=(5, stream))), ideal_toys)
    out["signal_summary"] = {
        "name": signal, "n": int(t_sig.size), "n_signal_expected": gen.signal_yield,
        "median_t": float(q50),
        "median_z_chi2": med.z_chi2,
        "z_chi2_q16_q84": [lo.z_chi2, hi.z_chi2],
        "median_z_empirical": med.z_empirical,
        "n_negative_t": int((t_sig < 0).sum()),
        "z_empirical_max": float(calibrate(np.inf, t_null).z_empirical) if t_null.size else None,
        "ideal": ideal,
        "published": PUBLISHED.get(signal),
        "median_time_s": float(np.median([r.time for r in sig])),
    }
    return out


def _print_toys(title: str, toys: list[ToyResult], stream=sys.stdout) -> None:
    print(f"\n{title}", file=stream)
    print(f"{'toy':>5} {'t':>10} {'N_D':>6} {'N_w':>9} {'rank':>5} {'newton':>6} "
          f"{'fit s':>7}  status", file=stream)
    for r in toys:
        status = "ok" if r.ok and r.converged else r.message
        print(f"{r.index:5d} {r.t:10.4f} {r.n_data:6d} {r.n_w:9.2f} {r.rank:5d} "
              f"{r.n_iter:6d} {r.time:7.3f}  {status}", file=stream)


def run_exp1d(a: argparse.Namespace) -> int:
    """Command-line driver (arguments from ``nplearn bench exp1d``)."""
    from ..cli import Progress
    from ..io import write_json_atomic
    from ..nplm import provenance

    n_null = a.null_toys if a.null_toys is not None else a.toys
    sigma = a.sigma
    if isinstance(sigma, list):
        if len(sigma) > 1:
            raise InputError("bench exp1d takes one kernel width; several widths are for "
                             "`nplearn test` and `nplearn power`")
        sigma = sigma[0]
    cfg = NPLMConfig(n_toys=n_null, sigma=sigma, n_centers=a.centers, lam=a.lam,
                     schedule=a.schedule, inner=a.inner, tol=a.tol, rank_tol=a.rank_tol,
                     device=a.device, dtype=a.dtype, workers=a.workers, seed=a.seed,
                     standardize=False, expected=a.expected,
                     memory_budget=budget_bytes(getattr(a, "memory_budget", None)))
    if cfg.sigma is None:
        cfg = cfg.replace(sigma=0.3)
    if cfg.n_centers is None:
        cfg = cfg.replace(n_centers=3000)

    def progress(label: str):
        return Progress(label, enabled=None if not a.quiet else False)

    print(f"nplearn bench exp1d: signal={a.signal}, N_R={a.n_ref}, N(R)={a.expected:g}, "
          f"sigma={cfg.sigma:g}, M={cfg.n_centers}, lambda={cfg.lam:g}, "
          f"schedule={cfg.schedule}, null toys={n_null}"
          + (f", signal toys={a.toys}" if a.signal != "none" else ""))
    res = exp1d_study(a.signal, a.toys, n_null, cfg, n_ref=a.n_ref, expected=a.expected,
                      ideal_toys=a.ideal_toys, progress=progress)
    _print_toys("null toys", [ToyResult(**d) for d in res["null_toys"]])
    if "signal_toys" in res:
        _print_toys(f"{a.signal} signal toys", [ToyResult(**d) for d in res["signal_toys"]])
    nl = res.get("null")
    print("\nsummary")
    if nl:
        print(f"  null: {nl['n']} toys, mean t = {nl['mean_t']:.2f}, median t = "
              f"{nl['median_t']:.2f}, chi2 fit dof = {nl['chi2_dof']:.2f} (KS distance "
              f"{nl['ks_distance']:.3f}, nominal KS p = {nl['ks_pvalue']:.2f}), negative t: "
              f"{nl['n_negative']}, median fit time {nl['median_time_s']:.3f} s")
    s = res.get("signal_summary")
    if s:
        pub = s["published"] or {}
        print(f"  {a.signal}: {s['n']} toys, median t = {s['median_t']:.2f}, median Z = "
              f"{s['median_z_chi2']:.2f} (chi2 extrapolation; 68% of toys in "
              f"[{s['z_chi2_q16_q84'][0]:.2f}, {s['z_chi2_q16_q84'][1]:.2f}]), "
              f"toy-based median Z = {s['median_z_empirical']:.2f} (toys cap Z at "
              f"{s['z_empirical_max']:.2f})")
        print(f"  ideal (Neyman-Pearson) median Z = {s['ideal']['z']:.2f} "
              f"({s['ideal']['n_toys']} toys)")
        if pub:
            print(f"  published: kernel NPLM median Z = {pub['kernel']}, ideal = {pub['ideal']}")
    res["provenance"] = provenance()
    res["provenance"]["command"] = " ".join(sys.argv)
    if a.json:
        write_json_atomic(a.json, res)
        print(f"result written to {a.json}")
    return 0
