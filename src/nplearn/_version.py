"""Single source of the package version, and a digest of the package's source."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

__version__ = "0.1.0"


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 (hex) of the package's Python source files, as installed.

    The version string does not change with every commit, but the statistic is
    defined by the code that fits it: this digest identifies that code. It enters
    the checkpoint fingerprint (records written by other code are not reused) and
    the provenance of every result.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The git commit of the checkout the package runs from (``+dirty`` when its
    tracked files differ), or None when it is not run from a git checkout (an
    installed copy) or git is not available."""
    import subprocess

    root = Path(__file__).resolve().parent
    try:
        # the package's own files must be tracked: an installed copy inside some other
        # checkout (a virtual environment in a project) is not that project's code
        tracked = subprocess.run(["git", "-C", str(root), "ls-files", "--error-unmatch",
                                  "__init__.py"], capture_output=True, text=True, timeout=5)
        if tracked.returncode != 0:
            return None
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
