"""The nplearn command: test, bench exp1d, demo."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from nplearn import NPLMConfig, __version__
from nplearn.cli import main
from nplearn.errors import InputError

from conftest import group_states, kill_group


@pytest.fixture
def samples(tmp_path):
    rng = np.random.default_rng(8)
    ref = rng.normal(size=(4000, 3))
    data = rng.normal(size=(80, 3))
    np.save(tmp_path / "ref.npy", ref)
    header = "pt,eta,phi"
    np.savetxt(tmp_path / "data.csv", data, delimiter=",", header=header, comments="")
    np.savetxt(tmp_path / "ref.csv", ref, delimiter=",", header=header, comments="")
    return tmp_path


def test_cli_test_npy_and_csv_writes_sorted_json(samples, capsys):
    out = samples / "res.json"
    code = main(["test", "--reference", str(samples / "ref.csv"), "--data",
                 str(samples / "data.csv"), "--toys", "6", "--workers", "1", "--seed", "3",
                 "--centers", "200", "--json", str(out), "-q"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "t_obs" in printed and "reported" in printed
    text = out.read_text()
    d = json.loads(text)
    assert list(d) == sorted(d)  # sorted keys
    assert d["provenance"]["nplearn"] == __version__
    assert d["config"]["n_toys"] == 6 and d["config"]["seed"] == 3
    assert d["provenance"]["inputs"]["data"]["columns"] == ["pt", "eta", "phi"]
    assert len(d["provenance"]["inputs"]["reference"]["sha256"]) == 64
    assert len(d["t_null"]) == 6 and np.isfinite(d["t_obs"])
    assert d["z_method"] in ("empirical", "chi2")
    assert d["fit"]["converged"] is True
    # the embedded config rebuilds the run's options
    assert NPLMConfig.from_dict(d["config"]).n_centers == 200


def test_cli_column_selection_and_mismatch(samples, capsys):
    code = main(["test", "--reference", str(samples / "ref.npy"), "--data",
                 str(samples / "data.csv"), "--toys", "2", "--workers", "1", "--columns",
                 "0,1", "-q"])
    capsys.readouterr()
    assert code == 0
    code = main(["test", "--reference", str(samples / "ref.csv"), "--data",
                 str(samples / "data.csv"), "--columns", "pt,mass", "--workers", "1"])
    assert code == 2 and "no column named 'mass'" in capsys.readouterr().err


def test_cli_bench_exp1d_small(tmp_path, capsys):
    out = tmp_path / "b.json"
    code = main(["bench", "exp1d", "--signal", "bulk", "--toys", "3", "--null-toys", "6",
                 "--n-ref", "20000", "--expected", "200", "--centers", "300", "--lam", "1e-8",
                 "--ideal-toys", "300", "--workers", "1", "--json", str(out), "-q",
                 "--memory-budget", "0.5"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "null toys" in printed and "bulk signal toys" in printed
    assert "ideal (Neyman-Pearson) median Z" in printed
    d = json.loads(out.read_text())
    assert len(d["null_toys"]) == 6 and len(d["signal_toys"]) == 3
    assert d["config"]["memory_budget"] == 2**29  # --memory-budget reaches the fits
    assert d["signal_summary"]["published"] == {"kernel": 2.8, "ideal": 4.1}
    # a 90-event bump on 200 expected events stands far above the null
    assert np.median([t["t"] for t in d["signal_toys"]]) > max(t["t"] for t in d["null_toys"])
    assert d["signal_summary"]["median_z_chi2"] > 3


def test_cli_demo_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["demo", "--toys", "4", "--workers", "1", "-q"])
    printed = capsys.readouterr().out
    reported = [ln for ln in printed.splitlines() if ln.startswith("  reported  ")]
    assert code == 0 and len(reported) == 1
    d = json.loads((tmp_path / "nplearn-demo.json").read_text())
    # 4 toys cannot reach this data set: the reported value is a bound, and says so
    assert d["p_is_bound"] and "Z >= " in reported[0] and "a bound" in reported[0]
    assert d["t_obs"] > 15  # the bump is strong in this demo data set


def test_console_script_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nplearn.cli", "--version"], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0 and __version__ in r.stdout
    r = subprocess.run([sys.executable, "-m", "nplearn.cli", "test", "--reference",
                        str(tmp_path / "missing.npy"), "--data", str(tmp_path / "x.npy")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"nplearn: error: {tmp_path / 'missing.npy'}: file not found"]


@pytest.mark.parametrize("command", ["test", "bench", "power", "toys", "merge", "plot", "demo"])
def test_every_help_text_renders(command, capsys):
    # argparse %-formats argument help but prints descriptions as written: a "%%"
    # meant for one shows up doubled in the other
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert f"nplearn {command}" in text and "%%" not in text and "%(" not in text


def test_bench_help_states_the_benchmark_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "exp1d", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default 0.3)" in text and "(default 3000)" in text and "1e-10" in text
    assert "90th percentile" not in text


def test_combine_needs_several_widths(samples, capsys):
    args = ["test", "--reference", str(samples / "ref.npy"), "--data",
            str(samples / "data.csv"), "--toys", "2", "--workers", "1", "--centers", "50",
            "-q"]
    assert main([*args, "--combine", "fused-t"]) == 2
    assert "--combine choose how several kernel widths" in capsys.readouterr().err
    assert main([*args, "--sigma", "0.5,1.0", "--combine", "fused-t"]) == 0


def test_cli_refuses_to_write_over_an_input_or_rerun_changed_inputs(samples, capsys):
    """--json naming an input file is refused before any work (the input is intact);
    a result file rerun (--config result.json) or replotted on input files that changed
    since it was written is refused, naming the file; an explicit --data is the user's
    choice and runs."""
    ref, data, out = samples / "ref.csv", samples / "data.csv", samples / "res.json"
    before = data.read_bytes()
    common = ["--toys", "3", "--workers", "1", "--centers", "100", "-q"]
    code = main(["test", "--reference", str(ref), "--data", str(data), *common,
                 "--json", str(data)])
    assert code == 2 and data.read_bytes() == before
    assert "is an input of this command" in capsys.readouterr().err
    assert main(["test", "--reference", str(ref), "--data", str(data), *common,
                 "--json", str(out)]) == 0
    # unchanged inputs: the rerun reproduces the result
    assert main(["test", "--config", str(out), "-q", "--json", str(samples / "a.json")]) == 0
    assert json.loads((samples / "a.json").read_text())["t_obs"] == \
        json.loads(out.read_text())["t_obs"]
    # the rerun takes the budget the run resolved (its machine's), so another machine
    # stores the features alike and reproduces the result bit for bit
    assert json.loads((samples / "a.json").read_text())["config"]["memory_budget"] == \
        json.loads(out.read_text())["provenance"]["execution"]["memory_budget"]
    capsys.readouterr()
    rows = before.decode().splitlines()
    data.write_text("\n".join(rows[:-1]) + "\n")  # one event fewer
    assert main(["test", "--config", str(out), "-q", "--json", str(samples / "b.json")]) == 2
    err = capsys.readouterr().err
    assert "data.csv: changed since" in err and "--data" in err
    assert not (samples / "b.json").exists()
    assert main(["test", "--config", str(out), "--data", str(data), "-q",
                 "--json", str(samples / "c.json")]) == 0
    capsys.readouterr()
    assert main(["plot", str(out), "--out", str(samples / "figs")]) == 2
    assert "--no-refit" in capsys.readouterr().err
    assert main(["plot", str(out), "--out", str(samples / "figs"), "--no-refit"]) == 0


def test_sigterm_while_workers_start(tmp_path):
    """SIGTERM while the pool is still starting a worker (a spawned worker reads the
    pickled engine, which blocks the submission until its imports are done): the run
    stops at once, and no half-started worker prints a traceback about truncated data
    (it did in every try; the toys also ran on until the submissions ended)."""
    import glob
    import signal
    import time

    rng = np.random.default_rng(0)
    np.save(tmp_path / "ref.npy", rng.normal(size=(20000, 2)))
    np.save(tmp_path / "dat.npy", rng.normal(size=(500, 2)))
    (tmp_path / "run.toml").write_text(
        'reference = "ref.npy"\ndata = "dat.npy"\nexpected = 500\nn_toys = 600\n'
        'n_centers = 100\nsigma = 1.0\nseed = 7\n')
    proc = subprocess.Popen([sys.executable, "-m", "nplearn", "toys", "--config",
                             str(tmp_path / "run.toml"), "--toys", "0:600", "--out",
                             str(tmp_path / "sh"), "-q", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(glob.glob(str(tmp_path / "sh" / "*" / "toy_*"))) < 3 and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err
    assert "Traceback" not in err, err
    assert len(glob.glob(str(tmp_path / "sh" / "*" / "toy_*"))) < 600


def test_columns_named_in_one_file_only_are_matched_by_position(tmp_path, capsys):
    rng = np.random.default_rng(6)
    np.savetxt(tmp_path / "ref.csv", rng.normal(size=(2000, 2)), delimiter=",",
               header="y,x", comments="")
    np.save(tmp_path / "dat.npy", rng.normal(size=(100, 2)))
    assert main(["test", "--reference", str(tmp_path / "ref.csv"), "--data",
                 str(tmp_path / "dat.npy"), "--toys", "0", "--centers", "50", "-q"]) == 0
    assert ("dat.npy has no column names, so its columns are matched to those of "
            f"{tmp_path / 'ref.csv'} (y, x) by position") in capsys.readouterr().err


def test_a_container_changed_elsewhere_still_reruns(tmp_path, capsys):
    """The recorded SHA-256 covers a whole .npz (or ROOT) file: an array added to it
    changes the file but not the events read. A rerun and a replot then go ahead with
    a note (the events and weights read are the recorded ones); a changed array used
    by the test is still refused."""
    rng = np.random.default_rng(5)
    ref, dat = rng.normal(size=(3000, 2)), rng.normal(size=(300, 2)) + 0.2
    w = rng.uniform(0.5, 1.5, size=3000)
    box = tmp_path / "box.npz"
    np.savez(box, ref=ref, dat=dat, w=w)
    out = tmp_path / "r.json"
    assert main(["test", "--reference", f"{box}:ref", "--data", f"{box}:dat", "--ref-weights",
                 f"{box}:w", "--expected", "300", "--toys", "3", "--workers", "1",
                 "--centers", "100", "-q", "--json", str(out)]) == 0
    first = json.loads(out.read_text())
    np.savez(box, ref=ref, dat=dat, w=w, unrelated=np.arange(5))  # the file changes
    capsys.readouterr()
    assert main(["test", "--config", str(out), "-q", "--json", str(tmp_path / "a.json")]) == 0
    err = capsys.readouterr().err
    assert "changed since" in err and "the events and weights read are the recorded" in err
    again = json.loads((tmp_path / "a.json").read_text())
    assert again["t_obs"] == first["t_obs"] and again["t_null"] == first["t_null"]
    assert main(["plot", str(out), "--out", str(tmp_path / "figs")]) == 0
    # the weights, the data or the reference read from it change: refused
    for changed in ({"w": w[::-1]}, {"dat": dat[1:]}, {"ref": ref + 1e-9}):
        np.savez(box, **{"ref": ref, "dat": dat, "w": w, **changed})
        capsys.readouterr()
        assert main(["test", "--config", str(out), "-q", "--json",
                     str(tmp_path / "b.json")]) == 2
        assert "and so do the events read from it" in capsys.readouterr().err
        assert main(["plot", str(out), "--out", str(tmp_path / "figs")]) == 2
        assert "--no-refit" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()
    # a changed file that no longer reads alike: the change is reported, not its effect
    np.savez(box, ref=ref, dat=np.c_[dat, dat[:, :1]], w=w)
    capsys.readouterr()
    assert main(["test", "--config", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "changed since" in err and "and reading it now fails: " in err and \
        "has 3 feature column(s)" in err
    assert main(["plot", str(out), "--out", str(tmp_path / "figs")]) == 2
    err = capsys.readouterr().err
    assert "changed since" in err and "--no-refit" in err


def test_sigterm_stops_the_workers_at_once(tmp_path):
    """`kill` (SIGTERM) of a run with worker processes: exit code 143 within seconds,
    no worker left running (before, the workers ran on as orphans), and a message
    saying that finished toys are kept only with --checkpoint."""
    import signal
    import time

    rng = np.random.default_rng(2)
    np.save(tmp_path / "ref.npy", rng.normal(size=(20000, 2)))
    np.save(tmp_path / "dat.npy", rng.normal(size=(1000, 2)))
    cmd = [sys.executable, "-m", "nplearn", "test", "--reference", str(tmp_path / "ref.npy"),
           "--data", str(tmp_path / "dat.npy"), "--expected", "1000", "--toys", "100000",
           "--centers", "500", "--workers", "2", "--json", str(tmp_path / "r.json")]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # until the toys run (the progress bar shows)
            time.sleep(0.5)
            if proc.poll() is not None or (tmp_path / "r.json").exists():
                break
            kids = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()
            if len(kids) >= 3:  # the main process and two workers
                break
        time.sleep(2)
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143 and time.time() - t0 < 30
        assert "terminated" in err and "--checkpoint" in err
        assert not (tmp_path / "r.json").exists()
        time.sleep(1)
        # nothing of the run's process group is left running (exited workers may stay
        # zombies where the container's init does not reap orphans)
        states = group_states(proc.pid)
        assert all(st.startswith("Z") for st in states), states
    finally:
        kill_group(proc.pid)


def test_summary_states_weights_widths_in_input_units_and_negative_toys(tmp_path, capsys):
    """The summary gives the weighted reference's effective sample size (and warns,
    also in the JSON, when resampled toys only approximate pseudo-data), the kernel
    width in each column's own units, and how many null toys have t < 0."""
    import dataclasses

    rng = np.random.default_rng(4)
    ref = np.c_[rng.exponential(300.0, size=3000) + 100.0, rng.normal(50.0, 10.0, size=3000)]
    w = rng.exponential(size=3000) ** 2  # heavy weights: a small effective sample (~500)
    np.savetxt(tmp_path / "ref.csv", np.c_[ref, w], delimiter=",", header="mjj,pt,w",
               comments="")
    np.savetxt(tmp_path / "dat.csv", ref[:300] + 1.0, delimiter=",", header="mjj,pt",
               comments="")
    out = tmp_path / "r.json"
    assert main(["test", "--reference", str(tmp_path / "ref.csv"), "--data",
                 str(tmp_path / "dat.csv"), "--columns", "mjj,pt", "--ref-weight-branch",
                 "w", "--expected", "300", "--toys", "4", "--workers", "1", "--centers",
                 "100", "-q", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    d = json.loads(out.read_text())
    ess = w.sum() ** 2 / (w**2).sum()
    assert d["reference_weights"]["effective_sample_size"] == pytest.approx(ess)
    assert d["reference_weights"]["resampling_approximate"] is bool(300 > 0.1 * ess)
    assert f"effective sample size {ess:.0f} of 3000 events" in printed
    assert "WARNING: N(R) = 300 is not small against" in printed
    sigma, scale = d["hyperparameters"]["sigma"], d["hyperparameters"]["standardizer"]["scale"]
    assert (f"sigma in input units      mjj {sigma * scale[0]:.4g}, "
            f"pt {sigma * scale[1]:.4g}") in printed
    # the null toys' negative statistics are counted (none here)
    from nplearn import nplm_test

    res = nplm_test(ref, ref[:300] + 1.0, n_toys=4, expected=300.0, n_centers=100)
    assert "with t < 0" not in res.summary() and res.reference_weights is None
    assert "sigma in input units      x0 " in res.summary()
    tampered = dataclasses.replace(res, t_null=np.array([3.0, -12.5, 7.0, -0.5]))
    assert "4 ok; 2 with t < 0 (down to -12.5" in tampered.summary()
    # per-feature messages name the columns as read (by index without them)
    outside = {"n_events": 1, "below": [0, 0], "above": [1, 0]}
    assert "(x0: 0 below, 1 above)" in dataclasses.replace(
        res, data_outside_reference=outside).summary()
    named = dataclasses.replace(res, data_outside_reference=outside, provenance={
        "inputs": {"reference": {"columns": ["mjj", "pt"]}}}).summary()
    assert "(mjj: 0 below, 1 above)" in named and "sigma in input units      mjj " in named
    # (nearly) every centre kept (r >= 0.9 M): the number of centres limits the fit,
    # and the note says at which widths; a rank well below M gets no note
    assert res.fit["rank"] < 90 and "kept rank r close to M" not in res.summary()
    for r, noted in ((89, False), (90, True), (100, True)):
        text = dataclasses.replace(res, fit={**res.fit, "rank": r}).summary()
        assert ("NOTE: kept rank r close to M = 100: (nearly) every centre" in text) == noted
    narrow = nplm_test(ref, ref[:300] + 1.0, n_toys=0, expected=300.0, n_centers=40,
                       sigmas=[0.05, 5.0])
    assert narrow.widths[0]["fit"]["rank"] == 40
    assert narrow.widths[1]["fit"]["rank"] < 36
    assert "kept rank r close to M = 40 at sigma = 0.05: (nearly)" in narrow.summary()
    # fewer events than the M asked: every event is a centre, and the summary says so
    few = nplm_test(ref[:200], ref[:50], n_toys=0, expected=50.0, n_centers=5000)
    assert "centres M / kept rank r   250 (every event; 5000 asked) / " in few.summary()
    # ... and then a full rank is the kernel itself, not a limit of M: no note
    assert "kept rank r close to M" not in dataclasses.replace(
        few, fit={**few.fit, "rank": 250}).summary()
    # one width takes a number; a list gets pointed to the several-width option
    with pytest.raises(InputError, match=r"pass several as sigmas=\[0.1, 0.3\]"):
        nplm_test(ref, ref[:300], n_toys=0, expected=300.0, sigma=[0.1, 0.3])


def test_review_of_the_cli_fixes(tmp_path, capsys):
    """Second review of the usability fixes: the changed-input advice fits the command
    (toys/merge take no --data), a vanished weight file is a clear input error in
    `plot`, no resampling warning without toys, the width's labels come from the file's
    header, and the no_standardize hint says the value flips."""
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(2000, 2))
    np.savetxt(tmp_path / "ref.csv", ref, delimiter=",", header="mjj,pt", comments="")
    np.savetxt(tmp_path / "dat.csv", ref[:100] + 0.1, delimiter=",", header="mjj,pt",
               comments="")
    np.save(tmp_path / "w.npy", rng.exponential(size=2000) ** 3)
    out = tmp_path / "r.json"
    args = ["--reference", str(tmp_path / "ref.csv"), "--data", str(tmp_path / "dat.csv"),
            "--centers", "60", "--workers", "1", "-q"]
    assert main(["test", *args, "--toys", "0", "--expected", "100", "--ref-weights",
                 str(tmp_path / "w.npy"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sigma in input units      mjj " in printed and ", pt " in printed
    assert "effective sample size" in printed and "WARNING" not in printed
    assert json.loads(out.read_text())["reference_weights"]["resampling_approximate"] is False
    np.save(tmp_path / "w.npy", rng.exponential(size=2000))  # the weights change
    assert main(["toys", "--config", str(out), "--toys", "0:2", "--out",
                 str(tmp_path / "recs")]) == 2
    err = capsys.readouterr().err
    assert "w.npy: changed since" in err and "write a run configuration" in err
    (tmp_path / "w.npy").unlink()
    assert main(["plot", str(out), "--out", str(tmp_path / "figs")]) == 2
    assert "w.npy" in capsys.readouterr().err
    (tmp_path / "c.toml").write_text('reference = "ref.csv"\ndata = "dat.csv"\n'
                                     "no_standardize = true\n")
    assert main(["test", "--config", str(tmp_path / "c.toml")]) == 2
    assert "no_standardize -> standardize = the opposite value" in capsys.readouterr().err


def test_closed_output_and_ignored_sigterm(tmp_path):
    """`nplearn ... | head`: the files are written, the run ends quietly with 141; a run
    started with SIGTERM ignored (nohup-like) keeps it ignored and completes."""
    import signal
    import time

    rng = np.random.default_rng(6)
    np.save(tmp_path / "ref.npy", rng.normal(size=(3000, 1)))
    np.save(tmp_path / "dat.npy", rng.normal(size=(100, 1)))
    base = [sys.executable, "-m", "nplearn", "test", "--reference", str(tmp_path / "ref.npy"),
            "--data", str(tmp_path / "dat.npy"), "--centers", "50", "--workers", "1", "-q"]
    proc = subprocess.Popen([*base, "--toys", "30", "--json", str(tmp_path / "a.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is printed
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err.decode().strip() == ""
    assert json.loads((tmp_path / "a.json").read_text())["config"]["n_toys"] == 30
    proc = subprocess.Popen([*base, "--toys", "60", "--json", str(tmp_path / "b.json")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and (tmp_path / "b.json").exists(), err.decode()


def test_a_result_folder_moved_with_its_inputs_reruns(samples, tmp_path_factory, capsys):
    # the result records absolute paths: copied elsewhere with its input files, the
    # rerun finds them next to the result file by their SHA-256
    import shutil

    ref, data, out = samples / "ref.csv", samples / "data.csv", samples / "res.json"
    assert main(["test", "--reference", str(ref), "--data", str(data), "--toys", "3",
                 "--workers", "1", "--centers", "100", "-q", "--json", str(out)]) == 0
    moved = tmp_path_factory.mktemp("moved")
    for f in (ref, data, out):
        shutil.copy(f, moved / f.name)
    ref.unlink()
    data.unlink()
    capsys.readouterr()
    assert main(["test", "--config", str(moved / "res.json"), "-q", "--json",
                 str(moved / "again.json")]) == 0
    assert "using " + str(moved / "ref.csv") in capsys.readouterr().err
    assert json.loads((moved / "again.json").read_text())["t_obs"] == \
        json.loads(out.read_text())["t_obs"]
    # nplearn plot finds them too (it drew the calibration only)
    assert main(["plot", str(moved / "res.json"), "--out", str(moved / "figs")]) == 0
    assert "drawing the calibration only" not in capsys.readouterr().err
    # a file of the same name but other content is not taken
    (moved / "data.csv").write_text("pt,eta,phi\n1,2,3\n")
    assert main(["test", "--config", str(moved / "res.json"), "-q"]) == 2
    assert "data.csv: file not found" in capsys.readouterr().err
