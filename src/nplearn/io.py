"""Reading and validating user input; writing results atomically.

Every check names the offending object (file, column, row) and raises
:class:`~nplearn.InputError`.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import math
import os
import re
import socket
import tempfile
import threading
import time
import tokenize
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "Table",
    "as_events",
    "as_weights",
    "check_same_columns",
    "check_writable",
    "field_names",
    "read_events",
    "read_table",
    "remove_stale_temporaries",
    "sha256_file",
    "to_jsonable",
    "write_json_atomic",
    "write_text_atomic",
]

#: File suffixes understood by :func:`read_events` (ROOT, HDF5 and Parquet need the
#: ``root``, ``hdf5`` and ``parquet`` extras).
SUFFIXES = (".npy", ".npz", ".csv", ".txt", ".tsv", ".dat", ".root", ".h5", ".hdf5", ".hdf",
            ".parquet", ".pq")


# ------------------------------------------------------------------ validation


def as_events(
    x: Any,
    name: str,
    *,
    n_features: int | None = None,
    allow_empty: bool = False,
    columns: list[str] | None = None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Validate an events x features array and return it as float64.

    Parameters
    ----------
    x : array-like
        Two-dimensional numeric array.
    name : str
        How to call it in error messages (e.g. a file name).
    n_features : int, optional
        Required number of columns.
    allow_empty : bool
        Accept zero events.
    columns : list of str, optional
        Column names, used to name the column of a bad value.
    rows : numpy.ndarray, optional
        The row of the file each event was read from (0-based, before a selection),
        used to name the row of a bad value (default: the event's index).
    """
    x = _tabular_to_array(x, name)
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name}: cannot be read as an array ({exc})") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or arr.dtype == np.bool_):
        raise InputError(f"{name}: values must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise InputError(f"{name}: values must be real, got complex numbers")
    if arr.ndim != 2:
        raise InputError(
            f"{name}: expected a 2-D array (events x features), got a {arr.ndim}-D array "
            f"of shape {arr.shape}" + (" (one feature per event: x[:, None])"
                                       if arr.ndim == 1 else "")
        )
    if arr.shape[1] == 0:
        raise InputError(f"{name}: has no features (0 columns)")
    if arr.shape[0] == 0 and not allow_empty:
        raise InputError(f"{name}: is empty (0 events)")
    if n_features is not None and arr.shape[1] != n_features:
        raise InputError(
            f"{name}: has {arr.shape[1]} feature column(s) but the reference has {n_features}"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        at = _file_row(row, rows)
        cname = f"column {col}" + (f" ({columns[col]!r})" if columns else "")
        raise InputError(
            f"{name}: non-finite value {arr[row, col]} at row {at}, {cname} "
            f"({int(bad.sum())} bad value(s) in total)"
        )
    return arr


def _tabular_to_array(x: Any, name: str) -> Any:
    """pandas DataFrames, awkward record arrays and structured numpy arrays -> 2-D
    float arrays (one column per field); anything else passes through."""
    module = type(x).__module__
    if module.startswith("pandas") and hasattr(x, "columns") and hasattr(x, "dtypes"):
        for col, dt in zip(x.columns, x.dtypes, strict=True):
            if not (np.issubdtype(np.dtype(dt), np.number) if isinstance(dt, np.dtype)
                    else str(dt).lower().startswith(("int", "float", "uint", "bool"))):
                raise InputError(f"{name}: column {col!r} is not numeric (dtype {dt})")
        return x.to_numpy(dtype=np.float64, na_value=np.nan)
    if module.startswith("awkward"):
        import awkward as ak

        fields = ak.fields(x)
        if not fields:
            try:
                return ak.to_numpy(x)
            except Exception as exc:
                raise InputError(f"{name}: awkward array is not a regular 2-D array "
                                 f"({exc})") from None
        cols = []
        for f in fields:
            try:
                cols.append(np.asarray(ak.to_numpy(x[f]), dtype=np.float64))
            except Exception:
                raise InputError(f"{name}: field {f!r} is not a flat numeric column (jagged "
                                 "or non-numeric)") from None
            if cols[-1].ndim != 1:
                raise InputError(f"{name}: field {f!r} has more than one value per event")
        return np.column_stack(cols)
    if isinstance(x, np.ndarray) and x.dtype.names:
        return np.column_stack([np.asarray(x[f], dtype=np.float64) for f in x.dtype.names])
    return x


def field_names(x: Any) -> list[str] | None:
    """Column names of a pandas DataFrame, an awkward record array or a structured
    numpy array (None for plain arrays)."""
    module = type(x).__module__
    if module.startswith("pandas") and hasattr(x, "columns") and hasattr(x, "dtypes"):
        return [str(c) for c in x.columns]
    if module.startswith("awkward"):
        import awkward as ak

        return list(ak.fields(x)) or None
    if isinstance(x, np.ndarray) and x.dtype.names:
        return list(x.dtype.names)
    return None


def check_same_columns(reference: Any, data: Any) -> None:
    """Refuse named columns (DataFrames, awkward or structured arrays on both sides)
    that differ between the reference and the data, in names or in order: columns
    are used by position. Unnamed arrays pass."""
    ref_names, dat_names = field_names(reference), field_names(data)
    if ref_names is None or dat_names is None or ref_names == dat_names:
        return
    hint = ("the same columns in another order: reorder the data, e.g. "
            "data[list(reference.columns)]" if sorted(ref_names) == sorted(dat_names)
            else "select the same columns from both")
    raise InputError(f"the data's columns ({', '.join(dat_names)}) are not the reference's "
                     f"({', '.join(ref_names)}); {hint}")


#: A number written with a decimal comma (``1,61``).
_DECIMAL_COMMA = re.compile(r"[-+]?\d+,\d+")


def _file_row(i: int, rows: np.ndarray | None) -> int:
    """The file's row of event ``i`` (``rows``: the rows kept by a selection)."""
    return i if rows is None else int(rows[i])


def as_weights(w: Any, n: int, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Validate per-event weights: shape ``(n,)``, finite, non-negative, positive sum.
    ``rows`` maps each weight to its row of the file (0-based, before a selection) for
    the error messages (default: its index)."""
    arr = np.asarray(w)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{name}: weights must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(f"{name}: expected {n} weights (one per event), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InputError(f"{name}: non-finite weight {arr[i]} at row {_file_row(i, rows)}")
    if (arr < 0).any():
        neg = arr < 0
        i = int(np.flatnonzero(neg)[0])
        mag = np.abs(arr) / np.abs(arr).max()  # sums of ~1e308 would overflow
        share = float(mag[neg].sum() / mag.sum())
        raise InputError(
            f"{name}: negative weight {arr[i]} at row {_file_row(i, rows)} ({int(neg.sum())} "
            f"of {arr.size} weights are negative, {100 * share:.3g}% of the sum of |w|); "
            "negative Monte Carlo weights are not supported by the weighted logistic loss "
            "(remove or absorb them first)"
        )
    if arr.size == 0 or arr.max() <= 0:  # (non-negative: a sum could overflow)
        raise InputError(f"{name}: weights sum to zero")
    return arr


# --------------------------------------------------------------------- reading


#: Suffixes of files holding several arrays or trees, one chosen with ``file:NAME``.
_KEYED_SUFFIXES = (".npz", ".root", ".h5", ".hdf5", ".hdf")


def _split_key(spec: str) -> tuple[Path, str | None]:
    """``file.npz:key`` -> (path, key); plain paths pass through."""
    p = Path(spec)
    if p.exists() or ":" not in spec:
        return p, None
    head, _, key = spec.rpartition(":")
    return Path(head), key or None


def read_events(
    spec: str | os.PathLike[str],
    columns: list[str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Read an events x features table (see :func:`read_table`): ``(events, names)``."""
    table = read_table(spec, columns)
    return table.events, table.names


@dataclass(frozen=True)
class Table:
    """Events read from a file.

    Attributes
    ----------
    events : numpy.ndarray
        Float64 array, validated (2-D, non-empty, finite).
    names : list of str
        Column names (header names, or ``x0, x1, ...`` when the file has none).
    has_header : bool
        Whether the names come from the file.
    weights : numpy.ndarray, optional
        Per-event weights read from a weight column (``weight_column``).
    n_read : int
        Events in the file before the selection.
    selected : numpy.ndarray, optional
        Boolean mask over the ``n_read`` events of the ones kept by the selection
        (``None`` without a selection).
    columns : tuple of str
        Every column of the file (features, weights and the others).
    """

    events: np.ndarray
    names: list[str]
    has_header: bool
    weights: np.ndarray | None = None
    n_read: int = 0
    selected: np.ndarray | None = None
    columns: tuple[str, ...] = ()


def read_table(
    spec: str | os.PathLike[str],
    columns: list[str] | None = None,
    *,
    selection: str | None = None,
    weight_column: str | None = None,
    allow_empty: bool = False,
) -> Table:
    """Read an events x features table from a file.

    Supported: ``.npy`` (2-D array), ``.npz`` (``file.npz`` with one array or
    ``file.npz:name``), delimited text (``.csv``, ``.tsv``, ``.txt``, ``.dat``;
    comma, tab, semicolon or whitespace separated, with or without a header row),
    ROOT TTrees (``file.root:tree``, flat branches; needs uproot), HDF5
    (``file.h5:dataset`` with a 2-D or compound dataset, or ``file.h5:group`` with
    one 1-D dataset per column; needs h5py) and Parquet (needs pyarrow).

    Parameters
    ----------
    spec : path
        The file, optionally with ``:key`` (npz array, ROOT tree, HDF5 path).
    columns : list of str or str, optional
        Columns to keep, by name or by 0-based index (default: all but the weight
        column); a string is split at commas, as ``--columns`` is.
    selection : str, optional
        Keep the events passing this expression over column names
        (:func:`nplearn.formats.evaluate_selection`).
    weight_column : str, optional
        A column holding per-event weights (returned in ``Table.weights``).
    allow_empty : bool
        Accept a table without events (a header only, or none passing the selection).

    Returns
    -------
    Table
    """
    if isinstance(columns, str):  # one name, or several written as on the command line
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    path, key = _split_key(str(spec))
    name = str(spec)
    if not path.exists():
        raise InputError(f"{name}: file not found")
    if path.is_dir():
        raise InputError(f"{name}: is a directory, not a file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(
            f"{name}: unsupported file type {suffix or '(none)'}; supported: "
            f"{', '.join(SUFFIXES)}"
        )
    if key is not None and suffix not in _KEYED_SUFFIXES:
        raise InputError(
            f"{name}: a {suffix} file holds one table, so ':{key}' names nothing in it "
            "(':NAME' chooses an array of an .npz, a tree of a ROOT file or a dataset of "
            "an HDF5 file)")
    from .formats import COLUMNAR_SUFFIXES, evaluate_selection, open_columns, selection_names

    # columns that number the events (a row index written by pandas): never a default
    # feature; names, indices, the weight column and the selection still refer to the
    # file's columns as written
    index_cols: list[str] = []
    if suffix in COLUMNAR_SUFFIXES:
        src = open_columns(path, key, name)
        all_names, has_header, arr_np = src.names, src.named, None
        index_cols = list(src.index_names)
    else:
        try:
            if suffix == ".npy":
                arr, names = _read_npy(path), None
            elif suffix == ".npz":
                arr, names = _read_npz(path, key), None
            else:
                arr, names = _read_text(path)
        except InputError:
            raise  # already names the problem
        except (OSError, ValueError, EOFError, UnicodeDecodeError, zipfile.BadZipFile,
                tokenize.TokenError, SyntaxError) as exc:  # e.g. a truncated .npz
            raise InputError(f"{name}: cannot be read ({type(exc).__name__}: {exc})") from exc
        arr_np = np.asarray(arr)
        if arr_np.ndim != 2:
            raise InputError(
                f"{name}: expected a 2-D array (events x features), got a {arr_np.ndim}-D "
                f"array of shape {arr_np.shape}" + (" (save one feature as x[:, None])"
                                                    if arr_np.ndim == 1 else "")
            )
        has_header = names is not None
        all_names = names if names is not None else [f"x{i}" for i in range(arr_np.shape[1])]
        if names is not None and "" in names:
            k = names.index("")
            if (k == 0 and names.count("") == 1
                    and np.array_equal(arr_np[:, 0], np.arange(arr_np.shape[0]))):
                index_cols = [""]  # pandas' DataFrame.to_csv writes the row index so
            elif not columns:
                raise InputError(
                    f"{name}: column {k} has no name in the header; name it, or choose the "
                    "feature columns (--columns)")
    dup = sorted(c for c, k in Counter(all_names).items() if k > 1)
    if dup:
        raise InputError(f"{name}: duplicate column name(s) {', '.join(map(repr, dup))}; "
                         "columns must be told apart by name")
    if weight_column is not None:
        weight_column = all_names[_column_index(weight_column, all_names, name)]
    if columns:
        wanted = [all_names[_column_index(c, all_names, name)] for c in columns]
        twice = [c for i, c in enumerate(wanted) if c in wanted[:i]]
        if twice:
            raise InputError(f"{name}: column {twice[0]!r} is selected twice (by name or by "
                             "index); every feature must be a different column")
        if weight_column in wanted:
            raise InputError(f"{name}: column {weight_column!r} holds the event weights and "
                             "is also selected as a feature; drop it from --columns")
    else:
        wanted = [c for c in all_names if c != weight_column and c not in index_cols]
        if index_cols:
            what = ("the unnamed first column holds 0, 1, 2, ...:" if index_cols == [""] else
                    f"column(s) {', '.join(index_cols)} hold")
            log.warning("%s: %s a row index as pandas writes it, not used as a feature",
                        name, what)
    if not wanted:
        raise InputError(f"{name}: no feature columns left")
    # Python reads the selection's names in Unicode normal form NFKC (a subscript ₜ
    # becomes t, a micro sign µ a Greek μ): the columns are matched in that form too
    in_expr = selection_names(selection) if selection else []
    sel_map = {}  # name as the selection reads it -> the column as written
    for c in in_expr:
        same = [n for n in all_names if unicodedata.normalize("NFKC", n) == c]
        if len(same) != 1:
            raise InputError(
                f"{name}: the selection uses column {c!r}, which the file does not have; "
                f"available: {', '.join(all_names)}" if not same else
                f"{name}: the selection's column {c!r} could be any of "
                f"{', '.join(map(repr, same))} (their names read alike); rename them")
        sel_map[c] = same[0]
    sel_cols = list(dict.fromkeys(sel_map.values()))
    need = list(dict.fromkeys([*wanted, *sel_cols, *([weight_column] if weight_column else [])]))
    if arr_np is None:
        cols = src.load(need)
        lengths = {c: len(v) for c, v in cols.items()}
        if len(set(lengths.values())) > 1:
            raise InputError(f"{name}: the columns have different lengths ("
                             + ", ".join(f"{c}: {k}" for c, k in lengths.items())
                             + "); one value per event is expected in every column")
    else:
        cols = {c: arr_np[:, all_names.index(c)] for c in need}
    n_read = len(next(iter(cols.values())))
    mask = None
    if selection:
        for c in sel_cols:
            bad = ~np.isfinite(np.asarray(cols[c], dtype=np.float64))
            if bad.any():
                raise InputError(f"{name}: non-finite value in column {c!r} (used by the "
                                 f"selection) at row {int(np.flatnonzero(bad)[0])}")
        mask = evaluate_selection(selection, {k: cols[v] for k, v in sel_map.items()},
                                  n_read)
        if not mask.any() and not allow_empty:
            raise InputError(f"{name}: no event passes the selection {selection!r} "
                             f"({n_read} events read)")
    events = np.column_stack([np.asarray(cols[c]) for c in wanted])
    weights = None
    if weight_column is not None:
        weights = np.asarray(cols[weight_column], dtype=np.float64)
    if mask is not None:
        events = events[mask]
        weights = None if weights is None else weights[mask]
    rows = None if mask is None else np.flatnonzero(mask)  # rows of the file, for errors
    events = as_events(events, name, columns=wanted, allow_empty=allow_empty, rows=rows)
    if weights is not None:
        weights = as_weights(weights, events.shape[0], f"{name}: weight column "
                                                       f"{weight_column!r}", rows)
    return Table(events, wanted, has_header, weights, n_read, mask, tuple(all_names))


def _column_index(c: str, names: list[str], fname: str) -> int:
    if c in names:
        return names.index(c)
    try:
        i = int(c)
    except ValueError:
        raise InputError(
            f"{fname}: no column named {c!r}; available: {', '.join(names)}"
        ) from None
    if not 0 <= i < len(names):
        raise InputError(f"{fname}: column index {i} out of range (0..{len(names) - 1})")
    return i


def _read_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        if key is None:
            if len(keys) != 1:
                raise InputError(
                    f"{path}: holds {len(keys)} arrays ({', '.join(keys)}); "
                    f"choose one with {path}:NAME"
                )
            key = keys[0]
        if key not in keys:
            raise InputError(f"{path}: no array {key!r}; available: {', '.join(keys)}")
        return z[key]


_TEXT_CHUNK_ROWS = 100_000


def _read_text(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """Read a delimited text file, ``_TEXT_CHUNK_ROWS`` rows at a time: the file's
    lines are never all held as strings, only one chunk of them and the numbers."""
    # numpy's savetxt writes its header as a comment ("# mjj,pt"): the last comment
    # before the first row names the columns when it reads like a header of that row
    comment = None
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for raw in fh:
            text = raw.strip()
            if text.startswith("#"):
                comment = text.lstrip("#").strip()
            elif text:
                break
    with open(path, newline="", encoding="utf-8-sig") as fh:  # tolerate a BOM
        # (line number in the file, text) of every line that is not blank or a comment
        rows = ((i, ln) for i, ln in enumerate((raw.rstrip("\r\n") for raw in fh), 1)
                if ln.strip() and not ln.lstrip().startswith("#"))
        head = list(itertools.islice(rows, 20))
        if not head:
            if comment:  # numpy's savetxt of no events: its commented header only
                names = comment.replace(",", " ").replace(";", " ").split()
                if names and not any(_is_number(v) for v in names):
                    return np.empty((0, len(names)), dtype=np.float64), names
            raise InputError(f"{path}: is empty (no rows)")
        try:
            delim = csv.Sniffer().sniff("\n".join(ln for _, ln in head),
                                        delimiters=",;\t ").delimiter
        except csv.Error:
            delim = "," if "," in head[0][1] else None

        def split(line: str) -> list[str]:
            if '"' in line and delim not in (None, " "):
                # quoted fields may hold the delimiter ("1,61" with a decimal comma)
                parts = next(csv.reader([line], delimiter=delim, skipinitialspace=True))
            else:
                parts = line.split(delim) if delim not in (None, " ") else line.split()
            return [p.strip().strip('"').strip("'") for p in parts]

        first = split(head[0][1])
        # a header names columns (no field is a number; an empty name is allowed, as in
        # pandas' index column); a data row holds numbers (an empty field is a missing
        # value, reported below). A first row with both is neither: taking it for a
        # header would drop an event silently.
        comma = [v for v in first if _DECIMAL_COMMA.fullmatch(v)]
        if comma:
            raise InputError(f"{path}: the first row holds {comma[0]!r}: a decimal comma? "
                             "numbers need a decimal point")
        header = any(v != "" and not _is_number(v) for v in first)
        if header and any(v != "" and _is_number(v) for v in first):
            if delim == "," and ";" in head[0][1]:
                raise InputError(f"{path}: the first row {head[0][1]!r} reads as a file "
                                 "separated by ';' with decimal commas; numbers need a "
                                 "decimal point")
            raise InputError(
                f"{path}: the first row mixes numbers and text "
                f"({', '.join(map(repr, first))}): "
                "a header must name every column and a data row may hold numbers only")
        default_names = [str(i) for i in range(len(first))]
        if not header and len(first) >= 2 and first == ["", *default_names[:-1]]:
            # pandas' DataFrame(x).to_csv(): its row index (unnamed) and the names it
            # gives unnamed columns, 0, 1, ... (an empty first field is no event)
            header = True
        elif not header and len(first) >= 2 and first == default_names:
            # DataFrame(x).to_csv(index=False) writes the same names, but an event may
            # read 0, 1, ... too: kept as an event, with a word
            log.warning("%s: the first row (%s) is read as an event; if it holds pandas' "
                        "default column names, write the file with named columns",
                        path, ",".join(first))
        names = first if header else None
        if not header and comment:
            named = split(comment)
            if len(named) == len(first) and all(v and not _is_number(v) for v in named):
                names = named
        ncol = len(first)
        body = itertools.chain(head[1:] if header else head, rows)
        parts: list[np.ndarray] = []
        start = 0
        while chunk := list(itertools.islice(body, _TEXT_CHUNK_ROWS)):
            arr = _parse_numbers([ln for _, ln in chunk], delim, ncol)
            if arr is None:
                arr = _parse_rows(path, chunk, start, ncol, names, split)
            parts.append(arr)
            start += len(chunk)
    if not parts:
        return np.empty((0, ncol), dtype=np.float64), names
    return (parts[0] if len(parts) == 1 else np.concatenate(parts)), names


def _parse_rows(path: Path, chunk: list[tuple[int, str]], start: int, ncol: int,
                names: list[str] | None,
                split: Callable[[str], list[str]]) -> np.ndarray:
    """The row-by-row reader: slow, but it names the row, line and column of a bad
    value (``chunk`` holds ``(line number, text)``; ``start`` is the index of its
    first row among the file's data rows)."""
    out = np.empty((len(chunk), ncol), dtype=np.float64)
    for i, (lineno, line) in enumerate(chunk):
        r = start + i
        vals = split(line)
        if len(vals) != ncol:
            raise InputError(
                f"{path}: row {r} (line {lineno}) has {len(vals)} fields, "
                f"expected {ncol}"
            )
        for c, v in enumerate(vals):
            try:
                out[i, c] = float(v) if v != "" else math.nan
            except ValueError:
                cname = f" ({names[c]!r})" if names else ""
                hint = ("; a decimal comma? numbers need a decimal point"
                        if _DECIMAL_COMMA.fullmatch(v) else "")
                raise InputError(
                    f"{path}: non-numeric value {v!r} at row {r} (line {lineno}), "
                    f"column {c}{cname}{hint}"
                ) from None
    return out


def _parse_numbers(body: list[str], delim: str | None, ncol: int) -> np.ndarray | None:
    """All rows at once with numpy's C parser (2-3x faster than the row-by-row
    reader on a 200000 x 5 file); ``None`` whenever a row is not plain numbers in
    ``ncol`` fields (quotes, empty fields, text), which the row-by-row reader then
    reports precisely."""
    import warnings

    if not body:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            arr = np.loadtxt(body, delimiter=None if delim in (None, " ") else delim,
                             dtype=np.float64, ndmin=2, comments=None)
    except (ValueError, TypeError, UserWarning):
        return None
    return arr if arr.shape == (len(body), ncol) else None


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file (provenance of inputs)."""
    h = hashlib.sha256()
    with open(_split_key(str(path))[0], "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------- writing


def to_jsonable(obj: Any) -> Any:
    """Convert numpy types and non-finite floats into strict-JSON values.

    NaN becomes ``null``; infinities become the strings ``"inf"``/``"-inf"``.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(obj, Path):
        return str(obj)
    return obj


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    try:  # Linux reports it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # elsewhere reading the umask means setting it: serialised between our threads
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable(path: str | os.PathLike[str],
                   inputs: Sequence[str | os.PathLike[str] | None] = ()) -> None:
    """Fail early, before any work, if ``path`` cannot be written, or if it is one of
    the ``inputs`` (files read by the same command: writing would replace them)."""
    p = Path(path)
    for name in inputs:
        if name is None:
            continue
        src = Path(_split_key(str(name))[0])
        if src.exists() and p.exists() and os.path.samefile(src, p):
            raise InputError(f"{p}: is an input of this command ({name}); writing the "
                             "result there would replace it: choose another output file")
    directory = p.parent if str(p.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{p}: directory {directory} does not exist")
    if p.is_dir():
        raise InputError(f"{p}: is a directory")
    if not os.access(directory, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise InputError(f"{p}: not writable")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as JSON (sorted keys) atomically: temp file + rename.

    A crash mid-write leaves any previous file intact. A symbolic link is followed
    (its target is replaced, the link kept) and an existing file keeps its
    permissions.
    """
    text = json.dumps(to_jsonable(obj), sort_keys=True, indent=2, allow_nan=False) + "\n"
    write_text_atomic(path, text)


def _host_tag() -> str:
    return (re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host")[:60]


#: Name of a temporary file of :func:`write_text_atomic`: ``.<name>.nplearn-<host>-<pid>.
#: <random>.tmp``, so that one left by a killed process can be recognised.
_TEMP_NAME = re.compile(r"^\..*\.nplearn-(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.[^.]*\.tmp$")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same folder, fsync,
    rename); see :func:`write_json_atomic`. The temporary file's name records the
    host and process, for :func:`remove_stale_temporaries`."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.exists():
        raise InputError(f"{path}: directory {directory} does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a directory (give a file name)")
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()  # a new file: the usual permissions
    # the name is cut so that the temporary name stays within file-name limits
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name[:120]}.nplearn-{_host_tag()}-{os.getpid()}.",
        suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp creates the file private (0600)
        os.replace(tmp, path)
        _fsync_directory(directory)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


#: Age (seconds since the last write) from which a temporary file of a dead writer
#: is removed.
STALE_TEMPORARY_S = 60.0


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> int:
    """Remove the temporary files that :func:`write_text_atomic` left in ``directory``
    when its process was killed mid-write (e.g. a toy worker terminated by Ctrl-C or
    SIGTERM). Only files of this host whose process no longer runs, untouched for
    :data:`STALE_TEMPORARY_S` seconds, are removed: other processes, other hosts (and
    containers with their own process numbers) sharing the folder, may still be
    writing theirs, which takes milliseconds.

    Returns
    -------
    int
        The number of files removed.
    """
    removed = 0
    for name in left_by_dead_processes(directory, _TEMP_NAME):
        path = os.path.join(directory, name)
        try:
            if time.time() - os.stat(path).st_mtime < STALE_TEMPORARY_S:
                continue
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed


def left_by_dead_processes(directory: str | os.PathLike[str],
                           pattern: re.Pattern[str]) -> list[str]:
    """Names in ``directory`` that match ``pattern`` (with groups ``host`` and ``pid``)
    and belong to a process of this host that no longer runs."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    host, out = _host_tag(), []
    for name in names:
        m = pattern.match(name)
        if m is not None and m["host"] == host and not _process_alive(int(m["pid"])):
            out.append(name)
    return out


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True
