"""Power-study benchmarks (nplearn.benchmarks.suite) and their ideal test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from nplearn import InputError
from nplearn.benchmarks import Exp1D, suite
from nplearn.benchmarks.suite import (
    Exp1DScaled,
    GaussSuite,
    PowerBenchmark,
    get_benchmark,
    ideal_power,
    ideal_t,
    ideal_t_toys,
    reweighted_null_sf,
)

EXP_SIGNALS = list(suite.EXP1D8_SIGNALS)
GAUSS_SIGNALS = list(suite.GAUSS_SIGNALS)


def _benches() -> list[PowerBenchmark]:
    return [Exp1DScaled(), GaussSuite(d=2), GaussSuite(d=5)]


# -- Exp1DScaled ---------------------------------------------------------------------------
@pytest.mark.parametrize("signal", EXP_SIGNALS)
def test_exp1d8_expected_density_integrates_to_total_yield(signal):
    b = Exp1DScaled()
    _, mean, sd = suite.EXP1D8_SIGNALS[signal]

    def n1(x):
        return float(np.exp(b.log_ratio(np.array([x]), signal))[0]) * b.expected * math.exp(-x)

    hi = mean + 30 * sd
    inner = integrate.quad(n1, 0, hi, points=[mean - 5 * sd, mean, mean + 5 * sd],
                           limit=500, epsabs=1e-9, epsrel=1e-12)[0]
    outer = integrate.quad(n1, hi, np.inf, epsabs=1e-9)[0]
    assert inner + outer == pytest.approx(b.expected + b.yield_excess(signal), abs=1e-6)


@pytest.mark.parametrize("signal", ["bulk", "tail"])
def test_exp1d8_is_exp1d_rescaled_by_8(signal):
    # log n1/n0 is invariant under x' = 8 x (the Jacobians cancel): compare with the
    # independent implementation of Exp1D.
    b, g = Exp1DScaled(), Exp1D(signal)
    x = g.sample_data(np.random.default_rng(0))
    np.testing.assert_allclose(b.log_ratio(8 * x, signal), g.log_ratio(x), rtol=1e-10, atol=1e-14)
    assert ideal_t(b, 8 * x, signal) == pytest.approx(g.ideal_t(x), rel=1e-10, abs=1e-9)


def test_exp1d8_log_ratio_direct_and_stable():
    b = Exp1DScaled()
    x = np.array([3.99, 4.0, 4.005, 4.02])
    direct = np.log1p(7 * stats.norm(4.0, 0.01).pdf(x) / (2000 * np.exp(-x)))
    np.testing.assert_allclose(b.log_ratio(x, "narrow4"), direct, rtol=1e-9)
    far = np.array([0.0, 50.0, 1e3, 1e6])
    for s in EXP_SIGNALS:
        lr = b.log_ratio(far, s)
        assert np.isfinite(lr).all() and (lr >= 0).all()


@pytest.mark.parametrize("signal", EXP_SIGNALS)
def test_exp1d8_signal_sampler_ks(signal):
    b = Exp1DScaled()
    _, mean, sd = suite.EXP1D8_SIGNALS[signal]
    x = b.sample_signal_events(np.random.default_rng(1), signal, 3000)[:, 0]
    # scipy's untruncated normal CDF: the truncation at 0 changes it by < 1e-9
    assert stats.kstest(x, stats.norm(mean, sd).cdf).pvalue > 1e-3
    assert stats.kstest(x, lambda v: b.signal_cdf(v, signal)).pvalue > 1e-3


def test_exp1d8_data_follow_the_mixture_and_poisson_counts():
    b = Exp1DScaled()
    rng = np.random.default_rng(2)
    sets = [b.sample_data(rng, "bulk") for _ in range(300)]
    counts = np.array([len(s) for s in sets])
    mu = b.expected + b.yield_excess("bulk")  # 2090
    # mean of 300 Poisson(2090) counts: sd sqrt(2090/300) = 2.6
    assert abs(counts.mean() - mu) < 4 * math.sqrt(mu / 300)
    # variance/mean of a Poisson sample: sd about sqrt(2/299) = 0.08
    assert 0.65 < counts.var(ddof=1) / counts.mean() < 1.35
    x = np.concatenate(sets)[:, 0]

    def cdf(v):
        return (b.expected * -np.expm1(-np.clip(v, 0, None))
                + 90 * stats.norm(1.6, 0.16).cdf(v)) / mu

    # the signal is 4.3 % of the 627 000 events: without it, D = 0.04 >> 1.36/sqrt(n)
    assert stats.kstest(x, cdf).pvalue > 1e-3


def test_n_signal_scale():
    b = Exp1DScaled(n_signal_scale=0.5)
    assert b.yield_excess("tail") == 5.0
    assert b.describe("tail") == "N(S)=5, Gaussian(6.4, 0.16)"
    g = GaussSuite(d=2, n_signal_scale=2.0)
    assert g.yield_excess("bump") == 2 * GaussSuite(d=2).yield_excess("bump")
    assert g.eps == pytest.approx(2 * GaussSuite(d=2).eps)


# -- GaussSuite ------------------------------------------------------------------------------
def _independent_logpdfs(b: GaussSuite, x: np.ndarray, signal: str):
    """(log p_R, log p_S, c) with scipy, where n_1 / N(R) = p_R + c p_S."""
    d = b.d
    log_p0 = stats.multivariate_normal(np.zeros(d), np.eye(d)).logpdf(x)
    if signal == "bump":
        mu = np.zeros(d)
        mu[:2] = 1.5
        cov = np.eye(d)
        cov[0, 0] = cov[1, 1] = 0.3**2
        return log_p0, stats.multivariate_normal(mu, cov).logpdf(x), b.yield_excess(signal) / (
            b.expected)
    if signal == "tail":
        ps = stats.multivariate_normal(np.zeros(d), 2.5**2 * np.eye(d)).logpdf(x)
        return log_p0, ps, b.yield_excess(signal) / b.expected
    if signal == "corr":
        cov = np.eye(d)
        cov[0, 1] = cov[1, 0] = b.rho
        # n_1 = N(R) p_corr = N(R) (p_R + (p_corr - p_R)): use c = 1 with p_S = p_corr - p_R
        return log_p0, stats.multivariate_normal(np.zeros(d), cov).logpdf(x), None
    return log_p0, log_p0, b.eps  # norm: n_1 / N(R) = (1 + eps) p_R


def _independent_log_ratio(b, x, signal):
    log_p0, log_ps, c = _independent_logpdfs(b, x, signal)
    if c is None:  # corr
        return log_ps - log_p0
    return np.logaddexp(log_p0, math.log(c) + log_ps) - log_p0


@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("signal", GAUSS_SIGNALS)
def test_gauss_log_ratio_matches_scipy_densities(d, signal):
    b = GaussSuite(d=d)
    rng = np.random.default_rng(3)
    x = np.concatenate([b.sample_data(rng, signal)[:500], b.sample_signal_events(rng, signal, 500),
                        4.0 * rng.standard_normal((100, d))])
    np.testing.assert_allclose(b.log_ratio(x, signal), _independent_log_ratio(b, x, signal),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("signal", GAUSS_SIGNALS)
def test_gauss_expected_yield_monte_carlo(signal):
    # E_R[exp(log_ratio)] = 1 + yield_excess / N(R), estimated by stratified defensive
    # importance sampling from q = (p_R + p_S) / 2 (half the events from each), with
    # p_R and the signal-event density p_S written independently with scipy: the weights
    # exp(log_ratio) p_R / q are bounded, unlike exp(log_ratio) under p_R for the tail
    # signal (infinite variance). The signal yields are scaled up so the expected excess
    # (>= 4 %) dwarfs the Monte Carlo error, estimated from the two halves (5 sigma cut).
    d, n = 5, 100_000
    b = GaussSuite(d=d, n_signal_scale=1.0 if signal in ("corr", "norm") else 200.0)
    rng = np.random.default_rng(4)
    halves = [b.sample_reference_events(rng, n), b.sample_signal_events(rng, signal, n)]
    means, variances = [], []
    for x in halves:
        log_p0, log_ps, _ = _independent_logpdfs(b, x, signal)
        log_q = np.logaddexp(log_p0, log_ps) - math.log(2.0)
        w = np.exp(b.log_ratio(x, signal) + log_p0 - log_q)
        means.append(w.mean())
        variances.append(w.var(ddof=1) / n)
    est = 0.5 * (means[0] + means[1])
    se = 0.5 * math.sqrt(variances[0] + variances[1])
    target = 1.0 + b.yield_excess(signal) / b.expected
    assert se < 2e-3 if signal != "corr" else se < 3e-4  # corr: 0.5 rho^2 = 1.8e-3 visible
    assert abs(est - target) < 5 * se + 1e-12  # norm: constant weights, se = 0


@pytest.mark.parametrize("d", [2, 5])
def test_gauss_samplers(d):
    b = GaussSuite(d=d)
    rng = np.random.default_rng(5)
    n = 4000
    bump = b.sample_signal_events(rng, "bump", n)
    for j, (m, s) in enumerate([(1.5, 0.3), (1.5, 0.3)] + [(0.0, 1.0)] * (d - 2)):
        assert stats.kstest(bump[:, j], stats.norm(m, s).cdf).pvalue > 1e-3
    tail = b.sample_signal_events(rng, "tail", n)
    assert stats.kstest((tail**2).sum(1) / 2.5**2, stats.chi2(d).cdf).pvalue > 1e-3
    assert stats.kstest(tail[:, 0], stats.norm(0, 2.5).cdf).pvalue > 1e-3
    ref = b.sample_reference_events(rng, n)
    assert stats.kstest((ref**2).sum(1), stats.chi2(d).cdf).pvalue > 1e-3

    corr = np.concatenate([b.sample_data(rng, "corr") for _ in range(20)])
    r = np.corrcoef(corr[:, 0], corr[:, 1])[0, 1]
    assert abs(r - b.rho) < 4 / math.sqrt(corr.shape[0])  # sd of r about 1/sqrt(n) = 0.003
    u = (corr[:, 0] + corr[:, 1]) / math.sqrt(2 + 2 * b.rho)
    assert stats.kstest(u, "norm").pvalue > 1e-3


@pytest.mark.parametrize("signal", ["none", *GAUSS_SIGNALS])
def test_gauss_data_counts_are_poisson(signal):
    b = GaussSuite(d=2)
    rng = np.random.default_rng(6)
    counts = np.array([b.sample_data(rng, signal).shape[0] for _ in range(200)])
    mu = b.expected + b.yield_excess(signal)
    # sd of the mean of 200 Poisson(mu) counts is sqrt(mu / 200) = 5 (norm: eps N(R) = 212)
    assert abs(counts.mean() - mu) < 4 * math.sqrt(mu / 200)
    assert 0.6 < counts.var(ddof=1) / counts.mean() < 1.4  # sd of the ratio 0.1


# -- the ideal test --------------------------------------------------------------------------
@pytest.mark.parametrize(("bench", "signal", "n_toys"), [
    (Exp1DScaled(), "tail", 2500),
    (Exp1DScaled(), "mid4", 1500),
    (GaussSuite(d=2), "bump", 1000),
    (GaussSuite(d=2), "norm", 1000),
])
def test_reweighted_null_sf_agrees_with_direct_null_toys(bench, signal, n_toys):
    # P0(T >= t) from signal toys weighted by exp(-T/2) must match the fraction of null
    # toys above t; it fails e.g. if yield_excess and log_ratio are inconsistent (a shift
    # of T by 2 N(S) multiplies the reweighted estimate by exp(-N(S))).
    rng = np.random.default_rng(7)
    t_sig = ideal_t_toys(bench, signal, rng, n_toys)
    t_null = ideal_t_toys(bench, signal, rng, n_toys, truth="none")
    for q in (0.5, 0.95):
        t = np.quantile(t_null, q)
        direct = np.mean(t_null >= t)  # not 1 - q for the discrete "norm" statistic
        p_is = float(reweighted_null_sf(t, t_sig))
        w = np.exp(-0.5 * t_sig) * (t_sig >= t)
        se = math.sqrt(direct * (1 - direct) / n_toys + w.var() / n_toys)
        assert abs(p_is - direct) < 4 * se, (q, p_is, direct, se)


def test_ideal_t_toys_batched_equals_per_data_set():
    b = GaussSuite(d=2)
    x, toy = b.sample_data_batch(np.random.default_rng(8), "bump", 5)
    manual = [ideal_t(b, x[toy == i], "bump") for i in range(5)]
    np.testing.assert_allclose(ideal_t_toys(b, "bump", np.random.default_rng(8), 5), manual,
                               rtol=1e-10)


def test_ideal_t_toys_generic_benchmark_path(monkeypatch):
    # a benchmark without sample_data_batch is sampled one data set at a time; with
    # small chunks several chunks are needed
    class Plain:
        def __init__(self, inner):
            self._b = inner
            self.name, self.d, self.n_ref, self.expected = (inner.name, inner.d, inner.n_ref,
                                                            inner.expected)

        def __getattr__(self, item):
            if item == "sample_data_batch":
                raise AttributeError(item)
            return getattr(self._b, item)

    monkeypatch.setattr(suite, "_CHUNK_VALUES", 5000)
    b = Plain(Exp1DScaled())
    assert isinstance(b, PowerBenchmark)
    got = ideal_t_toys(b, "tail", np.random.default_rng(9), 7)
    rng = np.random.default_rng(9)
    want = [ideal_t(b, b.sample_data(rng, "tail"), "tail") for _ in range(7)]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_ideal_power_exp1d8_tail_matches_exp1d():
    r = ideal_power(Exp1DScaled(), "tail", np.random.default_rng(10), n_toys=4000,
                    z_thresholds=(2.0, 3.0, 5.0))
    assert set(r) >= {"power", "median_z", "z16", "z84", "n_toys"}
    assert r["n_toys"] == 4000
    assert list(r["power"]) == ["2", "3", "5"]
    assert 1 >= r["power"]["2"] >= r["power"]["3"] >= r["power"]["5"] >= 0
    assert r["z16"] < r["median_z"] < r["z84"]
    # the ideal median Z of "tail": 4.756 with a spread of 0.020 over 10 replicas of
    # 4000 toys (seeds 100-109), and 4.78 from the Asimov integral of the exact densities
    # (a review's independent check); 0.12 is 6 sd, allowing for the rough spread
    assert abs(r["median_z"] - 4.76) < 0.12
    # half of the toys lie above the median
    assert r["power"]["5"] < 0.5 if r["median_z"] < 5 else r["power"]["5"] >= 0.5


def test_reweighted_null_sf_basic():
    ts = np.array([0.0, 2.0, 4.0])
    sf = reweighted_null_sf(np.array([-1.0, 0.0, 1.0, 4.0, 5.0]), ts)
    w = np.exp(-0.5 * ts) / 3
    np.testing.assert_allclose(sf, [w.sum(), w.sum(), w[1:].sum(), w[2], 0.0])
    with pytest.raises(InputError):
        reweighted_null_sf(1.0, np.array([]))


# -- interface ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bench", _benches(), ids=lambda b: b.name)
def test_every_signal_works(bench):
    assert isinstance(bench, PowerBenchmark)
    rng = np.random.default_rng(11)
    ref = bench.sample_reference_events(rng, 50)
    assert ref.shape == (50, bench.d)
    for s in bench.signals():
        data = bench.sample_data(rng, s)
        assert data.ndim == 2 and data.shape[1] == bench.d and np.isfinite(data).all()
        lr = bench.log_ratio(data, s)
        assert lr.shape == (data.shape[0],) and np.isfinite(lr).all()
        assert isinstance(bench.yield_excess(s), float)
        desc = bench.describe(s)
        assert isinstance(desc, str) and desc and "\n" not in desc
        assert math.isfinite(ideal_t(bench, data, s))
    null = bench.sample_data(rng, "none")
    assert not bench.log_ratio(null, "none").any()
    assert bench.yield_excess("none") == 0.0
    assert ideal_t(bench, null, "none") == 0.0


@pytest.mark.parametrize("bench", _benches(), ids=lambda b: b.name)
def test_unknown_signal_raises(bench):
    rng = np.random.default_rng(12)
    x = bench.sample_reference_events(rng, 3)
    for call in (lambda: bench.sample_data(rng, "nope"), lambda: bench.log_ratio(x, "nope"),
                 lambda: bench.yield_excess("nope"), lambda: bench.describe("nope"),
                 lambda: ideal_power(bench, "nope", rng, 10)):
        with pytest.raises(InputError, match=r"unknown signal 'nope'.*choose from"):
            call()
    with pytest.raises(InputError, match="needs a signal"):
        ideal_power(bench, "none", rng, 10)


def test_bad_arguments():
    with pytest.raises(InputError, match="d must be"):
        GaussSuite(d=1)
    with pytest.raises(InputError, match="expected"):
        Exp1DScaled(expected=0.0)
    with pytest.raises(InputError, match="n_signal_scale"):
        Exp1DScaled(n_signal_scale=-1.0)
    with pytest.raises(InputError, match=r"shape \(n, 3\)"):
        GaussSuite(d=3).log_ratio(np.zeros((4, 2)), "bump")
    with pytest.raises(InputError, match="unknown benchmark"):
        get_benchmark("gauss")
    assert get_benchmark("gauss7d").d == 7
    assert get_benchmark("exp1d8", expected=100.0).expected == 100.0
    assert [get_benchmark(n).name for n in suite.SUITE] == list(suite.SUITE)
