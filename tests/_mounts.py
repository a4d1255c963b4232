"""A real tmpfs mounted for one test, or a skip that says why it cannot be.

Shared by the tests that need a file system of their own: a tiny one that fills up (ENOSPC),
or one remounted read-only (EROFS even for root).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (e.g. ``"1m"``) on the new directory ``mnt``; unmount after.

    Skips the test when not root or when the mount is refused (containers without
    CAP_SYS_ADMIN), with the reason.
    """
    if os.geteuid() != 0:
        pytest.skip(f"mounting a tmpfs needs root (running as uid {os.geteuid()})")
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def remount_read_only(mnt: Path) -> None:
    """Remount ``mnt`` read-only, or skip the test with the reason."""
    res = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot remount read-only: {res.stderr.decode().strip()}")
