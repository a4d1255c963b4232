"""Run a function in a fork()ed child, with a timeout, for tests of what survives a fork."""

from __future__ import annotations

import os
import signal
import time

import pytest


def run_child(fn, timeout: float = 60) -> int:
    """Fork; ``fn()`` in the child gives its exit code; kill the child and fail if it hangs."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 99
        try:
            code = fn()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("forked child hung")
        time.sleep(0.01)
