"""Toy generation: resampling, user generators, weights, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nplearn import InputError, nplm_test
from nplearn.benchmarks import Exp1D
from nplearn.toys import ToyEngine, run_toys

PARAMS = {"sigma": 0.3, "n_centers": 300, "lam": 1e-8}


def data_only_generator(rng: np.random.Generator) -> np.ndarray:
    """Module-level (picklable) generator returning toy data only."""
    return Exp1D("none", n_ref=10_000, expected=100.0).sample_data(rng)


def test_resampled_toys_partition_the_pool(rng):
    pool = rng.normal(size=(5000, 1))
    engine = ToyEngine(PARAMS, 100.0, seed=1, pool=pool)
    ref, data, w = engine.sample(np.random.default_rng(0))
    assert len(ref) + len(data) == 5000
    assert w.sum() == pytest.approx(100.0) and np.allclose(w, w[0])
    both = np.sort(np.concatenate([ref, data])[:, 0])
    assert np.array_equal(both, np.sort(pool[:, 0]))  # without replacement: a partition


def test_toy_counts_are_poisson(rng):
    pool = rng.normal(size=(20000, 1))
    engine = ToyEngine(PARAMS, 100.0, seed=1, pool=pool)
    counts = [len(engine.sample(np.random.default_rng(i))[1]) for i in range(400)]
    # mean of 400 Poisson(100) counts: standard error 0.5
    assert abs(np.mean(counts) - 100.0) < 2.0
    assert 60 < np.var(counts) < 150


def test_weighted_pool_resampling_prefers_heavy_events(rng):
    pool = np.arange(4000, dtype=float)[:, None]
    wts = np.where(np.arange(4000) < 2000, 3.0, 1.0)  # first half 3x heavier
    engine = ToyEngine(PARAMS, 200.0, seed=1, pool=pool, pool_weights=wts)
    heavy = []
    for i in range(50):
        _, data, w = engine.sample(np.random.default_rng(i))
        heavy.append(np.mean(data[:, 0] < 2000))
        assert w.sum() == pytest.approx(200.0)
    # expected fraction of heavy events among the pseudo-data: 3/4
    assert abs(np.mean(heavy) - 0.75) < 0.02


def test_user_generator_returning_reference_and_data():
    gen = Exp1D("none", n_ref=10_000, expected=100.0)
    rng = np.random.default_rng(4)
    ref = gen.sample_reference_events(rng, 10_000)
    res = nplm_test(ref, gen.sample_data(rng), expected=100.0, toy_generator=gen, n_toys=6,
                    standardize=False, sigma=0.3, n_centers=300, lam=1e-8, workers=1)
    assert [t.n_ref for t in res.toys] == [10_000] * 6  # fresh reference per toy
    assert res.t_null.size == 6 and np.isfinite(res.t_null).all()


def test_user_generator_data_only_in_worker_processes():
    rng = np.random.default_rng(5)
    gen = Exp1D("none", n_ref=10_000, expected=100.0)
    ref = gen.sample_reference_events(rng, 10_000)
    data = gen.sample_data(rng)
    kw = dict(expected=100.0, toy_generator=data_only_generator, n_toys=4, sigma=0.3,
              n_centers=300, lam=1e-8, standardize=False)
    a = nplm_test(ref, data, workers=2, **kw)
    assert [t.n_ref for t in a.toys] == [10_000] * 4  # the fixed reference
    b = nplm_test(ref, data, workers=1, **kw)
    assert np.array_equal(a.t_null, b.t_null)


def test_unpicklable_generator_needs_one_worker():
    rng = np.random.default_rng(5)
    ref = rng.exponential(1 / 8, size=(5000, 1))
    with pytest.raises(InputError, match="cannot be sent to worker processes"):
        nplm_test(ref, ref[:50], toy_generator=lambda g: g.exponential(1 / 8, size=(50, 1)),
                  n_toys=2, workers=2)


def test_bad_generator_output_is_named():
    rng = np.random.default_rng(5)
    ref = rng.exponential(1 / 8, size=(5000, 1))
    engine = ToyEngine(PARAMS, 50.0, seed=0, generator=lambda g: (ref, ref, ref, ref))
    with pytest.raises(InputError, match="tuple of length 4"):
        run_toys(engine, [0], workers=1)
    engine = ToyEngine(PARAMS, 50.0, seed=0, generator=lambda g: (ref, np.ones((5, 2))))
    with pytest.raises(InputError, match="toy data: has 2 feature column"):
        run_toys(engine, [0], workers=1)


def few_events_generator(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(reference, data) toys with N(R) = 2: some draw no data event at all."""
    return rng.normal(size=(3000, 2)), rng.normal(size=(rng.poisson(2.0), 2))


def three_features(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(100, 3))


def test_generator_toys_without_data_events_and_with_other_features(rng):
    # a (reference, data) toy with no data event is a valid toy (it stopped the whole
    # calibration); toys with another number of features than the observed events are
    # refused by name (a broadcasting error from the standardisation before)
    ref = rng.normal(size=(3000, 2))
    res = nplm_test(ref, ref[:3], expected=2.0, toy_generator=few_events_generator,
                    n_toys=12, workers=1, n_centers=50)
    assert min(t.n_data for t in res.toys) == 0 and res.n_failed_toys == 0
    for standardize in (True, False):
        with pytest.raises(InputError, match=r"toy data: has 3 feature column.*has 2"):
            nplm_test(ref, ref[:100], expected=100.0, toy_generator=three_features,
                      n_toys=2, workers=1, n_centers=50, standardize=standardize)


def test_generator_of_an_interactive_session_is_refused_with_workers():
    # `python -c` (like a notebook) defines the generator in a __main__ that spawned
    # workers cannot import: a clear error instead of a traceback from every worker
    import subprocess
    import sys

    code = ("import numpy as np, nplearn\n"
            "def gen(rng):\n    return rng.normal(size=(50, 1))\n"
            "R = np.random.default_rng(0).normal(size=(2000, 1))\n"
            "try:\n"
            "    nplearn.nplm_test(R, R[:50], toy_generator=gen, n_toys=2, workers=2, "
            "n_centers=30, expected=50.0)\n"
            "except nplearn.InputError as e:\n    print('refused:', e)\n"
            "r = nplearn.nplm_test(R, R[:50], toy_generator=gen, n_toys=2, workers=1, "
            "n_centers=30, expected=50.0)\n"
            "print('one worker:', r.t_null.size)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert "refused: the toy generator is defined in an interactive session" in out.stdout
    assert "one worker: 2" in out.stdout and "Traceback" not in out.stderr


def test_a_script_read_from_standard_input_runs_toys_in_workers():
    # `python - < script.py` names its main module '<stdin>', a path spawned workers
    # tried to run; they died and the error blamed a missing __main__ guard
    import subprocess
    import sys

    code = ("import numpy as np, nplearn\n"
            "R = np.random.default_rng(0).normal(size=(2000, 2))\n"
            "r = nplearn.nplm_test(R, R[:60], n_toys=4, workers=2, n_centers=30)\n"
            "print('toys:', r.t_null.size, r.provenance['workers'])\n"
            "import __main__\nprint('main file:', __main__.__file__)\n")
    out = subprocess.run([sys.executable, "-"], input=code, capture_output=True,
                         text=True, timeout=300)
    assert "toys: 4 2" in out.stdout, out.stderr[-2000:]
    assert "main file: <stdin>" in out.stdout  # put back after the workers started


def test_shared_centres_never_become_pseudo_data(rng):
    pool = rng.normal(size=(4000, 1))
    engine = ToyEngine(PARAMS | {"n_centers": 200}, 100.0, seed=2, pool=pool,
                       shared_centers=True)
    _, basis, _, free = engine.shared_state()
    assert basis.n_candidates == 200 and free.size == 3800
    for i in range(20):
        take = engine._draw_pseudo_data(np.random.default_rng(i), free)
        assert not np.isin(take, basis.candidate_idx).any()


def test_shared_centres_deterministic_across_workers(rng):
    ref = rng.normal(size=(6000, 2))
    data = rng.normal(size=(100, 2))
    kw = dict(n_toys=6, n_centers=300, seed=9, centers="shared")
    a = nplm_test(ref, data, workers=1, **kw)
    b = nplm_test(ref, data, workers=2, **kw)
    assert np.array_equal(a.t_null, b.t_null) and a.t_obs == b.t_obs
    assert a.hyperparameters["centers"] == "shared"
    # the observed fit's centres are reference events
    assert (a.learner.center_indices_ < len(ref)).all()


def test_shared_centres_refuse_a_generator(rng):
    ref = rng.exponential(1 / 8, size=(5000, 1))
    with pytest.raises(InputError, match="centers='shared'"):
        nplm_test(ref, ref[:50], toy_generator=data_only_generator, centers="shared",
                  n_toys=2, workers=1)


def test_dead_workers_give_a_clear_error(rng, monkeypatch, tmp_path):
    # a script without the __main__ guard (or a worker killed for memory) breaks the
    # spawned pool: the error says what to do instead of a bare BrokenProcessPool
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    import nplearn.toys as toys_mod
    from nplearn import NplearnError

    class DeadPool:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, *args, **kwargs):
            fut: Future = Future()
            fut.set_exception(BrokenProcessPool("terminated abruptly"))
            return fut

    monkeypatch.setattr(toys_mod, "ProcessPoolExecutor", DeadPool)
    eng = ToyEngine({"sigma": 1.0, "n_centers": 20}, 30.0, 0, pool=rng.normal(size=(500, 1)))
    with pytest.raises(NplearnError, match='if __name__ == "__main__"'):
        run_toys(eng, range(4), workers=2)
    # from the command line no guard can be missing: the error says a worker was
    # killed, and that the records are kept for a resume
    import sys
    import types

    cli_main = types.ModuleType("__main__")
    cli_main.__file__ = str(Path(toys_mod.__file__).with_name("__main__.py"))
    monkeypatch.setitem(sys.modules, "__main__", cli_main)
    with pytest.raises(NplearnError) as exc:
        run_toys(eng, range(4), workers=2, checkpoint=tmp_path / "ck")
    assert "__main__" not in str(exc.value) and "out of memory" in str(exc.value)
    assert "records of the finished toys are kept in" in str(exc.value)


def test_engine_folders_of_killed_runs_are_removed(tmp_path, monkeypatch):
    # a run killed with SIGKILL leaves its engine folder (the whole reference) in the
    # temporary directory; the next run on this host removes those of dead processes
    import os
    import subprocess
    import sys
    import tempfile

    import nplearn.toys as toys_mod
    from nplearn.io import _host_tag

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    prefix = toys_mod._ENGINE_DIR_PREFIX
    stale = tmp_path / f"{prefix}{_host_tag()}-{dead}-abc_12"
    alive = tmp_path / f"{prefix}{_host_tag()}-{os.getpid()}-def_34"
    other_host = tmp_path / f"{prefix}{_host_tag()}x-{dead}-ghi_56"
    for d in (stale, alive, other_host):
        d.mkdir()
        (d / "engine.pickle").write_bytes(b"x")
    assert toys_mod._remove_stale_engine_folders() == 1
    assert not stale.exists() and alive.exists() and other_host.exists()
