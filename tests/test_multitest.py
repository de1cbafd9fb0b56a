"""Multiple testing over kernel widths: combination formulas and null uniformity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from nplearn import InputError, nplm_test
from nplearn.multitest import (
    COMBINATIONS,
    bonferroni_bound,
    combine,
    combine_all,
    combined_pvalues,
    local_pvalues,
    local_pvalues_null,
    standardise,
    standardise_null,
)


def test_local_pvalues_by_hand():
    t_null = np.array([[1.0, 5.0], [2.0, 4.0], [3.0, 3.0], [4.0, 2.0]])
    # observed 2.5 at width 0: toys 3, 4 are >= -> (1 + 2) / 5
    # observed 4.0 at width 1: toys 5, 4 are >= (ties count) -> (1 + 2) / 5
    np.testing.assert_allclose(local_pvalues(np.array([2.5, 4.0]), t_null), [0.6, 0.6])
    # the toys in the pool with that data set: toy t = 1 at width 0 has the 3 other
    # toys and the data set (2.5) at or above it -> (1 + 4) / 5
    pool = local_pvalues_null(t_null, np.array([2.5, 4.0]))
    np.testing.assert_allclose(pool[:, 0], [1.0, 0.8, 0.4, 0.2])
    # width 1: the data set (4.0) ties with the toy at 4.0, and the tie counts against it
    np.testing.assert_allclose(pool[:, 1], [0.2, 0.6, 0.8, 1.0])


def test_min_p_symmetric_data_set_and_toy_share_the_p_value():
    # the data set is the most extreme member at width 0, toy 0 at width 1, in mirror
    # positions: they are exchangeable, so the data set must not be called more extreme
    # than toy 0 (p = 2/5). Leave-one-out toy ranks gave p = 1/5 here.
    t_obs = np.array([10.0, 0.0])
    t_null = np.array([[0.0, 10.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    res = combine_all(t_obs, t_null)
    assert res["min-p"].p_value == pytest.approx(0.4) and res["min-p"].n_exceed == 1
    # every combination counts toy 0 (its mirror image) as at least as extreme;
    # product-p also counts the toy at (3, 3), whose ranks are (2, 2) of 5
    assert {m: r.n_exceed for m, r in res.items()} == {
        "min-p": 1, "fused-p": 1, "product-p": 2, "fused-t": 1}


def test_min_p_ties_broken_by_the_standardised_statistic():
    # data set and toy 0 both rank first at one width each; the data set lies further
    # out (in null standard deviations), so it is the more extreme of the two
    t_null = np.array([[0.0, 4.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    _, p, n_ge = combined_pvalues(np.array([10.0, 0.0]), t_null, "min-p")
    assert n_ge[0] == 0 and p[0] == pytest.approx(0.2)
    _, p, n_ge = combined_pvalues(np.array([3.5, 0.0]), t_null, "min-p")
    assert n_ge[0] == 1 and p[0] == pytest.approx(0.4)


def test_combinations_by_hand():
    p = np.array([[0.01, 0.1, 0.5]])
    s = -np.log(p[0])
    assert combine(p, "min-p")[0] == pytest.approx(-math.log(0.01))
    assert combine(p, "product-p")[0] == pytest.approx(s.sum())
    T = 2.0
    fused = T * math.log(np.mean(np.exp(s / T)))
    assert combine(p, "fused-p", T)[0] == pytest.approx(fused)
    # fused-p lies between the mean and the max of -log p; T -> 0 gives min-p
    assert s.mean() < fused < s.max()
    assert combine(p, "fused-p", 1e-3)[0] == pytest.approx(s.max(), rel=1e-3)
    z = np.array([[1.0, -0.5, 2.0]])
    assert combine(z, "fused-t", 1.0)[0] == pytest.approx(math.log(np.mean(np.exp(z[0]))))


def test_pooled_standardisation_by_hand():
    T = np.array([[1.0], [2.0], [4.0], [7.0]])
    x = np.array([5.0])
    z = standardise_null(T, x)
    others = np.r_[T[1:, 0], x]  # the other toys and the data set
    assert z[0, 0] == pytest.approx((1.0 - others.mean()) / others.std(ddof=1))
    others = np.r_[T[[0, 1, 2], 0], x]
    assert z[3, 0] == pytest.approx((7.0 - others.mean()) / others.std(ddof=1))


def test_combination_errors():
    with pytest.raises(InputError, match="unknown combination"):
        combine(np.array([[0.5]]), "max-t")
    with pytest.raises(InputError, match=r"\(0, 1\]"):
        combine(np.array([[0.0, 0.5]]), "min-p")
    with pytest.raises(InputError, match="temperature"):
        combine(np.array([[0.5]]), "fused-p", 0.0)
    with pytest.raises(InputError, match="NaN"):
        local_pvalues(np.array([1.0]), np.array([[1.0], [np.nan], [2.0]]))
    with pytest.raises(InputError, match="widths"):
        local_pvalues(np.array([1.0, 2.0]), np.ones((4, 3)))


def _correlated_null(rng, n, k=5, rho=0.8, dof=8.0):
    """Correlated chi2-like statistics: chi2 transforms of equicorrelated normals,
    with different scales per width (like the widths of an NPLM test)."""
    common = rng.normal(size=(n, 1))
    g = math.sqrt(rho) * common + math.sqrt(1 - rho) * rng.normal(size=(n, k))
    u = sps.norm.cdf(g)
    return sps.chi2.ppf(u, dof + 10 * np.arange(k))


@pytest.mark.parametrize("method", COMBINATIONS)
def test_combined_p_uniform_under_null(method):
    # calibrate on 2000 null sets, evaluate 1000 held-out null sets: their combined
    # p-values must be uniform. KS at the 1% level with a fixed seed; the empirical
    # null of 2000 toys adds a discreteness of 5e-4, far below the KS band (~0.05).
    rng = np.random.default_rng(11)
    T0 = _correlated_null(rng, 2000)
    T1 = _correlated_null(rng, 1000)
    _, p, _ = combined_pvalues(T1, T0, method, 1.0)
    assert sps.kstest(p, "uniform").pvalue > 0.01
    # and a shifted set (every width's t larger) must give small p-values
    _, p_sig, _ = combined_pvalues(T1 + 15.0, T0, method, 1.0)
    assert np.median(p_sig) < 0.05


@pytest.mark.parametrize("method", COMBINATIONS)
def test_small_combined_p_values_are_valid(method):
    # the small-p end, where a KS test is blind: 2000 pools of 1 + 99 exchangeable
    # data sets with six independent widths. A valid p-value has P(p <= 0.01) <= 0.01
    # (20 of 2000 expected, binomial sd 4.4); the limit 35 is 3.4 sd above. Leave-one-out
    # toy ranks gave 114 for min-p here.
    rng = np.random.default_rng(21)
    p = np.array([combined_pvalues(Z[0], Z[1:], method)[1][0]
                  for Z in rng.chisquare(3.0, size=(2000, 100, 6))])
    assert np.count_nonzero(p <= 0.01) <= 35
    assert np.count_nonzero(p <= 0.1) <= 200 + 45  # 10%: 200 expected, sd 13.4


def test_combine_all_structure():
    rng = np.random.default_rng(3)
    T0 = _correlated_null(rng, 300, k=3)
    res = combine_all(T0[0] + 1000.0, T0[1:])
    assert set(res) == set(COMBINATIONS)
    for r in res.values():
        assert r.n_toys == 299
        assert r.n_exceed == 0 and r.p_value == pytest.approx(1 / 300)


def test_multi_width_test_end_to_end(rng):
    # a narrow bump is seen; the first width's t equals a single-width run (same
    # centres); the result has every width and every combination
    ref = rng.normal(size=(6000, 1))
    data = np.concatenate([rng.normal(size=(290, 1)), rng.normal(1.5, 0.05, size=(25, 1))])
    # 50 toys: the fewest from which a width's chi-square extrapolation is reported
    opts = dict(expected=300.0, n_toys=50, n_centers=200, workers=1, seed=4)
    multi = nplm_test(ref, data, sigmas=[0.1, 0.5, 2.0], **opts)
    single = nplm_test(ref, data, sigma=0.1, **opts)
    # sigma = 0.1 is narrow here: windowed features use PCG, which the several widths
    # start from the wider width's solution, so t agrees to the convergence tolerance
    assert multi.t_obs == pytest.approx(single.t_obs, rel=1e-8)
    np.testing.assert_allclose(multi.t_null_widths[:, 0], single.t_null, rtol=1e-8)
    assert [w["sigma"] for w in multi.widths] == [0.1, 0.5, 2.0]
    assert set(multi.combinations) == set(COMBINATIONS)
    assert multi.p_value == multi.combinations["min-p"].p_value
    assert multi.reported_method == "min-p"
    # beyond every null toy at every width: p = 1/51
    assert multi.combinations["min-p"].n_exceed == 0
    assert multi.p_value == pytest.approx(1 / 51)
    d = multi.to_dict()
    assert d["z_method"] == "min-p" and len(d["t_null_widths"][0]) == 3
    # the reported p belongs to the combination, not to the top-level (first-width) t
    rep = d["reported"]
    assert rep["test"] == "min-p over 3 kernel widths (0.1, 0.5, 2)"
    assert rep["statistic"] == multi.combinations["min-p"].statistic != multi.t_obs
    assert (rep["p_value"], rep["z"], rep["method"], rep["p_is_bound"]) == (
        multi.p_value, multi.z, "min-p", True)
    rs = single.to_dict()["reported"]
    assert rs["test"] == "kernel width sigma = 0.1" and rs["statistic"] == single.t_obs
    assert rs["method"] == single.calibration.method and rs["p_value"] == single.p_value
    assert "per width" in multi.summary()
    scale = multi.hyperparameters["standardizer"]["scale"][0]
    assert ("sigma in input units      x0 " + ", ".join(f"{s * scale:.3g}"
                                                    for s in (0.1, 0.5, 2.0))) in multi.summary()
    # the Bonferroni bound goes beyond the 1/51 of the toys (chi-square local p-values)
    b = multi.combined_bound
    local = [w["calibration"]["p_value"] for w in multi.widths]
    assert b["p_value"] == pytest.approx(3 * min(local))
    assert b["width_index"] == int(np.argmin(local))
    assert b["local_method"] == "chi2" and b["z"] > multi.z + 1
    assert d["combined_bound"] == b and "Bonferroni over widths    p = " in multi.summary()
    # every width's reported local p comes with its Z (the one the JSON and the figures
    # give), next to the toys' Z
    w0 = multi.widths[0]["calibration"]
    assert f", Z = {w0['z']:.2f} ({w0['method']})" in multi.summary()
    assert "local p (toys)  Z (toys)   local p and Z reported (method)" in multi.summary()
    # a single width extrapolated beyond the toys says so on the reported line
    assert single.calibration.method == "chi2"
    assert "(chi2 extrapolation beyond all 50 toys)" in single.summary()
    # with min_exceed > 1 a chi-square p may be reported while toys reach t_obs
    import dataclasses

    from nplearn.stats import calibrate

    bulk = np.random.default_rng(3).chisquare(5, size=195)
    t_mid = float(np.sort(bulk)[-4])
    c = calibrate(t_mid, bulk, min_exceed=10)
    mid = dataclasses.replace(single, t_obs=t_mid, t_null=bulk, calibration=c,
                              p_value=c.p_value, z=c.z)
    assert c.method == "chi2" and c.n_exceed == 4
    assert "(chi2 tail; 4 of 195 toys reach t_obs)" in mid.summary()
    assert "beyond all" not in mid.summary().split("reported")[-1]


def test_percentile_widths_match_single_width_default(rng):
    ref, data = rng.normal(size=(3000, 2)), rng.normal(size=(100, 2))
    opts = dict(n_toys=0, n_centers=100, workers=1)
    multi = nplm_test(ref, data, sigma_percentiles=[50, 90], **opts)
    single = nplm_test(ref, data, **opts)
    assert multi.widths[1]["sigma"] == single.hyperparameters["sigma"]


def test_too_few_toys_to_combine_report_nothing(rng):
    ref, data = rng.normal(size=(2000, 1)), rng.normal(size=(80, 1))
    res = nplm_test(ref, data, sigmas=[0.5, 2.0], n_toys=2, n_centers=60, workers=1)
    assert res.combinations is None and math.isnan(res.p_value)
    assert res.reported_method is None and res.to_dict()["z_method"] is None
    assert "too few to combine the widths" in res.summary()
    assert "(empirical)" not in res.summary()


def test_width_options_validated():
    with pytest.raises(InputError, match="only one of"):
        nplm_test(np.zeros((10, 1)), np.zeros((2, 1)), sigma=1.0, sigmas=[1.0, 2.0])
    with pytest.raises(InputError, match="twice"):
        nplm_test(np.zeros((10, 1)), np.zeros((2, 1)), sigmas=[1.0, 1.0])
    with pytest.raises(InputError, match="combine"):
        nplm_test(np.zeros((10, 1)), np.zeros((2, 1)), sigmas=[1.0, 2.0], combine="best")


def test_cli_multi_width(tmp_path, rng, capsys):
    import json

    from nplearn.cli import main

    np.save(tmp_path / "ref.npy", rng.normal(size=(3000, 2)))
    np.save(tmp_path / "dat.npy", rng.normal(size=(120, 2)))
    out = tmp_path / "r.json"
    rc = main(["test", "--reference", str(tmp_path / "ref.npy"), "--data",
               str(tmp_path / "dat.npy"), "--sigma-percentiles", "10,90", "--toys", "8",
               "--centers", "60", "--workers", "1", "--combine", "product-p", "--json",
               str(out), "-q"])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["z_method"] == "product-p"
    assert d["p_value"] == d["combinations"]["product-p"]["p_value"]
    assert len(d["widths"]) == 2 and d["config"]["sigma_percentiles"] == [10.0, 90.0]
    assert "product-p over 2 widths" in capsys.readouterr().out
    assert main(["test", "--reference", str(tmp_path / "ref.npy"), "--data",
                 str(tmp_path / "dat.npy"), "--sigma", "0.5,-1"]) == 2


def test_combined_p_uniform_on_real_null_toys():
    # a small real problem: 400 null toys of the 1D exponential benchmark, three
    # widths fitted on each; 300 calibrate, 100 are held out. Every combination's
    # held-out p-values must be uniform (KS, 1% level, fixed seed; with 100 held-out
    # toys the KS test detects a 0.16 deviation of the CDF).
    from nplearn.benchmarks.suite import Exp1DScaled
    from nplearn.power import BenchmarkToy
    from nplearn.toys import ToyEngine, run_toys

    bench = Exp1DScaled(n_ref=1500, expected=60.0)
    engine = ToyEngine({"sigma": 0.3, "n_centers": 40, "lam": 1e-6}, 60.0, 5,
                       generator=BenchmarkToy(bench, "none"), sigmas=(0.3, 1.0, 3.0))
    toys = run_toys(engine, range(400), workers=1)
    T = np.array([t.t_widths for t in toys if t.ok])
    assert T.shape == (400, 3)
    T0, T1 = T[:300], T[300:]
    for method in COMBINATIONS:
        _, p, _ = combined_pvalues(T1, T0, method)
        assert sps.kstest(p, "uniform").pvalue > 0.01, method


def test_a_failing_combination_stops_nothing(rng, monkeypatch, tmp_path):
    import nplearn.multitest as mt

    def degenerate(*args, **kwargs):
        raise InputError("a width has identical null statistics in every toy")

    monkeypatch.setattr(mt, "standardise_null", degenerate)
    monkeypatch.setattr(mt, "standardise", degenerate)
    ref, data = rng.normal(size=(2000, 1)), rng.normal(size=(100, 1))
    opts = dict(sigmas=[0.5, 2.0], n_toys=5, n_centers=30, workers=1)
    res = nplm_test(ref, data, **opts)  # min-p requested: fused-t is left out
    assert "min-p" in res.combinations and "fused-t" not in res.combinations
    assert "identical null statistics" in res.combination_errors["fused-t"]
    # the reported one: after the toys have run, the result (local p-values, the other
    # combinations) is kept, with p and Z NaN and the reason, instead of an error
    res = nplm_test(ref, data, combine="fused-t", **opts)
    assert math.isnan(res.p_value) and math.isnan(res.z) and "min-p" in res.combinations
    assert "p = nan (fused-t over 2 widths: not computed: a width has identical" \
        in res.summary()
    res.save_json(tmp_path / "r.json")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["p_value"] is None and "fused-t" in saved["combination_errors"]


def test_bonferroni_bound_by_hand_and_valid_under_null():
    b = bonferroni_bound([0.2, 1e-4, 0.03], ["empirical", "chi2", "empirical"])
    assert b["p_value"] == pytest.approx(3e-4) and b["width_index"] == 1
    assert b["local_method"] == "chi2" and b["z"] == pytest.approx(sps.norm.isf(3e-4))
    assert bonferroni_bound([0.5, 0.6], ["empirical"] * 2)["p_value"] == 1.0
    for bad in ([], [0.0, 0.5], [0.5, float("nan")]):
        with pytest.raises(InputError):
            bonferroni_bound(bad, ["empirical"] * len(bad))
    # a chi-square local p-value that underflowed to 0 (Z ~ 44) keeps a finite bound
    from scipy import special

    b = bonferroni_bound([0.0, 0.3], ["chi2", "empirical"], [44.0, 0.52])
    assert b["p_value"] == 0.0 and b["width_index"] == 0
    # two widths: log p = log 2 + log Phi(-44)
    expect = -special.ndtri_exp(np.log(2.0) + special.log_ndtr(-44.0))
    assert b["z"] == pytest.approx(expect, rel=1e-12) and 43.9 < b["z"] < 44.0
    with pytest.raises(InputError, match="needs its finite z"):
        bonferroni_bound([0.0, 0.3], ["chi2", "empirical"])
    b2 = bonferroni_bound([0.2, 1e-4, 0.03], ["empirical"] * 3,
                          [sps.norm.isf(x) for x in (0.2, 1e-4, 0.03)])
    assert b2["p_value"] == pytest.approx(3e-4)
    # exact local p-values of 6 strongly correlated widths: the bound (the function
    # itself, row by row) never rejects more often than its level (Bonferroni; here it
    # is conservative by ~2x, so a multiplicity below 6 would show: capped at 3 it
    # rejects 0.06 of the rows at a = 0.05)
    rng = np.random.default_rng(11)
    C = 0.8 ** np.abs(np.subtract.outer(np.arange(6), np.arange(6)))
    z = rng.standard_normal((20_000, 6)) @ np.linalg.cholesky(C).T
    p = sps.norm.sf(z)
    pb = np.array([bonferroni_bound(row, ["empirical"] * 6)["p_value"] for row in p])
    assert np.allclose(pb, np.minimum(1.0, 6 * p.min(1)), rtol=1e-12, atol=0)
    for a in (0.05, 0.01, 1e-3):
        # binomial 3-sigma margin on the rate
        assert np.mean(pb <= a) <= a + 3 * np.sqrt(a / pb.size)



def test_fit_widths_fits_widest_first_and_returns_the_given_order():
    from types import SimpleNamespace

    from nplearn.toys import fit_widths

    calls = []

    def fit_one(sigma, f0):
        calls.append((sigma, None if f0 is None else f0.tolist()))
        return (1.0 / sigma, 0.0, None,
                SimpleNamespace(train_decision_=np.array([sigma, 0.0, -sigma])))

    out = fit_widths([0.3, 2.0, 1.0], fit_one)
    # each fit gets the previous fit's decision values, row for row
    assert calls == [(2.0, None), (1.0, [2.0, 0.0, -2.0]), (0.3, [1.0, 0.0, -1.0])]
    assert [r[0] for r in out] == [1 / 0.3, 0.5, 1.0]
    calls.clear()
    fit_widths([0.3, 2.0], fit_one, warm_start=False)
    assert calls == [(2.0, None), (0.3, None)]


@pytest.mark.parametrize("shared", [False, True])
def test_warm_started_widths_give_the_cold_statistics(rng, shared):
    # PCG fits of several widths on one toy: each width after the widest starts from
    # the previous solution; t is the same as fitting every width from zero
    from nplearn.toys import ToyEngine

    pool = rng.normal(size=(3000, 2))
    params = {"sigma": 1.0, "n_centers": 150, "lam": 1e-6, "inner": "cg"}
    kw = dict(pool=pool, sigmas=(0.5, 1.0, 2.0), shared_centers=shared)
    warm = ToyEngine(params, 150.0, 3, **kw)
    cold = ToyEngine(params, 150.0, 3, warm_start=False, **kw)
    for i in range(3):
        a, b = warm.run(i), cold.run(i)
        assert a.ok and b.ok and a.converged
        np.testing.assert_allclose(a.t_widths, b.t_widths, rtol=1e-6, atol=1e-6)
        assert a.n_iter < b.n_iter


def test_observed_fit_warm_starts_the_narrower_widths(rng):
    # nplm_test fits the widest width from zero and starts the narrower one from it
    # (as its toys do); the start is far closer to the optimum than zero
    ref, data = rng.normal(size=(3000, 2)), 1.1 * rng.normal(size=(150, 2)) + 0.1
    res = nplm_test(ref, data, expected=150.0, sigmas=[0.5, 1.0], n_toys=0, n_centers=150,
                    inner="cg", workers=1)
    narrow, wide = (w["fit"] for w in res.widths)
    assert narrow["warm_start"] and not wide["warm_start"]
    J_zero = np.log(2.0) * (150.0 + 150.0) / 3150.0  # softplus(0) = log 2 per unit weight
    assert wide["history"][0]["objective"] == pytest.approx(J_zero)
    gap = narrow["history"][0]["objective"] - narrow["objective"]
    assert 0 <= gap < 0.05 * (J_zero - narrow["objective"])


def test_ties_within_rounding_count_against_the_data_set():
    # fused-t: a toy equal to the data set is a tie (the two are standardised by
    # different sums, which round differently)
    r = combine_all(np.array([4.0]), np.array([[0.0], [4.0], [4.0]]), ("fused-t",))
    assert r["fused-t"].n_exceed == 2 and r["fused-t"].p_value == pytest.approx(3 / 4)
    T = np.array([3.0, 3.0, 4.0, 1.0, 2.0, 0.0])[:, None]
    ps = {m: combine_all(np.array([1.0]), T, (m,))[m].p_value for m in COMBINATIONS}
    assert all(p == pytest.approx(6 / 7) for p in ps.values()), ps
    # product-p: rank vectors with equal products (6*7*1 = 7*2*3) are ties
    T = np.array([[4, 3, 3], [1, 4, 0], [0, 5, 3], [1, 3, 2], [4, 3, 1], [2, 5, 2]], float)
    _, p, n_ge = combined_pvalues(np.array([1.0, 2.0, 4.0]), T, "product-p")
    assert n_ge[0] == 3 and p[0] == pytest.approx(4 / 7)


def test_nan_statistics_are_refused():
    T = np.arange(10.0).reshape(5, 2)
    for f in (local_pvalues, standardise):
        with pytest.raises(InputError, match="NaN or inf"):
            f(np.array([np.nan, 3.0]), T)


def test_failed_toys_give_a_conservative_combined_p(monkeypatch):
    """Failed toys are left out of every p-value; the combination reports the
    conservative p that counts them as reaching the data, like a single width."""
    import nplearn.toys as T

    rng = np.random.default_rng(0)
    ref = rng.exponential(1 / 8, size=(2000, 1))
    data = np.vstack([rng.exponential(1 / 8, size=(200, 1)),
                      rng.normal(0.8, 0.02, size=(15, 1))])
    real, calls = T.fit_widths, [0]

    def broken(*args, **kwargs):  # the toys' fits, one call per toy (in order)
        calls[0] += 1
        if calls[0] in (3, 6, 10):
            raise FloatingPointError("numerical breakdown")
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "fit_widths", broken)
    res = nplm_test(ref, data, n_toys=12, expected=200.0, workers=1, seed=3, n_centers=100,
                    sigmas=[0.02, 0.3, 1.0])
    assert res.n_failed_toys == 3
    for cr in res.combinations.values():
        assert cr.n_toys == 9 and cr.n_failed == 3
        assert cr.p_conservative == pytest.approx((1 + cr.n_exceed + 3) / (1 + 9 + 3))
        assert cr.p_conservative >= cr.p_value
    assert "conservative p" in res.summary()
    assert "the 3 failed toys are not counted" in res.summary()  # the Bonferroni line
    assert res.to_dict()["combinations"]["min-p"]["n_failed"] == 3


def test_min_p_counts_a_toy_identical_to_the_data_whatever_the_toy_order():
    # the data set's and the toys' standardised t go through different sums and can
    # round apart: a tie at the best rank must still count against the data set, in
    # any toy order (2 of these 300 cases differed before the tolerance)
    rng = np.random.default_rng(2)
    for _ in range(300):
        n, k = int(rng.integers(5, 40)), int(rng.integers(2, 6))
        T = np.exp(rng.standard_normal((n, k)) * rng.uniform(0.1, 3)) * rng.uniform(1e-3, 1e4)
        x = T[rng.integers(n)].copy()
        counts = {int(combined_pvalues(x, T[perm], "min-p")[2][0])
                  for perm in (np.arange(n), rng.permutation(n), rng.permutation(n))}
        assert len(counts) == 1
