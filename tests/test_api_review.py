"""Fixes from a review of the Python API (a physicist's notebook session): clear
errors at the public entry points, f on raw events, quiet toys, reported M."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from nplearn import InputError, NPLMConfig, nplm_test
from nplearn.io import read_table, write_json_atomic
from nplearn.multitest import combine_all
from nplearn.preprocess import Standardizer, sigma_from_percentile
from nplearn.stats import calibrate
from nplearn.toys import toy_seed


@pytest.fixture
def events():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3000, 2)) * 3.0 + 5.0, rng.normal(size=(300, 2)) * 3.0 + 5.0


def test_f_of_raw_events_and_plots_of_a_result_object(events, tmp_path):
    # the learner is fitted on standardised events: result.f standardises raw ones
    # (evaluating the learner on raw events gave another f, off by up to 16)
    ref, dat = events
    res = nplm_test(ref, dat, n_toys=0, n_centers=100, expected=300.0)
    np.testing.assert_allclose(res.f(ref), res.learner.train_decision_[:3000],
                               rtol=1e-9, atol=1e-9)
    assert not np.allclose(res.learner.decision_function(ref), res.f(ref), atol=1e-3)
    with pytest.raises(InputError, match="has 3 feature column"):
        res.f(np.zeros((4, 3)))
    pytest.importorskip("matplotlib")
    from nplearn.plots import make_plots

    names = sorted(p.name for p in make_plots(res, tmp_path / "figs", reference=ref,
                                              data=dat))
    assert names == ["f_maps.pdf", "f_maps.png", "features.pdf", "features.png"]  # f: result.f
    with pytest.raises(InputError, match="takes an NPLMResult"):
        make_plots([1, 2], tmp_path / "x")


def test_toy_fits_that_do_not_converge_are_counted_not_logged(events, caplog):
    ref, dat = events
    with caplog.at_level(logging.WARNING, logger="nplearn"):
        res = nplm_test(ref, dat, n_toys=5, workers=1, n_centers=50, max_iter=2,
                        expected=300.0)
    assert res.n_not_converged == 5
    # the observed fit's warning only (one line per toy before)
    assert caplog.text.count("kernel fit did not converge") == 1
    assert "5 not converged" in res.summary()


def test_pandas_frames_give_no_torch_warning(events):
    pd = pytest.importorskip("pandas")
    from nplearn.learners.kernel import KernelLogisticRegression

    ref, dat = events
    X = pd.DataFrame(np.r_[ref, dat])
    y = np.r_[np.zeros(len(ref)), np.ones(len(dat))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = KernelLogisticRegression(sigma=3.0, n_centers=50).fit(X, y)
        model.decision_function(pd.DataFrame(dat))


def test_public_entry_points_raise_input_errors(events, tmp_path):
    ref, dat = events
    # a config changed after it was made is checked again; a dict is a config
    cfg = NPLMConfig(n_toys=0)
    cfg.n_toys = -5
    with pytest.raises(InputError, match="n_toys must be >= 0"):
        nplm_test(ref, dat, cfg)
    assert nplm_test(ref, dat, {"n_toys": 0, "n_centers": 40}).fit["n_centers"] == 40
    with pytest.raises(InputError, match="config must be an NPLMConfig"):
        nplm_test(ref, dat, 5)
    with pytest.raises(InputError, match="toy_generator must be callable"):
        nplm_test(ref, dat, toy_generator=5, n_toys=2)
    t = np.random.default_rng(1).chisquare(5, size=100)
    with pytest.raises(InputError, match="observed statistic must be one number"):
        calibrate(np.array([12.0]), t)
    with pytest.raises(InputError, match="null statistics must be a"):
        calibrate(12.0, None)
    with pytest.raises(InputError, match="min_exceed must be an integer >= 1"):
        calibrate(12.0, t, min_exceed=-1)
    with pytest.raises(InputError, match="1-D array"):
        sigma_from_percentile(ref[:, 0], 90)
    with pytest.raises(InputError, match="maps events of 2 feature"):
        Standardizer.fit(ref).transform(np.zeros((3, 3)))
    with pytest.raises(InputError, match="must be >= 0"):
        toy_seed(0, -3)
    with pytest.raises(InputError, match="is a directory"):
        write_json_atomic(tmp_path, {"a": 1})
    from nplearn.benchmarks.suite import Exp1DScaled
    from nplearn.power import power_study

    with pytest.raises(InputError, match="n_centers must be an integer"):
        power_study(Exp1DScaled(n_ref=1000, expected=50.0), n_null=5, n_signal=1,
                    n_centers=None)


def test_a_string_is_one_name_not_its_characters(tmp_path):
    path = tmp_path / "t.csv"
    x = np.random.default_rng(2).normal(size=(20, 3))
    np.savetxt(path, x, delimiter=",", header="ab,a,b", comments="")
    np.testing.assert_array_equal(read_table(str(path), "ab").events, x[:, :1])
    np.testing.assert_array_equal(read_table(str(path), "b,ab").events, x[:, [2, 0]])
    # several widths from numpy (np.linspace) are a list of numbers
    assert NPLMConfig(sigmas=np.linspace(0.5, 2.0, 3)).sigmas == [0.5, 1.25, 2.0]
    # a percentile for the default width next to explicit widths would be ignored
    with pytest.raises(InputError, match="sigma_percentile = 50 chooses the one default"):
        NPLMConfig(sigma_percentiles=[10, 90], sigma_percentile=50)
    # numpy scalars (0-d arrays) are one number
    assert NPLMConfig(sigma=np.array(0.5)).sigma == 0.5
    assert calibrate(np.array(3.0), np.arange(1.0, 11.0)).n_exceed == 8
    T = np.random.default_rng(3).chisquare(4, size=(50, 2))
    out = combine_all(np.array([9.0, 9.0]), T, "min-p")
    assert list(out) == ["min-p"]


def test_data_beyond_the_reference_by_chance_is_a_note():
    # with comparable sample sizes some data event often lies beyond the reference
    # (about 2 d N_D / (N_D + N_R) of the data sets): the summary then says how common
    # that is, as a NOTE; a count that chance hardly explains stays a WARNING
    from nplearn.nplm import outside_reference

    rng = np.random.default_rng(7)
    n_r, n_d, k = 200, 50, 2
    # the exact one-end probability C(N_D, k) / C(N_D + N_R, k) against 40000 draws
    # (binomial error of the frequency ~0.001)
    hits = 0
    for _ in range(40000):
        x = rng.normal(size=n_r + n_d)
        hits += int((x[n_r:] > x[:n_r].max()).sum() >= k)
    ref = np.linspace(-1, 1, n_r)[:, None]
    dat = np.r_[np.zeros((n_d - k, 1)), np.full((k, 1), 2.0)]
    out = outside_reference(ref, dat)
    assert out["above"] == [2] and out["p_chance"] == pytest.approx(2 * (50 * 49) / (250 * 249))
    assert hits / 40000 == pytest.approx(out["p_chance"] / 2, abs=0.004)
    rng = np.random.default_rng(0)
    R = rng.normal(size=(3000, 1))
    D = np.r_[rng.normal(size=(299, 1)), [[R.max() + 0.5]]]
    res = nplm_test(R, D, n_toys=0, n_centers=50, expected=300.0)
    assert "NOTE: 1 data event(s) outside the reference's range (x0: 0 below, 1 above; " \
           "as many by chance in up to 18.2% of data sets" in res.summary()
    far = nplm_test(R, np.r_[D[:290], np.full((10, 1), R.max() + 0.5)], n_toys=0,
                    n_centers=50, expected=300.0)
    assert "WARNING: 10 data event(s) outside the reference's range (x0: 0 below, 10 " \
           "above; chance for data drawn like the reference at most" in far.summary()


def test_cli_refusals_come_before_reading_inputs(tmp_path, capsys):
    from nplearn.cli import main

    # --scheduler without --executor dask: refused before the (maybe large) inputs are read
    assert main(["test", "--reference", str(tmp_path / "none.npy"), "--data",
                 str(tmp_path / "none.npy"), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "add --executor dask" in err and "not found" not in err
    # a ':NAME' on a .npy weight file names nothing
    rng = np.random.default_rng(0)
    np.save(tmp_path / "r.npy", rng.normal(size=(500, 1)))
    np.save(tmp_path / "w.npy", np.ones(500))
    assert main(["test", "--reference", str(tmp_path / "r.npy"), "--data",
                 str(tmp_path / "r.npy"), "--ref-weights", f"{tmp_path / 'w.npy'}:w",
                 "--toys", "0"]) == 2
    assert "a .npy file holds one array, so ':w' names nothing" in capsys.readouterr().err


def test_provenance_names_the_code_and_the_host():
    import platform
    import re

    from nplearn.nplm import provenance

    p = provenance()
    assert p["host"] == platform.node()
    # run from this checkout: its commit (+dirty with local edits); an installed copy: None
    assert p["nplearn_git"] is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?",
                                                    p["nplearn_git"])
    assert re.fullmatch(r"[0-9a-f]{64}", p["nplearn_source"])


def test_p_of_one_is_explained(events):
    import dataclasses

    from nplearn.stats import calibrate as cal

    ref, dat = events
    res = nplm_test(ref, dat, n_toys=5, workers=1, n_centers=50, expected=300.0)
    c = cal(-100.0, res.t_null)
    low = dataclasses.replace(res, t_obs=-100.0, calibration=c, p_value=c.p_value, z=c.z)
    assert "reported                  p = 1, Z = -inf (empirical; every toy reached " \
           "t_obs: no sign of a discrepancy)" in low.summary()


def test_notes_on_the_normalisation_and_seed_free_widths():
    # an event count far from N(R) (e.g. --expected not scaled to a selection) makes t
    # large by itself: a NOTE; a weighted shape-only test says the count is not tested
    rng = np.random.default_rng(0)
    R, D = rng.exponential(size=(20000, 1)), rng.exponential(size=(1280, 1))
    far = nplm_test(R, D, n_toys=0, n_centers=100, expected=2000.0).summary()
    assert "NOTE: N_D = 1280 is -16.1 Poisson standard deviations from N(R) = 2000" in far
    near = nplm_test(R, D, n_toys=0, n_centers=100, expected=1300.0).summary()
    assert "Poisson standard deviations" not in near  # -0.6: nothing to note
    w = rng.uniform(0.5, 1.5, size=len(R))
    shape = nplm_test(R, D, n_toys=0, n_centers=100, ref_weights=w)
    text = shape.summary()
    assert "expected yield N(R)       none: shape-only (N_D = 1280 used)" in text
    assert f"weights sum to {w.sum():.6g}, the data have 1280 events" in text
    # the default width comes from the reference only: the seed chooses the toys
    s0, s1 = (nplm_test(R, D, n_toys=0, n_centers=50, expected=1300.0, seed=s)
              .hyperparameters for s in (0, 7))
    assert s0["sigma"] == s1["sigma"]
    one = nplm_test(R, D, n_toys=0, n_centers=50, expected=1300.0, sigma_percentile=1)
    assert one.hyperparameters["sigma_source"].startswith("1st percentile")


def test_make_plots_normalises_weights_and_needs_them_for_a_weighted_test(tmp_path):
    pytest.importorskip("matplotlib")
    from nplearn.plots import make_plots

    rng = np.random.default_rng(1)
    R, D = rng.exponential(size=(5000, 1)), rng.exponential(size=(300, 1))
    w = rng.uniform(0.5, 1.5, size=len(R)) * 40.0  # raw weights, any normalisation
    res = nplm_test(R, D, n_toys=0, n_centers=50, expected=300.0, ref_weights=w)
    with pytest.raises(InputError, match="pass them to make_plots as w_ref"):
        make_plots(res, tmp_path / "a", reference=R, data=D)
    seen = {}
    import nplearn.plots as plots_mod

    real = plots_mod._weighted_hist

    def spy(x, bins, weights):
        h = real(x, bins, weights)
        if weights is not None and len(x) == len(R):
            seen.setdefault("sums", []).append(float(np.sum(weights)))
        return h

    plots_mod._weighted_hist = spy
    try:
        make_plots(res, tmp_path / "b", reference=R, data=D, w_ref=w)
    finally:
        plots_mod._weighted_hist = real
    assert seen["sums"][0] == pytest.approx(300.0)  # the reference drawn at N(R)


def test_cli_warns_about_inputs_that_are_probably_not_meant(tmp_path, capsys):
    from nplearn.cli import main

    rng = np.random.default_rng(2)
    np.savetxt(tmp_path / "ref.csv", np.c_[rng.exponential(size=3000),
                                           rng.uniform(0.5, 1.5, 3000)],
               delimiter=",", header="mjj,weight", comments="")
    np.savetxt(tmp_path / "dat.csv", rng.exponential(size=(300, 1)), delimiter=",",
               header="mjj", comments="")
    base = ["test", "--expected", "300", "--toys", "0", "--centers", "50", "-q"]
    assert main([*base, "--reference", str(tmp_path / "ref.csv"), "--data",
                 str(tmp_path / "dat.csv"), "--columns", "mjj"]) == 0
    assert "column 'weight' of " in (err := capsys.readouterr().err) and \
        "is not used, so the reference is unweighted" in err
    assert main([*base, "--reference", str(tmp_path / "ref.csv"), "--data",
                 str(tmp_path / "dat.csv"), "--columns", "mjj", "--ref-weight-branch",
                 "weight"]) == 0
    assert "looks like event weights" not in capsys.readouterr().err
    assert main([*base, "--reference", str(tmp_path / "ref.csv"), "--data",
                 str(tmp_path / "ref.csv")]) == 0
    err = capsys.readouterr().err
    assert "is both the reference and the data" in err and "is used as a feature" in err


def test_f_at_every_width_of_a_multi_width_run(events):
    ref, dat = events
    res = nplm_test(ref, dat, n_toys=0, n_centers=60, expected=300.0, sigmas=[0.5, 2.0])
    assert len(res.width_learners) == 2 and res.width_learners[0] is res.learner
    for k in (0, 1):
        np.testing.assert_allclose(res.f(ref, width=k),
                                   res.width_learners[k].train_decision_[:3000],
                                   rtol=1e-9, atol=1e-9)
    assert not np.allclose(res.f(ref, width=0), res.f(ref, width=1))
    with pytest.raises(InputError, match="has 2 kernel widths"):
        res.f(ref, width=2)
    single = nplm_test(ref, dat, n_toys=0, n_centers=60, expected=300.0)
    with pytest.raises(InputError, match="has 0 kernel widths"):
        single.f(ref, width=1)


def test_an_empty_data_block_with_an_expected_yield_is_a_result(tmp_path, capsys):
    # a monitoring block without events (a detector off) against N(R) = 100: f -> -inf
    # everywhere and t -> 2 N(R); the count note says why
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(5000, 2))
    res = nplm_test(ref, np.zeros((0, 2)), n_toys=5, workers=1, n_centers=50,
                    expected=100.0)
    assert res.n_data == 0 and res.t_obs == pytest.approx(200.0, rel=0.01)
    assert "NOTE: N_D = 0 is -10.0 Poisson standard deviations" in res.summary()
    # on the command line too (a CSV file with its header only)
    from nplearn.cli import main

    np.savetxt(tmp_path / "ref.csv", ref, delimiter=",", header="a,b", comments="")
    (tmp_path / "empty.csv").write_text("a,b\n")
    assert main(["test", "--reference", str(tmp_path / "ref.csv"), "--data",
                 str(tmp_path / "empty.csv"), "--expected", "100", "--toys", "0",
                 "--centers", "50", "-q"]) == 0
    assert "data events N_D           0" in capsys.readouterr().out
    assert main(["test", "--reference", str(tmp_path / "ref.csv"), "--data",
                 str(tmp_path / "empty.csv"), "--expected", "100", "--toys", "3",
                 "--centers", "50", "-q", "--workers", "1", "--plots",
                 str(tmp_path / "figs")]) == 0  # the figures too
    assert (tmp_path / "figs" / "f_maps.png").exists()
    capsys.readouterr()
    assert main(["test", "--reference", str(tmp_path / "ref.csv"), "--data",
                 str(tmp_path / "empty.csv"), "--toys", "0", "--centers", "50", "-q"]) == 2
    assert "a shape-only test needs data events" in capsys.readouterr().err


def test_late_review_fixes(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from nplearn.cli import main

    rng = np.random.default_rng(9)
    np.savetxt(tmp_path / "ref.csv", rng.normal(size=(3000, 2)), delimiter=",",
               header="a,b", comments="")
    np.savetxt(tmp_path / "dat.csv", rng.normal(size=(200, 2)), delimiter=",",
               header="a,b", comments="")
    base = ["test", "--reference", str(tmp_path / "ref.csv"), "--centers", "50", "-q",
            "--workers", "1"]
    # several widths without toys: the f figures are drawn (AttributeError before)
    assert main([*base, "--data", str(tmp_path / "dat.csv"), "--sigma-percentiles",
                 "10,90", "--toys", "0", "--expected", "200", "--plots",
                 str(tmp_path / "f0")]) == 0
    assert (tmp_path / "f0" / "features.png").exists()
    # nplearn plot of an empty data set's result
    (tmp_path / "empty.csv").write_text("a,b\n")
    assert main([*base, "--data", str(tmp_path / "empty.csv"), "--toys", "3",
                 "--expected", "50", "--json", str(tmp_path / "e.json")]) == 0
    assert main(["plot", str(tmp_path / "e.json"), "--out", str(tmp_path / "fe")]) == 0
    # a result made at another percentile reruns with explicit widths
    assert main([*base, "--data", str(tmp_path / "dat.csv"), "--sigma-percentile", "95",
                 "--toys", "0", "--expected", "200", "--json", str(tmp_path / "p.json")]) == 0
    assert main(["test", "--config", str(tmp_path / "p.json"), "--sigma", "0.5", "-q"]) == 0
    capsys.readouterr()
