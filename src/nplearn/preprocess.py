"""Preprocessing and hyperparameter choices made from the reference sample only.

Nothing here ever looks at the data sample: the standardisation, the kernel width
and the number of centres are functions of the reference (and of sample sizes),
so they cannot be tuned, even implicitly, on the signal one is looking for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = ["Standardizer", "pairwise_distance_percentile", "sigma_from_percentile"]


def _moments(x: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (weighted) mean and standard deviation."""
    if weights is None:
        return x.mean(axis=0), np.sqrt(x.var(axis=0))
    w = weights / weights.sum()
    mean = w @ x
    return mean, np.sqrt(w @ (x - mean) ** 2)


@dataclass(frozen=True)
class Standardizer:
    """Per-feature affine map ``(x - mean) / scale`` fitted on the reference.

    Attributes
    ----------
    mean, scale : numpy.ndarray
        Per-feature location and scale (the weighted mean and standard deviation
        of the reference).
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, reference: np.ndarray, weights: np.ndarray | None = None) -> Standardizer:
        """Fit on reference events (optionally weighted).

        Raises
        ------
        InputError
            If a feature is constant in the reference (zero variance): it carries
            no information and would divide by zero.
        """
        if weights is not None:
            # events of weight zero do not count, also not their values (a sentinel
            # such as -1e13 or FLT_MAX would make every other value look constant)
            keep = np.asarray(weights) > 0
            reference, weights = reference[keep], np.asarray(weights)[keep]
        size = np.abs(reference).max(axis=0)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            mean, scale = _moments(reference, weights)
            odd = ~np.isfinite(scale) | ((scale == 0) & (size > 0))
            if odd.any():
                # extreme magnitudes (|x| ~ 1e300 overflows the variance, ~1e-300
                # underflows it): the moments of x / max|x|, then scaled back
                unit = np.where(size > 0, size, 1.0)
                m_s, s_s = _moments(reference / unit, weights)
                mean = np.where(odd, m_s * unit, mean)
                scale = np.where(odd, s_s * unit, scale)
        if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
            cols = ", ".join(str(i) for i in np.flatnonzero(~(np.isfinite(mean)
                                                              & np.isfinite(scale)))[:10])
            raise InputError(
                f"reference feature(s) {cols} have values so large that their variance "
                "overflows float64 (|x| above ~1e150): rescale them (e.g. change units)"
            )
        # constant relative to the feature's own magnitude (tiny units are fine)
        tiny = (scale == 0) | (scale <= 1e-12 * size)
        if tiny.any():
            cols = ", ".join(str(i) for i in np.flatnonzero(tiny)[:10])
            raise InputError(
                f"reference feature(s) {cols} are constant (zero variance): remove them "
                "or disable standardisation"
            )
        return cls(mean=mean, scale=scale)

    @classmethod
    def identity(cls, n_features: int) -> Standardizer:
        """The identity map (no standardisation)."""
        return cls(mean=np.zeros(n_features), scale=np.ones(n_features))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Apply the map."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.mean.shape[0]:
            raise InputError(f"the standardisation maps events of {self.mean.shape[0]} "
                             f"feature(s), got an array of shape {X.shape}")
        return (X - self.mean) / self.scale

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-friendly view."""
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}


def pairwise_distance_percentile(
    X: np.ndarray,
    q: float | np.ndarray,
    *,
    weights: np.ndarray | None = None,
    max_points: int = 2000,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Percentile(s) ``q`` (0-100) of the pairwise Euclidean distances of ``X``.

    Computed on a uniform subsample of at most ``max_points`` events (all
    ``max_points (max_points - 1) / 2`` distinct pairs), drawn with ``rng``. With
    ``weights`` (e.g. Monte Carlo event weights) the percentile is that of the
    weighted sample, the reference model: events of weight zero are left out and
    each pair counts with weight ``w_i w_j`` (the smallest distance whose cumulative
    pair weight reaches ``q`` percent). Without them, or with equal weights, it is
    numpy's default (linear) percentile of the unweighted pairs.
    """
    from .io import as_events

    X = as_events(X, "events")
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (X.shape[0],):
            raise InputError(f"weights must have shape ({X.shape[0]},), got {w.shape}")
        keep = w > 0
        X, w = X[keep], w[keep]
        if w.size:
            w = w / w.max()  # pair weights w_i w_j neither under- nor overflow
            if np.ptp(w) <= 1e-12:
                w = None  # equal weights: the unweighted percentile
    n = X.shape[0]
    if n < 2:
        raise InputError("need at least 2 reference events (of non-zero weight) to compute "
                         "pairwise distances")
    if n > max_points:
        gen = rng if rng is not None else np.random.default_rng(0)
        idx = gen.choice(n, size=max_points, replace=False)
        X = X[idx]
        w = None if w is None else w[idx]
    X = X - X.mean(axis=0)  # distances of points far from the origin keep their digits
    sq = (X * X).sum(1)
    D = sq[:, None] + sq[None, :] - 2.0 * X @ X.T
    iu = np.triu_indices(X.shape[0], k=1)
    d = np.sqrt(np.clip(D[iu], 0.0, None))
    if w is None:
        return np.percentile(d, q)
    order = np.argsort(d, kind="stable")
    cum = np.cumsum((w[:, None] * w[None, :])[iu][order])
    cum /= cum[-1]
    k = np.searchsorted(cum, np.asarray(q, dtype=np.float64) / 100.0, side="left")
    return d[order][np.minimum(k, d.size - 1)]


def sigma_from_percentile(
    X: np.ndarray,
    percentile: float = 90.0,
    *,
    weights: np.ndarray | None = None,
    max_points: int = 2000,
    rng: np.random.Generator | None = None,
) -> float:
    """Kernel width: a percentile of reference pairwise distances (default 90th).

    Raises
    ------
    InputError
        If the percentile is outside (0, 100] or the resulting width is zero
        (e.g. all sampled events identical).
    """
    if not 0.0 < percentile <= 100.0:
        raise InputError(f"sigma percentile must be in (0, 100], got {percentile}")
    s = float(pairwise_distance_percentile(X, percentile, weights=weights,
                                           max_points=max_points, rng=rng))
    if not s > 0.0:
        raise InputError(
            f"the {percentile}th percentile of reference pairwise distances is zero: "
            "too many identical events; give --sigma explicitly"
        )
    return s
