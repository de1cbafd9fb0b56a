"""Same seed, same toys: independent of worker count, order and subset."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

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


def test_default_workers_one_per_gpu():
    from nplearn.toys import resolve_workers, worker_devices

    assert resolve_workers(None, "cuda", 100, n_gpus=4) == 4
    assert resolve_workers(None, "auto", 100, n_gpus=2) == 2
    assert resolve_workers(None, "cuda:1", 100, n_gpus=4) == 1
    assert resolve_workers(None, "cuda", 3, n_gpus=4) == 3  # never more than the tasks
    assert resolve_workers(3, "cuda", 100, n_gpus=4) == 3
    assert worker_devices("cuda", 4, n_gpus=4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert worker_devices("cuda", 3, n_gpus=2) == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_devices("cuda:1", 4, n_gpus=4) is None  # a named GPU stays as given
    assert worker_devices("cuda", 4, n_gpus=1) is None
    assert worker_devices("cpu", 4, n_gpus=4) is None
    assert worker_devices("cuda", 1, n_gpus=4) is None


def test_per_worker_devices_keep_toys_identical(monkeypatch):
    """The per-GPU worker path (slots handed out through a queue) on CPU "devices"."""
    import nplearn.toys as toys

    rng = np.random.default_rng(1)
    pool = rng.normal(size=(3000, 1))
    engine = ToyEngine({"sigma": 1.0, "n_centers": 100, "lam": 1e-6}, 80.0, seed=4, pool=pool)
    plain = run_toys(engine, range(6), workers=1)
    seen: list[int] = []

    def fake(device, n_workers, n_gpus=None):
        seen.append(n_workers)
        return ["cpu"] * n_workers

    monkeypatch.setattr(toys, "worker_devices", fake)
    pinned = run_toys(engine, range(6), workers=2)
    assert seen == [2]
    assert [r.t for r in pinned] == [r.t for r in plain]


def test_user_executor_equals_local_run(tmp_path):
    """Any concurrent.futures executor runs the same toys (here a spawn process pool)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    import pytest

    from nplearn.errors import InputError

    ref, data = _problem()
    kw = dict(n_toys=10, seed=7, n_centers=150, lam=1e-6)
    local = nplm_test(ref, data, workers=1, **kw)
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as ex:
        remote = nplm_test(ref, data, executor=ex, checkpoint=tmp_path / "ck", **kw)
    assert np.array_equal(remote.t_null, local.t_null)
    assert len(list((tmp_path / "ck").glob("*/toy_*.json"))) == 10
    with pytest.raises(InputError, match=r"concurrent\.futures"):
        nplm_test(ref, data, executor=object(), **kw)


def test_threaded_executor_with_shared_centres_equals_local_run():
    """Toys running at once in threads of one process (a threaded executor, a Dask
    worker with several threads) must not share fitted state: with shared centres
    they once read each other's decision values (wrong t, sometimes negative)."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(0)
    ref, data = rng.normal(size=(400, 1)), rng.normal(size=(20, 1))
    kw = dict(n_toys=240, sigma=1.0, n_centers=20, centers="shared", seed=3, lam=1e-4)
    local = nplm_test(ref, data, workers=1, **kw)
    with ThreadPoolExecutor(8) as ex:
        threaded = nplm_test(ref, data, executor=ex, **kw)
    assert np.array_equal(threaded.t_null, local.t_null)
    assert threaded.t_obs == local.t_obs


def test_executor_tasks_follow_its_own_worker_count_and_code():
    """An executor larger than this machine gets about four chunks per worker of its
    own (they were sized from the local cores: 19 tasks for 64 workers); a worker that
    runs other nplearn code refuses its chunk instead of recording another statistic."""
    from concurrent.futures import ThreadPoolExecutor

    import nplearn.toys as toys_mod
    from nplearn.errors import NplearnError

    rng = np.random.default_rng(1)
    ref, data = rng.normal(size=(300, 1)), rng.normal(size=(15, 1))
    kw = dict(n_toys=64, sigma=1.0, n_centers=10, seed=4, lam=1e-4)
    sizes = []
    real = toys_mod._executor_chunk

    def counted(engine_bytes, indices, *args):
        sizes.append(len(indices))
        return real(engine_bytes, indices, *args)

    local = nplm_test(ref, data, workers=1, **kw)
    with ThreadPoolExecutor(16) as ex:
        toys_mod._executor_chunk = counted
        try:
            res = nplm_test(ref, data, executor=ex, **kw)
        finally:
            toys_mod._executor_chunk = real
    assert sizes and max(sizes) == 1 and sum(sizes) == 64  # 64 toys // (16 x 4)
    assert np.array_equal(res.t_null, local.t_null)
    engine = pickle.dumps(0)
    with pytest.raises(NplearnError, match="runs other nplearn code"):
        real(engine, [0], 1, None, "0" * 64)
