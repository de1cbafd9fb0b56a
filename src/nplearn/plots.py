"""Plots of an NPLM result: null distribution, significance per width, learned f.

Every figure is written as PNG and PDF. Needs matplotlib (``pip install
nplearn[plot]``); uses the mplhep CMS style when mplhep is installed, with font sizes
scaled to the figures, and only while drawing them (matplotlib's global style, e.g. in
a notebook, is left as it was).

* ``null_distribution``: histogram of the null ``t`` with the fitted chi-square
  density, the observed ``t`` and the p-value/Z (one panel per width in a
  multi-width run);
* ``z_vs_width``: multi-width runs: local Z per kernel width and every combined Z;
* ``f_1d``: 1D data: the learned log density ratio ``f(x)`` over the data and
  reference histograms, with the null toys' pointwise 68% and 95% bands of ``f``;
* ``features``: nD data: per feature, data and weighted reference histograms with
  their ratio, and the model's ratio ``sum w e^f / sum w`` in each bin (``f``
  projected on the feature) with the null toys' bands of that projection;
* ``f_maps``: nD data: the learned density ratio on each pair of the first four
  features (a localised excess that the one-feature projections dilute).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from .envelope import MIN_TOYS as ENVELOPE_MIN_TOYS
from .errors import InputError, MissingDependencyError
from .stats import CHI2_REPORT_MIN_TOYS

__all__ = ["make_plots"]

#: Events drawn for the f(x) curves (the curve is evaluated on sorted events).
_CURVE_POINTS = 4000


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib", "plot", "plotting") from None
    return plt


#: Sizes for figures of 4-7 inches (the CMS style's are for 10-inch figures).
_SIZES = {"font.size": 11, "axes.labelsize": 13, "axes.titlesize": 11,
          "xtick.labelsize": 11, "ytick.labelsize": 11, "legend.fontsize": 9,
          "xtick.major.size": 6, "ytick.major.size": 6, "xtick.minor.size": 3,
          "ytick.minor.size": 3, "axes.linewidth": 1.2, "lines.linewidth": 1.6,
          "lines.markersize": 4, "legend.frameon": False,
          "pdf.fonttype": 42, "ps.fonttype": 42}  # TrueType in PDFs (journals refuse Type 3)


def _style() -> list[Any]:
    styles: list[Any] = []
    try:
        import mplhep

        cms = mplhep.style.CMS
        styles += list(cms) if isinstance(cms, (list, tuple)) else [cms]
    except Exception:  # mplhep is optional; any failure leaves matplotlib's style
        pass
    return [*styles, _SIZES]


def _styled(fn: Callable[..., list[Path]]) -> Callable[..., list[Path]]:
    """Draw ``fn``'s figure in the nplearn style, restoring the caller's afterwards."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> list[Path]:
        with _pyplot().style.context(_style()):
            return fn(*args, **kwargs)

    return wrapper


def _legend_beside(ax: Any, extra: Sequence[str] = ()) -> None:
    """Legend to the right of ``ax`` (never over the histogram or a line), with
    ``extra`` lines of text below the entries."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    for text in extra:
        handles.append(Line2D([], [], ls="none"))
        labels.append(text)
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0),
              borderaxespad=0.0, handlelength=1.6)


def _num(x: Any) -> float:
    """A result-file number as a float: ``None`` (not computed) and unreadable values
    become NaN; ``"inf"``/``"-inf"``/``"nan"`` (how JSON results store non-finite
    values) are converted."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _save(fig: Any, outdir: Path, name: str) -> list[Path]:
    out = []
    for ext in ("png", "pdf"):
        path = outdir / f"{name}.{ext}"
        tmp = outdir / f".{name}.tmp.{ext}"
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        tmp.replace(path)  # atomic: a crash never leaves half a figure
        out.append(path)
    return out


def _null_panel(ax: Any, t_null: np.ndarray, t_obs: float, cal: dict[str, Any] | None,
                title: str) -> None:
    t_null = np.asarray(t_null, dtype=np.float64)
    t_obs = _num(t_obs)
    t_max = float(t_null.max())
    # toys far below the bulk (large negative t, README "Negative t") would squeeze the
    # others into a few bins: the axis starts near the bulk and a note counts them
    core = min(0.0, float(np.quantile(t_null, 0.01)))
    cut = core - 0.5 * max(t_max - core, 1.0)
    below = t_null < cut
    low_obs = math.isfinite(t_obs) and t_obs < cut
    lo = min(float(t_null[~below].min()) if (~below).any() else core,
             t_obs if math.isfinite(t_obs) and not low_obs else math.inf)
    # the axis starts at 0 unless the toys lie far from it (many dof): then near them
    lo = lo - 0.08 * (t_max - lo) if 0.0 < lo and lo > 0.3 * t_max else min(0.0, lo)
    # a t_obs far beyond the toys (or not finite) would squeeze them into one bin:
    # the axis then covers the toys and an arrow at its right edge points to t_obs
    far = not math.isfinite(t_obs) or t_obs - lo > 3.0 * (t_max - lo)
    top = t_max if far else max(t_max, t_obs)
    hi = top + 0.08 * max(top - lo, 1.0)
    bins = np.linspace(lo, hi, max(10, min(60, t_null.size // 8)))
    ax.hist(t_null, bins=bins, density=True, histtype="stepfilled", alpha=0.35,
            color="tab:blue", label=f"null toys ({t_null.size})")
    dof = _num(cal.get("chi2_dof")) if cal else math.nan
    if math.isfinite(dof) and dof > 0:
        x = np.linspace(max(lo, 1e-6), hi, 400)
        ks = _num(cal.get("chi2_ks_distance"))
        ax.plot(x, sps.chi2.pdf(x, dof), color="tab:blue",
                label=f"χ² fit, dof = {dof:.2f}"
                + (f" (KS distance {ks:.3f})" if math.isfinite(ks) else ""))
    if below.any():
        ax.annotate(f"← {int(below.sum())} toy(s) below the axis,\n   down to "
                    f"{float(t_null.min()):.4g}", xy=(0.01, 0.97), xycoords="axes fraction",
                    ha="left", va="top", color="tab:blue", fontsize=8)
    if low_obs or far:  # off the axis: an arrow at its edge, the value in the legend
        ax.annotate("←" if low_obs else "→", xy=(0.01 if low_obs else 0.99, 0.5),
                    xycoords="axes fraction", ha="left" if low_obs else "right",
                    va="center", color="tab:red", fontsize=16, fontweight="bold")
        ax.plot([], [], ls="none", marker="<" if low_obs else ">", color="tab:red",
                label=f"t_obs = {t_obs:.2f} ({'below' if low_obs else 'beyond'} the axis)")
    else:
        ax.axvline(t_obs, color="tab:red", lw=2, label=f"t_obs = {t_obs:.2f}")
    if cal:
        if cal.get("n_exceed") == 0:
            toys = f"p (toys) ≤ {_num(cal.get('p_empirical')):.3g}, " \
                f"Z ≥ {_num(cal.get('z_empirical')):.2f} (no toy reached t_obs)"
        else:
            toys = f"p (toys) = {_num(cal.get('p_empirical')):.3g}, " \
                f"Z = {_num(cal.get('z_empirical')):.2f}"
        n_toys = cal.get("n_toys")
        used = cal.get("method")
        caveat = (("(reported: the χ² tail, beyond the toys)" if cal.get("n_exceed") == 0
                   else "(reported: the χ² tail)") if used == "chi2" else
                  "(not used: poor χ² fit)" if _num(cal.get("chi2_ks_pvalue")) < 0.01 else
                  f"(not used: < {CHI2_REPORT_MIN_TOYS} toys)"
                  if isinstance(n_toys, int) and n_toys < CHI2_REPORT_MIN_TOYS else
                  # the calibration's own verdict (absent from older result files)
                  f"(not used: {cal['chi2_unused']})"
                  if cal.get("chi2_unused") in ("the toys contradict its tail",
                                                "not below the toys' bound") else
                  "(not used: enough toys reach t_obs)")
        lines = toys.replace(" (no", "\n(no").split("\n")
        if used == "empirical":
            lines[0] += "  ← reported"
        if math.isfinite(dof) and dof > 0:
            lines.append(f"p (χ²) = {_num(cal.get('p_chi2')):.3g}, "
                         f"Z = {_num(cal.get('z_chi2')):.2f}")
            lines.append(caveat)
            if used == "chi2" and math.isfinite(t_obs) and t_max > 0 and t_obs > 2 * t_max:
                lines.append(f"(t_obs is {t_obs / t_max:.3g} × the largest toy)")
    else:
        lines = []
    ax.set_xlabel("t")
    ax.set_ylabel("density")
    ax.set_title(title)
    _legend_beside(ax, lines)


@_styled
def plot_null(res: dict[str, Any], outdir: Path) -> list[Path]:
    """Null-distribution figure(s) of a result dictionary."""
    plt = _pyplot()
    widths = res.get("widths")
    if widths:
        T = np.asarray(res["t_null_widths"], dtype=np.float64)
        n = len(widths)
        cols = min(n, 2)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(6.6 * cols, 3.4 * rows), squeeze=False)
        for k, w in enumerate(widths):
            _null_panel(axes.flat[k], T[:, k], w["t_obs"], w["calibration"],
                        f"σ = {w['sigma']:.3g}")
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
    else:
        fig, ax = plt.subplots(figsize=(7.2, 3.8))
        cal = res.get("calibration") or {}
        bound = res.get("p_is_bound", res.get("z_method") == "empirical"
                        and cal.get("n_exceed") == 0)
        _null_panel(ax, np.asarray(res["t_null"]), res["t_obs"], res["calibration"],
                    f"{_learner_label(res['hyperparameters'])}; reported Z "
                    f"{'≥' if bound else '='} {_num(res.get('z')):.2f} "
                    f"({res.get('z_method', '?')})")
    fig.tight_layout()
    paths = _save(fig, outdir, "null_distribution")
    plt.close(fig)
    return paths


@_styled
def plot_widths(res: dict[str, Any], outdir: Path) -> list[Path]:
    """Local Z per kernel width and the combined Z of a multi-width result."""
    from .multitest import COMBINATIONS

    plt = _pyplot()
    widths = res["widths"]
    s = np.array([w["sigma"] for w in widths])
    z = np.array([_num(w["calibration"]["z_empirical"]) for w in widths])
    # each width's reported local Z: the toys', or the chi-square extrapolation beyond
    # them, which still tells the widths apart when no toy reaches t_obs at any of them
    z_rep = np.array([_num(w["calibration"].get("z")) for w in widths])
    extrap = np.array([w["calibration"].get("method") == "chi2" for w in widths])
    bound = np.array([w["calibration"]["n_exceed"] == 0 for w in widths])
    # Z = -inf (p = 1: every toy at or above t_obs) is drawn at the axis floor
    low = np.isneginf(z)
    shown = np.r_[z, z_rep[extrap]]
    finite = shown[np.isfinite(shown)]
    floor = (min(float(finite.min()), 0.0) if finite.size else 0.0) - 0.5
    z_draw = np.where(low, floor, z)
    fig, ax = plt.subplots(figsize=(7.6, 3.8))
    n_toys = max((int(w["calibration"].get("n_toys") or 0) for w in widths), default=0)
    if n_toys:  # what the toys can resolve: p >= 1/(n + 1)
        ceiling = _num(_z_of(1.0 / (n_toys + 1)))
        ax.axhspan(ceiling, max(ceiling, float(finite.max()) if finite.size else ceiling)
                   + 1.0, color="0.92", zorder=0,
                   label=f"beyond {n_toys} toys (Z > {ceiling:.2f})")
    ax.plot(s[~bound & ~low], z_draw[~bound & ~low], "o", color="tab:blue", ms=7,
            label="local Z (toys)")
    if bound.any():
        ax.plot(s[bound], z_draw[bound], "^", color="tab:blue", ms=9,
                label="local Z ≥ (no toy reached t_obs)")
    if extrap.any():
        ax.plot(s[extrap], z_rep[extrap], "o", mfc="none", color="tab:purple", ms=9,
                label="local Z, χ² extrapolation (reported)")
    if low.any():
        ax.plot(s[low], z_draw[low], "v", color="tab:gray", ms=9,
                label="Z = −∞ (p = 1), drawn at the floor")
    styles = ["--", ":", "-.", (0, (5, 1))]
    combos = res.get("combinations") or {}
    chosen = (res.get("config") or {}).get("combine")
    # the reported combination first, the others in a fixed order; equal values share a
    # line (they would hide each other)
    order = sorted(combos, key=lambda m: (m != chosen, COMBINATIONS.index(m)
                                          if m in COMBINATIONS else len(COMBINATIONS)))
    drawn: dict[float, list[str]] = {}
    for m in order:
        drawn.setdefault(round(_num(combos[m]["z"]), 2), []).append(m)
    for k, (zc, names) in enumerate(drawn.items()):
        bound_c = all(combos[m]["n_exceed"] == 0 for m in names)
        ax.axhline(zc, ls=styles[k % len(styles)], color=f"C{k + 1}",
                   lw=2.4 if chosen in names else 1.4,
                   label=", ".join(names) + f": Z {'≥' if bound_c else '='} {zc:.2f}"
                   + (" (reported)" if chosen in names else ""))
    ax.set_xscale("log")
    # the widths themselves as ticks, written plainly (not 2 x 10^0)
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.xaxis.set_major_locator(FixedLocator(s))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticklabels([f"{v:.3g}" for v in s])
    if s.size > 1:
        ax.set_xlim(s.min() / 1.25, s.max() * 1.25)
    top = max([float(finite.max()) if finite.size else 0.0, *drawn]) if drawn else (
        float(finite.max()) if finite.size else 1.0)
    ax.set_ylim(min(0.0, floor + 0.3), top + 0.15 * max(top - min(0.0, floor), 1.0))
    ax.set_xlabel("kernel width σ" + _units_note(res))
    ax.set_ylabel("Z")
    _legend_beside(ax)
    fig.tight_layout()
    paths = _save(fig, outdir, "z_vs_width")
    plt.close(fig)
    return paths


def _z_of(p: float) -> float:
    return float(sps.norm.isf(p))


def _units_note(res: dict[str, Any]) -> str:
    """`` (standardised)`` when the widths are in units of the reference's standard
    deviations."""
    return " (standardised)" if (res.get("config") or {}).get("standardize", True) else ""


def _weighted_hist(x: np.ndarray, bins: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    return np.histogram(x, bins=bins, weights=w)[0]


#: Bins whose reference expects fewer events than this are drawn hollow and grey, and
#: do not set the range of a ratio panel: their ratios are mostly noise.
_FEW_EXPECTED = 2.0


def _reference_band(ax: Any, x: np.ndarray, bins: np.ndarray, w: np.ndarray,
                    h: np.ndarray) -> np.ndarray:
    """Shade the reference histogram ``h`` by its Monte Carlo statistical error
    ``sqrt(sum w^2)`` per bin; returns the relative error (0 in empty bins)."""
    err = np.sqrt(_weighted_hist(x, bins, np.asarray(w) ** 2))
    ax.stairs(h + err, bins, baseline=np.maximum(h - err, 0.0), fill=True,
              color="tab:blue", alpha=0.2, lw=0, label="reference MC stat. (√Σw²)")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(h > 0, err / h, 0.0)


def _axis_range(x_r: np.ndarray, x_d: np.ndarray) -> tuple[float, float]:
    """Range of a feature's axis: the reference's 0.1-99.9% quantiles (a few outliers
    do not squeeze the rest), widened to every data event."""
    lo, hi = np.quantile(x_r, [0.001, 0.999])
    if x_d.size:
        lo, hi = min(lo, x_d.min()), max(hi, x_d.max())
    return float(lo), float(hi)


def _poisson_band(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central 68% (Garwood) interval of Poisson counts ``n``: (lower, upper) error
    lengths (the lower one of a count of 0 is 0)."""
    n = np.asarray(n, dtype=np.float64)
    a = sps.norm.cdf(-1.0)  # 0.1587: a central 68.27% interval
    lo = np.where(n > 0, sps.chi2.ppf(a, 2 * n) / 2, 0.0)
    hi = sps.chi2.ppf(1.0 - a, 2 * n + 2) / 2
    return n - lo, hi - n


#: Colours of the null toys' 95% and 68% bands of f.
_BAND_COLOURS = ("#dcdcdc", "#b4b4b4")


def _envelope_of(result: dict[str, Any], width: int | None) -> dict[str, Any] | None:
    """The null envelope of the width drawn (``values[quantile][...]``), or None."""
    env = result.get("f_envelope")
    if not isinstance(env, dict) or not env.get("values"):
        return None
    k = 0 if width is None else int(width)
    if not 0 <= k < len(env["values"]):
        return None
    q = [float(v) for v in env.get("quantiles", ())]
    if len(q) != 5 or q[2] != 0.5:
        return None
    obs = env.get("observed")
    return {**env, "values": np.asarray(env["values"][k], dtype=np.float64),
            "observed": (np.asarray(obs[k], dtype=np.float64)
                         if isinstance(obs, list) and k < len(obs) else None)}


#: Bins of a projected envelope holding fewer probe events than this are not drawn.
_FEW_PROBE_EVENTS = 10


def _bands(env: dict[str, Any]) -> list[tuple[int, int, str, str]]:
    """The bands to draw: ``(lower quantile index, upper, colour, label)``, widest
    first."""
    q, what = env["quantiles"], "f" if env.get("kind") == "f" else "the model"
    return [(0, 4, _BAND_COLOURS[0],
             f"null toys: {100 * (q[4] - q[0]):.0f}% of {what} ({env['n_toys']} toys)"),
            (1, 3, _BAND_COLOURS[1], f"null toys: {100 * (q[3] - q[1]):.0f}% of {what}")]


@_styled
def plot_f_1d(reference: np.ndarray, w_ref: np.ndarray, data: np.ndarray, f_ref: np.ndarray,
              outdir: Path, name: str = "x", label: str = "learned f(x)",
              envelope: dict[str, Any] | None = None,
              band_note: str | None = None) -> list[Path]:
    """Learned ``f(x)`` over the data and weighted reference histograms (1D), with the
    binned log ratio of data to reference and its Poisson errors, and the null toys'
    pointwise bands of ``f`` (``envelope``: :func:`_envelope_of`; ``band_note``: why
    there is none, in the legend)."""
    plt = _pyplot()
    x_r, x_d = reference[:, 0], data[:, 0]
    lo, hi = np.quantile(np.concatenate([x_r, x_d]), [0.0, 1.0])
    bins = np.linspace(lo, hi, 60)
    h_r = _weighted_hist(x_r, bins, w_ref)
    h_d = _weighted_hist(x_d, bins, None)
    centers = 0.5 * (bins[1:] + bins[:-1])
    fig, (ax, axf) = plt.subplots(2, 1, figsize=(6.4, 6.4), sharex=True,
                                  gridspec_kw={"height_ratios": [2, 1.5]})
    ax.stairs(h_r, bins, color="tab:blue",
              label="reference (weighted)" if np.ptp(w_ref) > 1e-12 * w_ref.max()
              else "reference")
    rel_r = _reference_band(ax, x_r, bins, w_ref, h_r)
    has = h_d > 0
    lo_e, hi_e = _poisson_band(h_d)
    ax.errorbar(centers[has], h_d[has], yerr=[lo_e[has], hi_e[has]], fmt="o",
                ms=3, color="k", label="data (68% Poisson intervals)")
    ax.set_yscale("log")
    # the axis ends below the smallest reference bin (an MC error band of 100% would
    # reach down to 0)
    positive = h_r[h_r > 0]
    if positive.size:
        ax.set_ylim(bottom=0.3 * float(positive.min()))
    ax.set_ylabel(f"events / bin ({bins[1] - bins[0]:.3g})")
    ax.legend(loc="upper right")
    idx = np.argsort(x_r)
    xs = x_r[idx]
    step = max(1, idx.size // _CURVE_POINTS)
    # points evenly spaced in events (the bulk) and in x (the sparse tail, up to the
    # last event), so the curve is drawn where the events are few too
    grid = np.searchsorted(xs, np.linspace(xs[0], xs[-1], _CURVE_POINTS // 4))
    sel = idx[np.union1d(np.arange(0, idx.size, step), np.r_[grid, idx.size - 1])
              .clip(max=idx.size - 1)]
    xc, fc = x_r[sel], f_ref[sel]
    if envelope is not None and envelope.get("kind") == "f":
        xe, qv = np.asarray(envelope["x"], dtype=np.float64), envelope["values"]
        for a, b, colour, lab in _bands(envelope):
            axf.fill_between(xe, qv[a], qv[b], color=colour, lw=0, label=lab)
    inside = ((xc >= x_d.min()) & (xc <= x_d.max()) if x_d.size
              else np.zeros(xc.shape, dtype=bool))
    axf.plot(np.where(inside, xc, np.nan), fc, color="tab:red", label=label)
    if (~inside).any():  # beyond the last data event only reference events shape f
        axf.plot(np.where(~inside, xc, np.nan), fc, color="tab:red", ls=":",
                 label="f beyond the data")
    few = h_r < _FEW_EXPECTED
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(h_d / h_r)
        up = np.log((h_d + hi_e) / h_r) - ratio
        down = ratio - np.log(np.maximum(h_d - lo_e, 1e-300) / h_r)
        # an empty bin: the upper end of the central interval, a one-sided 84% upper
        # limit of its ratio (the count 0 would be -inf)
        limit = np.log(hi_e / h_r)
    ok = np.isfinite(ratio) & (h_r > 0)
    down = np.where(np.isfinite(down), down, 0.0)
    for sel_b, style, lab in ((ok & ~few, {"color": "k"}, "log(data / reference)"),
                              (ok & few, {"color": "0.6", "mfc": "none"},
                               f"bins expecting < {_FEW_EXPECTED:g} events")):
        if sel_b.any():
            axf.errorbar(centers[sel_b], ratio[sel_b], yerr=[down[sel_b], up[sel_b]],
                         fmt="o", ms=3, label=lab, **style)
    empty = (h_d == 0) & (h_r >= _FEW_EXPECTED)
    if empty.any():
        axf.plot(centers[empty], limit[empty], "v", color="k", ms=4,
                 label="empty bin: 84% upper limit")
    axf.axhline(0.0, color="gray", lw=0.8)
    band = np.where(few, np.nan, np.minimum(rel_r, 0.99))  # where the data are drawn
    axf.stairs(np.log1p(band), bins, baseline=np.log1p(-band), fill=True, color="tab:blue",
               alpha=0.15, lw=0)
    # the range follows the well-populated bins and f where the data have events (an
    # excess always has some; a deep dip of an over-flexible fit into a gap of the data
    # has none, and would flatten everything else); f beyond the range is marked
    in_bin = np.clip(np.searchsorted(bins, xc, side="right") - 1, 0, h_d.size - 1)
    f_fin = fc[np.isfinite(fc) & (h_d[in_bin] > 0)]
    core = np.r_[[f_fin.min(), f_fin.max()] if f_fin.size else [],
                 ratio[ok & ~few] - down[ok & ~few], ratio[ok & ~few] + up[ok & ~few],
                 limit[empty]]
    core = core[np.isfinite(core)]
    if core.size:
        span = float(core.max() - core.min()) or 1.0
        y0, y1 = float(core.min()) - 0.1 * span, float(core.max()) + 0.1 * span
        axf.set_ylim(y0, y1)
        off = np.isfinite(fc) & ((fc < y0) | (fc > y1))
        if off.any():
            k = int(np.argmax(np.where(off, np.abs(fc), -np.inf)))
            low = bool(fc[k] < y0)
            pad = 0.03 * (y1 - y0)
            axf.plot([xc[k]], [y0 + pad if low else y1 - pad], "v" if low else "^",
                     color="tab:red", ms=6, clip_on=False,
                     label=f"f off scale: {fc[k]:.3g} at {xc[k]:.3g}")
    if band_note:
        axf.plot([], [], " ", label=band_note)
    axf.set_xlabel(name)
    axf.set_ylabel("log(n_data / n_ref)")
    axf.legend(loc="best")
    fig.tight_layout()
    paths = _save(fig, outdir, "f_1d")
    plt.close(fig)
    return paths


@_styled
def plot_features(reference: np.ndarray, w_ref: np.ndarray, data: np.ndarray,
                  f_ref: np.ndarray, outdir: Path,
                  names: Sequence[str] | None = None,
                  label: str = "model",
                  envelope: dict[str, Any] | None = None,
                  band_note: str | None = None) -> list[Path]:
    """Per feature: data vs weighted reference, and their ratio against the model's,
    ``sum w e^f / sum w`` per bin (the learned density ratio projected on the feature),
    with the null toys' bands of that projection (``envelope``: :func:`_envelope_of`;
    the model's ratio is then drawn as the toys' is computed, on the envelope's
    reference events and bins).
    Bins whose reference expects few events are drawn hollow and do not set the ratio
    panel's range."""
    plt = _pyplot()
    d = reference.shape[1]
    names = list(names) if names else [f"x{j}" for j in range(d)]
    cols = min(d, 3)
    groups = math.ceil(d / cols)  # rows of features, each a histogram over a ratio panel
    fig, axes = plt.subplots(2 * groups, cols, figsize=(max(3.8 * cols, 6.0), 5.2 * groups),
                             squeeze=False,
                             gridspec_kw={"height_ratios": [2, 1.3] * groups})
    w_model = w_ref * np.exp(f_ref)  # the model's expected data per reference event
    if band_note:  # why there is no null band (in the figure's legend)
        axes[1, 0].plot([], [], " ", label=band_note)
    for j in range(d):
        x_r, x_d = reference[:, j], data[:, j]
        bins = np.linspace(*_axis_range(x_r, x_d), 40)
        h_r = _weighted_hist(x_r, bins, w_ref)
        h_d = _weighted_hist(x_d, bins, None)
        h_model = _weighted_hist(x_r, bins, w_model)
        centers = 0.5 * (bins[1:] + bins[:-1])
        g, c = divmod(j, cols)
        ax, axr = axes[2 * g, c], axes[2 * g + 1, c]
        ax.stairs(h_r, bins, color="tab:blue", label="reference")
        rel_r = _reference_band(ax, x_r, bins, w_ref, h_r)
        lo_e, hi_e = _poisson_band(h_d)
        has = h_d > 0
        ax.errorbar(centers[has], h_d[has], yerr=[lo_e[has], hi_e[has]], fmt="o", ms=2,
                    color="k", label="data (68% Poisson intervals)")
        ax.set_title(names[j])
        if c == 0:
            ax.set_ylabel("events / bin")
        few = h_r < _FEW_EXPECTED
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = h_d / h_r
            err = [lo_e / h_r, hi_e / h_r]
            model = h_model / h_r
        ok = np.isfinite(ratio) & (h_r > 0)
        main_b, sparse = ok & ~few, ok & few
        axr.errorbar(centers[main_b], ratio[main_b],
                     yerr=[err[0][main_b], err[1][main_b]], fmt="o", ms=2, color="k",
                     label="data / reference")
        if sparse.any():
            axr.errorbar(centers[sparse], ratio[sparse],
                         yerr=[err[0][sparse], err[1][sparse]], fmt="o", ms=3, mfc="none",
                         color="0.6", label=f"bins expecting < {_FEW_EXPECTED:g} events")
        model_top = float(np.nanmax(model[main_b])) if main_b.any() else 1.0
        drawn = False
        if envelope is not None and envelope.get("kind") == "projection":
            edges = np.asarray(envelope["edges"][j], dtype=np.float64)
            qv = np.exp(envelope["values"][:, j, :])
            counts = np.asarray(envelope.get("counts", [[]] * (j + 1))[j])
            sparse_b = (counts < _FEW_PROBE_EVENTS if counts.shape == qv[0].shape
                        else np.zeros(qv[0].shape, dtype=bool))
            for a, b, colour, lab in _bands(envelope):
                empty_b = ~np.isfinite(qv[a]) | ~np.isfinite(qv[b]) | sparse_b
                axr.stairs(np.where(empty_b, 1.0, qv[b]), edges,
                           baseline=np.where(empty_b, 1.0, qv[a]), fill=True,
                           color=colour, lw=0, label=lab)
            if envelope.get("observed") is not None:
                # the model's ratio computed as the toys' is (same events and bins),
                # so that the band applies to it
                model_e = np.exp(envelope["observed"][j])
                model_e = np.where(sparse_b | ~np.isfinite(model_e), np.nan, model_e)
                axr.plot(0.5 * (edges[1:] + edges[:-1]), model_e, color="tab:red",
                         label=label)
                drawn = True
                if np.isfinite(model_e).any():
                    model_top = float(np.nanmax(model_e))
        if not drawn:
            axr.plot(np.where(~few, centers, np.nan), model, color="tab:red", label=label)
        axr.axhline(1.0, color="gray", lw=0.8)
        axr.stairs(1.0 + np.minimum(rel_r, 1.0), bins, baseline=1.0 - np.minimum(rel_r, 1.0),
                   fill=True, color="tab:blue", alpha=0.15, lw=0)
        # the range covers the model and every data point whose lower error bar is
        # above 1 (a real excess), in bins expecting enough events, up to 100; points
        # above the range are marked
        top = model_top
        if main_b.any():
            top = max(top, float(np.nanmax(np.where(ratio[main_b] - err[0][main_b] > 1.0,
                                                    ratio[main_b], 0.0))))
        ymax = min(100.0, max(2.0, 1.3 * top))
        axr.set_ylim(0.0, ymax)
        over = ok & (ratio > ymax)
        if over.any():
            axr.plot(centers[over], np.full(over.sum(), 0.97 * ymax), "^", color="k",
                     ms=5, label="off scale")
        axr.set_xlabel(names[j])
        if c == 0:
            axr.set_ylabel("data / reference")
    for k in range(d, groups * cols):  # empty places of the last row
        g, c = divmod(k, cols)
        axes[2 * g, c].set_visible(False)
        axes[2 * g + 1, c].set_visible(False)
    handles: dict[str, Any] = {}
    for a in axes.flat:  # one legend for every panel, below them
        for h, lab in zip(*a.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.tight_layout(rect=(0.0, 0.1 / groups, 1.0, 1.0))
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=min(len(handles), 3), bbox_to_anchor=(0.5, 0.0))
    paths = _save(fig, outdir, "features")
    plt.close(fig)
    return paths


#: Features whose pairs ``f_maps`` draws (the first ones).
_MAP_FEATURES = 4


@_styled
def plot_f_maps(reference: np.ndarray, w_ref: np.ndarray, data: np.ndarray,
                f_ref: np.ndarray, outdir: Path, names: Sequence[str] | None = None,
                title: str = "learned density ratio") -> list[Path]:
    """On each pair of the first :data:`_MAP_FEATURES` features: the model's density
    ratio ``sum w e^f / sum w`` per two-dimensional bin (log scale, bins expecting
    fewer than :data:`_FEW_EXPECTED` reference events left blank), with the data
    events on top."""
    from matplotlib.colors import TwoSlopeNorm

    plt = _pyplot()
    d = min(reference.shape[1], _MAP_FEATURES)
    names = list(names) if names else [f"x{j}" for j in range(reference.shape[1])]
    pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
    cols = min(len(pairs), 3)
    rows = math.ceil(len(pairs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 1.2, 4.0 * rows),
                             squeeze=False)
    w_model = w_ref * np.exp(f_ref)
    maps, extents = [], []
    for i, j in pairs:
        edges = [np.linspace(*_axis_range(reference[:, k], data[:, k]), 21) for k in (i, j)]
        h_r = np.histogram2d(reference[:, i], reference[:, j], edges, weights=w_ref)[0]
        h_m = np.histogram2d(reference[:, i], reference[:, j], edges, weights=w_model)[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.where(h_r >= _FEW_EXPECTED, np.log(h_m / h_r), np.nan)
        maps.append(log_ratio)
        extents.append(edges)
    finite = np.concatenate([m[np.isfinite(m)] for m in maps]) if maps else np.zeros(1)
    reach = max(float(np.abs(finite).max()) if finite.size else 0.0, 0.05)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-reach, vmax=reach)
    show = data if len(data) <= 3000 else data[:: math.ceil(len(data) / 3000)]
    image = None
    for k, ((i, j), log_ratio, edges) in enumerate(zip(pairs, maps, extents, strict=True)):
        ax = axes.flat[k]
        image = ax.pcolormesh(edges[0], edges[1], log_ratio.T, cmap="RdBu_r", norm=norm)
        ax.plot(show[:, i], show[:, j], ".", ms=1.5, color="k", alpha=0.35)
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
    for ax in list(axes.flat)[len(pairs):]:
        ax.set_visible(False)
    fig.suptitle(title + ("" if reference.shape[1] <= _MAP_FEATURES else
                          f"; the first {_MAP_FEATURES} of {reference.shape[1]} features")
                 + f"\nblank: bins expecting < {_FEW_EXPECTED:g} reference events; dots: "
                 "data", fontsize=10)
    fig.tight_layout(rect=(0.0, 0.0, 0.9, 1.0))
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes.flat), fraction=0.04, pad=0.02)
        bar.set_label("log(model / reference) per bin")
    paths = _save(fig, outdir, "f_maps")
    plt.close(fig)
    return paths


def _learner_label(hp: dict[str, Any]) -> str:
    """Short name of a single-width result's learner: ``σ = 0.3`` for the kernel, the
    architecture and clip for the neural network."""
    if hp.get("learner") == "neural":
        return f"NN {hp['architecture']}, clip {hp['weight_clip']:g}"
    return f"σ = {hp['sigma']:.3g}"


def most_significant_width(result: dict[str, Any]) -> int | None:
    """Index of the width a multi-width result's ``f`` figures show: the one with the
    smallest reported local p-value (ties: the larger local Z of the toys, then the
    first); None for a single-width result."""
    widths = result.get("widths") or []
    if len(widths) < 2:
        return None
    cals = [w.get("calibration") or {} for w in widths]  # None without toys
    key = [(_num(c.get("p_value")), -_num(c.get("z_empirical"))) for c in cals]
    key = [(p if math.isfinite(p) else math.inf, z if math.isfinite(z) else math.inf)
           for p, z in key]
    return min(range(len(widths)), key=lambda k: (key[k], k))


def _f_label(result: dict[str, Any], k: int | None,
             names: Sequence[str] | None = None) -> str:
    """What the ``f`` figures show: ``(σ = 0.3 standardised, 0.041 in mjj)``, and for
    a multi-width result which width (``k``; default the first) of how many."""
    hp = result.get("hyperparameters") or {}
    if hp.get("learner") == "neural":
        return f" ({_learner_label(hp)})"
    widths = result.get("widths") or []
    if widths:
        w = widths[k or 0]
        sigma = _num(w.get("sigma"))
        cal = w.get("calibration") or {}
        z = _num(cal.get("z"))
        bound = cal.get("method") == "empirical" and cal.get("n_exceed") == 0
        which = f"; width {(k or 0) + 1} of {len(widths)}" + (
            f", local Z {'≥' if bound else '='} {z:.2f}" if math.isfinite(z) else "")
    else:
        sigma, which = _num(hp.get("sigma")), ""
    if not math.isfinite(sigma):
        return ""
    std = (result.get("config") or {}).get("standardize", True)
    scale = (hp.get("standardizer") or {}).get("scale") or []
    names = list(names or (((result.get("provenance") or {}).get("inputs") or {})
                           .get("reference") or {}).get("columns")
                 or [f"x{j}" for j in range(len(scale))])
    units = ""
    if std and len(scale) == 1:
        units = f" standardised, {sigma * float(scale[0]):.3g} in {names[0]}"
    elif std:
        units = " standardised"
    return f" (σ = {sigma:.3g}{units}{which})"


def make_plots(
    result: Any,
    outdir: str | Path,
    *,
    reference: np.ndarray | None = None,
    data: np.ndarray | None = None,
    w_ref: np.ndarray | None = None,
    f_ref: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    f_width: int | None = None,
) -> list[Path]:
    """Write every applicable figure of a result to ``outdir`` (PNG and PDF).

    Parameters
    ----------
    result : NPLMResult or dict
        The result, or its :meth:`NPLMResult.to_dict` (or a loaded result JSON).
    outdir : str or Path
        Output folder (created if missing).
    reference, data : numpy.ndarray, optional
        The raw (unstandardised) events, for the ``f`` plots.
    w_ref : numpy.ndarray, optional
        The reference weights of the test (as given to it: they are rescaled to sum
        to ``N(R)``). Required when the test was weighted.
    f_ref : numpy.ndarray, optional
        The learned ``f`` at the reference events. Default, for an :class:`NPLMResult`
        given with ``reference`` and ``data``: ``result.f(reference)``, at the most
        significant width of a multi-width run.
    names : sequence of str, optional
        Feature names.
    f_width : int, optional
        Multi-width results: the index of the width ``f_ref`` belongs to (default the
        first, the observed fit an :class:`NPLMResult` keeps); the figures name it. The
        command line shows the most significant width (:func:`most_significant_width`).

    Returns
    -------
    list of Path
        The files written.
    """
    if not isinstance(result, dict):
        if not hasattr(result, "to_dict"):
            raise InputError(f"make_plots takes an NPLMResult or its to_dict(), got "
                             f"{type(result).__name__}")
        obj, result = result, result.to_dict()
        if (f_ref is None and reference is not None and data is not None
                and getattr(obj, "learner", None) is not None):
            # the most significant width of a multi-width run, as the command line
            k = most_significant_width(result) if getattr(obj, "width_learners", None) \
                else None
            f_ref, f_width = obj.f(reference, width=k), k
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    if result.get("t_null"):
        paths += plot_null(result, out)
    if result.get("widths") and result.get("combinations"):
        paths += plot_widths(result, out)
    if reference is not None and data is not None and f_ref is not None:
        if w_ref is None and result.get("reference_weights"):
            raise InputError("the test used reference weights: pass them to make_plots "
                             "as w_ref (drawn unweighted, the reference would be wrong)")
        w = (np.full(len(reference), 1.0) if w_ref is None
             else np.asarray(w_ref, dtype=np.float64))
        if w.shape != (len(reference),) or not np.isfinite(w).all() or w.sum() <= 0:
            raise InputError(f"w_ref must hold one finite weight per reference event "
                             f"({len(reference)}), with a positive sum")
        w = w * (float(result["expected"]) / w.sum())  # the test's normalisation
        at = _f_label(result, f_width, names)
        env = _envelope_of(result, f_width)
        n_ok = int((result.get("toy_summary") or {}).get("n_ok", 0))
        note = (f"no null band: {n_ok} toys (at least {ENVELOPE_MIN_TOYS})"
                if env is None and 0 < n_ok < ENVELOPE_MIN_TOYS else None)
        if reference.shape[1] == 1:
            paths += plot_f_1d(reference, w, data, f_ref, out,
                               names[0] if names else "x", label=f"learned f(x){at}",
                               envelope=env, band_note=note)
        else:
            paths += plot_features(reference, w, data, f_ref, out, names,
                                   label=f"reference × e^f{at}", envelope=env,
                                   band_note=note)
            paths += plot_f_maps(reference, w, data, f_ref, out, names,
                                 title=f"learned density ratio{at}")
    return paths
