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
