"""Input formats: round trips through ROOT, HDF5, Parquet, CSV and npy files;
selections, weight columns, DataFrames and awkward arrays."""

from __future__ import annotations

import numpy as np
import pytest

from nplearn import InputError, nplm_test
from nplearn.cli import main
from nplearn.formats import evaluate_selection, selection_names
from nplearn.io import as_events, read_table

COLS = ["pt", "eta", "w"]


@pytest.fixture
def table(rng):
    pt = rng.exponential(30.0, size=500)
    eta = rng.normal(size=500)
    w = rng.uniform(0.5, 1.5, size=500)
    return {"pt": pt, "eta": eta, "w": w}


def _write(kind, path, t):
    if kind == "root":
        uproot = pytest.importorskip("uproot")
        _write_ttree(uproot, path, "events", {c: t[c] for c in COLS})
        return f"{path}:events"
    if kind == "hdf5-group":
        h5py = pytest.importorskip("h5py")
        with h5py.File(path, "w") as f:
            g = f.create_group("events")
            for c in COLS:
                g.create_dataset(c, data=t[c])
        return f"{path}:events"
    if kind == "hdf5-2d":
        h5py = pytest.importorskip("h5py")
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=np.column_stack([t[c] for c in COLS]))
        return str(path)
    if kind == "parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.table({c: t[c] for c in COLS}), path)
        return str(path)
    if kind == "csv":
        np.savetxt(path, np.column_stack([t[c] for c in COLS]), delimiter=",",
                   header=",".join(COLS), comments="", fmt="%.17g")
        return str(path)
    np.save(path, np.column_stack([t[c] for c in COLS]))
    return str(path)


def _write_ttree(uproot, path, name, branches, extra=None):
    """A TTree (what experiments' ntuples are); ``extra`` adds more trees."""
    with uproot.recreate(path) as f:
        for tname, br in {name: branches, **(extra or {})}.items():
            f.mktree(tname, {k: np.float64 for k in br})
            f[tname].extend(br)


SUFFIX = {"root": "root", "hdf5-group": "h5", "hdf5-2d": "h5", "parquet": "parquet",
          "csv": "csv", "npy": "npy"}


@pytest.mark.parametrize("kind", list(SUFFIX))
def test_round_trip(tmp_path, table, kind):
    spec = _write(kind, tmp_path / f"ev.{SUFFIX[kind]}", table)
    named = kind not in ("hdf5-2d", "npy")
    cols = ["pt", "eta"] if named else ["0", "1"]
    t = read_table(spec, cols)
    np.testing.assert_array_equal(t.events, np.column_stack([table["pt"], table["eta"]]))
    # selection and weight column
    sel = "pt > 20 && abs(eta) < 1.5" if named else "x0 > 20 && abs(x1) < 1.5"
    wcol = "w" if named else "x2"
    t = read_table(spec, cols, selection=sel, weight_column=wcol)
    mask = (table["pt"] > 20) & (np.abs(table["eta"]) < 1.5)
    np.testing.assert_array_equal(t.events[:, 0], table["pt"][mask])
    np.testing.assert_array_equal(t.weights, table["w"][mask])
    assert t.n_read == 500


def test_root_errors(tmp_path, table):
    uproot = pytest.importorskip("uproot")
    path = tmp_path / "two.root"
    _write_ttree(uproot, path, "a", {"x": table["pt"]}, {"b": {"x": table["eta"]}})
    with pytest.raises(InputError, match="holds 2 trees"):
        read_table(path)
    with pytest.raises(InputError, match="no tree named 'c'; trees in the file: a, b"):
        read_table(f"{path}:c")
    with pytest.raises(InputError, match="no column named 'y'"):
        read_table(f"{path}:a", ["y"])
    (tmp_path / "bad.root").write_bytes(b"not a root file at all")
    with pytest.raises(InputError, match="cannot be read as a ROOT file"):
        read_table(tmp_path / "bad.root")


def test_bad_values_named_by_column_and_row(tmp_path, table):
    pytest.importorskip("pyarrow")
    table = dict(table)
    table["eta"] = table["eta"].copy()
    table["eta"][7] = np.inf
    spec = _write("parquet", tmp_path / "bad.parquet", table)
    with pytest.raises(InputError, match=r"non-finite value inf at row 7, column 1 \('eta'\)"):
        read_table(spec, ["pt", "eta"])


def test_negative_weight_share_of_huge_weights():
    from nplearn.io import as_weights

    with pytest.raises(InputError, match=r"\(2 of 3 weights are negative, 66\.7% of the sum"):
        as_weights(np.array([-1e308, -1e308, 1e308]), 3, "w")


def test_negative_weight_column_refused(tmp_path, table):
    table = dict(table)
    table["w"] = table["w"].copy()
    table["w"][3] = -0.5
    spec = _write("csv", tmp_path / "neg.csv", table)
    share = 0.5 / (np.abs(table["w"]).sum())
    with pytest.raises(InputError, match=r"negative weight -0\.5 at row 3 \(1 of 500 weights "
                                         rf"are negative, {100 * share:.3g}% of the sum"):
        read_table(spec, ["pt"], weight_column="w")


def test_backticks_name_columns_and_a_bare_not_is_not_guessed(tmp_path):
    cols = {"a": np.array([0.0, 1.0, 2.0]), "Jet.pt": np.array([10.0, 30.0, 50.0]),
            "b": np.array([1.0, 0.0, 1.0])}
    assert selection_names("`Jet.pt` > 20 && a < 2") == ["Jet.pt", "a"]
    np.testing.assert_array_equal(evaluate_selection("`Jet.pt` > 20 && a < 2", cols, 3),
                                  [False, True, False])
    # a bare flag, and a negated comparison in parentheses
    np.testing.assert_array_equal(evaluate_selection("!b", cols, 3), [False, True, False])
    np.testing.assert_array_equal(evaluate_selection("a != 1 && !b", cols, 3),
                                  [False, False, False])
    np.testing.assert_array_equal(evaluate_selection("!(a < 1) && b", cols, 3),
                                  [False, False, True])
    # ROOT reads !a < 1 as (!a) < 1, Python as not (a < 1): refused, not guessed
    for expr in ("!a < 1", "!a + 1 > 0", "~a == 1", "!`Jet.pt` > 1"):
        with pytest.raises(InputError, match="ambiguous"):
            evaluate_selection(expr, cols, 3)
    with pytest.raises(InputError, match="unmatched backtick"):
        evaluate_selection("`Jet.pt > 1", cols, 3)
    with pytest.raises(InputError, match="empty column name"):
        evaluate_selection("`` > 1", cols, 3)
    with pytest.raises(InputError, match=r"unknown column 'Jet\.eta'"):
        evaluate_selection("`Jet.eta` > 1", cols, 3)
    with pytest.raises(InputError, match=r"unsupported element '`Jet.pt`\[0\]'"):
        evaluate_selection("`Jet.pt`[0] > 1", cols, 3)
    # through a file whose header has such names
    path = tmp_path / "dots.csv"
    path.write_text("Jet.pt,Jet-eta\n10,0.5\n30,-2.0\n50,1.0\n")
    t = read_table(str(path), ["Jet.pt"], selection="abs(`Jet-eta`) < 1.5")
    np.testing.assert_array_equal(t.events[:, 0], [10.0, 50.0])


def test_selection_language():
    cols = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([0.0, 1.0, 0.0])}
    assert selection_names("abs(a) > 1 and !(b == 1)") == ["a", "b"]
    np.testing.assert_array_equal(evaluate_selection("a > 1 && !(b == 1)", cols, 3),
                                  [False, False, True])
    np.testing.assert_array_equal(evaluate_selection("(a < 2) | (b > 0.5)", cols, 3),
                                  [True, True, False])
    np.testing.assert_array_equal(evaluate_selection("1 < a <= 3", cols, 3), [False, True, True])
    with pytest.raises(InputError, match="unsupported element"):
        evaluate_selection("__import__('os').system('true')", cols, 3)
    with pytest.raises(InputError, match="unknown column 'c'"):
        evaluate_selection("c > 1", cols, 3)
    with pytest.raises(InputError, match="not a valid expression"):
        evaluate_selection("a >", cols, 3)
    with pytest.raises(InputError, match="true/false"):
        evaluate_selection("a + 1", cols, 3)
    # a function never reaches numpy's output argument (it would overwrite column b)
    b_before = cols["b"].copy()
    with pytest.raises(InputError, match=r"abs\(\) takes 1 argument, got 2"):
        evaluate_selection("abs(a, b) > -1", cols, 3)
    with pytest.raises(InputError, match=r"hypot\(\) takes 2 arguments, got 1"):
        evaluate_selection("hypot(a) > 0", cols, 3)
    np.testing.assert_array_equal(cols["b"], b_before)
    # constants are floats: no integer wrap-around, negative powers allowed
    np.testing.assert_array_equal(evaluate_selection("a < 2 ** 64", cols, 3), [True] * 3)
    np.testing.assert_array_equal(evaluate_selection("a > 2 ** -1", cols, 3), [True] * 3)
    np.testing.assert_array_equal(evaluate_selection("a > 10 ** 400", cols, 3), [False] * 3)
    with pytest.raises(InputError, match="too large"):
        evaluate_selection("a > 1" + "0" * 400, cols, 3)


@pytest.mark.parametrize("expr", ["a > 1 | b > 0", "a > 1 & b < 1", "(a > 1) | b",
                                  "a | (b > 0)"])
def test_bitwise_operators_join_parenthesised_conditions_only(expr):
    # Python reads `a > 1 | b > 0` as `a > (1 | b) > 0`: evaluating it would apply
    # another cut than the one written, silently
    cols = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([0.0, 1.0, 0.0])}
    with pytest.raises(InputError, match="joins conditions only"):
        evaluate_selection(expr, cols, 3)
    np.testing.assert_array_equal(evaluate_selection("~(a > 1) | (b > 0) & True", cols, 3),
                                  [True, True, False])


def test_dataframes_and_awkward_arrays(rng):
    pd = pytest.importorskip("pandas")
    ak = pytest.importorskip("awkward")
    x = rng.normal(size=(50, 2))
    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1]})
    np.testing.assert_array_equal(as_events(df, "df"), x)
    rec = ak.zip({"a": x[:, 0], "b": x[:, 1]})
    np.testing.assert_array_equal(as_events(rec, "ak"), x)
    with pytest.raises(InputError, match="field 'j' is not a flat numeric column"):
        as_events(ak.zip({"j": ak.Array([[1.0], [2.0, 3.0]])}, depth_limit=1), "jag")
    with pytest.raises(InputError, match="column 's' is not numeric"):
        as_events(pd.DataFrame({"s": ["a", "b"]}), "df")
    ref = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000)})
    res = nplm_test(ref, df, n_toys=0, n_centers=50, workers=1)
    assert np.isfinite(res.t_obs)


def test_cli_reads_root_with_selection_and_weights(tmp_path, rng, capsys):
    uproot = pytest.importorskip("uproot")
    n = 4000
    _write_ttree(uproot, tmp_path / "mc.root", "tree",
                 {"pt": rng.exponential(30.0, n), "eta": rng.normal(size=n),
                  "weight": rng.uniform(0.5, 1.5, n)})
    # the data as an RNTuple (uproot's default for new files)
    with uproot.recreate(tmp_path / "data.root") as f:
        f["tree"] = {"pt": rng.exponential(30.0, 300), "eta": rng.normal(size=300)}
    out = tmp_path / "r.json"
    rc = main(["test", "--reference", f"{tmp_path / 'mc.root'}:tree", "--data",
               f"{tmp_path / 'data.root'}:tree", "--columns", "pt,eta", "--selection",
               "pt > 10", "--ref-weight-branch", "weight", "--toys", "4", "--centers", "50",
               "--workers", "1", "--json", str(out), "-q"])
    assert rc == 0, capsys.readouterr().err
    import json

    d = json.loads(out.read_text())
    assert d["provenance"]["inputs"]["selection"] == "pt > 10"
    assert d["n_ref"] < n and d["provenance"]["inputs"]["events_read"]["reference"] == n
    rc = main(["test", "--reference", f"{tmp_path / 'mc.root'}:nope", "--data",
               f"{tmp_path / 'data.root'}:tree"])
    assert rc == 2 and "no tree named 'nope'" in capsys.readouterr().err


def test_hdf5_top_level_mixing_events_and_columns_must_be_chosen(tmp_path, rng):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "mix.h5"
    with h5py.File(path, "w") as f:
        f["events"] = rng.normal(size=(5, 3))
        f["w"] = np.ones(5)
    # reading the 1-D datasets as columns would drop the events silently
    with pytest.raises(InputError, match="choose a dataset or group"):
        read_table(str(path))
    assert read_table(f"{path}:events").events.shape == (5, 3)


def test_parquet_non_numeric_columns_are_named_as_such(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import decimal

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.0], "s": ["a", "b"],
                             "d": [decimal.Decimal("1.5"), decimal.Decimal("2.5")],
                             "j": [[1.0], [2.0, 3.0]]}), path)
    with pytest.raises(InputError, match=r"column 's' is not numeric \(type string\)"):
        read_table(str(path), columns=["s"])
    with pytest.raises(InputError, match=r"column 'd' is not numeric \(type decimal"):
        read_table(str(path), columns=["d"])
    with pytest.raises(InputError, match=r"column 'j' has a variable number"):
        read_table(str(path), columns=["j"])
    assert read_table(str(path), columns=["x"]).events.tolist() == [[1.0], [2.0]]


def test_pandas_index_in_parquet_and_hdf5_groups(tmp_path, rng):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    h5py = pytest.importorskip("h5py")
    df = pd.DataFrame({"a": rng.normal(size=10), "b": rng.uniform(0.5, 1.5, size=10)})
    path = tmp_path / "p.parquet"
    df.iloc[[0, 2, 3, 7]].to_parquet(path)  # a non-range index is stored as a column
    assert read_table(str(path)).names == ["a", "b"]
    # with columns chosen, indices refer to the file as written; so do a weight column
    # given by index and a selection on the index
    assert read_table(str(path), columns=["2"]).names == ["__index_level_0__"]
    t = read_table(str(path), weight_column="1", selection="__index_level_0__ > 0")
    assert t.names == ["a"] and t.events.shape == (3, 1)
    h5 = tmp_path / "g.h5"
    with h5py.File(h5, "w") as f:
        g = f.create_group("sample")
        g["ev"] = rng.normal(size=(5, 2))
        g["weight"] = np.ones(5)
    with pytest.raises(InputError, match="mixes 1-D datasets"):
        read_table(f"{h5}:sample")
    assert read_table(f"{h5}:sample/ev").events.shape == (5, 2)
    # scalars next to the columns (a luminosity, a cross-section) are fine
    with h5py.File(h5, "w") as f:
        g = f.create_group("sample")
        g["x"], g["y"], g["lumi"] = rng.normal(size=5), rng.normal(size=5), 138.0
    assert read_table(f"{h5}:sample").names == ["x", "y"]


def test_unicode_names_in_selections_and_keys_of_single_table_files(tmp_path, rng, table):
    """Python reads a selection's names in Unicode form NFKC (pₜ as pt, µ as μ): the
    file's columns are matched in that form too. A ':NAME' on a file that holds one
    table names nothing and is refused (it was ignored)."""
    path = tmp_path / "u.csv"
    x = rng.normal(size=(50, 2))
    np.savetxt(path, x, delimiter=",", header="pₜ,µη", comments="", fmt="%.17g")
    t = read_table(str(path), ["pₜ", "µη"], selection="pₜ > 0 and µη < 1")
    keep = (x[:, 0] > 0) & (x[:, 1] < 1)
    np.testing.assert_array_equal(t.events, x[keep])
    assert t.names == ["pₜ", "µη"]
    with pytest.raises(InputError, match="the selection uses column 'eta'"):
        read_table(str(path), selection="eta > 0")
    np.savetxt(path, x, delimiter=",", header="µx,μx", comments="", fmt="%.17g")
    with pytest.raises(InputError, match="could be any of 'µx', 'μx'"):
        read_table(str(path), ["0"], selection="µx > 0")
    for kind in ("csv", "npy", "parquet"):
        spec = _write(kind, tmp_path / f"t.{SUFFIX[kind]}", table)
        with pytest.raises(InputError, match=f"a .{SUFFIX[kind]} file holds one table, so "
                                             "':foo' names nothing"):
            read_table(f"{spec}:foo")


def test_numpy_savetxt_header_comment_names_the_columns(tmp_path):
    # np.savetxt writes its header as a comment ("# mjj,ptj"): it names the columns when
    # it has one name per column; free text does not
    x = np.random.default_rng(0).normal(size=(5, 2))
    np.savetxt(tmp_path / "a.csv", x, delimiter=",", header="mjj,ptj")
    t = read_table(str(tmp_path / "a.csv"), ["ptj"])
    assert t.names == ["ptj"] and t.has_header and np.array_equal(t.events, x[:, 1:])
    np.savetxt(tmp_path / "b.txt", x, header="made by a toy generator")
    t = read_table(str(tmp_path / "b.txt"))
    assert t.names == ["x0", "x1"] and not t.has_header and np.array_equal(t.events, x)
