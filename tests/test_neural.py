"""The NPLM neural-network learner: loss, constraint, optimisers, calibration, CLI."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats as sps

from nplearn import (
    InputError,
    NeuralNetworkLearner,
    NotFittedError,
    NPLMConfig,
    calibrate,
    nplm_statistic,
    nplm_test,
)
from nplearn.learners import make_learner, neural
from nplearn.learners.neural import GRAD_RTOL, n_parameters
from nplearn.toys import ToyEngine, nplm_fit, run_toys

N_REF, EXPECTED = 5000, 100.0


def _sample(seed: int, n_signal: float = 0.0, n_ref: int = N_REF, expected: float = EXPECTED):
    rng = np.random.default_rng(seed)
    ref = rng.exponential(1.0, (n_ref, 1))
    parts = [rng.exponential(1.0, rng.poisson(expected))]
    if n_signal:
        parts.append(rng.normal(3.0, 0.2, rng.poisson(n_signal)))
    return ref, np.concatenate(parts)[:, None]


def _xyw(ref, dat, expected=EXPECTED):
    X = np.concatenate([ref, dat])
    y = np.r_[np.zeros(len(ref)), np.ones(len(dat))]
    w = np.r_[np.full(len(ref), expected / len(ref)), np.ones(len(dat))]
    return X, y, w


def _loss_numpy(coefs, X, y, w, act=lambda z: 1 / (1 + np.exp(-z))):
    """The NPLM loss of a network written out by hand (independent of the learner)."""
    h = X
    n_layers = len(coefs) // 2
    for k in range(n_layers):
        h = h @ coefs[2 * k].T + coefs[2 * k + 1]
        if k < n_layers - 1:
            h = act(h)
    f = h[:, 0]
    return float(np.sum(np.where(y == 1, -w * f, w * (np.exp(f) - 1)))), f


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_objective_is_minus_half_t_and_matches_a_hand_written_network(optimizer):
    ref, dat = _sample(1, n_signal=15)
    X, y, w = _xyw(ref, dat)
    m = NeuralNetworkLearner(hidden=(3, 2), optimizer=optimizer, epochs=300, lr=0.02,
                             n_init=1, random_state=0).fit(X, y, w)
    loss, f = _loss_numpy(m.coefs_, X, y, w)
    np.testing.assert_allclose(f, m.train_decision_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.decision_function(X), f, rtol=1e-10, atol=1e-12)
    t, _ = nplm_statistic(f[: len(ref)], f[len(ref):], w[: len(ref)])
    assert m.fit_info_.objective == pytest.approx(loss, rel=1e-10)
    assert t == pytest.approx(-2 * loss, rel=1e-9)
    assert m.n_params_ == n_parameters(1, (3, 2)) == 1 * 3 + 3 + 3 * 2 + 2 + 2 * 1 + 1
    assert [c.shape for c in m.coefs_] == [(3, 1), (3,), (2, 3), (2,), (1, 2), (1,)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lbfgs_reaches_a_constrained_stationary_point_with_the_yield_normalised(seed):
    # The output bias is free (only weights are clipped), so at a minimum
    # dL/db_out = N_w - N_D vanishes: the extended-likelihood normalisation of the NPLM
    # loss. A wrong sign or weight in the loss breaks it.
    ref, dat = _sample(5, n_signal=20)
    X, y, w = _xyw(ref, dat)
    m = NeuralNetworkLearner(hidden=(3,), n_init=1, random_state=seed).fit(X, y, w)
    info = m.fit_info_
    assert info.converged, info.message
    assert info.grad_norm <= GRAD_RTOL * len(dat)
    n_w = float(w[: len(ref)] @ np.exp(m.train_decision_[: len(ref)]))
    assert n_w == pytest.approx(len(dat), abs=1e-3)
    # no step along any parameter inside its bounds lowers the loss (finite differences)
    loss0, _ = _loss_numpy(m.coefs_, X, y, w)
    for k, c in enumerate(m.coefs_):
        for idx in np.ndindex(c.shape):
            for h in (1e-4, -1e-4):
                if k % 2 == 0 and abs(c[idx] + h) > m.weight_clip_:
                    continue
                moved = [x.copy() for x in m.coefs_]
                moved[k][idx] += h
                assert _loss_numpy(moved, X, y, w)[0] >= loss0 - 1e-6


def test_converged_flag_follows_the_projected_gradient(monkeypatch):
    # One L-BFGS-B run without restarts: scipy reports success (its relative-decrease
    # stop) while the projected gradient is still 2.6 against a tolerance of 1.1e-4;
    # the flag must follow the gradient, not scipy
    monkeypatch.setattr(neural, "LBFGS_ROUNDS", 1)
    ref, dat = _sample(5, n_signal=20)
    X, y, w = _xyw(ref, dat)
    m = NeuralNetworkLearner(hidden=(3,), n_init=1, random_state=1).fit(X, y, w)
    info = m.fit_info_
    assert info.grad_norm > GRAD_RTOL * len(dat)
    assert not info.converged and "NOT converged" in info.message
    # with the restarts the same start converges
    monkeypatch.undo()
    m = NeuralNetworkLearner(hidden=(3,), n_init=1, random_state=1).fit(X, y, w)
    assert m.fit_info_.converged and m.fit_info_.grad_norm <= GRAD_RTOL * len(dat)


def test_loss_continues_smoothly_beyond_overflow():
    # e^f - 1 continues as its second-order Taylor polynomial above F_OVERFLOW: equal
    # value, slope and curvature at the joint, finite far beyond e^709.8; the slope the
    # backward pass uses is the derivative of the value
    f0 = neural.F_OVERFLOW
    f = torch.tensor([f0 - 1e-6, f0 + 1e-6, f0 + 100.0, 1e10, 0.5], dtype=torch.float64)
    value, slope = neural._ref_term(f)
    assert torch.isfinite(value).all() and torch.isfinite(slope).all()
    e = np.exp(f0)
    assert value[0].item() == pytest.approx(np.expm1(f0 - 1e-6), rel=1e-12)
    assert value[1].item() == pytest.approx(value[0].item(), rel=1e-5)
    assert slope[1].item() == pytest.approx(slope[0].item(), rel=1e-5)
    assert value[2].item() == pytest.approx(e * (1 + 100 + 100**2 / 2) - 1, rel=1e-12)
    assert slope[2].item() == pytest.approx(e * (1 + 100), rel=1e-12)
    assert value[4].item() == pytest.approx(np.expm1(0.5), rel=1e-15)
    # below the joint nothing is continued (the branch without the max test agrees)
    low = neural._ref_term(f[[0, 4]])
    assert torch.equal(low[0], value[[0, 4]]) and torch.equal(low[1], slope[[0, 4]])
    h = 1e-3
    for x in (f0 + 5.0, f0 - 5.0):
        up, down = (neural._ref_term(torch.tensor([x + s_], dtype=torch.float64))[0].item()
                    for s_ in (h, -h))
        mid = neural._ref_term(torch.tensor([x], dtype=torch.float64))[1].item()
        assert (up - down) / (2 * h) == pytest.approx(mid, rel=1e-6)


def _autograd_loss_and_grad(ev, params, act, f0=neural.F_OVERFLOW):
    """The loss and gradient of the same network by autograd on row-major events, in
    float64 whatever the events' dtype."""
    ps = [p.to(torch.float64).clone().requires_grad_(True) for p in params]
    fn = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[act]
    loss = torch.zeros((), dtype=torch.float64)
    for X, w, ref in ((ev.ref.T, ev.w_ref, True), (ev.data.T, ev.w_data, False)):
        h, w = X.to(torch.float64), w.to(torch.float64)
        for k in range(len(ps) // 2):
            h = h @ ps[2 * k].T + ps[2 * k + 1]
            if k < len(ps) // 2 - 1:
                h = fn(h)
        f = h[:, 0]
        if ref:
            over = (f - f0).clamp(min=0.0)
            loss = loss + (w * (torch.expm1(f.clamp(max=f0))
                                + np.exp(f0) * (over + 0.5 * over**2))).sum()
        else:
            loss = loss - (w * f).sum()
    return loss.item(), [g.detach() for g in torch.autograd.grad(loss, ps)]


def _random_network(rng, sizes, dtype=torch.float64):
    params = []
    for a_, b_ in itertools.pairwise(sizes):
        params += [torch.as_tensor(rng.normal(size=(b_, a_))).to(dtype),
                   torch.as_tensor(rng.normal(size=b_)).to(dtype)]
    return params


def _assert_same_gradient(ev, ps, act, f0, rtol):
    loss, grads = neural._loss_and_grad(ev, ps, act)
    ref_loss, ref_grads = _autograd_loss_and_grad(ev, ps, act, f0)
    assert loss.item() == pytest.approx(ref_loss, rel=rtol)
    for g, r in zip(grads, ref_grads, strict=True):
        scale = float(r.abs().max())
        assert torch.allclose(g.to(torch.float64), r, rtol=rtol, atol=rtol * scale)
    return loss, grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize(("d", "hidden"), [(1, (4,)), (3, (3, 3, 3)), (2, (5, 1, 4))])
def test_hand_written_gradient_equals_autograd(act, d, hidden, dtype):
    # the backward pass of _loss_and_grad against autograd: every activation, one and
    # several inputs, a width-1 hidden layer, weighted data events, float64 and the
    # float32 of Adam, and half of the reference events beyond the overflow joint
    rng = np.random.default_rng(d + len(hidden))
    X = rng.normal(size=(700, d))
    y = (rng.random(700) < 0.3).astype(float)
    w = np.where(y == 1, rng.uniform(0.5, 2.0, 700), rng.uniform(0.01, 0.1, 700))
    ev = neural._Events.build(X, y, w, torch.device("cpu"), dtype)
    params = _random_network(rng, (d, *hidden, 1), dtype)
    f0 = neural.F_OVERFLOW if dtype == torch.float64 else neural.F_OVERFLOW_FLOAT32
    rtol = 1e-10 if dtype == torch.float64 else 1e-4
    f_ref = neural._forward_block(ev.ref, params, act)
    # (the joint lands halfway between the two middle distinct values of f: an event
    # exactly at it would get twice the gradient from autograd's two clamps)
    u = torch.unique(f_ref).to(torch.float64)
    for shift in (0.0, f0 - 0.5 * float(u[len(u) // 2 - 1] + u[len(u) // 2])):
        ps = [p.clone() for p in params]
        ps[-1] = ps[-1] + shift
        if shift:  # the continued branch, with events on both sides of the joint
            beyond = int((neural._forward_block(ev.ref, ps, act) > f0).sum())
            assert 0 < beyond < ev.ref.shape[1]
        loss, grads = _assert_same_gradient(ev, ps, act, f0, rtol)
        # the pass writes into buffers reused by the next one: what it returned must
        # not change when another pass (other parameters) runs
        kept = [loss.clone(), *[g.clone() for g in grads]]
        neural._loss_and_grad(ev, [p * 0.5 for p in ps], act)
        assert all(torch.equal(a_, b_) for a_, b_ in zip(kept, [loss, *grads], strict=True))
    # f in the input order, and the row-major forward used by decision_function
    f_all = ev.in_input_order(neural._forward_block(ev.ref, params, act),
                              neural._forward_block(ev.data, params, act))
    np.testing.assert_allclose(f_all, neural._forward(torch.as_tensor(X).to(dtype), params,
                                                      act).numpy(), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("label", [0, 1])
def test_gradient_with_an_empty_block(label):
    # only reference events (label 0) or only data events (label 1)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 2))
    ev = neural._Events.build(X, np.full(50, float(label)), np.full(50, 0.3),
                              torch.device("cpu"), torch.float64)
    assert (ev.ref.shape[1], ev.data.shape[1]) == ((50, 0) if label == 0 else (0, 50))
    _assert_same_gradient(ev, _random_network(rng, (2, 3, 1)), "sigmoid",
                          neural.F_OVERFLOW, 1e-10)


def test_a_step_towards_overflow_does_not_stop_the_fit():
    # A loose clip and a strong excess: L-BFGS-B tries steps that put f beyond 700 on
    # some reference events (e^f would overflow float64 beyond 709.8); the fit must
    # still converge to a finite stationary point
    rng = np.random.default_rng(1)
    ref = rng.exponential(1.0, (4000, 1))
    dat = np.concatenate([rng.exponential(1.0, 360), rng.normal(4.0, 0.2, 40)])[:, None]
    mu, sd = ref.mean(), ref.std()
    X, y, w = _xyw((ref - mu) / sd, (dat - mu) / sd, expected=400.0)
    real = neural._ref_term
    import unittest.mock

    reached = 0
    # the trial steps depend on the start (and on rounding): several starts, of which
    # at least one must probe the overflow region
    for seed in (1, 4, 5, 6):
        seen, finite = [], []

        def spy(f, out=None, seen=seen, finite=finite):
            v = real(f, out=out)
            seen.append(float(f.max()))
            finite.append(bool(torch.isfinite(v[0]).all() and torch.isfinite(v[1]).all()))
            return v

        with unittest.mock.patch.object(neural, "_ref_term", spy):
            m = NeuralNetworkLearner(hidden=(4,), weight_clip=200.0, n_init=1,
                                     random_state=seed).fit(X, y, w)
        if max(seen) <= 710.0:
            continue
        reached += 1
        # a trial step reached f ~ 1e3, where e^f overflows: the continued loss stays
        # finite, so the line search backs off instead of stopping L-BFGS-B
        assert all(finite)
        info = m.fit_info_
        assert info.converged, info.message
        assert np.isfinite(info.objective) and -2 * info.objective > 100
    assert reached >= 1


def test_a_diverging_start_is_skipped_and_all_diverging_fail(monkeypatch):
    ref, dat = _sample(3, n_signal=10)
    X, y, w = _xyw(ref, dat)
    real = NeuralNetworkLearner._train_lbfgs
    calls = []

    def flaky(self, *args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise FloatingPointError("the NPLM loss became inf during L-BFGS-B")
        return real(self, *args, **kw)

    monkeypatch.setattr(NeuralNetworkLearner, "_train_lbfgs", flaky)
    m = NeuralNetworkLearner(hidden=(2,), n_init=3, random_state=0).fit(X, y, w)
    st = m.fit_info_.start_t
    assert len(st) == 3 and np.isnan(st[1]) and np.isfinite([st[0], st[2]]).all()
    assert -2 * m.fit_info_.objective == pytest.approx(max(st[0], st[2]))
    assert "1 of 3 starts diverged" in m.fit_info_.message

    def always(self, *args, **kw):
        raise FloatingPointError("the NPLM loss became nan during L-BFGS-B")

    monkeypatch.setattr(NeuralNetworkLearner, "_train_lbfgs", always)
    with pytest.raises(FloatingPointError, match="every start"):
        NeuralNetworkLearner(hidden=(2,), n_init=2, random_state=0).fit(X, y, w)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_every_weight_stays_within_the_clip(optimizer):
    ref, dat = _sample(2, n_signal=40)
    X, y, w = _xyw(ref, dat)
    clip = 0.3
    m = NeuralNetworkLearner(hidden=(4,), weight_clip=clip, optimizer=optimizer, epochs=400,
                             lr=0.05, n_init=1, random_state=1).fit(X, y, w)
    assert max(np.abs(W).max() for W in m.coefs_[0::2]) <= clip
    # the biases are free, as in the published networks (Keras kernel_constraint only)
    assert max(np.abs(b).max() for b in m.coefs_[1::2]) > clip
    # a strong excess pushes the small network against its bound
    assert m.fit_info_.at_clip >= 1
    loose = NeuralNetworkLearner(hidden=(4,), weight_clip=9.0, optimizer=optimizer, epochs=400,
                                 lr=0.05, n_init=1, random_state=1).fit(X, y, w)
    # the clip bounds the capacity: the looser network reaches a larger t
    assert loose.fit_info_.objective < m.fit_info_.objective


def test_adam_from_the_same_start_approaches_the_lbfgs_optimum():
    ref, dat = _sample(5)
    X, y, w = _xyw(ref, dat)
    kw = dict(hidden=(3,), n_init=1, random_state=0)
    lb = NeuralNetworkLearner(optimizer="lbfgs", **kw).fit(X, y, w)
    ad = NeuralNetworkLearner(optimizer="adam", epochs=3000, lr=0.05, **kw).fit(X, y, w)
    t_lb, t_ad = -2 * lb.fit_info_.objective, -2 * ad.fit_info_.objective
    # measured 7.018 (L-BFGS-B) and 6.959 (Adam): the same basin, Adam not quite at the floor
    assert t_ad == pytest.approx(t_lb, abs=0.15)
    assert t_ad <= t_lb + 1e-6
    assert ad.fit_info_.n_iter == 3000 and ad.fit_info_.optimizer == "adam"
    assert len(ad.fit_info_.history) >= 50


def test_restarts_keep_the_best_start_and_are_reproducible():
    ref, dat = _sample(11, n_signal=12)
    X, y, w = _xyw(ref, dat)
    m = NeuralNetworkLearner(hidden=(3,), n_init=5, random_state=3).fit(X, y, w)
    info = m.fit_info_
    assert info.n_init == 5 and len(info.start_t) == 5
    assert -2 * info.objective == pytest.approx(max(info.start_t), rel=1e-12)
    # the first start of a 5-start fit is the 1-start fit of the same generator
    one = NeuralNetworkLearner(hidden=(3,), n_init=1, random_state=3).fit(X, y, w)
    assert -2 * one.fit_info_.objective == pytest.approx(info.start_t[0], rel=1e-12)
    again = NeuralNetworkLearner(hidden=(3,), n_init=5, random_state=3).fit(X, y, w)
    for a, b in zip(m.coefs_, again.coefs_, strict=True):
        np.testing.assert_array_equal(a, b)
    other = NeuralNetworkLearner(hidden=(3,), n_init=1, random_state=4).fit(X, y, w)
    assert not np.array_equal(other.coefs_[0], one.coefs_[0])


def test_learner_parameters_and_errors():
    ref, dat = _sample(0)
    X, y, w = _xyw(ref, dat)
    with pytest.raises(NotFittedError, match="not fitted"):
        NeuralNetworkLearner().decision_function(X)
    for kw, msg in [(dict(activation="relu"), "non-smooth"), (dict(hidden=(0,)), "hidden"),
                    (dict(hidden="a"), "hidden"),
                    (dict(hidden=(2.5,)), "hidden"), (dict(weight_clip=-1.0), "weight_clip"),
                    (dict(optimizer="sgd"), "optimizer"), (dict(activation="elu"), "activation"),
                    (dict(epochs=0), "epochs"), (dict(lr=float("nan")), "lr"),
                    (dict(n_init=0), "n_init"), (dict(dtype="float16"), "dtype")]:
        with pytest.raises(InputError, match=msg):
            NeuralNetworkLearner(**kw).fit(X, y, w)
    with pytest.raises(InputError, match="non-finite"):
        Xb = X.copy()
        Xb[3, 0] = np.nan
        NeuralNetworkLearner().fit(Xb, y, w)
    with pytest.raises(InputError, match="negative"):
        NeuralNetworkLearner().fit(X, y, -w)
    with pytest.raises(InputError, match="warm start"):
        NeuralNetworkLearner().fit(X, y, w, init_decision=np.zeros(len(y)))
    m = NeuralNetworkLearner(n_init=1, epochs=50).fit(X, y, w)
    with pytest.raises(InputError, match="features"):
        m.decision_function(np.zeros((3, 2)))
    assert m.hidden_ == (4,) and m.weight_clip_ == 9.0  # the published 1D network
    assert NeuralNetworkLearner().resolved_hidden(5) == (5, 5, 5)
    assert NeuralNetworkLearner().resolved_weight_clip(5) == 2.15
    p = m.predict_proba(X[:4])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert set(np.unique(m.predict(X))) <= {0, 1}
    assert np.isfinite(m.score(X, y, w))
    assert repr(NeuralNetworkLearner(n_init=2)) == "NeuralNetworkLearner(n_init=2)"
    assert isinstance(make_learner({"learner": "neural", "hidden": [2]}), NeuralNetworkLearner)


def test_scikit_learn_protocol():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.utils.validation import check_is_fitted

    m = NeuralNetworkLearner(hidden=(2,), weight_clip=1.0, n_init=2)
    c = clone(m)
    assert c.get_params() == m.get_params()
    with pytest.raises(sklearn.exceptions.NotFittedError):
        check_is_fitted(m)
    ref, dat = _sample(0)
    check_is_fitted(m.fit(*_xyw(ref, dat)))


def test_config_refuses_kernel_options_and_bad_network_options():
    with pytest.raises(InputError, match="kernel-learner option"):
        NPLMConfig(learner="neural", sigma=0.3)
    with pytest.raises(InputError, match="sigmas"):
        NPLMConfig(learner="neural", sigmas=[0.1, 0.3])
    with pytest.raises(InputError, match="centers"):
        NPLMConfig(learner="neural", centers="shared")
    with pytest.raises(InputError, match="learner must be"):
        NPLMConfig(learner="forest")
    with pytest.raises(InputError, match="nn_hidden"):
        NPLMConfig(learner="neural", nn_hidden=[4, 0])
    with pytest.raises(InputError, match="nn_optimizer"):
        NPLMConfig(learner="neural", nn_optimizer="sgd")
    with pytest.raises(InputError, match="nn_n_init"):
        NPLMConfig(learner="neural", nn_n_init=0)
    with pytest.raises(InputError, match="lam, tol: kernel-learner"):
        NPLMConfig(learner="neural", lam=1e-10, tol=1e-3)
    with pytest.raises(InputError, match="nn_hidden: neural-network option"):
        NPLMConfig(nn_hidden=[5, 5])  # the kernel learner would ignore it
    with pytest.raises(InputError, match="relu"):
        NPLMConfig(learner="neural", nn_activation="relu")
    with pytest.raises(InputError, match="float64"):
        NPLMConfig(learner="neural", dtype="float32")
    # Adam's learning rate and stopping tolerance would be ignored by L-BFGS-B (and
    # would still change the checkpoint fingerprint)
    with pytest.raises(InputError, match="nn_lr, nn_tol apply to nn_optimizer='adam'"):
        NPLMConfig(learner="neural", nn_lr=0.5, nn_tol=9.0)
    NPLMConfig(learner="neural", nn_optimizer="adam", nn_lr=0.5, nn_tol=9.0)
    NPLMConfig(learner="neural", nn_activation="relu", nn_optimizer="adam", dtype="float32")
    cfg = NPLMConfig(learner="neural", nn_optimizer="adam")
    p = cfg.learner_params()
    assert p["epochs"] == 50000 and p["n_init"] == 1 and p["learner"] == "neural"
    assert NPLMConfig(learner="neural").learner_params()["n_init"] == 1
    # the kernel learner's parameters are those of before (checkpoint fingerprints)
    assert "learner" not in NPLMConfig().learner_params()


NN_OPTS = dict(learner="neural", nn_hidden=[3], nn_n_init=1)


def test_nplm_test_with_the_network_is_reproducible_and_independent_of_workers():
    ref, dat = _sample(3, n_signal=25, n_ref=4000, expected=80)
    r1 = nplm_test(ref, dat, expected=80, n_toys=6, workers=1, seed=4, **NN_OPTS)
    r2 = nplm_test(ref, dat, expected=80, n_toys=6, workers=2, seed=4, **NN_OPTS)
    assert r1.t_obs == r2.t_obs
    np.testing.assert_array_equal(r1.t_null, r2.t_null)
    d = r1.to_dict()
    hp = d["hyperparameters"]
    assert hp["learner"] == "neural" and hp["architecture"] == "1-3-1" and hp["n_params"] == 10
    assert d["fit"]["optimizer"] == "lbfgs" and d["fit"]["rank"] == 10
    assert all(t["rank"] == 10 for t in d["toys"])
    s = r1.summary()
    assert "neural network 1-3-1" in s and "10 parameters" in s and "kernel width" not in s
    # the JSON's config reproduces the run
    r3 = nplm_test(ref, dat, NPLMConfig.from_dict(d["config"]))
    assert r3.t_obs == r1.t_obs
    np.testing.assert_array_equal(r3.t_null, r1.t_null)
    json.dumps(d)  # serialisable


@pytest.mark.slow
def test_network_null_pvalues_are_uniform_and_a_strong_signal_is_seen():
    # The observed procedure on fresh null data sets, calibrated by toys resampled from
    # the fixed reference, must give uniform p-values. 200 toys carry an ECDF error of
    # ~0.035, well below the KS critical distance at the 1% level for 80 p-values (0.18).
    rng = np.random.default_rng(77)
    ref = rng.exponential(1.0, (N_REF, 1))
    params = {"learner": "neural", "hidden": [3], "n_init": 1}
    engine = ToyEngine(params, EXPECTED, seed=8, pool=ref)
    toys = run_toys(engine, range(200), workers=2)
    t_null = np.array([t.t for t in toys if t.ok])
    assert t_null.size == 200
    w = np.full(N_REF, EXPECTED / N_REF)
    p = []
    for k in range(80):
        ss = np.random.SeedSequence(5, spawn_key=(k,))
        s_data, s_fit = ss.spawn(2)
        r = np.random.default_rng(s_data)
        data = r.exponential(1.0, (r.poisson(EXPECTED), 1))
        t, *_ = nplm_fit(ref, data, w, make_learner(params), s_fit)
        p.append(calibrate(t, t_null).p_empirical)
    assert sps.kstest(np.array(p), "uniform").pvalue > 0.01
    # a 40-event bump on 100 expected events is far beyond every null toy
    _, dat = _sample(9, n_signal=40)
    t_sig, *_ = nplm_fit(ref, dat, w, make_learner(params), np.random.SeedSequence(1))
    assert calibrate(t_sig, t_null).n_exceed == 0 and t_sig > 2 * t_null.max()


def test_cli_runs_the_network_and_refuses_kernel_options(tmp_path):
    ref, dat = _sample(6, n_signal=30, n_ref=3000, expected=60)
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "dat.npy", dat)
    base = [sys.executable, "-m", "nplearn", "test", "--reference", str(tmp_path / "ref.npy"),
            "--data", str(tmp_path / "dat.npy"), "--expected", "60", "--toys", "4", "-q",
            "--workers", "1", "--learner", "neural", "--nn-hidden", "2", "--nn-n-init", "2"]
    out = tmp_path / "r.json"
    r = subprocess.run([*base, "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "neural network 1-2-1" in r.stdout and "best of 2 start(s)" in r.stdout
    res = json.loads(out.read_text())
    assert res["config"]["learner"] == "neural" and res["config"]["nn_hidden"] == [2]
    assert len(res["fit"]["start_t"]) == 2
    bad = subprocess.run([*base, "--sigma", "0.3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "kernel-learner option" in bad.stderr
    bad = subprocess.run([*base, "--nn-hidden", "2,x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "integers" in bad.stderr


def test_float32_network_runs_and_agrees_with_float64():
    ref, dat = _sample(4, n_signal=20)
    X, y, w = _xyw(ref, dat)
    kw = dict(hidden=(3,), optimizer="adam", epochs=500, lr=0.05, n_init=1, random_state=2)
    m32 = NeuralNetworkLearner(dtype="float32", **kw).fit(X, y, w)
    m64 = NeuralNetworkLearner(dtype="float64", **kw).fit(X, y, w)
    assert m32.fit_info_.objective == pytest.approx(m64.fit_info_.objective, rel=1e-3)
    # a clip that float32 cannot hold (0.15 rounds up to 0.15000001) is never exceeded
    # in float64; a large lr drives weights to the clip
    kw.update(lr=1.0, epochs=60, weight_clip=0.15)
    m32 = NeuralNetworkLearner(dtype="float32", **kw).fit(X, y, w)
    weights = np.concatenate([c.ravel() for c in m32.coefs_[0::2]])
    assert m32.fit_info_.at_clip > 0
    assert np.abs(weights).max() <= 0.15


def test_network_shards_merge_and_plot(tmp_path, capsys):
    # batch-farm shards of a network calibration merge to the direct result, and
    # `nplearn plot` refits the network to the recorded t
    pytest.importorskip("matplotlib")
    from nplearn.cli import main

    ref, dat = _sample(8, n_signal=20, n_ref=3000, expected=60)
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "dat.npy", dat)
    cfg = tmp_path / "run.toml"
    cfg.write_text('reference = "ref.npy"\ndata = "dat.npy"\nexpected = 60\nn_toys = 6\n'
                   'seed = 3\nworkers = 1\nlearner = "neural"\nnn_hidden = [2]\n'
                   'nn_n_init = 2\n')
    shards = tmp_path / "shards"
    for spec in ("3:6", "0:3"):
        assert main(["toys", "--config", str(cfg), "--toys", spec, "--out", str(shards),
                     "-q"]) == 0
    merged, direct = tmp_path / "merged.json", tmp_path / "direct.json"
    assert main(["merge", str(shards), "--config", str(cfg), "--json", str(merged)]) == 0
    assert main(["test", "--config", str(cfg), "--json", str(direct), "-q"]) == 0
    a, b = json.loads(merged.read_text()), json.loads(direct.read_text())
    assert a["t_null"] == b["t_null"] and a["t_obs"] == b["t_obs"]
    # the command line's network options apply to a file that chose the network
    over = tmp_path / "over.json"
    assert main(["test", "--config", str(cfg), "--nn-n-init", "1", "--toys", "2",
                 "--json", str(over), "-q"]) == 0
    assert json.loads(over.read_text())["config"]["nn_n_init"] == 1
    assert main(["test", "--config", str(direct), "--nn-weight-clip", "3", "--toys", "2",
                 "--json", str(over), "-q"]) == 0
    assert json.loads(over.read_text())["config"]["nn_weight_clip"] == 3.0
    capsys.readouterr()
    assert main(["plot", str(direct), "--out", str(tmp_path / "plots")]) == 0
    assert "refit gives" not in capsys.readouterr().err  # the refit reproduced t_obs
    assert (tmp_path / "plots" / "f_1d.png").exists()
    assert (tmp_path / "plots" / "null_distribution.png").exists()


def test_data_beyond_the_reference_are_flagged():
    # a data event beyond the reference's range: nothing constrains f there, and the
    # network raises it freely (t far in the null's tail); the result says so
    rng = np.random.default_rng(0)
    ref = rng.exponential(size=(3000, 1))
    dat = rng.exponential(size=(100, 1))
    inside = nplm_test(ref, dat, n_toys=0, expected=100.0, learner="neural")
    assert inside.data_outside_reference == {"n_events": 0, "below": [0], "above": [0],
                                             "p_chance": 1.0}
    assert "WARNING" not in inside.summary()
    beyond = np.r_[dat, [[ref.max() + 1.0]]]
    net = nplm_test(ref, beyond, n_toys=0, expected=100.0, learner="neural")
    assert {k: v for k, v in net.data_outside_reference.items() if k != "p_chance"} == {
        "n_events": 1, "below": [0], "above": [1]}
    assert "outside the reference's range" in net.summary()
    assert "network can raise f" in net.summary()
    assert json.loads(json.dumps(net.to_dict()))["data_outside_reference"]["n_events"] == 1
    # one event beyond the reference moves the network's t far beyond the null (chi2
    # with ~13 dof): the effect the warning is about
    assert net.t_obs > inside.t_obs + 30
    # a negative t of the network is not the logistic surrogate's: the note says so
    assert "t_obs < 0" not in net.summary()
    note = dataclasses.replace(net, t_obs=-1.0).summary()
    assert "network ended below f = 0" in note and "logistic" not in note
    kernel = nplm_test(ref, beyond, n_toys=0, expected=100.0, n_centers=50)
    assert kernel.data_outside_reference["n_events"] == 1
    assert "bounded by the penalty lambda only" in kernel.summary()
    assert kernel.t_obs > 0 and "t_obs < 0" not in kernel.summary()
    # at a tiny penalty the kernel's f grows near that event too, and the reference
    # events under it drive t far below zero (-64.5 measured; 10.6 without the event):
    # the summary points to the explanation, per width when there are several
    tiny = nplm_test(ref, beyond, n_toys=0, expected=100.0, n_centers=50, lam=1e-10)
    assert tiny.t_obs < -30 and "NOTE: t_obs < 0: the logistic fit" in tiny.summary()
    multi = nplm_test(ref, beyond, n_toys=0, expected=100.0, n_centers=50, lam=1e-10,
                      sigmas=[0.5, tiny.hyperparameters["sigma"]])
    assert [w["t_obs"] < 0 for w in multi.widths] == [False, True]
    assert f"t_obs < 0 at sigma = {tiny.hyperparameters['sigma']:.3g}:" in multi.summary()
    # reference events of zero weight constrain nothing: the range is that of the others
    w = np.ones(len(ref))
    w[np.argsort(ref[:, 0])[-3:]] = 0.0  # the three largest reference events
    top = np.sort(ref[:, 0])[-4:]
    between = np.r_[dat, [[0.5 * (top[0] + top[1])]]]  # beyond every weighted event
    weighted = nplm_test(ref, between, n_toys=0, expected=100.0, ref_weights=w,
                         n_centers=50)
    # beyond the largest weighted event: the added one (and any data event up there)
    n_above = int((between[:, 0] > top[0]).sum())
    assert n_above >= 1 and weighted.data_outside_reference["above"] == [n_above]
    unweighted = nplm_test(ref, between, n_toys=0, expected=100.0, n_centers=50)
    assert unweighted.data_outside_reference["n_events"] == 0
