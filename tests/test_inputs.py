"""Bad input gives clear errors (API) and exit code 2 with one line (CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nplearn import InputError, nplm_test
from nplearn.cli import main
from nplearn.io import read_events, write_json_atomic


@pytest.fixture
def good(rng):
    return rng.normal(size=(3000, 2)), rng.normal(size=(60, 2))


def _with(arr, row, col, value):
    arr = arr.copy()
    arr[row, col] = value
    return arr


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda r, d: (_with(r, 5, 1, np.nan), d), r"reference: non-finite value nan at row 5, "
                                                   r"column 1"),
        (lambda r, d: (r, _with(d, 3, 0, np.inf)), r"data: non-finite value inf at row 3"),
        (lambda r, d: (r[:, 0], d), r"reference: expected a 2-D array .* 1-D"),
        (lambda r, d: (r, d[None]), r"data: expected a 2-D array .* 3-D"),
        (lambda r, d: (r, d[:0]), r"the data hold no event: a shape-only test needs data"),
        (lambda r, d: (r, np.hstack([d, d[:, :1]])), r"data: has 3 feature column\(s\) but the "
                                                     r"reference has 2"),
        (lambda r, d: (r.astype(str), d), r"reference: values must be numeric"),
        (lambda r, d: (np.c_[r[:, :1], np.ones(len(r))], d[:, :2]), r"constant"),
    ],
)
def test_api_bad_arrays(good, make, match):
    ref, data = make(*good)
    with pytest.raises(InputError, match=match):
        nplm_test(ref, data, n_toys=2, workers=1)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (lambda n: -np.ones(n), r"negative weight -1.0 at row 0"),
        (lambda n: np.zeros(n), r"weights sum to zero"),
        (lambda n: np.ones(n - 1), r"expected \d+ weights"),
        (lambda n: np.r_[np.nan, np.ones(n - 1)], r"non-finite weight nan at row 0"),
    ],
)
def test_api_bad_weights(good, weights, match):
    ref, data = good
    with pytest.raises(InputError, match=match):
        nplm_test(ref, data, ref_weights=weights(len(ref)), n_toys=2, workers=1)


@pytest.mark.parametrize(
    ("opts", "match"),
    [
        ({"n_toys": -1}, "n_toys must be >= 0"),
        ({"lam": 0}, "lam must be > 0"),
        ({"sigma": -0.5}, "sigma must be > 0"),
        ({"schedule": "fast"}, "schedule must be one of"),
        ({"bogus": 1}, "unknown config key"),
        ({"expected": float("nan")}, "expected must be > 0"),
    ],
)
def test_api_bad_options(good, opts, match):
    with pytest.raises(InputError, match=match):
        nplm_test(*good, workers=1, **opts)


def test_pool_too_small_for_resampling(rng):
    with pytest.raises(InputError, match="too small to resample") as exc:
        nplm_test(rng.normal(size=(100, 1)), rng.normal(size=(80, 1)), n_toys=2, workers=1)
    assert "swapped" not in str(exc.value)
    # more data than reference events: the two were probably given the other way round
    with pytest.raises(InputError, match=r"the data hold 5000 events: are the reference and "
                                         r"the data swapped\?"):
        nplm_test(rng.normal(size=(300, 1)), rng.normal(size=(5000, 1)), n_toys=2,
                  expected=200.0, workers=1)


# ---------------------------------------------------------------- files + CLI


def _run_cli(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def files(tmp_path, good):
    ref, data = good
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "data.npy", data)
    return tmp_path


@pytest.mark.parametrize(
    ("prep", "match"),
    [
        (lambda p: np.save(p / "data.npy", np.full((5, 2), np.nan)), "data.npy: non-finite"),
        (lambda p: np.save(p / "data.npy", np.ones(5)), "data.npy: expected a 2-D array"),
        (lambda p: np.save(p / "data.npy", np.ones((2, 3, 2))), "3-D"),
        (lambda p: np.save(p / "data.npy", np.ones((0, 2))), "data.npy: is empty"),
        (lambda p: np.save(p / "data.npy", np.ones((5, 3))), "3 feature column"),
        (lambda p: (p / "data.npy").write_bytes(b"not a numpy file"), "data.npy: cannot be read"),
        (lambda p: (p / "data.npy").unlink(), "data.npy: file not found"),
    ],
)
def test_cli_bad_files_exit_2(files, capsys, prep, match):
    prep(files)
    code, _, err = _run_cli(["test", "--reference", str(files / "ref.npy"), "--data",
                               str(files / "data.npy"), "--toys", "2", "--workers", "1", "-q"],
                              capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nplearn: error:")
    assert match in lines[0]


def test_cli_bad_weights_exit_2(files, capsys):
    np.save(files / "w.npy", -np.ones((3000, 1)))
    code, _, err = _run_cli(["test", "--reference", str(files / "ref.npy"), "--data",
                             str(files / "data.npy"), "--ref-weights", str(files / "w.npy"),
                             "--toys", "2", "--workers", "1"], capsys)
    assert code == 2 and "negative weight" in err
    np.save(files / "w.npy", np.zeros((3000, 1)))
    code, _, err = _run_cli(["test", "--reference", str(files / "ref.npy"), "--data",
                             str(files / "data.npy"), "--ref-weights", str(files / "w.npy"),
                             "--toys", "2", "--workers", "1"], capsys)
    assert code == 2 and "sum to zero" in err
    # 1-D .npy weights: every error names the weight file
    w = np.ones(3000)
    w[10] = -0.3
    for arr, match in ((w, "negative weight -0.3 at row 10"),
                       (np.ones(2999), "expected 3000 weights")):
        np.save(files / "w1.npy", arr)
        code, _, err = _run_cli(["test", "--reference", str(files / "ref.npy"), "--data",
                                 str(files / "data.npy"), "--ref-weights",
                                 str(files / "w1.npy"), "--toys", "2", "--workers", "1"],
                                capsys)
        assert code == 2 and f"{files / 'w1.npy'}: " in err and match in err


def test_cli_usage_errors_exit_2(capsys):
    code, _, err = _run_cli(["test", "--reference", "x.npy"], capsys)
    assert code == 2 and "no data sample: give --data FILE" in err
    code, _, err = _run_cli(["bench", "exp1d", "--signal", "wiggle"], capsys)
    assert code == 2 and "invalid choice" in err
    code, _, err = _run_cli(["test", "--reference", "a.npy", "--data", "b.npy", "--toys",
                             "many"], capsys)
    assert code == 2 and "invalid int value" in err


def test_csv_reader_names_bad_cells(tmp_path, capsys):
    p = tmp_path / "t.csv"
    p.write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(InputError,
                       match=r"non-numeric value 'oops' at row 1 \(line 3\), column 1 \('b'\)"):
        read_events(p)
    p.write_text("a,b\n1,2\n3\n")
    with pytest.raises(InputError, match=r"row 1 .* has 1 fields, expected 2"):
        read_events(p)
    p.write_text("a,b\n1,2\nnan,4\n")
    with pytest.raises(InputError, match=r"non-finite value nan at row 1, column 0 \('a'\)"):
        read_events(p)
    # after a selection, a bad value is named by its row of the file, not its place
    # among the selected events (row 3 is the second event kept)
    p.write_text("a,b,w\n1,2,1\n-1,2,1\n-1,2,1\n2,inf,-1\n")
    from nplearn.io import read_table

    with pytest.raises(InputError, match=r"non-finite value inf at row 3, column 1 \('b'\)"):
        read_table(p, ["a", "b"], selection="a > 0")
    with pytest.raises(InputError, match=r"negative weight -1.0 at row 3"):
        read_table(p, ["a"], selection="a > 0", weight_column="w")
    # and so is a bad weight of a --ref-weights file
    np.save(tmp_path / "w.npy", np.array([1.0, 1.0, 1.0, -2.0]))
    code = main(["test", "--reference", str(p), "--data", str(p), "--columns", "a",
                 "--selection", "a > 0", "--ref-weights", str(tmp_path / "w.npy")])
    assert code == 2 and "negative weight -2.0 at row 3" in capsys.readouterr().err
    # no header and a bad value in the first row: an error, not a header (which would
    # drop that event silently)
    p.write_text("0.5,NA\n1,2\n3,4\n")
    with pytest.raises(InputError, match="first row mixes numbers and text"):
        read_events(p)
    # pandas writes an unnamed index column: an empty name is still a header
    p.write_text(",pt,eta\n0,1.5,2\n1,3,4\n")
    arr, names = read_events(p, ["pt", "eta"])
    assert names == ["pt", "eta"] and arr.tolist() == [[1.5, 2.0], [3.0, 4.0]]


def test_text_reader_chunks(tmp_path, monkeypatch):
    """Rows are parsed a chunk at a time: the result does not depend on the chunk
    size, comments and blank lines between chunks are skipped, and a bad value in a
    later chunk is reported with its row index in the whole file."""
    import nplearn.io as nio

    rng = np.random.default_rng(3)
    x = rng.normal(size=(23, 3))
    lines = ["pt,eta,phi"] + [",".join(repr(float(v)) for v in row) for row in x]
    lines.insert(9, "# a comment")
    lines.insert(15, "")
    p = tmp_path / "t.csv"
    p.write_text("\r\n".join(lines) + "\r\n")
    whole, names = read_events(p)
    monkeypatch.setattr(nio, "_TEXT_CHUNK_ROWS", 4)
    chunked, names4 = read_events(p)
    assert names == names4 == ["pt", "eta", "phi"]
    assert np.array_equal(whole, x) and np.array_equal(chunked, x)
    lines[20] = "1,2,oops"  # body row 17 once the header, comment and blank line are out
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError,
                       match=r"non-numeric value 'oops' at row 17 \(line 21\), column 2"):
        read_events(p)
    p.write_text("pt,eta\n")
    with pytest.raises(InputError, match=r"is empty \(0 events\)"):
        read_events(p)


def test_reader_column_selection(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("# comment\npt,eta,phi\n1,2,3\n4,5,6\n")
    arr, names = read_events(p, ["phi", "0"])
    assert names == ["phi", "pt"] and arr.tolist() == [[3.0, 1.0], [6.0, 4.0]]
    with pytest.raises(InputError, match="no column named 'mass'"):
        read_events(p, ["mass"])
    for cols in (["pt", "pt"], ["eta", "1"]):
        with pytest.raises(InputError, match="is selected twice"):
            read_events(p, cols)
    np.savez(tmp_path / "z.npz", a=np.ones((3, 2)), b=np.zeros((3, 2)))
    with pytest.raises(InputError, match="holds 2 arrays"):
        read_events(tmp_path / "z.npz")
    arr, _ = read_events(f"{tmp_path / 'z.npz'}:b")
    assert arr.shape == (3, 2) and not arr.any()
    (tmp_path / "t.xlsx").write_bytes(b"")
    with pytest.raises(InputError, match="unsupported file type"):
        read_events(tmp_path / "t.xlsx")


def test_failed_run_leaves_existing_json_untouched(files, capsys):
    out = files / "result.json"
    out.write_text('{"previous": true}\n')
    np.save(files / "data.npy", np.full((5, 2), np.nan))
    code, _, _ = _run_cli(["test", "--reference", str(files / "ref.npy"), "--data",
                           str(files / "data.npy"), "--json", str(out), "--workers", "1"], capsys)
    assert code == 2
    assert json.loads(out.read_text()) == {"previous": True}


def test_atomic_writer_keeps_old_file_on_error(tmp_path):
    out = tmp_path / "r.json"
    write_json_atomic(out, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(out, {"a": object()})
    assert json.loads(out.read_text()) == {"a": 1}
    assert list(tmp_path.iterdir()) == [out]  # no temp files left behind


def test_result_files_get_normal_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        out = tmp_path / "r.json"
        write_json_atomic(out, {"a": 1})
        assert (out.stat().st_mode & 0o777) == 0o644
    finally:
        os.umask(mask)


def test_config_takes_numpy_numbers():
    from nplearn import NPLMConfig

    c = NPLMConfig(n_toys=np.int64(10), seed=np.int64(1), n_centers=np.int32(100),
                   lam=np.float32(1e-6), sigmas=[np.float64(0.5), 1.0], standardize=np.True_)
    assert c.n_toys == 10 and type(c.n_toys) is int and type(c.lam) is float
    assert c.sigmas == [0.5, 1.0] and type(c.sigmas[0]) is float and c.standardize is True
    with pytest.raises(InputError, match="n_toys must be an integer"):
        NPLMConfig(n_toys=np.float64(2.5))


def test_pandas_index_column_is_not_a_feature(tmp_path, caplog):
    """`DataFrame.to_csv()` writes the row index as an unnamed first column; taken as a
    feature it numbers the events, which the test would see as a huge discrepancy."""
    p = tmp_path / "pd.csv"
    p.write_text(",pt,eta\n0,1.5,2\n1,3,4\n2,5,6\n")
    with caplog.at_level("WARNING"):
        arr, names = read_events(p)
    assert names == ["pt", "eta"] and arr.tolist() == [[1.5, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert "row index" in caplog.text
    # an unnamed column that is not an index is an error unless columns are chosen
    p.write_text(",pt\n7,1.5\n3,3\n")
    with pytest.raises(InputError, match="column 0 has no name"):
        read_events(p)
    arr, names = read_events(p, ["pt"])
    assert names == ["pt"] and arr.tolist() == [[1.5], [3.0]]
    # with columns chosen by index, indices count the index column (the file as written)
    p.write_text(",pt,eta\n0,1.5,2\n1,3,4\n")
    arr, names = read_events(p, ["1", "2"])
    assert names == ["pt", "eta"] and arr.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    # so does a weight column given by index, and the index is still no feature
    from nplearn.io import read_table

    t = read_table(str(p), weight_column="2")
    assert t.names == ["pt"] and t.weights.tolist() == [2.0, 4.0]


def test_memory_default_respects_a_cgroup_limit(tmp_path):
    """Under SLURM --mem, Docker or Kubernetes the container's limit, not the host's
    memory, bounds the default caches."""
    from nplearn._torch_utils import cgroup_memory_limit

    v2, v1 = tmp_path / "memory.max", tmp_path / "limit_in_bytes"
    v2.write_text("4294967296\n")
    assert cgroup_memory_limit((str(v2), str(v1))) == 4 * 2**30
    v2.write_text("max\n")
    assert cgroup_memory_limit((str(v2), str(v1))) is None
    v2.unlink()
    v1.write_text(str(2**63 - 4096))  # v1's "no limit" sentinel
    assert cgroup_memory_limit((str(v2), str(v1))) is None
    v1.write_text("1073741824")
    assert cgroup_memory_limit((str(v2), str(v1))) == 2**30
    assert cgroup_memory_limit((str(tmp_path / "none"),)) is None


def test_result_writes_keep_links_and_permissions(tmp_path):
    import os

    target = tmp_path / "real.json"
    target.write_text("{}")
    os.chmod(target, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_json_atomic(link, {"a": 2})
    assert link.is_symlink() and json.loads(target.read_text()) == {"a": 2}
    assert (target.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_fast_and_row_by_row_text_readers_agree(tmp_path, monkeypatch):
    import nplearn.io as io

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 3)) * 10.0 ** rng.integers(-12, 12, size=(300, 3))
    p = tmp_path / "t.csv"
    rows = [", ".join(repr(float(v)) if j else f"{v:.17e}" for j, v in enumerate(r))
            for r in x]
    p.write_text("a,b,c\n" + "\n".join(rows) + "\n3, -4, 5e-3\n")
    fast, names = read_events(p)
    monkeypatch.setattr(io, "_parse_numbers", lambda *a: None)
    slow, _ = read_events(p)
    assert names == ["a", "b", "c"] and fast.shape == (301, 3)
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast[:300], x)
    ws = tmp_path / "w.txt"
    ws.write_text("1 2\n  3   4\n")
    assert read_events(ws)[0].tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_cgroup_limit_is_found_in_the_process_group_and_above(tmp_path):
    from nplearn._torch_utils import cgroup_limit_files, cgroup_memory_limit

    root = tmp_path / "cg"
    job = root / "slurm" / "job_5"
    (job / "step_0").mkdir(parents=True)
    (job / "step_0" / "memory.max").write_text("max\n")
    (job / "memory.max").write_text(str(3 * 2**30))
    (root / "slurm" / "memory.max").write_text(str(64 * 2**30))
    files = cgroup_limit_files("0::/slurm/job_5/step_0\n", str(root))
    assert files[0] == str(job / "step_0" / "memory.max")
    assert files[-1] == str(root / "memory.max")
    assert cgroup_memory_limit(files) == 3 * 2**30  # the job's --mem, two levels up
    v1 = cgroup_limit_files("4:cpu:/a\n7:memory,hugetlb:/slurm/job_5\n", str(root))
    assert v1[0] == str(root / "memory" / "slurm" / "job_5" / "memory.limit_in_bytes")
    assert cgroup_limit_files("", str(root)) == []


def test_named_columns_must_match_between_reference_and_data():
    # DataFrames (and other named arrays) are used by position: a data frame whose
    # columns are the reference's in another order, or others, is refused instead of
    # silently testing swapped features
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    R, D = rng.normal(size=(3000, 2)), rng.normal(size=(200, 2))
    ref = pd.DataFrame(R, columns=["a", "b"])
    kw = dict(n_toys=0, n_centers=50, expected=200.0)
    with pytest.raises(InputError, match=r"\(b, a\) are not the reference's \(a, b\); the "
                                         r"same columns in another order"):
        nplm_test(ref, pd.DataFrame(D[:, ::-1], columns=["b", "a"]), **kw)
    with pytest.raises(InputError, match="select the same columns from both"):
        nplm_test(ref, pd.DataFrame(D, columns=["c", "d"]), **kw)
    same = nplm_test(ref, pd.DataFrame(D, columns=["a", "b"]), **kw)
    assert same.t_obs == nplm_test(R, D, **kw).t_obs  # plain arrays: by position


def test_reader_review_cases(tmp_path, capsys, caplog):
    """Inputs that were misread or crashed (found by a review of the readers)."""
    from nplearn.formats import evaluate_selection
    from nplearn.io import read_table

    p = tmp_path / "t.csv"
    # pandas' DataFrame(x).to_csv(): the row index and the default names 0, 1, ... are
    # a header; without the index the same names could be an event: kept, with a word
    p.write_text(",0,1\n0,1.5,2\n1,3,4\n")
    arr, names = read_events(p)
    assert names == ["0", "1"] and arr.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    p.write_text("0,1\n1.5,2\n3,4\n")
    arr, names = read_events(p)
    assert names == ["x0", "x1"] and arr.tolist() == [[0.0, 1.0], [1.5, 2.0], [3.0, 4.0]]
    assert "the first row (0,1) is read as an event" in caplog.text
    p.write_text("0\n1\n2\n")  # one column: no word
    assert read_events(p)[0].shape == (3, 1)
    # quoted fields keep their delimiter: a decimal comma is refused, not split
    p.write_text('"1,61","0,23"\n"2,5","1,0"\n')
    with pytest.raises(InputError, match=r"'1,61': a decimal comma"):
        read_events(p)
    p.write_text('"a","b"\n"1.5","2"\n')
    assert read_events(p)[0].tolist() == [[1.5, 2.0]]
    # European spreadsheets: ';' between fields, decimal commas in them
    p.write_text("1,5;2,25\n3,0;4,1\n")
    with pytest.raises(InputError, match=r"separated by ';' with decimal commas") as exc:
        read_events(p)
    p.write_text("x;y\n1,5;2,25\n")
    with pytest.raises(InputError, match=r"'1,5' at row 0 .*a decimal comma") as exc:
        read_events(p)
    assert "cannot be read" not in str(exc.value)  # named once, not wrapped again
    # selections compute in floats whatever the columns' type
    big = np.full(4, 50000, dtype=np.int32)
    assert evaluate_selection("x0*x1 > 2e9", {"x0": big, "x1": big}, 4).all()
    u = {"a": np.array([1, 2], dtype=np.uint8), "b": np.array([2, 1], dtype=np.uint8)}
    assert evaluate_selection("a - b < 0", u, 2).tolist() == [True, False]
    b = {"a": np.array([True, False]), "b": np.array([True, True])}
    assert evaluate_selection("a + b > 1", b, 2).tolist() == [True, False]
    assert evaluate_selection("-a < 0", b, 2).tolist() == [True, False]
    assert evaluate_selection("a", b, 2).tolist() == [True, False]  # a flag as the cut
    e = {"e1": np.array([2**53 + 1, 5], dtype=np.int64), "e2": np.array([2**53, 5])}
    assert evaluate_selection("e1 == e2", e, 2).tolist() == [False, True]  # exact
    with pytest.raises(InputError, match="selection"):
        evaluate_selection("-" * 5000 + "a > 0", b, 2)
    # the weight column is not also a feature
    p.write_text("pt,weight\n1,0.5\n2,0.7\n")
    with pytest.raises(InputError, match="'weight' holds the event weights and is also"):
        read_table(p, ["pt", "weight"], weight_column="weight")
    # a damaged file is bad input (exit 2) naming the file, not an internal error
    np.savez(tmp_path / "e.npz", ev=np.ones((100, 2)))
    raw = (tmp_path / "e.npz").read_bytes()
    (tmp_path / "e.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"e\.npz.*cannot be read"):
        read_table(tmp_path / "e.npz")
    np.save(tmp_path / "d.npy", np.ones((10, 2)))
    assert main(["test", "--reference", str(tmp_path / "e.npz"), "--data",
                 str(tmp_path / "d.npy"), "--toys", "2"]) == 2
    assert "e.npz" in capsys.readouterr().err


def test_an_unnamed_hdf5_dataset_pairs_with_a_named_table(tmp_path, capsys, rng):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "ref.h5", "w") as f:
        f["ev"] = rng.normal(size=(2000, 2))
    dat = rng.normal(size=(80, 2))
    np.savetxt(tmp_path / "dat.csv", dat, delimiter=",", header="pt,eta", comments="")
    # the dataset's columns have no names: matched by position (one warning), and by
    # index with --columns
    base = ["test", "--reference", f"{tmp_path / 'ref.h5'}:ev", "--data",
            str(tmp_path / "dat.csv"), "--toys", "2", "--centers", "20", "-q"]
    assert main(base) == 0
    assert "matched to those of" in capsys.readouterr().err
    assert main([*base, "--columns", "0"]) == 0
    # two named tables with other names: by index they pair by position, with a warning
    np.savetxt(tmp_path / "ref.csv", rng.normal(size=(2000, 2)), delimiter=",",
               header="m,y", comments="")
    assert main(["test", "--reference", str(tmp_path / "ref.csv"), "--data",
                 str(tmp_path / "dat.csv"), "--columns", "0,1", "--toys", "2",
                 "--centers", "20", "-q"]) == 0
    assert "pairs columns by position" in capsys.readouterr().err
    assert main(["test", "--reference", str(tmp_path / "ref.csv"), "--data",
                 str(tmp_path / "dat.csv"), "--toys", "2", "-q"]) == 2
