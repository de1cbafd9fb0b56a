"""Event weights: a reference event of weight 2 is the same as the event twice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nplearn import KernelLogisticRegression, nplm_test
from nplearn.learners.kernel import NystromBasis
from nplearn.stats import nplm_statistic


def _fit(X, y, sw, idx, lam):
    m = KernelLogisticRegression(sigma=0.8, lam=lam, tol=1e-12)
    basis = NystromBasis.build(X, idx, 0.8, m.resolved_rank_tol(), torch.device("cpu"))
    m._fit_basis(X, y, sw, basis)
    return m.train_decision_


def test_weight_two_equals_duplicated_events(rng):
    n_ref, n_dat = 600, 80
    ref, dat = rng.normal(size=(n_ref, 1)), rng.normal(0.3, 1.0, size=(n_dat, 1))
    dup = rng.choice(n_ref, size=200, replace=False)  # these reference events count twice
    n_exp = 100.0
    # weighted: one copy with weight 2 x the unit weight
    unit = n_exp / (n_ref + dup.size)
    w = np.full(n_ref, unit)
    w[dup] *= 2.0
    X = np.concatenate([ref, dat])
    y = np.r_[np.zeros(n_ref), np.ones(n_dat)]
    idx = np.arange(0, n_ref + n_dat, 7)  # the same centres in both fits
    lam = 1e-6
    f_w = _fit(X, y, np.r_[w, np.ones(n_dat)], idx, lam)
    # duplicated: the events twice, each with the unit weight. The loss is a mean
    # over events, so the penalty is rescaled by the event count to keep the problem
    Xd = np.concatenate([ref, dat, ref[dup]])
    yd = np.r_[np.zeros(n_ref), np.ones(n_dat), np.zeros(dup.size)]
    swd = np.r_[np.full(n_ref, unit), np.ones(n_dat), np.full(dup.size, unit)]
    n_w, n_d = n_ref + n_dat, n_ref + n_dat + dup.size
    f_d = _fit(Xd, yd, swd, idx, lam * n_w / n_d)
    np.testing.assert_allclose(f_d[: n_ref + n_dat], f_w, rtol=1e-6, atol=1e-8)
    t_w, nw_w = nplm_statistic(f_w[:n_ref], f_w[n_ref:], w)
    f_ref_d = np.r_[f_d[:n_ref], f_d[n_ref + n_dat:]]
    t_d, nw_d = nplm_statistic(f_ref_d, f_d[n_ref:n_ref + n_dat],
                               np.full(n_ref + dup.size, unit))
    assert t_d == pytest.approx(t_w, rel=1e-6) and nw_d == pytest.approx(nw_w, rel=1e-8)


def test_weights_enter_the_test(rng):
    # reweighting the reference to the data's shape removes the discrepancy
    ref = rng.normal(size=(20000, 1))
    data = rng.normal(0.5, 1.0, size=(400, 1))
    opts = dict(n_toys=0, n_centers=200, workers=1, expected=400.0, sigma=1.0)
    plain = nplm_test(ref, data, **opts)
    w = np.exp(0.5 * ref[:, 0] - 0.125)  # N(0.5, 1) / N(0, 1)
    weighted = nplm_test(ref, data, ref_weights=w, **opts)
    assert plain.t_obs > 30 and weighted.t_obs < 15


def test_negative_and_zero_sum_weights_refused(rng):
    from nplearn import InputError

    ref, data = rng.normal(size=(100, 1)), rng.normal(size=(20, 1))
    w = np.ones(100)
    w[5] = -1.0
    with pytest.raises(InputError, match=r"negative weight -1\.0 at row 5"):
        nplm_test(ref, data, ref_weights=w, n_toys=0)
    with pytest.raises(InputError, match="weights sum to zero"):
        nplm_test(ref, data, ref_weights=np.zeros(100), n_toys=0)


def test_percentile_widths_follow_the_weighted_reference():
    """Importance-weighted Monte Carlo: the width is a percentile of the reference
    model's pair distances, not of how the events were generated."""
    from nplearn.preprocess import pairwise_distance_percentile as pdp

    rng = np.random.default_rng(0)
    truth = pdp(rng.normal(size=(2000, 2)), [10.0, 50.0, 90.0])
    # events uniform on [-5, 5]^2, weighted to a standard normal
    u = rng.uniform(-5, 5, size=(20000, 2))
    w = np.exp(-0.5 * (u**2).sum(1))
    got = pdp(u, [10.0, 50.0, 90.0], weights=w, rng=np.random.default_rng(1))
    # ~2000 subsampled events with an effective size of a few hundred: a few percent
    np.testing.assert_allclose(got, truth, rtol=0.08)
    assert pdp(u, 90.0) > 2 * truth[2]  # the unweighted events are far wider
    # events of weight zero do not count; equal weights give the unweighted value
    x = rng.normal(size=(800, 1))
    far = np.r_[x, x[:300] + 1e3]
    assert pdp(far, 90.0, weights=np.r_[np.ones(800), np.zeros(300)]) == pdp(x, 90.0)
    assert pdp(x, [25.0, 90.0], weights=np.full(800, 3.0)).tolist() == \
        pdp(x, [25.0, 90.0]).tolist()
    # the test uses them for its default width
    data = rng.normal(size=(300, 2))
    res = nplm_test(u, data, ref_weights=w, n_toys=0, n_centers=50, workers=1,
                    expected=300.0)
    assert abs(res.hyperparameters["sigma"] / truth[2] - 1) < 0.1


def test_weights_too_heavy_for_resampled_toys_are_refused_or_flagged(rng):
    from nplearn import InputError

    data = rng.normal(size=(300, 1))
    ref = rng.normal(size=(5000, 1))
    opts = dict(expected=300.0, n_toys=4, n_centers=50, sigma=1.0, workers=1, seed=1)
    # one event of weight 1000 among 5000 of weight 1: effective size 36 < N(R) = 300,
    # a reference statistically smaller than the data (the heavy event is a spike of
    # 17% of its model, drawn into every toy's pseudo-data)
    w = np.ones(5000)
    w[0] = 1000.0
    with pytest.raises(InputError, match=r"effective sample size 36 .* is not above N\(R\) = "
                                         r"300: the reference is statistically no larger"):
        nplm_test(ref, data, ref_weights=w, **opts)
    # a toy generator, or no toys at all, do not resample it
    nplm_test(ref, data, ref_weights=w, **{**opts, "n_toys": 0})
    # ten tail events of weight 23.8: the effective size (2569) is far above N(R) = 200,
    # but each of them is expected 0.91 times in the pseudo-data, so nearly all leave
    # every toy's reference: flagged (it was not)
    w = np.ones(5010)
    w[5000:] = 23.8
    ref = np.r_[rng.uniform(-2, 2, size=(5000, 1)), rng.uniform(2, 4, size=(10, 1))]
    res = nplm_test(ref, data[:200], ref_weights=w, **{**opts, "expected": 200.0})
    info = res.reference_weights
    assert info["max_inclusion"] == pytest.approx(200 * 23.8 / w.sum())
    assert info["effective_sample_size"] > 2000 and info["resampling_approximate"]
    assert "the heaviest event is expected 0.91 times" in res.summary()


def test_events_of_weight_zero_neither_scale_nor_feed_the_toys(rng):
    from nplearn import InputError
    from nplearn.preprocess import Standardizer

    ref, data = rng.normal(size=(2000, 1)), rng.normal(size=(100, 1))
    w = rng.uniform(0.5, 1.5, size=2000)
    opts = dict(expected=100.0, n_toys=3, n_centers=40, sigma=1.0, workers=1, seed=2)
    base = nplm_test(ref, data, ref_weights=w, **opts)
    # a "not set" sentinel (ROOT's FLT_MAX) on events of weight zero: they do not count
    # in the standardisation (every other value looked constant next to them)
    ref_s, w_s = np.r_[ref, np.full((50, 1), 3.4028235e38)], np.r_[w, np.zeros(50)]
    std = Standardizer.fit(ref_s, w_s)
    assert std.to_dict() == Standardizer.fit(ref, w).to_dict()
    # a global scale of the weights changes nothing, also where their sum would
    # overflow or their values are subnormal (to the fits' tolerance: the scaled
    # weights round differently in their last bits)
    for scale in (1e305, 1e-310):
        res = nplm_test(ref, data, ref_weights=w * scale, **opts)
        assert res.t_obs == pytest.approx(base.t_obs, rel=1e-6)
        np.testing.assert_allclose(res.t_null, base.t_null, rtol=1e-6)
        info = res.reference_weights
        assert info["effective_sample_size"] == pytest.approx(
            base.reference_weights["effective_sample_size"])
    # resampled toys with some weights at zero: pseudo-data of non-zero weight only
    from nplearn.toys import ToyEngine

    wz = w.copy()
    wz[::2] = 0.0
    res = nplm_test(ref, data, ref_weights=wz, **opts)
    assert np.isfinite(res.t_null).all() and len(res.t_null) == 3
    engine = ToyEngine({"sigma": 1.0, "n_centers": 20}, 100.0, 2, pool=ref, pool_weights=wz)
    take = engine._draw_pseudo_data(np.random.default_rng(0), None)
    assert take.size > 50 and (wz[take] > 0).all()
    # shared centres: pseudo-data come from events of non-zero weight only (with 610
    # of 3000 they were filled up with events of weight zero)
    ref = rng.normal(size=(3000, 1))
    w = np.zeros(3000)
    w[:610] = 1.0
    with pytest.raises(InputError, match="of non-zero weight"):
        nplm_test(ref, rng.normal(size=(300, 1)), ref_weights=w, expected=300.0, n_toys=2,
                  n_centers=2300, centers="shared", sigma=1.0, workers=1)
