"""Shared helpers of the benchmark scripts: machine description, commit, output."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def machine() -> str:
    """CPU model, core count and GPU (if torch sees one)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{model}, {os.cpu_count()} cores"
    try:
        import torch

        if torch.cuda.is_available():
            desc += ", GPU " + torch.cuda.get_device_name(0)
        else:
            desc += ", no GPU"
    except ImportError:  # pragma: no cover
        pass
    return desc


def commit() -> str:
    """Short hash of HEAD (with '+dirty' for uncommitted changes).

    The environment variable ``NPLEARN_COMMIT``, when set, wins: a copy of the tree on
    another machine may carry a stale ``.git`` (or none) and would report a wrong commit.
    """
    if os.environ.get("NPLEARN_COMMIT"):
        return os.environ["NPLEARN_COMMIT"]
    try:
        h = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, check=True, cwd=HERE).stdout.strip()
        # result files written earlier in the same run do not make the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)results"],
                               capture_output=True, text=True, check=True, cwd=HERE).stdout
        dirty += subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                 "../src"], capture_output=True, text=True, check=True,
                                cwd=HERE).stdout
        return h + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


#: The commit checked out when the script started (what the results were produced by).
COMMIT_AT_START = commit()


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def save(name: str, payload: dict[str, Any], out_dir: str | Path = RESULTS) -> Path:
    """Write ``payload`` plus machine/commit/command to ``out_dir/name.json``."""
    from nplearn.io import write_json_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), "commit": COMMIT_AT_START, "command": " ".join(sys.argv),
               **payload}
    path = out / f"{name}.json"
    write_json_atomic(path, payload)
    return path


def warm_up(device: str) -> None:
    """On a GPU, fit a tiny problem first: CUDA context and library start-up (about 0.5 s)
    then do not land in the first timed toy. No-op on the CPU."""
    if not str(device).startswith("cuda"):
        return
    import numpy as np
    import torch

    from nplearn import KernelLogisticRegression

    X = np.random.default_rng(1).normal(size=(2000, 2))
    y = np.r_[np.zeros(1900), np.ones(100)]
    KernelLogisticRegression(sigma=1.0, n_centers=50, lam=1e-6, random_state=0,
                             device=device).fit(X, y)
    torch.cuda.synchronize(device)


def gpu_peak_mib(device: str) -> float | None:
    """Peak GPU memory allocated since the last reset, in MiB (``None`` on the CPU)."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20


def reset_gpu_peak(device: str) -> None:
    """Start a new peak-memory window on ``device`` (no-op on the CPU)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def run_json_subprocess(code: str, timeout: float | None = None) -> dict[str, Any]:
    """Run ``python -c code`` in a fresh process; it must print one JSON line last."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=timeout, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"subprocess failed ({r.returncode}): {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def progress_printer(step: int = 100) -> Callable[[str, int, int], None]:
    """``progress(label, done, total)`` printing to stderr each time ``done`` passes a
    multiple of ``step`` (toys finish in chunks, so ``done`` jumps) and at the end."""
    last: dict[str, int] = {}

    def progress(label: str, done: int, total: int) -> None:
        if done == total or done // step > last.get(label, 0):
            last[label] = done // step
            print(f"  {label}: {done}/{total}", file=sys.stderr, flush=True)

    return progress



def store_pilot(out: Path, key: str, res: dict[str, Any] | None,
                table: Callable[[dict[str, Any]], str]) -> None:
    """Add one pilot run to the JSON file ``out`` and print the pilot's table.

    ``res`` (``None`` to print only) is stamped with the commit, the machine and the
    command line and stored under ``key`` (written atomically); the table is printed
    once the null run (key ``"none"``) is there.
    """
    from nplearn.io import write_json_atomic

    d = json.loads(out.read_text()) if out.exists() else {}
    if res is not None:
        res.update(commit=commit(), machine=machine(),
                   command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))
        d[key] = res
        write_json_atomic(out, d)
    if "none" in d:
        print(table(d))


def study_pvalues(study: dict[str, Any], entry: dict[str, Any], test: str,
                  widths: list[float] | None = None) -> Any:
    """Calibrated p-value of every toy of a power study's signal ``entry`` under one
    test (``"sigma=S"`` or a combination), against all the study's null toys.

    A combination uses ``widths`` if given, else the study's ``combination_widths``
    (merged studies), else all its widths."""
    import numpy as np

    from nplearn.multitest import combined_pvalues, empirical_p

    T0, T1 = np.asarray(study["null"]["t"]), np.asarray(entry["t"])
    if test.startswith("sigma="):
        col = [f"sigma={s:g}" for s in study["sigmas"]].index(test)
        return empirical_p(T1[:, col], T0[:, col])[0]
    widths = widths if widths is not None else study.get("combination_widths")
    if widths is not None:
        cols = [study["sigmas"].index(w) for w in widths]
        T0, T1 = T0[:, cols], T1[:, cols]
    return combined_pvalues(T1, T0, test, study["temperature"])[1]
