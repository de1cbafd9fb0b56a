"""Command-line edge cases found by a review: each must end in a correct result or a
one-line error with exit code 2, and never touch an existing output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nplearn.cli import main

FAST = ["--toys", "2", "--centers", "8", "--workers", "1", "-q"]


@pytest.fixture()
def files(tmp_path, rng):
    np.save(tmp_path / "ref.npy", rng.normal(size=(500, 2)))
    np.save(tmp_path / "dat.npy", rng.normal(size=(60, 2)))
    return tmp_path


def _run(files, *args):
    return main(["test", "--reference", str(files / "ref.npy"), "--data",
                 str(files / "dat.npy"), *FAST, *args])


def test_command_line_wins_over_config_even_with_default_values(files):
    cfg = files / "run.toml"
    cfg.write_text('reference = "ref.npy"\ndata = "dat.npy"\nseed = 5\nschedule = "onestep"\n'
                   'n_toys = 3\nn_centers = 8\nworkers = 1\n')
    out = files / "o.json"
    # --seed 0 and --schedule converged are the defaults, and still override the file
    assert main(["test", "--config", str(cfg), "--seed", "0", "--schedule", "converged",
                 "--toys", "4", "--json", str(out), "-q"]) == 0
    c = json.loads(out.read_text())["config"]
    assert (c["seed"], c["schedule"], c["n_toys"]) == (0, "converged", 4)
    assert main(["test", "--config", str(cfg), "--json", str(out), "-q"]) == 0
    c = json.loads(out.read_text())["config"]
    assert (c["seed"], c["schedule"], c["n_toys"]) == (5, "onestep", 3)


def test_duplicate_column_names_are_refused(files, capsys):
    (files / "dup.csv").write_text("a,a\n" + "\n".join(f"{i},{-i}" for i in range(300)))
    rc = main(["test", "--reference", str(files / "dup.csv"), "--data",
               str(files / "dat.npy"), *FAST])
    assert rc == 2 and "duplicate column name(s) 'a'" in capsys.readouterr().err


def test_unusable_plot_folder_stops_before_the_result_is_written(files, capsys):
    out = files / "keep.json"
    out.write_text('{"previous": true}\n')
    rc = _run(files, "--json", str(out), "--plots", str(out / "sub"))
    assert rc == 2 and "plot folder" in capsys.readouterr().err
    assert json.loads(out.read_text()) == {"previous": True}


def test_plot_of_a_result_with_few_toys_and_of_a_damaged_result(files, capsys):
    pytest.importorskip("matplotlib")
    out = files / "r.json"
    assert _run(files, "--json", str(out)) == 0  # 2 toys: no chi2 fit (None fields)
    assert json.loads(out.read_text())["calibration"]["chi2_dof"] is None
    assert main(["plot", str(out), "--no-refit", "--out", str(files / "p")]) == 0
    bad = files / "bad.json"
    bad.write_text(json.dumps({"format": "nplearn-result-1", "t_obs": "x"}))
    assert main(["plot", str(bad), "--out", str(files / "q")]) == 2
    assert "nothing to plot" in capsys.readouterr().err
    bad.write_text(json.dumps({"format": "nplearn-result-1", "t_obs": 1.0, "t_null": "oops",
                               "calibration": {}, "z": 0.0, "z_method": "empirical",
                               "hyperparameters": {"sigma": 1.0}}))
    assert main(["plot", str(bad), "--out", str(files / "q")]) == 2
    assert "cannot be plotted" in capsys.readouterr().err


def test_weight_file_follows_the_selection(files, capsys):
    ref = np.load(files / "ref.npy")
    w = np.linspace(0.5, 1.5, len(ref))
    np.save(files / "w.npy", w)  # a 1-D array: one weight per event
    out1, out2 = files / "a.json", files / "b.json"
    assert _run(files, "--ref-weights", str(files / "w.npy"), "--selection", "x0 > -1",
                "--json", str(out1)) == 0
    keep = ref[:, 0] > -1
    np.save(files / "ref_sel.npy", ref[keep])
    np.save(files / "w_sel.npy", w[keep])
    dat = np.load(files / "dat.npy")
    np.save(files / "dat_sel.npy", dat[dat[:, 0] > -1])
    assert main(["test", "--reference", str(files / "ref_sel.npy"), "--data",
                 str(files / "dat_sel.npy"), "--ref-weights", str(files / "w_sel.npy"),
                 *FAST, "--json", str(out2)]) == 0
    assert json.loads(out1.read_text())["t_obs"] == json.loads(out2.read_text())["t_obs"]
    np.save(files / "w_short.npy", w[:-5])
    assert _run(files, "--ref-weights", str(files / "w_short.npy"), "--selection",
                "x0 > -1") == 2
    assert "before the selection" in capsys.readouterr().err


@pytest.mark.parametrize("case, match", [
    ("tiny-sigma", "outside [1e-100, 1e100]"),
    ("huge-data", "beyond 1e150"),
    ("few-weights", "with a non-zero weight"),
    ("workers-0", "workers"),
])
def test_more_bad_input_is_a_clear_error(files, capsys, case, match):
    args: list[str] = []
    if case == "tiny-sigma":
        args = ["--sigma", "1e-300"]
    elif case == "huge-data":
        np.save(files / "dat.npy", np.load(files / "dat.npy") * 1e155)
    elif case == "few-weights":
        w = np.zeros(500)
        w[:3] = 1.0
        np.save(files / "w.npy", w)
        args = ["--ref-weights", str(files / "w.npy")]
    else:
        args = ["--workers", "0"]
    assert _run(files, *args) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_merge_of_a_folder_without_records_writes_nothing(files, capsys):
    cfg = files / "run.toml"
    cfg.write_text('reference = "ref.npy"\ndata = "dat.npy"\nn_toys = 2\nn_centers = 8\n'
                   'workers = 1\n')
    empty = files / "records"
    empty.mkdir()
    assert main(["merge", str(empty), "--config", str(cfg)]) == 2
    assert "holds no records of this configuration" in capsys.readouterr().err
    assert list(empty.iterdir()) == []


def test_columns_of_different_lengths_are_refused(files, capsys):
    h5py = pytest.importorskip("h5py")
    with h5py.File(files / "g.h5", "w") as f:
        g = f.create_group("ev")
        g["a"] = np.zeros(600)
        g["b"] = np.zeros(595)
    rc = main(["test", "--reference", f"{files / 'g.h5'}:ev", "--data",
               str(files / "dat.npy"), *FAST])
    assert rc == 2 and "different lengths (a: 600, b: 595)" in capsys.readouterr().err


def test_bad_yaml_config_is_a_one_line_error(files, capsys):
    pytest.importorskip("yaml")
    bad = files / "bad.yaml"
    bad.write_text("a: [1, 2\nb: c\n")
    assert main(["test", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a valid YAML file" in err and len(err.splitlines()) == 1
