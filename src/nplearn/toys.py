"""Pseudo-experiments (toys) under the reference hypothesis, run in parallel.

A toy is a pure function of ``(engine, index)``: it draws from its own random
stream ``SeedSequence(seed, spawn_key=(1, index))``, so its result does not
depend on which worker runs it, in which order, or how many workers there are.
The observed fit uses the stream ``spawn_key=(0,)``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from typing import Any

import numpy as np
import torch

from ._torch_utils import cpu_count, torch_threads
from .envelope import FProbe, encode_values, probe_values
from .errors import InputError, NplearnError
from .learners import is_neural, make_learner
from .learners.kernel import (
    FitInfo,
    KernelLogisticRegression,
    NystromBasis,
    check_center_memory,
    default_n_centers,
    discard_idle_feature_memory,
    quiet_convergence,
    reuse_feature_memory,
)
from .preprocess import Standardizer
from .stats import nplm_statistic

__all__ = [
    "ToyEngine",
    "ToyResult",
    "fit_widths",
    "nplm_fit",
    "observed_seed",
    "run_toys",
    "toy_memory_budget",
    "toy_seed",
]

log = logging.getLogger(__name__)

#: Serialises building the shared-centre state (threads of one process share an engine).
_SHARED_BUILD_LOCK = threading.Lock()

_OBSERVED_KEY = 0
_TOY_KEY = 1
_STREAM_KEY = 3
_SHARED_KEY = 4

#: What a user toy generator may return: data only (against the fixed
#: reference), ``(reference, data)`` or ``(reference, data, reference_weights)``.
ToySample = Any
ToyGenerator = Callable[[np.random.Generator], ToySample]


def observed_seed(seed: int) -> np.random.SeedSequence:
    """Random stream of the observed fit."""
    return np.random.SeedSequence(seed, spawn_key=(_OBSERVED_KEY,))


def toy_seed(seed: int, index: int, stream: int = 0) -> np.random.SeedSequence:
    """Random stream of toy ``index`` (independent of every other toy).

    ``stream`` separates independent families of toys sharing one master seed
    (e.g. the null toys, stream 0, and the signal toys of a benchmark).
    """
    if int(index) < 0 or int(stream) < 0:
        raise InputError(f"toy index and stream must be >= 0, got {index} and {stream}")
    if stream == 0:
        return np.random.SeedSequence(seed, spawn_key=(_TOY_KEY, int(index)))
    return np.random.SeedSequence(seed, spawn_key=(_STREAM_KEY, int(stream), int(index)))


def normalised_weights(n_ref: int, expected: float, rel: np.ndarray | None) -> np.ndarray:
    """Reference weights summing to ``expected`` (uniform when ``rel`` is None)."""
    if rel is None:
        return np.full(n_ref, expected / n_ref)
    return rel * (expected / rel.sum())


def nplm_fit(
    reference: np.ndarray,
    data: np.ndarray,
    w_ref: np.ndarray,
    learner: KernelLogisticRegression,
    seed: np.random.SeedSequence,
    init_decision: np.ndarray | None = None,
) -> tuple[float, float, FitInfo, KernelLogisticRegression]:
    """Fit ``f`` on (reference, data) and return ``(t, N_w, fit_info, learner)``.

    The inputs must already be preprocessed (standardised). The learner's centres
    are drawn from ``seed``; ``init_decision`` is a warm start (see
    :meth:`KernelLogisticRegression.fit`).
    """
    X = np.concatenate([reference, data], axis=0)
    y = np.concatenate([np.zeros(len(reference), dtype=np.int64),
                        np.ones(len(data), dtype=np.int64)])
    sw = np.concatenate([w_ref, np.ones(len(data))])
    learner.set_params(random_state=np.random.default_rng(seed))
    learner.fit(X, y, sw, init_decision=init_decision)
    f = learner.train_decision_
    t, n_w = nplm_statistic(f[: len(reference)], f[len(reference):], w_ref)
    return t, n_w, learner.fit_info_, learner


def shared_basis(pool: np.ndarray, learner: KernelLogisticRegression, seed: int) -> NystromBasis:
    """The basis of ``centers="shared"``: ``M`` candidates drawn once from the pool.

    Drawn from the stream ``SeedSequence(seed, spawn_key=(4,))``, so the observed
    fit and every toy of a calibration use the same centres.
    """
    n_pool = pool.shape[0]
    M = min(int(learner.n_centers), n_pool) if learner.n_centers is not None else \
        default_n_centers(n_pool)
    device = learner._settings()[0]
    check_center_memory(M, device)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SHARED_KEY,)))
    idx = np.sort(rng.choice(n_pool, size=M, replace=False))
    if isinstance(learner.sigma, str):
        raise InputError("shared centres need a numeric sigma")
    return NystromBasis.build(pool, idx, float(learner.sigma), learner.resolved_rank_tol(),
                              device)


def nplm_fit_shared(
    reference: np.ndarray,
    data: np.ndarray,
    w_ref: np.ndarray,
    learner: KernelLogisticRegression,
    basis: NystromBasis,
    init_decision: np.ndarray | None = None,
) -> tuple[float, float, FitInfo, KernelLogisticRegression]:
    """Observed fit with a shared basis whose candidates index ``reference`` rows."""
    X = np.concatenate([reference, data], axis=0)
    y = np.concatenate([np.zeros(len(reference)), np.ones(len(data))])
    sw = np.concatenate([w_ref, np.ones(len(data))])
    learner._fit_basis(X, y, sw, basis, init_decision=init_decision)
    f = learner.train_decision_
    t, n_w = nplm_statistic(f[: len(reference)], f[len(reference):], w_ref)
    return t, n_w, learner.fit_info_, learner


def _fit_shared(pool, take, pool_weights, expected, learner, basis, feat, init_decision=None):
    """One shared-centre toy: the pool with ``take`` relabelled as pseudo-data."""
    n_pool = pool.shape[0]
    y = np.zeros(n_pool)
    y[take] = 1.0
    refmask = y == 0
    rel = None if pool_weights is None else pool_weights[refmask]
    w = normalised_weights(int(refmask.sum()), expected, rel)
    sw = np.ones(n_pool)
    sw[refmask] = w
    learner._fit_basis(pool, y, sw, basis, feat=feat, init_decision=init_decision)
    f = learner.train_decision_
    t, n_w = nplm_statistic(f[refmask], f[take], w)
    return t, n_w, learner.fit_info_, learner


FitOne = Callable[[float, "np.ndarray | None"], tuple[float, float, FitInfo,
                                                      KernelLogisticRegression]]


def width_learner_params(params: dict[str, Any], sigma: float, n_widths: int,
                         shared: bool) -> dict[str, Any]:
    """Learner parameters of one kernel width: in shared-centre mode with several
    widths the features of every width are cached at the same time, so the memory
    budget is split between them (the observed fit and the toys alike)."""
    out = {**params, "sigma": float(sigma)}
    if shared and n_widths > 1 and out.get("memory_budget"):
        out["memory_budget"] = int(out["memory_budget"]) // n_widths
    return out


#: Default of :func:`fit_widths` and ``ToyEngine.warm_start``: the observed fit and the
#: toys of a test must fit their widths the same way.
WARM_START_WIDTHS = True


def fit_widths(widths: Sequence[float], fit_one: FitOne, warm_start: bool = WARM_START_WIDTHS
               ) -> list[tuple[float, float, FitInfo, KernelLogisticRegression]]:
    """Fit several kernel widths on one sample; results in the order of ``widths``.

    The widths are fitted from the widest to the narrowest. With ``warm_start``
    each fit starts from the decision values of the previous (wider) one, which
    saves Newton steps of PCG fits (direct solves ignore it: measured, their
    first Hessian costs more than the steps saved). The optimum, hence ``t``,
    does not depend on the start beyond the convergence tolerance.

    Parameters
    ----------
    widths : sequence of float
        Kernel widths.
    fit_one : callable
        ``fit_one(sigma, init_decision) -> (t, n_w, fit_info, learner)``.
    warm_start : bool
        Pass the previous width's decision values as ``init_decision``.
    """
    out: list[Any] = [None] * len(widths)
    f_prev = None
    for k in sorted(range(len(widths)), key=lambda i: -float(widths[i])):
        res = fit_one(float(widths[k]), f_prev if warm_start else None)
        out[k] = res
        f_prev = res[3].train_decision_ if math.isfinite(res[0]) else None
    return out


@dataclass
class ToyResult:
    """Outcome of one toy (plain types only).

    ``ok`` is False when the fit failed or gave a non-finite statistic; such toys
    are reported and never enter the null distribution.

    With several kernel widths every width is fitted on the same sample;
    ``t_widths``/``n_w_widths``/``converged_widths``/``rank_widths`` hold one
    entry per width (in the order of ``ToyEngine.sigmas``), ``t`` and ``n_w``
    are those of the first width, ``converged`` is true when every width
    converged, ``n_iter`` and ``time`` are totals and ``rank`` the largest rank.
    ``ok`` requires every width to give a finite statistic. ``f_probe`` holds, per
    width, the fitted ``f`` at the engine's probe (:mod:`nplearn.envelope`, encoded
    by :func:`~nplearn.envelope.encode_values`; empty without a probe or when the toy
    failed).
    """

    index: int
    t: float
    n_w: float
    n_data: int
    n_ref: int
    ok: bool
    converged: bool
    n_iter: int
    rank: int
    grad_norm: float
    suboptimality: float
    time: float
    message: str
    t_widths: list[float] = field(default_factory=list)
    n_w_widths: list[float] = field(default_factory=list)
    converged_widths: list[bool] = field(default_factory=list)
    rank_widths: list[int] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)
    f_probe: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (for JSON)."""
        return asdict(self)


@dataclass
class ToyEngine:
    """Everything a worker needs to run any toy of one calibration.

    Parameters
    ----------
    learner_params : dict
        Full parameters of the :class:`KernelLogisticRegression` (sigma and
        n_centers resolved), identical for the observed fit and every toy.
    expected : float
        ``N(R)``; toy data sets have ``Poisson(N(R))`` events in resampling mode.
    seed : int
        Master seed.
    pool : numpy.ndarray, optional
        Standardised reference pool for resampling toys.
    pool_weights : numpy.ndarray, optional
        Relative weights of the pool events (None: uniform).
    generator : callable, optional
        User generator ``gen(rng) -> data | (reference, data) | (reference, data,
        weights)`` of raw (unstandardised) events.
    standardizer : Standardizer, optional
        Applied to what ``generator`` returns.
    reference, reference_weights : numpy.ndarray, optional
        Standardised fixed reference for generators that return data only.
    stream : int
        Random-stream family of these toys (0 for the null toys of a test).
    shared_centers : bool
        Resampling mode only: use one basis for all toys (see :func:`shared_basis`);
        each toy then reuses the pool's features and only re-solves.
    shape_only : bool
        The observed test normalised the reference to the observed count (no
        ``expected`` given). Toys then do the same: resampled toys have exactly
        ``round(expected)`` data events, generator toys normalise the reference to
        their own data count.
    sigmas : tuple of float
        Several kernel widths fitted on every toy's sample (multiple testing);
        empty for the single width ``learner_params["sigma"]``. In per-fit mode
        every width uses the same centres (drawn from the toy's fit stream).
    extra_stats : tuple of str
        Comparison tests (:data:`nplearn.baselines.BASELINES`) evaluated on each
        toy's sample, stored in ``ToyResult.extra``; their random subsampling uses
        a third child of the toy's stream.
    extra_max_ref : int, optional
        Reference subsample size of the energy-distance and MMD tests (their
        default, 20 000, otherwise). Any fixed size gives a valid test, since
        each is calibrated on its own null toys; smaller is faster.
    warm_start : bool
        Several widths: start each PCG fit from the previous width's solution
        (:func:`fit_widths`). The observed fit does the same.
    probe : FProbe, optional
        Standardised points where every toy evaluates its fitted ``f`` at each width
        (``ToyResult.f_probe``; the null envelope of ``f``, :mod:`nplearn.envelope`).
    """

    learner_params: dict[str, Any]
    expected: float
    seed: int
    pool: np.ndarray | None = None
    pool_weights: np.ndarray | None = None
    generator: ToyGenerator | None = None
    standardizer: Standardizer | None = None
    reference: np.ndarray | None = None
    reference_weights: np.ndarray | None = None
    stream: int = 0
    shared_centers: bool = False
    shape_only: bool = False
    sigmas: tuple[float, ...] = ()
    extra_stats: tuple[str, ...] = ()
    extra_max_ref: int | None = None
    warm_start: bool = WARM_START_WIDTHS
    probe: FProbe | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # the per-process cache (basis, pool features) is rebuilt in each worker
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    @property
    def widths(self) -> tuple[float, ...]:
        """The kernel widths every toy fits (one unless ``sigmas`` is given)."""
        if self.neural:
            return ()
        return tuple(self.sigmas) if self.sigmas else (float(self.learner_params["sigma"]),)

    @property
    def neural(self) -> bool:
        """True when the toys train the neural network (no kernel widths)."""
        return is_neural(self.learner_params)

    def width_params(self, sigma: float) -> dict[str, Any]:
        """Learner parameters of one width (:func:`width_learner_params`)."""
        return width_learner_params(self.learner_params, sigma, len(self.widths),
                                    self.shared_centers)

    def shared_state(self, sigma: float | None = None) -> tuple[Any, Any, Any, np.ndarray]:
        """Shared-centre mode: ``(learner, basis, pool_features, free_indices)``.

        Built once per process and width: the basis from :func:`shared_basis`, the
        features of the whole pool, and the pool indices that may become
        pseudo-data (every event except the candidate centres, which always stay in
        the reference, as they do in the observed fit; the candidates are the same
        for every width).
        """
        sigma = self.widths[0] if sigma is None else float(sigma)
        key = ("shared", sigma)
        if key in self._cache:
            return self._cache[key]
        with _SHARED_BUILD_LOCK:  # built once even when toys run in threads
            return self._build_shared_state(key, sigma)

    def _build_shared_state(self, key: tuple[str, float],
                            sigma: float) -> tuple[Any, Any, Any, np.ndarray]:
        if key not in self._cache:
            if self.pool is None:
                raise InputError("shared centres need a reference pool (resampled toys)")
            learner = KernelLogisticRegression(**self.width_params(sigma))
            basis = self._cache.get(("basis", sigma)) or shared_basis(self.pool, learner,
                                                                      self.seed)
            dtype = learner._settings()[1]
            _, mode = learner.feature_mode(self.pool.shape[0], basis.rank)
            feat = basis.features(basis.events(self.pool, dtype), mode, learner.block_bytes,
                                  learner.window_budget())
            free = np.setdiff1d(np.arange(self.pool.shape[0]), basis.candidate_idx)
            self._cache[key] = (learner, basis, feat, free)
        return self._cache[key]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw one toy: ``(reference, data, reference_weights)``, standardised."""
        if self.generator is not None:
            return self._sample_generator(rng)
        if self.pool is None:
            raise InputError("a ToyEngine needs a reference pool or a generator")
        take = self._draw_pseudo_data(rng, None)
        mask = np.ones(self.pool.shape[0], dtype=bool)
        mask[take] = False
        ref = self.pool[mask]
        rel = None if self.pool_weights is None else self.pool_weights[mask]
        w = normalised_weights(ref.shape[0], self.expected, rel)
        return ref, self.pool[take], w

    def _draw_pseudo_data(self, rng: np.random.Generator, allowed: np.ndarray | None) -> np.ndarray:
        """Sorted pool indices of ``Poisson(N(R))`` pseudo-data events, drawn without
        replacement among ``allowed`` (default: the whole pool), with probability
        proportional to the pool weights when there are any."""
        n_pool = self.pool.shape[0]  # type: ignore[union-attr]
        n_avail = n_pool if allowed is None else allowed.size
        wts = None
        if self.pool_weights is not None:  # events of weight zero are never drawn
            wts = self.pool_weights if allowed is None else self.pool_weights[allowed]
            n_positive = int(np.count_nonzero(wts > 0))
        else:
            n_positive = n_avail
        n_data = round(self.expected) if self.shape_only else int(rng.poisson(self.expected))
        if n_data >= n_positive:
            raise InputError(
                f"toy drew {n_data} data events from a reference pool of {n_positive} usable "
                "events (of non-zero weight, outside shared centres): the pool must be much "
                "larger than the expected yield"
            )
        if wts is None:
            take = rng.choice(n_avail, size=n_data, replace=False)
        else:
            # weighted sampling without replacement (Efraimidis-Spirakis keys)
            with np.errstate(divide="ignore"):  # zero weights: key -inf, never drawn
                keys = np.log(rng.random(n_avail)) / wts
            take = np.argpartition(-keys, n_data)[:n_data] if n_data else np.array([], int)
        take = np.sort(take)
        return take if allowed is None else allowed[take]

    def _sample_generator(
        self, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from .io import as_events

        out = self.generator(rng)  # type: ignore[misc]
        std = self.standardizer
        # the observed events' number of features: the toys must have as many
        d = (self.reference.shape[1] if self.reference is not None else
             std.mean.shape[0] if std is not None else None)
        if isinstance(out, tuple):
            if len(out) not in (2, 3):
                raise InputError(
                    "a toy generator must return data, (reference, data) or "
                    f"(reference, data, weights); got a tuple of length {len(out)}"
                )
            ref = as_events(out[0], "toy reference", n_features=d)
            # a toy may have no data event (Poisson(N(R)) at a small N(R))
            data = as_events(out[1], "toy data", n_features=ref.shape[1], allow_empty=True)
            rel = None
            if len(out) == 3 and out[2] is not None:
                from .io import as_weights

                rel = as_weights(out[2], ref.shape[0], "toy reference weights")
            if std is not None:
                ref, data = std.transform(ref), std.transform(data)
            norm = float(len(data)) if self.shape_only else self.expected
            if norm <= 0:
                raise InputError("toy generator returned no data events in a shape-only "
                                 "test (N(R) = N_D = 0); give the expected yield")
            return ref, data, normalised_weights(ref.shape[0], norm, rel)
        data = as_events(out, "toy data", allow_empty=True, n_features=d)
        if self.reference is None or self.reference_weights is None:
            raise InputError("generator returned data only but no fixed reference was given")
        if std is not None:
            data = std.transform(data)
        w = self.reference_weights
        if self.shape_only:
            if len(data) == 0:
                raise InputError("toy generator returned no data events in a shape-only "
                                 "test (N(R) = N_D = 0); give the expected yield")
            w = w * (len(data) / w.sum())
        return self.reference, data, w

    def run(self, index: int) -> ToyResult:
        """Run toy ``index``: sample, fit, compute ``t``.

        A toy that runs out of memory is retried once after unreferenced memory is
        collected (and the CUDA cache emptied); if it fails again it is reported
        with a message starting with :data:`OUT_OF_MEMORY` and is not written to a
        checkpoint, so a resumed run tries it again (whether a toy fits in memory
        depends on what else runs, and large toys, which have large ``t``, would
        otherwise be lost for good).
        """
        for attempt in (1, 2):
            try:
                with quiet_convergence():  # counted in the result, not logged per toy
                    return self._run_once(index)
            except (MemoryError, RuntimeError) as exc:
                if not is_resource_error(exc):
                    raise
                log.warning("toy %d ran out of memory (attempt %d): %s", index, attempt, exc)
                _release_memory()
                if attempt == 2:
                    return ToyResult(index, math.nan, math.nan, 0, 0, False, False, 0, 0,
                                     math.nan, math.nan, 0.0,
                                     f"{OUT_OF_MEMORY}: {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")

    def _run_once(self, index: int) -> ToyResult:
        ss = toy_seed(self.seed, index, self.stream)
        s_sample, s_fit, s_extra = ss.spawn(3)  # the first two as with spawn(2)
        t0 = time.perf_counter()
        rng = np.random.default_rng(s_sample)
        fits: list[tuple[float, float, FitInfo, KernelLogisticRegression]]
        extra: dict[str, float] = {}
        try:
            if self.shared_centers:
                free = self.shared_state()[3]
                take = self._draw_pseudo_data(rng, free)
                n_data, n_ref = take.size, self.pool.shape[0] - take.size  # type: ignore[union-attr]
                def fit_one(sigma: float, f0: np.ndarray | None) -> Any:
                    _, basis, feat, _ = self.shared_state(sigma)
                    # a learner of its own: toys may run at once in threads of one
                    # process (threaded executors, Dask workers), and a fit stores its
                    # result on the learner; the basis and features are read-only
                    learner = KernelLogisticRegression(**self.width_params(sigma))
                    return _fit_shared(self.pool, take, self.pool_weights, self.expected,
                                       learner, basis, feat, f0)

                fits = fit_widths(self.widths, fit_one, self.warm_start)
                if self.extra_stats:
                    mask = np.ones(self.pool.shape[0], dtype=bool)  # type: ignore[union-attr]
                    mask[take] = False
                    rel = None if self.pool_weights is None else self.pool_weights[mask]
                    w = normalised_weights(int(mask.sum()), self.expected, rel)
                    extra = self._extra(self.pool[mask], self.pool[take], w, s_extra)  # type: ignore[index]
            else:
                ref, data, w = self.sample(rng)
                n_data, n_ref = len(data), len(ref)
                if self.neural:
                    fits = [nplm_fit(ref, data, w, make_learner(self.learner_params), s_fit)]
                else:
                    fits = fit_widths(
                        self.widths,
                        lambda sigma, f0: nplm_fit(ref, data, w, KernelLogisticRegression(
                            **self.width_params(sigma)), s_fit, f0),
                        self.warm_start)
                extra = self._extra(ref, data, w, s_extra)
            probed = ("" if self.probe is None or not all(math.isfinite(f[0]) for f in fits)
                      else encode_values([probe_values(self.probe, f[3]) for f in fits]))
        except (RuntimeError, FloatingPointError, torch.linalg.LinAlgError) as exc:
            if is_resource_error(exc):
                raise
            # numerical failures: report the toy, never count it
            return ToyResult(index, math.nan, math.nan, 0, 0, False, False, 0, 0,
                             math.nan, math.nan, time.perf_counter() - t0,
                             f"fit failed: {type(exc).__name__}: {exc}")
        ts = [f[0] for f in fits]
        infos = [f[2] for f in fits]
        bad = [k for k, t in enumerate(ts) if not math.isfinite(t)]
        ok = not bad
        if ok:
            message = "; ".join(dict.fromkeys(i.message for i in infos))
        else:
            message = ("non-finite test statistic" if len(ts) == 1 else
                       "non-finite test statistic at width(s) "
                       + ", ".join(f"{self.widths[k]:g}" for k in bad))
        return ToyResult(
            index=index, t=ts[0], n_w=fits[0][1], n_data=n_data, n_ref=n_ref, ok=ok,
            converged=all(i.converged for i in infos),
            n_iter=sum(i.n_iter for i in infos), rank=max(i.rank for i in infos),
            grad_norm=max(i.grad_norm for i in infos),
            suboptimality=max(i.suboptimality for i in infos),
            time=time.perf_counter() - t0, message=message,
            t_widths=ts, n_w_widths=[f[1] for f in fits],
            converged_widths=[i.converged for i in infos],
            rank_widths=[i.rank for i in infos], extra=extra,
            f_probe=probed,
        )

    def _extra(self, ref: np.ndarray, data: np.ndarray, w: np.ndarray,
               ss: np.random.SeedSequence) -> dict[str, float]:
        """The comparison tests' statistics on one toy's sample."""
        if not self.extra_stats:
            return {}
        from .baselines import BASELINES

        discard_idle_feature_memory()  # an idle feature block would add to their memory

        rng = np.random.default_rng(ss)
        out = {}
        for name in self.extra_stats:
            fn = BASELINES[name]
            try:
                if self.extra_max_ref is not None and name in _SUBSAMPLED_BASELINES:
                    out[name] = float(fn(ref, data, w, rng, max_ref=self.extra_max_ref))
                else:
                    out[name] = float(fn(ref, data, w, rng))
            except InputError as exc:
                # a sample this test cannot take (e.g. no data event): its value is
                # missing, which counts against detection (a null toy's exceeds every
                # statistic, a signal toy's is not detected)
                log.debug("toy sample refused by %s: %s", name, exc)
                out[name] = math.nan
        return out


#: Comparison tests whose reference can be subsampled (``max_ref``).
_SUBSAMPLED_BASELINES = ("energy", "mmd")


# ---------------------------------------------------------------- parallel run

_WORKER_ENGINE: ToyEngine | None = None
_WORKER_CHECKPOINT: Any = None


#: Seconds between a worker's checks that the process that started it still runs.
_PARENT_POLL_S = 1.0


def _exit_with_parent(parent: int) -> None:
    """End this worker process once ``parent``, the process that started it, is gone.
    A parent killed with SIGKILL (which no handler sees) would otherwise leave the
    worker finishing its chunk and then waiting on the pool's queue for ever."""

    def watch() -> None:
        while True:
            time.sleep(_PARENT_POLL_S)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="nplearn-parent-watch", daemon=True).start()


def _init_worker(engine_file: str, threads: int, checkpoint: Any = None,
                 devices: Sequence[str] | None = None, slots: Any = None,
                 parent: int | None = None) -> None:
    import torch

    global _WORKER_ENGINE, _WORKER_CHECKPOINT
    if parent is not None:
        _exit_with_parent(parent)
    with open(engine_file, "rb") as fh:
        engine_bytes = fh.read()
    torch.set_num_threads(threads)
    engine = pickle.loads(engine_bytes)
    if devices:
        # one GPU per worker: each worker takes the next free slot
        dev = devices[int(slots.get()) % len(devices)]
        engine = replace(engine, learner_params={**engine.learner_params, "device": dev})
        if dev.startswith("cuda"):
            torch.cuda.set_device(torch.device(dev))
    _WORKER_ENGINE = engine
    _WORKER_CHECKPOINT = checkpoint


def _run_one(engine: ToyEngine, index: int, checkpoint: Any) -> ToyResult:
    res = engine.run(index)
    if checkpoint is not None and not res.message.startswith(OUT_OF_MEMORY):
        checkpoint.write(res)  # persisted as soon as it is done
    return res


#: Message prefix of a toy that ran out of memory twice (never checkpointed).
OUT_OF_MEMORY = "out of memory"


def is_resource_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure to allocate memory (host or device), not a
    numerical failure of the fit."""
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if isinstance(exc, (MemoryError, oom)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        k in text for k in ("out of memory", "can't allocate memory",
                            "cannot allocate memory", "not enough memory"))


def _release_memory() -> None:
    """Free what can be freed before a toy is retried."""
    import gc

    discard_idle_feature_memory()
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _run_chunk(indices: Sequence[int]) -> list[ToyResult]:
    assert _WORKER_ENGINE is not None
    with reuse_feature_memory():
        return [_run_one(_WORKER_ENGINE, i, _WORKER_CHECKPOINT) for i in indices]


_EXECUTOR_ENGINES: dict[str, ToyEngine] = {}


def _executor_chunk(engine_bytes: bytes, indices: Sequence[int], threads: int,
                    checkpoint: Any, source: str | None = None) -> list[ToyResult]:
    """A chunk of toys on an executor's worker (the engine is unpickled once per
    worker process and calibration). ``source``: the submitting process's
    :func:`source_digest`; a worker running other nplearn code refuses the chunk
    (its toys would be another statistic, recorded under the submitter's fingerprint)."""
    import hashlib

    from ._version import source_digest

    if source is not None and source != source_digest():
        raise NplearnError(
            f"a toy worker on {platform.node()} runs other nplearn code (source digest "
            f"{source_digest()[:12]}) than the process that submitted the toys "
            f"({source[:12]}): install the same nplearn on every worker")

    key = hashlib.sha256(engine_bytes).hexdigest()
    engine = _EXECUTOR_ENGINES.get(key)
    if engine is None:
        _EXECUTOR_ENGINES.clear()  # keep one calibration's cache per worker process
        engine = _EXECUTOR_ENGINES[key] = pickle.loads(engine_bytes)
    with torch_threads(threads), reuse_feature_memory():
        return [_run_one(engine, i, checkpoint) for i in indices]


def _defined_in_interactive_main(gen: Any) -> bool:
    """Whether ``gen`` is defined in a ``__main__`` that spawned worker processes
    cannot re-import: one without a file (python -c, an interpreter) or whose code is
    not in that file (a notebook's cells)."""
    import inspect

    from .checkpoint import _source_target

    target = _source_target(gen)
    if getattr(target, "__module__", None) != "__main__":
        return False
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file is None:
        return True
    try:
        src = inspect.getsourcefile(target)
    except TypeError:
        return True
    return src is None or os.path.realpath(src) != os.path.realpath(main_file)


@contextlib.contextmanager
def _main_file_hidden_if_missing() -> Iterator[None]:
    """While worker processes start: hide ``__main__.__file__`` when it names no file
    (a script read from standard input, ``python - < script.py``). A spawned worker
    would run that path as its main module and die of FileNotFoundError; the workers
    need nothing from the main module (a toy generator defined there is refused)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or os.path.isfile(path):
        yield
        return
    del main.__file__  # type: ignore[union-attr]
    try:
        yield
    finally:
        main.__file__ = path  # type: ignore[union-attr]


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the worker processes of ``pool``: the pool then fails its pending
    futures itself (futures cancelled here instead would make its management thread
    print an ``InvalidStateError`` in Python 3.11)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()


#: Temporary folders that hand the engine to local worker processes:
#: ``nplearn-toys-<host>-<pid>-<random>``.
_ENGINE_DIR_PREFIX = "nplearn-toys-"


def _remove_stale_engine_folders() -> int:
    """Remove the engine folders of runs on this host whose process was killed (a
    SIGKILL or an out-of-memory kill skips the clean-up; each folder holds the whole
    reference sample). Returns how many were removed. Containers that share the
    temporary directory and the host name, but not process numbers, should each have
    a TMPDIR of their own: a live run of another container looks dead here (its
    workers have read the engine when they started, so they would not notice)."""
    import re
    import shutil

    from .io import left_by_dead_processes

    pattern = re.compile(re.escape(_ENGINE_DIR_PREFIX)
                         + r"(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)-[^-]+$")
    root = tempfile.gettempdir()
    names = left_by_dead_processes(root, pattern)
    for name in names:
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return len(names)


def _executor_slots(executor: Any) -> int | None:
    """Tasks an executor runs at once: a Dask cluster's worker threads, a
    ``concurrent.futures`` pool's workers; None when it does not say."""
    try:
        if _is_dask_client(executor):
            return int(sum(executor.nthreads().values())) or None
        n = getattr(executor, "_max_workers", None)
        return int(n) if n else None
    except Exception:  # a cluster that cannot be asked: the local count stands in
        return None


def _is_dask_client(executor: Any) -> bool:
    return type(executor).__module__.startswith("distributed") and hasattr(executor, "submit")


def _run_executor(executor: Any, engine_bytes: bytes, chunks: list[list[int]], threads: int,
                  ckpt: Any, results: list[ToyResult], total: int,
                  progress: Callable[[int, int], None] | None) -> None:
    """Chunks as tasks of a ``concurrent.futures.Executor`` given by the user."""
    from concurrent.futures import wait

    def cancel(futures: list[Any]) -> None:
        for fut in futures:
            fut.cancel()
        wait(futures)  # let running chunks finish their records before returning

    from ._version import source_digest

    futures = [executor.submit(_executor_chunk, engine_bytes, c, threads, ckpt, source_digest())
               for c in chunks]
    _gather(futures, as_completed, results, total, progress, cancel)


def _gather(futures: list[Any], completed: Callable[[list[Any]], Any],
            results: list[ToyResult], total: int,
            progress: Callable[[int, int], None] | None,
            cancel: Callable[[list[Any]], None]) -> None:
    """Collect chunk results as they complete; on any error cancel the rest and re-raise."""
    try:
        for fut in completed(futures):
            results.extend(fut.result())
            if progress is not None:
                progress(len(results), total)
    except BaseException:
        cancel(futures)
        raise


def _run_dask(client: Any, engine_bytes: bytes, chunks: list[list[int]], threads: int,
              ckpt: Any, results: list[ToyResult], total: int,
              progress: Callable[[int, int], None] | None, retries: int) -> None:
    from distributed import as_completed as dask_as_completed

    # a fresh key per call (hash=False): a content-hashed key could be released by the
    # previous call of the same calibration while this one still needs it
    from ._version import source_digest

    eng = client.scatter(engine_bytes, broadcast=True, hash=False)
    futures = [client.submit(_executor_chunk, eng, c, threads, ckpt, source_digest(),
                             retries=retries, pure=False)
               for c in chunks]
    _gather(futures, dask_as_completed, results, total, progress, client.cancel)


def visible_gpus() -> int:
    """Number of CUDA devices this process can use (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _all_gpus(device: str, n_gpus: int) -> bool:
    """Whether ``device`` asks for CUDA without naming one GPU, and CUDA is there."""
    d = str(device)
    return n_gpus > 0 and (d == "cuda" or d == "auto")


def resolve_workers(workers: int | None, device: str, n_tasks: int,
                    n_gpus: int | None = None) -> int:
    """Worker processes actually used, at most the number of tasks.

    Default: all cores on CPU; on CUDA one worker per visible GPU when the device
    is ``"cuda"`` (or ``"auto"`` with CUDA present) and one for ``"cuda:N"``.
    ``n_gpus`` overrides the visible GPU count (for tests).
    """
    if workers is None:
        gpus = visible_gpus() if n_gpus is None else n_gpus
        if _all_gpus(device, gpus):
            workers = gpus
        elif str(device).startswith("cuda"):
            workers = 1
        else:
            workers = cpu_count()
    return max(1, min(int(workers), max(1, n_tasks)))


def toy_memory_budget(learner_params: dict[str, Any], workers: int | None,
                      executor: Any = None) -> int:
    """Bytes of cache each toy's fit may hold: the learner's ``memory_budget`` when
    given; otherwise the device's default budget, split between the workers that
    share the machine (or each GPU).

    The budget chooses how features are stored (and, for narrow kernels, whether
    they are windowed), which moves ``t`` in its last digits, so one budget is
    resolved per calibration and used by the observed fit and by every toy. It
    depends on the number of workers asked for (``workers``; default all cores, or
    one per visible GPU), not on how many toys there are or are left to run. On
    CUDA it is half the free memory of the current GPU, split between the workers
    that share a GPU. The storage is chosen from the budget and the number of events,
    of which the observed fit has N_D more than a resampled toy: the same budget does
    not guarantee the same storage at the border.
    """
    if learner_params.get("memory_budget") is not None:
        return int(learner_params["memory_budget"])
    from collections import Counter

    from ._torch_utils import default_memory_budget, resolve_device

    device = str(learner_params.get("device", "cpu"))
    resolved = resolve_device(device)
    nw = resolve_workers(workers, device, 1 << 30)
    if executor is not None:
        return int(default_memory_budget(resolved) // max(2, nw))
    devs = worker_devices(device, nw) if resolved.type == "cuda" else None
    if devs:
        # the free memory of the current GPU stands for all of them (asking every GPU
        # would create a CUDA context on each in this process, held for the whole run)
        return int(default_memory_budget(resolved) // max(Counter(devs).values()))
    return int(default_memory_budget(resolved) // nw)


def worker_devices(device: str, n_workers: int, n_gpus: int | None = None) -> list[str] | None:
    """The device of each local worker: ``cuda:k`` round-robin over the visible GPUs.

    ``None`` when every worker uses ``device`` as given (CPU, a named GPU, one
    worker, or a single visible GPU).
    """
    gpus = visible_gpus() if n_gpus is None else n_gpus
    if n_workers < 2 or gpus < 2 or not _all_gpus(device, gpus):
        return None
    return [f"cuda:{k % gpus}" for k in range(n_workers)]


def run_toys(
    engine: ToyEngine,
    indices: Sequence[int],
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    checkpoint: Any = None,
    resume_only: bool = False,
    executor: Any = None,
    retries: int = 2,
    report: dict[str, Any] | None = None,
) -> list[ToyResult]:
    """Run toys ``indices`` and return their results ordered by index.

    Parameters
    ----------
    engine : ToyEngine
        The calibration's toy definition.
    indices : sequence of int
        Toy indices to run.
    workers : int, optional
        Worker processes (spawned); default all cores on CPU, one per visible GPU
        on ``device="cuda"`` (each worker pinned to its own ``cuda:k``), one on
        ``cuda:N``. With one worker the toys run in this process.
    threads_per_worker : int, optional
        Torch threads per toy (default 1, whatever the number of workers). BLAS
        results can differ in the last bits between thread counts, so this number,
        not the worker count, is what bit-identical toys require to be equal.
    progress : callable, optional
        Called as ``progress(done, total)`` after each finished chunk.
    checkpoint : str or Path, optional
        Folder for per-toy records (:mod:`nplearn.checkpoint`): toys already
        recorded for this calibration are loaded instead of run, and every
        finished toy is written at once (a killed run loses only the toys in
        flight).
    resume_only : bool
        With ``checkpoint``: run nothing, and fail when a toy has no record (how
        shards computed elsewhere are merged).
    executor : concurrent.futures.Executor or distributed.Client, optional
        Run the toys as tasks of this executor instead of local worker processes
        (each chunk of toys is one task; the engine is sent with every task and
        unpickled once per worker process). Any ``concurrent.futures``-style
        executor works (``ProcessPoolExecutor``, ``mpi4py.futures``, loky, ...);
        on a Dask cluster the engine is scattered once and a task is retried
        ``retries`` times if it fails or its worker dies. Results are identical to
        a local run.
    retries : int
        Dask only: retries of a failed task.
    report : dict, optional
        Filled with how the toys ran: ``workers`` (local processes used, 0 when every
        toy came from the checkpoint, ``None`` with an executor), ``threads_per_worker``,
        ``memory_budget`` (bytes per toy) and ``from_checkpoint`` (toys loaded).
    """
    indices = list(indices)
    total = len(indices)
    if report is not None:
        report.update(workers=0, threads_per_worker=threads_per_worker or 1,
                      memory_budget=None, from_checkpoint=0)
    if total == 0:
        return []
    if engine.neural:
        pass  # the network holds no feature cache: no memory budget
    elif engine.learner_params.get("memory_budget") is None:
        # resolved once from the whole calibration (not from the toys left to run), so
        # that a resumed run gives its toys the budget, hence the feature storage and
        # the rounding, of the first run
        engine = replace(engine, learner_params={
            **engine.learner_params,
            "memory_budget": toy_memory_budget(engine.learner_params, workers, executor)})
    if report is not None and not engine.neural:
        report["memory_budget"] = int(engine.learner_params["memory_budget"])
    done: dict[int, ToyResult] = {}
    ckpt = None
    if checkpoint is not None:
        from .checkpoint import ToyCheckpoint, engine_fingerprint, fingerprint_parts

        budget = None if engine.neural else int(engine.learner_params["memory_budget"])
        parts = fingerprint_parts(engine)
        ckpt = ToyCheckpoint(checkpoint, engine_fingerprint(engine, parts),
                             read_only=resume_only, memory_budget=budget, parts=parts,
                             threads=threads_per_worker or 1)
        done = ckpt.load(indices)
        if report is not None:
            report["from_checkpoint"] = len(done)
        other = {b: n for b, n in ckpt.loaded_budgets.items() if b is not None and b != budget}
        if other:
            # the budget is not part of the fingerprint (shards on other machines share
            # records); it decides how features are stored, so t agrees to ~1e-8
            log.warning("%d recorded toy(s) were computed with another memory budget (%s) "
                        "than this run's (%d bytes): the budget can change how features "
                        "are stored, and then t by about 1e-8 relative; give "
                        "memory_budget to every shard for identical toys", sum(other.values()),
                        ", ".join(f"{b} bytes: {n}" for b, n in sorted(other.items())),
                        budget)
            if report is not None:
                report["checkpoint_memory_budgets"] = {
                    str(b): n for b, n in sorted(ckpt.loaded_budgets.items(),
                                                 key=lambda kv: str(kv[0]))}
        if ckpt.loaded_settings:
            log.warning("recorded toys computed with other settings than this run's (%s; "
                        "this run: %s): threads and library versions can change t in its "
                        "last digits, so the toys agree to rounding, not bit for bit",
                        ", ".join(f"{k}: {n} toy(s)" for k, n in
                                  sorted(ckpt.loaded_settings.items())),
                        ", ".join(f"{k} {v}" for k, v in ckpt.settings.items()))
            if report is not None:
                report["checkpoint_other_settings"] = dict(sorted(ckpt.loaded_settings.items()))
        if done:
            log.info("checkpoint %s: %d of %d toys already done", ckpt.dir, len(done), total)
        if resume_only:
            wanted = set(done) | set(indices)
            extra = sum(1 for p in ckpt.dir.glob("toy_*.json")
                        if p.stem[4:].isdigit() and int(p.stem[4:]) not in wanted)
            if extra:
                log.warning("%s holds %d more toy record(s) than the %d used here (n_toys "
                            "or --toys chooses how many)", ckpt.dir, extra, total)
        indices = [i for i in indices if i not in done]
        if indices and resume_only:
            raise InputError(
                f"{len(indices)} of {total} toys have no record in {ckpt.dir} (first missing: "
                f"{indices[0]}); run them (nplearn toys) or check that the configuration is "
                "the one the shards were run with"
            )
        if not indices:
            if progress is not None:
                progress(total, total)
            return sorted(done.values(), key=lambda r: r.index)
    n_done = len(done)
    if progress is not None:
        progress(n_done, total)  # the baseline of the rate: toys from the checkpoint
    device = str(engine.learner_params.get("device", "cpu"))
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise InputError("executor must be a concurrent.futures.Executor or a dask "
                         f"distributed.Client, got {type(executor).__name__}")
    nw = resolve_workers(workers, device, len(indices))
    if executor is not None:
        nw = max(2, nw)  # never the in-process path
    threads = threads_per_worker or 1
    devices = worker_devices(device, nw) if executor is None else None
    if report is not None:
        # an executor's own workers are not counted here: the tasks go where it sends them
        report["workers"] = None if executor is not None else nw
    results: list[ToyResult] = list(done.values())
    if nw == 1:
        with torch_threads(threads), reuse_feature_memory():
            for k, i in enumerate(indices):
                results.append(_run_one(engine, i, ckpt))
                if progress is not None:
                    progress(n_done + k + 1, total)
        return sorted(results, key=lambda r: r.index)

    if executor is None and engine.generator is not None \
            and _defined_in_interactive_main(engine.generator):
        raise InputError(
            "the toy generator is defined in an interactive session (a notebook, an "
            "interpreter or python -c), which worker processes cannot import: put it in "
            "a module of its own (a .py file, imported) or use workers=1")
    try:
        engine_bytes = pickle.dumps(engine)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise InputError(
            "the toy definition cannot be sent to worker processes "
            f"({exc}); define the toy generator at module level or use workers=1"
        ) from exc
    # about four chunks per worker (an executor's own workers where it says how many)
    slots = (_executor_slots(executor) if executor is not None else None) or nw
    chunk = max(1, min(16, len(indices) // (slots * 4) or 1))
    chunks = [indices[i : i + chunk] for i in range(0, len(indices), chunk)]
    if executor is not None:
        if _is_dask_client(executor):
            _run_dask(executor, engine_bytes, chunks, threads, ckpt, results, total, progress,
                      retries)
        else:
            _run_executor(executor, engine_bytes, chunks, threads, ckpt, results, total,
                          progress)
        return sorted(results, key=lambda r: r.index)
    ctx = get_context("spawn")
    slots = None
    if devices:
        log.info("one toy worker per GPU: %s", ", ".join(devices))
        slots = ctx.Queue()
        for k in range(nw):
            slots.put(k)
    # the engine (with the reference events) goes to the workers through a file: as a
    # start-up argument it was written down a pipe, which blocked each submission until
    # the new worker had imported everything and read it, so that an interruption then
    # left a half-started worker that the pool did not know yet
    from .io import _host_tag

    _remove_stale_engine_folders()
    tmpdir = tempfile.TemporaryDirectory(prefix=f"{_ENGINE_DIR_PREFIX}{_host_tag()}-"
                                                f"{os.getpid()}-")
    engine_file = os.path.join(tmpdir.name, "engine.pickle")
    with open(engine_file, "wb") as fh:
        fh.write(engine_bytes)
    try:
        with ProcessPoolExecutor(max_workers=nw, mp_context=ctx, initializer=_init_worker,
                                 initargs=(engine_file, threads, ckpt, devices, slots,
                                           os.getpid())) as pool:
            try:  # submitting starts the workers: an interruption may come then too
                with _main_file_hidden_if_missing():
                    futures = [pool.submit(_run_chunk, c) for c in chunks]
            except BaseException:
                _terminate_workers(pool)
                raise
            # on an interruption or an error the workers are stopped at once instead of
            # finishing their running (and already queued) chunks; recorded toys stay
            _gather(futures, as_completed, results, total, progress,
                    lambda fs: _terminate_workers(pool))
    except BrokenProcessPool as exc:
        main_file = getattr(sys.modules.get("__main__"), "__file__", None) or ""
        script = (main_file.endswith(".py") and os.path.dirname(os.path.realpath(main_file))
                  != os.path.dirname(os.path.realpath(__file__)))
        kept = (f" The records of the finished toys are kept in {ckpt.dir}: rerun with the "
                "same checkpoint folder to resume." if ckpt is not None else "")
        raise NplearnError(
            f"the toy worker processes died ({exc}). "
            + ("If the script starts the toys without `if __name__ == \"__main__\":`, "
               "that is the cause (the workers are spawned and re-import it); otherwise "
               if script else "")
            + "a worker was killed: out of memory (try fewer workers or a smaller "
            "memory_budget) or by a signal." + kept) from exc
    finally:
        tmpdir.cleanup()
    return sorted(results, key=lambda r: r.index)
