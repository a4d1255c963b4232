"""Opening is lazy: a store of 10,000 arrays, reading one opens only that file."""

from __future__ import annotations

import builtins
import io
import os

import numpy as np
import pytest

import npydir
from npydir.store.npyfile import build_header

N_GROUPS, PER_GROUP = 10, 1000


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("lazy") / "many.npy"
    header = build_header((4,), np.dtype("i2"))
    os.makedirs(root)
    with builtins.open(root / ".npydir.json", "w") as f:  # the marker every store npydir writes has
        f.write('{"format": "npydir", "version": 1}\n')
    for g in range(N_GROUPS):
        d = root / f"g{g}"
        os.mkdir(d)
        for i in range(PER_GROUP):
            # minimal .npy files written directly: fast, and the value identifies the file
            with builtins.open(d / f"a{i:04d}.npy", "wb") as f:
                f.write(header + np.full(4, g * PER_GROUP + i, "<i2").tobytes())
    return root


def test_reading_one_of_10000_arrays_opens_one_file(big_store, monkeypatch):
    opened, listed = [], []
    real_open, real_io_open, real_os_open = builtins.open, io.open, os.open
    real_scandir, real_listdir = os.scandir, os.listdir

    def spy(real, log):
        def wrapper(path, *args, **kwargs):
            log.append(os.fspath(path) if isinstance(path, (str, bytes, os.PathLike)) else path)
            return real(path, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(builtins, "open", spy(real_open, opened))
    monkeypatch.setattr(io, "open", spy(real_io_open, opened))
    monkeypatch.setattr(os, "open", spy(real_os_open, opened))
    monkeypatch.setattr(os, "scandir", spy(real_scandir, listed))
    monkeypatch.setattr(os, "listdir", spy(real_listdir, listed))

    root = npydir.open(big_store, "r")
    x = root["g7/a0123"]
    value = x[:].tolist()
    assert "g3/a0999" in root and root["g3"]["a0001"].basename == "a0001"  # lookups only stat
    monkeypatch.undo()

    assert value == [7123] * 4
    npy_opened = {p for p in opened if isinstance(p, str) and p.endswith(".npy")}
    # the file is opened by name relative to its group's directory, opened (not listed) once
    # and checked to be inside the store
    assert npy_opened == {"a0123.npy"}
    assert listed == []  # no directory was listed either
    paths = {p for p in opened if isinstance(p, str)}
    assert paths - npy_opened <= {str(big_store / ".npydir.json"), str(big_store / "g7")}


def test_listing_the_big_store(big_store):
    root = npydir.open(big_store)
    assert len(root) == N_GROUPS and len(root["g0"]) == PER_GROUP
    assert root["g0"].array_keys()[:2] == ["a0000", "a0001"]
