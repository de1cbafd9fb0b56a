"""Run configurations for ``nplearn test --config FILE`` (TOML, YAML or a result JSON).

A run configuration names the inputs and the options of one test with the field
names of :class:`~nplearn.NPLMConfig` plus the input keys::

    # run.toml
    reference = "mc.npy"            # paths are relative to this file
    data = "data.csv"
    columns = ["pt1", "pt2"]        # optional
    ref_weights = "mc_weights.npy"  # optional
    json = "result.json"            # optional output
    plots = "figures"               # optional figure folder
    checkpoint = "toys"             # optional record folder (resume after a stop)
    executor = "dask"               # optional: "local" (default) or "dask"
    scheduler = "tcp://head:8786"   # the Dask scheduler, with executor = "dask"
    expected = 2000
    n_toys = 300
    sigma_percentiles = [10, 50, 90]
    lam = 1e-6
    seed = 1

A result JSON written by ``nplearn test`` holds the same information (its
``run`` and ``config`` sections), so ``nplearn test --config result.json``
reruns the test that produced it (where the toys ran, and the figure and record
folders, are not recorded there: a rerun runs locally unless told otherwise).
Options given on the command line override the file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .config import NPLMConfig
from .errors import InputError, MissingDependencyError

log = logging.getLogger(__name__)

__all__ = ["INPUT_KEYS", "RunConfig", "load_run_config", "moved_inputs",
           "recorded_input_arrays", "recorded_input_hashes"]

#: Keys of a run configuration that are not options of :class:`NPLMConfig`.
INPUT_KEYS: tuple[str, ...] = ("reference", "data", "columns", "ref_weights", "json",
                               "selection", "ref_weight_branch", "plots", "checkpoint",
                               "executor", "scheduler")

#: Input keys that name files or folders (relative paths are taken from the file's folder).
_PATH_KEYS = ("reference", "data", "ref_weights", "json", "plots", "checkpoint")


#: Command-line spellings whose config key differs (beyond '-' -> '_').
_CLI_SPELLINGS = {"toys": "n_toys", "no_standardize": "standardize",
                  "no-standardize": "standardize", "centers_mode": "centers",
                  "centers-mode": "centers"}


class RunConfig(dict):
    """A validated run configuration: ``inputs`` (paths, columns) and ``options``.

    ``recorded_sha256`` holds the SHA-256 of the input files a result file recorded
    (``{"reference": ..., "data": ..., "ref_weights": ...}``; empty for other files),
    ``recorded_arrays`` those of the events and weights read from them
    (:func:`recorded_input_arrays`).
    """

    recorded_sha256: dict[str, str]
    recorded_arrays: dict[str, str | None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded_sha256 = {}
        self.recorded_arrays = {}

    @property
    def inputs(self) -> dict[str, Any]:
        """Input keys present in the file."""
        return {k: v for k, v in self.items() if k in INPUT_KEYS}

    @property
    def options(self) -> dict[str, Any]:
        """:class:`NPLMConfig` options present in the file."""
        return {k: v for k, v in self.items() if k not in INPUT_KEYS}


def recorded_input_hashes(res: Any) -> dict[str, str]:
    """``{"reference"|"data"|"ref_weights": sha256}`` recorded in a result dict (empty
    for anything malformed)."""
    inputs = res.get("provenance") if isinstance(res, dict) else None
    inputs = inputs.get("inputs") if isinstance(inputs, dict) else None
    out = {}
    for key, name in (("reference", "reference"), ("data", "data"),
                      ("ref_weights", "reference_weights")):
        entry = inputs.get(name) if isinstance(inputs, dict) else None
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if isinstance(sha, str):
            out[key] = sha
    return out


def moved_inputs(run: dict[str, Any], recorded: dict[str, str],
                 result_file: Path) -> dict[str, str]:
    """The inputs of a result's ``run`` record (``reference``, ``data``,
    ``ref_weights``) with :func:`_moved_input` applied where a file was recorded."""
    return {k: _moved_input(str(run[k]), recorded[k], result_file)
            for k in recorded if isinstance(run.get(k), str) and run[k]}


def _moved_input(spec: str, sha256: str, result_file: Path) -> str:
    """An input recorded by a result file, or, where it no longer is, the file of the
    same name next to the result file when its SHA-256 is the recorded one (a result
    folder copied elsewhere with its inputs)."""
    from .io import _split_key, sha256_file

    file, key = _split_key(spec)
    if file.exists():
        return spec
    candidate = result_file.parent / file.name
    try:
        if candidate.is_file() and sha256_file(candidate) == sha256:
            log.warning("%s: not found; using %s next to the result file (the same "
                        "SHA-256)", file, candidate)
            return str(candidate) + (f":{key}" if key is not None else "")
    except OSError:
        pass
    return spec


def recorded_input_arrays(res: Any) -> dict[str, str | None]:
    """``{"reference"|"data"|"ref_weights": sha256 or None}``: the digests of the
    events and weights a result file recorded (``provenance["input_arrays"]``; empty
    for anything malformed or missing)."""
    prov = res.get("provenance") if isinstance(res, dict) else None
    arrays = prov.get("input_arrays") if isinstance(prov, dict) else None
    if not isinstance(arrays, dict):
        return {}
    out: dict[str, str | None] = {}
    for key in ("reference", "data", "ref_weights"):
        entry = arrays.get(key)
        if entry is None and key in arrays:
            out[key] = None
        elif isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
            out[key] = entry["sha256"]
    return out


def _read_mapping(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        if suffix == ".toml":
            import tomllib

            return tomllib.loads(raw.decode("utf-8"))
        if suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise MissingDependencyError("pyyaml", "yaml", "YAML config files") from None
            out = yaml.safe_load(raw.decode("utf-8"))
            return {} if out is None else out
        if suffix == ".json":
            return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # tomllib/json/yaml parse errors
        raise InputError(f"{path}: not a valid {suffix[1:].upper()} file: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("yaml"):
            # PyYAML's messages span several lines (with a source excerpt): keep one
            msg = " ".join(str(exc).split())
            raise InputError(f"{path}: not a valid YAML file: {msg}") from None
        raise
    raise InputError(f"{path}: unknown config format {suffix or '(no suffix)'}; use .toml, "
                     ".yaml/.yml or a result .json")


def _from_result(d: dict[str, Any], path: Path) -> dict[str, Any]:
    run = d.get("run")
    cfg = d.get("config")
    if not isinstance(run, dict) or not isinstance(cfg, dict):
        raise InputError(f"{path}: this result file has no 'run'/'config' section (written by "
                         "an older nplearn or not by `nplearn test`); cannot rerun it")
    out = {**cfg, **{k: v for k, v in run.items() if v is not None}}
    # the budget the run resolved (from its machine's memory and workers) decides how
    # the features were stored: a rerun on another machine uses it too, and reproduces
    # the result bit for bit
    prov = d.get("provenance")
    budget = ((prov.get("execution") or {}).get("memory_budget")
              if isinstance(prov, dict) else None)
    if out.get("memory_budget") is None and isinstance(budget, int) and budget > 0 \
            and _fits_here(budget, out):
        out["memory_budget"] = budget
    return out


def _fits_here(budget: int, options: dict[str, Any]) -> bool:
    """Whether every worker of a rerun may hold ``budget`` bytes within this machine's
    default budget for the run's device (a budget recorded on a larger machine or a
    GPU is not imposed on a smaller one; the rerun then resolves its own)."""
    from ._torch_utils import cpu_count, default_memory_budget, resolve_device

    try:
        local = default_memory_budget(resolve_device(options.get("device", "auto")))
    except Exception:  # e.g. CUDA asked for and absent: the run reports it
        return False
    workers = options.get("workers") or cpu_count()
    if budget * max(1, int(workers)) <= local:
        return True
    log.info("the recorded memory budget (%d bytes per worker) exceeds this machine's "
             "(%d bytes for %d workers): the rerun resolves its own, and its t may differ "
             "by about 1e-8 relative", budget, local, workers)
    return False


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a run configuration.

    Parameters
    ----------
    path : str or Path
        ``.toml``, ``.yaml``/``.yml``, or a ``.json`` that is either a plain mapping
        or a result written by ``nplearn test``.

    Returns
    -------
    RunConfig
        Keys as in the file, with input paths made absolute (relative paths are
        taken relative to the config file's folder). Options are validated by
        building an :class:`NPLMConfig`.

    Raises
    ------
    InputError
        Unreadable or malformed file, unknown keys, invalid values.
    """
    p = Path(path)
    d = _read_mapping(p)
    if not isinstance(d, dict):
        raise InputError(f"{p}: a config file must hold a mapping of keys to values, got "
                         f"{type(d).__name__}")
    recorded: dict[str, str] = {}
    arrays: dict[str, str | None] = {}
    if str(d.get("format", "")).startswith("nplearn-result"):
        recorded, arrays = recorded_input_hashes(d), recorded_input_arrays(d)
        d = _from_result(d, p)
    known = set(NPLMConfig.field_names()) | set(INPUT_KEYS)
    unknown = sorted(set(d) - known)
    if unknown:
        hints = [f"{k} -> {_CLI_SPELLINGS.get(k) or k.replace('-', '_')}"
                 + (" = the opposite value" if "no_" in k.replace("-", "_") else "")
                 for k in unknown
                 if (_CLI_SPELLINGS.get(k) or k.replace("-", "_")) in known]
        raise InputError(f"{p}: unknown config key(s): {', '.join(unknown)}"
                         + (f" (config keys are the Python names: {'; '.join(hints)})"
                            if hints else "")
                         + f"; known keys: {', '.join(sorted(known))}")
    out = RunConfig(d)
    out.recorded_sha256 = recorded
    out.recorded_arrays = arrays
    for key in _PATH_KEYS:
        v = out.get(key)
        if v is None:
            continue
        if not isinstance(v, str) or not v:
            raise InputError(f"{p}: '{key}' must be a path (a string), got {v!r}")
        # keep a ROOT-style "file.root:tree" or "file.npz:array" suffix intact
        out[key] = str((p.parent / v) if not Path(v).is_absolute() else Path(v))
        if key in recorded:
            out[key] = _moved_input(out[key], recorded[key], p)
    for key in ("selection", "ref_weight_branch", "scheduler"):
        v = out.get(key)
        if v is not None and (not isinstance(v, str) or not v):
            raise InputError(f"{p}: '{key}' must be a non-empty string, got {v!r}")
    for key in ("executor", "scheduler", "plots", "checkpoint"):
        if key in out and out[key] is None:  # YAML's null: not given
            del out[key]
    if out.get("executor", "local") not in ("local", "dask"):
        raise InputError(f"{p}: 'executor' must be \"local\" or \"dask\", got "
                         f"{out['executor']!r}")
    cols = out.get("columns")
    if cols is not None:
        if isinstance(cols, str):
            cols = [c.strip() for c in cols.split(",") if c.strip()]
        if not isinstance(cols, list) or not all(isinstance(c, (str, int)) for c in cols):
            raise InputError(f"{p}: 'columns' must be a list of names or indices, got {cols!r}")
        out["columns"] = [str(c) for c in cols]
    try:
        NPLMConfig.from_dict(out.options)
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None
    return out
