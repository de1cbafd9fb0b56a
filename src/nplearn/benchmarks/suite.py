"""Benchmarks with exact densities for power studies, and their ideal test.

Every benchmark implements :class:`PowerBenchmark`: it samples reference events
and data sets under the null hypothesis (``signal="none"``) or under one of its
named signals, and it knows the exact per-event log ratio
``log n_1(x)/n_0(x)`` of the expected-yield densities of the data under the
signal (``n_1``) and under the null (``n_0 = N(R) p_R``). The ideal
(Neyman-Pearson, extended likelihood ratio) statistic of a data set ``D`` is then

    ``t_NP = 2 [sum_{x in D} log n_1(x)/n_0(x) - (N_1 - N(R))]``

with ``N_1`` the total expected data yield under the signal; ``exp(t_NP / 2)``
is exactly the likelihood ratio ``dP1/dP0`` of the two Poisson processes. Its
null tail probability follows from signal toys alone through
``P0(T >= t) = E1[exp(-T/2) 1{T >= t}]`` (:func:`reweighted_null_sf`), so the
ideal median significance and power (:func:`ideal_power`) need no null toys
and no asymptotic formula.

Benchmarks
----------
:class:`Exp1DScaled` (``"exp1d8"``)
    The 1D exponential benchmark of :mod:`nplearn.benchmarks.exp1d` on the
    ``x' = 8 x`` scale, with five Gaussian bumps of different widths.
:class:`GaussSuite` (``"gauss2d"``, ``"gauss5d"``, ``"gauss10d"``)
    A standard normal reference in ``d`` dimensions with a localised bump, a
    wide-Gaussian tail excess, a correlation and a normalisation shift.

The signals of :class:`GaussSuite` are tuned so that the ideal median Z is
about 3 to 4 at the default yields; those of :class:`Exp1DScaled` are fixed
(see the class docstrings for the measured numbers).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy import special

from ..errors import InputError
from ..stats import p_to_z

__all__ = [
    "EXP1D8_PUBLISHED_POWER",
    "EXP1D8_SIGNALS",
    "GAUSS_SIGNALS",
    "SUITE",
    "Exp1DScaled",
    "GaussSuite",
    "PowerBenchmark",
    "get_benchmark",
    "ideal_power",
    "ideal_t",
    "ideal_t_toys",
    "reweighted_null_sf",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

#: Events (times features) held in memory at once when toys are batched.
_CHUNK_VALUES = 4_000_000


@runtime_checkable
class PowerBenchmark(Protocol):
    """Common interface of the power-study benchmarks.

    ``name``, ``d``, ``n_ref`` and ``expected`` are read-only attributes (plain
    attributes, dataclass fields and properties all satisfy the protocol).
    """

    @property
    def name(self) -> str:
        """Benchmark name, e.g. ``"exp1d8"`` or ``"gauss5d"``."""
        ...

    @property
    def d(self) -> int:
        """Number of features."""
        ...

    @property
    def n_ref(self) -> int:
        """Reference sample size ``N_R`` of one toy."""
        ...

    @property
    def expected(self) -> float:
        """Expected reference yield in the data ``N(R)``."""
        ...

    def signals(self) -> list[str]:
        """Names of the available signals (``"none"`` excluded)."""
        ...

    def sample_reference_events(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` events of the reference density, shape ``(n, d)``."""
        ...

    def sample_data(self, rng: np.random.Generator, signal: str) -> np.ndarray:
        """One data set, shape ``(N_D, d)``; ``signal="none"`` is the null hypothesis."""
        ...

    def log_ratio(self, x: np.ndarray, signal: str) -> np.ndarray:
        """Exact ``log n_1(x)/n_0(x)`` per event (zeros for ``"none"``)."""
        ...

    def yield_excess(self, signal: str) -> float:
        """Total expected data yield under the signal minus ``N(R)``."""
        ...

    def describe(self, signal: str) -> str:
        """One-line description of a signal for tables."""
        ...


# -- helpers ---------------------------------------------------------------------------
def _background_plus_signal(
    bench: Any, rng: np.random.Generator, signal: str, n_toys: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n_toys`` data sets of ``Poisson(N(R))`` reference events plus
    ``Poisson(N(S))`` signal events: all events and the data-set index of each."""
    nb = rng.poisson(bench.expected, size=n_toys)
    ns = bench.signal_yield(signal)
    nsig = rng.poisson(ns, size=n_toys) if ns > 0 else np.zeros(n_toys, dtype=np.int64)
    x = np.concatenate([bench.sample_reference_events(rng, int(nb.sum())),
                        bench.sample_signal_events(rng, signal, int(nsig.sum()))])
    return x, np.concatenate([_toy_index(nb), _toy_index(nsig)])


def _check_sizes(n_ref: int, expected: float, n_signal_scale: float) -> None:
    """Validate the sample-size fields shared by the benchmarks."""
    if int(n_ref) != n_ref or n_ref < 1:
        raise InputError(f"n_ref must be an integer >= 1, got {n_ref!r}")
    if not (expected > 0 and math.isfinite(expected)):
        raise InputError(f"expected must be positive and finite, got {expected!r}")
    if not (n_signal_scale >= 0 and math.isfinite(n_signal_scale)):
        raise InputError(f"n_signal_scale must be non-negative and finite, got "
                         f"{n_signal_scale!r}")


def _check_signal(signal: str, names: Collection[str], bench: str) -> None:
    if signal != "none" and signal not in names:
        raise InputError(
            f"unknown signal {signal!r} for benchmark {bench!r}; "
            f"choose from 'none', {', '.join(repr(s) for s in names)}"
        )


def _as_events(x: np.ndarray, d: int) -> np.ndarray:
    """``x`` as a float64 ``(n, d)`` array (a 1D array is accepted when ``d == 1``)."""
    x = np.asarray(x, dtype=np.float64)
    if d == 1 and x.ndim <= 1:
        return x.reshape(-1, 1)
    if x.ndim != 2 or x.shape[1] != d:
        raise InputError(f"events must have shape (n, {d}), got {x.shape}")
    return x


def _check_count(n: int) -> int:
    if int(n) != n or n < 0:
        raise InputError(f"number of events must be a non-negative integer, got {n!r}")
    return int(n)


def _toy_index(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(counts.size), counts)


# -- 1D exponential benchmark on the 8x scale ------------------------------------------
#: name -> (N(S), mean, sd) of the Gaussian bumps of :class:`Exp1DScaled`.
EXP1D8_SIGNALS: dict[str, tuple[float, float, float]] = {
    "narrow4": (7.0, 4.0, 0.01),
    "mid4": (18.0, 4.0, 0.16),
    "wide4": (13.0, 4.0, 0.64),
    "bulk": (90.0, 1.6, 0.16),
    "tail": (10.0, 6.4, 0.16),
}


@dataclass(frozen=True)
class Exp1DScaled:
    """The 1D exponential benchmark on the ``x' = 8 x`` scale (``"exp1d8"``).

    Reference density ``exp(-x)`` for ``x >= 0``; data are ``Poisson(N(R))``
    reference events plus ``Poisson(N(S))`` events of a Gaussian bump:

    =========  ======  =====  =====
    signal     N(S)    mean   sd
    =========  ======  =====  =====
    narrow4    7       4.0    0.01
    mid4       18      4.0    0.16
    wide4      13      4.0    0.64
    bulk       90      1.6    0.16
    tail       10      6.4    0.16
    =========  ======  =====  =====

    ``bulk`` and ``tail`` are the signals of :class:`~nplearn.benchmarks.Exp1D`
    rescaled by 8 (same yields, so the same ideal significance). The Gaussians
    are truncated to ``x >= 0`` and renormalised; the truncation correction is
    below 1e-9 for these signals (largest for ``wide4``: ``Phi(-6.25) = 2e-10``).
    The signals are fixed, not tuned; measured ideal median Z (20 000 toys):
    narrow4 4.0, mid4 3.5, wide4 1.4, bulk 5.6, tail 4.75 (``bulk`` and
    ``tail`` agree with :meth:`Exp1D.ideal_median_z`).

    Parameters
    ----------
    n_ref : int
        Reference sample size ``N_R`` of a toy.
    expected : float
        Expected reference yield in the data ``N(R)``.
    n_signal_scale : float
        Factor applied to every signal yield ``N(S)`` (for power curves).
    """

    n_ref: int = 200_000
    expected: float = 2000.0
    n_signal_scale: float = 1.0

    def __post_init__(self) -> None:
        _check_sizes(self.n_ref, self.expected, self.n_signal_scale)

    @property
    def name(self) -> str:
        """``"exp1d8"``."""
        return "exp1d8"

    @property
    def d(self) -> int:
        """One feature."""
        return 1

    def signals(self) -> list[str]:
        """``["narrow4", "mid4", "wide4", "bulk", "tail"]``."""
        return list(EXP1D8_SIGNALS)

    def signal_yield(self, signal: str) -> float:
        """Expected number of signal events ``N(S)`` (0 for ``"none"``)."""
        _check_signal(signal, EXP1D8_SIGNALS, self.name)
        if signal == "none":
            return 0.0
        return EXP1D8_SIGNALS[signal][0] * float(self.n_signal_scale)

    @staticmethod
    def _log_truncation_mass(mean: float, sd: float) -> float:
        """``log P(N(mean, sd^2) >= 0)``."""
        return float(special.log_ndtr(mean / sd))

    # -- densities ------------------------------------------------------------------
    @staticmethod
    def reference_pdf(x: np.ndarray) -> np.ndarray:
        """``exp(-x)`` for ``x >= 0``, else 0."""
        x = np.asarray(x, dtype=np.float64)
        return np.where(x >= 0, np.exp(-np.clip(x, 0.0, None)), 0.0)

    def signal_logpdf(self, x: np.ndarray, signal: str) -> np.ndarray:
        """Log density of the truncated Gaussian bump (``-inf`` below 0)."""
        _check_signal(signal, EXP1D8_SIGNALS, self.name)
        if signal == "none":
            raise InputError("signal 'none' has no signal density")
        _, mean, sd = EXP1D8_SIGNALS[signal]
        x = np.asarray(x, dtype=np.float64)
        logp = (-0.5 * ((x - mean) / sd) ** 2 - math.log(sd) - _LOG_SQRT_2PI
                - self._log_truncation_mass(mean, sd))
        return np.where(x >= 0, logp, -np.inf)

    def signal_pdf(self, x: np.ndarray, signal: str) -> np.ndarray:
        """Normalised density of the signal events."""
        return np.exp(self.signal_logpdf(x, signal))

    def signal_cdf(self, x: np.ndarray, signal: str) -> np.ndarray:
        """Cumulative distribution function of the signal events."""
        _check_signal(signal, EXP1D8_SIGNALS, self.name)
        if signal == "none":
            raise InputError("signal 'none' has no signal density")
        _, mean, sd = EXP1D8_SIGNALS[signal]
        x = np.clip(np.asarray(x, dtype=np.float64), 0.0, None)
        lo = special.ndtr(-mean / sd)
        return (special.ndtr((x - mean) / sd) - lo) / (1.0 - lo)

    def log_ratio(self, x: np.ndarray, signal: str) -> np.ndarray:
        """Exact ``log(1 + N(S) p_S(x) / (N(R) p_R(x)))`` per event.

        Computed with ``logaddexp`` so that it stays finite far in the tails.
        Events below 0 (outside both supports) get 0.
        """
        x = _as_events(x, 1)[:, 0]
        ns = self.signal_yield(signal)
        if ns == 0:
            return np.zeros_like(x)
        log_s = self.signal_logpdf(np.clip(x, 0.0, None), signal)
        log_r = -x  # log reference density
        out = np.logaddexp(0.0, math.log(ns / self.expected) + log_s - log_r)
        return np.where(x >= 0, out, 0.0)

    def yield_excess(self, signal: str) -> float:
        """``N(S)``."""
        return self.signal_yield(signal)

    def describe(self, signal: str) -> str:
        """E.g. ``"N(S)=10, Gaussian(6.4, 0.16)"``."""
        ns = self.signal_yield(signal)
        if signal == "none":
            return "no signal"
        _, mean, sd = EXP1D8_SIGNALS[signal]
        return f"N(S)={ns:g}, Gaussian({mean:g}, {sd:g})"

    # -- sampling ---------------------------------------------------------------------
    def sample_reference_events(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` Exponential(1) events, shape ``(n, 1)``."""
        return rng.exponential(1.0, size=(_check_count(n), 1))

    def sample_signal_events(self, rng: np.random.Generator, signal: str, n: int) -> np.ndarray:
        """``n`` events of the truncated Gaussian bump, shape ``(n, 1)``."""
        _check_signal(signal, EXP1D8_SIGNALS, self.name)
        n = _check_count(n)
        if n == 0:
            return np.empty((0, 1))
        if signal == "none":
            raise InputError("signal 'none' has no signal events")
        _, mean, sd = EXP1D8_SIGNALS[signal]
        out = rng.normal(mean, sd, size=n)
        while (neg := out < 0).any():  # truncation at 0 (practically never)
            out[neg] = rng.normal(mean, sd, size=int(neg.sum()))
        return out.reshape(n, 1)

    def sample_data_batch(
        self, rng: np.random.Generator, signal: str, n_toys: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Events of ``n_toys`` data sets at once.

        Returns
        -------
        x : numpy.ndarray
            All events, shape ``(M, 1)``, not ordered by data set.
        toy : numpy.ndarray
            Index of the data set of each event, shape ``(M,)``.
        """
        self.signal_yield(signal)  # validates the name
        return _background_plus_signal(self, rng, signal, _check_count(n_toys))

    def sample_data(self, rng: np.random.Generator, signal: str) -> np.ndarray:
        """One data set: ``Poisson(N(R))`` reference + ``Poisson(N(S))`` signal events.

        The events are in random order, shape ``(N_D, 1)``.
        """
        x, _ = self.sample_data_batch(rng, signal, 1)
        return x[rng.permutation(x.shape[0])]


# -- multivariate Gaussian suite --------------------------------------------------------
#: Signals of :class:`GaussSuite`.
GAUSS_SIGNALS: tuple[str, ...] = ("bump", "tail", "corr", "norm")

BUMP_MEAN = 1.5  # bump centre on features 0 and 1
BUMP_SD = 0.3  # bump width on features 0 and 1
BUMP_YIELD = 40.0  # N(S) of "bump"; the ideal test does not depend on d
TAIL_SD = 2.5  # width of the "tail" Gaussian in every feature
#: N(S) of "tail" by dimension, tuned for an ideal median Z of about 4 at N(R) = 5000
#: (the d = 10 value is used for d > 10)
TAIL_YIELD: dict[int, float] = {2: 10.0, 3: 6.0, 4: 4.0, 5: 3.0, 6: 2.5, 7: 2.1,
                                8: 1.8, 9: 1.6, 10: 1.4}
CORR_RHO = 0.06  # correlation of features 0 and 1 in "corr" (ideal Z ~ rho sqrt(N(R)))
NORM_Z = 3.0  # "norm": eps = NORM_Z / sqrt(N(R))


@dataclass(frozen=True)
class GaussSuite:
    """Standard normal reference in ``d`` dimensions (``"gauss2d"``, ``"gauss5d"``, ...).

    Signals, each with an exact density:

    ``bump``
        ``Poisson(N(S))`` extra events, Gaussian with mean 1.5 and sd 0.3 in
        features 0 and 1 and standard normal (like the reference) in the other
        features, so the excess is localised in the (x0, x1) plane and the
        ideal test does not depend on ``d``: ``N(S) = 40`` for every ``d``.
    ``tail``
        ``Poisson(N(S))`` extra events from ``N(0, 2.5^2 I_d)``. The ideal test
        separates these events more easily in higher ``d``, so ``N(S)`` falls
        with ``d`` (:data:`TAIL_YIELD`: 10, 3 and 1.4 for d = 2, 5, 10; the
        d = 10 value is used above 10, where the ideal Z then grows). From
        d of about 5 on this is a few-event signal: most signal events lie
        where the reference has essentially none, the median toy holds one or
        two of them and the ideal Z spreads widely (16 % quantile near 0).
    ``corr``
        No extra events: the data are ``Poisson(N(R))`` events of ``N(0, S)``
        with ``S`` the identity except correlation ``rho = 0.06`` between
        features 0 and 1; the ideal test does not depend on ``d``.
    ``norm``
        The data are ``Poisson(N(R) (1 + eps))`` reference events, with
        ``eps = 3 / sqrt(N(R))`` (0.042 at the default yield).

    The yields are tuned for the default ``N(R) = 5000``; measured ideal
    median Z:

    =====  =====  =====  =====  =====
    d      bump   tail   corr   norm
    =====  =====  =====  =====  =====
    2      4.05   4.07   4.23   2.97
    5      4.03   3.83   4.22   2.97
    10     4.02   4.14   4.23   3.00
    =====  =====  =====  =====  =====

    (20 000 toys for d = 2, 10 000 otherwise; ``tail`` for d = 3, 4, 6, 7, 8, 9:
    4.09, 3.89, 4.00, 4.07, 4.20, 4.21.)

    Parameters
    ----------
    d : int
        Number of features (at least 2).
    n_ref : int
        Reference sample size ``N_R`` of a toy.
    expected : float
        Expected reference yield in the data ``N(R)``.
    n_signal_scale : float
        Factor applied to the extra yields ``N(S)`` of ``bump`` and ``tail``
        and to ``eps`` of ``norm`` (``corr`` is unaffected).
    """

    d: int = 5
    n_ref: int = 100_000
    expected: float = 5000.0
    n_signal_scale: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.d, bool) or int(self.d) != self.d or self.d < 2:
            raise InputError(f"d must be an integer >= 2, got {self.d!r}")
        object.__setattr__(self, "d", int(self.d))
        _check_sizes(self.n_ref, self.expected, self.n_signal_scale)

    @property
    def name(self) -> str:
        """``f"gauss{d}d"``."""
        return f"gauss{self.d}d"

    def signals(self) -> list[str]:
        """``["bump", "tail", "corr", "norm"]``."""
        return list(GAUSS_SIGNALS)

    # -- signal parameters --------------------------------------------------------------
    @property
    def rho(self) -> float:
        """Correlation of features 0 and 1 under ``corr``."""
        return CORR_RHO

    @property
    def eps(self) -> float:
        """Relative normalisation shift of ``norm``."""
        return NORM_Z / math.sqrt(self.expected) * float(self.n_signal_scale)

    def signal_yield(self, signal: str) -> float:
        """Expected number of extra events ``N(S)`` of ``bump``/``tail`` (else 0)."""
        _check_signal(signal, GAUSS_SIGNALS, self.name)
        if signal == "bump":
            return BUMP_YIELD * float(self.n_signal_scale)
        if signal == "tail":
            return TAIL_YIELD[min(int(self.d), max(TAIL_YIELD))] * float(self.n_signal_scale)
        return 0.0

    # -- densities ------------------------------------------------------------------------
    def reference_logpdf(self, x: np.ndarray) -> np.ndarray:
        """Log density of ``N(0, I_d)``."""
        x = _as_events(x, self.d)
        return -0.5 * np.einsum("ij,ij->i", x, x) - self.d * _LOG_SQRT_2PI

    def _log_signal_over_ref(self, x: np.ndarray, signal: str) -> np.ndarray:
        """``log p_S(x) - log p_R(x)`` of the extra-event density of bump/tail."""
        if signal == "bump":
            u = (x[:, :2] - BUMP_MEAN) / BUMP_SD
            return (-0.5 * np.einsum("ij,ij->i", u, u) + 0.5 * np.einsum("ij,ij->i",
                    x[:, :2], x[:, :2]) - 2.0 * math.log(BUMP_SD))
        r2 = np.einsum("ij,ij->i", x, x)
        return 0.5 * r2 * (1.0 - 1.0 / TAIL_SD**2) - self.d * math.log(TAIL_SD)

    def log_ratio(self, x: np.ndarray, signal: str) -> np.ndarray:
        """Exact ``log n_1(x)/n_0(x)`` per event.

        ``bump``/``tail``: ``log(1 + N(S) p_S / (N(R) p_R))`` (via ``logaddexp``);
        ``corr``: ``log N(x; 0, S) - log N(x; 0, I)``; ``norm``: ``log(1 + eps)``.
        """
        _check_signal(signal, GAUSS_SIGNALS, self.name)
        x = _as_events(x, self.d)
        n = x.shape[0]
        if signal == "none":
            return np.zeros(n)
        if signal == "norm":
            return np.full(n, math.log1p(self.eps))
        if signal == "corr":
            rho = self.rho
            a, b = x[:, 0], x[:, 1]
            q = (a * a + b * b - 2.0 * rho * a * b) / (1.0 - rho * rho)
            return -0.5 * (q - a * a - b * b) - 0.5 * math.log1p(-rho * rho)
        ns = self.signal_yield(signal)
        if ns == 0:
            return np.zeros(n)
        return np.logaddexp(0.0, math.log(ns / self.expected)
                            + self._log_signal_over_ref(x, signal))

    def yield_excess(self, signal: str) -> float:
        """``N(S)`` for bump/tail, ``eps N(R)`` for norm, 0 for corr and none."""
        _check_signal(signal, GAUSS_SIGNALS, self.name)
        if signal == "norm":
            return self.eps * self.expected
        return self.signal_yield(signal)

    def describe(self, signal: str) -> str:
        """One line for tables."""
        _check_signal(signal, GAUSS_SIGNALS, self.name)
        if signal == "none":
            return "no signal"
        if signal == "bump":
            return (f"N(S)={self.signal_yield(signal):g}, Gaussian(({BUMP_MEAN:g}, {BUMP_MEAN:g}), "
                    f"{BUMP_SD:g}) in x0,x1")
        if signal == "tail":
            return f"N(S)={self.signal_yield(signal):g}, Gaussian(0, {TAIL_SD:g}^2 I_{self.d})"
        if signal == "corr":
            return f"corr(x0, x1)={self.rho:g}"
        return f"N(D)=N(R)(1+{self.eps:.3g})"

    # -- sampling ---------------------------------------------------------------------------
    def sample_reference_events(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` events of ``N(0, I_d)``, shape ``(n, d)``."""
        return rng.standard_normal(size=(_check_count(n), self.d))

    def sample_signal_events(self, rng: np.random.Generator, signal: str, n: int) -> np.ndarray:
        """``n`` events of the density of the data under ``signal``, minus the reference.

        For ``bump`` and ``tail``: the extra events; for ``corr``: events of
        ``N(0, S)``; for ``norm``: reference events.
        """
        _check_signal(signal, GAUSS_SIGNALS, self.name)
        x = rng.standard_normal(size=(_check_count(n), self.d))
        if signal == "bump":
            x[:, :2] = BUMP_MEAN + BUMP_SD * x[:, :2]
        elif signal == "tail":
            x *= TAIL_SD
        elif signal == "corr":
            rho = self.rho
            x[:, 1] = rho * x[:, 0] + math.sqrt(1.0 - rho * rho) * x[:, 1]
        return x

    def sample_data_batch(
        self, rng: np.random.Generator, signal: str, n_toys: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Events of ``n_toys`` data sets at once.

        Returns
        -------
        x : numpy.ndarray
            All events, shape ``(M, d)``, not ordered by data set.
        toy : numpy.ndarray
            Index of the data set of each event, shape ``(M,)``.
        """
        _check_signal(signal, GAUSS_SIGNALS, self.name)
        n_toys = _check_count(n_toys)
        if signal == "corr":
            nb = rng.poisson(self.expected, size=n_toys)
            return self.sample_signal_events(rng, "corr", int(nb.sum())), _toy_index(nb)
        if signal == "norm":
            nb = rng.poisson(self.expected * (1.0 + self.eps), size=n_toys)
            return self.sample_reference_events(rng, int(nb.sum())), _toy_index(nb)
        return _background_plus_signal(self, rng, signal, n_toys)

    def sample_data(self, rng: np.random.Generator, signal: str) -> np.ndarray:
        """One data set under ``signal`` (``"none"``: ``Poisson(N(R))`` reference events).

        The events are in random order, shape ``(N_D, d)``.
        """
        x, _ = self.sample_data_batch(rng, signal, 1)
        return x[rng.permutation(x.shape[0])]


#: Names accepted by :func:`get_benchmark`.
SUITE: tuple[str, ...] = ("exp1d8", "gauss2d", "gauss5d", "gauss10d")


def get_benchmark(name: str, **kwargs: Any) -> PowerBenchmark:
    """Benchmark by name: ``"exp1d8"`` or ``"gauss<d>d"`` (any ``d >= 2``).

    Keyword arguments are passed to the benchmark class.
    """
    if name == "exp1d8":
        return Exp1DScaled(**kwargs)
    if name.startswith("gauss") and name.endswith("d") and name[5:-1].isdigit():
        return GaussSuite(d=int(name[5:-1]), **kwargs)
    raise InputError(f"unknown benchmark {name!r}; choose from {', '.join(SUITE)}")


# -- the ideal test ---------------------------------------------------------------------------
def ideal_t(bench: PowerBenchmark, data: np.ndarray, signal: str) -> float:
    """Neyman-Pearson statistic ``2 [sum_D log n_1/n_0 - yield_excess]`` of one data set."""
    return float(2.0 * (bench.log_ratio(data, signal).sum() - bench.yield_excess(signal)))


def ideal_t_toys(
    bench: PowerBenchmark,
    signal: str,
    rng: np.random.Generator,
    n_toys: int,
    *,
    truth: str | None = None,
) -> np.ndarray:
    """``t_NP`` of the test for ``signal`` on ``n_toys`` data sets.

    Parameters
    ----------
    bench : PowerBenchmark
        The benchmark.
    signal : str
        The alternative hypothesis of the statistic.
    rng : numpy.random.Generator
        Source of randomness.
    n_toys : int
        Number of data sets.
    truth : str, optional
        The signal the data are drawn from (default: ``signal``; ``"none"`` for
        null toys).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_toys,)``.

    Notes
    -----
    Benchmarks with a ``sample_data_batch(rng, signal, n_toys)`` method (both
    classes of this module) are sampled many data sets at a time; others one
    data set at a time. ``log_ratio`` is evaluated on chunks of about
    4 million values either way.
    """
    truth = signal if truth is None else truth
    n_toys = _check_count(n_toys)
    excess = bench.yield_excess(signal)
    bench.yield_excess(truth)  # validates the name
    per_toy = max(1.0, (bench.expected + max(bench.yield_excess(truth), 0.0)) * bench.d)
    chunk = max(1, int(_CHUNK_VALUES // per_toy))
    batch = getattr(bench, "sample_data_batch", None)
    out = np.empty(n_toys)
    for start in range(0, n_toys, chunk):
        m = min(chunk, n_toys - start)
        if batch is not None:
            x, toy = batch(rng, truth, m)
        else:
            sets = [bench.sample_data(rng, truth) for _ in range(m)]
            toy = _toy_index(np.array([len(s) for s in sets], dtype=np.int64))
            x = np.concatenate(sets) if sets else np.empty((0, bench.d))
        sums = np.bincount(toy, weights=bench.log_ratio(x, signal), minlength=m)
        out[start:start + m] = 2.0 * (sums - excess)
    return out


def reweighted_null_sf(t: np.ndarray | float, t_signal_toys: np.ndarray) -> np.ndarray:
    """Null survival ``P0(T >= t)`` of the ideal statistic, from signal toys.

    Uses ``P0(T >= t) = E1[exp(-T/2) 1{T >= t}]``, exact in expectation because
    ``exp(T/2)`` is the likelihood ratio ``dP1/dP0``. Precise where the signal
    toys lie, i.e. around the median significance.

    Parameters
    ----------
    t : array_like
        Thresholds.
    t_signal_toys : numpy.ndarray
        ``t_NP`` of data sets drawn under the signal hypothesis.

    Returns
    -------
    numpy.ndarray
        Same shape as ``t``.
    """
    ts = np.sort(np.asarray(t_signal_toys, dtype=np.float64).reshape(-1))
    if ts.size == 0 or not np.isfinite(ts).all():
        raise InputError("t_signal_toys must be a non-empty array of finite values")
    wts = np.exp(-0.5 * ts)
    tail = np.cumsum(wts[::-1])[::-1] / ts.size  # tail[i] = mean of w 1{T >= ts[i]}
    t = np.asarray(t, dtype=np.float64)
    idx = np.searchsorted(ts, t, side="left")
    return np.where(idx < ts.size, tail[np.minimum(idx, ts.size - 1)], 0.0)


def ideal_power(
    bench: PowerBenchmark,
    signal: str,
    rng: np.random.Generator,
    n_toys: int = 20000,
    z_thresholds: Sequence[float] = (2.0, 3.0),
    sizes: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Power and significance of the ideal (Neyman-Pearson) test.

    Draws ``n_toys`` data sets under ``signal``, computes ``t_NP`` and the null
    p-value of each with :func:`reweighted_null_sf`, and converts it to Z.

    Parameters
    ----------
    sizes : mapping of str to float, optional
        Other thresholds on the p-value, e.g. the sizes that tests calibrated by a
        finite number of null toys actually use (``k / (n_null + 1)``): the power at
        each is reported as ``power_at_size`` under the same key.

    Returns
    -------
    dict
        ``power`` (``{f"{z:g}": fraction of toys with Z >= z}``, exact thresholds),
        ``median_z``, ``z16`` and ``z84`` (Z at the 16 %, 50 % and 84 % quantiles of
        ``t_NP``), ``t_median`` and ``n_toys``; with ``sizes`` also ``sizes`` and
        ``power_at_size`` (fraction of toys with p at most each size).
    """
    bench.yield_excess(signal)  # validates the name
    if signal == "none":
        raise InputError("the ideal test needs a signal, got 'none'")
    if int(n_toys) != n_toys or n_toys < 1:
        raise InputError(f"n_toys must be an integer >= 1, got {n_toys!r}")
    ts = ideal_t_toys(bench, signal, rng, int(n_toys))
    p = reweighted_null_sf(ts, ts)
    z = np.array([p_to_z(min(1.0, float(v))) for v in p])
    t_q = np.quantile(ts, [0.16, 0.5, 0.84])
    z_q = [p_to_z(min(1.0, float(v))) for v in reweighted_null_sf(t_q, ts)]
    out: dict[str, Any] = {
        "power": {f"{thr:g}": float(np.mean(z >= thr)) for thr in z_thresholds},
        "median_z": z_q[1],
        "z16": z_q[0],
        "z84": z_q[2],
        "t_median": float(t_q[1]),
        "n_toys": int(n_toys),
    }
    if sizes is not None:
        out["sizes"] = {str(key): float(a) for key, a in sizes.items()}
        # a size of 0 is a threshold the other tests cannot reach (p underflowing to 0
        # for a strong signal must not count as reaching it)
        out["power_at_size"] = {key: float(np.mean(p <= a)) if a > 0 else 0.0
                                for key, a in out["sizes"].items()}
    return out


#: Published powers at Z >= 2 / Z >= 3 on the x' = 8x 1D suite (arXiv:2408.12296,
#: N(R) = 2000, N_R = 2e5, M = 1000, lambda = 1e-6, widths 0.01 ... 9.0; "90th pct" is
#: the single width 2.3): signal -> test -> (power at Z >= 2, power at Z >= 3).
EXP1D8_PUBLISHED_POWER: dict[str, dict[str, tuple[float, float]]] = {
    "narrow4": {"best single": (0.083, 0.012), "min-p": (0.063, 0.008),
                "product-p": (0.065, 0.005), "90th pct": (0.039, 0.002)},
    "mid4": {"best single": (0.367, 0.123), "min-p": (0.314, 0.103),
             "product-p": (0.318, 0.083), "90th pct": (0.207, 0.044)},
    "wide4": {"best single": (0.082, 0.012), "min-p": (0.066, 0.007),
              "product-p": (0.085, 0.012), "90th pct": (0.079, 0.013)},
    "bulk": {"best single": (0.913, 0.702), "min-p": (0.877, 0.659),
             "product-p": (0.897, 0.652), "90th pct": (0.686, 0.364)},
    "tail": {"best single": (0.664, 0.360), "min-p": (0.581, 0.316),
             "product-p": (0.584, 0.261), "90th pct": (0.476, 0.193)},
}
