"""Hostile input (property-based): every input gives a clear error or a correct result,
never a traceback from deep inside numpy/torch, never a partially written output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from nplearn import NplearnError, nplm_test  # noqa: E402
from nplearn.cli import main  # noqa: E402

FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 1.0, -1.0, 1e300, -1e300, 1e-300, 5e-324]),
)


def arrays(max_rows: int):
    return st.one_of(
        hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0,
                                                max_side=max_rows), elements=values),
        hnp.arrays(np.float64, st.tuples(st.integers(0, max_rows), st.integers(1, 3)),
                   elements=st.floats(-5, 5)),
        hnp.arrays(st.sampled_from([np.int64, np.bool_, np.float32]),
                   st.tuples(st.integers(1, max_rows), st.integers(1, 3))),
    )


def _check(call):
    """The call must return a finite statistic or raise NplearnError (clear message)."""
    try:
        res = call()
    except NplearnError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg and "Traceback" not in msg
        return None
    assert math.isfinite(res.t_obs)
    return res


@FAST
@given(ref=arrays(80), data=arrays(20), expected=st.one_of(st.none(), st.floats(0.5, 50)))
def test_api_inputs(ref, data, expected):
    _check(lambda: nplm_test(ref, data, n_toys=2, n_centers=8, workers=1, expected=expected))


@FAST
@given(ref=hnp.arrays(np.float64, st.tuples(st.integers(30, 120), st.just(2)),
                      elements=st.floats(-1e6, 1e6)),
       weights=hnp.arrays(np.float64, st.integers(0, 130), elements=values))
def test_api_weights(ref, weights):
    data = ref[:5] + 0.5
    _check(lambda: nplm_test(ref, data, ref_weights=weights, n_toys=2, n_centers=8,
                             workers=1))


@FAST
@given(text=st.text(alphabet="0123456789.,;-+eE naifINAF\n\t#x", max_size=300),
       suffix=st.sampled_from([".csv", ".txt", ".npy", ".root", ".h5", ".parquet", ".toml"]))
def test_cli_files(tmp_path_factory, text, suffix):
    d = tmp_path_factory.mktemp("fuzz")
    bad = d / f"in{suffix}"
    bad.write_text(text)
    good = d / "ref.npy"
    np.save(good, np.random.default_rng(0).normal(size=(200, 2)))
    out = d / "out.json"
    for argv in (["test", "--reference", str(good), "--data", str(bad)],
                 ["test", "--reference", str(bad), "--data", str(good)],
                 ["test", "--config", str(bad)]):
        # each run starts from the same previous output (a successful run before it
        # replaces the file, as it should)
        out.write_text('{"previous": true}\n')
        rc = main([*argv, "--toys", "2", "--centers", "8", "--workers", "1", "--json",
                   str(out), "-q"])
        assert rc in (0, 2)
        if rc == 2:  # a failed run never touches the existing output
            assert json.loads(out.read_text()) == {"previous": True}


@FAST
@given(key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
       value=st.one_of(st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=5),
                       st.booleans()))
def test_config_keys_and_values(tmp_path_factory, key, value):
    d = tmp_path_factory.mktemp("cfg")
    np.save(d / "ref.npy", np.random.default_rng(1).normal(size=(200, 2)))
    np.save(d / "dat.npy", np.random.default_rng(2).normal(size=(20, 2)))
    cfg = d / "run.json"
    cfg.write_text(json.dumps({"reference": "ref.npy", "data": "dat.npy", "n_toys": 2,
                               "n_centers": 8, "workers": 1, key: value}))
    assert main(["test", "--config", str(cfg), "-q"]) in (0, 2)


_R = np.random.default_rng(7)


@pytest.mark.parametrize(("ref", "data"), [
    pytest.param(np.c_[_R.normal(size=(300, 1)), np.ones((300, 1))], _R.normal(size=(30, 2)),
                 id="constant-column"),
    pytest.param(_R.normal(size=(300, 2)) * 1e300, _R.normal(size=(30, 2)) * 1e300,
                 id="huge-values"),
    pytest.param(_R.normal(size=(300, 2)) * 1e-300, _R.normal(size=(30, 2)) * 1e-300,
                 id="tiny-values"),
    pytest.param(np.ones((300, 2)), np.ones((30, 2)), id="all-duplicated"),
    pytest.param(np.repeat(_R.normal(size=(30, 2)), 10, axis=0), _R.normal(size=(30, 2)),
                 id="duplicated-events"),
    pytest.param(_R.normal(size=(300, 2)), _R.normal(size=(1, 2)), id="one-data-event"),
    pytest.param(_R.normal(size=(1, 2)), _R.normal(size=(1, 2)), id="one-reference-event"),
    pytest.param(_R.normal(size=(12, 100_000)), _R.normal(size=(3, 100_000)),
                 id="1e5-columns"),
    pytest.param(np.array([["a", "b"]] * 10), np.array([["a", "b"]]), id="strings"),
])
def test_hostile_arrays(ref, data):
    _check(lambda: nplm_test(ref, data, n_toys=2, n_centers=8, workers=1))


def test_huge_values_are_standardised_not_overflowed():
    r = np.random.default_rng(3)
    ref, data = r.normal(size=(400, 1)), r.normal(size=(40, 1))
    a = nplm_test(ref, data, n_toys=0, n_centers=30, workers=1)
    b = nplm_test(ref * 1e300, data * 1e300, n_toys=0, n_centers=30, workers=1)
    assert b.t_obs == pytest.approx(a.t_obs, rel=1e-6)


@pytest.mark.parametrize("case", ["duplicate-centres", "tiny-sigma", "huge-sigma",
                                  "lambda-1e-12", "ratio-1e-4", "ratio-1"])
def test_solver_robustness(case):
    # ill-conditioned kernels, extreme weight ratios and tiny penalties either converge
    # or say so in the result; a toy never enters the null with a NaN statistic
    r = np.random.default_rng(8)
    ref, data, kw = r.normal(size=(3000, 2)), r.normal(size=(60, 2)), {}
    if case == "duplicate-centres":
        ref = np.repeat(ref[:300], 10, axis=0)
    elif case == "tiny-sigma":
        kw["sigma"] = 1e-4
    elif case == "huge-sigma":
        kw["sigma"] = 1e4
    elif case == "lambda-1e-12":
        kw["lam"] = 1e-12
    elif case == "ratio-1e-4":
        ref, data, kw["expected"] = r.normal(size=(100_000, 2)), r.normal(size=(10, 2)), 10.0
    else:
        data, kw["expected"] = r.normal(size=(1500, 2)), 1500.0
    res = nplm_test(ref, data, n_toys=3, n_centers=200, workers=1, **kw)
    assert math.isfinite(res.t_obs)
    assert res.fit["converged"] or res.fit["message"]
    assert all(math.isfinite(t) for t in res.t_null)
    for toy in res.toys:
        assert toy.ok or not math.isfinite(toy.t)
        assert toy.converged or toy.message


def test_too_many_centres_is_a_clear_error(monkeypatch):
    # a request that cannot fit the device memory stops with a message, not an OOM kill
    import nplearn.learners.kernel as kernel

    monkeypatch.setattr(kernel, "device_memory_bytes", lambda device: 4 * 1024**2)
    r = np.random.default_rng(4)
    with pytest.raises(NplearnError, match="use fewer centres"):
        nplm_test(r.normal(size=(3000, 2)), r.normal(size=(50, 2)), n_toys=0,
                  n_centers=1000, workers=1)
