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
                                  dashboard_address=None) as c:
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
