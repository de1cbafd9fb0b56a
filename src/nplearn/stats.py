"""The NPLM test statistic, p-values, the chi-square fit of the null, Z scores."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import optimize, special
from scipy import stats as sps

from .errors import InputError

__all__ = [
    "Calibration",
    "calibrate",
    "chi2_pvalue",
    "clopper_pearson",
    "empirical_pvalue",
    "fit_chi2_dof",
    "nplm_statistic",
    "p_to_z",
    "z_to_p",
]


#: The chi-square extrapolation is reported only when the fit to the null toys has a
#: Kolmogorov-Smirnov p-value of at least this.
CHI2_FIT_MIN_KS_P = 0.01
#: ... and only from at least this many null toys: below it the KS test cannot reject a
#: poor fit and the fitted dof is uncertain by more than ~20% (sqrt(2 / n)), so a
#: significance extrapolated from it would be unfounded (the toys' p is reported).
CHI2_REPORT_MIN_TOYS = 50

def nplm_statistic(
    f_ref: np.ndarray, f_data: np.ndarray, w_ref: np.ndarray
) -> tuple[float, float]:
    """Extended likelihood-ratio statistic of NPLM.

    ``t = 2 [ sum_D f(x) - sum_R w (exp(f(x)) - 1) ]`` and the fitted expected
    yield ``N_w = sum_R w exp(f(x))``.

    Parameters
    ----------
    f_ref, f_data : numpy.ndarray
        The learned log density ratio on the reference and data events.
    w_ref : numpy.ndarray
        Reference weights (they sum to the expected yield ``N(R)``).

    Returns
    -------
    t, n_w : float
    """
    f_ref = np.asarray(f_ref, dtype=np.float64)
    f_data = np.asarray(f_data, dtype=np.float64)
    w_ref = np.asarray(w_ref, dtype=np.float64)
    if f_ref.shape != w_ref.shape:
        raise InputError(f"f_ref {f_ref.shape} and w_ref {w_ref.shape} differ in shape")
    t = 2.0 * (f_data.sum() - (w_ref * np.expm1(f_ref)).sum())
    n_w = float((w_ref * np.exp(f_ref)).sum())
    return float(t), n_w


def is_real(v: Any) -> bool:
    """Whether ``v`` is a real number (Python or numpy scalar), not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and \
        not isinstance(v, (bool, np.bool_))


def _check_t_obs(t_obs: float) -> float:
    if isinstance(t_obs, np.ndarray) and t_obs.ndim == 0 and t_obs.dtype.kind in "iuf":
        t_obs = t_obs.item()
    if isinstance(t_obs, bool) or not isinstance(t_obs, (int, float, np.integer,
                                                         np.floating)):
        raise InputError(f"the observed statistic must be one number, got {t_obs!r}")
    if math.isnan(t_obs):
        raise InputError("the observed statistic is NaN: it cannot be calibrated")
    return float(t_obs)


def _null_statistics(t_null: Any) -> tuple[np.ndarray, int]:
    """The null toys' statistics that are numbers (a 1-D array; ``+inf`` is a toy
    beyond any observed value and is kept) and the count of NaN ones (failed toys)."""
    try:
        arr = np.asarray(t_null, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"the null statistics must be an array of numbers, got "
                         f"{type(t_null).__name__}") from None
    if arr.ndim != 1:
        raise InputError(f"the null statistics must be a 1-D array, got shape {arr.shape}")
    nan = np.isnan(arr)
    arr = arr[~nan]
    if not np.isfinite(arr).any():
        raise InputError("no finite null toys to calibrate against")
    return arr, int(nan.sum())


def empirical_pvalue(t_obs: float, t_null: np.ndarray) -> float:
    """``(1 + #{t_null >= t_obs}) / (1 + n_toys)``: never zero, exact for exchangeable toys.

    A NaN among ``t_null`` (a failed toy) is refused: leaving it out could make p
    smaller than it is; :func:`calibrate` counts such toys in ``p_conservative``.
    """
    t_obs = _check_t_obs(t_obs)
    t_null, n_nan = _null_statistics(t_null)
    if n_nan:
        raise InputError(f"{n_nan} of the null statistics are NaN (failed toys); "
                         "drop them, or use calibrate(..., n_failed=...)")
    return float((1 + np.count_nonzero(t_null >= t_obs)) / (1 + t_null.size))


def p_to_z(p: float) -> float:
    """One-sided Gaussian significance ``Z = Phi^{-1}(1 - p)``."""
    if not 0.0 <= p <= 1.0:
        raise InputError(f"p-value must be in [0, 1], got {p}")
    if p == 0.0:
        return math.inf
    return float(-special.ndtri(p))


def _logp_to_z(logp: float) -> float:
    if logp == -math.inf:
        return math.inf
    return float(-special.ndtri_exp(logp))


def z_to_p(z: float) -> float:
    """Inverse of :func:`p_to_z`."""
    return float(special.ndtr(-z))


def chi2_logsf(t: float, dof: float) -> float:
    """``log P(chi2_dof >= t)``, finite far beyond where scipy underflows.

    Falls back to the asymptotic expansion of the upper incomplete gamma
    function, ``Gamma(a, x) ~ x^(a-1) e^(-x) sum_j (a-1)...(a-j) / x^j``, once
    scipy returns ``-inf`` (``t`` of order 1500 and above).
    """
    logp = float(sps.chi2.logsf(t, dof))
    if math.isfinite(logp) or not math.isfinite(t):
        return logp
    return _chi2_logsf_asymptotic(t, dof)


def _chi2_logsf_asymptotic(t: float, dof: float) -> float:
    """Asymptotic ``log P(chi2_dof >= t)`` for ``t >> dof``."""
    a, x = 0.5 * dof, 0.5 * t
    term, total = 1.0, 1.0
    for j in range(1, 60):
        term *= (a - j) / x
        total += term
        if abs(term) < 1e-17 * abs(total):
            break
    return (a - 1.0) * math.log(x) - x + math.log(total) - special.gammaln(a)


def chi2_pvalue(t: float, dof: float) -> tuple[float, float]:
    """Survival probability of a chi-square with ``dof`` at ``t`` and its Z.

    Works with the log survival function so that very significant values keep
    a finite Z instead of underflowing to ``p = 0``.
    """
    if not (is_real(dof) and math.isfinite(dof) and dof > 0):
        raise InputError(f"chi-square degrees of freedom must be a positive number, got "
                         f"{dof!r}")
    logp = chi2_logsf(t, dof)
    return math.exp(logp), _logp_to_z(logp)


def fit_chi2_dof(t_null: np.ndarray) -> tuple[float, float, float]:
    """Chi-square degrees of freedom minimising the Kolmogorov-Smirnov distance.

    Parameters
    ----------
    t_null : numpy.ndarray
        Null test statistics (non-finite entries are ignored; negative ones count
        against the fit since a chi-square puts no mass there).

    Returns
    -------
    dof : float
        The KS-optimal number of degrees of freedom.
    ks_distance : float
        The KS distance at that dof.
    ks_pvalue : float
        The nominal KS p-value of that distance (optimistic, since dof was fitted;
        use it as a goodness-of-fit diagnostic, not a test).
    """
    t = np.sort(np.asarray(t_null, dtype=np.float64))
    t = t[np.isfinite(t)]
    if t.size < 5:
        raise InputError(f"need at least 5 finite null values to fit a chi-square, got {t.size}")
    n = t.size
    lo = np.arange(0, n) / n
    hi = np.arange(1, n + 1) / n

    def ks(dof: float) -> float:
        cdf = sps.chi2.cdf(t, dof)
        return float(max((hi - cdf).max(), (cdf - lo).max()))

    center = max(float(np.median(t)), 0.5)
    grid = np.geomspace(max(0.05, center / 20.0), center * 20.0 + 10.0, 120)
    vals = np.array([ks(g) for g in grid])
    i = int(vals.argmin())
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = optimize.minimize_scalar(ks, bounds=(a, b), method="bounded",
                                   options={"xatol": 1e-4 * max(1.0, grid[i])})
    dof, dist = (float(res.x), float(res.fun)) if res.fun <= vals[i] else (float(grid[i]),
                                                                         float(vals[i]))
    return dof, dist, float(sps.kstwo.sf(dist, n))


@dataclass
class Calibration:
    """p-values and Z of an observed statistic against its null distribution.

    Attributes
    ----------
    p_value, z : float
        The reported values; ``method`` says where they come from.
    method : str
        ``"empirical"`` when at least ``min_exceed`` (default 1) null toys lie at or
        above ``t_obs``, otherwise ``"chi2"``: the extrapolation of the fitted
        chi-square (when its checks pass).
    p_empirical, z_empirical : float
        ``(1 + #{t_null >= t_obs}) / (1 + n)`` and its Z. With no toy above
        ``t_obs`` this is an upper bound on p (a lower bound on Z).
    p_empirical_err : float
        Binomial standard error of the toy p-value.
    n_exceed : int
        Null toys with ``t >= t_obs``.
    p_chi2, z_chi2 : float
        From the chi-square fitted to the null (KS-optimal dof).
    chi2_dof, chi2_ks_distance, chi2_ks_pvalue : float
        The fitted dof and its goodness of fit.
    n_toys : int
        Finite null values used.
    n_failed : int
        Toys that failed and are excluded from everything above.
    p_conservative : float
        The toy p-value counting every failed toy as exceeding ``t_obs`` (a bound
        that stays valid even if failures happen preferentially at large ``t``), or
        the reported p-value where that is larger.
    chi2_unused : str
        Why the chi-square extrapolation is not the reported value (empty when it
        is): ``"no chi2 fit"``, ``"poor chi2 fit (KS p < 0.01)"``, ``"fewer than 50
        toys"``, ``"enough toys reach t_obs"``, ``"not below the toys' bound"`` (beyond
        every toy, a chi-square p above ``1/(n+1)``) or ``"the toys contradict its
        tail"`` (``min_exceed > 1``: a toy count below it that the chi-square's tail
        contradicts).
    p_empirical_interval : tuple of float
        The central 68% Clopper-Pearson interval of the tail probability from
        ``n_exceed`` of ``n_toys`` (0 as its low end when no toy reaches ``t_obs``);
        with few toys above ``t_obs`` it is asymmetric, unlike ``p_empirical_err``.
    """

    p_value: float
    z: float
    method: str
    p_empirical: float
    z_empirical: float
    p_empirical_err: float
    n_exceed: int
    p_chi2: float
    z_chi2: float
    chi2_dof: float
    chi2_ks_distance: float
    chi2_ks_pvalue: float
    n_toys: int
    n_failed: int = 0
    p_conservative: float = math.nan
    chi2_unused: str = ""
    p_empirical_interval: tuple[float, float] = (math.nan, math.nan)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (for JSON)."""
        return asdict(self)


def clopper_pearson(k: int, n: int, cl: float = 0.68) -> tuple[float, float]:
    """Central Clopper-Pearson interval of a binomial fraction ``k / n``."""
    if n <= 0:
        return (math.nan, math.nan)
    if not 0 <= k <= n:
        raise InputError(f"clopper_pearson needs 0 <= k <= n, got k = {k}, n = {n}")
    a = (1.0 - cl) / 2.0
    lo = 0.0 if k == 0 else float(sps.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(sps.beta.ppf(1.0 - a, k + 1, n - k))
    return lo, hi


def _within_tail_interval(p: float, k: int, n: int, level: float = 0.95) -> bool:
    """Whether the tail probability ``p`` lies in the two-sided ``level``
    Clopper-Pearson interval of ``k`` toys out of ``n`` at or above ``t_obs``."""
    lo, hi = clopper_pearson(k, n, level)
    return bool(lo <= p <= hi)


def calibrate(
    t_obs: float, t_null: np.ndarray, *, min_exceed: int = 1, n_failed: int = 0
) -> Calibration:
    """Calibrate ``t_obs`` against null toys: empirical and chi-square p-values.

    Parameters
    ----------
    t_obs : float
        Observed statistic.
    t_null : numpy.ndarray
        Null statistics. A NaN (a failed toy) counts in ``n_failed``; ``+inf``
        counts as a toy beyond ``t_obs``; the chi-square is fitted to the finite ones.
    min_exceed : int
        Report the empirical p-value when at least this many toys are at or above
        ``t_obs`` (default 1: whenever the toys resolve p; with more, a chi-square
        value would replace an exact toy p-value and is anti-conservative whenever
        the null's tail is not exactly chi-square); otherwise report the chi-square
        extrapolation, unless the toys reject the chi-square fit (KS p-value below
        :data:`CHI2_FIT_MIN_KS_P`), are fewer than :data:`CHI2_REPORT_MIN_TOYS`, or
        (beyond every toy) the extrapolation is not below the toys' bound
        ``1/(n+1)``, or (``min_exceed > 1``) the toys at or above ``t_obs``
        contradict its tail: then the empirical value (a bound when no toy reaches
        ``t_obs``) is reported.
    n_failed : int
        Toys that failed (for the conservative p-value).
    """
    t_obs = _check_t_obs(t_obs)
    if isinstance(min_exceed, bool) or not isinstance(min_exceed, (int, np.integer)) \
            or min_exceed < 1:
        raise InputError(f"min_exceed must be an integer >= 1, got {min_exceed!r}")
    t_null, n_nan = _null_statistics(t_null)
    n_failed = int(n_failed) + n_nan
    n = t_null.size
    n_exceed = int(np.count_nonzero(t_null >= t_obs))
    finite = t_null[np.isfinite(t_null)]
    p_emp = (1 + n_exceed) / (1 + n)
    p_err = math.sqrt(p_emp * (1 - p_emp) / (1 + n))
    z_emp = p_to_z(p_emp)
    if finite.size >= 5:
        dof, ksd, ksp = fit_chi2_dof(finite)
        p_chi, z_chi = chi2_pvalue(t_obs, dof)
    else:
        dof = ksd = ksp = p_chi = z_chi = math.nan
    # never report an extrapolation from a fit the toys reject (KS p < 0.01), nor one
    # that the toys' count at or above t_obs contradicts: its tail probability outside
    # their 95% Clopper-Pearson interval (the KS fit follows the bulk, not the tail;
    # with no toy there, a tail heavier than the toys allow)
    unused = ("no chi2 fit" if math.isnan(dof) else
              "enough toys reach t_obs" if n_exceed >= min_exceed else
              "poor chi2 fit (KS p < 0.01)" if not ksp >= CHI2_FIT_MIN_KS_P else
              f"fewer than {CHI2_REPORT_MIN_TOYS} toys" if n < CHI2_REPORT_MIN_TOYS else
              # beyond every toy the toys' p is 1/(n+1): an extrapolation above it would
              # make a larger t_obs less significant than one just below the largest toy
              "not below the toys' bound" if n_exceed == 0 and not p_chi < p_emp else
              "the toys contradict its tail" if not _within_tail_interval(p_chi, n_exceed, n)
              else "")
    use_emp = bool(unused)
    return Calibration(
        p_value=p_emp if use_emp else p_chi,
        z=z_emp if use_emp else z_chi,
        method="empirical" if use_emp else "chi2",
        p_empirical=p_emp,
        z_empirical=z_emp,
        p_empirical_err=p_err,
        n_exceed=n_exceed,
        p_chi2=p_chi,
        z_chi2=z_chi,
        chi2_dof=dof,
        chi2_ks_distance=ksd,
        chi2_ks_pvalue=ksp,
        n_toys=n,
        n_failed=int(n_failed),
        # never below the reported value (a chi-square p may exceed the toys' bound)
        p_conservative=max((1 + n_exceed + n_failed) / (1 + n + n_failed),
                           p_emp if use_emp else p_chi),
        chi2_unused=unused,
        p_empirical_interval=clopper_pearson(n_exceed, n, 0.68),
    )
