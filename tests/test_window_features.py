"""Windowed kernel features of narrow kernels against the dense features and solutions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nplearn import KernelLogisticRegression
from nplearn.learners import kernel as kernel_mod
from nplearn.learners.kernel import NystromBasis, _window_plan, gaussian_kernel, negligible
from nplearn.learners.reference import dense_newton

CPU = torch.device("cpu")
BIG = 1 << 40  # a memory budget that never binds


def _narrow_problem(rng, d: int = 1, n_ref: int = 3000, n_data: int = 80):
    """Exponential reference and data with a bump: a kernel of width 0.01-0.05 sees
    only a small stretch of the sample around each event."""
    ref = rng.exponential(1.0, size=(n_ref, d))
    data = np.vstack([rng.exponential(1.0, size=(n_data - 20, d)),
                      rng.normal(0.8, 0.02, size=(20, d))])
    X = np.vstack([ref, data])
    y = np.r_[np.zeros(n_ref), np.ones(n_data)].astype(int)
    sw = np.r_[np.full(n_ref, n_data / n_ref), np.ones(n_data)]
    return X, y, sw


@pytest.mark.parametrize("d, sigma", [(1, 0.01), (2, 0.03)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_window_products_equal_the_dense_ones(rng, d, sigma, dtype):
    X, _, sw = _narrow_problem(rng, d)
    rank_tol = 1e-9 if dtype == torch.float64 else 1e-4
    basis = NystromBasis.build(X, np.arange(0, X.shape[0], 10), sigma, rank_tol, CPU)
    Xt = basis.events(X, dtype)
    dense = basis.features(Xt, "phi", block_bytes=1 << 20)
    win = basis.features(Xt, "phi", block_bytes=1 << 20, window_budget=BIG)
    assert dense.mode == "phi" and win.mode == "window"
    assert win.plan.width <= kernel_mod.WINDOW_MAX_FRACTION * basis.rank
    perm = win.perm
    assert torch.equal(torch.sort(perm).values, torch.arange(X.shape[0]))
    assert bool((win.X[1:, win.plan.axis] >= win.X[:-1, win.plan.axis]).all())
    g = torch.Generator().manual_seed(5)
    beta = torch.randn(basis.rank, generator=g, dtype=torch.float64)
    u = torch.randn(X.shape[0], generator=g, dtype=torch.float64)
    dd = torch.as_tensor(sw) * torch.rand(X.shape[0], generator=g, dtype=torch.float64)
    # Both sides round differently (L_P^-1 times the kernel block, against sums of the
    # window's kernel entries then L_P^-1): they agree to the dtype's rounding amplified by
    # the conditioning of L_P (up to ~1e5 here), not to machine precision. Measured
    # in float64: below 30 eps cond on an Intel Xeon, up to 282 eps cond on an AMD
    # EPYC (2D, the Gram matrix of a subsample); in float32 below 2 eps cond on both.
    # A wrong window (a kernel column left out) errs by 1e-3 or more.
    cond = float(torch.linalg.cond(basis.L_P))
    rtol = (1000 if dtype == torch.float64 else 30) * torch.finfo(dtype).eps * cond

    def close(a: torch.Tensor, b: torch.Tensor) -> None:
        err = float((a - b).abs().max()) / float(b.abs().max())
        assert err <= rtol, (err, rtol)

    close(win.mv(beta), dense.mv(beta)[perm])  # window results come in sorted order
    close(win.rmv(u[perm]), dense.rmv(u))
    close(win.hvp(beta, dd[perm]), dense.hvp(beta, dd))
    close(win.gram(dd[perm]), dense.gram(dd))  # dense columns of the sorted events
    idx = torch.arange(0, X.shape[0], 7)  # a subsample (preconditioner): dense columns
    close(win.gram(dd[perm][idx], idx), dense.gram(dd[perm[idx]], perm[idx]))


def test_window_plan_drops_only_negligible_entries(rng):
    # every kernel entry outside a block's window is below the floor, and wide
    # kernels (or switched-off windows) get no plan
    X, _, _ = _narrow_problem(rng, 2)
    Xt = torch.as_tensor(X)
    P = Xt[::15]
    plan = _window_plan(Xt, P, 0.02, block=64)
    assert plan is not None and plan.width <= kernel_mod.WINDOW_MAX_FRACTION * P.shape[0]
    K = gaussian_kernel(Xt[plan.perm], P[plan.order], 0.02)  # sorted events x sorted centres
    for b in range(plan.n_blocks):
        rows = K[b * 64 : (b + 1) * 64]
        outside = torch.ones(P.shape[0], dtype=torch.bool)
        outside[int(plan.lo[b]) : int(plan.lo[b]) + plan.width] = False
        if bool(outside.any()):
            assert float(rows[:, outside].max()) <= negligible(torch.float64) * (1 + 1e-12)
    assert _window_plan(Xt, P, 1.0) is None
    kernel_mod.WINDOWED_FEATURES = False
    try:
        assert _window_plan(Xt, P, 0.03) is None
    finally:
        kernel_mod.WINDOWED_FEATURES = True


def test_window_fit_matches_dense_newton(rng):
    # the exact dense float64 Newton solution on all candidate centres: 40 centres,
    # a few sigma apart on average, keep K_MM well conditioned, so f is unique
    X, y, sw = _narrow_problem(rng, 1, n_ref=2000, n_data=60)
    m = KernelLogisticRegression(sigma=0.01, n_centers=40, lam=1e-6, random_state=2,
                                 rank_tol=0.0, tol=1e-12).fit(X, y, sw)
    assert m.fit_info_.features == "window" and m.fit_info_.inner == "cg"
    assert m.fit_info_.converged and m.rank_ == 40
    _, f, J = dense_newton(X, y, sw, X[m.candidate_indices_], 0.01, 1e-6)
    assert abs(m.fit_info_.objective - J) <= 1e-10 * abs(J)
    np.testing.assert_allclose(m.train_decision_, f, rtol=0, atol=1e-7 * np.abs(f).max())
    np.testing.assert_allclose(m.decision_function(X), m.train_decision_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("inner", ["auto", "cg"])
def test_window_fit_equals_the_dense_fit(rng, inner, monkeypatch):
    X, y, sw = _narrow_problem(rng, 1)
    opts = dict(sigma=0.01, n_centers=300, lam=1e-6, random_state=4, tol=1e-13, inner=inner)
    fits = {}
    for on in (False, True):
        monkeypatch.setattr(kernel_mod, "WINDOWED_FEATURES", on)
        fits[on] = KernelLogisticRegression(**opts).fit(X, y, sw)
    assert fits[True].fit_info_.features == "window" and fits[True].fit_info_.inner == "cg"
    assert fits[False].fit_info_.features in ("phi", "kernel")
    assert fits[True].rank_ == fits[False].rank_
    # Both converge to n (J - J*) <= tol: the objective and t agree closely, f to
    # ~1e-6 where no event pins it down (|f| ~ 8 in empty stretches of a narrow
    # kernel, whose loss curvature is ~1e-5 there)
    nR = int((y == 0).sum())

    def t(m: KernelLogisticRegression) -> float:
        f = m.train_decision_
        return 2 * (f[nR:].sum() - (sw[:nR] * np.expm1(f[:nR])).sum())

    J = [fits[k].fit_info_.objective for k in (True, False)]
    assert abs(J[0] - J[1]) <= 1e-11 * abs(J[1])
    assert abs(t(fits[True]) - t(fits[False])) <= 1e-8 * abs(t(fits[False]))
    np.testing.assert_allclose(fits[True].train_decision_, fits[False].train_decision_,
                               rtol=1e-5, atol=1e-7)
    # a warm start (PCG) from another width's decision values, given in the caller's order
    if inner == "cg":
        wide = KernelLogisticRegression(**{**opts, "sigma": 0.05}).fit(X, y, sw)
        warm = KernelLogisticRegression(**opts).fit(X, y, sw,
                                                    init_decision=wide.train_decision_)
        assert warm.fit_info_.warm_start and warm.fit_info_.features == "window"
        assert abs(t(warm) - t(fits[True])) <= 1e-8 * abs(t(fits[True]))
        # started from its own solution (given in the caller's order) it needs fewer
        # Newton steps; scrambled values (read in the wrong order) are rejected
        again = KernelLogisticRegression(**opts).fit(
            X, y, sw, init_decision=fits[True].train_decision_)
        assert again.fit_info_.warm_start
        assert again.fit_info_.n_iter < fits[True].fit_info_.n_iter


def test_onestep_schedule_and_direct_solve_keep_dense_features(rng):
    X, y, sw = _narrow_problem(rng, 1)
    for kw in ({"schedule": "onestep"}, {"inner": "direct"}):
        m = KernelLogisticRegression(sigma=0.01, n_centers=300, lam=1e-6, random_state=4,
                                     **kw).fit(X, y, sw)
        assert m.fit_info_.features == "phi"


def test_window_features_in_float32_and_shared_pool_toys(rng, monkeypatch):
    from nplearn.toys import ToyEngine

    X, y, sw = _narrow_problem(rng, 1)
    f32 = {}
    for on in (False, True):
        monkeypatch.setattr(kernel_mod, "WINDOWED_FEATURES", on)
        f32[on] = KernelLogisticRegression(sigma=0.01, n_centers=300, lam=1e-6, random_state=4,
                                           dtype="float32").fit(X, y, sw)
    assert f32[True].fit_info_.features == "window" and f32[True].fit_info_.converged
    # float32 features (rank_tol 1e-5): t agrees to float32 rounding (f itself only
    # to ~1e-2 where no event pins it down)
    nR = int((y == 0).sum())
    t32 = [2 * (m.train_decision_[nR:].sum()
                - (sw[:nR] * np.expm1(m.train_decision_[:nR])).sum()) for m in f32.values()]
    assert abs(t32[0] - t32[1]) <= 1e-4 * abs(t32[0])
    # shared centres: the pool's features are computed once, windowed, and every toy
    # gives the t of dense features
    pool = rng.exponential(1.0, size=(6000, 1))
    params = {"sigma": 0.01, "n_centers": 300, "lam": 1e-6, "tol": 1e-11}
    ts = {}
    for on in (False, True):
        monkeypatch.setattr(kernel_mod, "WINDOWED_FEATURES", on)
        eng = ToyEngine(params, 80.0, 3, pool=pool, shared_centers=True)
        ts[on] = [eng.run(i).t for i in range(3)]
        feat = eng._cache[("shared", 0.01)][2]
        assert feat.mode == ("window" if on else "phi")
    np.testing.assert_allclose(ts[True], ts[False], rtol=1e-7)


def test_window_solver_sees_the_candidates_in_its_own_order(rng, monkeypatch):
    # the solver works in the features' sorted order: the candidate centres' rows (the
    # "centres" preconditioner reads their loss curvature) must follow the events
    X, y, sw = _narrow_problem(rng, 1)
    seen = {}
    real = kernel_mod._NewtonSolver

    def spy(feat, sign, sw_t, *args, **kwargs):
        seen.update(feat=feat, sign=sign, center_idx=args[2])
        return real(feat, sign, sw_t, *args, **kwargs)

    monkeypatch.setattr(kernel_mod, "_NewtonSolver", spy)
    m = KernelLogisticRegression(sigma=0.01, n_centers=300, lam=1e-6, random_state=4,
                                 inner="cg").fit(X, y, sw)
    feat = seen["feat"]
    assert feat.mode == "window"
    rows = feat.X[seen["center_idx"]] + m._shift  # the events were shifted by the centres' mean
    np.testing.assert_allclose(rows.numpy(), X[m.candidate_indices_], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(seen["sign"].numpy(), (2 * y - 1)[feat.perm.numpy()])


def _t(m: KernelLogisticRegression, y: np.ndarray, sw: np.ndarray) -> float:
    f, ref = m.train_decision_, y == 0
    return 2 * (f[~ref].sum() - (sw[ref] * np.expm1(f[ref])).sum())


def test_window_fit_in_two_dimensions(rng, monkeypatch):
    X, y, sw = _narrow_problem(rng, 2)
    ts = {}
    for on in (False, True):
        monkeypatch.setattr(kernel_mod, "WINDOWED_FEATURES", on)
        m = KernelLogisticRegression(sigma=0.03, n_centers=300, lam=1e-6, random_state=4,
                                     tol=1e-13).fit(X, y, sw)
        assert m.fit_info_.converged and (m.fit_info_.features == "window") == on
        ts[on] = _t(m, y, sw)
    assert abs(ts[True] - ts[False]) <= 1e-8 * abs(ts[False])


def test_window_falls_back_when_it_does_not_fit(rng):
    X, y, sw = _narrow_problem(rng, 1)
    opts = dict(sigma=0.01, n_centers=300, lam=1e-6, random_state=4, tol=1e-13)
    ref = KernelLogisticRegression(**opts).fit(X, y, sw)
    assert ref.fit_info_.features == "window"
    # no room for the windows: the dense storage the budget allows (kernel blocks)
    tight = KernelLogisticRegression(memory_budget=4096, **opts).fit(X, y, sw)
    assert tight.fit_info_.features == "lazy" and tight.fit_info_.converged
    assert abs(_t(tight, y, sw) - _t(ref, y, sw)) <= 1e-8 * abs(_t(ref, y, sw))
