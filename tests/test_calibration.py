"""Calibration: null p-values are uniform, strong signals are detected."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from nplearn import KernelLogisticRegression, calibrate, nplm_test
from nplearn.benchmarks import Exp1D
from nplearn.toys import ToyEngine, nplm_fit, run_toys

# A small version of the 1D exponential benchmark: N_R = 20000, N(R) = 200.
N_REF, EXPECTED = 20_000, 200.0
PARAMS = dict(sigma=0.3, n_centers=500, lam=1e-8)


@pytest.fixture(scope="module")
def small_null():
    rng = np.random.default_rng(2024)
    ref = Exp1D.sample_reference_events(rng, N_REF)
    engine = ToyEngine(PARAMS, EXPECTED, seed=11, pool=ref)
    toys = run_toys(engine, range(400), workers=1)
    return ref, np.array([t.t for t in toys if t.ok])


@pytest.mark.slow
def test_heldout_null_toys_have_uniform_pvalues(small_null):
    # toys against toys of the same engine are exchangeable, so this checks the rank
    # formula of the empirical p-value (the +1 rule, ties), not the toy generator: the
    # fresh-data tests below check that
    _, t = small_null
    assert t.size == 400
    calib, held = t[:300], t[300:]
    p = np.array([calibrate(x, calib).p_empirical for x in held])
    # 100 p-values: KS test against U(0,1); fails at the 1% level by chance only
    assert sps.kstest(p, "uniform").pvalue > 0.01


@pytest.mark.slow
def test_fresh_null_data_have_uniform_pvalues_against_resampled_toys(small_null):
    # The observed-data procedure (fixed reference, independent data) calibrated by
    # toys resampled from that reference: p-values of 100 independent null data
    # sets must look uniform. The toys' empirical CDF carries ~0.03 error (300
    # toys), well below the KS critical distance of ~0.16 at the 1% level.
    ref, t_null = small_null
    gen = Exp1D("none", n_ref=N_REF, expected=EXPECTED)
    w = np.full(N_REF, EXPECTED / N_REF)
    p = []
    for k in range(100):
        ss = np.random.SeedSequence(99, spawn_key=(k,))
        s_data, s_fit = ss.spawn(2)
        data = gen.sample_data(np.random.default_rng(s_data))
        t, *_ = nplm_fit(ref, data, w, KernelLogisticRegression(**PARAMS), s_fit)
        p.append(calibrate(t, t_null[:300]).p_empirical)
    assert sps.kstest(np.array(p), "uniform").pvalue > 0.01


@pytest.mark.slow
def test_null_is_chi2_like_with_the_dof_of_this_setup(small_null):
    # A regression pin: these 400 toys fit a chi-square with 7.39 dof (measured at commit
    # 63f1a0e; the bootstrap spread over the toys is 0.18), so the window of 0.75 (~4 sd)
    # fails on a real change of the statistic's scale (t 1.5x too large gives ~10.9 dof)
    # and not on noise; the fit itself must be acceptable (KS p > 0.01).
    _, t = small_null
    res = calibrate(float(np.median(t)), t)
    assert abs(res.chi2_dof - 7.39) < 0.75
    assert res.chi2_ks_pvalue > 0.01


@pytest.mark.slow
def test_strong_signal_gives_large_z():
    rng = np.random.default_rng(7)
    ref = Exp1D.sample_reference_events(rng, N_REF)
    bump = rng.normal(0.2, 0.02, size=(60, 1))
    data = np.vstack([Exp1D.sample_reference_events(rng, 200), bump])
    res = nplm_test(ref, data, expected=EXPECTED, n_toys=50, sigma=0.3, n_centers=500,
                    lam=1e-8, standardize=False, workers=1, seed=1)
    assert res.calibration.n_exceed == 0
    assert res.z > 3.0 and res.calibration.method == "chi2"
    assert res.calibration.z_empirical == pytest.approx(sps.norm.isf(1 / 51))


@pytest.mark.slow
def test_shared_centres_fresh_null_data_have_uniform_pvalues():
    # Same check for centers="shared": the observed fits and the toys use one
    # basis drawn from the reference; p-values of independent null data sets
    # against the resampled toys must look uniform.
    from nplearn.toys import nplm_fit_shared, shared_basis

    rng = np.random.default_rng(77)
    ref = Exp1D.sample_reference_events(rng, N_REF)
    engine = ToyEngine(PARAMS, EXPECTED, seed=5, pool=ref, shared_centers=True)
    t_null = np.array([t.t for t in run_toys(engine, range(300), workers=1) if t.ok])
    assert t_null.size == 300
    gen = Exp1D("none", n_ref=N_REF, expected=EXPECTED)
    w = np.full(N_REF, EXPECTED / N_REF)
    learner = KernelLogisticRegression(**PARAMS)
    basis = shared_basis(ref, learner, 5)
    p = []
    for k in range(100):
        data = gen.sample_data(np.random.default_rng(np.random.SeedSequence(98, spawn_key=(k,))))
        t, *_ = nplm_fit_shared(ref, data, w, learner, basis)
        p.append(calibrate(t, t_null).p_empirical)
    assert sps.kstest(np.array(p), "uniform").pvalue > 0.01
