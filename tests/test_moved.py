"""Old flat-layout module paths (npydir._moved): each imports as the module at its new home."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

import npydir
from npydir._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_the_same_module(old):
    new = MOVED[old]
    module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert sys.modules[old] is sys.modules[new]
    assert module.__name__ == new and module.__spec__.name == new  # its own identity is kept


def test_old_paths_leave_the_public_names_alone():
    for old in MOVED:
        importlib.import_module(old)
    assert callable(npydir.convert) and npydir.convert.__name__ == "convert"
    assert npydir.open is importlib.import_module("npydir.remote._open").open


def test_import_npydir_imports_no_old_path():
    code = ("import sys, npydir; from npydir._moved import MOVED; "
            "print(sorted(n for n in MOVED if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_pickles_name_the_flat_path_and_load(tmp_path):
    with npydir.open(tmp_path / "s.npy", "w") as r:
        r.create_dataset("g/x", data=np.arange(4))
    r = npydir.open(tmp_path / "s.npy", "r")
    blob = pickle.dumps(r["g/x"])
    assert b"npydir.group" in blob and b"npydir.store" not in blob
    code = ("import pickle, sys; a = pickle.loads(sys.stdin.buffer.read()); "
            "print(type(a).__module__, a[:].tolist())")
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                         check=True)
    assert out.stdout.decode().split() == ["npydir.store.array", "[0,", "1,", "2,", "3]"]
