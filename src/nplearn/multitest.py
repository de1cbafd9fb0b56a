"""Multiple testing over kernel widths: local p-values and their combinations.

A single kernel width makes the test most sensitive to structures of about that
size. Fitting several widths on the same observed data and the same null toys
gives one statistic per width; this module turns them into one calibrated test.

Exchangeable ranks
    The observed data set and the ``n`` null toys form a pool of ``n + 1`` data
    sets that are exchangeable under the null hypothesis. Every member of the
    pool is treated alike: its local p-value at width ``k`` is its rank among
    all ``n + 1`` members, ``p_k = (1 + #{other members with t_k >= its t_k}) /
    (1 + n)``. For the observed data the "other members" are the ``n`` null
    toys; for null toy ``i`` they are the other ``n - 1`` toys **and the
    observed data**. Both are therefore on the same grid ``{1, ..., n + 1} /
    (n + 1)`` and ties count against the member being tested, which makes the
    calibrated p-value below valid (``P(p <= a) <= a`` under the null) for any
    combination. (Leave-one-out values ``#{j != i: ...} / n`` for the toys
    would put them on a coarser grid than the observed data; a data set tied
    with a toy at the best rank would then look more extreme than that toy, and
    min-p would be anti-conservative by up to a factor of the number of widths.)

Combinations (every statistic is "larger = less compatible with the reference")
    ``min-p``      ``-log min_k p_k``. With ranks, several members of the pool
                   often share the best possible value (each the most extreme at
                   some width); such ties are ordered by the member's largest
                   standardised statistic ``z_k`` (below) among the widths where
                   it attains its minimum p, i.e. by how far it lies beyond the
                   others in null standard deviations.
    ``fused-p``    ``T log mean_k exp(-log p_k / T)``: a smooth maximum of
                   ``-log p``; ``T -> 0`` gives min-p, large ``T`` the mean.
    ``product-p``  ``-sum_k log p_k`` (Fisher's combination, without the
                   chi-square reference: the widths are strongly correlated, so
                   it is calibrated on the toys like the others).
    ``fused-t``    ``T log mean_k exp(z_k / T)`` with ``z_k = (t_k - mean_k) /
                   std_k``, the mean and standard deviation taken over the other
                   ``n`` members of the pool. Without standardisation a soft
                   maximum of raw ``t`` is dominated by the narrowest width,
                   whose null ``t`` is largest.

Each combined statistic is calibrated on its own null distribution: the same
combination applied to the null toys' values in the same pool. The p-value of a
data set is ``(1 + #{toys i: s_i >= s}) / (1 + n)``. Because the toys' values
depend on the data set in the pool, this is computed per data set
(:func:`combined_pvalues`).
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
    "bonferroni_bound",
    "combine",
    "combine_all",
    "combined_pvalues",
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
    one = np.ndim(t) == 1
    X = _rows(t, T)  # a NaN would otherwise rank beyond every toy
    out = (1.0 + _n_ge(X, T)) / (1.0 + T.shape[0])
    return out[0] if one else out


def _n_ge(X: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``#{toys i: T_ik >= X_bk}`` for every data set ``b`` and width ``k`` (integers)."""
    n = T.shape[0]
    out = np.empty(X.shape, dtype=np.int64)
    for k in range(T.shape[1]):
        out[:, k] = n - np.searchsorted(np.sort(T[:, k]), X[:, k], side="left")
    return out


def _loo_counts(T: np.ndarray) -> np.ndarray:
    """``#{j != i: T_jk >= T_ik}`` for every toy ``i`` and width ``k``."""
    n = T.shape[0]
    out = np.empty_like(T)
    for k in range(T.shape[1]):
        s = np.sort(T[:, k])
        out[:, k] = n - np.searchsorted(s, T[:, k], side="left") - 1  # minus the toy itself
    return out


def local_pvalues_null(t_null: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Local p-values of the null toys in the pool with the data set ``t``.

    Parameters
    ----------
    t_null : numpy.ndarray, shape (n, n_widths)
        Null statistics.
    t : numpy.ndarray, shape (n_widths,)
        The data set that completes the pool (observed data or a signal toy).

    Returns
    -------
    numpy.ndarray
        ``p_ik = (1 + #{j != i: t_jk >= t_ik} + [t_k >= t_ik]) / (1 + n)``, shape
        ``(n, n_widths)``: every toy's rank among all ``n + 1`` members.
    """
    T = _null_matrix(t_null)
    x = _rows(t, T)
    if x.shape[0] != 1:
        raise InputError("local_pvalues_null takes one data set")
    n = T.shape[0]
    return (1.0 + _loo_counts(T) + (x >= T)) / (1.0 + n)


def _rows(t: np.ndarray, T: np.ndarray) -> np.ndarray:
    X = np.atleast_2d(np.asarray(t, dtype=np.float64))
    if X.ndim != 2 or X.shape[1] != T.shape[1]:
        raise InputError(f"{X.shape[-1]} statistics per data set but {T.shape[1]} widths in "
                         "the null toys")
    if not np.isfinite(X).all():
        raise InputError("data-set statistics contain NaN or inf")
    return X


def standardise(t: np.ndarray, t_null: np.ndarray) -> np.ndarray:
    """``(t - mean) / std`` per width with the null toys' mean and standard deviation."""
    T = _null_matrix(t_null)
    x = np.asarray(t, dtype=np.float64)
    _rows(x, T)  # shape and finiteness
    mu, sd = T.mean(0), T.std(0, ddof=1)
    if (sd <= 0).any():
        raise InputError("a width has identical null statistics in every toy; cannot "
                         "standardise")
    return (x - mu) / sd


def _toy_moments(T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`_pool_z` needs of the toys alone (computed once per null set)."""
    c = T.mean(0)  # centring keeps the sums of squares accurate
    D = T - c
    return c, D, D.sum(0), (D * D).sum(0)


def _pool_z(T: np.ndarray, x: np.ndarray,
            moments: tuple[np.ndarray, ...] | None = None
            ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Standardised values of the data set ``x`` (by the ``n`` toys) and of every toy
    (by the other ``n - 1`` toys and ``x``), and whether every width could be
    standardised (a width with no spread gives 0 there)."""
    n = T.shape[0]
    c, D, s1, s2 = _toy_moments(T) if moments is None else moments
    xd = x - c
    sd_x = np.sqrt(np.clip((s2 - s1 * s1 / n) / (n - 1), 0.0, None))
    o1 = s1 - D + xd
    o2 = s2 - D * D + xd * xd
    mu = o1 / n
    sd = np.sqrt(np.clip((o2 - n * mu * mu) / (n - 1), 0.0, None))
    ok = bool((sd_x > 0).all() and (sd > 0).all())
    with np.errstate(divide="ignore", invalid="ignore"):
        z_x = np.where(sd_x > 0, (xd - s1 / n) / sd_x, 0.0)
        z_T = np.where(sd > 0, (D - mu) / sd, 0.0)
    return z_x, z_T, ok


def standardise_null(t_null: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Standardised null toys in the pool with the data set ``t``: toy ``i`` is
    standardised with the mean and standard deviation of the other ``n - 1`` toys
    and ``t`` (``n`` values, like the data set's own standardisation by the ``n``
    toys)."""
    T = _null_matrix(t_null)
    x = _rows(t, T)
    if x.shape[0] != 1:
        raise InputError("standardise_null takes one data set")
    _, z_T, ok = _pool_z(T, x[0])
    if not ok:
        raise InputError("a width has identical null statistics in every toy; cannot "
                         "standardise")
    return z_T


#: Relative tolerance under which two combined statistics count as tied (their
#: rounding errors are ~1e-15 relative; a data set tied with a toy counts as exceeded).
TIE_RTOL = 1e-12


def _tie_tol(s: float) -> float:
    return TIE_RTOL * max(1.0, abs(float(s)))


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
    if v.ndim != 2 or v.shape[1] == 0:
        raise InputError(f"values must be (n_widths,) or (n_sets, n_widths) with at least "
                         f"one width, got shape {np.shape(values)}")
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
    n_failed : int
        Toys whose fit failed (not in the null distribution).
    p_conservative : float
        ``(1 + n_exceed + n_failed) / (1 + n_toys + n_failed)``: every failed toy
        counted as reaching the observed statistic, valid even if failures prefer
        large statistics (equal to ``p_value`` without failures).
    """

    method: str
    statistic: float
    p_value: float
    z: float
    n_exceed: int
    n_toys: int
    n_failed: int = 0
    p_conservative: float = math.nan

    def __post_init__(self) -> None:
        if math.isnan(self.p_conservative):
            self.p_conservative = ((1.0 + self.n_exceed + self.n_failed)
                                   / (1.0 + self.n_toys + self.n_failed))

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (for JSON)."""
        return asdict(self)


def null_combined(t_null: np.ndarray, t: np.ndarray, method: str,
                  temperature: float = 1.0) -> np.ndarray:
    """The combined statistic of every null toy in the pool with the data set ``t``."""
    if method == "fused-t":
        return combine(standardise_null(t_null, t), method, temperature)
    return combine(local_pvalues_null(t_null, t), method, temperature)


def combined_statistic(
    t: np.ndarray, t_null: np.ndarray, method: str, temperature: float = 1.0
) -> np.ndarray:
    """The combined statistic of data sets ``t`` (rows) given the null toys."""
    t2 = np.atleast_2d(np.asarray(t, dtype=np.float64))
    if method == "fused-t":
        return combine(standardise(t2, t_null), method, temperature)
    return combine(local_pvalues(t2, t_null), method, temperature)


def combined_pvalues(
    t: np.ndarray, t_null: np.ndarray, method: str, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combined statistic and calibrated p-value of each data set (row of ``t``).

    Each data set is pooled with the null toys on its own (see the module notes),
    so the toys' combined values are recomputed per data set.

    Returns
    -------
    (statistic, p, n_exceed) : tuple of numpy.ndarray, one entry per data set
        ``p = (1 + n_exceed) / (1 + n)`` with ``n_exceed = #{toys: s_i >= s}``.
    """
    T = _null_matrix(t_null)
    X = _rows(t, T)
    n = T.shape[0]
    n_ge = np.empty(X.shape[0], dtype=np.int64)
    if method == "fused-t":
        stat = combined_statistic(X, T, method, temperature)
        for b in range(X.shape[0]):
            # the data set and the toys are standardised by different sums: a toy equal
            # to the data set can differ from it by rounding, so ties within rounding
            # count against the data set
            n_ge[b] = int(np.count_nonzero(null_combined(T, X[b], method, temperature)
                                           >= stat[b] - _tie_tol(stat[b])))
        return stat, (1.0 + n_ge) / (1.0 + n), n_ge
    C_X = 1 + _n_ge(X, T)  # integer ranks of the data sets
    stat = combine(C_X / (1.0 + n), method, temperature)
    counts = _loo_counts(T)  # shared by every data set
    moments = _toy_moments(T) if method == "min-p" else None
    for b in range(X.shape[0]):
        x, c_x = X[b], C_X[b]
        c_T = 1 + counts + (x >= T)  # integer ranks of the toys in the pool of n + 1
        if method != "min-p":
            # the data set through the same arithmetic as the toys: equal rank vectors
            # give bit-equal statistics; rank vectors that are equal only as products
            # (6*7*1 = 7*2*3) or as permutations may differ by rounding, so ties within
            # rounding count against the data set
            s_all = combine(np.vstack([c_x, c_T]) / (1.0 + n), method, temperature)
            n_ge[b] = int(np.count_nonzero(s_all[1:] >= s_all[0] - _tie_tol(s_all[0])))
            continue
        # min-p compares the best ranks exactly; equal best ranks are ordered by the
        # largest standardised statistic among the widths that attain them
        m_x, m_T = int(c_x.min()), c_T.min(1)
        z_x, z_T, _ = _pool_z(T, x, moments)
        sec_x = z_x[c_x == m_x].max()
        sec_T = np.where(c_T == m_T[:, None], z_T, -np.inf).max(1)
        # a toy tied with the data set counts against it, also where the two
        # standardised t went through sums that round differently
        ties = sec_T >= sec_x - _tie_tol(sec_x)
        n_ge[b] = int(np.count_nonzero((m_T < m_x) | ((m_T == m_x) & ties)))
    return stat, (1.0 + n_ge) / (1.0 + n), n_ge


def bonferroni_bound(local_p: Any, local_methods: Any, local_z: Any = None) -> dict[str, Any]:
    """A combined p-value that is not limited by the number of toys.

    ``p = min(1, k * min_k p_k)`` over the ``k`` widths' reported local p-values
    (each the toy p-value, or the chi-square extrapolation when no toy reaches the
    observed ``t``, the chi-square fits the toys and its p lies below their bound
    ``1/(n+1)``). Bonferroni's inequality
    makes it conservative for any correlation between the widths, so it holds as
    far as each local p-value holds: beyond the toys, as far as the chi-square
    tails hold. The toy-calibrated combinations cannot go below ``1 / (n + 1)``;
    this bound can, which is what a large excess needs. It is computed in log
    space, so local p-values that underflow to 0 (Z beyond ~37) still give a
    finite Z when their ``local_z`` are given.

    Parameters
    ----------
    local_p : sequence of float
        Reported local p-value of each width.
    local_methods : sequence of str
        Where each comes from (``"empirical"`` or ``"chi2"``).
    local_z : sequence of float, optional
        The local significances; needed for p-values that underflowed to 0.

    Returns
    -------
    dict
        ``p_value``, ``z``, ``n_widths``, the index of the smallest local p-value
        (``width_index``) and its source (``local_method``).
    """
    from scipy import special

    from .stats import _logp_to_z

    p = np.asarray(local_p, dtype=np.float64).ravel()
    methods = list(local_methods)
    zs = None if local_z is None else np.asarray(local_z, dtype=np.float64).ravel()
    if p.size == 0 or len(methods) != p.size or not np.all((p >= 0) & (p <= 1)) \
            or (zs is not None and zs.size != p.size):
        raise InputError("bonferroni_bound needs one local p-value in [0, 1] and one "
                         "method (and z, when given) per width")
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    zero = p == 0
    if zero.any() and (zs is None or not np.all(np.isfinite(zs[zero]))):
        raise InputError("a local p-value of 0 needs its finite z (local_z) for the "
                         "Bonferroni bound")
    if zs is not None:
        # where p underflowed (or is subnormal, with few digits left) the z is exact
        tiny = (p < 1e-300) & np.isfinite(zs)
        logp[tiny] = special.log_ndtr(-zs[tiny])
    i = int(np.argmin(logp))
    logpb = min(0.0, math.log(p.size) + float(logp[i]))
    return {"method": "bonferroni", "p_value": math.exp(logpb), "z": _logp_to_z(logpb),
            "n_widths": int(p.size), "width_index": i, "local_method": str(methods[i])}


def empirical_p(s: np.ndarray, s_null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p, n_exceed)`` of statistics ``s`` against the null values ``s_null``.

    Non-finite values count against the data set: a NaN null value exceeds every
    statistic, and a NaN statistic is exceeded by every null value (p = 1)."""
    srt = np.sort(np.asarray(s_null, dtype=np.float64))  # NaN sort last
    n = srt.size
    s = np.asarray(s, dtype=np.float64)
    n_ge = n - np.searchsorted(srt, s, side="left")
    n_ge = np.where(np.isnan(s), n, n_ge)
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
    if np.ndim(t_obs) != 1:
        raise InputError(f"t_obs must hold one statistic per width (1-D), got shape "
                         f"{np.shape(t_obs)}; combined_pvalues takes several data sets")
    if isinstance(methods, str):  # one combination
        methods = (methods,)
    out: dict[str, CombinedResult] = {}
    for m in methods:
        s, p, n_ge = combined_pvalues(t_obs, T, m, temperature)
        out[m] = CombinedResult(m, float(s[0]), float(p[0]), p_to_z(float(p[0])),
                                int(n_ge[0]), int(T.shape[0]))
    return out
