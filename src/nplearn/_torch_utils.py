"""Device, dtype, thread and memory helpers shared by the learners.

Torch stays inside the learners; these helpers translate user-facing strings
("cpu", "cuda", "float64") into torch objects with clear errors.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from .errors import InputError

_DTYPES = {"float64": torch.float64, "float32": torch.float32, "double": torch.float64,
           "float": torch.float32}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Return a torch device, checking that CUDA is really available.

    Parameters
    ----------
    device : str, torch.device or None
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when present,
        else CPU). ``None`` means ``"cpu"``.
    """
    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        dev = device
    else:
        name = str(device).strip().lower()
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise InputError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"device {str(device)!r} requested but no CUDA device is available "
                "(is a CUDA build of torch installed?)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(
                f"device {str(device)!r} requested but only "
                f"{torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif dev.type != "cpu":
        raise InputError(f"unsupported device {str(device)!r}: use 'cpu' or 'cuda'")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """Map ``"float64"``/``"float32"`` (or a torch dtype) to a torch dtype."""
    if dtype is None:
        return torch.float64
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float64):
            raise InputError(f"unsupported dtype {dtype}: use float32 or float64")
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError as exc:
        raise InputError(f"unsupported dtype {dtype!r}: use 'float32' or 'float64'") from exc


#: Files holding the memory limit of the root control group (v2, then v1).
CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max",
                      "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def cgroup_limit_files(proc_cgroup: str | None = None,
                       root: str = "/sys/fs/cgroup") -> list[str]:
    """The memory-limit files of this process's control group and of every group
    above it (a SLURM job's limit sits in a sub-group, not at the root).

    ``proc_cgroup`` is the text of ``/proc/self/cgroup`` (read when ``None``).
    """
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            proc_cgroup = ""
    files: list[str] = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, rel = parts
        if hid == "0" and controllers == "":
            base, name = Path(root), "memory.max"  # cgroup v2
        elif "memory" in controllers.split(","):
            base, name = Path(root) / "memory", "memory.limit_in_bytes"  # cgroup v1
        else:
            continue
        group = Path(rel.strip("/"))
        while True:
            files.append(str(base / group / name))
            if group == Path("."):
                break
            group = group.parent
    return files


def cgroup_memory_limit(files: Sequence[str] | None = None) -> int | None:
    """The smallest memory limit in bytes among the control-group files (SLURM
    ``--mem``, Docker, Kubernetes), or ``None`` when there is none (``max``, or
    v1's "unlimited" sentinel). Default files: :func:`cgroup_limit_files` and the
    root ones."""
    if files is None:
        files = [*cgroup_limit_files(), *CGROUP_LIMIT_FILES]
    limits = []
    for f in files:
        try:
            text = Path(f).read_text().strip()
        except OSError:
            continue
        try:
            limit = int(text)
        except ValueError:
            continue  # "max": no limit at this level
        if 0 < limit < 2**60:
            limits.append(limit)
    return min(limits) if limits else None


def total_memory_bytes() -> int:
    """Memory this process may use, in bytes: the machine's physical memory, or the
    control group's limit when it is lower (falls back to 8 GiB)."""
    try:
        phys = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        phys = 8 * 1024**3
    limit = cgroup_memory_limit()
    return min(phys, limit) if limit is not None else phys


def device_memory_bytes(device: torch.device) -> int:
    """Memory usable on ``device``: physical RAM on CPU, free memory on a GPU."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return total_memory_bytes()


def default_memory_budget(device: torch.device) -> int:
    """Bytes the kernel solver may hold in large caches on ``device``.

    CPU: a quarter of physical memory, at most 8 GiB. CUDA: half of the memory
    free on the device when the fit starts.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    return int(min(total_memory_bytes() // 4, 8 * 1024**3))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set the number of intra-op torch threads (``None``: leave as is)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity where available)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return max(1, os.cpu_count() or 1)
