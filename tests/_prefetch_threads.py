"""The threads a Batches iterator starts, and a check that none outlives its iterator."""

from __future__ import annotations

import gc
import threading
import time

import pytest


def prefetch_threads() -> list[threading.Thread]:
    """Live prefetch/copier threads of any Batches iterator (they are named for this)."""
    return [t for t in threading.enumerate() if t.name.startswith("npydir-batches-")]


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """After each test: every prefetch thread is gone within 5 s (iterators join theirs)."""
    yield
    gc.collect()
    deadline = time.monotonic() + 5
    while prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not prefetch_threads(), "a prefetch thread outlived its iterator"
