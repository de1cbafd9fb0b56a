"""Power of the NPLM test (single widths and their combinations) on benchmarks.

:func:`power_study` runs ``n_null`` null toys and ``n_signal`` toys per signal of
a benchmark with exact densities (:mod:`nplearn.benchmarks.suite`). Every toy
draws a fresh reference sample and data set, fits every kernel width on them and
evaluates the comparison tests (:mod:`nplearn.baselines`) on the same sample.
Everything is calibrated on the same null toys:

* a single width: ``p = (1 + #{t_null >= t}) / (1 + n_null)``;
* a combination: the same with the combined statistic, each signal toy ranked
  with the null toys as one exchangeable pool (:mod:`nplearn.multitest`);
* a comparison test: its own statistic against its own null values.

Power at ``Z >= z`` is the fraction of signal toys whose p-value is at most
``1 - Phi(z)``, with a Clopper-Pearson 68% interval; a signal toy whose fit failed
counts as not detected. Because p-values come from
``n_null`` toys, ``Z >= 3`` (p <= 1.35e-3) needs a signal toy beyond all but
``floor(1.35e-3 (1 + n_null)) - 1`` null toys: with 1000 null toys, beyond all
of them (p = 1/1001, a slightly stricter threshold than 1.35e-3). The ideal
Neyman-Pearson test is computed exactly from the benchmark's densities.

That threshold is itself a random variable: beyond the ``k``-th largest of
``n_null`` toys, its true size follows Beta(k, n_null + 1 - k), a relative spread of
about ``1/sqrt(k)`` (±50% for Z >= 3 with 3000 null toys) that is shared by every
signal of a study and is not in the Clopper-Pearson intervals.
:func:`threshold_size` gives its 68% range, and every power a study writes records
``threshold_band68``: the power with the threshold moved out to the attainable
p-values just beyond the two ends of that range (a sensitivity range, not an
interval on the power).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from .errors import InputError
from .multitest import COMBINATIONS, combined_pvalues, empirical_p
from .stats import clopper_pearson, p_to_z
from .toys import ToyEngine, ToyResult, run_toys, toy_memory_budget

__all__ = [
    "BenchmarkToy", "clopper_pearson", "extend_null", "extend_signals", "extend_study",
    "ideal_power_row", "ideal_table_rows", "median_z_label", "power_study",
    "power_summary", "recombine", "refresh_ideal", "study_benchmark", "threshold_note",
    "threshold_size",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkToy:
    """Toy generator of a benchmark: a fresh reference sample and one data set.

    Picklable (module level), so toys run in worker processes.
    """

    benchmark: Any
    signal: str

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        ref = self.benchmark.sample_reference_events(rng, self.benchmark.n_ref)
        return ref, self.benchmark.sample_data(rng, self.signal)


def threshold_size(n_null: int, z: float, cl: float = 0.68) -> dict[str, float]:
    """True size of the ``Z >= z`` threshold that ``n_null`` null toys give.

    With ``p = (1 + #{t_null >= t}) / (1 + n)`` a data set reaches ``Z >= z`` when
    fewer than ``k = floor(a (n + 1))`` null toys (``a = 1 - Phi(z)``) reach its
    statistic, i.e. when it lies beyond the ``k``-th largest null toy. The chance
    that a new null data set does so is the upper tail probability of that order
    statistic, which for a continuous null follows Beta(k, n + 1 - k): mean
    ``k / (n + 1)``, relative spread about ``1/sqrt(k)``.

    Parameters
    ----------
    n_null : int
        Null toys the threshold is taken from.
    z : float
        The Z threshold.
    cl : float
        Probability content of the central range returned.

    Returns
    -------
    dict
        ``k`` (0: the threshold cannot be reached with ``n_null`` toys), ``size``
        (``k / (n + 1)``), ``size_lo`` and ``size_hi`` (the central ``cl`` range of
        the true size), ``nominal`` (``1 - Phi(z)``) and ``z_effective`` (the Z of
        ``size``; inf when unreachable).
    """
    _check_count("n_null", n_null, 1)
    a = float(sps.norm.sf(z))
    # the largest k with k / (n + 1) <= a, compared as the p-values are
    k = math.floor(a * (n_null + 1))
    while (k + 1) / (n_null + 1) <= a:
        k += 1
    while k > 0 and k / (n_null + 1) > a:
        k -= 1
    out = {"k": k, "nominal": a, "size": k / (n_null + 1), "size_lo": 0.0, "size_hi": 0.0,
           "z_effective": math.inf}
    if k > 0:
        tail = (1.0 - cl) / 2.0
        law = sps.beta(k, n_null + 1 - k)
        out.update(size_lo=float(law.ppf(tail)), size_hi=float(law.isf(tail)),
                   z_effective=p_to_z(k / (n_null + 1)))
    return out


def power_summary(p: np.ndarray, z_thresholds: Sequence[float] = (2.0, 3.0),
                  n_null: int | None = None) -> dict[str, Any]:
    """Power at each Z threshold (with 68% Clopper-Pearson intervals) and the median
    Z with its 16/84% quantiles, from the signal toys' p-values.

    With ``n_null`` (the null toys the p-values come from) each power also records
    ``threshold_band68``, a sensitivity range: the fraction of toys with ``p`` at
    most the attainable p-values (multiples of ``1 / (n_null + 1)``) just outside
    the 68% range of the threshold's true size (:func:`threshold_size`), the lower
    end rounded down and the upper end up. It shows how far the power moves with
    the noise of the null toys beyond the threshold; ``None`` for a lower end below
    ``1 / (n_null + 1)``, which these toys cannot resolve.

    Parameters
    ----------
    p : numpy.ndarray
        The signal toys' p-values (failed fits as p = 1).
    z_thresholds : sequence of float
        The Z thresholds to report power at.
    n_null : int, optional
        Null toys behind the p-values; enables ``threshold_band68``.

    Returns
    -------
    dict
        ``n_toys``; ``power`` keyed by ``f"{z:g}"`` with ``value``, ``lo68``,
        ``hi68``, ``k`` (and ``threshold_band68``); ``median_z``, ``z16``, ``z84``.
        With ``n_null`` also ``median_z_bound``, ``z16_bound`` and ``z84_bound``:
        whether that quantile sits at the smallest attainable p-value
        ``1 / (n_null + 1)``, where its Z is only a lower bound (more than half of
        the toys beyond every null toy gives ``median_z_bound``).
    """
    p = np.asarray(p, dtype=np.float64)
    out: dict[str, Any] = {"n_toys": int(p.size), "power": {}}
    for zt in z_thresholds:
        k = int(np.count_nonzero(p <= sps.norm.sf(zt)))
        lo, hi = clopper_pearson(k, p.size)
        out["power"][f"{zt:g}"] = {"value": k / p.size if p.size else math.nan,
                                   "lo68": lo, "hi68": hi, "k": k}
        if n_null is not None and p.size:
            th = threshold_size(n_null, zt)
            # p-values are multiples of 1/(n + 1): round each end of the range
            # outward onto that grid; a size below 1/(n + 1) cannot be measured
            # with these toys (None)
            ranks = p * (n_null + 1)
            ends = (math.floor(th["size_lo"] * (n_null + 1) + 1e-9),
                    math.ceil(th["size_hi"] * (n_null + 1) - 1e-9))
            out["power"][f"{zt:g}"]["threshold_band68"] = [
                None if j < 1 else float(np.count_nonzero(ranks <= j + 1e-9)) / p.size
                for j in ends]
    # quantiles of p (Z is decreasing in p; a toy with p = 1 has Z = -inf)
    if p.size:
        p84, p50, p16 = np.quantile(p, [0.84, 0.5, 0.16])
        out.update(median_z=p_to_z(float(p50)), z16=p_to_z(float(p84)), z84=p_to_z(float(p16)))
        if n_null is not None:
            floor = 1.0 / (n_null + 1) * (1 + 1e-9)
            out.update(median_z_bound=bool(p50 <= floor), z16_bound=bool(p84 <= floor),
                       z84_bound=bool(p16 <= floor))
    else:
        out.update(median_z=math.nan, z16=math.nan, z84=math.nan)
    return out


def _engine(params: dict[str, Any], bench: Any, signal: str, stream: int, seed: int,
            sigmas: tuple[float, ...], baselines: tuple[str, ...],
            max_ref: int | None, shape_only: bool = False) -> ToyEngine:
    return ToyEngine(params, float(bench.expected), seed, generator=BenchmarkToy(bench, signal),
                     stream=stream, sigmas=sigmas if len(sigmas) > 1 else (),
                     extra_stats=baselines, extra_max_ref=max_ref, shape_only=shape_only)


def _t_matrix(toys: list[ToyResult], k: int) -> np.ndarray:
    return np.array([t.t_widths if t.t_widths else [t.t] for t in toys],
                    dtype=np.float64).reshape(-1, k)


def power_study(
    benchmark: Any,
    *,
    signals: Sequence[str] | None = None,
    n_null: int = 1000,
    n_signal: int = 300,
    sigmas: Sequence[float] = (0.1, 0.3, 0.7, 1.4, 2.3, 4.5),
    n_centers: int = 1000,
    lam: float = 1e-6,
    schedule: str = "converged",
    combinations: Sequence[str] = COMBINATIONS,
    temperature: float = 1.0,
    baselines: Sequence[str] | None = None,
    baseline_max_ref: int | None = None,
    ideal_toys: int = 20000,
    z_thresholds: Sequence[float] = (2.0, 3.0),
    shape_only: bool = False,
    seed: int = 0,
    workers: int | None = None,
    learner_options: dict[str, Any] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Power of every single width, every combination, the comparison tests and
    the ideal test on a benchmark.

    Parameters
    ----------
    benchmark : PowerBenchmark or str
        Generator with exact densities (see :mod:`nplearn.benchmarks.suite`), or its
        name (``"exp1d8"``, ``"gauss5d"``, ...) for the benchmark's defaults.
    signals : sequence of str, optional
        Signals to study (default all of the benchmark's).
    n_null, n_signal : int
        Null toys (calibration) and toys per signal.
    sigmas : sequence of float
        Kernel widths, in the benchmark's units (no standardisation).
    n_centers, lam, schedule : learner settings (same for every width).
    combinations : sequence of str
        Combinations over the widths (ignored with a single width).
    temperature : float
        ``T`` of fused-p and fused-t.
    baselines : sequence of str, optional
        Comparison tests (default: all applicable, see
        :func:`nplearn.baselines.available_baselines`); ``[]`` for none.
    baseline_max_ref : int, optional
        Reference subsample of the energy-distance and MMD tests (default
        20 000 events; their cost grows like its square). In 1D the default is the
        whole reference: both tests then cost ``O(N log N)``. The value used is
        recorded in the result.
    ideal_toys : int
        Toys of the ideal Neyman-Pearson test per signal (0 to skip).
    z_thresholds : sequence of float
        Significances at which the power is reported.
    shape_only : bool
        Normalise each toy's reference to the toy's own data count ``N_D``
        (weight ``N_D / N_R``) instead of the expected yield ``N(R)`` -- the
        statistic of ``nplearn test`` when no ``--expected`` is given. The data are
        drawn as before (Poisson yields); the statistic no longer carries the
        Poisson fluctuation of the total count (about one χ² degree of freedom of
        noise in the null ``t``) and with it loses any sensitivity to a pure
        normalisation excess. The ideal test is unchanged; of the comparison tests,
        KS, energy distance and MMD do not depend on the normalisation, and the
        binned χ² is computed against the rescaled reference (so it becomes
        shape-only too).
    seed : int
        Master seed: null toys use stream 0, signal ``j`` stream ``j + 1``.
    workers : int, optional
        Worker processes (default all cores).
    learner_options : dict, optional
        Further :class:`~nplearn.KernelLogisticRegression` parameters.
    progress : callable, optional
        ``progress(label, done, total)``.

    Returns
    -------
    dict
        JSON-ready: settings, null summaries (chi2 dof per width), and per signal
        the power of every test; the raw statistics (``null["t"]``, ``null["extra"]``
        and each signal's ``"t"``/``"extra"``) are kept so that the tables can be
        recomputed without rerunning the toys.
    """
    from .baselines import available_baselines
    from .stats import fit_chi2_dof

    if isinstance(benchmark, str):
        from .benchmarks.suite import get_benchmark

        benchmark = get_benchmark(benchmark)
    all_signals = list(benchmark.signals())
    if isinstance(signals, str):
        signals = [signals]
    signals = all_signals if signals is None else list(signals)
    if not signals:
        raise InputError(f"no signal to study: give at least one of "
                         f"{', '.join(all_signals)} (or none for all)")
    unknown = [s for s in signals if s not in all_signals]
    if unknown:
        raise InputError(f"unknown signal(s) {', '.join(unknown)} for {benchmark.name}; "
                         f"choose from {', '.join(all_signals)}")
    twice = sorted({s for s in signals if signals.count(s) > 1})
    if twice:
        raise InputError(f"signal(s) {', '.join(twice)} listed twice")
    for name, v in (("n_null", n_null), ("n_signal", n_signal)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise InputError(f"{name} must be an integer, got {v!r}")
    if n_null < 5 or n_signal < 1:
        raise InputError("a power study needs at least 5 null toys (the chi-square fit of "
                         "the null) and 1 toy per signal")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and temperature > 0):
        raise InputError(f"temperature must be a positive number, got {temperature!r}")
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers
                                or workers < 1):
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    if int(ideal_toys) != ideal_toys or ideal_toys < 0:
        raise InputError(f"ideal_toys must be a non-negative integer, got {ideal_toys!r}")
    if not isinstance(shape_only, (bool, np.bool_)):
        raise InputError(f"shape_only must be True or False, got {shape_only!r}")
    try:
        sigmas = tuple(float(s) for s in np.atleast_1d(sigmas))
        z_thresholds = tuple(float(z) for z in np.atleast_1d(z_thresholds))
    except (TypeError, ValueError):
        raise InputError(f"kernel widths and z_thresholds must be numbers, got {sigmas!r} "
                         f"and {z_thresholds!r}") from None
    if not sigmas or any(not (s > 0 and math.isfinite(s)) for s in sigmas):
        raise InputError(f"kernel widths must be positive numbers, got {sigmas}")
    if not z_thresholds or any(not (z > 0 and math.isfinite(z)) for z in z_thresholds):
        raise InputError(f"z_thresholds must be positive numbers, got {z_thresholds}")
    if isinstance(combinations, str):
        raise InputError(f"combinations must be a sequence of names, e.g. "
                         f"({combinations!r},), not a string")
    bad = [c for c in combinations if c not in COMBINATIONS]
    if bad:
        raise InputError(f"unknown combination(s) {', '.join(map(repr, bad))}; choose from "
                         f"{', '.join(COMBINATIONS)}")
    # the study records these itself; a learner option overriding one would make the
    # result describe other settings than those used
    clash = sorted(set(learner_options or {}) & {"sigma", "n_centers", "lam", "schedule"})
    if clash:
        raise InputError(f"learner_options may not set {', '.join(clash)}: give them as "
                         "power_study's own arguments (sigmas, n_centers, lam, schedule)")
    if baseline_max_ref is not None and (isinstance(baseline_max_ref, bool)
                                         or int(baseline_max_ref) != baseline_max_ref
                                         or baseline_max_ref < 2):
        raise InputError(f"baseline_max_ref must be an integer >= 2, got {baseline_max_ref!r}")
    if isinstance(n_centers, bool) or not isinstance(n_centers, (int, np.integer)) \
            or n_centers < 1:
        raise InputError(f"n_centers must be an integer >= 1, got {n_centers!r}")
    k = len(sigmas)
    combos = tuple(combinations) if k > 1 else ()
    bl = tuple(available_baselines(benchmark.d) if baselines is None else baselines)
    from .baselines import BASELINES

    unknown = [b for b in bl if b not in BASELINES]
    if unknown:
        raise InputError(f"unknown comparison test(s) {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(BASELINES)}")
    from .baselines import OPT_IN_BASELINES

    usable = set(available_baselines(benchmark.d)) | set(OPT_IN_BASELINES)
    unusable = [b for b in bl if b not in usable]
    if unusable:  # before any toy runs, not inside the first one
        raise InputError(f"comparison test(s) {', '.join(unusable)} do not apply to "
                         f"{benchmark.name} ({benchmark.d} features); the applicable ones: "
                         f"{', '.join(sorted(usable))}")
    if int(benchmark.n_ref) < 2:
        raise InputError(f"the benchmark's reference must hold at least 2 events, got "
                         f"n_ref = {benchmark.n_ref}")
    params = {"sigma": sigmas[0], "n_centers": int(n_centers), "lam": float(lam),
              "schedule": schedule, **(learner_options or {})}
    from .learners.kernel import KernelLogisticRegression

    try:  # unknown options fail here, not in every worker
        KernelLogisticRegression(**params)
    except TypeError as exc:
        raise InputError(f"learner_options: {exc}") from None
    # one memory budget for every toy of the study (and its extensions: it is stored)
    params["memory_budget"] = toy_memory_budget(params, workers)

    def prog(label: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda d, t: progress(label, d, t))

    t_start = time.perf_counter()
    if baseline_max_ref is None:  # the value used is recorded
        from .baselines import DEFAULT_MAX_REF

        baseline_max_ref = (int(benchmark.n_ref) if int(benchmark.d) == 1
                            else DEFAULT_MAX_REF)
    null = run_toys(_engine(params, benchmark, "none", 0, seed, sigmas, bl, baseline_max_ref,
                            bool(shape_only)),
                    range(n_null),
                    workers=workers, progress=prog("null toys"))
    ok_null = [t for t in null if t.ok]
    if len(ok_null) < 3:
        raise InputError(f"only {len(ok_null)} null toys succeeded; the first failure: "
                         f"{next((t.message for t in null if not t.ok), '')}")
    T0 = _t_matrix(ok_null, k)
    extra0 = {b: np.array([t.extra[b] for t in ok_null]) for b in bl}

    result: dict[str, Any] = {
        "benchmark": benchmark.name, "d": int(benchmark.d), "n_ref": int(benchmark.n_ref),
        "expected": float(benchmark.expected), "sigmas": list(sigmas),
        "n_signal_scale": float(getattr(benchmark, "n_signal_scale", 1.0)),
        "n_centers": int(n_centers), "lam": float(lam), "schedule": schedule,
        "temperature": temperature, "combinations": list(combos), "baselines": list(bl),
        "baseline_max_ref": baseline_max_ref,
        # reference normalised to each toy's own data count (True) or to N(R)
        "shape_only": bool(shape_only),
        "seed": seed, "z_thresholds": list(z_thresholds),
        "learner_options": dict(learner_options or {}),
        "memory_budget": int(params["memory_budget"]),
        # local p-values of the combinations: every data set ranked with the null toys
        # as one pool of n + 1 (results without this key used leave-one-out toy ranks,
        # which made min-p anti-conservative)
        "combination_ranks": "pooled",
        "null": {
            "n_requested": n_null, "n_ok": len(ok_null),
            "n_not_converged": sum(not t.converged for t in ok_null),
            "chi2_dof": [fit_chi2_dof(T0[:, j])[0] for j in range(k)],
            "median_t": [float(np.median(T0[:, j])) for j in range(k)],
            "median_time_s": float(np.median([t.time for t in ok_null])),
            "ok_indices": [int(t.index) for t in ok_null],
            "t": T0.tolist(),
            "extra": {b: v.tolist() for b, v in extra0.items()},
        },
        "signals": {},
    }
    for j, sig in enumerate(signals):
        toys = run_toys(_engine(params, benchmark, sig, j + 1, seed, sigmas, bl,
                                baseline_max_ref, bool(shape_only)),
                        range(n_signal), workers=workers, progress=prog(f"{sig} toys"))
        ok = [t for t in toys if t.ok]
        T1 = _t_matrix(ok, k)
        extra1 = {b: np.array([t.extra[b] for t in ok]) for b in bl}
        tests = _signal_tests(T1, extra1, T0, extra0, sigmas, combos, temperature,
                              len(toys) - len(ok), z_thresholds)
        entry: dict[str, Any] = {"description": benchmark.describe(sig), "n_requested": n_signal,
                                 "stream": j + 1,
                                 "n_ok": len(ok), "ok_indices": [int(t.index) for t in ok],
                                 "tests": tests, "t": T1.tolist(),
                                 "extra": {b: v.tolist() for b, v in extra1.items()}}
        if ideal_toys:
            entry["ideal"] = _ideal_entry(benchmark, sig, seed, j + 1, int(ideal_toys),
                                          z_thresholds, T0.shape[0])
        result["signals"][sig] = entry
    result["wall_s"] = time.perf_counter() - t_start
    return result


def _ideal_entry(benchmark: Any, signal: str, seed: int, stream: int, n_toys: int,
                 z_thresholds: Sequence[float], n_null: int) -> dict[str, Any]:
    """The ideal test of one signal: its own toys from the study's seed and the
    signal's stream (``spawn_key=(5, stream - 1)``), power at the exact thresholds
    (``power``) and at the sizes the other tests use with ``n_null`` null toys
    (``power_at_size``, the like-for-like row of the tables)."""
    from .benchmarks.suite import ideal_power

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(5, stream - 1)))
    sizes = {f"{z:g}": threshold_size(n_null, z)["size"] for z in z_thresholds}
    out = ideal_power(benchmark, signal, rng, n_toys=n_toys,
                      z_thresholds=tuple(z_thresholds), sizes=sizes)
    out["n_null"] = int(n_null)
    return out


def refresh_ideal(result: dict[str, Any], benchmark: Any, *,
                  strict: bool = True) -> dict[str, Any]:
    """Recompute the ideal test of every signal of a stored power study.

    The ideal toys are redrawn from the study's seed and each signal's stream; the
    stored power at the exact thresholds must be reproduced exactly (otherwise the
    generator or the densities changed). The power at the sizes of the study's
    current null toys (``power_at_size``) is added or updated, e.g. after
    :func:`extend_null`.

    Parameters
    ----------
    result : dict
        A :func:`power_study` result.
    benchmark :
        Its benchmark (:func:`study_benchmark`).
    strict : bool
        Raise :class:`InputError` for an entry that cannot be refreshed (its stream is
        unknown, or it is not reproduced); with ``False`` such an entry is kept as it
        is, with a logged warning (tables then show its exact-threshold power).

    Returns
    -------
    dict
        A copy of ``result`` with the ideal entries recomputed.
    """
    import copy

    from .io import to_jsonable

    out = copy.deepcopy(result)
    n_null = len(out["null"]["t"])
    zs = tuple(float(z) for z in out["z_thresholds"])
    for sig, entry in out["signals"].items():
        old = entry.get("ideal")
        if not old:
            continue
        try:
            new = _ideal_entry(benchmark, sig, int(out["seed"]),
                               _signal_stream(out, benchmark, sig), int(old["n_toys"]), zs,
                               n_null)
            # stored studies write inf as "inf": compare in the stored form
            if any(to_jsonable(new[key]) != to_jsonable(old[key])
                   for key in ("power", "median_z")):
                raise InputError(f"the ideal test of {sig} no longer reproduces the study "
                                 f"(power {new['power']} vs stored {old['power']}): the "
                                 "benchmark's generator or densities changed")
        except InputError as exc:
            if strict:
                raise
            log.warning("ideal test of %s kept as stored: %s", sig, exc)
            continue
        entry["ideal"] = new
    return out


def recombine(result: dict[str, Any], temperature: float | None = None) -> dict[str, Any]:
    """Recompute the combinations' power from the raw statistics a power study kept.

    Parameters
    ----------
    result : dict
        A :func:`power_study` result holding ``null["t"]`` and each signal's ``"t"``.
        With ``"combination_widths"`` (a subset of ``"sigmas"``, e.g. studies merged
        from several runs on the same toys) only those widths are combined.
    temperature : float, optional
        ``T`` of the smooth maxima (default: the study's).

    Returns
    -------
    dict
        A copy of ``result`` whose combination entries are computed by the current
        :func:`nplearn.multitest.combined_pvalues`; single widths, comparison tests
        and the ideal test are unchanged.
    """
    import copy

    if "t" not in result.get("null", {}):
        raise InputError("this power study kept no raw statistics (null['t']); rerun it")
    out = copy.deepcopy(result)
    T = float(out["temperature"] if temperature is None else temperature)
    out["temperature"] = T
    T0 = np.asarray(out["null"]["t"], dtype=np.float64)
    k = T0.shape[1]
    cols = _combination_columns(out, k)
    T0 = T0[:, cols]
    zs = tuple(float(z) for z in out["z_thresholds"])
    for entry in out["signals"].values():
        T1 = np.asarray(entry["t"], dtype=np.float64).reshape(-1, k)[:, cols]
        n_failed = int(entry["n_requested"]) - int(entry["n_ok"])
        entry["tests"].update(_combination_power(T1, T0, out["combinations"], T, n_failed, zs))
    out["combination_ranks"] = "pooled"
    return out


def _combination_columns(result: dict[str, Any], k: int) -> list[int]:
    """Columns of the ``k`` kept widths that the combinations use: all, or those
    named by ``"combination_widths"`` (studies merged from several runs)."""
    chosen = result.get("combination_widths")
    if chosen is None:
        return list(range(k))
    sigmas = [float(x) for x in result.get("sigmas", [])]
    if len(sigmas) != k:
        raise InputError(f"the study lists {len(sigmas)} widths but keeps statistics "
                         f"of {k}: cannot pick combination_widths")
    chosen = [float(x) for x in chosen]
    missing = [x for x in chosen if x not in sigmas]
    if missing:
        raise InputError(f"combination_widths {missing} not among the study's widths "
                         f"{sigmas}")
    if not chosen or len(set(chosen)) != len(chosen):
        raise InputError(f"combination_widths must name distinct widths, got {chosen}")
    return [sigmas.index(x) for x in chosen]


def study_benchmark(result: dict[str, Any]) -> Any:
    """The benchmark a stored power study ran on.

    Its name, ``n_ref``, ``expected`` and signal scale (``n_signal_scale``; studies
    that did not record it get it from the stored signal yields ``N(S)=...``).

    Raises
    ------
    InputError
        If ``result`` does not name a known benchmark and its sizes.
    """
    import dataclasses
    import re

    from .benchmarks.suite import get_benchmark

    try:
        name, n_ref, expected = result["benchmark"], result["n_ref"], result["expected"]
    except (KeyError, TypeError) as exc:
        raise InputError(f"not a power study (missing {exc})") from exc
    bench = dataclasses.replace(get_benchmark(name), n_ref=n_ref, expected=expected)
    scale = result.get("n_signal_scale")
    if scale is None:
        for sig, entry in (result.get("signals") or {}).items():
            m = re.match(r"N\(S\)=([0-9.eE+-]+)", str(entry.get("description", "")))
            base = bench.signal_yield(sig) if sig in bench.signals() else 0.0
            if m and base > 0:
                scale = float(f"{float(m.group(1)) / base:.6g}")
                break
    if scale is not None and hasattr(bench, "n_signal_scale"):
        bench = dataclasses.replace(bench, n_signal_scale=float(scale))
    return bench


def extend_null(
    result: dict[str, Any],
    benchmark: Any,
    n_more: int,
    *,
    workers: int | None = None,
    verify: int = 1,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Add null toys to a power study and recompute every power from the larger null.

    The new toys are those a study with ``n_null + n_more`` null toys would have run
    (toy indices ``n_null ... n_null + n_more - 1`` of the study's seed), so the
    extended study equals that study. More null toys sharpen every calibration, and
    they change the effective ``Z >= 3`` threshold ``p <= floor(a (n + 1)) / (n + 1)``,
    ``a = 1.35e-3``, which is not monotonic in ``n``: below 740 toys Z >= 3 cannot be
    reached; from 740 to 1480 it means beyond all toys (Z >= 3.09 at 1000, 3.21 at
    1480); from 1481 beyond all but one, from 2222 all but two, from 2963 all but
    three (Z >= 3.004 at 3000). Choose ``n`` just above one of these steps.

    Parameters
    ----------
    result : dict
        A :func:`power_study` result that kept its raw statistics.
    benchmark : PowerBenchmark
        The study's benchmark, with the same settings (checked against ``result``).
    n_more : int
        Null toys to add.
    verify : int
        Rerun this many of the study's stored null toys and refuse to extend if their
        statistics (every width and every comparison test) differ from the stored
        ones: a changed fit or generator would mix two different tests in one
        calibration. 0 skips the check.
    workers, progress : as in :func:`power_study`.

    Returns
    -------
    dict
        A copy of ``result`` with the null toys appended, the null summaries and the
        power of every single width, combination and comparison test recomputed;
        the signal toys are unchanged, and the ideal test's power at the new sizes
        (``power_at_size``) is recomputed where its stream is known
        (:func:`refresh_ideal`; other entries are kept). ``null["extensions"]``
        records each extension (toys added, wall time, median time per toy).
    """
    _check_count("n_more", n_more, 1)
    return extend_study(result, benchmark, n_null=n_more, workers=workers, verify=verify,
                        progress=progress)


def extend_signals(
    result: dict[str, Any],
    benchmark: Any,
    n_more: int,
    *,
    signals: Sequence[str] | None = None,
    workers: int | None = None,
    verify: int = 1,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Add toys to the signals of a power study and recompute their powers.

    Each signal draws its toys from its own random stream of the study's seed
    (recorded as ``"stream"``; see :func:`_signal_stream` for older files), so the
    new toys (indices ``n_signal ... n_signal + n_more - 1``) are those a study with
    more toys per signal would have run. The null toys and the ideal test are
    unchanged.

    Parameters
    ----------
    result, benchmark, verify, workers, progress :
        As in :func:`extend_null` (``verify`` reruns stored toys of every extended
        signal).
    n_more : int
        Toys to add to each extended signal.
    signals : sequence of str, optional
        Signals to extend (default all of the study's).

    Returns
    -------
    dict
        A copy of ``result`` with the toys appended to each extended signal and
        its powers recomputed; the signal's ``"extensions"`` records each extension.
    """
    _check_count("n_more", n_more, 1)
    return extend_study(result, benchmark, n_signal=n_more, signals=signals, workers=workers,
                        verify=verify, progress=progress)


def _check_count(name: str, v: Any, low: int) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise InputError(f"{name} must be an integer >= {low}, got {v!r}")


def _stored_value(v: Any) -> float:
    """A stored statistic as a float (``None``, JSON's null, is a missing value)."""
    return math.nan if v is None else float(v)


def _verify_stored(engine: ToyEngine, label: str, stored_t: np.ndarray,
                   stored_extra: dict[str, Any], indices: Sequence[int], k: int,
                   baselines: Sequence[str], verify: int) -> None:
    """Rerun the first ``verify`` stored toys and refuse if any statistic changed."""
    for row, i in list(enumerate(indices))[:verify]:
        toy = engine.run(int(i))
        same = toy.ok and np.allclose(_t_matrix([toy], k)[0], stored_t[row],
                                      rtol=1e-6, atol=1e-6)
        # a missing value (NaN; null in a JSON file) must be missing again
        same = same and all(np.isclose(toy.extra[b], _stored_value(stored_extra[b][row]),
                                       rtol=1e-6, atol=1e-9, equal_nan=True)
                            for b in baselines)
        if not same:
            got = (f"t = {toy.t_widths or [toy.t]}, extra = {toy.extra}" if toy.ok
                   else f"the toy failed: {toy.message}")
            raise InputError(f"{label} toy {i} no longer reproduces the study ({got}; "
                             f"stored t = {stored_t[row].tolist()}): the fit, the generator "
                             "or a comparison test changed since the study ran; rerun the "
                             "study")


def _check_stored_shapes(result: dict[str, Any], k: int, baselines: Sequence[str]) -> None:
    """Refuse a study whose stored statistics do not fit its settings (an edited file:
    rows would otherwise be re-sliced into other widths without a word)."""
    entries = [("null", result["null"])] + [(f"signal {s}", e) for s, e in
                                           result.get("signals", {}).items()]
    for label, e in entries:
        t = e.get("t")
        if not isinstance(t, list) or any(not isinstance(r, list) or len(r) != k
                                          for r in t):
            raise InputError(f"the study's {label} statistics ('t') do not hold one row of "
                             f"{k} value(s) per toy, for its {k} kernel width(s): the file "
                             "was changed; rerun the study")
        if "n_ok" in e and int(e["n_ok"]) != len(t):
            raise InputError(f"the study's {label} entry counts {e['n_ok']} successful toys "
                             f"but stores {len(t)}: the file was changed; rerun the study")
        extra = e.get("extra") or {}
        bad = [b for b in baselines if len(extra.get(b, ())) != len(t)]
        if bad:
            raise InputError(f"the study's {label} entry stores no value per toy for "
                             f"{', '.join(bad)}: the file was changed; rerun the study")


def _stored_indices(entry: dict[str, Any], n_rows: int, label: str, verify: int
                    ) -> tuple[list[int], bool]:
    """Toy indices of the stored rows, and whether they are known.

    Studies written before signal entries kept ``ok_indices`` had them only for the
    null; without them the indices are known when no toy failed.
    """
    idx = entry.get("ok_indices")
    if idx is not None:
        return [int(i) for i in idx], True
    if n_rows == int(entry["n_requested"]):
        return list(range(n_rows)), True
    if verify:
        raise InputError(f"this study's {label} toys partly failed and it did not record "
                         "which: it cannot be verified (verify=0 skips the check)")
    return [], False


def _signal_stream(result: dict[str, Any], benchmark: Any, sig: str) -> int:
    """Random stream of a stored signal's toys, checked against the benchmark.

    Studies record it (``"stream"``); older ones drew signal ``j`` of the requested
    list from stream ``j + 1``, and the list is lost in files written with sorted
    keys: it is the benchmark's own order when the study has every signal (the
    default), otherwise unknown.
    """
    entry = result["signals"][sig]
    desc = entry.get("description")
    if desc is not None and desc != benchmark.describe(sig):
        raise InputError(f"signal {sig} of the study is {desc!r}, the benchmark now gives "
                         f"{benchmark.describe(sig)!r} (another signal scale or generator)")
    if "stream" in entry:
        return int(entry["stream"])
    order = list(benchmark.signals())
    if sorted(result["signals"]) != sorted(order):
        raise InputError(f"this study does not record the random stream of its signal "
                         f"toys and has a subset of {benchmark.name}'s signals, so the stream "
                         f"of {sig} is unknown; rerun the study to extend its signals")
    return order.index(sig) + 1


def extend_study(
    result: dict[str, Any],
    benchmark: Any,
    *,
    n_null: int = 0,
    n_signal: int = 0,
    signals: Sequence[str] | None = None,
    workers: int | None = None,
    verify: int = 1,
    progress: Callable[[str, int, int], None] | None = None,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Add ``n_null`` null toys and ``n_signal`` toys per signal to a power study.

    :func:`extend_null` and :func:`extend_signals` in one pass: every power is
    recomputed once from the enlarged samples (with new null toys also the ideal
    test's ``power_at_size``, see :func:`refresh_ideal`). At least one of ``n_null`` and
    ``n_signal`` must be positive. ``record`` (e.g. the command and commit) is added
    to each new ``"extensions"`` entry.
    """
    import copy

    null = result.get("null", {})
    if "t" not in null or "extra" not in null:
        raise InputError("this power study kept no raw statistics (null['t']); rerun it")
    for name, v, low in (("n_more", n_null, 0), ("n_more", n_signal, 0),
                         ("verify", verify, 0)):
        _check_count(name, v, low)
    if n_null + n_signal < 1:
        raise InputError("n_more must be an integer >= 1: nothing to add")
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers
                                or workers < 1):
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    checks = [("benchmark", benchmark.name), ("d", int(benchmark.d)),
              ("n_ref", int(benchmark.n_ref)), ("expected", float(benchmark.expected))]
    if "n_signal_scale" in result:
        checks.append(("n_signal_scale", float(getattr(benchmark, "n_signal_scale", 1.0))))
    mismatch = [f"{key} {result.get(key)!r} vs {val!r}" for key, val in checks
                if result.get(key) != val]
    if mismatch:
        raise InputError("the benchmark does not match the study: " + "; ".join(mismatch))
    study_signals = list(result.get("signals", {}))
    targets = (study_signals if signals is None else list(signals)) if n_signal else []
    if n_signal and not targets:
        raise InputError("no signals to extend: the study has none or the list is empty")
    unknown = [s for s in targets if s not in study_signals]
    if unknown:
        raise InputError(f"signal(s) {', '.join(unknown)} are not in this study; it has "
                         f"{', '.join(study_signals) or 'none'}")
    if len(set(targets)) != len(targets):
        raise InputError(f"signals to extend are listed twice: {', '.join(targets)}")
    streams = {sig: _signal_stream(result, benchmark, sig) for sig in targets}
    from .stats import fit_chi2_dof

    out = copy.deepcopy(result)
    sigmas = tuple(float(s) for s in out["sigmas"])
    k = len(sigmas)
    bl = tuple(out["baselines"])
    _check_stored_shapes(out, k, bl)
    params = {"sigma": sigmas[0], "n_centers": int(out["n_centers"]), "lam": float(out["lam"]),
              "schedule": out["schedule"], **out.get("learner_options", {})}
    # the study's budget (the feature storage of its toys); older studies: this machine's
    params["memory_budget"] = int(out.get("memory_budget") or
                                  toy_memory_budget(params, workers))
    seed = int(out["seed"])

    def engine(signal: str, stream: int) -> ToyEngine:
        return _engine(params, benchmark, signal, stream, seed, sigmas, bl,
                       out.get("baseline_max_ref"), bool(out.get("shape_only", False)))

    def prog(label: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda d, t: progress(label, d, t))

    # every extended sample is checked before any new toy runs
    samples = ([("null", out["null"], engine("none", 0), int(n_null))] if n_null else []) + [
        (sig, out["signals"][sig], engine(sig, streams[sig]), int(n_signal)) for sig in targets]
    checked = {}
    for label, entry, eng, _ in samples:
        stored = np.asarray(entry["t"], dtype=np.float64).reshape(-1, k)
        idx, known = _stored_indices(entry, stored.shape[0], label, verify)
        _verify_stored(eng, label, stored, entry["extra"], idx, k, bl, verify)
        checked[label] = stored, idx, known

    def add(entry: dict[str, Any], eng: ToyEngine, n_more: int, label: str
            ) -> tuple[np.ndarray, dict[str, np.ndarray], list[ToyResult], float]:
        stored, idx, known = checked[label]
        start = int(entry["n_requested"])
        t0 = time.perf_counter()
        toys = run_toys(eng, range(start, start + n_more), workers=workers,
                        progress=prog(f"extra {label} toys"))
        wall = time.perf_counter() - t0
        ok = [t for t in toys if t.ok]
        T = np.vstack([stored, _t_matrix(ok, k)])
        extra = {b: np.r_[np.asarray(entry["extra"][b], dtype=np.float64),
                          [t.extra[b] for t in ok]] for b in bl}
        entry.update(n_requested=start + n_more, n_ok=int(T.shape[0]), t=T.tolist(),
                     extra={b: v.tolist() for b, v in extra.items()})
        if known:
            entry["ok_indices"] = idx + [int(t.index) for t in ok]
        else:
            entry.pop("ok_indices", None)
        entry.setdefault("extensions", []).append(
            {"n_added": n_more, "n_ok": len(ok), "wall_s": wall,
             "median_time_s": float(np.median([t.time for t in ok])) if ok else math.nan,
             **(record or {})})
        return T, extra, ok, wall

    total_wall = 0.0
    on = out["null"]
    T0 = np.asarray(on["t"], dtype=np.float64).reshape(-1, k)
    extra0 = {b: np.asarray(on["extra"][b], dtype=np.float64) for b in bl}
    for label, entry, eng, n_more in samples:
        T, extra, ok, wall = add(entry, eng, n_more, label)
        total_wall += wall
        if label == "null":
            T0, extra0 = T, extra
            on.update(n_not_converged=int(on.get("n_not_converged", 0))
                      + sum(not t.converged for t in ok),
                      chi2_dof=[fit_chi2_dof(T0[:, j])[0] for j in range(k)],
                      median_t=[float(np.median(T0[:, j])) for j in range(k)])
    zs = tuple(float(z) for z in out["z_thresholds"])
    cols = _combination_columns(out, k)
    for entry in out["signals"].values():
        T1 = np.asarray(entry["t"], dtype=np.float64).reshape(-1, k)
        extra1 = {b: np.asarray(entry["extra"][b], dtype=np.float64) for b in bl}
        entry["tests"] = _signal_tests(T1, extra1, T0, extra0, sigmas, out["combinations"],
                                       float(out["temperature"]),
                                       int(entry["n_requested"]) - int(entry["n_ok"]), zs,
                                       cols)
    out["combination_ranks"] = "pooled"
    out.pop("combinations_recomputed", None)  # every test is recomputed here
    out["wall_s"] = float(out.get("wall_s", 0.0)) + total_wall
    if n_null:  # the other tests' sizes moved with the number of null toys
        out = refresh_ideal(out, benchmark, strict=False)
    return out


def _signal_tests(T1: np.ndarray, extra1: dict[str, np.ndarray], T0: np.ndarray,
                  extra0: dict[str, np.ndarray], sigmas: Sequence[float],
                  combos: Sequence[str], temperature: float, n_failed: int,
                  z_thresholds: Sequence[float],
                  cols: Sequence[int] | None = None) -> dict[str, Any]:
    """Power of every single width, combination (over the widths ``cols``, default
    all) and comparison test of one signal."""
    tests: dict[str, Any] = {}
    for w, s in enumerate(sigmas):
        p, _ = empirical_p(T1[:, w], T0[:, w])
        tests[f"sigma={s:g}"] = _power(p, n_failed, z_thresholds, len(T0))
    c = list(range(T0.shape[1])) if cols is None else list(cols)
    tests.update(_combination_power(T1[:, c], T0[:, c], combos, temperature, n_failed,
                                    z_thresholds))
    for b, v in extra1.items():
        p, _ = empirical_p(v, extra0[b])
        tests[b] = _power(p, n_failed, z_thresholds, len(extra0[b]))
    return tests


def _power(p: np.ndarray, n_failed: int, z_thresholds: Sequence[float],
           n_null: int) -> dict[str, Any]:
    """:func:`power_summary` with the failed toys counted as not detected (p = 1)."""
    return power_summary(np.r_[p, np.ones(n_failed)], z_thresholds, n_null)


def _combination_power(T1: np.ndarray, T0: np.ndarray, combos: Sequence[str],
                       temperature: float, n_failed: int,
                       z_thresholds: Sequence[float]) -> dict[str, Any]:
    """Power of every combination for signal statistics ``T1`` against the null ``T0``."""
    return {m: _power(combined_pvalues(T1, T0, m, temperature)[1], n_failed, z_thresholds,
                      len(T0))
            for m in combos}


def format_power_table(result: dict[str, Any], z: str = "3") -> str:
    """Markdown table: one row per test, one column per signal, ``power@Z>=2 /
    power@Z>=3`` (68% intervals in the JSON)."""
    sigs = list(result["signals"])
    if not sigs:
        return "(no signals)"
    tests = _test_order(list(result["signals"][sigs[0]]["tests"]))
    zs = [f"{x:g}" for x in result["z_thresholds"]]
    head = "| test | " + " | ".join(
        f"{s} ({result['signals'][s]['description']})" for s in sigs) + " |"
    lines = [f"power at Z >= {' / '.join(zs)} (median Z)", "", head,
             "|---|" + "---|" * len(sigs)]

    n = int(result.get("null", {}).get("n_ok", 0))

    def cell(e: dict[str, Any], n_null: int | None = n) -> str:
        vals = [e["power"][k] for k in zs]
        pw = " / ".join(f"{v['value'] if isinstance(v, dict) else v:.3f}" for v in vals)
        return f"{pw} ({median_z_label(e, n_null)})"

    for tname in tests:
        lines.append(f"| {tname} | " + " | ".join(
            cell(result["signals"][s]["tests"][tname]) for s in sigs) + " |")
    ideals = [result["signals"][s].get("ideal") for s in sigs]
    if all(ideals):
        matched, rows = ideal_table_rows(ideals, n)
        label = ("ideal (Neyman-Pearson), at the same sizes" if matched
                 else "ideal (Neyman-Pearson), exact thresholds")
        lines.append(f"| {label} | " + " | ".join(
            cell({**e, "power": row}, None) for e, row in zip(ideals, rows, strict=True))
            + " |")
    if n > 0:
        banded = any("threshold_band68" in pw
                     for s in sigs for e in result["signals"][s]["tests"].values()
                     for pw in e["power"].values() if isinstance(pw, dict))
        lines.append("")
        lines.extend(threshold_note(n, float(zt), banded) for zt in result["z_thresholds"])
        if any(median_z_label(e, n).startswith("≥") for s in sigs
               for e in result["signals"][s]["tests"].values()):
            lines.append(f"≥: more than half of the signal toys are beyond every one of the "
                         f"{n} null toys, so the median Z is only a lower bound.")
    return "\n".join(lines)


def _test_order(tests: list[str]) -> list[str]:
    """Table rows in reading order: the single widths from the narrowest, the
    combinations (then variants of them), then the comparison tests by name."""

    def key(name: str) -> tuple[int, float, str]:
        if name.startswith("sigma="):
            try:
                return (0, float(name[6:]), "")
            except ValueError:
                pass
        if name in COMBINATIONS:
            return (1, float(COMBINATIONS.index(name)), "")
        if name.startswith(COMBINATIONS):
            return (2, 0.0, "")  # variants keep the order they were added in
        return (3, 0.0, name)

    return sorted(tests, key=key)


def median_z_label(entry: dict[str, Any], n_null: int | None) -> str:
    """The median Z of a power entry for a table: ``"≥3.09"`` where it sits at the
    smallest p-value ``n_null`` null toys can give (a lower bound, see
    :func:`power_summary`; entries written before ``median_z_bound`` existed are
    judged from ``n_null``), else ``"3.09"``. ``n_null=None``: no floor (the ideal
    test)."""
    z = float(entry["median_z"])
    bound = entry.get("median_z_bound")
    if bound is None and n_null:
        bound = z >= p_to_z(1.0 / (n_null + 1)) - 1e-9
    return f"≥{z:.2f}" if (bound and n_null) else f"{z:.2f}"


def ideal_power_row(ideal: dict[str, Any], n_null: int) -> dict[str, Any]:
    """The ideal test's power to set beside tests calibrated by ``n_null`` null toys:
    ``power_at_size`` when it was computed for that many toys (the same true sizes,
    ``k / (n_null + 1)``), otherwise ``power`` (exact thresholds; studies written
    before ``power_at_size`` existed)."""
    if "power_at_size" in ideal and int(ideal.get("n_null", -1)) == int(n_null):
        return ideal["power_at_size"]
    return ideal["power"]


def ideal_table_rows(ideals: Sequence[dict[str, Any] | None], n_null: int
                     ) -> tuple[bool, list[dict[str, Any] | None]]:
    """One kind of ideal power for a whole table row: ``(True, power_at_size of
    each)`` when every signal has it for ``n_null`` null toys, else ``(False, the
    exact-threshold power of each)``; ``None`` for a signal without an ideal test."""
    matched = all(i and ideal_power_row(i, n_null) is not i["power"] for i in ideals)
    rows = [None if not i else ideal_power_row(i, n_null) if matched else i["power"]
            for i in ideals]
    return matched, rows


def threshold_note(n_null: int, z: float, banded: bool = False) -> str:
    """One line on the ``Z >= z`` threshold of ``n_null`` null toys and the noise of
    its true size (:func:`threshold_size`).

    Parameters
    ----------
    n_null : int
        Null toys the threshold comes from.
    z : float
        The Z threshold.
    banded : bool
        Whether the powers this line accompanies carry ``threshold_band68``
        (studies written before that field existed do not); adds a pointer to it.

    Returns
    -------
    str
        The line (no trailing newline).
    """
    th = threshold_size(n_null, z)
    if th["k"] == 0:
        return (f"Z >= {z:g} cannot be reached with {n_null} null toys "
                f"(it needs {math.ceil(1 / th['nominal']) - 1}).")
    beyond = ("every one" if th["k"] == 1 else f"all but {th['k'] - 1}")
    return (f"Z >= {z:g}: p <= {th['k']}/{n_null + 1}, beyond {beyond} of the {n_null} null "
            f"toys (Z >= {th['z_effective']:.3f}); the true size of this threshold lies in "
            f"{th['size_lo']:#.2g}-{th['size_hi']:#.2g} (68%; nominal {th['nominal']:.3g}) "
            "for every signal alike"
            + ("; each power's threshold_band68 in the JSON is the power with the "
               "threshold moved just outside that range." if banded else "."))
