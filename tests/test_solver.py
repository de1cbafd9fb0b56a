"""The Nyström kernel logistic regression solver against exact dense solutions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nplearn import InputError, KernelLogisticRegression
from nplearn.learners import kernel as kernel_mod
from nplearn.learners.kernel import (
    NystromBasis,
    _NewtonSolver,
    default_rank_tol,
    gaussian_kernel,
    negligible,
    pivoted_cholesky,
    weighted_subsample,
)
from nplearn.learners.reference import dense_newton
from nplearn.learners.reference import gaussian_kernel_np as gauss

from conftest import make_classification


def _full_alpha(model: KernelLogisticRegression) -> np.ndarray:
    """Coefficients on all candidate centres (0 where a centre was not a pivot)."""
    alpha = np.zeros(model.candidate_indices_.size)
    pos = np.searchsorted(model.candidate_indices_, model.center_indices_)
    alpha[pos] = model.coef_
    return alpha


@pytest.mark.parametrize("inner", ["direct", "cg"])
@pytest.mark.parametrize("lam", [1e-3, 1e-5])
def test_matches_dense_newton_well_conditioned(rng, inner, lam):
    # 2D, 40 centres, sigma=1: K_MM is full rank, so alpha itself is unique.
    X, y, sw = make_classification(rng)
    m = KernelLogisticRegression(sigma=1.0, n_centers=40, lam=lam, inner=inner, rank_tol=0.0,
                                 tol=1e-12, cg_tol=1e-12, random_state=7).fit(X, y, sw)
    assert m.rank_ == 40
    C = X[m.candidate_indices_]
    alpha, f, J = dense_newton(X, y, sw, C, 1.0, lam)
    assert m.fit_info_.converged
    # cond(K_MM) ~ 1e11 here: objective values evaluated along different float64
    # paths differ at ~1e-12 relative even for the same alpha
    assert abs(m.fit_info_.objective - J) <= 1e-10 * abs(J)
    np.testing.assert_allclose(m.train_decision_, f, rtol=0, atol=1e-7 * np.abs(f).max())
    # alpha itself is determined only to ~cond(K_MM) * eps relative (1.7e-5 here): two
    # backward-stable float64 solvers agree to ~1e-6, the exact digits depend on the
    # host's BLAS kernels
    bound = np.linalg.cond(gauss(C, C, 1.0)) * np.finfo(np.float64).eps
    assert 1e-6 < bound < 1e-4
    np.testing.assert_allclose(_full_alpha(m), alpha, rtol=0, atol=bound * np.abs(alpha).max())


def test_matches_dense_newton_rank_deficient_1d(rng):
    # 1D exponential, 300 centres, tiny lambda: K_MM has numerical rank ~15;
    # only f is unique, and it must match the dense eigenbasis solution.
    nR, nD = 4000, 100
    X = np.vstack([rng.exponential(1 / 8, size=(nR, 1)), rng.exponential(1 / 8, size=(nD, 1))])
    y = np.r_[np.zeros(nR), np.ones(nD)].astype(int)
    sw = np.r_[np.full(nR, nD / nR), np.ones(nD)]
    m = KernelLogisticRegression(sigma=0.3, n_centers=300, lam=1e-8, random_state=1,
                                 tol=1e-12).fit(X, y, sw)
    assert m.rank_ < 40
    C = X[m.candidate_indices_]
    _, f, J = dense_newton(X, y, sw, C, 0.3, 1e-8)
    assert m.fit_info_.converged
    assert m.fit_info_.objective <= J * (1 + 1e-10)
    # the rank truncation (rank_tol ~ 1e-11) leaves relative differences ~1e-4
    # only where f extrapolates to |f| >> 1 in the far tail
    np.testing.assert_allclose(m.train_decision_, f, rtol=3e-4, atol=1e-5)
    w = sw[:nR]
    t_ours = 2 * (m.train_decision_[nR:].sum() - (w * np.expm1(m.train_decision_[:nR])).sum())
    t_dense = 2 * (f[nR:].sum() - (w * np.expm1(f[:nR])).sum())
    assert abs(t_ours - t_dense) < 1e-4


@pytest.mark.parametrize("lam", [1e-3, 1e-5])
def test_hessian_reuse_reaches_the_dense_solution(rng, lam, monkeypatch):
    """Chord steps (a reused Hessian factor) converge to the dense Newton optimum, and
    the reuse does happen on an NPLM-like problem (many weighted reference events)."""
    import nplearn.learners.kernel as kernel

    X, y, sw = make_classification(rng, n_ref=20000, n_data=400, shift=0.2, scale=1.1)
    sw = np.where(y == 0, 400 / 20000, 1.0)
    opts = dict(sigma=1.0, n_centers=40, lam=lam, inner="direct", rank_tol=0.0, tol=1e-12,
                random_state=7)
    m = KernelLogisticRegression(**opts).fit(X, y, sw)
    info = m.fit_info_
    # one Newton direction per history entry (the last may be a converged step that
    # rounding refuses to take, so n_iter can be one less than the directions computed)
    assert info.converged and 1 <= info.n_hessian < len(info.history)
    _, f, J = dense_newton(X, y, sw, X[m.candidate_indices_], 1.0, lam)
    assert abs(info.objective - J) <= 1e-10 * abs(J)
    np.testing.assert_allclose(m.train_decision_, f, rtol=0, atol=1e-6 * np.abs(f).max())
    # without reuse (a fresh Hessian at every step) the same optimum
    monkeypatch.setattr(kernel, "HESSIAN_REUSE_FACTOR", 1.0)
    fresh = KernelLogisticRegression(**opts).fit(X, y, sw)
    assert fresh.fit_info_.n_hessian == len(fresh.fit_info_.history)
    np.testing.assert_allclose(m.train_decision_, fresh.train_decision_, rtol=0,
                               atol=1e-7 * np.abs(f).max())


def test_curvature_bound_refuses_a_stale_hessian():
    from nplearn.learners.kernel import HESSIAN_REUSE_FACTOR, _NewtonSolver

    s = _NewtonSolver.__new__(_NewtonSolver)
    s._hess_d2 = None
    assert s._curvature_bound(torch.ones(4, dtype=torch.float64)) == 0.0  # nothing to reuse
    s._hess_d2 = torch.tensor([1.0, 2.0, 0.0, 4.0], dtype=torch.float64)
    same = s._hess_d2.clone()
    assert s._curvature_bound(same) == 1.0
    lower = same * 0.9  # 10% less curvature everywhere: bound 0.9
    assert s._curvature_bound(lower) == pytest.approx(0.9)
    assert s._curvature_bound(same * 1.2) == 1.0  # more curvature: the old H is smaller
    far = same.clone()
    far[3] = 4.0 * HESSIAN_REUSE_FACTOR * 1.01  # one event beyond the factor: rebuild
    assert s._curvature_bound(far) == 0.0
    far = same.clone()
    far[0] = 1.0 / (HESSIAN_REUSE_FACTOR * 1.01)
    assert s._curvature_bound(far) == 0.0


def test_onestep_schedule_is_one_exact_newton_step(rng):
    X, y, sw = make_classification(rng, n_ref=2000, n_data=200)
    m = KernelLogisticRegression(sigma=1.0, n_centers=30, lam=1e-4, schedule="onestep",
                                 inner="direct", rank_tol=0.0, random_state=3).fit(X, y, sw)
    _, f, _ = dense_newton(X, y, sw, X[m.candidate_indices_], 1.0, 1e-4, one_step=True)
    assert m.fit_info_.n_iter == 1
    np.testing.assert_allclose(m.train_decision_, f, atol=1e-8 * np.abs(f).max())


def test_lazy_features_equal_materialised(rng):
    X, y, sw = make_classification(rng, n_ref=3000, n_data=300)
    kw = dict(sigma=1.0, n_centers=200, lam=1e-6, random_state=5, tol=1e-12)
    a = KernelLogisticRegression(**kw).fit(X, y, sw)
    b = KernelLogisticRegression(**kw, memory_budget=0, block_bytes=1 << 16).fit(X, y, sw)
    assert a.fit_info_.materialised and not b.fit_info_.materialised
    assert b.fit_info_.converged
    np.testing.assert_allclose(a.train_decision_, b.train_decision_, atol=1e-6)


def test_cg_and_direct_agree(rng):
    X, y, sw = make_classification(rng, n_ref=3000, n_data=300)
    kw = dict(sigma=1.0, n_centers=300, lam=1e-6, random_state=2, tol=1e-12, cg_tol=1e-12)
    a = KernelLogisticRegression(inner="direct", **kw).fit(X, y, sw)
    b = KernelLogisticRegression(inner="cg", **kw).fit(X, y, sw)
    assert b.fit_info_.n_cg > 0 and a.fit_info_.n_cg == 0
    np.testing.assert_allclose(a.train_decision_, b.train_decision_, atol=1e-6)


def test_weighted_subsample():
    # 1% heavy events (weight 1) among light ones (weight 0.01), in random order,
    # plus events of weight zero
    rng = np.random.default_rng(4)
    w = np.where(rng.uniform(size=20400) < 200 / 20400, 1.0, 0.01)
    w[rng.choice(w.size, 50, replace=False)] = 0.0
    sw = torch.as_tensor(w)
    idx, pi = weighted_subsample(sw, 2000)
    idx2, pi2 = weighted_subsample(sw, 2000)
    assert torch.equal(idx, idx2) and torch.equal(pi, pi2)  # no random state
    assert abs(idx.numel() - 2000) <= 1  # systematic sampling: the expected size
    heavy = np.flatnonzero(w == 1.0)
    assert set(heavy) <= set(idx.tolist())  # inclusion probability 1
    assert np.all(w[idx.numpy()] > 0)
    # pi = min(1, c w): 1 for the heavy events, one common value for the light ones
    # such that all the pi sum to the size asked for
    light = w[idx.numpy()] == 0.01
    assert np.all(pi.numpy()[~light] == 1.0)
    c = (2000 - heavy.size) / (0.01 * np.count_nonzero(w == 0.01))
    np.testing.assert_allclose(pi.numpy()[light], 0.01 * c, rtol=1e-12)
    # Horvitz-Thompson: sum over the sample of a / pi estimates the total. The light
    # events are sampled at ~9%: ~1800 of them for a U(0, 1) feature, a relative
    # error of about 0.58 / sqrt(1800) = 1.4% on their half, 0.7% on the total;
    # 3% is about 4 standard errors
    a = rng.uniform(size=w.size)
    est = float((torch.as_tensor(a * w)[idx] / pi).sum())
    assert est == pytest.approx(float((a * w).sum()), rel=0.03)
    # asking for more than there are events of positive weight takes them all
    idx, pi = weighted_subsample(sw, 30000)
    assert idx.numel() == np.count_nonzero(w) and bool((pi == 1).all())
    # float32 weights, and weights spanning 120 orders of magnitude (many capped):
    # the inclusion probabilities still sum to the size asked for, exactly
    for weights, size in ((torch.as_tensor(w, dtype=torch.float32), 2000),
                          (2.0 ** -torch.arange(400.0, dtype=torch.float64), 300)):
        idx, pi = weighted_subsample(weights, size)
        assert idx.numel() == size
    # two events, weights 3 and 7, one to take: pi = 0.3, 0.7
    idx, pi = weighted_subsample(torch.tensor([3.0, 7.0]), 1)
    assert idx.tolist() == [1] and float(pi[0]) == pytest.approx(0.7)


@pytest.mark.parametrize("mode", ["phi", "kernel", "lazy"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sample_preconditioner_is_the_weighted_hessian_estimate(rng, mode, dtype):
    # the built matrix against sum_S (d2_i / pi_i) phi_i phi_i^T / n + lam I written
    # out, with pi < 1 for most events, several feature blocks and data far from 0
    # (the features' shift)
    X = np.r_[rng.normal(size=(2700, 2)), rng.normal(size=(300, 2)) * 1.2 + 0.3] + 50.0
    sw = torch.as_tensor(np.r_[np.full(2700, 0.1), np.ones(300)])
    # the rank tolerance the learner uses for this dtype (float32 features need a
    # better-conditioned basis)
    basis = NystromBasis.build(X, np.arange(0, 3000, 30), 1.0, default_rank_tol(1e-5, dtype),
                               torch.device("cpu"))
    feat = basis.features(basis.events(X, dtype), mode, block_bytes=1 << 15)
    assert feat.rows < 600  # the subsample spans several blocks
    sign = torch.as_tensor(np.r_[-np.ones(2700), np.ones(300)])
    solver = _NewtonSolver(feat, sign, sw, 1e-5, basis.L, torch.arange(0, 3000, 30),
                           "cg", 1e-8, 100, "sample")
    assert solver.precond == "sample"
    f = torch.as_tensor(rng.normal(size=3000) * 0.5)
    _, d2 = solver.loss.derivatives(f)
    P = torch.cholesky_inverse(torch.linalg.cholesky(solver._build_preconditioner(d2)))
    idx, pi = weighted_subsample(sw, solver.precond_sample_size())
    assert 100 < idx.numel() < 3000 and float(pi.min()) < 1.0
    # the exact features, from the float64 kernel
    Phi = gauss(X[idx.numpy()], basis.P.numpy(), 1.0) @ np.linalg.inv(basis.L_P.numpy()).T
    H = (Phi * (d2[idx] / pi).numpy()[:, None]).T @ Phi / 3000 + 1e-5 * np.eye(basis.rank)
    rtol = 1e-10 if dtype == torch.float64 else 1e-3
    np.testing.assert_allclose(P.numpy(), H, rtol=0, atol=rtol * np.abs(H).max())


def test_sample_preconditioner(rng):
    # n below the subsample size: the preconditioner is the exact Hessian where it is
    # built (the first Newton step; later steps reuse it), so that PCG solve takes a
    # single iteration
    X, y, sw = make_classification(rng, n_ref=300, n_data=40)
    kw = dict(sigma=1.0, n_centers=100, lam=1e-5, inner="cg", tol=1e-12, cg_tol=1e-9,
              random_state=2)
    m = KernelLogisticRegression(**kw).fit(X, y, sw)
    assert m.fit_info_.preconditioner == "sample"
    assert m.fit_info_.history[0]["n_cg"] == 1 < m.fit_info_.n_cg
    # the same solution as the direct solve (which has no preconditioner); the
    # dense-Newton comparison of PCG with this preconditioner is
    # test_matches_dense_newton_well_conditioned[cg]
    direct = KernelLogisticRegression(**{**kw, "inner": "direct"}).fit(X, y, sw)
    assert direct.fit_info_.preconditioner == "none"
    # (both stop at n (J - J*) <= 1e-12; f is that loosely fixed only along the
    # weakly regularised directions, ~1e-7 of its range)
    np.testing.assert_allclose(m.train_decision_, direct.train_decision_, rtol=0,
                               atol=1e-6 * np.abs(direct.train_decision_).max())
    assert m.fit_info_.objective == pytest.approx(direct.fit_info_.objective, rel=1e-12)
    # the one-step (published) schedule keeps Falkon's centre preconditioner
    one = KernelLogisticRegression(**{**kw, "schedule": "onestep"}).fit(X, y, sw)
    assert one.fit_info_.preconditioner == "centres"
    # so does the converged schedule when the affordable subsample (80 n / r events)
    # is not larger than the M centres
    wide = KernelLogisticRegression(**{**kw, "sigma": 0.2, "n_centers": 300}).fit(X, y, sw)
    assert 80 * X.shape[0] // wide.rank_ <= 300
    assert wide.fit_info_.preconditioner == "centres" and wide.fit_info_.converged


def test_sample_preconditioner_on_a_small_heavy_data_sample(rng, monkeypatch):
    # 1% data events carrying half the weight (the 1D benchmark's shape): the
    # weighted subsample takes them all and PCG needs fewer iterations than with the
    # centre estimate, for the same solution
    x = np.r_[rng.exponential(size=20000), rng.exponential(size=200)][:, None]
    y = np.r_[np.zeros(20000), np.ones(200)]
    sw = np.r_[np.full(20000, 0.01), np.ones(200)]
    kw = dict(sigma=0.05, n_centers=400, lam=1e-6, inner="cg", tol=1e-10, random_state=1)
    a = KernelLogisticRegression(**kw).fit(x, y, sw)
    monkeypatch.setattr(kernel_mod, "CONVERGED_PRECONDITIONER", "centres")
    b = KernelLogisticRegression(**kw).fit(x, y, sw)
    assert (a.fit_info_.preconditioner, b.fit_info_.preconditioner) == ("sample", "centres")
    assert a.fit_info_.converged and b.fit_info_.converged
    assert a.fit_info_.n_cg < b.fit_info_.n_cg
    np.testing.assert_allclose(a.train_decision_, b.train_decision_, atol=1e-5)


def _subnormal_count(A: torch.Tensor) -> int:
    return int(((A != 0) & (A.abs() < torch.finfo(A.dtype).tiny)).sum())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernel_floor(dtype):
    # entries above the floor are the Gaussian kernel; those below are the floor itself
    x = torch.linspace(0.0, 3.0, 301, dtype=dtype)[:, None]
    K = gaussian_kernel(x, torch.zeros(1, 1, dtype=dtype), 0.1)[:, 0]
    exact = torch.exp(-0.5 * (x[:, 0].double() / 0.1) ** 2)
    cut = negligible(dtype)
    above = exact > 2 * cut
    assert above.any() and (~above).any()
    rtol = 1e-12 if dtype == torch.float64 else 1e-5  # float32: exponents up to ~22
    np.testing.assert_allclose(K[above].double().numpy(), exact[above].numpy(), rtol=rtol)
    assert float(K.min()) >= 0.99 * cut and float(K[~above].max()) <= 2 * cut
    assert 1e-40 < negligible(torch.float64) < 1e-38 and 1e-10 < negligible(torch.float32) < 1e-9


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_narrow_kernel_features_free_of_subnormals(rng, monkeypatch, d, dtype):
    # a narrow kernel on an exponential sample: most kernel entries underflow. With
    # the floor, no kernel, L_P^-1, feature or Hessian entry is subnormal, and the
    # fit is the one without the floor
    nR, nD = 3000, 60
    sigma = 0.01 if d == 1 else 0.05
    X = np.vstack([rng.exponential(1.0, size=(nR, d)), rng.exponential(1.0, size=(nD, d))])
    y = np.r_[np.zeros(nR), np.ones(nD)].astype(int)
    sw = np.r_[np.full(nR, nD / nR), np.ones(nD)]
    Xt = torch.as_tensor(X).to(dtype)
    basis = NystromBasis.build(X, np.arange(0, nR + nD, 20), sigma, 1e-9, torch.device("cpu"))
    assert _subnormal_count(gaussian_kernel(Xt, Xt[::20], sigma)) == 0
    feat = basis.features(basis.events(X, dtype), "phi", block_bytes=1 << 20)
    assert _subnormal_count(feat.L_P_inv) == 0 and _subnormal_count(feat.stored) == 0
    assert _subnormal_count(feat.gram(torch.as_tensor(sw) * 0.2)) == 0
    monkeypatch.setattr(kernel_mod, "KERNEL_FLOOR", False)
    assert _subnormal_count(gaussian_kernel(Xt, Xt[::20], sigma)) > 0  # what the floor removes
    fits = {}
    monkeypatch.setattr(kernel_mod, "WINDOWED_FEATURES", False)  # the same (dense) features
    for floor in (False, True):
        monkeypatch.setattr(kernel_mod, "KERNEL_FLOOR", floor)
        fits[floor] = KernelLogisticRegression(
            sigma=sigma, n_centers=150, lam=1e-6, random_state=3, tol=1e-12,
            dtype="float64" if dtype == torch.float64 else "float32").fit(X, y, sw)
    assert fits[True].rank_ == fits[False].rank_
    # float32: the floor (3.3e-10) moves f within float32 rounding of the features
    rtol, atol = (1e-9, 1e-12) if dtype == torch.float64 else (1e-4, 1e-5)
    np.testing.assert_allclose(fits[True].train_decision_, fits[False].train_decision_,
                               rtol=rtol, atol=atol)


def test_kernel_floor_with_a_huge_width(rng):
    # the distance cap of sigma = 1e19 overflows float32: no floor is needed there
    X = rng.normal(size=(50, 2))
    for dtype in (torch.float32, torch.float64):
        K = gaussian_kernel(torch.as_tensor(X).to(dtype), torch.as_tensor(X[:5]).to(dtype), 1e19)
        assert torch.allclose(K, torch.ones_like(K))


def test_float32_close_to_float64(rng):
    X, y, sw = make_classification(rng)
    # same rank tolerance, so the two differ only by the precision of kernel products
    tol32 = default_rank_tol(1e-5, torch.float32)
    kw = dict(sigma=1.0, n_centers=200, lam=1e-5, random_state=4, rank_tol=tol32)
    a = KernelLogisticRegression(**kw).fit(X, y, sw)
    b = KernelLogisticRegression(dtype="float32", **kw).fit(X, y, sw)
    assert tol32 >= 1e-5
    # float32 kernel errors (~1e-7) amplified by <= 1/sqrt(rank_tol) ~ 3e2 in the
    # features give |df| ~ 1e-3 on f values of order 1 (relative ~1e-3 for larger f)
    np.testing.assert_allclose(a.train_decision_, b.train_decision_, atol=3e-3, rtol=2e-3)


def test_float32_refuses_a_rank_tol_below_its_floor(rng):
    """Below the float32 floor the features are rounding noise and the fit reported
    a converged optimum of the wrong problem (t off by a factor of 2-3)."""
    from nplearn import NPLMConfig

    X, y, sw = make_classification(rng)
    for rt in (1e-12, 0.0):
        with pytest.raises(InputError, match="below the float32 floor"):
            KernelLogisticRegression(sigma=1.0, n_centers=50, dtype="float32",
                                     rank_tol=rt).fit(X, y, sw)
        with pytest.raises(InputError, match="below the float32 floor"):
            NPLMConfig(dtype="float32", rank_tol=rt)
    KernelLogisticRegression(sigma=1.0, n_centers=50, rank_tol=1e-12).fit(X, y, sw)
    NPLMConfig(dtype="float32", rank_tol=1e-5)


def test_decision_function_matches_training_values(rng):
    X, y, sw = make_classification(rng)
    m = KernelLogisticRegression(sigma=1.0, n_centers=100, lam=1e-5, random_state=0)
    m.fit(X, y, sw)
    np.testing.assert_allclose(m.decision_function(X), m.train_decision_, atol=1e-10)
    p = m.predict_proba(X[:5])
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert set(np.unique(m.predict(X))) <= {0, 1}


def test_fit_info_reports_diagnostics(rng):
    X, y, sw = make_classification(rng)
    info = KernelLogisticRegression(sigma=1.0, n_centers=100, random_state=0).fit(
        X, y, sw).fit_info_
    d = info.to_dict()
    for key in ("n_iter", "grad_norm", "objective", "time_total", "rank", "converged"):
        assert key in d
    assert info.n_iter >= 1 and info.grad_norm < 1e-6 and info.time_total > 0
    assert info.suboptimality <= 1e-8


def test_same_seed_same_fit_different_seed_different_centres(rng):
    X, y, sw = make_classification(rng)
    a = KernelLogisticRegression(sigma=1.0, n_centers=100, random_state=11).fit(X, y, sw)
    b = KernelLogisticRegression(sigma=1.0, n_centers=100, random_state=11).fit(X, y, sw)
    c = KernelLogisticRegression(sigma=1.0, n_centers=100, random_state=12).fit(X, y, sw)
    assert np.array_equal(a.train_decision_, b.train_decision_)
    assert not np.array_equal(a.candidate_indices_, c.candidate_indices_)


def test_pivoted_cholesky_reconstructs_kernel(rng):
    C = torch.as_tensor(rng.normal(size=(150, 2)))
    piv, L, res = pivoted_cholesky(C, 0.7, 1e-10, block=32)
    K = gauss(C.numpy(), C.numpy(), 0.7)
    assert res <= 1e-10
    assert np.abs(K - (L @ L.T).numpy()).max() <= 1e-9
    LP = L[piv].numpy()
    assert np.allclose(LP, np.tril(LP))


def test_pivoted_cholesky_skips_duplicate_centres(rng):
    base = rng.normal(size=(20, 2))
    C = torch.as_tensor(np.vstack([base, base]))  # every centre twice
    piv, _, _ = pivoted_cholesky(C, 1.0, 1e-12)
    assert piv.numel() <= 20


def test_pivot_ties_go_to_the_lower_index(rng):
    """At the start every residual is exactly 1: the first pivot is candidate 0.

    topk's order among equal values differs between CPU and CUDA (and torch builds);
    before ties were broken by index, the same toy picked other pivots on a GPU and
    its f moved by up to 0.09 (H100 run of tests/test_gpu.py).
    """
    C = torch.as_tensor(rng.normal(size=(500, 2)))
    piv, _, _ = pivoted_cholesky(C, 1.0, 1e-9)
    assert int(piv[0]) == 0
    again, _, _ = pivoted_cholesky(C.clone(), 1.0, 1e-9)
    assert torch.equal(piv, again)


def test_duplicate_events_do_not_break_the_fit(rng):
    X, y, sw = make_classification(rng, n_ref=500, n_data=50)
    X = np.vstack([X, X])
    y, sw = np.r_[y, y], np.r_[sw, sw]
    m = KernelLogisticRegression(sigma=1.0, n_centers=400, lam=1e-6, random_state=0)
    m.fit(X, y, sw)
    assert m.fit_info_.converged and np.isfinite(m.train_decision_).all()


def test_sklearn_clone_and_params():
    sk = pytest.importorskip("sklearn.base")
    m = KernelLogisticRegression(sigma=0.5, n_centers=50, lam=1e-4)
    c = sk.clone(m)
    assert c.get_params() == m.get_params()
    c.set_params(lam=1e-3)
    assert c.lam == 1e-3 and m.lam == 1e-4
    with pytest.raises(InputError, match="unknown parameter"):
        c.set_params(nonsense=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lam": 0.0}, "lam must be a positive"),
        ({"lam": float("nan")}, "lam must be a positive"),
        ({"sigma": -1.0}, "sigma must be a positive"),
        ({"sigma": "wide"}, "sigma must be a positive number or 'auto'"),
        ({"schedule": "fast"}, "schedule must be one of"),
        ({"inner": "lu"}, "inner must be one of"),
        ({"device": "tpu"}, "device"),
        ({"dtype": "float16"}, "dtype"),
        ({"sigma": None}, "sigma must be a positive finite number or 'auto'"),
        ({"sigma": [1.0]}, "sigma must be a positive finite number or 'auto'"),
        ({"n_centers": 2.7}, "n_centers must be an integer"),
        ({"n_centers": True}, "n_centers must be an integer"),
        ({"n_centers": "abc"}, "n_centers must be an integer"),
        ({"random_state": "seed"}, "random_state must be"),
    ],
)
def test_bad_parameters_are_named(rng, kwargs, match):
    X, y, sw = make_classification(rng, n_ref=100, n_data=10)
    with pytest.raises(InputError, match=match):
        KernelLogisticRegression(**kwargs).fit(X, y, sw)


def test_numpy_scalars_and_random_state_instances(rng):
    # what a scikit-learn user passes: numpy scalars, a RandomState
    X, y, sw = make_classification(rng, n_ref=200, n_data=20)
    a = KernelLogisticRegression(sigma=np.float32(1.0), lam=np.float32(1e-4),
                                 n_centers=np.int64(40),
                                 random_state=np.random.RandomState(3)).fit(X, y, sw)
    b = KernelLogisticRegression(sigma=1.0, lam=float(np.float32(1e-4)), n_centers=40,
                                 random_state=np.random.RandomState(3)).fit(X, y, sw)
    np.testing.assert_array_equal(a.train_decision_, b.train_decision_)
    # score checks its labels and weights like fit
    with pytest.raises(InputError, match="sample_weight must have shape"):
        a.score(X, y, np.ones(5))
    with pytest.raises(InputError, match="only the labels 0 and 1"):
        a.score(X, np.full(len(y), 2))


def test_bad_fit_inputs(rng):
    X, y, sw = make_classification(rng, n_ref=100, n_data=10)
    m = KernelLogisticRegression(sigma=1.0)
    with pytest.raises(InputError, match="2-D"):
        m.fit(X[:, 0], y, sw)
    with pytest.raises(InputError, match="labels 0 and 1"):
        m.fit(X, y * 2, sw)
    with pytest.raises(InputError, match="negative"):
        m.fit(X, y, -sw)
    with pytest.raises(InputError, match="sums to zero"):
        m.fit(X, y, sw * 0)
    with pytest.raises(InputError, match="not fitted"):
        m.decision_function(X)


def test_not_fitted_follows_sklearn(rng):
    """Before ``fit`` the learner raises nplearn's NotFittedError (a ValueError and an
    AttributeError, as scikit-learn's is) and scikit-learn's check_is_fitted sees it as
    not fitted; after ``fit`` both pass."""
    from nplearn import NotFittedError

    validation = pytest.importorskip("sklearn.utils.validation")
    sk_exc = pytest.importorskip("sklearn.exceptions")
    X, y, sw = make_classification(rng, n_ref=100, n_data=10)
    m = KernelLogisticRegression(sigma=1.0, n_centers=20, random_state=0)
    for call in (m.decision_function, m.predict_proba, m.predict):
        with pytest.raises(NotFittedError) as err:
            call(X)
        assert isinstance(err.value, ValueError) and isinstance(err.value, AttributeError)
    with pytest.raises(sk_exc.NotFittedError):
        validation.check_is_fitted(m)
    m.fit(X, y, sw)
    validation.check_is_fitted(m)
    assert m.decision_function(X).shape == (len(X),)


def test_warm_start_from_another_width_reaches_the_dense_solution(rng):
    # A PCG fit started from the fit at a wider kernel ends at the same optimum (the
    # dense float64 Newton solution), with fewer Newton steps than from zero.
    X, y, sw = make_classification(rng)
    opts = dict(n_centers=40, lam=1e-5, inner="cg", rank_tol=0.0, tol=1e-12, cg_tol=1e-12,
                random_state=7)
    wide = KernelLogisticRegression(sigma=2.0, **opts).fit(X, y, sw)
    cold = KernelLogisticRegression(sigma=1.0, **opts).fit(X, y, sw)
    warm = KernelLogisticRegression(sigma=1.0, **opts).fit(
        X, y, sw, init_decision=wide.train_decision_)
    assert warm.fit_info_.warm_start and not cold.fit_info_.warm_start
    assert warm.fit_info_.converged
    # the start is already far closer to the optimum than zero is
    J_start = [m.fit_info_.history[0]["objective"] for m in (cold, warm)]
    assert J_start[1] - warm.fit_info_.objective < 0.01 * (J_start[0] - cold.fit_info_.objective)
    _, f, J = dense_newton(X, y, sw, X[warm.candidate_indices_], 1.0, 1e-5)
    assert abs(warm.fit_info_.objective - J) <= 1e-10 * abs(J)
    np.testing.assert_allclose(warm.train_decision_, f, rtol=0, atol=1e-7 * np.abs(f).max())


def test_warm_start_is_ignored_or_refused_when_it_cannot_help(rng):
    X, y, sw = make_classification(rng, n_ref=600, n_data=60)
    opts = dict(sigma=1.0, n_centers=30, lam=1e-4, random_state=3, tol=1e-12)
    cold = KernelLogisticRegression(inner="cg", **opts).fit(X, y, sw)
    # a start worse than zero is discarded: the fit proceeds from zero, unchanged
    bad = KernelLogisticRegression(inner="cg", **opts).fit(
        X, y, sw, init_decision=np.where(y == 1, -30.0, 30.0))
    assert not bad.fit_info_.warm_start and bad.fit_info_.converged
    np.testing.assert_allclose(bad.train_decision_, cold.train_decision_, rtol=0, atol=1e-12)
    # the direct solver and the one-step schedule never use it
    for kw in ({"inner": "direct"}, {"inner": "cg", "schedule": "onestep"}):
        a = KernelLogisticRegression(**kw, **opts).fit(X, y, sw)
        b = KernelLogisticRegression(**kw, **opts).fit(X, y, sw,
                                                       init_decision=cold.train_decision_)
        assert not b.fit_info_.warm_start
        np.testing.assert_array_equal(a.train_decision_, b.train_decision_)
    m = KernelLogisticRegression(inner="cg", **opts)
    with pytest.raises(InputError, match="init_decision must have shape"):
        m.fit(X, y, sw, init_decision=np.zeros(5))
    with pytest.raises(InputError, match="init_decision contains non-finite"):
        m.fit(X, y, sw, init_decision=np.full(len(y), np.nan))


def test_grid_search_on_reference_only_data(rng):
    # model selection on reference-only data: two halves of the reference labelled
    # 0/1 are indistinguishable, so the best (least overfitting) settings win
    ms = pytest.importorskip("sklearn.model_selection")
    X = rng.normal(size=(1200, 1))
    y = (np.arange(1200) % 2).astype(int)
    grid = ms.GridSearchCV(KernelLogisticRegression(n_centers=100, random_state=0),
                           {"sigma": [0.02, 1.0], "lam": [1e-9, 1e-3]}, cv=3)
    grid.fit(X, y)
    assert grid.best_params_["sigma"] == 1.0 and grid.best_params_["lam"] == 1e-3
    m = grid.best_estimator_
    assert m.score(X, y) == pytest.approx(-np.mean(np.logaddexp(0.0, -m.decision_function(X))
                                                   * y + np.logaddexp(0.0, m.decision_function(X))
                                                   * (1 - y)))


def test_progress_line(monkeypatch):
    import io

    from nplearn.cli import Progress

    buf = io.StringIO()
    p = Progress("toys", stream=buf, enabled=True)
    p(5, 10)
    p(10, 10)
    out = buf.getvalue()
    assert "5/10" in out and "10/10" in out and "/s ETA" in out and out.endswith("\n")
    quiet = io.StringIO()  # not a terminal: no progress line for a short run
    Progress("toys", stream=quiet)(10, 10)
    assert quiet.getvalue() == ""
    # the rate counts the toys run, not those loaded from a checkpoint (90 of 100 here:
    # the ETA of the last 10 was 0 s); a batch log gets a line every log_every seconds
    import nplearn.cli as cli_mod

    clock = iter([0.0, 10.0, 20.0, 25.0])
    monkeypatch.setattr(cli_mod.time, "perf_counter", lambda: next(clock))
    log = io.StringIO()
    p = Progress("toys", stream=log, log_every=15.0)
    p(90, 100)  # the baseline
    p(92, 100)  # 10 s later: not yet a line
    p(94, 100)  # 20 s: 4 toys in 20 s, 6 to go
    assert log.getvalue().endswith("toys: 94/100 done, 0.2/s, ETA 30s\n")
    p(100, 100)  # the last one closes the log
    assert log.getvalue().count("\n") == 2 and "100/100 done, 0.4/s" in log.getvalue()


def test_reused_feature_memory_changes_no_fit(rng, monkeypatch):
    """Fits inside ``reuse_feature_memory`` share one feature buffer: the results are
    bit-identical to separate fits, nothing a fit keeps refers to the buffer, it is
    really reused, grows when a fit needs more, is lent to one fit at a time, is
    freed before work that does not use it, and is taken back after a failure."""
    from nplearn.learners.kernel import current_feature_memory, reuse_feature_memory

    opts = dict(n_centers=60, lam=1e-5, inner="direct", random_state=3)
    X, y, _ = make_classification(rng, n_ref=3000, n_data=300, shift=0.3, scale=1.0)
    X2, y2, _ = make_classification(rng, n_ref=3000, n_data=300, shift=0.6, scale=1.2)
    # same events (hence centres and rank), other weights: another fit, same buffer size
    problems = [(X, y, np.ones(len(y))), (X, y, np.where(y == 1, 2.0, 0.5))]
    alone = [KernelLogisticRegression(sigma=1.0, **opts).fit(*p) for p in problems]
    assert current_feature_memory() is None
    with reuse_feature_memory() as memory:
        assert current_feature_memory() is memory
        first = KernelLogisticRegression(sigma=1.0, **opts).fit(*problems[0])
        block = memory._block
        assert block is not None and memory._lent_to is None  # given back after the fit
        second = KernelLogisticRegression(sigma=1.0, **opts).fit(*problems[1])
        assert memory._block is block  # the same memory, not a new allocation
        for ref, got in zip(alone, (first, second), strict=True):
            np.testing.assert_array_equal(ref.train_decision_, got.train_decision_)
            assert ref.fit_info_.objective == got.fit_info_.objective
        # a narrower width has a larger rank: the block grows to hold its features
        narrow = KernelLogisticRegression(sigma=0.3, **opts).fit(X, y)
        assert narrow.rank_ > first.rank_ and memory._block.numel() >= narrow.rank_ * 3300
        # another fit on other events overwrites the block; the narrow fit's results
        # (its decision values feed the next width's warm start) do not move
        kept = (narrow.train_decision_.copy(), narrow.coef_.copy(), narrow.beta_.copy())
        big = memory._block
        KernelLogisticRegression(sigma=1.0, **opts).fit(X2, y2)
        assert memory._block is big
        for a, b in zip(kept, (narrow.train_decision_, narrow.coef_, narrow.beta_),
                        strict=True):
            np.testing.assert_array_equal(a, b)
        # lent to one fit at a time: while another holds it, a fit gets fresh memory
        # and does not give back what it never borrowed
        _held, token = memory.matrix(10, 10, torch.float64, torch.device("cpu"))
        assert token is not None and memory.matrix(2, 2, torch.float64, "cpu")[1] is None
        KernelLogisticRegression(sigma=1.0, **opts).fit(X2, y2)
        assert memory._lent_to == token and memory._block is big
        memory.release(token - 1)  # a stale token (an earlier fit's) changes nothing
        assert memory._lent_to == token
        memory.release(token)
        # another dtype: a block of that dtype
        KernelLogisticRegression(sigma=1.0, **{**opts, "dtype": "float32"}).fit(X, y)
        assert memory._block.dtype == torch.float32
        # features that do not use the block (lazy here) free it first
        KernelLogisticRegression(sigma=1.0, memory_budget=0, **opts).fit(X, y)
        assert memory._block is None
        KernelLogisticRegression(sigma=1.0, **opts).fit(X, y)
        # a fit that fails gives the block back
        monkeypatch.setattr(kernel_mod._NewtonSolver, "solve",
                            lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(RuntimeError, match="boom"):
            KernelLogisticRegression(sigma=1.0, **opts).fit(*problems[0])
        assert memory._lent_to is None and memory._block is not None
    assert current_feature_memory() is None and memory._block is None  # freed on exit


@pytest.mark.parametrize("executor", [False, True])
def test_toys_are_the_same_with_and_without_feature_reuse(rng, monkeypatch, executor):
    """A calibration's toy loops (in process, or in threads of an executor, each with
    its own buffer) reuse feature memory, warm starts across widths included; toys
    run one by one outside it give bit-identical statistics at every width."""
    from concurrent.futures import ThreadPoolExecutor

    from nplearn._torch_utils import torch_threads
    from nplearn.learners.kernel import FeatureMemory
    from nplearn.toys import ToyEngine, run_toys

    pool = rng.exponential(size=(6000, 1))
    eng = ToyEngine({"sigma": 0.5, "n_centers": 80, "lam": 1e-6, "inner": "cg"}, 100.0, 7,
                    pool=pool, sigmas=(0.2, 0.5, 1.5))
    with torch_threads(1):  # BLAS rounding depends on the thread count
        single = [eng.run(i) for i in range(6)]
    assert all(r.ok for r in single)
    lent = []
    matrix = FeatureMemory.matrix

    def counted(self, *args):
        out = matrix(self, *args)
        lent.append(out[1] is not None)
        return out

    monkeypatch.setattr(FeatureMemory, "matrix", counted)
    if executor:
        with ThreadPoolExecutor(2) as ex:
            looped = run_toys(eng, range(6), executor=ex, threads_per_worker=1)
    else:
        looped = run_toys(eng, range(6), workers=1, threads_per_worker=1)
    assert lent == [True] * 18  # every fit borrowed (each thread has its own buffer)
    assert [r.t_widths for r in looped] == [r.t_widths for r in single]


def test_every_feature_storage_gives_the_same_fit_at_a_tiny_lambda(monkeypatch):
    """At lambda = 1e-10 the centres' Cholesky factor is ill-conditioned: the kernel,
    lazy and window modes applied L_P^-1 by triangular solves while the features, the
    Hessian and decision_function used its explicit inverse. Here their f then differed
    from the model's by 0.3, a lazy direct fit did not converge in 100 Newton steps
    (t = 474.6 against 493.4) and t depended on the memory budget. Every mode now uses
    the same inverse (measured: f within 5e-5, t within 1e-4)."""
    import warnings

    import nplearn.learners.kernel as kernel_mod
    from nplearn.learners.kernel import KernelLogisticRegression

    rng = np.random.default_rng(0)
    n = 8000
    X = rng.normal(size=(n, 1))
    y = (rng.random(n) < 0.05).astype(int)
    X[:, 0] += 0.3 * y
    w = np.where(y == 0, 0.05 / 0.95, 1.0)

    def t_of(f):
        return 2 * (f[y == 1].sum() - (w[y == 0] * np.expm1(f[y == 0])).sum())

    def fit(**kw):
        m = KernelLogisticRegression(sigma=0.02, lam=1e-10, n_centers=1000, random_state=1,
                                     **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(X, y, sample_weight=w)
        assert m.fit_info_.converged, (m.fit_info_.features, m.fit_info_.message)
        # the statistic's f (training values) is the model's f
        np.testing.assert_allclose(m.train_decision_, m.decision_function(X), atol=1e-3)
        return m.fit_info_.features, t_of(m.train_decision_)

    got = dict([fit(), fit(memory_budget=0, inner="direct")])
    monkeypatch.setattr(kernel_mod, "WINDOWED_FEATURES", False)
    got.update([fit(inner="direct")])
    assert set(got) == {"window", "lazy", "phi"}
    t = np.array(list(got.values()))
    assert np.ptp(t) < 1e-3, got


def test_float32_fits_do_not_round_events_far_from_zero():
    """Events are shifted by the centres' mean in float64 before their float32 cast:
    at an offset of 1e6 a cast first rounded them by ~0.06 (f moved by 0.05 at
    sigma = 0.3); the fit is then the same as without the offset."""
    import warnings

    from nplearn.learners.kernel import KernelLogisticRegression

    rng = np.random.default_rng(3)
    X = np.r_[rng.normal(size=(3000, 1)), rng.normal(0.5, 0.3, size=(300, 1))]
    y = np.r_[np.zeros(3000), np.ones(300)].astype(int)
    grid = np.linspace(-2, 2, 41)[:, None]
    fs = []
    for offset in (0.0, 1e6):
        m = KernelLogisticRegression(sigma=0.3, lam=1e-6, n_centers=200, dtype="float32",
                                     random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(X + offset, y)
        fs.append(m.decision_function(grid + offset))
    np.testing.assert_allclose(fs[1], fs[0], atol=1e-3)
