"""What a Batches iterator leaves running, and a check that nothing outlives its iterator.

Local data is copied by the kernel's background runners (queued copies, no Python thread);
data in object storage by copier threads named ``npydir-batches-*``.
"""

from __future__ import annotations

import gc
import threading
import time

import pytest

from npydir.kernel import _windows


def prefetch_threads() -> list[threading.Thread]:
    """Live prefetch/copier threads of any Batches iterator (they are named for this)."""
    return [t for t in threading.enumerate() if t.name.startswith("npydir-batches-")]


def copies_in_flight() -> int:
    """Window copies queued for the kernel's background runners or running now."""
    return _windows.runner_inflight()


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """After each test: every prefetch thread is gone and no copy is left queued or running
    within 5 s (iterators join their threads and withdraw their copies)."""
    yield
    gc.collect()
    deadline = time.monotonic() + 5
    while (prefetch_threads() or copies_in_flight()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not prefetch_threads(), "a prefetch thread outlived its iterator"
    assert not copies_in_flight(), "a background copy outlived its iterator"
