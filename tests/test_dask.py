"""Toys on a Dask cluster equal the local run bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from nplearn import nplm_test  # noqa: E402
from nplearn.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as c:
        yield c


def test_dask_equals_local(cluster, rng, tmp_path):
    ref, data = rng.normal(size=(4000, 2)), rng.normal(size=(150, 2))
    opts = dict(n_toys=16, n_centers=60, seed=9, sigmas=[0.5, 2.0])
    local = nplm_test(ref, data, workers=1, **opts)
    with distributed.Client(cluster) as client:
        remote = nplm_test(ref, data, executor=client, checkpoint=tmp_path / "ck", **opts)
    np.testing.assert_array_equal(remote.t_null_widths, local.t_null_widths)
    assert remote.p_value == local.p_value
    assert len(list((tmp_path / "ck").glob("*/toy_*.json"))) == 16


def test_cli_dask_executor(cluster, rng, tmp_path, capsys):
    np.save(tmp_path / "ref.npy", rng.normal(size=(3000, 2)))
    np.save(tmp_path / "dat.npy", rng.normal(size=(100, 2)))
    base = ["test", "--reference", str(tmp_path / "ref.npy"), "--data",
            str(tmp_path / "dat.npy"), "--toys", "8", "--centers", "50", "-q"]
    out_d, out_l = tmp_path / "d.json", tmp_path / "l.json"
    assert main([*base, "--executor", "dask", "--scheduler", cluster.scheduler_address,
                 "--json", str(out_d)]) == 0
    assert main([*base, "--workers", "1", "--json", str(out_l)]) == 0
    assert json.loads(out_d.read_text())["t_null"] == json.loads(out_l.read_text())["t_null"]
    assert main([*base, "--executor", "dask"]) == 2
    assert "needs --scheduler" in capsys.readouterr().err
    # a scheduler address without --executor dask would run the toys here: refused
    assert main([*base, "--scheduler", cluster.scheduler_address]) == 2
    assert "add --executor dask" in capsys.readouterr().err


class CrashOnce:
    """Toy generator that fails the first time toy data is drawn after ``marker`` is
    armed (the marker is removed first, so it happens once): ``kill`` ends the worker
    process, ``raise`` raises an I/O error (a transient failure the task retries)."""

    def __init__(self, marker: str, mode: str = "kill") -> None:
        self.marker, self.mode = marker, mode

    def __call__(self, rng):
        import os

        ref, data = rng.normal(size=(2000, 2)), rng.normal(size=(rng.poisson(80), 2))
        try:
            os.remove(self.marker)
        except FileNotFoundError:
            return ref, data
        if self.mode == "raise":
            raise OSError("transient: network file system went away")
        os._exit(17)  # the worker dies mid-task, as on a preempted batch node


def test_dask_survives_a_killed_worker_and_a_failed_task(rng, tmp_path):
    """A worker dying mid-calibration, a task raising once: both are rerun, and the
    toys are those of the local run."""
    from nplearn.toys import ToyEngine, run_toys

    marker = tmp_path / "armed"
    params = {"sigma": 1.0, "n_centers": 60, "lam": 1e-6}
    engines = {mode: ToyEngine(params, 80.0, seed=5, generator=CrashOnce(str(marker), mode))
               for mode in ("kill", "raise")}
    local = [r.t for r in run_toys(engines["kill"], range(12), workers=1)]  # not armed
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as c, distributed.Client(c) as client:
        for mode, engine in engines.items():
            marker.write_text("")
            remote = run_toys(engine, range(12), executor=client)
            assert not marker.exists(), mode  # the failure did happen
            assert [r.t for r in remote] == local, mode
            assert all(r.ok for r in remote)
        marker.write_text("")
        with pytest.raises(OSError, match="transient"):  # no retries: the error surfaces
            run_toys(engines["raise"], range(12), executor=client, retries=0)


def test_threaded_dask_worker_with_shared_centres():
    """A Dask worker runs several tasks at once in threads (its default): toys sharing
    one engine in a process must not share fitted state."""
    rng = np.random.default_rng(0)
    ref, data = rng.normal(size=(400, 1)), rng.normal(size=(20, 1))
    kw = dict(n_toys=120, sigma=1.0, n_centers=20, centers="shared", seed=3, lam=1e-4)
    local = nplm_test(ref, data, workers=1, **kw)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=4, processes=True,
                                  dashboard_address=":0") as c, distributed.Client(c) as client:
        remote = nplm_test(ref, data, executor=client, **kw)
    np.testing.assert_array_equal(remote.t_null, local.t_null)
