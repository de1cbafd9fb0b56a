"""The null toys' envelope of f: the probe, the values each toy records, their
quantiles in the result, and the bands the figures draw."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nplearn import nplm_test
from nplearn.envelope import (
    ENVELOPE_QUANTILES,
    MIN_TOYS,
    N_BINS,
    N_SUBSAMPLE,
    decode_values,
    make_probe,
    probe_values,
)


class _Linear:
    """A stand-in learner: f(x) = a . x."""

    def __init__(self, a):
        self.a = np.asarray(a, dtype=np.float64)

    def decision_function(self, X):
        return np.asarray(X) @ self.a


def test_probe_depends_on_the_reference_only(rng):
    ref1 = rng.exponential(size=(5000, 1))
    p = make_probe(ref1)
    x = p.points[:, 0]
    assert p.bins is None and np.all(np.diff(x) > 0)
    assert x[0] == ref1.min() and x[-1] == ref1.max()  # the whole reference
    assert 64 <= x.size <= 112
    ref = rng.normal(size=(20000, 3))
    w = rng.uniform(0.0, 2.0, size=20000)
    w[:100] = 0.0
    a, b = make_probe(ref, w), make_probe(ref, w)
    for u, v in zip(a.arrays(), b.arrays(), strict=True):
        np.testing.assert_array_equal(u, v)  # no seed: the same for every run
    assert a.points.shape == (N_SUBSAMPLE, 3) and a.edges.shape == (3, N_BINS + 1)
    # events of zero weight are never probed; each point lies in its bin
    assert not np.isin(a.points, ref[:100]).all(axis=1).any()
    for j in range(3):
        inside = a.bins[:, j] >= 0
        assert 0.995 < inside.mean() < 1.0  # the 0.1-99.9% range of the feature
        lo = a.edges[j][a.bins[inside, j]]
        hi = a.edges[j][a.bins[inside, j] + 1]
        assert np.all((lo <= a.points[inside, j]) & (a.points[inside, j] <= hi))


def test_projection_values_by_hand(rng):
    ref = rng.normal(size=(3000, 2))
    w = rng.uniform(0.5, 1.5, size=3000)
    p = make_probe(ref, w)
    vals = np.array(probe_values(p, _Linear([0.7, -0.2])))
    assert vals.shape == (2 * N_BINS,)
    f = p.points @ np.array([0.7, -0.2])
    for j in range(2):
        for b in (3, 20, 36):
            m = p.bins[:, j] == b
            want = np.log(np.sum(p.weights[m] * np.exp(f[m])) / np.sum(p.weights[m]))
            assert vals[j * N_BINS + b] == pytest.approx(want, rel=1e-12, abs=1e-12)
    # one feature: f itself
    p1 = make_probe(ref[:, :1])
    v1 = np.array(probe_values(p1, _Linear([2.0])))
    np.testing.assert_allclose(v1, 2.0 * p1.points[:, 0], rtol=1e-12)
    # a steep f: e^f spans thousands of decades across the probe, and still every bin
    # holding probe events has its value (log-sum-exp per bin)
    steep = probe_values(p, _Linear([300.0, 0.0]))
    filled = np.r_[[np.bincount(p.bins[p.bins[:, j] >= 0, j], minlength=N_BINS) > 0
                    for j in range(2)]].ravel()
    assert np.isfinite(steep[filled]).all() and np.isnan(steep[~filled]).all()
    m = p.bins[:, 0] == 5
    want = 300.0 * p.points[m, 0].max() + np.log(
        np.sum(p.weights[m] * np.exp(300.0 * (p.points[m, 0] - p.points[m, 0].max())))
        / np.sum(p.weights[m]))
    assert steep[5] == pytest.approx(want, rel=1e-12)


def test_envelope_holds_the_toys_quantiles(rng, tmp_path, monkeypatch):
    ref = rng.exponential(size=(8000, 1))
    data = rng.exponential(size=(200, 1))
    res = nplm_test(ref, data, n_toys=MIN_TOYS + 5, n_centers=80, workers=1, seed=4,
                    sigmas=[0.5, 2.0], checkpoint=tmp_path / "ck")
    env = res.f_envelope
    assert env["kind"] == "f" and env["n_toys"] == MIN_TOYS + 5
    assert env["quantiles"] == list(ENVELOPE_QUANTILES)
    probed = np.array([decode_values(t.f_probe, 2) for t in res.toys])  # toys, widths, x
    assert probed.shape == (MIN_TOYS + 5, 2, len(env["x"]))
    np.testing.assert_allclose(np.array(env["values"]),
                               np.quantile(probed, ENVELOPE_QUANTILES, axis=0)
                               .transpose(1, 0, 2), atol=1e-6)
    # the points in input units (the standardisation undone)
    std = res.hyperparameters["standardizer"]
    probe = make_probe((ref - std["mean"][0]) / std["scale"][0])
    np.testing.assert_allclose(env["x"], probe.points[:, 0] * std["scale"][0] + std["mean"][0])
    # a toy's values are its fit's f at the points, at every width
    from nplearn.nplm import _make_engine, _setup
    from nplearn.toys import run_toys

    cfg = res.config
    engine = _make_engine(_setup(ref, data, None, cfg, None), cfg, None, {})
    import nplearn.toys as toys_mod

    learners = []
    real = toys_mod.probe_values

    def keep(probe_, learner):
        learners.append(learner)
        return real(probe_, learner)

    monkeypatch.setattr(toys_mod, "probe_values", keep)
    (again,) = run_toys(engine, [3], workers=1)
    assert again.t_widths == res.toys[3].t_widths and again.f_probe == res.toys[3].f_probe
    assert [lr.sigma for lr in learners] == [0.5, 2.0]
    for k, lr in enumerate(learners):  # stored as float32
        np.testing.assert_allclose(decode_values(again.f_probe, 2)[k],
                                   lr.decision_function(engine.probe.points),
                                   rtol=1e-6, atol=1e-6)
    # the observed fit's values at the same points, every width
    for k in range(2):
        np.testing.assert_allclose(env["observed"][k], res.f(np.array(env["x"])[:, None],
                                                             width=k), atol=2e-6)
    # under the null the band is centred on f = 0 where the reference is dense, and its
    # 68% band is narrower than the 95% one
    v = np.array(env["values"])
    bulk = np.asarray(env["x"]) < np.quantile(ref, 0.9)
    assert np.all(np.abs(v[:, 2, bulk]) < 0.25)
    assert np.all(v[:, 0] <= v[:, 1]) and np.all(v[:, 3] <= v[:, 4])
    assert np.all(v[:, 0, bulk] < 0.0) and np.all(v[:, 4, bulk] > 0.0)
    # the records keep each toy's values, the result JSON only the envelope; a resumed
    # run gives the same envelope
    rec = json.loads(next((tmp_path / "ck").glob("*/toy_000000003.json")).read_text())
    assert rec["toy"]["f_probe"] == res.toys[3].f_probe
    d = res.to_dict()
    assert "f_probe" not in d["toys"][0] and d["f_envelope"] == env
    resumed = nplm_test(ref, data, n_toys=MIN_TOYS + 5, n_centers=80, workers=1, seed=4,
                        sigmas=[0.5, 2.0], checkpoint=tmp_path / "ck", resume_only=True)
    assert resumed.f_envelope == env


def test_too_few_toys_give_no_envelope(rng):
    ref = rng.normal(size=(4000, 2))
    res = nplm_test(ref, rng.normal(size=(100, 2)), n_toys=MIN_TOYS - 1, n_centers=40,
                    workers=1)
    assert res.f_envelope is None and res.to_dict()["f_envelope"] is None
    assert all(decode_values(t.f_probe, 1).shape == (1, 2 * N_BINS) for t in res.toys)


def test_the_neural_learner_has_an_envelope(rng):
    ref = rng.normal(size=(3000, 2))
    res = nplm_test(ref, rng.normal(size=(100, 2)), learner="neural", nn_hidden=[3],
                    n_toys=MIN_TOYS, workers=1)
    env = res.f_envelope
    assert env["kind"] == "projection" and np.array(env["values"]).shape == (1, 5, 2, N_BINS)
    assert np.array(env["edges"]).shape == (2, N_BINS + 1)


def test_the_figures_draw_the_bands(rng, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from nplearn import plots as plots_mod

    bands: dict[str, dict[str, np.ndarray]] = {}
    real_save = plots_mod._save

    def save(fig, outdir, name):
        for ax in fig.axes:
            for c in ax.collections + ax.patches:
                if str(c.get_label()).startswith("null toys"):
                    path = (c.get_paths()[0] if hasattr(c, "get_paths")
                            else c.get_path())
                    bands.setdefault(name, {})[c.get_label()] = path.vertices
            for line in ax.lines:
                if str(line.get_label()).startswith("reference × e^f"):
                    bands.setdefault(name, {})["model"] = line.get_xydata()
        return real_save(fig, outdir, name)

    monkeypatch.setattr(plots_mod, "_save", save)
    ref = rng.exponential(size=(8000, 1))
    data = np.r_[rng.exponential(size=(200, 1)), rng.normal(1.0, 0.05, (30, 1))]
    res = nplm_test(ref, data, n_toys=MIN_TOYS, n_centers=80, workers=1)
    plots_mod.make_plots(res, tmp_path, reference=ref, data=data)
    env = res.f_envelope
    labels = list(bands["f_1d"])
    assert labels == [f"null toys: 95% of f ({MIN_TOYS} toys)", "null toys: 68% of f"]
    v95 = bands["f_1d"][labels[0]]
    q = np.array(env["values"][0])
    # the 95% band spans the 2.5% and 97.5% quantiles at the points
    assert v95[:, 1].min() == pytest.approx(q[0].min())
    assert v95[:, 1].max() == pytest.approx(q[4].max())
    # several features: the model's ratio, e^(projection), in every feature's panel
    ref2 = rng.normal(size=(6000, 2))
    data2 = rng.normal(size=(150, 2))
    res2 = nplm_test(ref2, data2, n_toys=MIN_TOYS, n_centers=60, workers=1)
    plots_mod.make_plots(res2, tmp_path / "2d", reference=ref2, data=data2)
    assert f"null toys: 95% of the model ({MIN_TOYS} toys)" in bands["features"]
    ratio = np.exp(np.array(res2.f_envelope["values"][0]))
    top = bands["features"]["null toys: 68% of the model"][:, 1]
    counts = np.array(res2.f_envelope["counts"][-1])  # the last panel drawn
    assert top.max() == pytest.approx(ratio[3, 1][counts >= 10].max())
    # the model's ratio is drawn from the observed fit's projection on the band's
    # events and bins (so that the band applies to it)
    model_line = bands["features"]["model"]
    np.testing.assert_allclose(
        model_line[:, 1], np.where(counts >= 10, np.exp(res2.f_envelope["observed"][0][1]),
                                   np.nan))
    # the band of the width drawn, not the first
    d2 = res2.to_dict()
    d2["f_envelope"]["values"].append((np.array(d2["f_envelope"]["values"][0]) + 1.0).tolist())
    d2["f_envelope"]["observed"].append(d2["f_envelope"]["observed"][0])
    assert np.array_equal(plots_mod._envelope_of(d2, 1)["values"],
                          np.array(d2["f_envelope"]["values"][1]))
    # a JSON result without an envelope (an older file, or few toys) draws without
    d = res.to_dict()
    d["f_envelope"] = None
    bands.clear()
    plots_mod.make_plots(d, tmp_path / "old", reference=ref, data=data,
                         f_ref=res.f(ref))
    assert "f_1d" not in bands
