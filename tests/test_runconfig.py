"""Run configurations: ``nplearn test --config`` with TOML, YAML and a result JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nplearn.cli import main


@pytest.fixture
def samples(tmp_path, rng):
    np.save(tmp_path / "ref.npy", rng.normal(size=(2000, 2)))
    np.save(tmp_path / "dat.npy", rng.normal(0.2, 1.0, size=(100, 2)))
    return tmp_path


TOML = """
reference = "ref.npy"
data = "dat.npy"
n_toys = 6
n_centers = 50
workers = 1
seed = 3
sigma_percentiles = [20, 90]
combine = "fused-p"
"""


def test_toml_config_equals_command_line(samples):
    (samples / "run.toml").write_text(TOML)
    out_cfg, out_cli = samples / "a.json", samples / "b.json"
    assert main(["test", "--config", str(samples / "run.toml"), "--json", str(out_cfg),
                 "-q"]) == 0
    assert main(["test", "--reference", str(samples / "ref.npy"), "--data",
                 str(samples / "dat.npy"), "--toys", "6", "--centers", "50", "--workers", "1",
                 "--seed", "3", "--sigma-percentiles", "20,90", "--combine", "fused-p",
                 "--json", str(out_cli), "-q"]) == 0
    a, b = json.loads(out_cfg.read_text()), json.loads(out_cli.read_text())
    assert a["t_obs"] == b["t_obs"] and a["t_null_widths"] == b["t_null_widths"]
    assert a["config"] == b["config"] and a["z_method"] == "fused-p"


def test_result_json_reruns_the_test(samples):
    (samples / "run.toml").write_text(TOML)
    first, second = samples / "first.json", samples / "second.json"
    assert main(["test", "--config", str(samples / "run.toml"), "--json", str(first),
                 "-q"]) == 0
    assert main(["test", "--config", str(first), "--json", str(second), "-q"]) == 0
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert a["t_obs"] == b["t_obs"] and a["t_null_widths"] == b["t_null_widths"]
    assert a["run"] == b["run"]


def test_command_line_overrides_the_file(samples):
    (samples / "run.toml").write_text(TOML)
    out = samples / "o.json"
    assert main(["test", "--config", str(samples / "run.toml"), "--toys", "3", "--sigma",
                 "0.7", "--json", str(out), "-q"]) == 0
    d = json.loads(out.read_text())
    assert d["config"]["n_toys"] == 3 and d["config"]["sigma"] == 0.7
    assert d["config"]["sigma_percentiles"] is None and d["config"]["n_centers"] == 50


def test_yaml_config(samples):
    pytest.importorskip("yaml")
    (samples / "run.yaml").write_text("reference: ref.npy\ndata: dat.npy\nn_toys: 2\n"
                                      "n_centers: 40\nworkers: 1\n")
    out = samples / "y.json"
    assert main(["test", "--config", str(samples / "run.yaml"), "--json", str(out),
                 "-q"]) == 0
    assert json.loads(out.read_text())["config"]["n_toys"] == 2


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ('reference = "ref.npy"\ndata = "dat.npy"\nn_toyz = 3\n', ".toml",
         "unknown config key(s): n_toyz"),
        ('reference = "ref.npy"\ndata = \n', ".toml", "not a valid TOML"),
        ('reference = "ref.npy"\ndata = "dat.npy"\nlam = -1\n', ".toml", "lam must be > 0"),
        ('data = "dat.npy"\n', ".toml", "no reference sample"),
        ('{"reference": "ref.npy"', ".json", "not a valid JSON"),
        ("n_toys = 3", ".ini", "unknown config format"),
        # command-line spellings get the config key they meant
        ('reference = "ref.npy"\ndata = "dat.npy"\ntoys = 3\nref-weight-branch = "w"\n',
         ".toml", "(config keys are the Python names: ref-weight-branch -> "
                  "ref_weight_branch; toys -> n_toys)"),
        ('reference = "ref.npy"\ndata = "dat.npy"\ncenters = 300\n', ".toml",
         "got 300; the number of centres is n_centers"),
    ],
)
def test_bad_config_files(samples, capsys, text, suffix, message):
    path = samples / f"bad{suffix}"
    path.write_text(text)
    assert main(["test", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_output_folders_and_executor_in_the_file(samples, capsys):
    # the figure and record folders, taken relative to the file; a rerun of the file
    # loads every toy from the records; the result file does not record them
    pytest.importorskip("matplotlib")
    (samples / "run.toml").write_text(TOML + 'json = "out/r.json"\nplots = "figs"\n'
                                      'checkpoint = "records"\nexecutor = "local"\n')
    (samples / "out").mkdir()
    assert main(["test", "--config", str(samples / "run.toml"), "-q"]) == 0
    assert list((samples / "figs").glob("null_distribution.png"))
    assert len(list((samples / "records").glob("*/toy_*.json"))) == 6
    first = json.loads((samples / "out" / "r.json").read_text())
    assert main(["test", "--config", str(samples / "run.toml"), "-v"]) == 0
    assert "6 of 6 toys already done" in capsys.readouterr().err
    assert not {"plots", "checkpoint", "executor"} & set(first["run"])
    # the command line wins
    assert main(["test", "--config", str(samples / "run.toml"), "--checkpoint",
                 str(samples / "other"), "-q"]) == 0
    assert len(list((samples / "other").glob("*/toy_*.json"))) == 6


def test_shards_and_the_command_line_choose_where_toys_run(samples):
    # a shard runs its toys in its own processes and a merge runs none: the file's
    # executor and scheduler are not theirs; an explicit --executor local wins
    (samples / "run.toml").write_text(TOML + 'executor = "dask"\n'
                                      'scheduler = "tcp://127.0.0.1:1"\n')
    cfg = str(samples / "run.toml")
    assert main(["toys", "--config", cfg, "--toys", "0:6", "--out",
                 str(samples / "shards"), "-q"]) == 0
    assert main(["merge", str(samples / "shards"), "--config", cfg]) == 0
    assert main(["test", "--config", cfg, "--executor", "local", "-q"]) == 0
    # a scheduler alone (refused by `test`, where the toys would run locally) does not
    # stop a shard
    (samples / "sched.toml").write_text(TOML + 'scheduler = "tcp://127.0.0.1:1"\n')
    assert main(["toys", "--config", str(samples / "sched.toml"), "--toys", "0:2", "--out",
                 str(samples / "shards2"), "-q"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [('executor = "slurm"\n', "'executor' must be \"local\" or \"dask\""),
     ('scheduler = "tcp://127.0.0.1:1"\n', "'scheduler' in "),
     ("checkpoint = 3\n", "'checkpoint' must be a path")],
)
def test_bad_execution_keys(samples, capsys, extra, message):
    (samples / "run.toml").write_text(TOML + extra)
    assert main(["test", "--config", str(samples / "run.toml"), "-q"]) == 2
    assert message in capsys.readouterr().err


def test_missing_config_file(samples, capsys):
    assert main(["test", "--config", str(samples / "nope.toml")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


def test_a_rerun_takes_the_recorded_budget_only_where_it_fits(tmp_path, monkeypatch):
    # the budget a run resolved is taken by a rerun of its result file (bit-identical
    # feature storage on another machine), but not when every worker holding it would
    # exceed this machine's default budget (e.g. recorded on a GPU or a larger machine)
    import json

    from nplearn import _torch_utils
    from nplearn.runconfig import load_run_config

    res = {"format": "nplearn-result/1", "config": {"n_toys": 3, "workers": 2},
           "run": {"reference": "r.npy", "data": "d.npy"},
           "provenance": {"execution": {"memory_budget": 1000}}}
    p = tmp_path / "res.json"
    p.write_text(json.dumps(res))
    monkeypatch.setattr(_torch_utils, "default_memory_budget", lambda dev: 2000)
    assert load_run_config(p)["memory_budget"] == 1000
    monkeypatch.setattr(_torch_utils, "default_memory_budget", lambda dev: 1999)
    assert load_run_config(p).get("memory_budget") is None
    res["config"]["memory_budget"] = 5  # one the user chose stays
    p.write_text(json.dumps(res))
    assert load_run_config(p)["memory_budget"] == 5
