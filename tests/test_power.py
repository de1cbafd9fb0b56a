"""The power harness: Clopper-Pearson intervals, power summaries, a small study."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from nplearn import InputError
from nplearn.benchmarks.suite import Exp1DScaled, GaussSuite
from nplearn.cli import main
from nplearn.power import (
    clopper_pearson,
    extend_null,
    extend_signals,
    extend_study,
    format_power_table,
    power_study,
    power_summary,
    recombine,
    study_benchmark,
    threshold_size,
)


def test_clopper_pearson_known_values():
    # k = 0: the upper limit solves (1 - p)^n = 0.16
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.16 ** (1 / 10))
    lo, hi = clopper_pearson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.16 ** (1 / 10))
    lo, hi = clopper_pearson(30, 100)
    assert lo < 0.30 < hi
    # coverage of the 68% interval: binomial probability of the interval's acceptance
    assert sps.binom.cdf(30, 100, hi) == pytest.approx(0.16, abs=1e-6)


def test_power_summary_by_hand():
    p = np.array([1e-4, 1e-3, 0.01, 0.2, 0.5])
    s = power_summary(p, (2.0, 3.0))
    # Z >= 2 <=> p <= 0.02275: three toys; Z >= 3 <=> p <= 0.00135: two toys
    assert s["power"]["2"]["k"] == 3 and s["power"]["2"]["value"] == pytest.approx(0.6)
    assert s["power"]["3"]["k"] == 2
    assert s["median_z"] == pytest.approx(sps.norm.isf(0.01))


def test_threshold_size_steps():
    # k = floor(1.35e-3 (n + 1)): Z >= 3 is unreachable below 740 null toys
    # (the steps extend_null's docstring lists)
    ns = (739, 740, 1480, 1481, 2221, 2222, 2962, 2963, 6000)
    assert [threshold_size(n, 3.0)["k"] for n in ns] == [0, 1, 1, 2, 2, 3, 3, 4, 8]
    th = threshold_size(1000, 3.0)
    assert th["size"] == pytest.approx(1 / 1001)
    assert th["z_effective"] == pytest.approx(sps.norm.isf(1 / 1001))
    assert th["size_lo"] < th["size"] < th["size_hi"]
    assert threshold_size(500, 3.0)["z_effective"] == np.inf
    with pytest.raises(InputError, match="n_null"):
        threshold_size(0, 3.0)


def test_threshold_size_is_the_law_of_the_empirical_threshold():
    """Simulated null sets: the Z >= 2 rule of empirical p-values rejects exactly beyond
    the k-th largest null toy, and that threshold's true size (for a uniform null,
    one minus the order statistic) follows the stated Beta law: each 16% tail holds
    16% of the simulations within four binomial standard errors (0.0104 at 20000)."""
    from nplearn.multitest import empirical_p

    rng = np.random.default_rng(21)
    n, reps = 200, 20000
    th = threshold_size(n, 2.0)
    k = th["k"]
    assert k == 4
    null = rng.uniform(size=n)
    kth = np.sort(null)[-k]
    p, _ = empirical_p(np.array([kth + 1e-9, kth - 1e-9]), null)
    assert p[0] <= sps.norm.sf(2.0) < p[1]
    sizes = 1.0 - np.sort(rng.uniform(size=(reps, n)), axis=1)[:, -k]
    tol = 4 * np.sqrt(0.16 * 0.84 / reps)
    assert np.mean(sizes < th["size_lo"]) == pytest.approx(0.16, abs=tol)
    assert np.mean(sizes > th["size_hi"]) == pytest.approx(0.16, abs=tol)
    assert sizes.mean() == pytest.approx(th["size"], rel=4 * np.sqrt(1 / k) / np.sqrt(reps))


def test_threshold_band_by_hand():
    # 1000 null toys: p-values on the grid j / 1001; Z >= 2 rejects j <= 22
    th = threshold_size(1000, 2.0)
    assert th["k"] == 22
    # the range's ends rounded outward onto the grid
    j_lo, j_hi = math.floor(th["size_lo"] * 1001), math.ceil(th["size_hi"] * 1001)
    assert j_lo < 22 < j_hi
    p = np.arange(1, 51) / 1001.0  # one toy at each of the 50 smallest p-values
    s = power_summary(p, (2.0,), n_null=1000)["power"]["2"]
    assert s["k"] == 22
    assert s["threshold_band68"] == [j_lo / 50, j_hi / 50]
    assert "threshold_band68" not in power_summary(p, (2.0,))["power"]["2"]


def test_threshold_band_single_toy():
    # Z >= 3 with 1000 null toys rests on the largest one (k = 1): Beta(1, 1000),
    # whose quantiles are closed-form
    th = threshold_size(1000, 3.0)
    assert th["k"] == 1
    assert th["size_lo"] == pytest.approx(1 - 0.84 ** (1 / 1000))
    assert th["size_hi"] == pytest.approx(1 - 0.16 ** (1 / 1000))
    # 0.00017 * 1001 < 1: the low end is unresolvable; 0.0018 * 1001 = 1.83 rounds
    # out to the second grid point, so the high end counts toys at p <= 2/1001
    p = np.array([1, 1, 2, 2, 2, 3, 50]) / 1001.0
    band = power_summary(p, (3.0,), n_null=1000)["power"]["3"]
    assert band["value"] == pytest.approx(2 / 7)
    assert band["threshold_band68"] == [None, pytest.approx(5 / 7)]
    # 300 null toys, Z >= 2: k = 6 and the 68% range of the true size is 3.65/301 to
    # 8.35/301; outward rounding gives the grid points 3 and 9 (nearest would give 4
    # and 8), so toys at ranks 4 and 9 tell the two apart
    th = threshold_size(300, 2.0)
    assert th["k"] == 6
    assert 3 < th["size_lo"] * 301 < 3.7 and 8.3 < th["size_hi"] * 301 < 9
    p = np.array([1, 3, 4, 6, 8, 9, 10, 40]) / 301.0
    band = power_summary(p, (2.0,), n_null=300)["power"]["2"]
    assert band["value"] == pytest.approx(4 / 8)
    assert band["threshold_band68"] == [pytest.approx(2 / 8), pytest.approx(6 / 8)]


SMALL = dict(n_null=50, n_signal=12, sigmas=(0.3, 1.5), n_centers=100, lam=1e-6,
             ideal_toys=400, seed=3)


def test_small_power_study(tmp_path):
    bench = Exp1DScaled(n_ref=4000, expected=200.0, n_signal_scale=4.0)
    res = power_study(bench, signals=["bulk"], workers=1, **SMALL)
    assert res["null"]["n_ok"] == 50 and len(res["null"]["chi2_dof"]) == 2
    sig = res["signals"]["bulk"]
    names = set(sig["tests"])
    assert {"sigma=0.3", "sigma=1.5", "min-p", "fused-p", "product-p", "fused-t",
            "ks_bonferroni", "energy", "mmd", "binned_chi2"} <= names
    for entry in sig["tests"].values():
        for v in entry["power"].values():
            assert 0.0 <= v["lo68"] <= v["value"] <= v["hi68"] <= 1.0
    # 360 signal events on 200 expected: beyond every one of the 50 null toys (p = 1/51)
    assert sig["tests"]["min-p"]["power"]["2"]["value"] == 1.0
    assert sig["ideal"]["median_z"] > 5
    table = format_power_table(res)
    assert "min-p" in table and "Z >= 3 cannot be reached with 50 null toys" in table
    assert "Z >= 2: p <= 1/51, beyond every one of the 50 null toys" in table
    # Z >= 2 rests on the largest of 50 null toys: the low end of its size range is
    # below 1/51 (not resolvable), the high end rounds out to p <= 2/51
    assert sig["tests"]["min-p"]["power"]["2"]["threshold_band68"] == [None, 1.0]
    assert sig["tests"]["min-p"]["power"]["3"]["threshold_band68"] == [None, None]
    json.dumps(res)
    # the raw statistics are kept, and recomputing the combinations from them gives
    # the numbers of the study; a study without them is refused
    assert np.asarray(res["null"]["t"]).shape == (50, 2)
    assert np.asarray(sig["t"]).shape == (sig["n_ok"], 2)
    again = recombine(json.loads(json.dumps(res)))
    assert again["signals"]["bulk"]["tests"] == sig["tests"]
    hot = recombine(res, temperature=50.0)
    assert hot["temperature"] == 50.0 and res["temperature"] == 1.0
    assert hot["signals"]["bulk"]["tests"]["min-p"] == sig["tests"]["min-p"]
    # combinations over a subset of the widths (studies merged from runs on the same
    # toys): min-p over one width is that width's own test
    one = recombine({**json.loads(json.dumps(res)), "combination_widths": [1.5]})
    assert one["signals"]["bulk"]["tests"]["min-p"]["power"] == \
        sig["tests"]["sigma=1.5"]["power"]
    with pytest.raises(InputError, match="not among the study's widths"):
        recombine({**res, "combination_widths": [0.7]})
    for bad in ([], [1.5, 1.5]):
        with pytest.raises(InputError, match="distinct widths"):
            recombine({**res, "combination_widths": bad})
    stale = json.loads(json.dumps(res))
    del stale["null"]["t"]
    with pytest.raises(InputError, match="raw statistics"):
        recombine(stale)
    # the same study with two workers gives the same numbers
    res2 = power_study(bench, signals=["bulk"], workers=2, **SMALL)
    assert res2["signals"] == res["signals"] or \
        json.dumps(res2["signals"], sort_keys=True) == json.dumps(res["signals"], sort_keys=True)


def test_baseline_subsample_is_used_and_recorded():
    from nplearn.power import BenchmarkToy
    from nplearn.toys import ToyEngine

    bench = GaussSuite(d=2, n_ref=3000, expected=150.0)  # 1D energy is exact: not subsampled
    kw = dict(generator=BenchmarkToy(bench, "tail"), extra_stats=("energy", "mmd", "ks_bonferroni"))
    params = {"sigma": 1.0, "n_centers": 50, "lam": 1e-6}
    full = ToyEngine(params, 150.0, 0, **kw).run(0)
    sub = ToyEngine(params, 150.0, 0, extra_max_ref=500, **kw).run(0)
    assert sub.t == full.t  # the same toy and fit
    assert sub.extra["ks_bonferroni"] == full.extra["ks_bonferroni"]  # not subsampled
    for name in ("energy", "mmd"):
        assert sub.extra[name] != full.extra[name]
    opts = dict(signals=["tail"], n_null=5, n_signal=2, sigmas=[1.0], n_centers=50,
                ideal_toys=0, baselines=["energy"], workers=1)
    assert power_study(bench, baseline_max_ref=500, **opts)["baseline_max_ref"] == 500
    with pytest.raises(InputError, match="baseline_max_ref"):
        power_study(bench, baseline_max_ref=1, **opts)
    # the tests' own default, recorded
    assert power_study(bench, **opts)["baseline_max_ref"] == 20000
    # in 1D the default is the whole reference (MMD's cost is linear there), recorded
    one_d = Exp1DScaled(n_ref=25000, expected=100.0)
    res = power_study(one_d, **{**opts, "baselines": ["mmd"], "n_signal": 1})
    assert res["baseline_max_ref"] == 25000


def test_power_study_runs_the_network_on_the_same_toys():
    # the original NPLM learner as an opt-in comparison test: its t on every toy, next
    # to the kernel widths
    bench = Exp1DScaled(n_ref=4000, expected=200.0, n_signal_scale=4.0)
    opts = dict(signals=["bulk"], n_null=6, n_signal=3, sigmas=(1.5,), n_centers=50,
                ideal_toys=0, workers=1, seed=3)
    res = power_study(bench, baselines=["nplm_network"], **opts)
    assert res["baselines"] == ["nplm_network"]
    t_null = np.asarray(res["null"]["extra"]["nplm_network"])
    t_sig = np.asarray(res["signals"]["bulk"]["extra"]["nplm_network"])
    assert t_null.shape == (6,) and np.isfinite(t_null).all() and (t_null > 0).all()
    # 360 signal events on 200 expected: beyond every null toy
    assert t_sig.min() > t_null.max()
    assert "nplm_network" in res["signals"]["bulk"]["tests"]
    # the kernel's statistic is that of the same toys without the network
    plain = power_study(bench, baselines=[], **opts)
    assert plain["null"]["t"] == res["null"]["t"]


def test_power_study_bad_input():
    bench = Exp1DScaled(n_ref=2000, expected=100.0)
    with pytest.raises(InputError, match="unknown signal"):
        power_study(bench, signals=["bump"], n_null=5, n_signal=1)
    with pytest.raises(InputError, match="at least 5 null"):
        power_study(bench, n_null=4, n_signal=1)
    ok = dict(n_null=5, n_signal=1, sigmas=[1.0], n_centers=20, ideal_toys=0)
    for bad, match in [(dict(baselines=["bogus"]), "unknown comparison test"),
                       (dict(seed=-1), "seed"), (dict(temperature=float("nan")), "temperature"),
                       (dict(workers=0), "workers"), (dict(ideal_toys=-1), "ideal_toys")]:
        with pytest.raises(InputError, match=match):
            power_study(bench, **{**ok, **bad})


def test_power_study_refuses_bad_settings_before_any_toy(monkeypatch):
    import nplearn.power as power_mod

    def no_toys(*args, **kwargs):
        raise AssertionError("toys ran before the settings were checked")

    monkeypatch.setattr(power_mod, "run_toys", no_toys)
    bench = Exp1DScaled(n_ref=2000, expected=100.0)
    ok = dict(n_null=5, n_signal=1, sigmas=[1.0, 2.0], n_centers=20, ideal_toys=0)
    for bad, match in [
        (dict(combinations=["minp"]), "unknown combination"),
        (dict(combinations="min-p"), "not a string"),
        (dict(z_thresholds=["three"]), "must be numbers"),
        (dict(z_thresholds=[-1.0]), "z_thresholds must be positive"),
        (dict(sigmas="abc"), "must be numbers"),
        # the result records sigma, M, lambda, schedule: options may not override them
        (dict(learner_options={"sigma": 3.0}), "may not set sigma"),
        (dict(learner_options={"lam": 1e-3, "n_centers": 5}), "may not set lam, n_centers"),
        (dict(learner_options={"foo": 1}), "learner_options: .*foo"),
        (dict(n_null=5.5), "n_null must be an integer"),
        (dict(signals=["tail", "tail"]), "tail listed twice"),
        (dict(signals=[]), "no signal to study"),
    ]:
        with pytest.raises(InputError, match=match):
            power_study(bench, **{**ok, **bad})
    g2 = GaussSuite(d=2, n_ref=2000, expected=100.0)
    for bad, match in [
        (dict(baselines=["binned_chi2"]), r"binned_chi2 do not apply to .*2 features"),
    ]:
        with pytest.raises(InputError, match=match):
            power_study(g2, **{**ok, **bad})
    with pytest.raises(InputError, match="at least 2 events"):
        power_study(Exp1DScaled(n_ref=1, expected=100.0), **ok)
    with pytest.raises(AssertionError, match="toys ran"):  # a valid study gets that far
        power_study("exp1d8", **ok)
    with pytest.raises(AssertionError, match="toys ran"):  # binned chi2 applies in 1D
        power_study(bench, **{**ok, "baselines": ["binned_chi2"]})


def test_cli_power(tmp_path, capsys):
    out = tmp_path / "power.json"
    rc = main(["power", "--benchmark", "exp1d8", "--signals", "tail", "--null-toys", "12",
               "--signal-toys", "4", "--n-ref", "3000", "--expected", "150", "--sigma",
               "0.5,2", "--centers", "80", "--ideal-toys", "200", "--baselines", "none",
               "--workers", "1", "--json", str(out), "-q"])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["benchmark"] == "exp1d8" and d["baselines"] == [] and d["shape_only"] is False
    assert "tail" in capsys.readouterr().out
    assert main(["power", "--benchmark", "gauss0d", "--null-toys", "3"]) == 2
    # more null toys for the stored study: the same as a study run with 15 at once
    ext = tmp_path / "more.json"
    assert main(["power", "--extend", str(out), "--null-toys", "3", "--workers", "1",
                 "--json", str(ext), "-q"]) == 0
    e = json.loads(ext.read_text())
    assert e["null"]["n_requested"] == 15 and e["null"]["t"][:12] == d["null"]["t"]
    assert e["null"]["extensions"][0]["command"]
    assert json.loads(out.read_text()) == d  # the input study is untouched
    # more signal toys: 4 + 2 per signal, the null untouched
    sig = tmp_path / "sig.json"
    assert main(["power", "--extend", str(out), "--signal-toys", "2", "--workers", "1",
                 "--json", str(sig), "-q"]) == 0
    g = json.loads(sig.read_text())
    assert g["signals"]["tail"]["n_requested"] == 6 and g["null"] == d["null"]
    assert g["signals"]["tail"]["t"][:4] == d["signals"]["tail"]["t"]
    assert g["signals"]["tail"]["extensions"][0]["command"]
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for path in (bad, tmp_path / "missing.json"):
        assert main(["power", "--extend", str(path), "--null-toys", "3", "-q"]) == 2
    assert "cannot read the power study" in capsys.readouterr().err
    # nothing to add, or a study setting that the stored study fixes: refused, no output
    for extra, match in ((["--workers", "1"], "--null-toys N"),
                         (["--null-toys", "-3"], "cannot be negative"),
                         (["--null-toys", "3", "--sigma", "0.5"], "--sigma"),
                         (["--null-toys", "3", "--seed", "0"], "--seed"),
                         (["--null-toys", "3", "--shape-only"], "--shape-only"),
                         (["--null-toys", "3", "--signals", "tail"], "--signal-toys"),
                         (["--signal-toys", "2", "--signals", "bulk"], "not in this study"),
                         (["--signal-toys", "2", "--signals", ","], "no signals")):
        never = tmp_path / "never.json"
        assert main(["power", "--extend", str(out), *extra, "--json", str(never), "-q"]) == 2
        assert match in capsys.readouterr().err and not never.exists()


@pytest.mark.parametrize("sigmas", [(0.5, 2.0), (0.7,)])
def test_extend_signals_equals_the_larger_study(sigmas):
    bench = Exp1DScaled(n_ref=3000, expected=150.0, n_signal_scale=3.0)
    opts = dict(signals=["tail", "bulk"], n_null=8, sigmas=sigmas, n_centers=60,
                ideal_toys=0, baselines=["ks_bonferroni"], seed=7, workers=1)
    small = power_study(bench, n_signal=3, **opts)
    big = power_study(bench, n_signal=5, **opts)

    def stored(d):  # a study as written to disk: keys sorted (bulk before tail)
        return json.loads(json.dumps(d, sort_keys=True))

    assert list(stored(small)["signals"]) == ["bulk", "tail"]
    # the study's own benchmark, signal scale included, is rebuilt from the file
    assert study_benchmark(stored(small)) == bench
    # both signals: the second signal's toys come from its own stream (stream 2)
    ext = extend_signals(stored(small), study_benchmark(stored(small)), 2, workers=1)
    for sig in ("tail", "bulk"):
        for key in ("t", "extra", "n_requested", "n_ok", "ok_indices", "tests", "stream"):
            assert ext["signals"][sig][key] == big["signals"][sig][key], (sig, key)
        assert ext["signals"][sig]["extensions"][0]["n_added"] == 2
    assert ext["null"] == stored(small)["null"]
    assert small["signals"]["tail"]["n_requested"] == 3  # the input is not modified
    # one signal only; a study written before signal entries kept ok_indices
    legacy = stored(small)
    for entry in legacy["signals"].values():
        del entry["ok_indices"]
    one = extend_signals(legacy, bench, 2, signals=["bulk"], workers=1)
    assert one["signals"]["bulk"]["t"] == big["signals"]["bulk"]["t"]
    assert one["signals"]["bulk"]["ok_indices"] == list(range(5))
    assert one["signals"]["tail"] == legacy["signals"]["tail"]
    # null and signal toys in one pass equal the study run with both at once
    both = extend_study(stored(small), bench, n_null=3, n_signal=2, workers=1)
    bigger = power_study(bench, n_signal=5, **{**opts, "n_null": 11})
    assert both["null"]["t"] == bigger["null"]["t"]
    assert both["signals"]["bulk"]["tests"] == bigger["signals"]["bulk"]["tests"]
    for bad, match in ((dict(signals=["mid4"]), "not in this study"),
                       (dict(signals=["bulk", "bulk"]), "twice"),
                       (dict(signals=[]), "no signals")):
        with pytest.raises(InputError, match=match):
            extend_signals(small, bench, 2, **bad)
    with pytest.raises(InputError, match="n_more"):
        extend_signals(small, bench, 0)
    # another signal strength than the study's is refused before any toy runs
    with pytest.raises(InputError, match="signal tail of the study"):
        extend_signals({k: v for k, v in small.items() if k != "n_signal_scale"},
                       Exp1DScaled(n_ref=3000, expected=150.0), 1, signals=["tail"])
    # an older study without streams and with a subset of the signals is refused
    no_stream = stored(small)
    for entry in no_stream["signals"].values():
        del entry["stream"]
    with pytest.raises(InputError, match="stream"):
        extend_signals(no_stream, bench, 1, workers=1)
    tampered = stored(small)
    tampered["signals"]["bulk"]["t"][0][0] += 0.5
    calls = []
    with pytest.raises(InputError, match="bulk toy 0 no longer reproduces"):
        extend_study(tampered, bench, n_null=2, n_signal=1, workers=1,
                     progress=lambda *a: calls.append(a))
    assert calls == []  # refused before the new null toys ran
    failed = json.loads(json.dumps(legacy))
    failed["signals"]["tail"]["n_requested"] = 4  # one toy failed, which one unknown
    with pytest.raises(InputError, match="partly failed"):
        extend_signals(failed, bench, 1, signals=["tail"], workers=1)
    kept = extend_signals(failed, bench, 1, signals=["tail"], workers=1, verify=0)
    assert "ok_indices" not in kept["signals"]["tail"]
    assert kept["signals"]["tail"]["n_requested"] == 5


def test_extend_signals_of_an_older_study_with_every_signal():
    """Studies written before ``stream`` was recorded drew the benchmark's signals in
    its own order; a file with every signal is extended in that order."""
    bench = Exp1DScaled(n_ref=2000, expected=100.0, n_signal_scale=3.0)
    opts = dict(n_null=6, sigmas=[1.0], n_centers=40, ideal_toys=0, baselines=[], seed=3,
                workers=1)
    small = json.loads(json.dumps(power_study(bench, n_signal=1, **opts), sort_keys=True))
    big = power_study(bench, n_signal=2, **opts)
    del small["n_signal_scale"]
    for entry in small["signals"].values():
        del entry["stream"], entry["ok_indices"]
    ext = extend_signals(small, study_benchmark(small), 1, workers=1)
    for sig in bench.signals():
        assert ext["signals"][sig]["t"] == big["signals"][sig]["t"], sig


@pytest.mark.parametrize("sigmas", [(0.5, 2.0), (0.7,)])
def test_extend_null_equals_the_larger_study(sigmas):
    bench = Exp1DScaled(n_ref=3000, expected=150.0, n_signal_scale=3.0)
    opts = dict(signals=["tail"], n_signal=6, sigmas=sigmas, n_centers=60,
                ideal_toys=0, baselines=["ks_bonferroni"], seed=7, workers=1)
    small = power_study(bench, n_null=8, **opts)
    big = power_study(bench, n_null=13, **opts)
    ext = extend_null(json.loads(json.dumps(small)), bench, 5, workers=1)
    assert ext["null"]["t"] == big["null"]["t"]
    assert ext["null"]["ok_indices"] == big["null"]["ok_indices"] == list(range(13))
    assert ext["null"]["extra"] == big["null"]["extra"]
    assert ext["null"]["n_requested"] == 13 and ext["null"]["n_ok"] == big["null"]["n_ok"]
    assert ext["null"]["chi2_dof"] == big["null"]["chi2_dof"]
    assert ext["signals"]["tail"]["tests"] == big["signals"]["tail"]["tests"]
    assert ext["null"]["extensions"][0]["n_added"] == 5
    assert small["null"]["n_requested"] == 8  # the input is not modified
    # one memory budget for the study, stored and reused by its extensions
    import torch

    from nplearn._torch_utils import default_memory_budget

    assert small["memory_budget"] == default_memory_budget(torch.device("cpu"))
    assert ext["memory_budget"] == small["memory_budget"]
    seen = []
    real_run = __import__("nplearn.power", fromlist=["run_toys"]).run_toys

    def spy(engine, *a, **k):
        seen.append(engine.learner_params["memory_budget"])
        return real_run(engine, *a, **k)

    mp = pytest.MonkeyPatch()
    mp.setattr("nplearn.power.run_toys", spy)
    try:
        extend_null({**json.loads(json.dumps(small)), "memory_budget": 12345}, bench, 1,
                    workers=1)
    finally:
        mp.undo()
    assert seen == [12345]
    with pytest.raises(InputError, match="does not match"):
        extend_null(small, Exp1DScaled(n_ref=2000, expected=150.0), 5)
    for bad in (dict(n_more=0), dict(n_more=2.5), dict(n_more=2, verify=-1)):
        with pytest.raises(InputError, match=r"n_more|verify"):
            extend_null(small, bench, **bad)
    # a study whose first null toy is not what the current code computes is refused,
    # whether a kernel statistic or a comparison test changed
    for field in ("t", "extra"):
        tampered = json.loads(json.dumps(small))
        if field == "t":
            tampered["null"]["t"][0][-1] += 0.5
        else:
            tampered["null"]["extra"]["ks_bonferroni"][0] += 0.5
        with pytest.raises(InputError, match="no longer reproduces"):
            extend_null(tampered, bench, 2, workers=1)


def test_shape_only_removes_exactly_the_count_term():
    """With one very wide kernel width the fit can only move the normalisation, so the
    extended t minus the shape-only t of the same toy is the Poisson count
    likelihood ratio 2[N_D log(N_D/N(R)) - (N_D - N(R))] (the shape part that a
    width of 30 still has is common to both)."""
    import math

    from nplearn.power import _engine

    bench = Exp1DScaled(n_ref=4000, expected=200.0)
    params = {"sigma": 30.0, "n_centers": 50, "lam": 1e-6, "schedule": "converged"}
    ext, shape = (_engine(params, bench, "none", 0, 3, (30.0,), (), None, s)
                  for s in (False, True))
    diffs = []
    for i in range(8):
        r_ext, r_shape = ext.run(i), shape.run(i)
        n = r_ext.n_data
        assert r_shape.n_data == n  # the same data set: only the reference weight differs
        count_lr = 2.0 * (n * math.log(n / 200.0) - (n - 200.0))
        assert r_ext.t - r_shape.t == pytest.approx(count_lr, abs=0.02)
        diffs.append(count_lr)
    assert max(diffs) > 1.0  # the check is not vacuous: some toy is far from N(R)


def test_shape_only_study_is_recorded_and_extended_alike():
    bench = Exp1DScaled(n_ref=3000, expected=150.0, n_signal_scale=3.0)
    opts = dict(signals=["tail"], n_signal=4, sigmas=[0.5, 2.0], n_centers=60,
                ideal_toys=0, baselines=[], seed=5, workers=1)
    plain = power_study(bench, n_null=6, **opts)
    small = power_study(bench, n_null=6, shape_only=True, **opts)
    big = power_study(bench, n_null=9, shape_only=True, **opts)
    assert small["shape_only"] is True and plain["shape_only"] is False
    assert small["null"]["t"] != plain["null"]["t"]
    ext = extend_study(json.loads(json.dumps(small)), bench, n_null=3, workers=1)
    assert ext["null"]["t"] == big["null"]["t"]
    # a study stored before the option existed used N(R), and is extended with N(R)
    old = json.loads(json.dumps(plain))
    del old["shape_only"]
    ext_old = extend_study(old, bench, n_null=3, workers=1)
    assert ext_old["null"]["t"] == power_study(bench, n_null=9, **opts)["null"]["t"]
    with pytest.raises(InputError, match="shape_only"):
        power_study(bench, n_null=6, shape_only="yes", **opts)


def test_cli_power_shape_only(tmp_path, capsys):
    out = tmp_path / "shape.json"
    assert main(["power", "--signals", "tail", "--null-toys", "6", "--signal-toys", "2",
                 "--n-ref", "3000", "--expected", "150", "--sigma", "1", "--centers", "40",
                 "--ideal-toys", "0", "--baselines", "none", "--workers", "1",
                 "--shape-only", "--json", str(out), "-q"]) == 0
    assert json.loads(out.read_text())["shape_only"] is True
    assert "shape-only" in capsys.readouterr().out


def test_ideal_power_at_the_sizes_of_the_null_toys():
    """The ideal test reports its power at the exact thresholds and at the sizes the
    other tests use with the study's null toys (k / (n + 1)); the latter follows an
    extension of the null toys, and a stored ideal entry is reproduced from the seed
    and the signal's stream."""
    from nplearn.benchmarks.suite import ideal_power
    from nplearn.power import extend_null, ideal_power_row, refresh_ideal, threshold_size

    bench = Exp1DScaled(n_ref=2000, expected=100.0, n_signal_scale=3.0)
    res = power_study(bench, signals=["tail", "bulk"], n_null=6, n_signal=2, sigmas=[1.0],
                      n_centers=40, ideal_toys=300, baselines=[], seed=4, workers=1)
    for j, sig in enumerate(["tail", "bulk"]):
        ideal = res["signals"][sig]["ideal"]
        assert res["signals"][sig]["stream"] == j + 1 and ideal["n_null"] == 6
        # with 6 null toys Z >= 2 needs p <= 0 (unreachable), as for the other tests
        assert ideal["sizes"] == {"2": threshold_size(6, 2.0)["size"], "3": 0.0}
        assert ideal["power_at_size"] == {"2": 0.0, "3": 0.0}
        direct = ideal_power(bench, sig, np.random.default_rng(
            np.random.SeedSequence(4, spawn_key=(5, j))), n_toys=300)
        assert direct["power"] == ideal["power"] and ideal["power"]["2"] > 0.5
        assert ideal_power_row(ideal, 6) is ideal["power_at_size"]
        assert ideal_power_row(ideal, 7) is ideal["power"]
    assert "ideal (Neyman-Pearson), at the same sizes" in format_power_table(res)
    # one signal without the matched powers: the whole row falls back to exact thresholds
    mixed = json.loads(json.dumps(res))
    del mixed["signals"]["tail"]["ideal"]["power_at_size"]
    row = next(ln for ln in format_power_table(mixed).splitlines() if "ideal" in ln)
    bulk = res["signals"]["bulk"]["ideal"]["power"]
    assert "exact thresholds" in row and f"{bulk['2']:.3f} / {bulk['3']:.3f}" in row
    stored = json.loads(json.dumps(res, sort_keys=True))
    for entry in stored["signals"].values():
        del entry["ideal"]["power_at_size"], entry["ideal"]["sizes"], entry["ideal"]["n_null"]
    assert refresh_ideal(stored, bench)["signals"] == json.loads(
        json.dumps(res["signals"], sort_keys=True))
    stored["signals"]["bulk"]["ideal"]["power"]["2"] -= 0.01
    with pytest.raises(InputError, match="ideal test of bulk no longer reproduces"):
        refresh_ideal(stored, bench)
    # 60 null toys: Z >= 2 is p <= 1/61; the matched power moves with the null toys
    ext = extend_null(res, bench, 54, workers=1)
    ideal = ext["signals"]["tail"]["ideal"]
    assert ideal["n_null"] == 60 and ideal["sizes"]["2"] == pytest.approx(1 / 61)
    assert ideal["power"] == res["signals"]["tail"]["ideal"]["power"]
    assert 0.0 < ideal["power_at_size"]["2"] <= ideal["power"]["2"]


def test_extension_keeps_the_combination_widths():
    """Combinations over a subset of the widths (merged studies), on a signal whose
    powers are not saturated: recombining over one width gives that width's own test,
    the temperature moves the smooth combinations, and an extension keeps combining the
    subset (its numbers computed here from the kept statistics, column by hand)."""
    from nplearn.multitest import combined_pvalues

    bench = Exp1DScaled(n_ref=2000, expected=100.0)
    res = power_study(bench, signals=["tail"], n_null=8, n_signal=6, sigmas=[0.5, 2.0],
                      n_centers=40, ideal_toys=0, baselines=[], seed=2, workers=1)
    tests = res["signals"]["tail"]["tests"]
    assert tests["sigma=2"]["median_z"] != tests["sigma=0.5"]["median_z"]  # not saturated
    sub = recombine({**json.loads(json.dumps(res)), "combination_widths": [2.0]})
    one = sub["signals"]["tail"]["tests"]
    assert one["min-p"] == one["sigma=2"] and one["min-p"] != tests["min-p"]
    hot = recombine(res, temperature=50.0)["signals"]["tail"]["tests"]
    assert hot["fused-p"] != tests["fused-p"] and hot["min-p"] == tests["min-p"]
    got = extend_null(sub, bench, 3, workers=1)
    assert got["combination_widths"] == [2.0]
    T0 = np.asarray(got["null"]["t"])[:, [1]]
    T1 = np.asarray(got["signals"]["tail"]["t"])[:, [1]]
    for m in ("min-p", "product-p", "fused-t"):
        p = combined_pvalues(T1, T0, m)[1]
        assert got["signals"]["tail"]["tests"][m] == power_summary(p, (2.0, 3.0), len(T0)), m
    full = extend_null(res, bench, 3, workers=1)  # all widths: other numbers
    assert got["signals"]["tail"]["tests"]["product-p"] != \
        full["signals"]["tail"]["tests"]["product-p"]


def test_median_z_at_the_floor_is_a_bound():
    """More than half of the signal toys beyond every null toy: the median Z is the
    floor Z(1/(n + 1)), flagged and printed as a lower bound."""
    from nplearn.power import median_z_label

    n = 1000
    p = np.r_[np.full(200, 1 / 1001), np.linspace(0.002, 0.5, 100)]
    out = power_summary(p, (3.0,), n_null=n)
    assert out["median_z"] == pytest.approx(sps.norm.isf(1 / 1001))
    assert out["median_z_bound"] and out["z84_bound"] and not out["z16_bound"]
    assert median_z_label(out, n) == f"≥{out['median_z']:.2f}"
    # half or fewer at the floor: an ordinary median
    low = power_summary(np.r_[np.full(100, 1 / 1001), np.linspace(0.002, 0.5, 200)],
                        (3.0,), n_null=n)
    assert not low["median_z_bound"] and low["z84_bound"]
    assert median_z_label(low, n) == f"{low['median_z']:.2f}"
    # entries written before the flag existed are judged from n_null
    old = {k: v for k, v in out.items() if not k.endswith("_bound")}
    assert median_z_label(old, n).startswith("≥")
    assert median_z_label(old, None) == f"{out['median_z']:.2f}"


def test_null_extension_keeps_an_ideal_entry_it_cannot_refresh():
    """A study that does not record its signal streams and holds a subset of the
    benchmark's signals can still get null toys (as before the ideal refresh
    existed): its ideal entry is kept. A stored infinite median Z ("inf" in JSON) is
    reproduced, not reported as a changed generator."""
    from nplearn.io import to_jsonable
    from nplearn.power import refresh_ideal

    bench = Exp1DScaled(n_ref=2000, expected=100.0, n_signal_scale=3.0)
    res = power_study(bench, signals=["tail"], n_null=5, n_signal=1, sigmas=[1.0],
                      n_centers=40, ideal_toys=200, baselines=[], seed=4, workers=1)
    old = json.loads(json.dumps(to_jsonable(res)))
    del old["signals"]["tail"]["stream"]
    with pytest.raises(InputError, match="stream of tail is unknown"):
        refresh_ideal(old, bench)
    ext = extend_null(old, bench, 1, workers=1)
    assert ext["null"]["n_ok"] == 6
    assert ext["signals"]["tail"]["ideal"] == old["signals"]["tail"]["ideal"]
    table = format_power_table(ext)
    assert "ideal (Neyman-Pearson), exact thresholds" in table
    # a signal strong enough that every ideal p-value underflows: median Z = inf
    strong = Exp1DScaled(n_ref=2000, expected=100.0, n_signal_scale=30.0)
    res = power_study(strong, signals=["bulk"], n_null=5, n_signal=1, sigmas=[1.0],
                      n_centers=40, ideal_toys=100, baselines=[], seed=4, workers=1)
    assert res["signals"]["bulk"]["ideal"]["median_z"] == math.inf
    stored = json.loads(json.dumps(to_jsonable(res)))
    assert stored["signals"]["bulk"]["ideal"]["median_z"] == "inf"
    assert refresh_ideal(stored, strong)["signals"]["bulk"]["ideal"]["median_z"] == math.inf


def test_a_comparison_test_refusing_a_toy_counts_against_detection():
    # at N(R) = 1.5 many toys have fewer than 2 data events, which MMD refuses: the
    # study goes on, that toy's MMD is missing, and missing values count against the
    # signal (a null toy's exceeds every statistic, a signal toy's is not detected)
    bench = Exp1DScaled(n_ref=2000, expected=1.5, n_signal_scale=0.3)
    res = power_study(bench, signals=["tail"], n_null=12, n_signal=6, sigmas=[1.0],
                      n_centers=20, ideal_toys=0, baselines=["mmd", "ks_bonferroni"],
                      workers=1, seed=1)
    null_mmd = np.asarray(res["null"]["extra"]["mmd"], dtype=float)
    sig_mmd = np.asarray(res["signals"]["tail"]["extra"]["mmd"], dtype=float)
    assert np.isnan(null_mmd).any() and np.isfinite(null_mmd).any()
    # KS refuses only toys without a data event, MMD also those with one
    ks = np.isnan(np.asarray(res["null"]["extra"]["ks_bonferroni"], dtype=float))
    assert np.all(ks <= np.isnan(null_mmd)) and ks.sum() < np.isnan(null_mmd).sum()
    from nplearn.multitest import empirical_p

    p, _ = empirical_p(sig_mmd, null_mmd)
    assert np.all(p[np.isnan(sig_mmd)] == 1.0)
    assert np.all(p[~np.isnan(sig_mmd)] >= (1 + np.isnan(null_mmd).sum()) / 13)
    # the study extends, also from its JSON (missing values are null there), and its
    # stored toys, missing values included, are verified as reproduced
    from nplearn.io import to_jsonable

    stored = json.loads(json.dumps(to_jsonable(res)))
    first_missing = int(np.flatnonzero(np.isnan(null_mmd))[0])
    ext = extend_null(stored, bench, 2, workers=1, verify=first_missing + 1)
    assert ext["null"]["n_requested"] == 14


def test_empirical_p_counts_missing_values_against_detection():
    from nplearn.multitest import empirical_p

    p, n_ge = empirical_p(np.array([np.nan, 5.0, 0.5]), np.array([1.0, 2.0, np.nan]))
    assert n_ge.tolist() == [3, 1, 3] and p.tolist() == [1.0, 0.5, 1.0]


def test_extending_an_edited_study_is_refused():
    bench = Exp1DScaled(n_ref=2000, expected=100.0)
    res = power_study(bench, signals=["tail"], n_null=6, n_signal=2, sigmas=[0.5, 2.0],
                      n_centers=20, ideal_toys=0, baselines=["ks_bonferroni"], workers=1)
    for edit, match in [
        (lambda r: r.update(sigmas=[0.5]), r"one row of 1 value"),
        (lambda r: r["null"].update(n_ok=7), "counts 7 successful toys but stores 6"),
        (lambda r: r["signals"]["tail"]["extra"].update(ks_bonferroni=[1.0]),
         "signal tail entry stores no value per toy for ks_bonferroni"),
    ]:
        bad = json.loads(json.dumps(res))
        edit(bad)
        with pytest.raises(InputError, match=match):
            extend_null(bad, bench, 1, workers=1)


def test_table_rows_in_reading_order_after_a_json_round_trip():
    # JSON files are written with sorted keys: the table puts the widths from the
    # narrowest, then the combinations, then the comparison tests
    entry = {"power": {"2": {"value": 0.5}, "3": {"value": 0.1}}, "median_z": 1.0}
    names = ["binned_chi2", "energy", "fused-p", "min-p", "min-p, widths 0.3-4.5 only",
             "product-p", "sigma=0.3", "sigma=1.4", "sigma=10", "sigma=2.3"]
    result = {"z_thresholds": [2.0, 3.0], "null": {"n_ok": 0}, "signals": {
        name: {"description": name, "stream": stream, "tests": dict.fromkeys(names, entry)}
        for name, stream in (("bulk", 3), ("tail", 1), ("wide", 2))}}
    rows = [ln.split("|")[1].strip() for ln in format_power_table(result).splitlines()
            if ln.startswith("| ") and not ln.startswith("| test")]
    assert rows == ["sigma=0.3", "sigma=1.4", "sigma=2.3", "sigma=10", "min-p", "fused-p",
                    "product-p", "min-p, widths 0.3-4.5 only", "binned_chi2", "energy"]
    head = next(ln for ln in format_power_table(result).splitlines() if ln.startswith("| test"))
    assert head.index("bulk") < head.index("tail") < head.index("wide")
