"""Checkpoints of toy calibrations: one small record per finished toy.

With a checkpoint folder, every toy is written as soon as it finishes, as
``DIR/<fingerprint>/toy_<index>.json`` (temporary file + rename, so a record is
either complete or absent, whatever kills the run). The fingerprint hashes
everything that defines a toy: the learner settings, the expected yield, the
master seed, the toy family (stream), the widths, the comparison tests, the
reference pool (its bytes) or the toy generator (its pickle and the source of the
module that defines it), and the nplearn version and source digest (so records
written by other code are not reused). A rerun with the same definition finds its
folder and skips the toys already there; a different definition gets a different
folder, so records of different calibrations never mix.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import math
import os
import pickle
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__, source_digest
from .errors import InputError
from .io import remove_stale_temporaries, write_json_atomic, write_text_atomic

__all__ = ["ToyCheckpoint", "check_checkpoint_folder", "describe_differences",
           "engine_fingerprint", "fingerprint_parts", "generator_source_digest"]

log = logging.getLogger(__name__)

_FLOAT_FIELDS = ("t", "n_w", "grad_norm", "suboptimality", "time")


def _array_digest(h: Any, a: np.ndarray | None) -> None:
    if a is None:
        h.update(b"none")
        return
    a = np.ascontiguousarray(a)
    h.update(str(a.dtype).encode() + str(a.shape).encode())
    try:
        h.update(memoryview(a).cast("B"))  # no copy of large arrays
    except (TypeError, ValueError):  # formats a memoryview cannot cast (e.g. structured)
        h.update(a.tobytes())


def _source_target(gen: Any) -> Any:
    """The function or class whose definition makes ``gen`` (partials, methods,
    callable instances unwrapped)."""
    for _ in range(10):
        if isinstance(gen, functools.partial):
            gen = gen.func
        elif inspect.ismethod(gen):
            gen = gen.__func__
        else:
            break
    if inspect.isfunction(gen) or inspect.isclass(gen):
        return gen
    return type(gen)


def generator_source_digest(gen: Any) -> str:
    """SHA-256 (hex) of what defines the toy generator's code.

    The source of the whole module that defines the generator's function or class:
    its body, the constants, defaults and helpers it uses, base classes, anything
    else there. Any edit of that module (a script's other lines too) therefore
    starts a new calibration; keep a generator you want to extend over edits in a
    module of its own. Modules it imports are not covered. Where the source cannot
    be read (a function typed at an interactive prompt), the compiled code, names
    and constants are digested, with the globals it uses (plain values by value,
    others by their pickle). The generator's pickle, also in the fingerprint,
    covers the state of a callable instance or a partial's arguments.
    """
    target = _source_target(gen)
    h = hashlib.sha256(f"{getattr(target, '__module__', '')}."
                       f"{getattr(target, '__qualname__', '')}".encode())
    module = inspect.getmodule(target)
    try:
        h.update(inspect.getsource(module if module is not None else target).encode())
        return h.hexdigest()
    except (OSError, TypeError):
        pass
    _digest_callable(h, target, 0, set())
    return h.hexdigest()


def _code_names(code: Any) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if inspect.iscode(c):
            names |= _code_names(c)
    return names


def _digest_code(h: Any, code: Any) -> None:
    """Compiled code with its names and constants; nested code objects recursively
    (their repr holds memory addresses), set constants in a fixed order."""
    h.update(code.co_code + repr(code.co_names).encode())
    for c in code.co_consts:
        if inspect.iscode(c):
            _digest_code(h, c)
        elif isinstance(c, frozenset):
            h.update(repr(sorted(map(repr, c))).encode())
        else:
            h.update(repr(c).encode())


def _digest_value(h: Any, name: str, v: Any, module: str, depth: int, seen: set[int]) -> None:
    if isinstance(v, (bool, int, float, complex, str, bytes, type(None))):
        h.update(f"{name}={v!r};".encode())
    elif isinstance(v, np.ndarray) and v.dtype != object:
        h.update(name.encode())
        _array_digest(h, v)
    elif isinstance(v, (list, tuple, dict)):
        try:
            h.update(f"{name}={json.dumps(v, sort_keys=True)};".encode())
        except (TypeError, ValueError):
            pass
    elif (inspect.isfunction(v) or inspect.isclass(v)) and getattr(v, "__module__", None) == module:
        _digest_callable(h, v, depth + 1, seen)
    elif not (inspect.ismodule(v) or inspect.isbuiltin(v) or inspect.isfunction(v)
              or inspect.isclass(v)):
        try:  # anything else (a config object, a frozen distribution): by its pickle
            h.update(name.encode() + pickle.dumps(v))
        except Exception:
            h.update(f"{name}:{type(v).__qualname__};".encode())


def _digest_callable(h: Any, obj: Any, depth: int, seen: set[int]) -> None:
    if id(obj) in seen or depth > 5:
        return
    seen.add(id(obj))
    funcs = [obj] if inspect.isfunction(obj) else (
        [v for v in vars(obj).values() if inspect.isfunction(v)] if inspect.isclass(obj) else [])
    try:
        h.update(inspect.getsource(obj).encode())
    except (OSError, TypeError):
        for f in funcs:
            _digest_code(h, f.__code__)
    for f in funcs:
        g = f.__globals__
        for name in sorted(_code_names(f.__code__)):
            if name in g:
                _digest_value(h, name, g[name], f.__module__, depth, seen)


def _digest_of(*arrays: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        _array_digest(h, a)
    return h.hexdigest()[:16]


def fingerprint_parts(engine: Any) -> dict[str, Any]:
    """What defines the toys of ``engine``, part by part: settings as they are, arrays
    (reference, pool, probe), the toy generator and the standardisation by digests.
    :func:`engine_fingerprint` hashes them; a checkpoint folder keeps them in
    ``fingerprint.json`` so that a refused merge can say which part differs."""
    parts: dict[str, Any] = {
        "nplearn": __version__,
        # the code, not only the version: records of other code are not reused
        "nplearn_source": source_digest(),
        "learner_params": {k: repr(v) for k, v in sorted(engine.learner_params.items())
                           if k != "memory_budget"},
        "expected": repr(float(engine.expected)), "seed": int(engine.seed),
        "stream": int(engine.stream), "shared_centers": bool(engine.shared_centers),
        "shape_only": bool(engine.shape_only), "sigmas": [repr(float(s)) for s in engine.sigmas],
        "extra_stats": list(engine.extra_stats),
        "extra_max_ref": engine.extra_max_ref,
    }
    if len(engine.sigmas) > 1:
        # several widths: the fitting order and the warm starts are part of the procedure
        parts["width_fits"] = "widest first, warm" if engine.warm_start else "widest first, cold"
    parts["reference_pool"] = _digest_of(engine.pool, engine.pool_weights)
    parts["reference_events"] = _digest_of(engine.reference, engine.reference_weights)
    # what each record holds besides t
    parts["probe"] = (None if engine.probe is None else _digest_of(*engine.probe.arrays()))
    parts["generator"] = None
    if engine.generator is not None:
        h = hashlib.sha256()
        try:
            h.update(pickle.dumps(engine.generator))
        except Exception as exc:
            raise InputError(f"the toy generator cannot be fingerprinted for checkpoints "
                             f"({exc}); define it at module level") from None
        # a function pickles by name only: its module's source identifies its body and
        # the module-level constants it reads
        h.update(generator_source_digest(engine.generator).encode())
        parts["generator"] = h.hexdigest()[:16]
    parts["standardizer"] = (None if engine.standardizer is None else hashlib.sha256(
        json.dumps(engine.standardizer.to_dict(), sort_keys=True).encode()).hexdigest()[:16])
    return parts


def engine_fingerprint(engine: Any, parts: dict[str, Any] | None = None) -> str:
    """SHA-256 (hex) of everything that determines the toys of ``engine`` (of its
    :func:`fingerprint_parts`, when given, computed otherwise)."""
    parts = fingerprint_parts(engine) if parts is None else parts
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


#: What a part of the fingerprint is, for a refused merge.
_PART_WORDS = {
    "nplearn": "the nplearn version", "nplearn_source": "the nplearn code",
    "learner_params": "the learner settings", "expected": "the expected yield",
    "seed": "the seed", "stream": "the toy family", "sigmas": "the kernel widths",
    "reference_pool": "the reference sample", "reference_events": "the reference sample",
    "probe": "the probe of f", "generator": "the toy generator",
    "standardizer": "the standardisation", "extra_stats": "the comparison tests",
}


def describe_differences(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """The parts two fingerprints differ in, in words (``learner_params: lam``)."""
    out = []
    for k in sorted(set(ours) | set(theirs)):
        a, b = ours.get(k), theirs.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys = sorted(j for j in set(a) | set(b) if a.get(j) != b.get(j))
            diff = ", ".join(f"{j}: {b.get(j)} there, {a.get(j)} here" for j in keys)
            out.append(f"{k} ({diff})")
        else:
            out.append(f"{k} ({_PART_WORDS.get(k, k)})")
    return "; ".join(out) or "nothing recorded"


def _settings(threads: int | None = None) -> dict[str, Any]:
    """What, besides the fingerprint, moves a toy's t in its last digits: the torch
    threads (BLAS reduction order) and the numpy and torch versions."""
    import torch

    return {"threads_per_worker": int(threads if threads is not None
                                      else torch.get_num_threads()),
            "numpy": np.__version__, "torch": torch.__version__}


def _probe_write(directory: Path) -> None:
    """Write and remove a small file: a folder that exists but cannot take records
    fails now, not after hours of fits."""
    fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=directory)  # a name of its own
    os.close(fd)
    Path(probe).unlink(missing_ok=True)


def check_checkpoint_folder(root: str | Path) -> None:
    """Fail early, before any fit, if the checkpoint folder ``root`` cannot be
    created or written (the record folder of the calibration is made later)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: exists and is not a folder (--checkpoint needs a folder)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        _probe_write(root)
    except OSError as exc:
        raise InputError(f"{root}: cannot write checkpoint records there "
                         f"({exc.strerror or exc})") from None


class ToyCheckpoint:
    """The record folder of one calibration.

    Parameters
    ----------
    root : str or Path
        The checkpoint folder given by the user (created if missing).
    fingerprint : str
        :func:`engine_fingerprint` of the calibration.
    read_only : bool
        Only read records (merging): nothing is created in ``root``, and a missing
        record folder of this calibration is an error.
    memory_budget : int, optional
        The budget the toys of this run use (recorded with each toy, with the host:
        records of another budget agree to ~1e-8 relative, not bit for bit).
    parts : dict, optional
        :func:`fingerprint_parts` of the calibration, kept as ``fingerprint.json``
        (a refused merge names the parts that differ).
    threads : int, optional
        The torch threads of this run's toys. Each record keeps the threads and the
        numpy and torch versions of the process that wrote it; records that differ
        from this run's are counted in ``loaded_settings`` (they agree to rounding,
        not bit for bit).

    Attributes
    ----------
    loaded_budgets : dict
        ``{memory_budget: count}`` of the records :meth:`load` returned (``None``
        for records that do not say).
    loaded_settings : dict
        ``{"threads_per_worker 2": count, "torch 2.11.0": count, ...}``: records whose
        settings differ from this run's, per differing setting.
    """

    def __init__(self, root: str | Path, fingerprint: str, read_only: bool = False,
                 memory_budget: int | None = None,
                 parts: dict[str, Any] | None = None, threads: int | None = None) -> None:
        self.memory_budget = memory_budget
        self.loaded_budgets: dict[int | None, int] = {}
        self.settings = _settings(threads)
        self.loaded_settings: dict[str, int] = {}
        self.read_only = read_only
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root}: exists and is not a folder (--checkpoint needs a "
                             "folder)")
        self.fingerprint = fingerprint
        self.dir = self.root / fingerprint[:16]
        if read_only:
            marker = self.dir / "fingerprint.txt"
            if not marker.is_file() or marker.read_text().strip() != fingerprint:
                others = sorted(p.parent for p in self.root.glob("*/fingerprint.txt")) \
                    if self.root.is_dir() else []
                said = []
                for o in others[:3]:
                    try:
                        theirs = json.loads((o / "fingerprint.json").read_text())
                    except (OSError, ValueError):
                        continue
                    if parts is not None and isinstance(theirs, dict):
                        said.append(f"{o.name} differs in {describe_differences(parts, theirs)}")
                raise InputError(
                    f"{self.root}: holds no records of this configuration (expected the "
                    f"folder {fingerprint[:16]}"
                    + (f"; found records of {len(others)} other configuration(s)"
                       if others else "") + "); check --config and the record folder"
                    + "".join(f"\n  {line}" for line in said))
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{self.dir}: cannot create the checkpoint folder "
                             f"({exc.strerror or exc})") from None
        marker = self.dir / "fingerprint.txt"
        if marker.exists():
            if marker.read_text().strip() != fingerprint:
                raise InputError(f"{self.dir}: holds records of a different calibration "
                                 "(fingerprint mismatch); use another checkpoint folder")
        try:
            if not marker.exists():  # shards starting together write the same text
                write_text_atomic(marker, fingerprint + "\n")
            if parts is not None and not (self.dir / "fingerprint.json").exists():
                write_json_atomic(self.dir / "fingerprint.json", parts)
            _probe_write(self.dir)
        except OSError as exc:
            raise InputError(f"{self.dir}: cannot write checkpoint records there "
                             f"({exc.strerror or exc})") from None
        n = remove_stale_temporaries(self.dir)
        if n:
            log.info("removed %d temporary file(s) left by killed writers in %s", n, self.dir)

    def path(self, index: int) -> Path:
        """Record file of toy ``index``."""
        return self.dir / f"toy_{int(index):09d}.json"

    def write(self, result: Any) -> None:
        """Persist one finished toy (atomically)."""
        try:
            write_json_atomic(self.path(result.index), {
                "fingerprint": self.fingerprint, "toy": result.to_dict(),
                "memory_budget": self.memory_budget, "host": platform.node(),
                "settings": _settings()})  # of the process that ran the toy
        except OSError as exc:
            raise InputError(
                f"{self.dir}: cannot write the record of toy {result.index} "
                f"({exc.strerror or exc}); the records already written are kept: free "
                "space (or fix the folder) and rerun to resume") from None

    def load(self, indices: list[int]) -> dict[int, Any]:
        """Records present for ``indices`` (unreadable or foreign ones are skipped)."""
        from .toys import ToyResult

        out: dict[int, Any] = {}
        for i in indices:
            p = self.path(i)
            if not p.exists():
                continue
            try:
                rec = json.loads(p.read_text(encoding="utf-8"))
                if not isinstance(rec, dict) or not isinstance(rec.get("toy"), dict):
                    raise ValueError("not a toy record")
                if rec.get("fingerprint") != self.fingerprint:
                    raise ValueError("fingerprint mismatch")
                d = rec["toy"]
                for k in _FLOAT_FIELDS:
                    d[k] = math.nan if d[k] is None else float(d[k])
                d["t_widths"] = [math.nan if v is None else float(v) for v in d["t_widths"]]
                d["n_w_widths"] = [math.nan if v is None else float(v)
                                   for v in d["n_w_widths"]]
                d["extra"] = {k: math.nan if v is None else float(v)
                              for k, v in d["extra"].items()}
                res = ToyResult(**d)
                if res.index != i:
                    raise ValueError("index mismatch")
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("ignoring unreadable checkpoint record %s (%s); %s", p, exc,
                            "the toy counts as missing" if self.read_only else
                            "the toy reruns")
                continue
            out[i] = res
            budget = rec.get("memory_budget")
            self.loaded_budgets[budget] = self.loaded_budgets.get(budget, 0) + 1
            theirs = rec.get("settings")
            if isinstance(theirs, dict):
                for k, v in theirs.items():
                    if self.settings.get(k) is not None and v != self.settings[k]:
                        key = f"{k} {v}"
                        self.loaded_settings[key] = self.loaded_settings.get(key, 0) + 1
        return out
