"""Same seed, same toys: independent of worker count, order and subset."""

from __future__ import annotations

import numpy as np

from nplearn import nplm_test
from nplearn.toys import ToyEngine, run_toys


def _problem():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(6000, 2))
    data = rng.normal(size=(120, 2)) + 0.1
    return ref, data


def test_workers_one_and_two_give_identical_toys():
    ref, data = _problem()
    kw = dict(n_toys=12, seed=42, n_centers=300, lam=1e-6)
    a = nplm_test(ref, data, workers=1, **kw)
    b = nplm_test(ref, data, workers=2, **kw)
    assert a.t_obs == b.t_obs
    assert np.array_equal(a.t_null, b.t_null)
    assert [t.n_data for t in a.toys] == [t.n_data for t in b.toys]
    c = nplm_test(ref, data, workers=1, **{**kw, "seed": 43})
    assert not np.array_equal(a.t_null, c.t_null)


def test_toy_results_do_not_depend_on_the_subset_or_order():
    rng = np.random.default_rng(1)
    pool = rng.normal(size=(5000, 1))
    engine = ToyEngine({"sigma": 1.0, "n_centers": 200, "lam": 1e-6}, 100.0, seed=3, pool=pool)
    full = run_toys(engine, range(8), workers=1)
    part = run_toys(engine, [6, 2, 5], workers=1)
    assert [r.index for r in part] == [2, 5, 6]
    for r in part:
        assert r.t == full[r.index].t
