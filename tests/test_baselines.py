"""Tests of the baseline goodness-of-fit statistics (nplearn.baselines)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist

from nplearn import baselines as bl
from nplearn.errors import InputError

# ------------------------------------------------------------ brute force


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1))


def _energy_brute(r: np.ndarray, x: np.ndarray, w: np.ndarray | None = None) -> float:
    p = np.full(len(r), 1 / len(r)) if w is None else w / w.sum()
    q = np.full(len(x), 1 / len(x))
    e = 2 * p @ _pairwise(r, x) @ q - p @ _pairwise(r, r) @ p - q @ _pairwise(x, x) @ q
    return len(x) * float(e)


def _mmd_brute(r: np.ndarray, x: np.ndarray, sigma: float, w: np.ndarray | None = None) -> float:
    p = np.full(len(r), 1 / len(r)) if w is None else w / w.sum()
    n = len(x)

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-(_pairwise(a, b) ** 2) / (2 * sigma**2))

    krr, kdd = k(r, r), k(x, x)
    np.fill_diagonal(krr, 0.0)
    np.fill_diagonal(kdd, 0.0)
    u_rr = (p @ krr @ p) / (1 - p @ p)
    u_dd = kdd.sum() / (n * (n - 1))
    return n * float(u_rr + u_dd - 2 * p @ k(r, x) @ np.full(n, 1 / n))


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force many small blocks so that the blocking logic is exercised."""
    monkeypatch.setattr(bl, "_BLOCK_ELEMS", 97)


# --------------------------------------------------------------------- KS


def test_ks_matches_scipy_unweighted() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(400, 3))
    dat = rng.normal(0.15, 1.0, size=(150, 3))
    res = [stats.ks_2samp(ref[:, j], dat[:, j], method="asymp") for j in range(3)]
    p = np.full(400, 1 / 400)
    np.testing.assert_allclose(
        bl._ks_distances(ref, p, dat), [r.statistic for r in res], rtol=0, atol=1e-12
    )
    p_bonf = min(1.0, 3 * min(r.pvalue for r in res))
    assert bl.ks_bonferroni_pvalue(ref, dat) == pytest.approx(p_bonf, rel=1e-9)
    assert bl.ks_bonferroni(ref, dat) == pytest.approx(-math.log(p_bonf), rel=1e-9)
    # explicit uniform weights give the same
    assert bl.ks_bonferroni(ref, dat, np.full(400, 2.5)) == pytest.approx(
        bl.ks_bonferroni(ref, dat), rel=1e-12
    )


def test_ks_with_ties_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 6, size=(300, 1)).astype(float)
    dat = rng.integers(0, 7, size=(80, 1)).astype(float)
    d_scipy = stats.ks_2samp(ref[:, 0], dat[:, 0]).statistic
    assert bl._ks_distances(ref, np.full(300, 1 / 300), dat)[0] == pytest.approx(
        d_scipy, abs=1e-12
    )


def test_weighted_ks_equals_duplicated_sample() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(60, 2)).round(1)  # rounding creates ties
    dat = rng.normal(0.3, 1.0, size=(40, 2)).round(1)
    counts = rng.integers(1, 5, size=60)
    dup = np.repeat(ref, counts, axis=0)
    expect = [stats.ks_2samp(dup[:, j], dat[:, j]).statistic for j in range(2)]
    got = bl._ks_distances(ref, counts / counts.sum(), dat)
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-12)


def test_ks_effective_size_uses_kish() -> None:
    w = np.array([1.0, 1.0, 2.0, 4.0])
    n_ref_eff = w.sum() ** 2 / (w**2).sum()
    expect = round(10 * n_ref_eff / (10 + n_ref_eff))
    assert bl._ks_effective_n(w / w.sum(), 10) == expect


def test_ks_stays_finite_for_complete_separation() -> None:
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(5000, 2))
    dat = rng.normal(size=(3000, 2)) + 100.0
    t = bl.ks_bonferroni(ref, dat)
    assert math.isfinite(t) and t > 600
    assert bl.ks_bonferroni_pvalue(ref, dat) == 0.0
    # still ordered: a smaller separation is less discrepant
    assert bl.ks_bonferroni(ref, rng.normal(size=(3000, 2)) + 1.0) < t


def test_ks_pvalue_uniform_or_conservative_under_null() -> None:
    rng = np.random.default_rng(5)
    n_draws = 200
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / n_draws)
    # unweighted two-sample
    pvals = [
        bl.ks_bonferroni_pvalue(rng.normal(size=(600, 2)), rng.normal(size=(200, 2)))
        for _ in range(n_draws)
    ]
    assert np.mean(np.array(pvals) < 0.05) <= bound
    # weighted: reference from N(0, 1.5^2) reweighted to N(0, 1)
    pvals = []
    for _ in range(n_draws):
        ref = rng.normal(0.0, 1.5, size=(3000, 1))
        w = stats.norm.pdf(ref[:, 0]) / stats.norm.pdf(ref[:, 0], scale=1.5)
        pvals.append(bl.ks_bonferroni_pvalue(ref, rng.normal(size=(200, 1)), w))
    pvals = np.array(pvals)
    assert np.mean(pvals < 0.05) <= bound
    assert 0.3 < np.mean(pvals) < 0.75  # not degenerate


# ----------------------------------------------------------------- energy


def test_energy_1d_exact_matches_pairwise() -> None:
    rng = np.random.default_rng(6)
    ref = rng.normal(size=(70, 1)).round(1)  # ties within and across samples
    dat = rng.normal(0.4, 1.2, size=(30, 1)).round(1)
    w = rng.uniform(0.2, 3.0, size=70)
    assert bl.energy_distance(ref, dat) == pytest.approx(_energy_brute(ref, dat), rel=1e-10)
    assert bl.energy_distance(ref, dat, w) == pytest.approx(
        _energy_brute(ref, dat, w), rel=1e-10
    )
    # identical samples: zero
    assert bl.energy_distance(dat, dat) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.usefixtures("small_blocks")
def test_energy_blocked_matches_pairwise() -> None:
    rng = np.random.default_rng(7)
    ref = rng.normal(size=(53, 3)) + 5.0  # an offset: centring must not matter
    dat = rng.normal(0.3, 1.0, size=(21, 3)) + 5.0
    w = rng.uniform(0.2, 3.0, size=53)
    assert bl.energy_distance(ref, dat) == pytest.approx(_energy_brute(ref, dat), rel=1e-9)
    assert bl.energy_distance(ref, dat, w, max_ref=53) == pytest.approx(
        _energy_brute(ref, dat, w), rel=1e-9
    )


@pytest.mark.usefixtures("small_blocks")
def test_worker_threads_give_identical_results(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(18)
    ref = rng.normal(size=(80, 2))
    dat = rng.normal(size=(30, 2))
    ref1 = rng.normal(size=(300, 1))
    dat1 = rng.normal(size=(40, 1))
    single = [bl.energy_distance(ref, dat), bl.mmd(ref, dat), bl.mmd(ref1, dat1, sigma=0.1),
              bl.mmd(ref1, dat1, sigma=1.0)]
    monkeypatch.setattr(bl, "_SMALL_PAIRS", 0)
    monkeypatch.setattr(bl, "_max_workers", lambda: 3)
    threaded = [bl.energy_distance(ref, dat), bl.mmd(ref, dat), bl.mmd(ref1, dat1, sigma=0.1),
                bl.mmd(ref1, dat1, sigma=1.0)]
    assert threaded == single
    assert single[0] == pytest.approx(_energy_brute(ref, dat), rel=1e-9)


def test_energy_subsampling_reproducible() -> None:
    rng = np.random.default_rng(8)
    ref = rng.normal(size=(500, 2))
    dat = rng.normal(size=(50, 2))
    a = bl.energy_distance(ref, dat, None, np.random.default_rng(3), max_ref=100)
    b = bl.energy_distance(ref, dat, None, np.random.default_rng(3), max_ref=100)
    c = bl.energy_distance(ref, dat, None, np.random.default_rng(4), max_ref=100)
    assert a == b and a != c
    assert bl.energy_distance(ref, dat, max_ref=100) == bl.energy_distance(
        ref, dat, max_ref=100
    )


def test_weighted_subsample_follows_weights() -> None:
    rng = np.random.default_rng(9)
    ref = np.arange(1000, dtype=float)[:, None]
    w = np.where(ref[:, 0] < 500, 1e-9, 1.0)
    sub, p = bl._subsample(ref, w / w.sum(), 300, rng, weighted=True)
    assert sub.shape == (300, 1) and np.allclose(p, 1 / 300)
    assert (sub[:, 0] >= 500).mean() > 0.99
    sub, _ = bl._subsample(ref, np.full(1000, 1e-3), 300, rng, weighted=False)
    assert np.unique(sub[:, 0]).size == 300  # without replacement


# -------------------------------------------------------------------- MMD


@pytest.mark.usefixtures("small_blocks")
def test_mmd_blocked_matches_pairwise() -> None:
    rng = np.random.default_rng(10)
    ref = rng.normal(size=(47, 3))
    dat = rng.normal(0.3, 1.0, size=(19, 3))
    w = rng.uniform(0.2, 3.0, size=47)
    assert bl.mmd(ref, dat, sigma=1.3) == pytest.approx(_mmd_brute(ref, dat, 1.3), rel=1e-9)
    assert bl.mmd(ref, dat, w, sigma=0.8) == pytest.approx(
        _mmd_brute(ref, dat, 0.8, w), rel=1e-9
    )


def test_mmd_1d_spectral_matches_pairwise() -> None:
    rng = np.random.default_rng(11)
    cases = [
        (rng.normal(size=(400, 1)), rng.normal(0.2, 1.0, size=(60, 1)), 0.7),
        # heavy tails: a range of hundreds of sigma
        (rng.standard_cauchy(size=(400, 1)), rng.standard_cauchy(size=(60, 1)), 0.5),
        (rng.integers(0, 5, size=(400, 1)).astype(float),
         rng.integers(0, 6, size=(60, 1)).astype(float), 1.0),
    ]
    for ref, dat, sigma in cases:
        w = rng.uniform(0.2, 3.0, size=ref.shape[0])
        p = w / w.sum()
        spec = bl._gauss_sums_spectral(ref[:, 0], p, dat[:, 0], sigma)
        blocked = bl._gauss_sums_blocked(ref, p, dat, sigma)
        np.testing.assert_allclose(spec, blocked, rtol=1e-11, atol=1e-14)
        assert bl.mmd(ref, dat, w, sigma=sigma) == pytest.approx(
            _mmd_brute(ref, dat, sigma, w), rel=1e-8, abs=1e-10
        )


def test_mmd_default_sigma_is_median_distance() -> None:
    rng = np.random.default_rng(12)
    ref = rng.normal(size=(300, 2))
    dat = rng.normal(size=(40, 2))
    sigma = float(np.median(pdist(ref)))
    assert bl.mmd(ref, dat) == pytest.approx(bl.mmd(ref, dat, sigma=sigma), rel=1e-12)


# ---------------------------------------------------------------- binned chi2


def test_binned_chi2_hand_computed() -> None:
    ref = np.array([[1.0], [2.0], [3.0], [4.0]])
    dat = np.array([[1.0], [1.0], [1.0], [5.0]])
    # unweighted: edge at 2, bins (-inf, 2] and (2, inf), e = (2, 2), o = (3, 1)
    assert bl.binned_chi2(ref, dat, bins=2) == pytest.approx(1.0)
    # weights (1, 1, 1, 3): edge at 3, e = (3, 3), o = (3, 1)
    assert bl.binned_chi2(ref, dat, np.array([1.0, 1.0, 1.0, 3.0]), bins=2) == pytest.approx(
        4 / 3
    )
    # weights summing to 8 (normalisation is tested): e = (4, 4), o = (3, 1)
    assert bl.binned_chi2(ref, dat, np.full(4, 2.0), bins=2) == pytest.approx(1 / 4 + 9 / 4)
    # one bin: (N_D - sum w)^2 / sum w
    assert bl.binned_chi2(ref, dat, np.full(4, 2.0), bins=1) == pytest.approx(2.0)


def test_binned_chi2_ties_and_generic_case() -> None:
    rng = np.random.default_rng(13)
    # heavy ties: 3 distinct values, many requested bins -> merged, all e_k > 0
    ref = rng.integers(0, 3, size=(90, 1)).astype(float)
    dat = rng.integers(0, 3, size=(30, 1)).astype(float)
    e = np.array([(ref == v).sum() for v in range(3)]) * 30 / 90
    o = np.array([(dat == v).sum() for v in range(3)])
    assert bl.binned_chi2(ref, dat, bins=30) == pytest.approx(float(((o - e) ** 2 / e).sum()))
    # continuous case, N_R divisible by bins: every e_k = N_D / bins
    ref = rng.normal(size=(1000, 1))
    dat = rng.normal(size=(200, 1))
    edges = np.sort(ref[:, 0])[99::100][:-1]
    o = np.bincount(np.searchsorted(edges, dat[:, 0]), minlength=10)
    assert bl.binned_chi2(ref, dat, bins=10) == pytest.approx(float(((o - 20) ** 2 / 20).sum()))


# -------------------------------------------------------------- behaviour


@pytest.mark.parametrize("d", [1, 3])
def test_shift_increases_every_statistic(d: int) -> None:
    rng = np.random.default_rng(14 + d)
    ref = rng.normal(size=(3000, d))
    w = rng.uniform(0.5, 1.5, size=3000)
    w *= 300 / w.sum()  # nplearn's convention: the weights sum to N(R) = N_D here
    for name in bl.available_baselines(d):
        f = bl.BASELINES[name]
        for weights in (None, w):
            null = [f(ref, rng.normal(size=(300, d)), weights, rng) for _ in range(5)]
            alt = [f(ref, rng.normal(size=(300, d)) + 0.5, weights, rng) for _ in range(5)]
            assert min(alt) > max(null), (name, weights is None, null, alt)


def test_registry() -> None:
    assert set(bl.BASELINES) == {"ks_bonferroni", "energy", "mmd", "binned_chi2",
                                 "nplm_network"}
    # the network is opt-in: never among the defaults
    assert bl.available_baselines(1) == ["ks_bonferroni", "energy", "mmd", "binned_chi2"]
    assert bl.available_baselines(4) == ["ks_bonferroni", "energy", "mmd"]
    rng = np.random.default_rng(15)
    ref, dat = rng.normal(size=(200, 1)), rng.normal(size=(30, 1))
    for name in bl.available_baselines(1):
        value = bl.BASELINES[name](ref, dat, None, np.random.default_rng(0))
        assert isinstance(value, float) and math.isfinite(value)


# ------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("name", ["ks_bonferroni", "energy", "mmd", "binned_chi2",
                                  "nplm_network"])
def test_bad_inputs_raise(name: str) -> None:
    f = bl.BASELINES[name]
    rng = np.random.default_rng(16)
    ref, dat = rng.normal(size=(20, 1)), rng.normal(size=(10, 1))
    bad_calls = [
        (ref[:, 0], dat, None, "2-D"),
        (ref, dat[:, 0], None, "2-D"),
        (ref, np.hstack([dat, dat]), None, "feature"),
        (np.empty((0, 1)), dat, None, "empty"),
        (ref, np.empty((0, 1)), None, "empty"),
        (np.where(np.arange(20)[:, None] == 3, np.nan, ref), dat, None, "non-finite"),
        (ref, np.where(np.arange(10)[:, None] == 3, np.inf, dat), None, "non-finite"),
        (ref, dat, np.ones(19), "weights"),
        (ref, dat, np.ones((20, 1)), "weights"),
        (ref, dat, np.where(np.arange(20) == 5, -1.0, 1.0), "positive"),
        (ref, dat, np.where(np.arange(20) == 5, 0.0, 1.0), "positive"),
        (ref, dat, np.where(np.arange(20) == 5, np.nan, 1.0), "non-finite"),
        (ref, dat, np.array(["a"] * 20), "numeric"),
    ]
    for r, x, w, match in bad_calls:
        with pytest.raises(InputError, match=match):
            f(r, x, w, rng)
    with pytest.raises(InputError, match="Generator"):
        f(ref, dat, None, 42)


def test_bad_options_raise() -> None:
    rng = np.random.default_rng(17)
    ref, dat = rng.normal(size=(20, 2)), rng.normal(size=(10, 2))
    with pytest.raises(InputError, match="one-dimensional"):
        bl.binned_chi2(ref, dat)
    with pytest.raises(InputError, match="bins"):
        bl.binned_chi2(ref[:, :1], dat[:, :1], bins=0)
    with pytest.raises(InputError, match="bins"):
        bl.binned_chi2(ref[:, :1], dat[:, :1], bins=2.5)
    with pytest.raises(InputError, match="max_ref"):
        bl.energy_distance(ref, dat, max_ref=1)
    with pytest.raises(InputError, match="max_ref"):
        bl.mmd(ref, dat, max_ref=True)
    for sigma in (0.0, -1.0, np.inf, "wide"):
        with pytest.raises(InputError, match="sigma"):
            bl.mmd(ref, dat, sigma=sigma)
    with pytest.raises(InputError, match="at least 2"):
        bl.mmd(ref, dat[:1])
    with pytest.raises(InputError, match="identical"):
        bl.mmd(np.ones((20, 2)), dat)
    with pytest.raises(InputError, match="d"):
        bl.available_baselines(0)


# ------------------------------------------------------------------ network


def test_nplm_network_statistic() -> None:
    rng = np.random.default_rng(21)
    ref = rng.exponential(size=(4000, 1)) * 8.0  # benchmark units: standardised inside
    w = np.full(4000, 200.0 / 4000)
    null = rng.exponential(size=(rng.poisson(200), 1)) * 8.0
    alt = np.concatenate([rng.exponential(size=(200, 1)), rng.normal(3.0, 0.2, (40, 1))]) * 8
    t0 = bl.nplm_network(ref, null, w, np.random.default_rng(1))
    assert math.isfinite(t0) and t0 > 0
    # reproducible from the generator; another generator gives another start
    assert t0 == bl.nplm_network(ref, null, w, np.random.default_rng(1))
    # a clear excess (40 events in a narrow peak on 200) is far beyond the null t
    assert bl.nplm_network(ref, alt, w, np.random.default_rng(1)) > t0 + 30
    # the statistic of a network fitted directly on the standardised events, with the
    # weights as given (normalisation included) and the learner's defaults
    from nplearn.learners import NeuralNetworkLearner
    from nplearn.preprocess import Standardizer
    from nplearn.toys import nplm_fit

    seed = bl._network_seed(np.random.default_rng(1))
    std = Standardizer.fit(ref)
    t_direct, *_ = nplm_fit(std.transform(ref), std.transform(null), w,
                            NeuralNetworkLearner(), seed)
    assert t0 == pytest.approx(t_direct, rel=1e-12)
    # no weights: shape-only, every reference event weighs N_D / N_R
    shape = np.full(4000, len(null) / 4000)
    assert bl.nplm_network(ref, null, None, np.random.default_rng(1)) == pytest.approx(
        bl.nplm_network(ref, null, shape, np.random.default_rng(1)), rel=1e-12)
    # learner options pass through; a bad one is an InputError
    small = bl.nplm_network(ref, null, w, np.random.default_rng(1), hidden=(2,))
    assert math.isfinite(small) and small != t0
    with pytest.raises(InputError, match="weight_clip"):
        bl.nplm_network(ref, null, w, np.random.default_rng(1), weight_clip=-1.0)


def test_nplm_network_leaves_the_shared_stream_alone() -> None:
    # the comparison tests of a toy share one generator: the network takes its seed
    # without drawing from it, so the others give the same values with or without it
    rng = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(3,)))
    ref, dat = rng.normal(size=(2000, 2)), rng.normal(size=(100, 2))
    state = rng.bit_generator.state
    t = bl.nplm_network(ref, dat, None, rng)
    assert rng.bit_generator.state == state and math.isfinite(t)
    # another toy's generator gives another start
    other = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(4,)))
    assert bl._network_seed(rng).spawn_key != bl._network_seed(other).spawn_key
    assert bl.nplm_network(ref, dat, None, other) != t


def test_a_diverging_network_fails_its_toy_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from nplearn.benchmarks.suite import Exp1DScaled
    from nplearn.learners.neural import NeuralNetworkLearner
    from nplearn.power import BenchmarkToy
    from nplearn.toys import ToyEngine

    def diverge(self, *args, **kwargs):
        raise FloatingPointError("the NPLM loss became inf")

    monkeypatch.setattr(NeuralNetworkLearner, "_train_lbfgs", diverge)
    rng = np.random.default_rng(8)
    with pytest.raises(FloatingPointError, match="every start"):
        bl.nplm_network(rng.normal(size=(500, 1)), rng.normal(size=(50, 1)), None, rng)
    bench = Exp1DScaled(n_ref=2000, expected=100.0)
    engine = ToyEngine({"sigma": 1.0, "n_centers": 30, "lam": 1e-6}, 100.0, 0,
                       generator=BenchmarkToy(bench, "none"), extra_stats=("nplm_network",))
    toy = engine.run(0)
    # reported as a failed toy (not counted), not an error that stops the study
    assert not toy.ok and "every start of the network diverged" in toy.message
