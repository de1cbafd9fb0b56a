"""CUDA path (skipped when no CUDA device is present).

Tolerances: on the CPU, perturbing the events of these problems by one part in
1e16 (rounding-level, like a GPU's different summation order) moves f by up to
5e-6 at lambda = 1e-6 (the 1e-9 rank truncation is amplified by the weak penalty)
and t by up to 5e-6 (t = 234); float32 against float64 moves f by up to 2e-3 and
t by up to 0.015 (t = 197), and none of those perturbations changed the kept rank
(144 and 88 in all of them), so the rank is required to agree exactly. The bounds
below are about ten times those spreads.
"""

from __future__ import annotations

import numpy as np
import pytest

from nplearn import KernelLogisticRegression, nplm_statistic, nplm_test

from conftest import make_classification

pytestmark = pytest.mark.gpu


def _t(m: KernelLogisticRegression, y: np.ndarray, sw: np.ndarray) -> float:
    f, ref = m.train_decision_, y == 0
    return nplm_statistic(f[ref], f[~ref], sw[ref])[0]


@pytest.mark.parametrize("inner", ["direct", "cg"])
def test_cuda_fit_matches_cpu(rng, inner):
    X, y, sw = make_classification(rng, n_ref=20000, n_data=500)
    kw = dict(sigma=1.0, n_centers=500, lam=1e-6, random_state=0, inner=inner, tol=1e-12)
    cpu = KernelLogisticRegression(**kw).fit(X, y, sw)
    gpu = KernelLogisticRegression(device="cuda", **kw).fit(X, y, sw)
    assert gpu.fit_info_.converged
    assert gpu.rank_ == cpu.rank_
    np.testing.assert_allclose(gpu.train_decision_, cpu.train_decision_, atol=5e-5)
    assert _t(gpu, y, sw) == pytest.approx(_t(cpu, y, sw), abs=5e-5)


def test_cuda_float32_fit(rng):
    X, y, sw = make_classification(rng, n_ref=20000, n_data=500)
    kw = dict(sigma=1.0, n_centers=500, lam=1e-5, random_state=0, rank_tol=1e-5)
    cpu = KernelLogisticRegression(**kw).fit(X, y, sw)
    gpu = KernelLogisticRegression(device="cuda", dtype="float32", **kw).fit(X, y, sw)
    np.testing.assert_allclose(gpu.train_decision_, cpu.train_decision_, atol=2e-2)
    assert _t(gpu, y, sw) == pytest.approx(_t(cpu, y, sw), abs=0.15)


def test_cuda_end_to_end(rng):
    ref = rng.normal(size=(20000, 2))
    data = rng.normal(size=(200, 2))
    res = nplm_test(ref, data, n_toys=5, device="cuda", seed=1)
    cpu = nplm_test(ref, data, n_toys=5, device="cpu", seed=1, workers=1)
    assert res.t_obs == pytest.approx(cpu.t_obs, abs=1e-5)
    np.testing.assert_allclose(res.t_null, cpu.t_null, atol=1e-5)


def test_cuda_network_matches_cpu(rng):
    # The network's L-BFGS-B fit on the GPU: same start (the initial weights come from
    # a CPU generator), the loss summed in another order. A well-converged start ends
    # at the same stationary point; the tolerance allows the rounding to move it a
    # little along the flat directions of saturated sigmoids.
    from nplearn import NeuralNetworkLearner

    X, y, sw = make_classification(rng, n_ref=20000, n_data=500)
    kw = dict(hidden=(4,), n_init=1, random_state=0)
    cpu = NeuralNetworkLearner(**kw).fit(X, y, sw)
    gpu = NeuralNetworkLearner(device="cuda", **kw).fit(X, y, sw)
    assert gpu.fit_info_.converged and cpu.fit_info_.converged
    assert -2 * gpu.fit_info_.objective == pytest.approx(-2 * cpu.fit_info_.objective,
                                                         abs=1e-3)
