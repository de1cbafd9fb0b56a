"""The null toys' envelope of the learned ``f``: where ``f`` falls under the reference
hypothesis, point by point.

Every null toy evaluates its fitted ``f`` on one fixed set of reference points (the
*probe*), chosen from the reference alone, so that the observed ``f`` can be set
against the spread of ``f`` that pure fluctuations produce at the same place:

* one feature: ``f`` itself on a grid of points spanning the reference (evenly spaced
  both in events and in ``x``);
* several features: for each feature, the learned density ratio projected on it,
  ``log(sum w e^f / sum w)`` over a fixed subsample of reference events in each of
  :data:`N_BINS` bins of that feature (what the per-feature figure draws as the
  model's ratio).

The band is pointwise: at any one point the observed ``f`` leaves the 95% band in 5%
of null experiments, and over many points somewhere almost always. It shows where
``f`` departs from what the reference's fluctuations give, not whether the data do
(that is ``t``'s calibrated p-value).
"""

from __future__ import annotations

import base64
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ENVELOPE_QUANTILES", "FProbe", "decode_values", "encode_values", "envelope",
           "make_probe", "probe_values"]

#: Points of the one-dimensional probe evenly spaced in reference events (quantiles)
#: and in ``x``.
N_QUANTILE_POINTS = 64
N_GRID_POINTS = 48

#: Bins per feature, and reference events of the subsample, of a probe in several
#: features.
N_BINS = 40
N_SUBSAMPLE = 5000


#: Quantiles of the null toys' values stored in the result: 95% and 68% central
#: bands and the median.
ENVELOPE_QUANTILES = (0.025, 0.16, 0.5, 0.84, 0.975)

#: Fewer successful toys with probed values than this give no envelope (with 40, the
#: 2.5% and 97.5% quantiles lie between the two most extreme toys on either side).
MIN_TOYS = 40

#: Fixed stream of the subsample, whatever the run's seed (as the percentile widths'
#: subsample): results of several seeds or data blocks share one probe.
_PROBE_KEY = 8


@dataclass(frozen=True)
class FProbe:
    """Where each toy evaluates its ``f`` (standardised units).

    Attributes
    ----------
    points : numpy.ndarray, shape (P, d)
        The probe points.
    weights : numpy.ndarray, shape (P,), optional
        Relative reference weights of the points (several features; None: equal).
    bins : numpy.ndarray, shape (P, d), optional
        Several features: the bin of each point in each feature (-1 outside the
        edges); None for the one-dimensional grid, whose values are ``f`` itself.
    edges : numpy.ndarray, shape (d, N_BINS + 1), optional
        The bin edges of each feature.
    """

    points: np.ndarray
    weights: np.ndarray | None = None
    bins: np.ndarray | None = None
    edges: np.ndarray | None = None

    @property
    def n_values(self) -> int:
        """Values per width: points (one feature) or features x bins."""
        if self.bins is None:
            return int(self.points.shape[0])
        return int(self.edges.shape[0] * (self.edges.shape[1] - 1))  # type: ignore[union-attr]

    def arrays(self) -> tuple[np.ndarray | None, ...]:
        """The arrays that define the probe (for fingerprints)."""
        return self.points, self.weights, self.bins, self.edges


def make_probe(reference: np.ndarray, rel: np.ndarray | None = None) -> FProbe:
    """The probe of a test, from its standardised reference events only.

    Parameters
    ----------
    reference : numpy.ndarray, shape (N_R, d)
        Standardised reference events.
    rel : numpy.ndarray, optional
        Their relative weights (events of zero weight are never chosen).

    Returns
    -------
    FProbe
        One feature: a grid of points; several: a subsample with its bins.
    """
    ref = np.asarray(reference, dtype=np.float64)
    keep = slice(None) if rel is None else np.asarray(rel) > 0
    x = ref[keep]
    if ref.shape[1] == 1:
        v = np.sort(x[:, 0])
        q = np.quantile(v, np.linspace(0.0, 1.0, N_QUANTILE_POINTS))
        g = np.linspace(v[0], v[-1], N_GRID_POINTS)
        return FProbe(points=np.unique(np.r_[q, g])[:, None])
    rng = np.random.default_rng(np.random.SeedSequence(0, spawn_key=(_PROBE_KEY,)))
    n = x.shape[0]
    take = np.sort(rng.choice(n, size=min(n, N_SUBSAMPLE), replace=False))
    pts = x[take]
    w = None if rel is None else np.asarray(rel, dtype=np.float64)[keep][take]
    lo, hi = np.quantile(x, [0.001, 0.999], axis=0)  # as the figures' axis ranges
    hi = np.where(hi > lo, hi, lo + 1.0)
    edges = np.linspace(lo, hi, N_BINS + 1).T  # (d, N_BINS + 1)
    bins = np.empty(pts.shape, dtype=np.int64)
    for j in range(pts.shape[1]):
        b = np.searchsorted(edges[j], pts[:, j], side="right") - 1
        b[pts[:, j] == edges[j, -1]] = N_BINS - 1  # the last edge closes the last bin
        bins[:, j] = np.where((b >= 0) & (b < N_BINS), b, -1)
    return FProbe(points=pts, weights=w, bins=bins, edges=edges)


def probe_values(probe: FProbe, learner: Any) -> np.ndarray:
    """The probed values of one fitted learner.

    Parameters
    ----------
    probe : FProbe
        Where to evaluate.
    learner : object
        A fitted learner with ``decision_function`` on standardised events.

    Returns
    -------
    numpy.ndarray, shape (probe.n_values,)
        ``f`` at the points (one feature), or per feature and bin the projection
        ``log(sum w e^f / sum w)`` (several), NaN for a bin holding no probe event.
    """
    f = np.asarray(learner.decision_function(probe.points), dtype=np.float64)
    if probe.bins is None:
        return f
    w = np.ones(f.size) if probe.weights is None else probe.weights
    out = np.full(probe.bins.shape[1] * N_BINS, np.nan)
    for j in range(probe.bins.shape[1]):
        inside = probe.bins[:, j] >= 0
        b, fj = probe.bins[inside, j], f[inside]
        # e^f relative to the largest f of its bin: no sum overflows or underflows
        top = np.full(N_BINS, -np.inf)
        np.maximum.at(top, b, fj)
        num = np.bincount(b, w[inside] * np.exp(fj - top[b]), minlength=N_BINS)
        den = np.bincount(b, w[inside], minlength=N_BINS)
        filled = den > 0
        out[j * N_BINS:(j + 1) * N_BINS][filled] = (np.log(num[filled] / den[filled])
                                                    + top[filled])
    return out


def encode_values(values: list[np.ndarray]) -> str:
    """One toy's probed values of every width as text for its record.

    Parameters
    ----------
    values : list of numpy.ndarray
        :func:`probe_values` of each width.

    Returns
    -------
    str
        Base64 of the little-endian float32 array ``(widths, values)``: 4 bytes a value
        instead of about 20 as JSON numbers (float32's relative precision, 6e-8, is far
        below the band's spread).
    """
    a = np.ascontiguousarray(np.asarray(values, dtype="<f4"))
    return base64.b64encode(a.tobytes()).decode("ascii")


def decode_values(text: str, n_widths: int) -> np.ndarray:
    """:func:`encode_values` undone.

    Parameters
    ----------
    text : str
        A record's ``f_probe``.
    n_widths : int
        The widths it holds.

    Returns
    -------
    numpy.ndarray, shape (n_widths, n_values)
        float64.
    """
    a = np.frombuffer(base64.b64decode(text.encode("ascii")), dtype="<f4")
    return a.astype(np.float64).reshape(max(1, int(n_widths)), -1)


def envelope(probe: FProbe, values: np.ndarray, mean: np.ndarray, scale: np.ndarray,
             observed: np.ndarray | None = None) -> dict[str, Any] | None:
    """The JSON block of the envelope.

    Parameters
    ----------
    probe : FProbe
        The probe the toys used.
    values : numpy.ndarray, shape (n_toys, n_widths, n_values)
        The toys' probed values.
    mean, scale : numpy.ndarray
        The standardisation (input = standardised * scale + mean).
    observed : numpy.ndarray, shape (n_widths, n_values), optional
        The observed fit's values at the same probe (``observed`` in the result: the
        projection the figure sets against the band is computed as the toys' is).

    Returns
    -------
    dict or None
        ``kind`` (``"f"``: one feature, ``x`` the points; ``"projection"``: several,
        ``edges`` per feature, and ``counts``, the probe events in each bin),
        ``quantiles``, ``values[width][quantile][...]`` (for a projection,
        ``[feature][bin]``, NaN for a bin without probe events), ``observed[width][...]``
        and ``n_toys``; None with fewer than :data:`MIN_TOYS` toys.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or values.shape[0] < MIN_TOYS:
        return None
    with warnings.catch_warnings():  # bins holding no probe point: NaN, on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        qs = np.nanquantile(values, ENVELOPE_QUANTILES, axis=0)  # (nq, nw, nv)
    qs = np.round(qs, 6).transpose(1, 0, 2)  # (nw, nq, nv)
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), (probe.points.shape[1],))
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (probe.points.shape[1],))
    out: dict[str, Any] = {"quantiles": list(ENVELOPE_QUANTILES),
                           "n_toys": int(values.shape[0])}
    obs = None if observed is None else np.round(np.asarray(observed, dtype=np.float64), 6)
    if probe.bins is None:
        out["kind"] = "f"
        out["x"] = (probe.points[:, 0] * scale[0] + mean[0]).tolist()
        out["values"] = qs.tolist()
        out["observed"] = None if obs is None else obs.tolist()
    else:
        d = probe.edges.shape[0]  # type: ignore[union-attr]
        out["kind"] = "projection"
        out["edges"] = (probe.edges * scale[:, None] + mean[:, None]).tolist()  # type: ignore[operator]
        out["values"] = qs.reshape(qs.shape[0], qs.shape[1], d, N_BINS).tolist()
        out["observed"] = None if obs is None else obs.reshape(-1, d, N_BINS).tolist()
        out["n_subsample"] = int(probe.points.shape[0])
        # probe events per bin: the projection of a bin holding few is noisy
        out["counts"] = [np.bincount(probe.bins[probe.bins[:, j] >= 0, j],  # type: ignore[index]
                                     minlength=N_BINS).tolist() for j in range(d)]
    return out
