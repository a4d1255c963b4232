"""Pickles made before ``Array`` moved from ``npydir/group.py`` to ``npydir/array.py`` still load,
and pickles made now are byte-identical to them.

The byte strings below were made by the code on ``main`` at commit 3e56f6c (``Array`` still in
``group.py``) with::

    with npydir.open("/tmp/npydir-old-pickle/s.npy", "w") as r:
        a = r.create_dataset("train/x", data=np.arange(6).reshape(3, 2))
        pickle.dumps(a, protocol=4); pickle.dumps(a, protocol=0)
        pickle.dumps(r["train"], protocol=4)
        pickle.dumps((npydir.Array, npydir.Group, npydir.group.AttributeManager), protocol=4)

A pickle names the store by its absolute path, so each test rewrites that path to a store it
creates under ``tmp_path`` (:func:`_retarget`) -- the opcodes naming npydir's objects are left
exactly as the old code wrote them.
"""

from __future__ import annotations

import pickle
import pickletools
import struct

import numpy as np
import pytest

import npydir
import npydir.array
import npydir.group

OLD_ROOT = "/tmp/npydir-old-pickle/s.npy"
OLD_ARRAY_P4 = (
    b"\x80\x04\x95Q\x00\x00\x00\x00\x00\x00\x00\x8c\x0cnpydir.group\x94\x8c\x07_reopen\x94\x93"
    b"\x94\x8c\x1c/tmp/npydir-old-pickle/s.npy\x94\x8c\x07train/x\x94\x8c\x05array\x94\x87\x94R"
    b"\x94."
)
OLD_ARRAY_P0 = (
    b"cnpydir.group\n_reopen\np0\n(V/tmp/npydir-old-pickle/s.npy\np1\nVtrain/x\np2\nVarray\np3\n"
    b"tp4\nRp5\n."
)
OLD_GROUP_P4 = (
    b"\x80\x04\x95O\x00\x00\x00\x00\x00\x00\x00\x8c\x0cnpydir.group\x94\x8c\x07_reopen\x94\x93"
    b"\x94\x8c\x1c/tmp/npydir-old-pickle/s.npy\x94\x8c\x05train\x94\x8c\x05group\x94\x87\x94R"
    b"\x94."
)
OLD_CLASSES_P4 = (
    b"\x80\x04\x95?\x00\x00\x00\x00\x00\x00\x00\x8c\x0cnpydir.group\x94\x8c\x05Array\x94\x93"
    b"\x94h\x00\x8c\x05Group\x94\x93\x94h\x00\x8c\x10AttributeManager\x94\x93\x94\x87\x94."
)


def _unicode_op(text: str) -> bytes:
    """The opcode protocol 4 writes for a str (SHORT_BINUNICODE, or BINUNICODE when long)."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def _retarget(blob: bytes, root: str) -> bytes:
    """``blob`` with the store path ``OLD_ROOT`` replaced by ``root``."""
    if blob.startswith(b"\x80\x04\x95"):  # protocol 4: one frame; its length changes too
        old = _unicode_op(OLD_ROOT)
        assert blob.count(old) == 1
        body = blob[11:].replace(old, _unicode_op(root))
        return blob[:3] + struct.pack("<Q", len(body)) + body
    assert blob.startswith(b"c") and blob.count(f"V{OLD_ROOT}\n".encode()) == 1  # protocol 0
    return blob.replace(f"V{OLD_ROOT}\n".encode(), f"V{root}\n".encode())


def _globals(blob: bytes) -> list[tuple[str, str]]:
    """The (module, name) pairs a pickle imports, read from its opcodes (nothing executed).

    Only strings are tracked on the simulated stack and memo: enough for STACK_GLOBAL.
    """
    out: list[tuple[str, str]] = []
    stack: list[object] = []
    memo: list[object] = []
    for op, arg, _ in pickletools.genops(blob):
        if op.name == "GLOBAL":
            out.append(tuple(arg.split(" ", 1)))
            stack.append(None)
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            stack.append(arg)
        elif op.name == "STACK_GLOBAL":
            name, module = stack.pop(), stack.pop()
            out.append((module, name))
            stack.append(None)
        elif op.name == "MEMOIZE":
            memo.append(stack[-1] if stack else None)
        elif op.name in ("BINGET", "GET"):
            stack.append(memo[int(arg)] if int(arg) < len(memo) else None)
        else:
            stack.append(None)
    return out


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "s.npy"
    with npydir.open(path, "w") as r:
        r.create_dataset("train/x", data=np.arange(6).reshape(3, 2))
    return path


def test_the_fixtures_name_the_old_module():
    """The byte strings are what they claim: they import from npydir.group, not npydir.array."""
    for blob in (OLD_ARRAY_P4, OLD_ARRAY_P0, OLD_GROUP_P4):
        assert _globals(blob) == [("npydir.group", "_reopen")]
    assert _globals(OLD_CLASSES_P4) == [
        ("npydir.group", "Array"),
        ("npydir.group", "Group"),
        ("npydir.group", "AttributeManager"),
    ]


@pytest.mark.parametrize("blob", [OLD_ARRAY_P4, OLD_ARRAY_P0], ids=["protocol4", "protocol0"])
def test_old_array_pickles_load(store, blob):
    a = pickle.loads(_retarget(blob, str(store)))
    assert isinstance(a, npydir.Array) and type(a) is npydir.array.Array
    assert a.path == "train/x" and a.readonly and a.store_path == store
    np.testing.assert_array_equal(a[:], np.arange(6).reshape(3, 2))


def test_old_group_pickle_loads(store):
    g = pickle.loads(_retarget(OLD_GROUP_P4, str(store)))
    assert isinstance(g, npydir.Group) and g.path == "train" and g.readonly
    assert g.array_keys() == ["x"]


def test_old_pickles_of_the_classes_load():
    from npydir._node import AttributeManager

    assert pickle.loads(OLD_CLASSES_P4) == (npydir.Array, npydir.Group, AttributeManager)
    assert npydir.group.Array is npydir.array.Array is npydir.Array


def test_new_pickles_are_byte_identical_to_old_ones(store):
    """Pickling did not change: what loads in the old code loads in the new and vice versa."""
    with npydir.open(store, "r") as r:
        a, g = r["train/x"], r["train"]
        assert pickle.dumps(a, protocol=4) == _retarget(OLD_ARRAY_P4, str(store))
        assert pickle.dumps(a, protocol=0) == _retarget(OLD_ARRAY_P0, str(store))
        assert pickle.dumps(g, protocol=4) == _retarget(OLD_GROUP_P4, str(store))


def test_retarget_handles_long_store_paths(tmp_path):
    """Store paths of 256+ bytes take the BINUNICODE opcode; the rewritten pickle still loads."""
    deep = tmp_path / ("d" * 120) / ("e" * 120) / "s.npy"
    deep.parent.mkdir(parents=True)
    with npydir.open(deep, "w") as r:
        r.create_dataset("train/x", data=np.arange(6).reshape(3, 2))
        assert len(str(deep)) >= 256
        assert pickle.dumps(r["train/x"], protocol=4) == _retarget(OLD_ARRAY_P4, str(deep))
    assert pickle.loads(_retarget(OLD_ARRAY_P4, str(deep)))[2, 1] == 5
