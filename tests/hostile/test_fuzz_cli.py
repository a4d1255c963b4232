"""The ``npydir`` command on hostile stores: a clear error, never a traceback, never code run.

Each store has one problem -- a header that does not parse, attrs that are not JSON, a
malicious ``attrs.npy``, a link out of the store, a truncated array, a format file nested
5,000 deep -- and ``info``, ``tree``, ``verify`` and ``repair`` run on it as a user would.
Every run must end with exit status 0 or 1, without a Python traceback, with an error that
names the store when it fails, and the malicious pickle's sentinel file must never appear.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npydir

import _fuzz_inputs
import _hostile

pytestmark = pytest.mark.hostile


def _stores(base: Path, sentinels: Path) -> list[Path]:
    def make(name: str) -> Path:
        s = base / name
        with npydir.open(s, "w") as r:
            r["x"] = np.arange(5)
            r.attrs["a"] = 1
        return s

    out = []
    s = make("bad-header.npy")
    (s / "y.npy").write_bytes(b"\x93NUMPY\x01\x00\x05\x00{abc\n")
    out.append(s)
    s = make("bad-attrs.npy")
    (s / "attrs.json").write_bytes(b"{nope")
    out.append(s)
    s = make("evil-pickle.npy")
    label, data = _fuzz_inputs.malicious_pickles(sentinels)[0]
    (s / "attrs.npy").write_bytes(data)
    out.append(s)
    s = make("escape.npy")
    os.symlink(base, s / "up")
    out.append(s)
    s = make("truncated.npy")
    f = s / "x.npy"
    f.write_bytes(f.read_bytes()[:-8])
    out.append(s)
    s = make("format-file.npy")
    (s / ".npydir.json").write_bytes(b"[" * 5000)
    out.append(s)
    return out


def test_cli_on_hostile_stores(tmp_path):
    sentinels = tmp_path / "sentinels"
    sentinels.mkdir()
    base = tmp_path / "stores"
    base.mkdir()
    runs = 0
    for store in _stores(base, sentinels):
        for cmd in ("info", "tree", "verify", "repair"):
            out = subprocess.run(
                [sys.executable, "-m", "npydir", cmd, str(store)],
                capture_output=True,
                text=True,
                timeout=120,
                env=_hostile.child_env(),
            )
            where = f"npydir {cmd} {store.name}"
            assert "Traceback" not in out.stderr, f"{where}: traceback\n{out.stderr[-3000:]}"
            assert out.returncode in (0, 1), f"{where}: exit {out.returncode}\n{out.stderr[-2000:]}"
            if out.returncode:
                assert store.name in out.stderr, (
                    f"{where}: error does not name the store: {out.stderr}"
                )
            runs += 1
    assert os.listdir(sentinels) == [], "a pickle ran code through the CLI"
    _hostile.record("cli", "hostile stores x commands (no traceback, clear error)", runs)
