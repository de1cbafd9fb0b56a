"""Regression tests for problems found in review (one test per problem)."""

from __future__ import annotations

import numpy as np
import pytest

import nplearn.toys
from nplearn import InputError, KernelLogisticRegression, NplearnError, calibrate, nplm_test
from nplearn.cli import main
from nplearn.io import read_table
from nplearn.nplm import NPLMConfig, _prepare
from nplearn.toys import ToyEngine

from conftest import make_classification


def test_shape_only_toys_have_exactly_n_data_events(rng):
    # Without `expected` the observed reference is normalised to N_D: toys must
    # then also have exactly N_D events (no Poisson normalisation term).
    ref, data = rng.normal(size=(5000, 1)), rng.normal(size=(137, 1))
    res = nplm_test(ref, data, n_toys=5, n_centers=200, workers=1)
    assert [t.n_data for t in res.toys] == [137] * 5
    assert res.hyperparameters["normalisation"].startswith("shape-only")
    ext = nplm_test(ref, data, n_toys=5, n_centers=200, workers=1, expected=137.0)
    assert len({t.n_data for t in ext.toys}) > 1  # Poisson counts
    assert ext.hyperparameters["normalisation"].startswith("extended")


def test_tiny_but_unequal_weights_are_kept(rng):
    ref, data = rng.normal(size=(100, 1)), rng.normal(size=(10, 1))
    w = np.linspace(1e-9, 9e-9, 100)
    _, _, rel, _, _, _ = _prepare(ref, data, w, NPLMConfig())
    assert rel is not None
    _, _, rel, _, _, _ = _prepare(ref, data, np.full(100, 3e-9), NPLMConfig())
    assert rel is None


def test_shared_centres_check_the_usable_pool(rng):
    ref, data = rng.normal(size=(1000, 1)), rng.normal(size=(300, 1))
    with pytest.raises(InputError, match="keeps the 900 centre events out"):
        nplm_test(ref, data, centers="shared", n_centers=900, n_toys=2, workers=1)


def test_nan_observed_statistic_is_refused():
    with pytest.raises(InputError, match="NaN"):
        calibrate(float("nan"), np.arange(10.0))


def test_all_toys_failing_is_an_error(rng, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated linear-algebra failure")

    monkeypatch.setattr(nplearn.toys, "nplm_fit", broken)
    ref, data = rng.normal(size=(3000, 1)), rng.normal(size=(50, 1))
    with pytest.raises(NplearnError, match=r"all 3 toys failed.*simulated"):
        nplm_test(ref, data, n_toys=3, n_centers=100, workers=1)


def test_failed_toys_enter_the_conservative_pvalue():
    c = calibrate(5.0, np.arange(10.0), n_failed=3)  # 5 of 10 toys have t >= 5
    assert c.p_empirical == pytest.approx(6 / 11)
    assert c.p_conservative == pytest.approx(9 / 14)


def test_cli_bench_without_name_exits_2(capsys):
    assert main(["bench"]) == 2
    assert "choose a benchmark" in capsys.readouterr().err


def test_cli_checks_output_path_before_running(tmp_path, capsys):
    np.save(tmp_path / "r.npy", np.random.default_rng(0).normal(size=(500, 1)))
    code = main(["test", "--reference", str(tmp_path / "r.npy"), "--data",
                 str(tmp_path / "r.npy"), "--json", str(tmp_path / "no" / "such" / "x.json")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_cli_detects_swapped_generic_column_names(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "r.csv", rng.normal(size=(500, 2)), delimiter=",", header="x1,x2",
               comments="")
    np.savetxt(tmp_path / "d.csv", rng.normal(size=(50, 2)), delimiter=",", header="x2,x1",
               comments="")
    code = main(["test", "--reference", str(tmp_path / "r.csv"), "--data",
                 str(tmp_path / "d.csv"), "--workers", "1"])
    assert code == 2 and "column names differ" in capsys.readouterr().err


def test_csv_with_bom_and_missing_first_value(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeff1.0,2.0\n3.0,4.0\n".encode())
    t = read_table(p)
    assert not t.has_header and t.events.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    p.write_text(",2.0\n3.0,4.0\n")
    with pytest.raises(InputError, match="non-finite value nan at row 0, column 0"):
        read_table(p)


def test_truncated_cg_is_not_reported_converged(rng):
    # one CG iteration per Newton step never solves the Newton system: the fit must not
    # claim convergence however many steps it takes (with the default max_iter it would
    # otherwise stop at the floating-point floor and call that converged), while the
    # same problem with a real CG solve converges in a few steps
    X, y, sw = make_classification(rng)
    opts = dict(sigma=1.0, n_centers=200, inner="cg", random_state=0)
    m = KernelLogisticRegression(cg_max_iter=1, **opts).fit(X, y, sw)
    assert not m.fit_info_.converged
    full = KernelLogisticRegression(cg_max_iter=1000, **opts).fit(X, y, sw)
    assert full.fit_info_.converged and full.fit_info_.n_iter < 20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"rank_tol": float("nan")}, "rank_tol"), ({"rank_tol": 1.0}, "rank_tol"),
     ({"cg_max_iter": 0}, "cg_max_iter"), ({"tol": -1.0}, "tol"),
     ({"cg_tol": float("inf")}, "cg_tol"), ({"memory_budget": -5}, "memory_budget")],
)
def test_solver_parameters_are_validated(rng, kwargs, match):
    X, y, sw = make_classification(rng, n_ref=100, n_data=10)
    with pytest.raises(InputError, match=match):
        KernelLogisticRegression(sigma=1.0, **kwargs).fit(X, y, sw)


def test_far_from_origin_data_fit_like_centred_data(rng):
    # The expanded |x|^2 + |c|^2 - 2 x.c loses precision far from 0; the solver
    # centres events and centres first, so a translation changes nothing.
    # (Without the centring the rank drops from 223 to 183 here and f moves by 0.7;
    # with it, only the 1e-12 rounding of the translated coordinates remains,
    # amplified by the conditioning of the lam = 1e-5 problem to < 1e-3.)
    X, y, sw = make_classification(rng, n_ref=2000, n_data=200)
    kw = dict(sigma=0.5, n_centers=300, lam=1e-5, random_state=3)
    a = KernelLogisticRegression(**kw).fit(X, y, sw)
    b = KernelLogisticRegression(**kw).fit(X + 1e4, y, sw)
    assert a.rank_ == b.rank_
    np.testing.assert_allclose(a.train_decision_, b.train_decision_, atol=5e-3)
    np.testing.assert_allclose(b.decision_function(X[:50] + 1e4), a.train_decision_[:50],
                               atol=5e-3)


def test_auto_device_resolves_before_choosing_workers(rng):
    ref, data = rng.normal(size=(3000, 1)), rng.normal(size=(50, 1))
    res = nplm_test(ref, data, n_toys=2, n_centers=100, workers=1, device="auto")
    assert res.hyperparameters["device"] in ("cpu", "cuda", "cuda:0")


def test_toy_engine_pickles_without_its_cache(rng):
    import pickle

    pool = rng.normal(size=(3000, 1))
    e = ToyEngine({"sigma": 1.0, "n_centers": 100, "lam": 1e-6}, 50.0, 0, pool=pool,
                  shared_centers=True)
    e.shared_state()
    assert ("shared", 1.0) in e._cache
    assert pickle.loads(pickle.dumps(e))._cache == {}


def test_unreachable_tolerance_is_never_reported_converged(rng):
    # Near the floating-point floor the solver stops on stagnation, but it only
    # calls that convergence within 1000 x tol: an impossible tol stays unconverged.
    X, y, sw = make_classification(rng)
    for inner in ("direct", "cg"):
        m = KernelLogisticRegression(sigma=1.0, n_centers=200, lam=1e-8, tol=1e-40, max_iter=12,
                                     inner=inner, random_state=0).fit(X, y, sw)
        assert not m.fit_info_.converged
        assert m.fit_info_.n_iter <= 12


def test_summary_states_bounds_and_unconverged_fits():
    """The reported line and the JSON say when the reported p is only a bound (no toy
    reached the data); multi-width summaries name the widths whose observed fit did
    not converge; unconverged toys are counted in the summary."""
    rng = np.random.default_rng(1)
    ref = rng.exponential(size=(5000, 1))
    data = np.r_[rng.exponential(size=(300, 1)), rng.normal(2.0, 0.1, (60, 1))]
    strong = nplm_test(ref, data, expected=300, n_toys=20, n_centers=100, workers=1)
    assert strong.calibration.n_exceed == 0 and strong.p_is_bound
    assert strong.to_dict()["p_is_bound"] is True
    reported = next(ln for ln in strong.summary().splitlines() if "  reported  " in ln)
    assert "p <= " in reported and "Z >= " in reported and "a bound" in reported
    plain = nplm_test(ref, data[:300], expected=300, n_toys=20, n_centers=100, workers=1)
    assert plain.calibration.n_exceed > 0 and not plain.p_is_bound
    assert "p = " in plain.summary() and "Z >= " not in plain.summary()
    multi = nplm_test(ref, data, expected=300, n_toys=6, n_centers=100, workers=1,
                      sigmas=[1.0, 0.05], max_iter=2)
    text = multi.summary()
    assert "NOT converged at sigma = 1, 0.05" in text
    assert "6 ok (6 not converged" in text and "N_w (first width)" in text
    # no toy reaches the data at any width: the combined p is a bound, and says so
    assert multi.combinations["min-p"].n_exceed == 0 and multi.p_is_bound
    assert any(ln.startswith("  reported  ") and "Z >= " in ln and "min-p" in ln
               for ln in text.splitlines())
