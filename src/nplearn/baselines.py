"""Standard goodness-of-fit statistics to compare NPLM against.

Every function here computes a *statistic* of a reference sample ``R`` (with
optional per-event weights ``w`` summing to the expected yield ``N(R)``) and a
data sample ``D``; larger values mean a larger discrepancy. The p-values are
meant to come from the same null toys that calibrate the NPLM statistic, so
the functions only compute the number. They share one signature::

    statistic(reference, data, ref_weights=None, rng=None, **options) -> float

with ``reference`` of shape ``(N_R, d)``, ``data`` of shape ``(N_D, d)``,
``ref_weights`` of shape ``(N_R,)`` (``None``: uniform) and ``rng`` a
:class:`numpy.random.Generator` used for every random choice (subsampling);
``None`` means ``numpy.random.default_rng(0)``, so results are reproducible.
The global numpy random state is never used. The torch computations run on
the CPU in float64; while they run, torch's intra-op thread count is set to one
and the work is shared among ``torch.get_num_threads()`` Python threads.

Available statistics (see :data:`BASELINES`):

``ks_bonferroni``
    Per-feature Kolmogorov–Smirnov distances, Bonferroni-combined asymptotic
    p-value, returned as ``-log p``.
``energy``
    Energy distance times ``N_D`` (exact in 1D; blocked torch computation on a
    reference subsample otherwise).
``mmd``
    Unbiased squared maximum mean discrepancy with a Gaussian kernel, times
    ``N_D``.
``binned_chi2``
    Pearson chi-square in bins of equal reference weight (1D only).
``nplm_network``
    The NPLM ``t`` of the original NPLM learner, the neural network (opt-in: a
    network fit per toy).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from scipy import stats as sps
from scipy.spatial.distance import pdist

from ._torch_utils import torch_threads
from .errors import InputError
from .io import as_events

__all__ = [
    "BASELINES",
    "available_baselines",
    "binned_chi2",
    "energy_distance",
    "ks_bonferroni",
    "ks_bonferroni_pvalue",
    "mmd",
    "nplm_network",
]

#: Elements (float64) of one block of a pairwise matrix: 2 MiB, cache friendly
#: and far below the 256 MiB that a block may take at most.
_BLOCK_ELEMS = 1 << 18

#: Jobs with fewer kernel evaluations than this (a few milliseconds) run on
#: the calling thread only.
_SMALL_PAIRS = 1 << 22

#: Reference events used for the median-distance choice of the MMD kernel width.
_SIGMA_SUBSAMPLE = 2000

#: Below this the Kolmogorov survival function is replaced by a bound that
#: stays finite (see :func:`_ks_log_pvalues`).
_TINY_P = 1e-280

#: Spectral 1D MMD: the kernel is periodised with period ``L >= range +
#: _SPEC_MARGIN * sigma`` and the frequency integral is cut at
#: ``|omega| <= _SPEC_CUT / sigma``; both errors are below 1e-20.
_SPEC_MARGIN = 10.0
_SPEC_CUT = 10.0


# ------------------------------------------------------------------ validation


def _check_inputs(
    reference: Any, data: Any, ref_weights: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the samples; return them as float64 with normalised weights.

    Returns
    -------
    reference, data : numpy.ndarray
        ``(N_R, d)`` and ``(N_D, d)`` float64 arrays.
    p : numpy.ndarray
        Reference weights divided by their sum (``1 / N_R`` when ``None``).
    """
    ref = as_events(reference, "reference")
    dat = as_events(data, "data", n_features=ref.shape[1])
    n_r = ref.shape[0]
    if ref_weights is None:
        return ref, dat, np.full(n_r, 1.0 / n_r)
    w = np.asarray(ref_weights)
    if w.dtype == object or not (np.issubdtype(w.dtype, np.number) or w.dtype == np.bool_):
        raise InputError(f"ref_weights: weights must be numeric, got dtype {w.dtype}")
    if np.iscomplexobj(w):
        raise InputError("ref_weights: weights must be real, got complex numbers")
    w = w.astype(np.float64)
    if w.ndim != 1 or w.shape[0] != n_r:
        raise InputError(
            f"ref_weights: expected {n_r} weights (one per reference event), "
            f"got shape {w.shape}"
        )
    if not np.isfinite(w).all():
        i = int(np.flatnonzero(~np.isfinite(w))[0])
        raise InputError(f"ref_weights: non-finite weight {w[i]} at row {i}")
    if (w <= 0).any():
        i = int(np.flatnonzero(w <= 0)[0])
        raise InputError(
            f"ref_weights: weights must be positive, got {w[i]} at row {i} "
            f"({int((w <= 0).sum())} non-positive weight(s) in total)"
        )
    return ref, dat, w / w.sum()


def _check_rng(rng: Any) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(0)
    if not isinstance(rng, np.random.Generator):
        raise InputError(
            f"rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    return rng


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


# ------------------------------------------------------------------- 1D tools


def _signed_cdf_difference(
    r: np.ndarray, p: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool and sort two 1D samples; ``F_D - F_R`` after each pooled point.

    Parameters
    ----------
    r, p : numpy.ndarray
        Reference values and their normalised weights (summing to one).
    x : numpy.ndarray
        Data values (each of mass ``1 / N_D``).

    Returns
    -------
    z : numpy.ndarray
        The pooled values, sorted.
    g : numpy.ndarray
        ``g[k]`` is the cumulated signed mass up to position ``k``; at the last
        position of a run of equal values it equals ``F_D(z[k]) - F_R(z[k])``
        (both empirical CDFs right-continuous, the reference one weighted).
    last : numpy.ndarray
        Boolean mask of the last position of each run of equal values.
    """
    z = np.concatenate([r, x])
    mass = np.concatenate([-p, np.full(x.shape[0], 1.0 / x.shape[0])])
    order = np.argsort(z)
    z = z[order]
    g = np.cumsum(mass[order])
    last = np.empty(z.shape[0], dtype=bool)
    np.not_equal(z[1:], z[:-1], out=last[:-1])
    last[-1] = True
    return z, g, last


def _ks_distances(ref: np.ndarray, p: np.ndarray, dat: np.ndarray) -> np.ndarray:
    """Per-feature KS distance ``sup_x |F_D(x) - F_R(x)|`` (weighted reference ECDF)."""
    out = np.empty(ref.shape[1])
    for j in range(ref.shape[1]):
        _, g, last = _signed_cdf_difference(ref[:, j], p, dat[:, j])
        out[j] = np.abs(g[last]).max()
    return out


def _ks_effective_n(p: np.ndarray, n_data: int) -> int:
    """``round(N_D N_Reff / (N_D + N_Reff))`` with Kish's ``N_Reff = 1 / sum p^2``."""
    n_ref_eff = 1.0 / float(np.dot(p, p))
    n_eff = n_data * n_ref_eff / (n_data + n_ref_eff)
    return max(1, int(np.round(n_eff)))


def _ks_log_pvalues(dist: np.ndarray, n: int) -> np.ndarray:
    """Log of the asymptotic two-sample KS p-values ``kstwo.sf(D, n)``.

    Where the survival function underflows (below ``_TINY_P``) the value is
    replaced by ``min(log _TINY_P, log 2 - 2 n D^2)``: the
    Dvoretzky–Kiefer–Wolfowitz–Massart bound, an upper bound on the p-value,
    so the result stays finite, conservative and non-increasing in ``D``.
    """
    sf = sps.kstwo.sf(dist, n)
    with np.errstate(divide="ignore"):
        logp = np.log(sf)
    small = ~(sf >= _TINY_P)
    if small.any():
        bound = math.log(2.0) - 2.0 * n * dist[small] ** 2
        logp[small] = np.minimum(math.log(_TINY_P), bound)
    return np.minimum(logp, 0.0)


def _ks_log_pbonf(
    reference: Any, data: Any, ref_weights: Any
) -> float:
    ref, dat, p = _check_inputs(reference, data, ref_weights)
    dist = _ks_distances(ref, p, dat)
    logp = _ks_log_pvalues(dist, _ks_effective_n(p, dat.shape[0]))
    return min(0.0, math.log(ref.shape[1]) + float(logp.min()))


# --------------------------------------------------------------- subsampling


def _subsample(
    ref: np.ndarray, p: np.ndarray, max_ref: int, rng: np.random.Generator, weighted: bool
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_ref`` reference events and their normalised weights.

    Small references are returned whole with their weights. Larger ones are
    drawn with replacement proportionally to the weights (weighted case; the
    drawn events then carry equal weights) or without replacement (unweighted).
    """
    n = ref.shape[0]
    if n <= max_ref:
        return ref, p
    if weighted:
        idx = rng.choice(n, size=max_ref, replace=True, p=p)
    else:
        idx = rng.choice(n, size=max_ref, replace=False)
    return ref[idx], np.full(max_ref, 1.0 / max_ref)


# ------------------------------------------------------- blocked pair sums


def _augment(a: torch.Tensor, left: bool) -> torch.Tensor:
    """Rows ``[a, |a|^2, 1]`` (left) or ``[-2a, 1, |a|^2]`` (right).

    The product of a left and a right augmented matrix is the matrix of squared
    Euclidean distances, computed by one matrix multiplication.
    """
    sq = (a * a).sum(dim=1, keepdim=True)
    one = torch.ones_like(sq)
    return torch.cat([a, sq, one] if left else [-2.0 * a, one, sq], dim=1)


def _max_workers() -> int:
    """Worker threads for blocked computations: torch's intra-op thread setting."""
    return torch.get_num_threads()


def _run_tasks(fn: Callable[[Any], Any], tasks: list[Any], n_evals: float) -> list[Any]:
    """``[fn(t) for t in tasks]``, in order, spread over worker threads.

    Each worker runs torch on one intra-op thread and takes the next task when
    it is free, so a worker that the operating system pauses (cores shared with
    other jobs) does not stall the others as the barriers of a multi-threaded
    torch operation would. The number of workers is torch's thread setting
    (one for jobs under ``_SMALL_PAIRS`` evaluations). Every task is computed
    the same way whatever the number of workers, so results do not depend on
    it.
    """
    workers = min(len(tasks), _max_workers())
    if n_evals < _SMALL_PAIRS:
        workers = 1
    with torch_threads(1):
        if workers <= 1:
            return [fn(t) for t in tasks]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(fn, tasks))


def _pair_sums(
    jobs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]],
    kind: str,
    gamma: float = 0.0,
) -> list[float]:
    """``sum_ij pa_i pb_j k(a_i, b_j)`` for each job ``(a, pa, b, pb)``, in row blocks.

    Parameters
    ----------
    jobs : list of tuple
        ``a, b`` are ``(n, d)`` and ``(m, d)`` float64 samples, ``pa, pb``
        the weights of their rows; ``b = pb = None`` means ``b = a`` (only the
        upper triangle is computed, and ``k(a_i, a_i)`` uses an exact zero
        distance).
    kind : {"dist", "gauss"}
        ``k = |x - y|`` or ``k = exp(-gamma |x - y|^2)``.
    """
    prepared = []
    tasks = []
    n_evals = 0.0
    for j, (a, pa, b, pb) in enumerate(jobs):
        symmetric = b is None
        if b is None or pb is None:
            b, pb = a, pa
        prepared.append((_augment(a, True), pa, _augment(b, False), pb, symmetric))
        n, m = a.shape[0], b.shape[0]
        n_evals += 0.5 * n * n if symmetric else float(n) * m
        start = 0
        while start < n:
            c0 = start if symmetric else 0
            stop = start + max(1, min(n - start, _BLOCK_ELEMS // max(1, m - c0)))
            tasks.append((j, start, stop, c0))
            start = stop

    def block(task: tuple[int, int, int, int]) -> float:
        j, start, stop, c0 = task
        left, pa, right, pb, symmetric = prepared[j]
        rows = stop - start
        blk = left[start:stop] @ right[c0:].T
        if symmetric:
            blk[:, :rows].diagonal().zero_()
        if kind == "dist":
            blk.clamp_min_(0.0).sqrt_()
        else:
            blk.mul_(-gamma).exp_()
        if symmetric:
            # the diagonal square once, the part right of it twice (k is symmetric)
            q = 2.0 * pb[c0:]
            q[:rows] = pb[start:stop]
        else:
            q = pb
        return float(pa[start:stop] @ (blk @ q))

    values = _run_tasks(block, tasks, n_evals)
    return [
        math.fsum(v for (j, *_), v in zip(tasks, values, strict=True) if j == k)
        for k in range(len(jobs))
    ]


def _as_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


# ------------------------------------------------------------------------ KS


def ks_bonferroni_pvalue(
    reference: np.ndarray,
    data: np.ndarray,
    ref_weights: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> float:
    """Bonferroni-combined asymptotic p-value of per-feature KS tests.

    For each feature ``j`` the two-sample Kolmogorov–Smirnov distance
    ``D_j = sup_x |F_D(x) - F_R(x)|`` is computed, with the weighted empirical
    CDF ``F_R(x) = sum_{r_i <= x} w_i / sum w`` of the reference. Its asymptotic
    p-value is ``scipy.stats.kstwo.sf(D_j, n)`` with
    ``n = round(N_D N_Reff / (N_D + N_Reff))`` and Kish's effective reference
    size ``N_Reff = (sum w)^2 / sum w^2`` (``N_R`` when unweighted; this is
    what ``scipy.stats.ks_2samp(method="asymp")`` does for two unweighted
    samples). The features are combined with ``p = min(1, d min_j p_j)``.

    Parameters
    ----------
    reference : numpy.ndarray
        ``(N_R, d)`` reference events.
    data : numpy.ndarray
        ``(N_D, d)`` data events.
    ref_weights : numpy.ndarray, optional
        Positive per-event reference weights (``None``: uniform). Only their
        relative size matters.
    rng : numpy.random.Generator, optional
        Unused (the statistic is deterministic); accepted for the common
        signature.

    Returns
    -------
    float
        The p-value; it underflows to 0.0 for extreme discrepancies (use
        :func:`ks_bonferroni`, which stays finite).
    """
    _check_rng(rng)
    return math.exp(_ks_log_pbonf(reference, data, ref_weights))


def ks_bonferroni(
    reference: np.ndarray,
    data: np.ndarray,
    ref_weights: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> float:
    """``-log`` of the Bonferroni-combined KS p-value (see :func:`ks_bonferroni_pvalue`).

    The logarithm is computed from the log-survival function, so the value is
    finite even where the p-value underflows: below ``1e-280`` each per-feature
    p-value is replaced by the (conservative) bound
    ``min(1e-280, 2 exp(-2 n D_j^2))``. The value is 0 when
    ``d min_j p_j >= 1``.

    Parameters
    ----------
    reference, data, ref_weights, rng
        As in :func:`ks_bonferroni_pvalue`.

    Returns
    -------
    float
        ``-log p_bonf >= 0``; larger means more discrepant.
    """
    _check_rng(rng)
    return -_ks_log_pbonf(reference, data, ref_weights)


# -------------------------------------------------------------------- energy


#: Reference subsample of the energy-distance and MMD tests (their default ``max_ref``).
DEFAULT_MAX_REF = 20000


def energy_distance(
    reference: np.ndarray,
    data: np.ndarray,
    ref_weights: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    max_ref: int = DEFAULT_MAX_REF,
) -> float:
    """Energy distance between data and reference, times ``N_D``.

    ``E = 2 E|X - Y| - E|X - X'| - E|Y - Y'|`` with ``X, X'`` drawn from the
    (weighted) reference and ``Y, Y'`` from the data, all expectations taken
    over the empirical distributions (V-statistics: the zero self-distances
    are included), Euclidean distance. ``E >= 0``, with equality only for
    identical empirical distributions.

    * ``d == 1``: exact for the full reference via
      ``E = 2 int (F_D(x) - F_R(x))^2 dx`` on the pooled sorted sample,
      ``O(n log n)``; ``max_ref`` and ``rng`` are not used.
    * ``d > 1``: pairwise sums in float64 with torch, in blocks of 2 MiB
      shared among ``torch.get_num_threads()`` worker threads, on the whole
      reference if ``N_R <= max_ref`` and otherwise on a subsample of
      ``max_ref`` events drawn with ``rng`` (with replacement, proportional to
      the weights, when weighted; without replacement when unweighted). The
      data are never subsampled: the cost grows like
      ``max_ref^2 / 2 + max_ref N_D + N_D^2 / 2``.

    Parameters
    ----------
    reference : numpy.ndarray
        ``(N_R, d)`` reference events.
    data : numpy.ndarray
        ``(N_D, d)`` data events.
    ref_weights : numpy.ndarray, optional
        Positive per-event reference weights (``None``: uniform).
    rng : numpy.random.Generator, optional
        Source of the subsample (``None``: ``default_rng(0)``).
    max_ref : int
        Largest number of reference events used in ``d > 1``.

    Returns
    -------
    float
        ``N_D * E``.
    """
    ref, dat, p = _check_inputs(reference, data, ref_weights)
    rng = _check_rng(rng)
    max_ref = _check_int(max_ref, "max_ref", 2)
    n_d = dat.shape[0]
    if ref.shape[1] == 1:
        z, g, _ = _signed_cdf_difference(ref[:, 0], p, dat[:, 0])
        return float(n_d * 2.0 * np.dot(g[:-1] ** 2, np.diff(z)))
    ref, p = _subsample(ref, p, max_ref, rng, ref_weights is not None)
    center = ref.mean(axis=0)
    r, x = _as_tensor(ref - center), _as_tensor(dat - center)
    pr, px = _as_tensor(p), torch.full((n_d,), 1.0 / n_d, dtype=torch.float64)
    s_rd, s_rr, s_dd = _pair_sums([(r, pr, x, px), (r, pr, None, None), (x, px, None, None)],
                                  "dist")
    return float(n_d * (2.0 * s_rd - s_rr - s_dd))


# ----------------------------------------------------------------------- MMD


def _median_distance(ref: np.ndarray, p: np.ndarray, rng: np.random.Generator,
                     weighted: bool) -> float:
    """Median pairwise Euclidean distance of (a subsample of) the reference."""
    sub, _ = _subsample(ref, p, _SIGMA_SUBSAMPLE, rng, weighted)
    dist = pdist(sub)
    dist = dist[dist > 0]
    if dist.size == 0:
        raise InputError(
            "mmd: cannot choose the kernel width, all reference events are identical; "
            "pass sigma explicitly"
        )
    return float(np.median(dist))


def _gauss_sums_spectral(
    r: np.ndarray, p: np.ndarray, x: np.ndarray, sigma: float
) -> tuple[float, float, float]:
    """1D Gaussian-kernel sums ``(S_RR, S_DD, S_RD)`` from characteristic functions.

    ``k(t) = exp(-t^2 / 2 sigma^2) = int g(w) cos(w t) dw`` with ``g`` the
    ``N(0, 1 / sigma^2)`` density, so e.g. ``S_RD = sum_ik p_i q_k k(r_i - x_k)
    = int g(w) Re[psi_R(w) conj(psi_D(w))] dw`` with the empirical
    characteristic functions ``psi``. The trapezoid rule with step
    ``h = 2 pi / L`` integrates exactly the kernel periodised with period
    ``L`` (Poisson summation); ``L`` exceeds the pooled range by
    ``_SPEC_MARGIN sigma`` and the sum is cut at ``|w| = _SPEC_CUT / sigma``,
    so both errors are below 1e-20: the result equals the pairwise sums to
    rounding.
    """
    centre = 0.5 * (min(r.min(), x.min()) + max(r.max(), x.max()))
    span = max(r.max(), x.max()) - min(r.min(), x.min())
    period = span + _SPEC_MARGIN * sigma
    h = 2.0 * math.pi / period
    n_freq = math.ceil(_SPEC_CUT / (h * sigma)) + 1
    omega = h * torch.arange(n_freq, dtype=torch.float64)
    coef = h * sigma / math.sqrt(2.0 * math.pi) * torch.exp(-0.5 * (sigma * omega) ** 2)
    coef[1:] *= 2.0  # the integrand is even: w and -w
    rt, xt = _as_tensor(r - centre), _as_tensor(x - centre)
    pt = _as_tensor(p)
    qt = torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=torch.float64)

    samples = [(rt, pt), (xt, qt)]
    tasks = []
    for j, (values, _) in enumerate(samples):
        step = max(1, _BLOCK_ELEMS // values.shape[0])
        tasks += [(j, s, min(s + step, n_freq)) for s in range(0, n_freq, step)]

    def block(task: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        j, start, stop = task
        values, weights = samples[j]
        theta = torch.outer(omega[start:stop], values)
        return torch.cos(theta) @ weights, theta.sin_() @ weights

    parts = _run_tasks(block, tasks, 2.0 * n_freq * (r.shape[0] + x.shape[0]))
    re = [torch.cat([v[0] for t, v in zip(tasks, parts, strict=True) if t[0] == j])
          for j in (0, 1)]
    im = [torch.cat([v[1] for t, v in zip(tasks, parts, strict=True) if t[0] == j])
          for j in (0, 1)]
    s_rr = float(coef @ (re[0] * re[0] + im[0] * im[0]))
    s_dd = float(coef @ (re[1] * re[1] + im[1] * im[1]))
    s_rd = float(coef @ (re[0] * re[1] + im[0] * im[1]))
    return s_rr, s_dd, s_rd


def _gauss_sums(
    r: np.ndarray, p: np.ndarray, x: np.ndarray, sigma: float
) -> tuple[float, float, float]:
    """Gaussian-kernel V-sums ``(S_RR, S_DD, S_RD)``, self-pairs included.

    In 1D the spectral evaluation is used when it is cheaper than the pairwise
    one; both give the same value to rounding.
    """
    n_r, n_d = r.shape[0], x.shape[0]
    if r.shape[1] == 1:
        span = max(r.max(), x.max()) - min(r.min(), x.min())
        n_freq = _SPEC_CUT * (span / sigma + _SPEC_MARGIN) / (2.0 * math.pi) + 2
        pairs = 0.5 * n_r * n_r + n_r * n_d + 0.5 * n_d * n_d
        if 2.0 * n_freq * (n_r + n_d) < pairs:
            return _gauss_sums_spectral(r[:, 0], p, x[:, 0], sigma)
    return _gauss_sums_blocked(r, p, x, sigma)


def _gauss_sums_blocked(
    r: np.ndarray, p: np.ndarray, x: np.ndarray, sigma: float
) -> tuple[float, float, float]:
    """Gaussian-kernel V-sums ``(S_RR, S_DD, S_RD)`` from blocked pairwise sums."""
    n_d = x.shape[0]
    center = r.mean(axis=0)
    rt, xt = _as_tensor(r - center), _as_tensor(x - center)
    pt, qt = _as_tensor(p), torch.full((n_d,), 1.0 / n_d, dtype=torch.float64)
    gamma = 0.5 / sigma**2
    s_rr, s_dd, s_rd = _pair_sums(
        [(rt, pt, None, None), (xt, qt, None, None), (rt, pt, xt, qt)], "gauss", gamma
    )
    return s_rr, s_dd, s_rd


def mmd(
    reference: np.ndarray,
    data: np.ndarray,
    ref_weights: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    sigma: float | None = None,
    max_ref: int = DEFAULT_MAX_REF,
) -> float:
    """Unbiased squared MMD with a Gaussian kernel, times ``N_D``.

    With ``k(x, y) = exp(-|x - y|^2 / 2 sigma^2)``, reference weights ``p_i``
    (normalised to one) and data weights ``1 / N_D``::

        MMD^2_u = sum_{i != j} p_i p_j k(r_i, r_j) / (1 - sum_i p_i^2)
                + sum_{k != l} k(x_k, x_l) / (N_D (N_D - 1))
                - 2 sum_{i, k} p_i k(r_i, x_k) / N_D

    i.e. the within-sample terms are unbiased (U-statistics, self-pairs
    excluded; for uniform weights the usual ``1 / n (n - 1)``) and the cross
    term is the plain mean. It can be slightly negative under the null.

    The reference is used whole if ``N_R <= max_ref``, otherwise through a
    subsample of ``max_ref`` events drawn with ``rng`` (with replacement,
    proportional to the weights, when weighted -- repeated events then count
    as distinct pairs; without replacement when unweighted). The sums run in
    float64 with torch, in blocks of 2 MiB shared among
    ``torch.get_num_threads()`` worker threads. In 1D they are evaluated instead
    through the empirical characteristic functions (exact to rounding, linear
    cost), so there ``max_ref`` can be raised to ``N_R`` cheaply.

    Parameters
    ----------
    reference : numpy.ndarray
        ``(N_R, d)`` reference events.
    data : numpy.ndarray
        ``(N_D, d)`` data events, ``N_D >= 2``.
    ref_weights : numpy.ndarray, optional
        Positive per-event reference weights (``None``: uniform).
    rng : numpy.random.Generator, optional
        Source of the subsamples (``None``: ``default_rng(0)``).
    sigma : float, optional
        Kernel width. Default: the median pairwise Euclidean distance (zero
        distances left out) of up to 2000 reference events drawn with ``rng``
        (after the ``max_ref`` subsample, with the same rule).
    max_ref : int
        Largest number of reference events used.

    Returns
    -------
    float
        ``N_D * MMD^2_u``.
    """
    ref, dat, p = _check_inputs(reference, data, ref_weights)
    rng = _check_rng(rng)
    max_ref = _check_int(max_ref, "max_ref", 2)
    n_d = dat.shape[0]
    if n_d < 2:
        raise InputError("mmd: data must have at least 2 events (unbiased within-sample term)")
    if ref.shape[0] < 2:
        raise InputError("mmd: reference must have at least 2 events")
    if sigma is not None:
        try:
            sigma = float(sigma)
        except (TypeError, ValueError) as exc:
            raise InputError(f"mmd: sigma must be a positive number, got {sigma!r}") from exc
        if not (math.isfinite(sigma) and sigma > 0):
            raise InputError(f"mmd: sigma must be a positive finite number, got {sigma}")
    weighted = ref_weights is not None
    ref, p = _subsample(ref, p, max_ref, rng, weighted)
    if sigma is None:
        sigma = _median_distance(ref, p, rng, weighted)
    s_rr, s_dd, s_rd = _gauss_sums(ref, p, dat, sigma)
    sum_p2 = float(np.dot(p, p))
    u_rr = (s_rr - sum_p2) / (1.0 - sum_p2)
    u_dd = (s_dd - 1.0 / n_d) / (1.0 - 1.0 / n_d)
    return float(n_d * (u_rr + u_dd - 2.0 * s_rd))


# -------------------------------------------------------------------- chi2


def binned_chi2(
    reference: np.ndarray,
    data: np.ndarray,
    ref_weights: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    bins: int = 30,
) -> float:
    """Pearson chi-square of the data in bins of equal reference weight (1D).

    The inner bin edges are the weighted reference quantiles at levels
    ``k / bins`` (``k = 1 .. bins - 1``; the smallest reference value whose
    weighted CDF reaches the level), the outermost bins extend to
    ``-inf``/``+inf`` and the bins are closed on the right. Repeated edges
    (ties in the reference) are merged, so fewer than ``bins`` bins may
    remain; every bin has positive expected content. With ``o_k`` the data
    counts and ``e_k`` the expected counts, ``chi2 = sum_k (o_k - e_k)^2 / e_k``.

    Parameters
    ----------
    reference : numpy.ndarray
        ``(N_R, 1)`` reference events.
    data : numpy.ndarray
        ``(N_D, 1)`` data events.
    ref_weights : numpy.ndarray, optional
        Reference weights. When given, ``e_k`` is the sum of the weights in
        bin ``k`` as they are (in nplearn's convention they sum to the expected
        yield ``N(R)``), so the statistic also tests the normalisation. ``None``
        means a shape-only comparison: every reference event weighs
        ``N_D / N_R``, so the ``e_k`` sum to ``N_D``.
    rng : numpy.random.Generator, optional
        Unused; accepted for the common signature.
    bins : int
        Requested number of bins (at least 1).

    Returns
    -------
    float
        The Pearson chi-square.
    """
    ref, dat, _ = _check_inputs(reference, data, ref_weights)
    _check_rng(rng)
    bins = _check_int(bins, "bins", 1)
    if ref.shape[1] != 1:
        raise InputError(
            f"binned_chi2 is one-dimensional: reference and data have {ref.shape[1]} features"
        )
    r, x = ref[:, 0], dat[:, 0]
    if ref_weights is None:
        w = np.full(r.shape[0], x.shape[0] / r.shape[0])
    else:
        w = np.asarray(ref_weights, dtype=np.float64)
    order = np.argsort(r)
    r_sorted = r[order]
    cum = np.cumsum(w[order])
    levels = cum[-1] * np.arange(1, bins) / bins
    edges = np.unique(r_sorted[np.searchsorted(cum, levels, side="left").clip(0, r.size - 1)])
    edges = edges[edges < r_sorted[-1]]
    n_bins = edges.size + 1
    expected = np.bincount(np.searchsorted(edges, r, side="left"), weights=w, minlength=n_bins)
    observed = np.bincount(np.searchsorted(edges, x, side="left"), minlength=n_bins)
    return float(np.sum((observed - expected) ** 2 / expected))


# ----------------------------------------------------------------- network


def nplm_network(
    reference: np.ndarray,
    data: np.ndarray,
    ref_weights: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    hidden: tuple[int, ...] | None = None,
    weight_clip: float | None = None,
    n_init: int = 1,
) -> float:
    """The NPLM statistic ``t`` of the original NPLM learner, the neural network.

    The events are standardised with the reference (as :func:`nplearn.nplm_test`
    does), and a :class:`~nplearn.NeuralNetworkLearner` with its defaults (1-4-1 in
    1D, ``d``-``d``-``d``-``d``-1 otherwise, sigmoid, the published weight clip,
    L-BFGS-B to a vanishing projected gradient) is trained on them. Comparing it with
    the kernel widths on the same toys gives a paired comparison of the two learners.
    About a second or more per toy at the 1D benchmark's sizes (N_R = 2e5), so it is
    not among the default comparison tests. Unlike the other tests it runs on one
    thread (the network's own setting).

    Parameters
    ----------
    reference, data : numpy.ndarray
        ``(N_R, d)`` and ``(N_D, d)`` events.
    ref_weights : numpy.ndarray, optional
        Reference weights as they are, summing to the expected yield ``N(R)`` (the
        statistic tests the normalisation too). ``None`` means shape-only: every
        reference event weighs ``N_D / N_R``.
    rng : numpy.random.Generator, optional
        The initial weights come from a child of the seed sequence of its bit
        generator (drawn without advancing ``rng``, so the comparison tests that share
        it give the same values with or without this one); from one draw of ``rng``
        when it has no seed sequence.
    hidden, weight_clip, n_init
        :class:`~nplearn.NeuralNetworkLearner` options (default: the learner's; the
        clip is the published one in 1D and 5D, and the 5D value in other dimensions).

    Returns
    -------
    float
        ``t`` of the trained network.

    Raises
    ------
    FloatingPointError
        If the network diverged on every start (a toy of a power study is then
        reported as failed and not counted, as a failed fit of the kernel).
    """
    from .learners.neural import NeuralNetworkLearner
    from .preprocess import Standardizer
    from .toys import nplm_fit

    ref, dat, _ = _check_inputs(reference, data, ref_weights)
    rng = _check_rng(rng)
    # the weights exactly as given: the network's end point moves with the rounding of
    # its inputs (see the README), so a renormalised copy would give another t
    w = (np.full(ref.shape[0], dat.shape[0] / ref.shape[0]) if ref_weights is None
         else np.asarray(ref_weights, dtype=np.float64))
    # standardised as nplm_test does: unweighted moments when the weights are equal
    std = Standardizer.fit(ref, None if np.ptp(w) <= 1e-12 * w.max() else w)
    learner = NeuralNetworkLearner(hidden=hidden, weight_clip=weight_clip, n_init=n_init)
    t, *_ = nplm_fit(std.transform(ref), std.transform(dat), w, learner, _network_seed(rng))
    return float(t)


#: Spawn key of the network's initial weights under the comparison tests' seed sequence.
_NETWORK_STREAM = 0x4E4E


def _network_seed(rng: np.random.Generator) -> np.random.SeedSequence:
    """The seed of :func:`nplm_network`'s initial weights: a fixed child of ``rng``'s
    seed sequence, without drawing from ``rng``."""
    ss = getattr(rng.bit_generator, "seed_seq", None)
    if isinstance(ss, np.random.SeedSequence):
        return np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, _NETWORK_STREAM),
                                      pool_size=ss.pool_size)
    return np.random.SeedSequence(int(rng.integers(2**63)))


# ------------------------------------------------------------------ registry

#: The baseline statistics by name; all share the signature
#: ``f(reference, data, ref_weights, rng) -> float``.
BASELINES: dict[str, Callable[..., float]] = {
    "ks_bonferroni": ks_bonferroni,
    "energy": energy_distance,
    "mmd": mmd,
    "binned_chi2": binned_chi2,
    "nplm_network": nplm_network,
}

#: Comparison tests run only when asked for (their cost is that of a fit).
OPT_IN_BASELINES = ("nplm_network",)


def available_baselines(d: int) -> list[str]:
    """Names in :data:`BASELINES` that apply to ``d`` features.

    ``binned_chi2`` is one-dimensional and is listed only for ``d == 1``; the tests
    of :data:`OPT_IN_BASELINES` (``nplm_network``) are never listed: they must be
    asked for by name.
    """
    d = _check_int(d, "d (number of features)", 1)
    return [name for name in BASELINES
            if (name != "binned_chi2" or d == 1) and name not in OPT_IN_BASELINES]
