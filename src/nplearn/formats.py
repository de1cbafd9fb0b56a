"""Columnar input formats (ROOT TTrees/RNTuples, HDF5, Parquet) and event selections.

Each reader returns a :class:`Columns` source: the available column names and a
way to load some of them as 1-D float arrays, so only the columns a test needs
are read. The optional packages are imported lazily; a missing one gives an
error naming the extra to install.

Selections (``--selection``) are expressions over column names, evaluated
element-wise with numpy: comparisons (``<``, ``<=``, ``>``, ``>=``, ``==``,
``!=``), ``and``/``or``/``not`` (also written ``&&``, ``||``, ``!``; as in ROOT,
``!`` binds tighter than a comparison, so ``!x < 1`` is refused as ambiguous and
``!(x < 1)`` negates the comparison), ``&``/``|``
between parenthesised conditions (``(x > 0) | (y > 0)``; ``x > 0 | y > 0`` is refused,
since Python reads it as ``x > (0 | y) > 0``), arithmetic (``+ - * / ** %``) and
the functions ``abs``, ``sqrt``, ``log``, ``exp``, ``sin``, ``cos``, ``tan``,
``sinh``, ``cosh``, ``tanh``, ``arctan2``, ``hypot``, ``minimum``, ``maximum``.
A column whose name is not an identifier is written in backticks
(`` `Jet.pt` > 20``). Nothing else is evaluated.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, MissingDependencyError

__all__ = ["COLUMNAR_SUFFIXES", "Columns", "evaluate_selection", "open_columns",
           "selection_names"]

COLUMNAR_SUFFIXES = (".root", ".h5", ".hdf5", ".hdf", ".parquet", ".pq")


@dataclass
class Columns:
    """A source of named 1-D columns.

    Attributes
    ----------
    names : list of str
        Available columns, in file order.
    load : callable
        ``load(names) -> dict name -> 1-D numpy array`` (same length).
    index_names : list of str
        Columns that hold a row index written by pandas, not event features.
    named : bool
        Whether the file names the columns (False for the ``x0, x1, ...`` made up for
        the columns of a 2-D dataset).
    """

    names: list[str]
    load: Callable[[list[str]], dict[str, np.ndarray]]
    index_names: list[str] = field(default_factory=list)
    named: bool = True


def _numeric_1d(arr: Any, label: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype == object:
        raise InputError(f"{label}: has a variable number of values per event (jagged); "
                         "select a fixed element or a flat column")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise InputError(f"{label}: values must be numeric, got dtype {a.dtype}")
    if a.ndim != 1:
        raise InputError(f"{label}: expected one value per event, got shape {a.shape}")
    return a.astype(np.float64, copy=False)


# ----------------------------------------------------------------------------- ROOT
def _root(path: Path, key: str | None, spec: str) -> Columns:
    try:
        import uproot
    except ImportError:
        raise MissingDependencyError("uproot", "root", "reading ROOT files") from None
    try:
        f = uproot.open(path)
    except Exception as exc:
        raise InputError(f"{spec}: cannot be read as a ROOT file ({type(exc).__name__}: "
                         f"{exc})") from None
    try:
        classes = f.classnames()
    except Exception as exc:  # a truncated or damaged file
        raise InputError(f"{spec}: cannot be read as a ROOT file ({type(exc).__name__}: "
                         f"{exc})") from None
    trees = [k.split(";")[0] for k, cls in classes.items()
             if cls in ("TTree", "TNtuple", "ROOT::RNTuple")]
    trees = list(dict.fromkeys(trees))
    if key is None:
        if len(trees) != 1:
            raise InputError(f"{spec}: holds {len(trees)} trees ({', '.join(trees) or 'none'}); "
                             f"choose one with {path}:TREE")
        key = trees[0]
    if key not in trees:
        raise InputError(f"{spec}: no tree named {key!r}; trees in the file: "
                         f"{', '.join(trees) or 'none'}")
    try:
        tree = f[key]
        try:
            names = [str(b) for b in tree.keys(recursive=False)]
        except TypeError:  # RNTuple: keys() takes no recursion option
            names = [str(b) for b in tree.keys()]
    except Exception as exc:
        raise InputError(f"{spec}: the tree {key!r} cannot be read ({type(exc).__name__}: "
                         f"{exc})") from None

    def load(cols: list[str]) -> dict[str, np.ndarray]:
        try:
            arrays = tree.arrays(cols, library="np")
        except Exception as exc:
            raise InputError(f"{spec}: cannot read branches {', '.join(cols)} "
                             f"({type(exc).__name__}: {exc})") from None
        return {c: _numeric_1d(arrays[c], f"{spec}: branch {c!r}") for c in cols}

    return Columns(names, load)


# ----------------------------------------------------------------------------- HDF5
def _hdf5(path: Path, key: str | None, spec: str) -> Columns:
    try:
        import h5py
    except ImportError:
        raise MissingDependencyError("h5py", "hdf5", "reading HDF5 files") from None
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{spec}: cannot be read as an HDF5 file ({exc})") from None
    obj = f if key is None else f.get(key)
    if obj is None:
        raise InputError(f"{spec}: no dataset or group {key!r}; top level: "
                         f"{', '.join(f.keys()) or 'empty'}")
    if key is None:
        two_d = [k for k, v in f.items() if isinstance(v, h5py.Dataset) and v.ndim == 2]
        one_d = [k for k, v in f.items() if isinstance(v, h5py.Dataset) and v.ndim == 1]
        if len(two_d) == 1 and not one_d:
            obj = f[two_d[0]]
        elif not one_d or two_d:
            # several 2-D datasets, or 2-D next to 1-D ones (events next to a weight
            # column, say): reading either would silently drop the other
            raise InputError(f"{spec}: choose a dataset or group with {path}:NAME (top level: "
                             f"{', '.join(f.keys()) or 'empty'})")
    if isinstance(obj, h5py.Dataset):
        if obj.dtype.names:  # compound: one field per column
            names = list(obj.dtype.names)
            return Columns(names, lambda cols: {c: _numeric_1d(obj[c], f"{spec}: field {c!r}")
                                                for c in cols})
        if obj.ndim != 2:
            raise InputError(f"{spec}: dataset has shape {obj.shape}; expected a 2-D "
                             "events x features dataset or a group of 1-D datasets")
        names = [f"x{i}" for i in range(obj.shape[1])]
        data = np.asarray(obj[()])
        return Columns(names, lambda cols: {c: _numeric_1d(data[:, names.index(c)],
                                                           f"{spec}: column {c!r}")
                                            for c in cols}, named=False)
    names = [k for k, v in obj.items() if isinstance(v, h5py.Dataset) and v.ndim == 1]
    if not names:
        raise InputError(f"{spec}: the group holds no 1-D datasets (one per column expected)")
    other = [k for k, v in obj.items() if isinstance(v, h5py.Dataset) and v.ndim >= 2]
    if other:
        # e.g. a 2-D events dataset next to a 1-D weight column: taking the 1-D ones as
        # the columns would drop the events silently
        raise InputError(f"{spec}: the group mixes 1-D datasets ({', '.join(names)}) with "
                         f"multi-dimensional ones ({', '.join(other)}); choose one with "
                         f"{path}:{'' if key is None else key.rstrip('/') + '/'}NAME")

    def load(cols: list[str]) -> dict[str, np.ndarray]:
        return {c: _numeric_1d(obj[c][()], f"{spec}: dataset {c!r}") for c in cols}

    return Columns(names, load)


# -------------------------------------------------------------------------- Parquet
def _parquet(path: Path, key: str | None, spec: str) -> Columns:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError("pyarrow", "parquet", "reading Parquet files") from None
    try:
        schema = pq.read_schema(path)
    except Exception as exc:
        raise InputError(f"{spec}: cannot be read as a Parquet file ({type(exc).__name__}: "
                         f"{exc})") from None
    names = list(schema.names)
    try:
        # pandas stores a non-default row index as a column (`__index_level_0__`)
        index_cols = [c for c in (schema.pandas_metadata or {}).get("index_columns", [])
                      if isinstance(c, str) and c in names]
    except (ValueError, TypeError, AttributeError):  # malformed metadata: keep them all
        index_cols = []

    def load(cols: list[str]) -> dict[str, np.ndarray]:
        try:
            table = pq.read_table(path, columns=cols)
        except Exception as exc:  # a damaged body behind a readable schema
            raise InputError(f"{spec}: cannot be read as a Parquet file "
                             f"({type(exc).__name__}: {exc})") from None
        out = {}
        for c in cols:
            col = table.column(c)
            import pyarrow as pa

            kind = col.type
            if pa.types.is_dictionary(kind):
                kind = kind.value_type
            if pa.types.is_list(kind) or pa.types.is_large_list(kind) or \
                    pa.types.is_fixed_size_list(kind) or pa.types.is_nested(kind):
                raise InputError(f"{spec}: column {c!r} has a variable number of values per "
                                 "event (jagged); select a fixed element or a flat column")
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                    or pa.types.is_boolean(kind)):
                raise InputError(f"{spec}: column {c!r} is not numeric (type {col.type})")
            if col.null_count:
                raise InputError(f"{spec}: column {c!r} has {col.null_count} missing value(s)")
            try:
                arr = col.to_numpy()
            except Exception as exc:
                raise InputError(f"{spec}: column {c!r} cannot be read as numbers "
                                 f"({type(exc).__name__}: {exc})") from None
            out[c] = _numeric_1d(arr, f"{spec}: column {c!r}")
        return out

    return Columns(names, load, index_cols)


def open_columns(path: Path, key: str | None, spec: str) -> Columns:
    """A :class:`Columns` source for a ROOT, HDF5 or Parquet file."""
    suffix = path.suffix.lower()
    if suffix == ".root":
        return _root(path, key, spec)
    if suffix in (".h5", ".hdf5", ".hdf"):
        return _hdf5(path, key, spec)
    if suffix in (".parquet", ".pq"):
        return _parquet(path, key, spec)
    raise InputError(f"{spec}: not a columnar format")


# ----------------------------------------------------------------------- selections
_FUNCS: dict[str, Callable[..., Any]] = {
    "abs": np.abs, "sqrt": np.sqrt, "log": np.log, "exp": np.exp, "sin": np.sin,
    "cos": np.cos, "tan": np.tan, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "arctan2": np.arctan2, "hypot": np.hypot, "minimum": np.minimum, "maximum": np.maximum,
}
#: number of arguments of each function (numpy ufuncs take an extra output argument,
#: which a selection must never reach: it would overwrite a column)
_ARITY = {name: (2 if name in ("arctan2", "hypot", "minimum", "maximum") else 1)
          for name in _FUNCS}
_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
           ast.Div: np.true_divide, ast.Pow: np.power, ast.Mod: np.mod,
           ast.BitAnd: np.logical_and, ast.BitOr: np.logical_or}
_CMPOPS = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater,
           ast.GtE: np.greater_equal, ast.Eq: np.equal, ast.NotEq: np.not_equal}


def _short(expr: str) -> str:
    """``expr`` quoted, cut at 80 characters (absurdly long selections)."""
    return repr(expr[:80]) + ("..." if len(expr) > 80 else "")


_QUOTED = re.compile(r"`([^`]*)`")
_PLACEHOLDER = "__nplearn_column_{}__"


def _parse(expr: str) -> tuple[ast.Expression, dict[str, str]]:
    """The expression's syntax tree, and the column names written in backticks
    (`` `Jet.pt` ``) by the placeholder identifiers that stand for them."""
    quoted: dict[str, str] = {}

    def hold(m: re.Match[str]) -> str:
        if not m.group(1):
            raise InputError(f"selection {_short(expr)}: empty column name ``")
        key = _PLACEHOLDER.format(len(quoted))
        # in NFKC form, as Python reads the names outside backticks
        quoted[key] = unicodedata.normalize("NFKC", m.group(1))
        return f" {key} "

    text = _QUOTED.sub(hold, expr)
    if "`" in text:
        raise InputError(f"selection {_short(expr)}: unmatched backtick (write a column "
                         "name that is not an identifier as `name`)")
    text = text.replace("&&", " and ").replace("||", " or ")
    # ROOT's `!` binds tighter than comparisons and arithmetic, as Python's `~` does
    text = re.sub(r"!(?!=)", " ~", text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise InputError(f"selection {expr!r} is not a valid expression ({exc.msg})") from None
    except (RecursionError, MemoryError, ValueError) as exc:  # absurdly nested, NUL bytes
        raise InputError(f"selection {_short(expr)} cannot "
                         f"be parsed ({type(exc).__name__})") from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Compare, ast.BinOp)):
            parts = ([node.left, *node.comparators] if isinstance(node, ast.Compare)
                     else [node.left, node.right])
            if (not (isinstance(node, ast.BinOp)
                     and isinstance(node.op, (ast.BitAnd, ast.BitOr)))
                    and any(isinstance(p, ast.UnaryOp) and isinstance(p.op, ast.Invert)
                            for p in parts)):
                # `!x < 1` is `(!x) < 1` in ROOT and C, `not (x < 1)` in Python
                raise InputError(
                    f"selection {_short(expr)}: '!' (or '~') before a comparison or "
                    "arithmetic is ambiguous; write !(x < 1) to negate the comparison")
    return tree, quoted


def _column(node: ast.Name, quoted: dict[str, str]) -> str:
    return quoted.get(node.id, node.id)


def selection_names(expr: str) -> list[str]:
    """Column names an expression refers to (function names excluded; names written
    in backticks as written)."""
    tree, quoted = _parse(expr)
    funcs = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name)}
    return sorted({_column(n, quoted) for n in ast.walk(tree)
                   if isinstance(n, ast.Name) and n.id not in funcs})


def _is_condition(node: ast.AST) -> bool:
    """Whether ``node`` is a true/false expression: a comparison, a logical
    operation, ``not``/``~`` of one, ``&``/``|`` of two, or ``True``/``False``."""
    if isinstance(node, (ast.Compare, ast.BoolOp)):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
        return _is_condition(node.left) and _is_condition(node.right)
    return isinstance(node, ast.Constant) and isinstance(node.value, bool)


def evaluate_selection(expr: str, columns: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Boolean mask of the events passing ``expr`` (see the module docstring)."""

    def num(v: Any) -> Any:
        # arithmetic in floats, as for the constants: integer columns would wrap
        # around (int32 products), unsigned ones underflow, boolean ones add as OR;
        # comparisons and bare columns keep the columns' own type
        return np.asarray(v, dtype=np.float64)

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            # float arithmetic throughout: no integer wrap-around (2 ** 64) and no
            # error for negative integer powers (2 ** -1)
            try:
                return float(node.value)
            except OverflowError:
                raise InputError(f"selection {expr!r}: the number {node.value} is too "
                                 "large") from None
        if isinstance(node, ast.Name):
            col = _column(node, quoted)
            if col not in columns:
                raise InputError(f"selection {expr!r}: unknown column {col!r}")
            return columns[col]
        if isinstance(node, ast.BoolOp):
            vals = [ev(v) for v in node.values]
            f = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = vals[0]
            for v in vals[1:]:
                out = f(out, v)
            return out
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            if isinstance(node.op, (ast.Not, ast.Invert)):
                return np.logical_not(v)
            if isinstance(node.op, ast.USub):
                return np.negative(num(v))
            if isinstance(node.op, ast.UAdd):
                return v
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            # `&` and `|` bind tighter than comparisons (`x > 0 | y > 0` is
            # `x > (0 | y) > 0`): accept them between conditions only
            for side in (node.left, node.right):
                if not _is_condition(side):
                    sym = "&" if isinstance(node.op, ast.BitAnd) else "|"
                    word = "&&" if sym == "&" else "||"
                    raise InputError(
                        f"selection {expr!r}: {sym!r} joins conditions only and binds "
                        f"tighter than comparisons; write (a > 1) {sym} (b < 2) with "
                        f"parentheses, or use {word!r}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](num(ev(node.left)), num(ev(node.right)))
        if isinstance(node, ast.Compare):
            left, out = ev(node.left), True
            for op, comp in zip(node.ops, node.comparators, strict=True):
                if type(op) not in _CMPOPS:
                    break
                right = ev(comp)
                out = np.logical_and(out, _CMPOPS[type(op)](left, right))
                left = right
            else:
                return out
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _FUNCS and not node.keywords):
            name, want = node.func.id, _ARITY[node.func.id]
            if len(node.args) != want:
                raise InputError(f"selection {expr!r}: {name}() takes {want} argument"
                                 f"{'s' if want > 1 else ''}, got {len(node.args)}")
            args = [np.asarray(ev(a), dtype=np.float64) for a in node.args]
            return _FUNCS[name](*args)
        element = ast.unparse(node)
        for key, col in quoted.items():
            element = element.replace(key, f"`{col}`")
        raise InputError(f"selection {expr!r}: unsupported element {element!r}")

    tree, quoted = _parse(expr)
    try:
        with np.errstate(all="ignore"):
            mask = np.broadcast_to(np.asarray(ev(tree)), (n,))
    except RecursionError:
        raise InputError(f"selection {_short(expr)} is "
                         "nested too deeply to evaluate") from None
    if mask.dtype != np.bool_:
        raise InputError(f"selection {expr!r} does not give true/false per event")
    return np.array(mask)
