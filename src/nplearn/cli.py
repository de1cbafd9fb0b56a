"""The ``nplearn`` command.

Exit codes: 0 success, 2 bad input or usage (one-line message on stderr),
1 unexpected internal error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM),
141 standard output closed by its reader.
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ._version import __version__
from .errors import InputError, MissingDependencyError, NplearnError
from .multitest import COMBINATIONS

log = logging.getLogger("nplearn")

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_INTERRUPT, EXIT_TERMINATED = 0, 1, 2, 130, 143
#: Exit code when standard output was closed by its reader (128 + SIGPIPE, as a shell).
EXIT_PIPE = 141


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


class Progress:
    """Progress of the toys on stderr: a line redrawn in place on a terminal; in a
    batch log (stderr not a terminal) one line every ``log_every`` seconds, so a short
    run prints nothing and a long one leaves a trace.

    The rate and ETA count the toys run since the first call (toys loaded from a
    checkpoint are part of the count, not of the rate).
    """

    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool | None = None,
                 log_every: float = 60.0):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if enabled is None else enabled
        self.logging = enabled is None and not self.tty
        self.label = label
        self.log_every = float(log_every)
        self.t0: float | None = None
        self.done0 = 0
        self.last = 0.0
        self.logged = False

    def __call__(self, done: int, total: int) -> None:
        if not (self.tty or self.logging):
            return
        now = time.perf_counter()
        if self.t0 is None:  # the baseline: toys already done (from a checkpoint)
            self.t0, self.done0, self.last = now, done, now if self.logging else 0.0
            if self.logging:
                return
        el = now - self.t0
        rate = (done - self.done0) / el if el > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else math.inf
        eta_s = f"{eta:5.0f}s" if math.isfinite(eta) else "    ?"
        if self.logging:
            final = done >= total and self.logged
            if not final and now - self.last < self.log_every:
                return
            self.last, self.logged = now, True
            self.stream.write(f"{time.strftime('%H:%M:%S')} {self.label}: {done}/{total} "
                              f"done, {rate:.3g}/s, ETA {eta_s.strip()}\n")
            self.stream.flush()
            return
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        width = 24
        fill = int(width * done / max(total, 1))
        self.stream.write(
            f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} "
            f"{rate:6.2f}/s ETA {eta_s}"
        )
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


# ------------------------------------------------------------------ arguments


def _str_list(s: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (argparse type; empty items dropped)."""
    return [c.strip() for c in s.split(",") if c.strip()]


def _number_list(s: str) -> list[float]:
    """``"0.3"`` or ``"0.1,0.3,0.7"`` -> list of floats (argparse type)."""
    try:
        out = [float(c) for c in _str_list(s)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or comma-separated numbers, got "
                                         f"{s!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one number")
    return out


def _add_solver_args(p: argparse.ArgumentParser, *, sigma_default: Any = None,
                     centers_default: Any = None, lam_default: float = 1e-6) -> None:
    g = p.add_argument_group("kernel learner")
    if sigma_default is None:  # `test`
        sigma_help = ("Gaussian kernel width in standardised units, or several "
                      "comma-separated widths for a multiple test (e.g. 0.1,0.3,0.7,1.4,2.4); "
                      "default: the 90th percentile of reference pairwise distances")
    else:  # a benchmark's fixed settings
        sigma_help = f"Gaussian kernel width in benchmark units (default {sigma_default:g})"
    g.add_argument("--sigma", type=_number_list, default=sigma_default, help=sigma_help)
    g.add_argument("--centers", type=int, default=centers_default, metavar="M",
                   help="candidate Nystrom centres (default "
                        + ("max(1000, 2 sqrt(n)))" if centers_default is None
                           else f"{centers_default})"))
    g.add_argument("--lam", type=float, default=lam_default, metavar="L",
                   help=f"penalty lambda (default {lam_default:g})")
    g.add_argument("--schedule", choices=("converged", "onestep"), default="converged",
                   help="converged Newton (default) or the published one-step schedule")
    g.add_argument("--inner", choices=("auto", "direct", "cg"), default="auto",
                   help="inner linear solver of each Newton step (default auto)")
    g.add_argument("--tol", type=float, default=1e-8,
                   help="converged schedule: bound on n*(J - J*) (default 1e-8)")
    g.add_argument("--rank-tol", type=float, default=None,
                   help="pivoted-Cholesky tolerance (default from lambda)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    g.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision of the large kernel products (default float64)")
    g.add_argument("--memory-budget", type=float, default=None, metavar="GIB",
                   help="GiB of cached kernel features per fit (default: a quarter of the "
                        "memory, at most 8 GiB, or half the free memory of a GPU, split "
                        "between the workers; give it for toys bit-identical across worker "
                        "counts)")


def _int_list(s: str) -> list[int]:
    """``"5,5,5"`` -> ``[5, 5, 5]`` (argparse type)."""
    try:
        return [int(c) for c in _str_list(s)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}"
                                         ) from None


def _add_nn_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("neural-network learner (--learner neural)")
    g.add_argument("--learner", choices=("kernel", "neural"), default="kernel",
                   help="kernel (default): Nystrom kernel logistic regression; neural: the "
                        "original NPLM network with weight clipping")
    g.add_argument("--nn-hidden", type=_int_list, default=None, metavar="H,H,...",
                   help="hidden-layer widths (default 4 in 1D, d,d,d otherwise)")
    g.add_argument("--nn-activation", choices=("sigmoid", "tanh", "relu"), default="sigmoid",
                   help="hidden-layer activation (default sigmoid)")
    g.add_argument("--nn-weight-clip", type=float, default=None, metavar="W",
                   help="bound on every weight, biases free (default 9 in 1D, 2.15 otherwise; "
                        "tune it so that the null chi2 dof is near the number of parameters)")
    g.add_argument("--nn-optimizer", choices=("lbfgs", "adam"), default="lbfgs",
                   help="lbfgs (default): L-BFGS-B to convergence; adam: the published "
                        "fixed-epoch full-batch Adam (slow)")
    g.add_argument("--nn-epochs", type=int, default=None, metavar="N",
                   help="Adam epochs (default 50000) or L-BFGS-B iteration cap (default 10000)")
    g.add_argument("--nn-lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    g.add_argument("--nn-tol", type=float, default=0.05,
                   help="adam: largest change of the loss over the last 10%% of the epochs "
                        "for a converged fit (default 0.05)")
    g.add_argument("--nn-n-init", type=int, default=1, metavar="K",
                   help="trainings from independent initial weights per fit, the best kept "
                        "(default 1)")


def _add_run_args(p: argparse.ArgumentParser, toys_default: int,
                  toys_help: str = "null pseudo-experiments") -> None:
    g = p.add_argument_group("calibration and output")
    g.add_argument("--toys", type=int, default=toys_default, metavar="N",
                   help=f"{toys_help} (default {toys_default})")
    g.add_argument("--workers", type=int, default=None,
                   help="worker processes for the toys (default: all cores; on --device cuda "
                        "one per visible GPU)")
    g.add_argument("--seed", type=int, default=0, help="master random seed (default 0)")
    g.add_argument("--json", default=None, metavar="FILE", help="write the result JSON here")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="more log output (-v: info, -vv: debug incl. solver diagnostics)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nplearn``."""
    p = _ArgumentParser(
        prog="nplearn",
        description="New Physics Learning Machine: does the data deviate from the reference?",
    )
    p.add_argument("--version", action="version", version=f"nplearn {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)

    t = sub.add_parser("test", help="test a data sample against a reference sample",
                       description="Run the NPLM goodness-of-fit test: fit, toys, p-value, Z.")
    t.add_argument("--config", default=None, metavar="FILE",
                   help="run configuration (.toml, .yaml, or a result .json to rerun it); "
                        "options given on the command line override it")
    t.add_argument("--reference", default=None, metavar="REF",
                   help="reference events: .npy, .npz[:array], .csv/.tsv/.txt, "
                        "file.root:tree, file.h5[:dataset-or-group], .parquet")
    t.add_argument("--data", default=None, metavar="DATA", help="data events (same formats)")
    t.add_argument("--selection", default=None, metavar="EXPR",
                   help="keep events passing this cut in both samples, e.g. "
                        "'pt1 > 20 && abs(eta1) < 2.4'")
    t.add_argument("--ref-weight-branch", "--ref-weight-column", dest="ref_weight_branch",
                   default=None, metavar="NAME",
                   help="column/branch of the reference file holding per-event weights")
    t.add_argument("--columns", type=_str_list, default=None,
                   help="comma-separated columns to use (names or 0-based indices)")
    t.add_argument("--expected", type=float, default=None, metavar="N",
                   help="expected data yield N(R) of the reference model (default: N_D)")
    t.add_argument("--ref-weights", default=None, metavar="FILE",
                   help="per-event reference weights (one column, same row order)")
    t.add_argument("--sigma-percentile", type=float, default=90.0,
                   help="percentile of reference pairwise distances for sigma (default 90)")
    t.add_argument("--sigma-percentiles", type=_number_list, default=None, metavar="Q,Q,...",
                   help="several widths as percentiles of reference pairwise distances "
                        "(e.g. 1,10,50,90,99): a multiple test over widths")
    t.add_argument("--combine", choices=COMBINATIONS, default="min-p",
                   help="multi-width runs: the combination reported (all are computed; "
                        "default min-p)")
    t.add_argument("--temperature", type=float, default=1.0,
                   help="temperature of the fused-p and fused-t combinations (default 1)")
    t.add_argument("--no-standardize", action="store_true",
                   help="do not standardise features with the reference mean/std")
    t.add_argument("--centers-mode", choices=("per-fit", "shared"), default="per-fit",
                   help="per-fit (default): each fit draws its own centres; shared: one set "
                        "of centres from the reference for the observed fit and all toys "
                        "(faster toys)")
    _add_solver_args(t)
    _add_nn_args(t)
    _add_run_args(t, toys_default=100)
    t.add_argument("--plots", default=None, metavar="DIR",
                   help="write the figures (PNG and PDF) to this folder (needs matplotlib)")
    t.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="where toys run: local worker processes (default) or a Dask cluster")
    t.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address (tcp://host:port) for --executor dask")
    t.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="record every finished toy in this folder; rerunning the same test "
                        "skips the recorded toys (resume after an interruption)")

    b = sub.add_parser("bench", help="built-in benchmarks",
                       description="Benchmarks with exact densities.")
    bsub = b.add_subparsers(dest="bench", metavar="BENCH", parser_class=_ArgumentParser)
    e = bsub.add_parser(
        "exp1d", help="the 1D exponential benchmark (paper settings by default)",
        description="1D exponential benchmark: reference 8 exp(-8x), N_R=2e5, N(R)=2000. "
                    "Runs null toys and, for a signal, signal toys; prints t per toy, the "
                    "null chi2 dof and the median Z, next to the ideal Neyman-Pearson test.")
    e.add_argument("--signal", choices=("none", "tail", "bulk", "nonres"), default="none")
    e.add_argument("--null-toys", type=int, default=None, metavar="N",
                   help="null toys for the calibration (default: --toys)")
    e.add_argument("--n-ref", type=int, default=200_000, help="reference sample size N_R")
    e.add_argument("--expected", type=float, default=2000.0, help="expected yield N(R)")
    e.add_argument("--ideal-toys", type=int, default=20000,
                   help="Monte Carlo toys for the ideal test's median Z (default 20000)")
    _add_solver_args(e, sigma_default=0.3, centers_default=3000, lam_default=1e-10)
    _add_run_args(e, toys_default=100,
                  toys_help="signal toys with --signal, and the null toys unless "
                            "--null-toys is given")

    pw = sub.add_parser(
        "power", help="power of single widths, combinations and comparison tests",
        description="Power study on a benchmark with exact densities: null toys calibrate "
                    "every test (each kernel width, each combination over widths, the "
                    "comparison tests); signal toys give the power at Z >= 2 and 3 with "
                    "68% Clopper-Pearson intervals and the median Z; the ideal "
                    "Neyman-Pearson test is computed from the exact densities.")
    pw.add_argument("--benchmark", default="exp1d8",
                    help="exp1d8 (1D exponential on the x'=8x scale, five signals) or "
                         "gauss<d>d, e.g. gauss2d, gauss5d, gauss10d (default exp1d8)")
    pw.add_argument("--signals", type=_str_list, default=None,
                    help="comma-separated signals (default: all of the benchmark's)")
    pw.add_argument("--null-toys", type=int, default=1000, metavar="N",
                    help="null toys calibrating every test (default 1000; each toy fits "
                         "every width: about 0.5-1 s per toy and worker for the 1D "
                         "defaults, so a full default study takes hours on 2 cores)")
    pw.add_argument("--signal-toys", type=int, default=300, metavar="N",
                    help="toys per signal (default 300)")
    pw.add_argument("--n-ref", type=int, default=None, help="reference events per toy "
                    "(default: the benchmark's)")
    pw.add_argument("--expected", type=float, default=None,
                    help="expected yield N(R) (default: the benchmark's)")
    pw.add_argument("--sigma", type=_number_list, default=[0.1, 0.3, 0.7, 1.4, 2.3, 4.5],
                    help="kernel widths in benchmark units (default 0.1,0.3,0.7,1.4,2.3,4.5)")
    pw.add_argument("--centers", type=int, default=1000, metavar="M",
                    help="Nystrom centres M (default 1000)")
    pw.add_argument("--lam", type=float, default=1e-6, help="penalty lambda (default 1e-6)")
    pw.add_argument("--schedule", choices=("converged", "onestep"), default="converged",
                    help="solver schedule (default converged)")
    pw.add_argument("--temperature", type=float, default=1.0,
                    help="temperature of fused-p and fused-t (default 1)")
    pw.add_argument("--baselines", type=_str_list, default=None,
                    help="comparison tests (default all applicable; 'none' for none; "
                         "nplm_network, the NPLM neural network on the same toys, only "
                         "when named)")
    pw.add_argument("--baseline-max-ref", type=int, default=None, metavar="N",
                    help="reference subsample of the energy and MMD tests (default 20000; "
                         "the whole reference in 1D)")
    pw.add_argument("--ideal-toys", type=int, default=20000,
                    help="Monte Carlo toys of the ideal Neyman-Pearson test (default 20000)")
    pw.add_argument("--shape-only", action="store_true",
                    help="normalise each toy's reference to the toy's own data count "
                         "instead of N(R) (the statistic of `nplearn test` without "
                         "--expected); the data keep their Poisson yields")
    pw.add_argument("--workers", type=int, default=None,
                    help="worker processes (default: all cores)")
    pw.add_argument("--seed", type=int, default=0, help="master random seed (default 0)")
    pw.add_argument("--json", default=None, metavar="FILE", help="write the study here")
    pw.add_argument("--extend", default=None, metavar="FILE",
                    help="add toys to the study in FILE (a `nplearn power --json` result) "
                         "instead of running a new one: --null-toys N more null toys and/or "
                         "--signal-toys N more toys per signal (of --signals, default all); "
                         "the new toys are those a larger study would have drawn and every "
                         "power is recomputed; the other study options come from FILE")
    pw.add_argument("-q", "--quiet", action="store_true")
    pw.add_argument("-v", "--verbose", action="count", default=0)
    _mark_defaults(pw)

    _mark_defaults(t)
    p.set_defaults(_test_parser=t)

    ty = sub.add_parser(
        "toys", help="run a shard of null toys of a configured test (batch systems)",
        description="Run toys A..B-1 of the test defined by --config and record them in "
                    "--out; `nplearn merge` collects the shards. Toys are identical to those "
                    "`nplearn test` runs (same configuration, same random streams).")
    ty.add_argument("--config", required=True, metavar="FILE",
                    help="run configuration (.toml, .yaml or a result .json)")
    ty.add_argument("--toys", required=True, metavar="A:B",
                    help="toy indices A (included) to B (excluded), e.g. 1000:2000")
    ty.add_argument("--out", required=True, metavar="DIR", help="record folder (shared)")
    ty.add_argument("--workers", type=int, default=None)
    ty.add_argument("-q", "--quiet", action="store_true")
    ty.add_argument("-v", "--verbose", action="count", default=0)

    mg = sub.add_parser(
        "merge", help="collect recorded toy shards into the result of a test",
        description="Fit the observed data of the test defined by --config and calibrate it "
                    "with the toys recorded in DIR (by `nplearn toys` or `nplearn test "
                    "--checkpoint`); refuses records of another configuration and fails if "
                    "a toy is missing.")
    mg.add_argument("dir", metavar="DIR")
    mg.add_argument("--config", required=True, metavar="FILE")
    mg.add_argument("--toys", type=int, default=None, metavar="N",
                    help="number of toys (indices 0..N-1; default: the config's n_toys)")
    mg.add_argument("--json", default=None, metavar="FILE")
    mg.add_argument("--plots", default=None, metavar="DIR")
    mg.add_argument("-v", "--verbose", action="count", default=0)

    pl = sub.add_parser("plot", help="figures of a result JSON",
                        description="Draw the null distribution with the chi2 fit and the "
                                    "observed t, Z versus kernel width (multi-width runs) and "
                                    "the learned f (refitting the observed data when the "
                                    "result's input files are still there).")
    pl.add_argument("result", metavar="RESULT.json")
    pl.add_argument("--out", default=None, metavar="DIR",
                    help="output folder (default: RESULT's name without .json, + _plots)")
    pl.add_argument("--no-refit", action="store_true",
                    help="do not refit the observed data (no f plots)")
    pl.add_argument("-v", "--verbose", action="count", default=0)

    d = sub.add_parser("demo", help="a short demonstration on the 1D benchmark (under a minute)",
                       description="Generate a reference and a data set with a bump (the "
                                   "1D exponential benchmark, 150 signal events), run the "
                                   "full test with 200 toys and write nplearn-demo.json.")
    d.add_argument("--toys", type=int, default=200)
    d.add_argument("--workers", type=int, default=None)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--json", default="nplearn-demo.json", metavar="FILE")
    d.add_argument("--plots", default=None, metavar="DIR",
                   help="also write the figures to this folder (needs matplotlib)")
    d.add_argument("-q", "--quiet", action="store_true")
    d.add_argument("-v", "--verbose", action="count", default=0)
    return p


# ------------------------------------------------------------------- commands


class _Default:
    """A default value, told apart from the same value given on the command line."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


def _mark_defaults(p: argparse.ArgumentParser) -> None:
    """Wrap the defaults of ``p``'s plain options so that :func:`_unmark_defaults` can
    tell which options the user gave (``--config`` must yield only to those)."""
    for act in p._actions:
        if isinstance(act, (argparse._StoreAction, argparse._StoreTrueAction)) \
                and act.default is not argparse.SUPPRESS:
            value = act.default
            if isinstance(value, str) and act.type is not None:
                value = act.type(value)
            act.default = _Default(value)


def _unmark_defaults(a: argparse.Namespace) -> argparse.Namespace:
    """Replace wrapped defaults by their values; record the given options in
    ``a._given``."""
    given = set()
    for k, v in list(vars(a).items()):
        if isinstance(v, _Default):
            setattr(a, k, v.value)
        elif not k.startswith("_"):
            given.add(k)
    a._given = given
    return a


def _config_from_args(a: argparse.Namespace, **extra: Any):
    from .config import NPLMConfig, budget_bytes

    sig = a.sigma
    if isinstance(sig, list):
        extra = {**extra, "sigmas": sig} if len(sig) > 1 else extra
        sig = sig[0] if len(sig) == 1 else None
    return NPLMConfig(
        expected=getattr(a, "expected", None), n_toys=a.toys, sigma=sig,
        n_centers=a.centers, lam=a.lam, schedule=a.schedule, inner=a.inner, tol=a.tol,
        rank_tol=a.rank_tol, device=a.device, dtype=a.dtype, workers=a.workers, seed=a.seed,
        memory_budget=budget_bytes(getattr(a, "memory_budget", None)), **extra,
    )


#: NPLMConfig field -> ``nplearn test`` argument that sets it (sigma handled apart).
_FIELD_DEST = {
    "expected": "expected", "n_toys": "toys", "sigma_percentile": "sigma_percentile",
    "combine": "combine", "temperature": "temperature", "n_centers": "centers",
    "centers": "centers_mode", "lam": "lam", "standardize": "no_standardize",
    "schedule": "schedule", "inner": "inner", "tol": "tol", "rank_tol": "rank_tol",
    "device": "device", "dtype": "dtype", "workers": "workers", "seed": "seed",
    "memory_budget": "memory_budget", "learner": "learner", "nn_hidden": "nn_hidden",
    "nn_activation": "nn_activation", "nn_weight_clip": "nn_weight_clip",
    "nn_optimizer": "nn_optimizer", "nn_epochs": "nn_epochs", "nn_lr": "nn_lr",
    "nn_n_init": "nn_n_init", "nn_tol": "nn_tol",
}


#: Neural-network options of ``nplearn test`` (argument dest = NPLMConfig field).
_NN_FIELDS = ("learner", "nn_hidden", "nn_activation", "nn_weight_clip", "nn_optimizer",
              "nn_epochs", "nn_lr", "nn_tol", "nn_n_init")


def _resolve_test_args(a: argparse.Namespace):
    """Merge ``--config FILE`` with the command line (explicit options win).

    Returns the :class:`NPLMConfig` and updates ``a.reference``, ``a.data``,
    ``a.columns``, ``a.ref_weights`` and ``a.json`` from the file where the command
    line does not give them.
    """
    from .config import NPLMConfig
    from .runconfig import RunConfig, load_run_config

    file = load_run_config(a.config) if a.config else RunConfig()
    if "learner" in file and "learner" not in a._given:
        # the command line's --nn-* options are checked against the file's learner
        a.learner = file["learner"]
    cli = _config_from_args(a, sigma_percentile=a.sigma_percentile,
                            sigma_percentiles=a.sigma_percentiles, combine=a.combine,
                            temperature=a.temperature,
                            standardize=not a.no_standardize, centers=a.centers_mode,
                            **{f: getattr(a, f) for f in _NN_FIELDS}).to_dict()
    if not a.config:
        cfg = NPLMConfig.from_dict(cli)
    else:
        explicit = a._given
        opts = {**cli, **file.options}
        for fld, dest in _FIELD_DEST.items():
            if dest in explicit:
                opts[fld] = cli[fld]
        if "sigma" in explicit or "sigma_percentiles" in explicit:
            for fld in ("sigma", "sigmas", "sigma_percentiles", "sigma_percentile"):
                opts[fld] = cli[fld]
        try:
            cfg = NPLMConfig.from_dict(opts)
        except InputError as exc:
            raise InputError(f"{a.config} with the command-line options: {exc}") from None
    a._inputs_from_config = set()
    # where the toys run is taken from the file by `nplearn test` only: a merge runs
    # no toy, and a shard runs its toys in its own processes
    here = getattr(a, "_via", "test") == "test" and not getattr(a, "resume_only", False)
    a._recorded_sha256 = getattr(file, "recorded_sha256", {})
    a._recorded_arrays = getattr(file, "recorded_arrays", {})
    for key in ("reference", "data", "columns", "ref_weights", "json", "selection",
                "ref_weight_branch", "plots", "checkpoint", "scheduler"):
        if key == "scheduler" and (not here or ("executor" in a._given
                                                 and a.executor != "dask")):
            continue  # the command line chose where the toys run
        if getattr(a, key, None) is None and key in file and hasattr(a, key):
            setattr(a, key, file[key])
            a._inputs_from_config.add(key)
    if "executor" in file and "executor" not in a._given and hasattr(a, "executor") \
            and here:
        a.executor = file["executor"]
    for key in ("reference", "data"):
        if getattr(a, key) is None:
            raise InputError(f"no {key} sample: give --{key} FILE or '{key}' in --config")
    if getattr(a, "scheduler", None) and getattr(a, "executor", "local") != "dask":
        given = ("--scheduler" if "scheduler" not in a._inputs_from_config
                 else f"'scheduler' in {a.config}")
        raise InputError(f"{given} ({a.scheduler}) is the address of a Dask scheduler, "
                         "used with --executor dask (the toys would run here): add "
                         "--executor dask (or executor = \"dask\" in the config file), "
                         "or drop it")
    asked = [f"--{k}" for k in ("combine", "temperature") if k in getattr(a, "_given", ())]
    if asked and not cfg.multi_width:
        raise InputError(f"{' and '.join(asked)} choose how several kernel widths are "
                         "combined, but this test has one width (give several with "
                         "--sigma a,b,... or --sigma-percentiles)")
    return cfg


def _check_recorded_inputs(a: argparse.Namespace) -> dict[str, str]:
    """Hash the input files of a rerun of a result file (``--config result.json``)
    and note those that changed since it was written; :func:`_read_inputs` then
    refuses them unless the events and weights read are the ones recorded (the rerun
    would not reproduce the result). Inputs given on the command line are the user's
    choice and are not checked. Returns the hashes computed (``key -> sha256``)."""
    recorded = getattr(a, "_recorded_sha256", None) or {}
    from_config = getattr(a, "_inputs_from_config", ())
    out, a._changed_inputs = _compare_hashes(
        {k: getattr(a, k, None) for k in recorded if k in from_config}, recorded)
    return out


#: The recorded arrays that a changed input file must still give.
_ARRAYS_OF_FILE = {"reference": ("reference", "ref_weights"), "data": ("data",),
                   "ref_weights": ("ref_weights",)}


def _changed_events(changed: list[str], recorded: dict[str, str | None], ref: Any,
                      dat: Any, weights: Any) -> list[str]:
    """The keys of ``changed`` files whose events and weights, as read, are not the
    recorded ones (all of them when nothing was recorded)."""
    from .nplm import input_array_digests

    if not changed:
        return []
    if not recorded:
        return list(changed)
    try:
        now = {k: (v or {}).get("sha256") for k, v in
               input_array_digests(ref, dat, weights).items()}
    except InputError:  # events that no longer fit together are not the recorded ones
        return list(changed)
    return [k for k in changed
            if any(n not in recorded or recorded[n] != now[n] for n in _ARRAYS_OF_FILE[k])]


def _changed_input_error(a: argparse.Namespace, key: str,
                         how: str = "and so do the events read from it") -> InputError:
    via = getattr(a, "_via", "test")
    advice = (f"give it explicitly with --{key.replace('_', '-')} to run these "
              "settings on it" if via == "test" else
              "to test other events, write a run configuration (.toml) naming them "
              f"for `nplearn {via}`")
    return InputError(
        f"{getattr(a, key)}: changed since {a.config} was written (its SHA-256 differs "
        f"from the recorded one, {how}), so the rerun would not reproduce that result; "
        f"restore the file, or {advice}")


def _compare_hashes(paths: dict[str, Any], recorded: dict[str, str]
                    ) -> tuple[dict[str, str], list[str]]:
    """SHA-256 of the files ``paths`` (key -> path, falsy paths skipped) and the keys
    whose hash differs from ``recorded``. Unreadable files are skipped: reading them
    later reports the problem."""
    from .io import sha256_file

    out: dict[str, str] = {}
    for key, path in paths.items():
        if not path or not recorded.get(key):
            continue
        try:
            out[key] = sha256_file(path)
        except OSError:
            continue
    return out, [k for k, h in out.items() if h != recorded[k]]


def _read_inputs(a: argparse.Namespace, cfg: Any) -> tuple[Any, Any, np.ndarray | None]:
    """Read the reference and data tables and the reference weights of a test (with
    options ``cfg``); for a rerun of a result file, refuse changed input files whose
    events differ."""
    changed = getattr(a, "_changed_inputs", None)
    try:
        rt, dt, weights = _read_tables(a)
    except InputError as exc:
        if changed:  # the change is the news, not its consequence
            raise _changed_input_error(a, changed[0], f"and reading it now fails: {exc}"
                                       ) from None
        raise
    if changed:
        differ = _changed_events(changed, getattr(a, "_recorded_arrays", None) or {},
                                 rt.events, dt.events, weights)
        if differ:
            raise _changed_input_error(a, differ[0])
        print("nplearn: note: " + ", ".join(str(getattr(a, k)) for k in changed)
              + f" changed since {a.config} was written, but the events and weights read "
              "are the recorded ones", file=sys.stderr)
    _check_events(a, cfg, dt)
    return rt, dt, weights


def _read_tables(a: argparse.Namespace) -> tuple[Any, Any, np.ndarray | None]:
    from .io import read_table

    if a.ref_weights and a.ref_weight_branch:
        raise InputError("give either --ref-weights FILE or --ref-weight-branch NAME, not both")
    rt = read_table(a.reference, a.columns, selection=a.selection,
                    weight_column=a.ref_weight_branch)
    # a data block without events is a result when a yield is expected (a shape-only
    # test refuses it: N(R) = N_D = 0)
    dt = read_table(a.data, a.columns, selection=a.selection, allow_empty=True)
    ref, ref_cols, dat, dat_cols = rt.events, rt.names, dt.events, dt.names
    if ref.shape[1] != dat.shape[1]:
        raise InputError(
            f"{a.data}: has {dat.shape[1]} feature column(s) but {a.reference} has "
            f"{ref.shape[1]}; select matching columns with --columns"
        )
    by_index = bool(a.columns) and all(str(c).strip().isdigit() for c in a.columns)
    if rt.has_header and dt.has_header and ref_cols != dat_cols and by_index:
        print(f"nplearn: warning: --columns {','.join(a.columns)} pairs columns by position: "
              f"{a.reference} ({', '.join(ref_cols)}) against {a.data} "
              f"({', '.join(dat_cols)})", file=sys.stderr)
    elif rt.has_header and dt.has_header and ref_cols != dat_cols:
        raise InputError(
            f"column names differ between {a.reference} ({', '.join(ref_cols)}) and "
            f"{a.data} ({', '.join(dat_cols)}); select them with --columns"
        )
    if rt.has_header != dt.has_header and not a.columns:
        named, unnamed, names = ((a.reference, a.data, ref_cols) if rt.has_header
                                 else (a.data, a.reference, dat_cols))
        print(f"nplearn: warning: {unnamed} has no column names, so its columns are "
              f"matched to those of {named} ({', '.join(names)}) by position",
              file=sys.stderr)
    weights = rt.weights
    if a.ref_weights:
        weights = _read_weight_file(a.ref_weights, rt, a.reference)
    _warn_about_inputs(a, rt)
    return rt, dt, weights


def _check_events(a: argparse.Namespace, cfg: Any, dt: Any) -> None:
    """A data file without events is a result against an expected yield, not in a
    shape-only test."""
    if len(dt.events) == 0 and cfg.expected is None:
        why = "no event passes the selection" if a.selection else "no event"
        raise InputError(f"{a.data}: is empty ({why}): a shape-only test needs data events "
                         "(give --expected to test an empty data set against the yield the "
                         "reference predicts)")


#: Column names that usually hold event weights.
_WEIGHT_LIKE = {"weight", "weights", "wgt", "evtweight", "eventweight", "event_weight",
                "evt_weight", "mcweight", "mc_weight", "genweight", "gen_weight", "xsecweight"}


def _warn_about_inputs(a: argparse.Namespace, rt: Any) -> None:
    """Warnings about inputs that are readable but probably not what was meant: the
    same file as reference and data, or a weight-like column of the reference used
    as a feature or left unused."""
    import os

    from .io import _split_key

    (rp, rk), (dp, dk) = _split_key(str(a.reference)), _split_key(str(a.data))
    try:
        same = rk == dk and os.path.samefile(rp, dp)
    except OSError:
        same = False
    if same:
        print(f"nplearn: warning: {a.reference} is both the reference and the data: its "
              "events are tested against themselves", file=sys.stderr)
    if a.ref_weight_branch or a.ref_weights:
        return
    for c in rt.columns:
        if c.lower() in _WEIGHT_LIKE:
            how = ("is used as a feature" if c in rt.names else
                   "is not used, so the reference is unweighted")
            print(f"nplearn: warning: column {c!r} of {a.reference} looks like event "
                  f"weights and {how}; give --ref-weight-branch {c} if it holds weights",
                  file=sys.stderr)


def _read_weight_file(path: str, rt: Any, ref_name: str) -> np.ndarray:
    """One weight per event of the reference file (a one-column table or a 1-D
    ``.npy`` or ``.npz`` array), restricted to the events that pass the selection."""
    w = _weight_column(path)
    if rt.selected is not None:
        if w.shape[0] != rt.n_read:
            raise InputError(f"{path}: {w.shape[0]} weights, but {ref_name} holds "
                             f"{rt.n_read} events before the selection (one weight per "
                             "event of the file)")
        w = w[rt.selected]
    from .io import as_weights

    rows = None if rt.selected is None else np.flatnonzero(rt.selected)
    return as_weights(w, len(rt.events), path, rows)  # errors name the file and its row


def _weight_column(path: str) -> np.ndarray:
    from .io import _read_npz, _split_key, read_events

    file, key = _split_key(path)
    if file.suffix.lower() == ".npy" and key is not None:
        raise InputError(f"{path}: a .npy file holds one array, so ':{key}' names nothing "
                         "in it")
    if file.suffix.lower() in (".npy", ".npz") and file.is_file():
        try:
            arr = (np.load(file, allow_pickle=False) if file.suffix.lower() == ".npy"
                   else _read_npz(file, key))
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
        if arr.ndim == 1:
            if arr.dtype.kind not in "biuf":
                raise InputError(f"{path}: weights must be numbers, got dtype {arr.dtype}")
            return arr.astype(np.float64)
    w, _ = read_events(path)  # one column, header optional
    if w.shape[1] != 1:
        raise InputError(f"{path}: expected one column of weights, got {w.shape[1]}")
    return w[:, 0]


def _dask_client(a: argparse.Namespace) -> Any:
    """A Dask client for ``--executor dask`` (None for the local pool)."""
    if getattr(a, "executor", "local") != "dask":
        return None
    if not a.scheduler:
        raise InputError("--executor dask needs --scheduler tcp://HOST:PORT (or scheduler "
                         "in the config file: the address of "
                         "a running Dask scheduler)")
    try:
        from distributed import Client
    except ImportError:
        raise MissingDependencyError("distributed", "dask", "--executor dask") from None
    try:
        return Client(a.scheduler, timeout=30)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot connect to the Dask scheduler {a.scheduler} ({exc})") from None


def _drop_new_empty_plot_dir(a: argparse.Namespace, run: Callable[[argparse.Namespace], int]
                             ) -> int:
    """``run(a)``; if it fails, remove the ``--plots`` folder when this run created it
    (it is made early, so that a folder that cannot be made stops the run before any
    result is written) and it is still empty."""
    import os

    plots = getattr(a, "plots", None)
    existed = bool(plots) and os.path.lexists(plots)
    try:
        return run(a)
    except BaseException:
        if plots and not existed and os.path.isdir(plots) and not os.listdir(plots):
            os.rmdir(plots)
        raise


def cmd_test(a: argparse.Namespace) -> int:
    """``nplearn test``."""
    return _drop_new_empty_plot_dir(a, _run_test)


def _run_test(a: argparse.Namespace) -> int:
    import os

    from .io import check_writable, sha256_file
    from .nplm import nplm_test

    cfg = _resolve_test_args(a)
    if a.plots:
        _check_plot_dir(a.plots)
    if a.json:
        check_writable(a.json, (a.reference, a.data, a.ref_weights, a.config))
    hashes = _check_recorded_inputs(a)
    rt, dt, weights = _read_inputs(a, cfg)
    ref, ref_cols, dat, dat_cols = rt.events, rt.names, dt.events, dt.names
    progress = Progress("toys", enabled=None if not a.quiet else False)
    client = _dask_client(a)
    try:
        res = nplm_test(ref, dat, cfg, ref_weights=weights, progress=progress,
                        checkpoint=a.checkpoint, resume_only=getattr(a, "resume_only", False),
                        executor=client)
    finally:
        if client is not None:
            client.close()
    res.provenance["inputs"] = {
        "reference": {"path": a.reference, "sha256": hashes.get("reference")
                      or sha256_file(a.reference), "shape": list(ref.shape),
                      "columns": ref_cols},
        "data": {"path": a.data, "sha256": hashes.get("data") or sha256_file(a.data),
                 "shape": list(dat.shape), "columns": dat_cols},
        "selection": a.selection, "ref_weight_branch": a.ref_weight_branch,
        "events_read": {"reference": rt.n_read, "data": dt.n_read},
    }
    if a.ref_weights:
        res.provenance["inputs"]["reference_weights"] = {
            "path": a.ref_weights,
            "sha256": hashes.get("ref_weights") or sha256_file(a.ref_weights)}
    res.provenance["command"] = shlex.join(sys.argv)
    res.run = {
        "reference": os.path.abspath(a.reference), "data": os.path.abspath(a.data),
        "columns": a.columns,
        "ref_weights": os.path.abspath(a.ref_weights) if a.ref_weights else None,
        "selection": a.selection, "ref_weight_branch": a.ref_weight_branch,
    }
    return _write_and_report(a, res, lambda: _plots_of(res, a.plots, ref, dat, weights,
                                                       ref_cols))


def _write_and_report(a: argparse.Namespace, res: Any, plots: Callable[[], str]) -> int:
    """Write the JSON and the figures, then print the summary: a reader that closes
    the output early (``| head``) loses no file, and the summary is formatted before
    anything is written (a failure leaves existing files as they were). A failure
    of the figures still prints the summary first."""
    text = res.summary()
    if a.json:
        res.save_json(a.json)
    try:
        figures = plots() if a.plots else None
    except BaseException:
        print(text)
        raise
    print(text)
    if a.json:
        print(f"result written to {a.json}")
    if figures:
        print(figures)
    return EXIT_OK


def _check_plot_dir(path: str) -> None:
    """Fail before a long run when the figures could not be written."""
    import os

    from .plots import _pyplot

    _pyplot()  # matplotlib present?
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{path}: exists and is not a folder (--plots needs a folder)")
    # create it now: a folder that cannot be made must stop the run before any result
    # file is written, not after
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path}: cannot create the plot folder "
                         f"({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK):
        raise InputError(f"{path}: the plot folder is not writable")


def _plots_of(res: Any, outdir: str, ref: np.ndarray, dat: np.ndarray,
              weights: np.ndarray | None, names: Sequence[str] | None) -> str:
    """Figures of a fresh result (with its observed fit's f); returns the line that
    reports them."""
    from .plots import make_plots, most_significant_width
    from .toys import normalised_weights

    w = normalised_weights(len(ref), res.expected, weights)
    f_ref = res.learner.train_decision_[: len(ref)] if res.learner is not None else None
    d = res.to_dict()
    k = most_significant_width(d)
    if k and res.width_learners:
        f_ref = res.f(ref, width=k)
    paths = make_plots(d, outdir, reference=ref, data=dat, w_ref=w, f_ref=f_ref,
                       names=names, f_width=k)
    return f"{len(paths)} figure files written to {outdir}"


def _fit_one_width(ref: np.ndarray, dat: np.ndarray, weights: np.ndarray | None,
                   cfg: Any, sigma: float) -> tuple[np.ndarray, float]:
    """The observed fit of one kernel width of a multi-width test (the same centres):
    ``f`` at the reference events, and ``t``."""
    from .nplm import nplm_test

    one = cfg.replace(sigma=float(sigma), sigmas=None, sigma_percentiles=None, n_toys=0)
    fit = nplm_test(ref, dat, one, ref_weights=weights)
    return fit.learner.train_decision_[: len(ref)], fit.t_obs


def _test_namespace(parser: argparse.ArgumentParser, config: str,
                    extra: Sequence[str] = ()) -> argparse.Namespace:
    """The arguments of ``nplearn test --config FILE [extra]`` (for toys/merge)."""
    return _unmark_defaults(parser.parse_args(["test", "--config", config, "-q", *extra]))


def _toy_range(spec: str) -> range:
    try:
        a_s, b_s = spec.split(":")
        a, b = int(a_s), int(b_s)
    except ValueError:
        raise InputError(f"--toys must be A:B with integers A < B, got {spec!r}") from None
    if not 0 <= a < b:
        raise InputError(f"--toys must be A:B with 0 <= A < B, got {spec!r}")
    return range(a, b)


def cmd_toys(a: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``nplearn toys``: one shard."""
    from .nplm import nplm_toys

    indices = _toy_range(a.toys)
    extra = ["--workers", str(a.workers)] if a.workers is not None else []
    t = _test_namespace(parser, a.config, extra)
    t._via = "toys"
    cfg = _resolve_test_args(t)
    _check_recorded_inputs(t)
    rt, dt, weights = _read_inputs(t, cfg)
    progress = Progress("toys", enabled=None if not a.quiet else False)
    res = nplm_toys(rt.events, dt.events, cfg, indices=indices, out=a.out,
                    ref_weights=weights, progress=progress)
    n_ok = sum(r.ok for r in res)
    print(f"toys {indices.start}..{indices.stop - 1}: {n_ok} ok, {len(res) - n_ok} failed; "
          f"records in {a.out}")
    return EXIT_OK


def cmd_merge(a: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``nplearn merge``: the test with every toy taken from the records."""
    import os

    if not os.path.isdir(a.dir):
        raise InputError(f"{a.dir}: no such record folder")
    extra = ["--checkpoint", a.dir]
    if a.toys is not None:
        extra += ["--toys", str(a.toys)]
    if a.json:
        extra += ["--json", a.json]
    if a.plots:
        extra += ["--plots", a.plots]
    t = _test_namespace(parser, a.config, extra)
    t.resume_only = True
    t._via = "merge"
    return cmd_test(t)


def cmd_plot(a: argparse.Namespace) -> int:
    """``nplearn plot``."""
    import json
    import os

    from .config import NPLMConfig
    from .io import read_table
    from .nplm import nplm_test
    from .plots import make_plots, most_significant_width
    from .toys import normalised_weights

    try:
        with open(a.result, encoding="utf-8") as fh:
            res = json.load(fh)
    except OSError as exc:
        raise InputError(f"{a.result}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InputError(f"{a.result}: not a valid JSON file ({exc})") from None
    if not isinstance(res, dict) or not str(res.get("format", "")).startswith("nplearn-result"):
        raise InputError(f"{a.result}: not an nplearn result file")
    out = a.out or (os.path.splitext(a.result)[0] + "_plots")
    if os.path.exists(out) and not os.path.isdir(out):  # before any refit
        raise InputError(f"{out}: exists and is not a folder (the figures need a folder)")
    run = dict(res.get("run") or {})
    from .runconfig import moved_inputs, recorded_input_arrays, recorded_input_hashes

    recorded = recorded_input_hashes(res)
    run.update(moved_inputs(run, recorded, Path(a.result)))
    extra: dict[str, Any] = {}
    have_inputs = all(run.get(k) and os.path.exists(str(run[k]).split(":")[0])
                      for k in ("reference", "data"))
    if not a.no_refit and have_inputs:
        _, changed = _compare_hashes({k: run.get(k) for k in recorded}, recorded)

        def refused(key: str, how: str) -> InputError:
            return InputError(
                f"{run[key]}: changed since {a.result} was written (its SHA-256 differs "
                f"from the recorded one, {how}): the f plots would show other events than "
                "the result; restore the file, or draw the calibration only with --no-refit")

        try:
            rt = read_table(run["reference"], run.get("columns"),
                            selection=run.get("selection"),
                            weight_column=run.get("ref_weight_branch"))
            dt = read_table(run["data"], run.get("columns"), selection=run.get("selection"),
                            allow_empty=True)
            weights = rt.weights
            if run.get("ref_weights"):
                weights = _read_weight_file(run["ref_weights"], rt, run["reference"])
        except InputError as exc:
            if changed:
                raise refused(changed[0], f"and reading it now fails: {exc}") from None
            raise
        differ = _changed_events(changed, recorded_input_arrays(res), rt.events, dt.events,
                                 weights)
        if differ:
            raise refused(differ[0], "and so do the events read from it")
        # the recorded budget: the refit stores its features as the original fit did
        budget = (res.get("provenance", {}).get("execution") or {}).get("memory_budget")
        cfg = NPLMConfig.from_dict({**res["config"], "n_toys": 0,
                                    **({"memory_budget": int(budget)} if budget else {})})
        k = most_significant_width(res)
        if k is None:
            fit = nplm_test(rt.events, dt.events, cfg, ref_weights=weights)
            f_ref, t_fit, t_res = (fit.learner.train_decision_[: len(rt.events)],
                                   fit.t_obs, res["t_obs"])
        else:  # the width the figures show, alone
            f_ref, t_fit = _fit_one_width(rt.events, dt.events, weights, cfg,
                                          res["widths"][k]["sigma"])
            t_res = res["widths"][k]["t_obs"]
        if not math.isclose(t_fit, float(t_res), rel_tol=1e-6, abs_tol=1e-6):
            print(f"nplearn plot: warning: the refit gives t = {t_fit:.6g}, the result "
                  f"says {float(t_res):.6g} (inputs or software changed?)", file=sys.stderr)
        extra = dict(reference=rt.events, data=dt.events,
                     w_ref=normalised_weights(len(rt.events), float(res["expected"]),
                                              weights),
                     f_ref=f_ref, names=rt.names, f_width=k)
    elif not a.no_refit:
        print("nplearn plot: the result's input files are not available: drawing the "
              "calibration only (no f plots)", file=sys.stderr)
    try:
        paths = make_plots(res, out, **extra)
    except InputError:
        raise  # names its own cause (e.g. the output folder)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise InputError(f"{a.result}: cannot be plotted, the result is incomplete or "
                         f"damaged ({what})") from None
    if not paths:
        raise InputError(f"{a.result}: holds nothing to plot (no null toys and no "
                         "refitted inputs)")
    print(f"{len(paths)} figure files written to {out}")
    return EXIT_OK


def cmd_bench_exp1d(a: argparse.Namespace) -> int:
    """``nplearn bench exp1d``."""
    from .benchmarks.runner import run_exp1d

    return run_exp1d(a)


def cmd_demo(a: argparse.Namespace) -> int:
    """``nplearn demo``."""
    return _drop_new_empty_plot_dir(a, _run_demo)


def _run_demo(a: argparse.Namespace) -> int:
    from .benchmarks import Exp1D
    from .nplm import nplm_test

    if a.json:
        from .io import check_writable

        check_writable(a.json)
    if a.plots:
        _check_plot_dir(a.plots)
    rng = np.random.default_rng(np.random.SeedSequence(a.seed, spawn_key=(7,)))
    print("nplearn demo: 1D exponential benchmark (reference density 8 exp(-8x)).")
    print("  reference: 200000 simulated events; data: Poisson(2000) background events")
    print("  plus Poisson(150) signal events in a narrow bump at x = 0.2 (the benchmark's")
    print("  'bulk' signal, made stronger than its 90 events so the demo finds it).")
    print("  The test does not know the signal: it learns log n_data/n_ref from the samples.\n")
    gen = Exp1D("bulk", n_signal=150.0)
    ref = gen.sample_reference_events(rng, gen.n_ref)
    data = gen.sample_data(rng)
    progress = Progress("toys", enabled=None if not a.quiet else False)
    res = nplm_test(ref, data, n_toys=a.toys, expected=2000.0, lam=1e-10, seed=a.seed,
                    workers=a.workers, progress=progress)
    res.provenance["command"] = shlex.join(sys.argv)
    return _write_and_report(a, res, lambda: _plots_of(res, a.plots, ref, data, None, ["x"]))


def cmd_power(a: argparse.Namespace) -> int:
    """``nplearn power``."""
    import dataclasses

    from .benchmarks.suite import get_benchmark
    from .io import check_writable
    from .nplm import provenance
    from .power import power_study

    if a.json:
        check_writable(a.json)
    bars: dict[str, Progress] = {}

    def progress(label: str, done: int, total: int) -> None:
        if a.quiet:
            return
        bars.setdefault(label, Progress(label))(done, total)

    if a.extend:
        return _extend_power(a, progress)
    bench = get_benchmark(a.benchmark)
    changes = {k: v for k, v in (("n_ref", a.n_ref), ("expected", a.expected)) if v is not None}
    if changes:
        bench = dataclasses.replace(bench, **changes)
    baselines = a.baselines
    if baselines is not None and [b.lower() for b in baselines] == ["none"]:
        baselines = []
    res = power_study(bench, signals=a.signals, n_null=a.null_toys, n_signal=a.signal_toys,
                      sigmas=a.sigma, n_centers=a.centers, lam=a.lam, schedule=a.schedule,
                      temperature=a.temperature, baselines=baselines,
                      baseline_max_ref=a.baseline_max_ref,
                      ideal_toys=a.ideal_toys, shape_only=a.shape_only, seed=a.seed,
                      workers=a.workers, progress=progress)
    res["provenance"] = {**provenance(), "command": " ".join(sys.argv)}
    failed = res["null"]["n_requested"] - res["null"]["n_ok"]
    return _report_power(a, res, f"{res['null']['n_ok']} null toys"
                         + (f" ({failed} failed, left out of the thresholds)" if failed else "")
                         + f", {a.signal_toys} toys per "
                                 f"signal, widths {', '.join(f'{s:g}' for s in a.sigma)}"
                                 + (", shape-only" if a.shape_only else ""))


def _report_power(a: argparse.Namespace, res: dict[str, Any], headline: str) -> int:
    """Write a power study to ``--json`` (atomically) and print its table."""
    from .io import write_json_atomic
    from .power import format_power_table

    if a.json:
        write_json_atomic(a.json, res)
    print(f"nplearn power: {res['benchmark']}, {headline}")
    print(format_power_table(res))
    if a.json:
        print(f"result written to {a.json}")
    return EXIT_OK


#: ``nplearn power`` options that a stored study fixes (refused with ``--extend``)
_STUDY_OPTIONS = ("benchmark", "n_ref", "expected", "sigma", "centers", "lam", "schedule",
                  "temperature", "baselines", "baseline_max_ref", "ideal_toys", "shape_only",
                  "seed")


def _extend_power(a: argparse.Namespace, progress: Callable[[str, int, int], None]) -> int:
    """``nplearn power --extend FILE``: more null and/or signal toys for a stored study."""
    import json

    from .power import extend_study, study_benchmark

    fixed = [f"--{k.replace('_', '-')}" for k in _STUDY_OPTIONS if k in a._given]
    if fixed:
        raise InputError(f"{', '.join(fixed)}: with --extend every study setting comes "
                         f"from {a.extend}; give only --null-toys, --signal-toys, --signals "
                         "and --workers")
    n_null = a.null_toys if "null_toys" in a._given else 0
    n_signal = a.signal_toys if "signal_toys" in a._given else 0
    if n_null < 0 or n_signal < 0:
        raise InputError(f"--null-toys and --signal-toys count the toys to add with "
                         f"--extend and cannot be negative (got {n_null}, {n_signal})")
    if not n_null and not n_signal:
        raise InputError("--extend needs --null-toys N (null toys to add) and/or "
                         "--signal-toys N (toys to add to each signal)")
    if a.signals is not None and not n_signal:
        raise InputError("--signals with --extend chooses the signals that get "
                         "--signal-toys more toys; give --signal-toys")
    try:
        study = json.loads(Path(a.extend).read_text())
        bench = study_benchmark(study)
    except (OSError, ValueError, InputError) as exc:
        raise InputError(f"cannot read the power study {a.extend}: {exc}") from exc
    res = extend_study(study, bench, n_null=n_null, n_signal=n_signal, signals=a.signals,
                       workers=a.workers, progress=progress,
                       record={"command": " ".join(sys.argv)})
    added = []
    if n_null:
        added.append(f"{n_null} null toys ({res['null']['n_ok']} in all)")
    if n_signal:
        added.append(f"{n_signal} toys per signal")
    return _report_power(a, res, f"{' and '.join(added)} added to {a.extend}"
                         + (" (shape-only)" if res.get("shape_only") else ""))


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else \
        logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("nplearn")
    root.handlers[:] = [handler]
    root.setLevel(level)


def _stdout_closed() -> bool:
    """Whether standard output is a pipe (or socket) whose reader has gone away."""
    import os
    import select
    import stat

    try:
        fd = sys.stdout.fileno()
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return False
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no real file (e.g. captured)
        return False


def console_main() -> None:
    """The ``nplearn`` executable: :func:`main`, and a quiet exit when the reader of
    standard output went away (no "Exception ignored" message at shutdown)."""
    import os

    code = main()
    if code == EXIT_PIPE or _stdout_closed():
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # this process is about to exit
        code = code or EXIT_PIPE
    sys.exit(code)


class _Terminated(KeyboardInterrupt):
    """SIGTERM received (e.g. ``kill`` or a batch system's time limit)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nplearn`` command; returns the exit code.

    SIGTERM stops a run like Ctrl-C (toy workers are terminated, finished toys kept
    in a ``--checkpoint`` folder) and exits with 143.
    """
    import signal
    import threading

    # only where SIGTERM has its default action (an ignored or foreign handler stays)
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        return _main(argv)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    a = None
    try:
        a = _unmark_defaults(parser.parse_args(argv))
        _configure_logging(getattr(a, "verbose", 0))
        if a.command == "test":
            return cmd_test(a)
        if a.command == "bench":
            if a.bench == "exp1d":
                if a.json:
                    from .io import check_writable

                    check_writable(a.json)
                return cmd_bench_exp1d(a)
            print("nplearn bench: choose a benchmark: exp1d (see nplearn bench --help)",
                  file=sys.stderr)
            return EXIT_INPUT
        if a.command == "demo":
            return cmd_demo(a)
        if a.command == "power":
            return cmd_power(a)
        if a.command == "plot":
            return cmd_plot(a)
        if a.command == "toys":
            return cmd_toys(a, parser)
        if a.command == "merge":
            return cmd_merge(a, parser)
        parser.print_help()
        return EXIT_INPUT
    except (InputError, MissingDependencyError) as exc:
        print(f"nplearn: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, _Terminated)
        print(f"nplearn: {'terminated' if terminated else 'interrupted'}"
              + (" (toys finished so far are kept only with --checkpoint DIR; rerun with "
                 "it to resume)" if getattr(a, "command", None) == "test"
                 and not getattr(a, "checkpoint", None) else ""), file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPT
    except NplearnError as exc:
        print(f"nplearn: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and _stdout_closed():
            # the reader of the output went away (e.g. `| head`): the result files were
            # written before the summary was printed; stop without a message
            return EXIT_PIPE
        if logging.getLogger("nplearn").isEnabledFor(logging.DEBUG):
            raise
        print(f"nplearn: internal error: {type(exc).__name__}: {exc} "
              "(rerun with -vv for the traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
