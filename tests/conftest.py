"""Shared fixtures and markers for the nplearn tests."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import settings

# Tests must be reproducible: hypothesis draws the same examples on every run (a random
# draw once found a latent test bug that earlier runs had missed, which would have failed
# CI by chance). NPLEARN_HYPOTHESIS_EXPLORE=1 draws new examples.
settings.register_profile("nplearn", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("explore" if os.environ.get("NPLEARN_HYPOTHESIS_EXPLORE") else "nplearn")


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` when no CUDA device is present."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device available")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator (tests must be reproducible)."""
    return np.random.default_rng(12345)


def make_classification(rng, n_ref=3000, n_data=300, d=2, shift=0.3, scale=1.2, frac=0.9):
    """Unbalanced weighted two-sample problem: reference N(0,1), data shifted/scaled."""
    ref = rng.normal(size=(n_ref, d))
    data = rng.normal(size=(n_data, d)) * scale + shift
    X = np.vstack([ref, data])
    y = np.r_[np.zeros(n_ref), np.ones(n_data)].astype(int)
    w = frac * n_data / n_ref
    sw = np.r_[np.full(n_ref, w), np.ones(n_data)]
    return X, y, sw


def group_states(pgid: int, wait_s: float = 0.0) -> list[str]:
    """``ps`` states of the processes of group ``pgid``, after waiting up to ``wait_s``
    seconds for all of them to exit (``Z``: exited, maybe not reaped where the
    container's init does not reap orphans)."""
    import subprocess
    import time

    deadline = time.monotonic() + wait_s
    while True:
        states = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True,
                                text=True).stdout.split()
        if all(st.startswith("Z") for st in states) or time.monotonic() >= deadline:
            return states
        time.sleep(0.2)


def kill_group(pgid: int) -> None:
    """SIGKILL whatever is left of process group ``pgid``."""
    import signal

    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
