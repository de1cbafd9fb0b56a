"""Test statistic, p-values, chi-square fit and Z."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from nplearn import (
    InputError,
    KernelLogisticRegression,
    calibrate,
    chi2_pvalue,
    empirical_pvalue,
    fit_chi2_dof,
    nplm_statistic,
    p_to_z,
    z_to_p,
)
from nplearn.stats import _chi2_logsf_asymptotic, chi2_logsf


def test_statistic_hand_computed():
    f_ref = np.array([0.0, np.log(2.0), -np.log(4.0)])
    w = np.array([0.5, 0.25, 1.0])
    f_data = np.array([0.1, -0.3])
    # t = 2[(0.1 - 0.3) - (0.5*0 + 0.25*(2-1) + 1*(0.25-1))] = 2[-0.2 + 0.5] = 0.6
    t, n_w = nplm_statistic(f_ref, f_data, w)
    assert t == pytest.approx(0.6, abs=1e-14)
    # N_w = 0.5*1 + 0.25*2 + 1*0.25 = 1.25
    assert n_w == pytest.approx(1.25, abs=1e-14)


def test_statistic_zero_for_zero_function():
    t, n_w = nplm_statistic(np.zeros(10), np.zeros(4), np.full(10, 0.4))
    assert t == 0.0 and n_w == pytest.approx(4.0)


def test_statistic_shape_mismatch():
    with pytest.raises(InputError, match="differ in shape"):
        nplm_statistic(np.zeros(3), np.zeros(2), np.ones(4))


def test_nw_tracks_data_count_not_expected_yield():
    # Extended-likelihood normalisation: with a flexible model and lambda -> 0 the
    # fitted yield N_w follows the observed N_D even when N_D is 30% above N(R).
    rng = np.random.default_rng(3)
    n_ref, expected = 40000, 1000.0
    ref = rng.exponential(1 / 8, size=(n_ref, 1))
    data = rng.exponential(1 / 8, size=(1300, 1))
    w = np.full(n_ref, expected / n_ref)
    X = np.vstack([ref, data])
    y = np.r_[np.zeros(n_ref), np.ones(len(data))].astype(int)
    m = KernelLogisticRegression(sigma=0.3, n_centers=1000, lam=1e-10, random_state=0)
    m.fit(X, y, np.r_[w, np.ones(len(data))])
    t, n_w = nplm_statistic(m.train_decision_[:n_ref], m.train_decision_[n_ref:], w)
    # |N_w - N_D| is set by the difference between the logistic and the extended
    # likelihood losses, O(t) events; the Poisson scale of the shift is sqrt(1000)~32
    assert abs(n_w - 1300) < 5.0
    assert t > 50  # a 30% normalisation excess is very significant


def test_empirical_pvalue_plus_one_rule():
    t_null = np.array([1.0, 2.0, 3.0, 4.0])
    assert empirical_pvalue(2.5, t_null) == pytest.approx(3 / 5)
    assert empirical_pvalue(10.0, t_null) == pytest.approx(1 / 5)
    assert empirical_pvalue(-1.0, t_null) == pytest.approx(1.0)
    # a toy at +inf lies beyond any t_obs; a NaN (failed) toy is refused, not dropped
    assert empirical_pvalue(10.0, np.r_[t_null, np.inf]) == pytest.approx(2 / 6)
    with pytest.raises(InputError, match="1 of the null statistics are NaN"):
        empirical_pvalue(2.5, np.r_[t_null, np.nan])


def test_reported_p_never_grows_with_t_obs_across_the_largest_toy():
    # just below the largest toy the toys' p is 2/(n+1); just beyond it a chi-square
    # extrapolation above the toys' bound 1/(n+1) was reported (28 of 200 null sets):
    # a larger t_obs came out less significant
    for seed in range(40):
        t = np.random.default_rng(seed).chisquare(5, size=200)
        top = float(t.max())
        below, beyond = calibrate(top * (1 - 1e-12), t), calibrate(top * (1 + 1e-12), t)
        assert below.n_exceed == 1 and beyond.n_exceed == 0
        assert beyond.p_value <= 1 / 201 < below.p_value
        if beyond.method == "empirical" and beyond.p_chi2 > 1 / 201:
            assert beyond.chi2_unused == "not below the toys' bound"


def test_calibrate_counts_failed_and_infinite_toys():
    rng = np.random.default_rng(5)
    t = rng.chisquare(10, size=60)
    c = calibrate(5.0 * t.max(), np.r_[np.inf, t])  # only the infinite toy is beyond
    assert c.n_toys == 61 and c.n_exceed == 1 and c.method == "empirical"
    assert c.p_value == pytest.approx(2 / 62)
    assert c.chi2_dof == pytest.approx(calibrate(5.0, t).chi2_dof)  # fitted to the finite
    c = calibrate(5.0, np.r_[np.nan, np.nan, t], n_failed=1)
    assert c.n_toys == 60 and c.n_failed == 3
    # a negative t_obs: every toy reaches it, which is why no chi-square value is used
    c = calibrate(-3.0, t)
    assert math.isfinite(c.chi2_dof) and c.chi2_unused == "enough toys reach t_obs"


def test_reported_p_is_the_toys_whenever_a_toy_reaches_t_obs():
    # a null with a heavier tail than any chi-square (log-normal): with 3 of 300 toys
    # at or above t_obs the toys' p (4/301) is exact, while the chi-square fitted to
    # the bulk claims more; replacing the first by the second made the reported p
    # anti-conservative (about twice the nominal rate at 0.01, 3x at Z = 3)
    t = 10.0 * np.exp(0.45 * np.random.default_rng(11).standard_normal(300))
    t_obs = float(np.sort(t)[-3])
    c = calibrate(t_obs, t)
    assert c.n_exceed == 3 and c.p_chi2 < c.p_empirical
    assert c.method == "empirical" and c.p_value == pytest.approx(4 / 301)
    # its 68% Clopper-Pearson interval: 3 of 300 (asymmetric, unlike a binomial error)
    lo, hi = c.p_empirical_interval
    assert sps.binom.sf(2, 300, lo) == pytest.approx(0.16, rel=1e-6)
    assert sps.binom.cdf(3, 300, hi) == pytest.approx(0.16, rel=1e-6)
    old_rule = calibrate(t_obs, t, min_exceed=10)
    assert old_rule.method == "chi2" and old_rule.p_value == c.p_chi2


def test_p_z_roundtrip():
    for z in (-1.0, 0.0, 1.0, 3.0, 5.0, 8.0):
        assert p_to_z(z_to_p(z)) == pytest.approx(z, abs=1e-9)
    assert p_to_z(0.5) == pytest.approx(0.0)
    assert p_to_z(0.0) == math.inf
    with pytest.raises(InputError):
        p_to_z(1.5)


def test_chi2_pvalue_large_t_keeps_finite_z():
    p, z = chi2_pvalue(3000.0, 10.0)
    assert p == 0.0 or p < 1e-300
    assert math.isfinite(z) and z > 40
    # the asymptotic branch joins scipy's exact value where both work
    for t in (300.0, 1000.0):
        assert _chi2_logsf_asymptotic(t, 10.0) == pytest.approx(sps.chi2.logsf(t, 10.0),
                                                                rel=1e-12)
    lp = chi2_logsf(1600.0, 10.0)
    assert math.isfinite(lp) and lp < chi2_logsf(1000.0, 10.0)


def test_chi2_fit_recovers_dof():
    # KS-optimal dof on 2000 chi2(10) samples: mean 9.997 and spread 0.092 dof over 100
    # replicas (seeds 1000-1099), so a 0.4-dof window (4.3 sd) fails only on a bias of a
    # few percent (a fit 8% high would be 0.8 dof off).
    rng = np.random.default_rng(0)
    t = rng.chisquare(10.0, size=2000)
    dof, ksd, ksp = fit_chi2_dof(t)
    assert abs(dof - 10.0) < 0.4
    assert ksd < 0.03 and ksp > 0.05


def test_chi2_fit_needs_values():
    with pytest.raises(InputError, match="at least 5"):
        fit_chi2_dof(np.array([1.0, 2.0]))


def test_calibration_method_switch():
    rng = np.random.default_rng(1)
    t_null = rng.chisquare(8.0, size=400)
    inside = calibrate(8.0, t_null)
    assert inside.method == "empirical" and inside.n_exceed >= 10
    assert inside.p_value == inside.p_empirical
    far = calibrate(60.0, t_null)
    assert far.method == "chi2" and far.n_exceed == 0
    assert far.p_value == far.p_chi2 and far.z > 5
    assert far.z_empirical == pytest.approx(p_to_z(1 / 401))
    # the chi2 extrapolation agrees with the truth for a true chi2 null: over 100
    # replicas of 400 toys (seeds 2000-2099) z_chi2 has mean 6.121 (the truth) and
    # spread 0.033, so 0.15 is a 4.5-sd window
    assert far.z_chi2 == pytest.approx(p_to_z(sps.chi2.sf(60.0, 8.0)), abs=0.15)
    # a null that no chi2 describes (a two-peaked mixture): the fit is rejected and the
    # reported value stays the toys' bound, not an extrapolation
    odd = np.r_[rng.chisquare(2.0, size=300), 40.0 + rng.chisquare(2.0, size=300)]
    rej = calibrate(200.0, odd)
    assert rej.chi2_ks_pvalue < 0.01 and math.isfinite(rej.z_chi2)
    assert rej.method == "empirical" and rej.p_value == pytest.approx(1 / 601)
    # too few toys to judge a fit: the toys' p is reported, the fit's is only shown
    few = calibrate(60.0, t_null[:49])
    assert few.method == "empirical" and math.isfinite(few.z_chi2)
    assert few.p_value == pytest.approx(1 / 50)
    assert calibrate(60.0, t_null[:50]).method == "chi2"


def test_public_helpers_refuse_meaningless_input():
    from nplearn.multitest import combine, combine_all
    from nplearn.power import clopper_pearson
    from nplearn.stats import chi2_pvalue, empirical_pvalue

    cases = [
        (lambda: empirical_pvalue(3.0, []), "no finite null toys"),
        (lambda: chi2_pvalue(5.0, -1.0), "degrees of freedom must be a positive"),
        (lambda: clopper_pearson(11, 10), "0 <= k <= n"),
        (lambda: combine(np.zeros((1, 0)), "min-p"), "at least one width"),
        (lambda: combine(np.full((2, 2, 2), 0.5), "min-p"), "at least one width"),
        (lambda: combine_all(np.ones((2, 2)), np.arange(10.0).reshape(5, 2)), "1-D"),
    ]
    for call, match in cases:
        with pytest.raises(InputError, match=match):
            call()
    # p = 1 (every toy above t_obs): the binomial error is zero, not a tiny number
    cal = calibrate(-1.0, np.arange(10.0))
    assert cal.p_empirical == 1.0 and cal.p_empirical_err == 0.0


def test_chi2_tail_is_not_reported_against_the_toys_that_reach_t_obs():
    # 5 of 200 toys at t = 40 (a heavier tail than the chi-square the bulk fits): at
    # t_obs = 35 the chi-square's p ~ 1e-6 lies far below the 95% Clopper-Pearson
    # interval of 5/200 (0.008-0.057), so the toys' p is reported; without those toys
    # the extrapolation beyond them is reported as before
    from nplearn.stats import calibrate

    rng = np.random.default_rng(3)
    bulk = rng.chisquare(5, size=195)
    heavy = calibrate(35.0, np.r_[bulk, np.full(5, 40.0)], min_exceed=10)
    assert heavy.n_exceed == 5 and heavy.p_chi2 < 1e-4
    assert heavy.method == "empirical" and heavy.p_value == pytest.approx(6 / 201)
    assert heavy.chi2_unused == "the toys contradict its tail"
    light = calibrate(35.0, np.r_[bulk, rng.chisquare(5, size=5)])
    assert light.n_exceed == 0 and light.method == "chi2"
    # a chi-square tail within the toys' interval is reported when asked for
    # (min_exceed > 1; by default the toys' p is reported whenever a toy reaches t_obs)
    mid = calibrate(float(np.sort(bulk)[-4]), bulk, min_exceed=10)
    assert 0 < mid.n_exceed < 10 and mid.method == "chi2"
    assert calibrate(float(np.sort(bulk)[-4]), bulk).method == "empirical"


def test_summary_says_how_far_the_chi2_tail_reaches_beyond_the_toys():
    import dataclasses

    from nplearn import nplm_test
    from nplearn.stats import calibrate

    rng = np.random.default_rng(4)
    ref = rng.normal(size=(3000, 1))
    res = nplm_test(ref, rng.normal(size=(300, 1)), n_toys=60, workers=1, n_centers=40,
                    expected=300.0)
    top = float(res.t_null.max())
    c = calibrate(3 * top, res.t_null)
    far = dataclasses.replace(res, t_obs=3 * top, calibration=c, p_value=c.p_value, z=c.z)
    assert c.method == "chi2"
    assert f"(beyond every toy: the largest is {top:.4g})" in far.summary()
    # toys above t_obs that contradict the chi-square tail: said where it is not reported
    t = np.r_[rng.chisquare(5, size=195), np.full(5, 40.0)]
    c = calibrate(35.0, t, min_exceed=10)
    odd = dataclasses.replace(res, t_null=t, t_obs=35.0, calibration=c, p_value=c.p_value,
                              z=c.z)
    assert "(not reported: the toys contradict its tail)" in odd.summary()


def test_conservative_p_is_never_below_the_reported_p():
    from nplearn.stats import calibrate

    rng = np.random.default_rng(6)
    t = rng.chisquare(5, size=200)
    c = calibrate(float(np.sort(t)[-3]), t, n_failed=1, min_exceed=10)  # chi2, 3 toys above
    assert c.method == "chi2"
    assert c.p_conservative == max(c.p_value, (1 + c.n_exceed + 1) / (1 + 200 + 1))
    assert c.p_conservative >= c.p_value


def test_chi2_tail_heavier_than_toys_that_never_reach_it_is_not_reported():
    # 3000 toys whose tail stops at 14 (a chi-square(5) with nothing above): at
    # t_obs = 14.5 no toy reaches it, so p <= 1/3001, but the chi-square's p ~ 0.013 is
    # far above the toys' 95% upper bound at 0 of 3000 (0.0012): the bound is reported
    from nplearn.stats import calibrate

    t = np.minimum(np.random.default_rng(8).chisquare(5, size=3000), 14.0)
    c = calibrate(14.5, t)
    assert c.n_exceed == 0 and c.chi2_ks_pvalue >= 0.01 and c.p_chi2 > 0.005
    assert c.method == "empirical" and c.p_value == pytest.approx(1 / 3001)
