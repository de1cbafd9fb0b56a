"""Figures: produced by the API and the CLI, with the expected content."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from nplearn import nplm_test
from nplearn import plots as plots_mod
from nplearn.cli import main


@pytest.fixture
def captured(monkeypatch):
    """Record every figure saved (title texts, legend labels, line count) and still
    write the files."""
    import matplotlib.pyplot as plt

    seen: dict[str, dict] = {}
    real_save = plots_mod._save

    def save(fig, outdir, name):
        axes = [ax for ax in fig.axes if ax.get_visible()]
        seen[name] = {
            "titles": [ax.get_title() for ax in axes],
            "legend": [t.get_text() for ax in axes if ax.get_legend()
                       for t in ax.get_legend().get_texts()]
            + [t.get_text() for lg in fig.legends for t in lg.get_texts()],
            "texts": [t.get_text() for ax in axes for t in ax.texts],
            "n_lines": sum(len(ax.lines) for ax in axes),
            "xlabels": [ax.get_xlabel() for ax in axes],
            "xlims": [ax.get_xlim() for ax in axes],
            "ylims": [ax.get_ylim() for ax in axes],
            "rc": {k: plt.rcParams[k] for k in ("xtick.direction", "font.size")},
        }
        return real_save(fig, outdir, name)

    monkeypatch.setattr(plots_mod, "_save", save)
    return seen


def _check_files(paths):
    import matplotlib.image as mpimg

    for p in paths:
        assert p.exists() and p.stat().st_size > 1000
        if p.suffix == ".png":
            img = mpimg.imread(p)
            assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0.01  # not blank
        else:
            assert p.read_bytes()[:5] == b"%PDF-"


def test_single_width_1d_plots(tmp_path, rng, captured):
    ref = rng.exponential(size=(20000, 1))
    data = np.concatenate([rng.exponential(size=(480, 1)), rng.normal(1.0, 0.05, (40, 1))])
    res = nplm_test(ref, data, expected=500.0, n_toys=30, n_centers=200, workers=1)
    paths = plots_mod.make_plots(res.to_dict(), tmp_path / "p", reference=ref, data=data,
                                 f_ref=res.learner.train_decision_[:20000], names=["mass"])
    assert sorted(p.name for p in paths) == sorted(
        f"{n}.{e}" for n in ("null_distribution", "f_1d") for e in ("png", "pdf"))
    _check_files(paths)
    null = captured["null_distribution"]
    assert any(lbl.startswith("χ² fit, dof =") for lbl in null["legend"])
    assert f"t_obs = {res.t_obs:.2f}" in null["legend"]
    rel = "≥" if res.calibration.n_exceed == 0 else "="  # a bound when no toy reached t_obs
    assert any(f"Z {rel} {res.calibration.z_empirical:.2f}" in t for t in null["legend"])
    f1 = captured["f_1d"]
    assert "reference MC stat. (√Σw²)" in f1["legend"]  # where the reference is sparse
    sigma = res.to_dict()["hyperparameters"]["sigma"]
    scale = res.to_dict()["hyperparameters"]["standardizer"]["scale"][0]
    assert (f"learned f(x) (σ = {sigma:.3g} standardised, {sigma * scale:.3g} in mass)"
            in f1["legend"])
    assert "mass" in f1["xlabels"]
    # 30 toys give no null band of f: the legend says why
    assert "no null band: 30 toys (at least 40)" in f1["legend"]


def test_f_curves_show_the_model_ratio_to_the_last_event(tmp_path, rng, monkeypatch):
    lines: dict[str, list] = {}

    def save(fig, outdir, name):
        lines[name] = [(ln.get_label(), ln.get_xdata(), ln.get_ydata())
                       for ax in fig.axes for ln in ax.lines]
        return []

    monkeypatch.setattr(plots_mod, "_save", save)
    ref = rng.exponential(size=(9000, 2))
    data = rng.exponential(size=(300, 2))
    w = np.full(len(ref), 300 / len(ref))
    # f = log 2 where x0 > 1, 0 elsewhere: the model's data / reference ratio per bin of
    # x0 is the weighted mean of e^f (2 above 1, 1 below), not e^(mean f) (Jensen)
    f = np.where(ref[:, 0] > 1.0, np.log(2.0), 0.0)
    plots_mod.plot_features(ref, w, data, f, tmp_path, label="model")
    (_, x, y), = [ln for ln in lines["features"] if ln[0] == "model"][:1]
    np.testing.assert_allclose(np.asarray(y)[np.asarray(x) > 1.2], 2.0)
    np.testing.assert_allclose(np.asarray(y)[np.asarray(x) < 0.8], 1.0)
    # along x1, half of each bin's events sit above x0 = 1 or not: 1 < ratio < 2
    (_, x1, y1), = [ln for ln in lines["features"] if ln[0] == "model"][1:2]
    frac = np.exp(-1.0)  # P(x0 > 1)
    y1 = np.asarray(y1)[np.asarray(x1) < 2.0]
    assert np.all(np.abs(y1 - (1 + frac)) < 0.15)
    # the 1D curve reaches the largest reference event; beyond the data it is dotted
    plots_mod.plot_f_1d(ref[:, :1], w, data[:, :1], f, tmp_path)
    (_, xc, _), = [ln for ln in lines["f_1d"] if ln[0] == "learned f(x)"]
    (_, xb, _), = [ln for ln in lines["f_1d"] if ln[0] == "f beyond the data"]
    assert np.nanmax(xc) <= data[:, 0].max() < np.nanmin(xb[xb > data[:, 0].max()])
    assert np.nanmax(xb) == ref[:, 0].max() > data[:, 0].max()


def test_multi_width_cli_plots_and_replot(tmp_path, rng, captured, capsys):
    np.save(tmp_path / "ref.npy", rng.normal(size=(3000, 2)))
    np.save(tmp_path / "dat.npy", rng.normal(size=(120, 2)))
    out = tmp_path / "r.json"
    assert main(["test", "--reference", str(tmp_path / "ref.npy"), "--data",
                 str(tmp_path / "dat.npy"), "--sigma-percentiles", "10,90", "--toys", "8",
                 "--centers", "60", "--workers", "1", "--json", str(out), "--plots",
                 str(tmp_path / "figs"), "-q"]) == 0
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == sorted(f"{n}.{e}" for n in ("null_distribution", "z_vs_width", "features",
                                                "f_maps") for e in ("png", "pdf"))
    _check_files(list((tmp_path / "figs").iterdir()))
    assert len(captured["null_distribution"]["titles"]) == 2  # one panel per width
    d = json.loads(out.read_text())
    # the reported combination first (alone or with those of equal Z), marked so
    first = next(lbl for lbl in captured["z_vs_width"]["legend"]
                 if ("Z =" in lbl or "Z ≥" in lbl) and not lbl.startswith("local"))
    assert first.startswith("min-p") and first.endswith("(reported)")
    assert captured["features"]["xlabels"][-2:] == ["x0", "x1"]  # columns of a .npy file
    # f is drawn at the most significant width, and the legend says which
    k = plots_mod.most_significant_width(d)
    label = next(lbl for lbl in captured["features"]["legend"]
                 if lbl.startswith("reference × e^f"))
    assert f"σ = {d['widths'][k]['sigma']:.3g} standardised; width {k + 1} of 2" in label
    captured.clear()
    # replot from the JSON (refits the observed data from the recorded inputs)
    assert main(["plot", str(out), "--out", str(tmp_path / "again")]) == 0
    assert set(captured) == {"null_distribution", "z_vs_width", "features", "f_maps"}
    assert d["run"]["reference"].endswith("ref.npy")
    # without the inputs: calibration plots only
    (tmp_path / "ref.npy").unlink()
    captured.clear()
    assert main(["plot", str(out), "--out", str(tmp_path / "third")]) == 0
    assert set(captured) == {"null_distribution", "z_vs_width"}
    # an --out that is a file is blamed, not the result
    capsys.readouterr()
    assert main(["plot", str(out), "--out", str(tmp_path / "dat.npy")]) == 2
    err = capsys.readouterr().err
    assert "dat.npy: exists and is not a folder" in err and "damaged" not in err


def test_plot_bad_inputs(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing.json")]) == 2
    (tmp_path / "x.json").write_text('{"a": 1}')
    assert main(["plot", str(tmp_path / "x.json")]) == 2
    assert "not an nplearn result" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["test", "--reference", "r.npy", "--data", "d.npy", "--plots",
                 str(tmp_path / "afile")]) == 2
    # a run that fails on its inputs removes the plot folder it made (still empty) and
    # keeps one that was there before
    np.save(tmp_path / "bad.npy", np.full((50, 1), np.nan))
    for existed in (False, True):
        figs = tmp_path / f"figs{existed}"
        if existed:
            figs.mkdir()
        assert main(["test", "--reference", str(tmp_path / "bad.npy"), "--data",
                     str(tmp_path / "bad.npy"), "--plots", str(figs)]) == 2
        assert figs.exists() == existed


def test_mplhep_style_used_while_drawing_only(tmp_path, captured):
    """The figures are drawn in the CMS style (when mplhep is installed) with font
    sizes for their size; the caller's matplotlib style is left as it was."""
    import matplotlib.pyplot as plt

    pytest.importorskip("mplhep")
    before = dict(plt.rcParams)
    rng = np.random.default_rng(0)
    res = {"t_null": rng.chisquare(5, size=100).tolist(), "t_obs": 7.0,
           "calibration": {"chi2_dof": 5.0, "n_exceed": 20, "p_empirical": 0.2,
                           "z_empirical": 0.84, "p_chi2": 0.22, "z_chi2": 0.77,
                           "method": "empirical", "n_toys": 100, "chi2_ks_pvalue": 0.5},
           "hyperparameters": {"sigma": 1.0}, "z": 0.84, "z_method": "empirical"}
    plots_mod.make_plots(res, tmp_path / "p")
    # the CMS style sets inward ticks (matplotlib's default is outward); its 26-point
    # font is for 10-inch figures
    assert captured["null_distribution"]["rc"] == {"xtick.direction": "in", "font.size": 11}
    assert dict(plt.rcParams) == before


def test_plots_show_what_a_strong_excess_hides(tmp_path, captured):
    """A t_obs far beyond the toys: the histogram keeps the toys' range and an arrow
    points to t_obs; bounds read as bounds; the ratio panel reaches the excess; a
    width with Z = -inf (p = 1) is drawn, not dropped."""
    rng = np.random.default_rng(1)
    ref = rng.exponential(size=(5000, 2))
    data = np.r_[rng.exponential(size=(300, 2)), rng.normal(2.0, 0.1, (60, 2))]
    res = nplm_test(ref, data, expected=300, n_toys=20, n_centers=100, workers=1)
    assert res.calibration.n_exceed == 0
    plots_mod.make_plots(res.to_dict(), tmp_path / "a", reference=ref, data=data,
                         w_ref=np.full(len(ref), 300 / 5000),
                         f_ref=res.learner.train_decision_[:len(ref)])
    null = captured["null_distribution"]
    assert null["xlims"][0][1] < res.t_obs
    assert "→" in null["texts"]  # an arrow at the edge, the value in the legend
    assert f"t_obs = {res.t_obs:.2f} (beyond the axis)" in null["legend"]
    assert res.calibration.method == "empirical"  # 20 toys: too few for the chi2 tail
    assert "(not used: < 50 toys)" in null["legend"]
    assert "reported Z ≥" in null["titles"][0]
    assert any(t.startswith("p (toys) ≤") and "Z ≥" in t for t in null["legend"])
    assert "(no toy reached t_obs)" in null["legend"]
    assert any(t.startswith("p (χ²)") for t in null["legend"])
    assert "(not used: < 50 toys)" in null["legend"]
    # ratio panels: the signal bins are inside the range (data/reference up to 6.0 and
    # 4.7 in the bins expecting at least 2 events; sparser bins do not set the range)
    assert [lim[1] > r for lim, r in zip(captured["features"]["ylims"][2:], (6.0, 4.7),
                                         strict=True)] == [True, True]
    multi = nplm_test(ref, data[:300], expected=300, n_toys=20, n_centers=100, workers=1,
                      sigmas=[0.5, 2.0]).to_dict()
    multi["widths"][0]["calibration"]["z_empirical"] = "-inf"
    plots_mod.make_plots(multi, tmp_path / "b")
    assert "Z = −∞ (p = 1), drawn at the floor" in captured["z_vs_width"]["legend"]


def test_null_plot_keeps_the_bulk_when_toys_are_far_below(tmp_path, captured):
    """Null toys with a large negative t (the demo has one at -4489): the axis starts
    near the bulk and a note counts the toys below it; a t_obs below the cut gets a
    left arrow; without such toys nothing changes."""
    rng = np.random.default_rng(3)
    t_null = rng.chisquare(10, size=200)
    res = {"t_null": np.r_[t_null, -4489.0, -706.0].tolist(), "t_obs": 40.0,
           "calibration": {"chi2_dof": 10.0, "n_exceed": 0, "p_empirical": 0.005,
                           "z_empirical": 2.58, "method": "empirical", "n_toys": 202},
           "hyperparameters": {"sigma": 1.0}, "z": 2.58, "z_method": "empirical",
           "p_is_bound": True}
    plots_mod.plot_null(res, tmp_path)
    null = captured["null_distribution"]
    assert null["xlims"][0][0] > -50  # the bulk (0-40) is not squeezed by -4489
    assert any("2 toy(s) below the axis" in t and "-4489" in t for t in null["texts"])
    plots_mod.plot_null({**res, "t_obs": -5000.0}, tmp_path)
    assert "←" in captured["null_distribution"]["texts"]
    assert "t_obs = -5000.00 (below the axis)" in captured["null_distribution"]["legend"]
    plots_mod.plot_null({**res, "t_null": t_null.tolist()}, tmp_path)
    null = captured["null_distribution"]
    assert not any("below the axis" in t for t in null["texts"])
    assert null["xlims"][0][0] <= 0.0


def test_the_most_significant_width_is_the_smallest_reported_local_p():
    def width(p, z):
        return {"calibration": {"p_value": p, "z_empirical": z}}

    assert plots_mod.most_significant_width({"widths": [width(0.1, 1.0)]}) is None
    res = {"widths": [width(0.2, 0.8), width(1e-5, 2.1), width(0.01, 2.1)]}
    assert plots_mod.most_significant_width(res) == 1
    # equal reported p (bounds of the toys): the larger toy Z, then the first
    res = {"widths": [width(0.02, 2.0), width(0.02, 2.3), width(0.02, 2.3)]}
    assert plots_mod.most_significant_width(res) == 1
    res = {"widths": [width(None, None), width(0.5, 0.0)]}  # a missing p sorts last
    assert plots_mod.most_significant_width(res) == 1


def test_f_maps_show_a_localised_excess_the_projections_dilute(tmp_path, captured):
    # f = log 3 in a small square of (x0, x1) and 0 elsewhere: the map's largest log
    # ratio sits in that square, at log 3; 5 features give the pairs of the first four
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(4)
    ref = rng.normal(size=(40000, 5))
    data = rng.normal(size=(2000, 5))
    inside = (np.abs(ref[:, 0] - 0.5) < 0.4) & (np.abs(ref[:, 1] - 0.5) < 0.4)
    f = np.where(inside, np.log(3.0), 0.0)
    seen = {}
    real = plots_mod._save

    def save(fig, outdir, name):
        seen[name] = [(ax.get_xlabel(), ax.get_ylabel(), ax.collections[0].get_array())
                      for ax in fig.axes if ax.get_visible() and ax.collections
                      and ax.get_xlabel()]
        seen["title"] = fig._suptitle.get_text()
        return real(fig, outdir, name)

    plots_mod._save = save
    try:
        plots_mod.plot_f_maps(ref, np.full(len(ref), 2000 / len(ref)), data, f, tmp_path,
                              names=["a", "b", "c", "d", "e"])
    finally:
        plots_mod._save = real
        plt.close("all")
    panels = seen["f_maps"]
    assert [(x, y) for x, y, _ in panels] == [("a", "b"), ("a", "c"), ("a", "d"),
                                              ("b", "c"), ("b", "d"), ("c", "d")]
    ab = np.ma.filled(panels[0][2].astype(float), np.nan)
    assert np.nanmax(ab) == pytest.approx(np.log(3.0), rel=1e-9)
    # in the other pairs the square is diluted over a whole row of bins
    assert all(np.nanmax(np.ma.filled(p[2].astype(float), np.nan)) < 0.8 * np.log(3.0)
               for p in panels[3:])
    assert "the first 4 of 5 features" in seen["title"]


def test_empty_bins_and_a_contradicted_chi2_tail_are_shown(tmp_path, captured):
    # a gap in the data (no event in 0-0.8 where ~100 per bin are expected): the empty
    # bins' upper limits are inside the ratio axis; a chi-square tail that the toys
    # contradict is said to be so in the null panel
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(20000, 1))
    data = rng.normal(size=(2000, 1))
    data = data[(data[:, 0] < 0.0) | (data[:, 0] > 0.8)]
    f = np.zeros(len(ref))
    plots_mod.plot_f_1d(ref, np.full(len(ref), 2000 / len(ref)), data, f, tmp_path)
    assert "empty bin: 84% upper limit" in captured["f_1d"]["legend"]
    edges = np.linspace(min(ref.min(), data.min()), max(ref.max(), data.max()), 60)
    h = np.histogram(ref[:, 0], edges)[0] * 0.1
    empty = (np.histogram(data[:, 0], edges)[0] == 0) & (h >= 2)
    limits = np.log(1.8410 / h[empty])  # the 84% upper limit of a count of 0, over h
    assert captured["f_1d"]["ylims"][1][0] <= limits.min()
    res = {"t_null": np.r_[rng.chisquare(5, size=195), np.full(5, 40.0)].tolist(),
           "t_obs": 35.0,
           "calibration": {"chi2_dof": 5.0, "n_exceed": 5, "p_empirical": 6 / 201,
                           "z_empirical": 1.88, "p_chi2": 1.6e-6, "z_chi2": 4.66,
                           "method": "empirical", "n_toys": 200, "chi2_ks_pvalue": 0.9,
                           "chi2_unused": "the toys contradict its tail"},
           "hyperparameters": {"sigma": 1.0}, "z": 1.88, "z_method": "empirical"}
    plots_mod.plot_null(res, tmp_path)
    assert "(not used: the toys contradict its tail)" in captured["null_distribution"]["legend"]


def test_a_deep_dip_of_f_does_not_set_the_ratio_panel(tmp_path, captured):
    # an over-flexible f that dives to -140 where the data have a gap set the lower
    # panel's range, and the excess at x = 0.4 vanished into the zero line: the range
    # follows the binned ratios and f where the data have events, the dip is marked
    rng = np.random.default_rng(0)
    ref = rng.exponential(1 / 8, size=(20000, 1))
    data = rng.exponential(1 / 8, size=(1000, 1))
    data = data[np.abs(data[:, 0] - 0.5) > 0.05]  # a gap in the data
    f_ref = np.where(np.abs(ref[:, 0] - 0.5) < 0.003, -140.0, 0.0)
    plots_mod.plot_f_1d(ref, np.full(20000, 1000 / 20000), data, f_ref, tmp_path)
    lo, hi = captured["f_1d"]["ylims"][1]
    assert -10 < lo < 0 < hi < 10
    assert any(t.startswith("f off scale: -140 at 0.49") for t in captured["f_1d"]["legend"])
    # a narrow excess in the sparse tail has data events under it: its peak of f sets
    # the range (trimming f's extreme 2% cut it off)
    data = np.r_[rng.exponential(1 / 8, size=(2000, 1)), rng.normal(0.8, 0.02, (10, 1))]
    f_ref = np.log1p(10 * np.exp(-0.5 * ((ref[:, 0] - 0.8) / 0.02) ** 2)
                     / (0.02 * np.sqrt(2 * np.pi)) / (2000 * 8 * np.exp(-8 * ref[:, 0])))
    plots_mod.plot_f_1d(ref, np.full(20000, 2000 / 20000), data, f_ref, tmp_path)
    lo, hi = captured["f_1d"]["ylims"][1]
    assert hi > f_ref.max() > 2
    assert not any(t.startswith("f off scale") for t in captured["f_1d"]["legend"])
