"""Multiple testing over kernel widths: local p-values and their combinations.

A single kernel width makes the test most sensitive to structures of about that
size. Fitting several widths on the same observed data and the same null toys
gives one statistic per width; this module turns them into one calibrated test.

Local p-values
    For the observed data (or a signal toy): ``p_k = (1 + #{t_null,k >= t_k}) /
    (1 + n)`` for width ``k``. For null toy ``i`` the same, leave-one-out: against
    the other ``n - 1`` null toys, ``p_ik = (1 + #{j != i: t_jk >= t_ik}) / n``.

Combinations (every statistic is "larger = less compatible with the reference")
    ``min-p``      ``-log min_k p_k``
    ``fused-p``    ``T log mean_k exp(-log p_k / T)``: a smooth maximum of
                   ``-log p``; ``T -> 0`` gives min-p, large ``T`` the mean.
    ``product-p``  ``-sum_k log p_k`` (Fisher's combination, without the
                   chi-square reference: the widths are strongly correlated, so
                   it is calibrated on the toys like the others).
    ``fused-t``    ``T log mean_k exp(z_k / T)`` with ``z_k = (t_k - mean_k) /
                   std_k`` standardised by the null toys (leave-one-out for the
                   null toys themselves). Without standardisation a soft maximum
                   of raw ``t`` is dominated by the narrowest width, whose null
                   ``t`` is largest.

Each combined statistic is calibrated on its own null distribution: the same
combination applied to the null toys' leave-one-out local p-values (or
standardised ``t``). Its p-value is ``(1 + #{s_null >= s}) / (1 + n)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import logsumexp

from .errors import InputError
from .stats import p_to_z

__all__ = [
    "COMBINATIONS",
    "CombinedResult",
    "combine",
    "combine_all",
    "local_pvalues",
    "local_pvalues_null",
    "standardise",
    "standardise_null",
]

#: Combination methods, in the order they are reported.
COMBINATIONS: tuple[str, ...] = ("min-p", "fused-p", "product-p", "fused-t")


def _null_matrix(t_null: np.ndarray) -> np.ndarray:
    T = np.asarray(t_null, dtype=np.float64)
    if T.ndim == 1:
        T = T[:, None]
    if T.ndim != 2 or T.shape[0] < 2:
        raise InputError(
            f"null statistics must be an (n_toys, n_widths) array with n_toys >= 2, got shape "
            f"{T.shape}"
        )
    if not np.isfinite(T).all():
        raise InputError("null statistics contain NaN or inf; drop failed toys first")
    return T


def local_pvalues(t: np.ndarray, t_null: np.ndarray) -> np.ndarray:
    """Local p-values of statistics ``t`` against the null toys, width by width.

    Parameters
    ----------
    t : numpy.ndarray, shape (n_widths,) or (n_sets, n_widths)
        Statistics of the observed data (one row) or of several data sets.
    t_null : numpy.ndarray, shape (n_toys, n_widths)
        Null statistics.

    Returns
    -------
    numpy.ndarray
        ``(1 + #{t_null >= t}) / (1 + n_toys)``, same shape as ``t``.
    """
    T = _null_matrix(t_null)
    x = np.asarray(t, dtype=np.float64)
    one = x.ndim == 1
    X = np.atleast_2d(x)
    if X.shape[1] != T.shape[1]:
        raise InputError(f"{X.shape[1]} statistics per data set but {T.shape[1]} widths in "
                         "the null toys")
    n = T.shape[0]
    out = np.empty_like(X)
    for k in range(T.shape[1]):
        s = np.sort(T[:, k])
        n_ge = n - np.searchsorted(s, X[:, k], side="left")
        out[:, k] = (1.0 + n_ge) / (1.0 + n)
    return out[0] if one else out


def local_pvalues_null(t_null: np.ndarray) -> np.ndarray:
    """Leave-one-out local p-values of the null toys themselves.

    Returns ``p_ik = (1 + #{j != i: t_jk >= t_ik}) / n``, shape ``(n, n_widths)``.
    """
    T = _null_matrix(t_null)
    n = T.shape[0]
    out = np.empty_like(T)
    for k in range(T.shape[1]):
        s = np.sort(T[:, k])
        n_ge = n - np.searchsorted(s, T[:, k], side="left")  # includes the toy itself
        out[:, k] = n_ge / n
    return out


def standardise(t: np.ndarray, t_null: np.ndarray) -> np.ndarray:
    """``(t - mean) / std`` per width with the null toys' mean and standard deviation."""
    T = _null_matrix(t_null)
    mu, sd = T.mean(0), T.std(0, ddof=1)
    if (sd <= 0).any():
        raise InputError("a width has identical null statistics in every toy; cannot "
                         "standardise")
    return (np.asarray(t, dtype=np.float64) - mu) / sd


def standardise_null(t_null: np.ndarray) -> np.ndarray:
    """Leave-one-out standardisation of the null toys (each toy excluded from its own
    mean and standard deviation)."""
    T = _null_matrix(t_null)
    n = T.shape[0]
    if n < 3:
        raise InputError("leave-one-out standardisation needs at least 3 null toys")
    s1, s2 = T.sum(0), (T * T).sum(0)
    mu = (s1 - T) / (n - 1)
    var = (s2 - T * T - (n - 1) * mu * mu) / (n - 2)
    sd = np.sqrt(np.clip(var, 0.0, None))
    if (sd <= 0).any():
        raise InputError("a width has identical null statistics in every toy; cannot "
                         "standardise")
    return (T - mu) / sd


def combine(values: np.ndarray, method: str, temperature: float = 1.0) -> np.ndarray:
    """Combine per-width values into one statistic per data set.

    Parameters
    ----------
    values : numpy.ndarray, shape (n_widths,) or (n_sets, n_widths)
        Local p-values for ``min-p``, ``fused-p`` and ``product-p``; standardised
        statistics for ``fused-t``.
    method : str
        One of :data:`COMBINATIONS`.
    temperature : float
        ``T`` of the smooth maxima (``fused-p``, ``fused-t``).

    Returns
    -------
    numpy.ndarray
        The combined statistic (larger = more discrepant), one per data set.
    """
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if method not in COMBINATIONS:
        raise InputError(f"unknown combination {method!r}; choose from "
                         f"{', '.join(COMBINATIONS)}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise InputError(f"temperature must be a positive number, got {temperature!r}")
    k = v.shape[1]
    if method == "fused-t":
        out = temperature * (logsumexp(v / temperature, axis=1) - math.log(k))
    else:
        if ((v <= 0) | (v > 1)).any():
            raise InputError("local p-values must lie in (0, 1]")
        s = -np.log(v)
        if method == "min-p":
            out = s.max(1)
        elif method == "product-p":
            out = s.sum(1)
        else:
            out = temperature * (logsumexp(s / temperature, axis=1) - math.log(k))
    return out


@dataclass
class CombinedResult:
    """One combination's observed statistic and its calibration on the null toys.

    Attributes
    ----------
    method : str
        Combination name.
    statistic : float
        Observed combined statistic.
    p_value, z : float
        ``(1 + #{s_null >= s}) / (1 + n)`` and its Z. With ``n_exceed == 0`` only a
        bound (p at most, Z at least this value).
    n_exceed : int
        Null toys whose combined statistic is at or above the observed one.
    n_toys : int
        Null toys used.
    """

    method: str
    statistic: float
    p_value: float
    z: float
    n_exceed: int
    n_toys: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (for JSON)."""
        return asdict(self)


def null_combined(t_null: np.ndarray, method: str, temperature: float = 1.0) -> np.ndarray:
    """The combined statistic of every null toy (leave-one-out inputs)."""
    if method == "fused-t":
        return combine(standardise_null(t_null), method, temperature)
    return combine(local_pvalues_null(t_null), method, temperature)


def combined_statistic(
    t: np.ndarray, t_null: np.ndarray, method: str, temperature: float = 1.0
) -> np.ndarray:
    """The combined statistic of data sets ``t`` (rows) given the null toys."""
    t2 = np.atleast_2d(np.asarray(t, dtype=np.float64))
    if method == "fused-t":
        return combine(standardise(t2, t_null), method, temperature)
    return combine(local_pvalues(t2, t_null), method, temperature)


def empirical_p(s: np.ndarray, s_null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p, n_exceed)`` of statistics ``s`` against the null values ``s_null``."""
    srt = np.sort(np.asarray(s_null, dtype=np.float64))
    n = srt.size
    n_ge = n - np.searchsorted(srt, np.asarray(s, dtype=np.float64), side="left")
    return (1.0 + n_ge) / (1.0 + n), n_ge


def combine_all(
    t_obs: np.ndarray,
    t_null: np.ndarray,
    methods: tuple[str, ...] = COMBINATIONS,
    temperature: float = 1.0,
) -> dict[str, CombinedResult]:
    """Every combination of the observed per-width statistics, each calibrated on
    its own null distribution.

    Parameters
    ----------
    t_obs : numpy.ndarray, shape (n_widths,)
        Observed statistic per width.
    t_null : numpy.ndarray, shape (n_toys, n_widths)
        Null statistics per toy and width (successful toys only).
    methods : tuple of str
        Combinations to compute.
    temperature : float
        ``T`` of ``fused-p`` and ``fused-t``.
    """
    T = _null_matrix(t_null)
    out: dict[str, CombinedResult] = {}
    for m in methods:
        s_null = null_combined(T, m, temperature)
        s = float(combined_statistic(t_obs, T, m, temperature)[0])
        p, n_ge = empirical_p(np.array([s]), s_null)
        out[m] = CombinedResult(m, s, float(p[0]), p_to_z(float(p[0])), int(n_ge[0]),
                                int(T.shape[0]))
    return out
