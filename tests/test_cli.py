"""The nplearn command: test, bench exp1d, demo."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from nplearn import NPLMConfig, __version__
from nplearn.cli import main


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
