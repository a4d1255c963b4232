"""Contract tests of the Group/Array API (docs/design.md, section 5)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import npydir
from npydir.errors import (
    AlreadyExistsError,
    IncompatibleError,
    MemberNotFoundError,
    StoreClosedError,
    StoreNotFoundError,
)


@pytest.fixture
def store(tmp_path):
    return tmp_path / "data.npy"


@pytest.fixture
def root(store):
    with npydir.open(store, "w") as r:
        yield r


def test_open_creates_format_file(store):
    with npydir.open(store, "w") as root:
        assert root.name == "/" and root.path == "" and root.basename == ""
        assert root.filename == store and root.mode == "w" and not root.readonly
    assert json.loads((store / ".npydir.json").read_text()) == {"format": "npydir", "version": 1}
    r = npydir.open(store)
    assert r.readonly and r.mode == "r" and len(r) == 0


def test_modes(store, tmp_path):
    with pytest.raises(StoreNotFoundError, match="does not exist"):
        npydir.open(store, "r")
    with pytest.raises(StoreNotFoundError):
        npydir.open(store, "r+")
    with npydir.open(store, "a") as r:  # creates
        r["x"] = np.arange(3)
    with npydir.open(store, "a") as r:  # keeps
        assert list(r) == ["x"]
    with npydir.open(store, "r+") as r:
        r["x"][0] = 5
    assert npydir.open(store)["x"][0] == 5
    with pytest.raises(AlreadyExistsError, match="w-"):
        npydir.open(store, "w-")
    with pytest.raises(AlreadyExistsError, match="'x'"):
        npydir.open(store, "x")
    with npydir.open(tmp_path / "new.npy", "x") as r:
        assert len(r) == 0
    with npydir.open(store, "w") as r:  # truncates
        assert len(r) == 0
    with pytest.raises(ValueError, match="invalid mode"):
        npydir.open(store, "rw")


def test_w_refuses_to_wipe_a_foreign_directory(tmp_path):
    d = tmp_path / "home"
    d.mkdir()
    (d / "thesis.tex").write_text("precious")
    with pytest.raises(AlreadyExistsError, match="not an npydir store"):
        npydir.open(d, "w")
    assert (d / "thesis.tex").read_text() == "precious"
    f = tmp_path / "file.npy"
    f.write_bytes(b"x")
    with pytest.raises(npydir.errors.FormatError, match="not a directory"):
        npydir.open(f, "a")


def test_newer_format_version_is_refused(store):
    npydir.open(store, "w").close()
    (store / ".npydir.json").write_text('{"format": "npydir", "version": 99}')
    with pytest.raises(npydir.errors.FormatError, match="version 99"):
        npydir.open(store)


def test_groups_and_paths(root):
    g = root.create_group("a/b/c")
    assert g.name == "/a/b/c" and g.path == "a/b/c" and g.basename == "c"
    assert g.filename == root.filename / "a" / "b" / "c"
    assert isinstance(root["a"], npydir.Group) and root["a/b"]["c"] == g
    assert root["a"]["b/c"] == g and g["/a"] == root["a"]  # leading '/' is the store root
    assert root.require_group("a/b") == root["a/b"]
    assert root.require_group("new").path == "new"
    with pytest.raises(AlreadyExistsError, match="already exists"):
        root.create_group("a/b")
    assert g.parent == root["a/b"] and g.file == root


def test_create_dataset_variants(root):
    x = root.create_dataset("train/x", shape=(4, 3), dtype="i2")
    assert (x.shape, x.dtype, x.ndim, x.size, x.nbytes, len(x)) == (
        (4, 3),
        np.dtype("i2"),
        2,
        12,
        24,
        4,
    )
    assert (x[:] == 0).all()
    f = root.create_dataset("f", shape=5, fillvalue=2.5)
    assert f.dtype == np.dtype("f4") and (f[:] == 2.5).all()  # h5py default dtype float32
    d = root.create_array("d", data=[[1, 2], [3, 4]])
    np.testing.assert_array_equal(d[...], [[1, 2], [3, 4]])
    r = root.create_dataset("r", shape=(4,), data=np.arange(4).reshape(2, 2))  # same size: reshaped
    assert r.shape == (4,)
    c = root.create_dataset("c", data=[1, 2], dtype="f8")
    assert c.dtype == np.dtype("f8")
    m = root.create_dataset("m", shape=(0, 2), maxshape=(None, 2), chunks=(10, 2), dtype="u1")
    assert m.maxshape == (None, 2)
    with pytest.raises(ValueError, match="axis 0"):
        root.create_dataset("bad", shape=(2, 2), maxshape=(2, None))
    with pytest.raises(ValueError, match="does not match"):
        root.create_dataset("bad", shape=(3,), data=[1, 2])
    with pytest.raises(TypeError, match="data or shape"):
        root.create_dataset("bad")
    with pytest.raises(AlreadyExistsError, match="'train/x' already exists"):
        root.create_dataset("train/x", shape=(1,))
    with pytest.raises(AlreadyExistsError):
        root.create_group("train/x")
    assert "bad" not in root


def test_special_arrays(root):
    z = root.create_dataset("z", data=np.array(3.5))
    assert z.shape == () and z[()] == 3.5 and z.ndim == 0
    with pytest.raises(TypeError, match="len"):
        len(z)
    z[()] = 1.5
    e = root.create_dataset("e", data=np.zeros((0, 4), "f4"))
    assert e.shape == (0, 4) and e[:].shape == (0, 4)
    s = root.create_dataset("s", data=np.array([(1, "ab")], dtype=[("i", "<i4"), ("u", "<U2")]))
    assert s[0]["u"] == "ab"
    s[0] = (2, "cd")
    u = root.create_dataset("u", data=np.array(["x", "yz"]))
    assert list(u[:]) == ["x", "yz"]
    b = root.create_dataset("b", data=np.array([True, False]))
    c = root.create_dataset("cx", data=np.array([1 + 2j], "c16"))
    assert b.dtype == bool and c[0] == 1 + 2j
    assert z[()] == 1.5 and root["s"][0]["i"] == 2


def test_mapping_api(root):
    root["b/x"] = np.arange(3)
    root["a"] = np.zeros(2)
    root.create_group("c")
    root["b/y"] = np.ones(1)
    assert list(root) == ["a", "b", "c"]  # sorted
    assert len(root) == 3 and root.keys() == ["a", "b", "c"]
    assert root.group_keys() == ["b", "c"] and root.array_keys() == ["a"]
    assert [n for n, _ in root.groups()] == ["b", "c"] and isinstance(
        root.groups()[0][1], npydir.Group
    )
    assert [n for n, _ in root.arrays()] == ["a"] and isinstance(root.arrays()[0][1], npydir.Array)
    assert (
        "b/x" in root
        and "/b/y" in root
        and "b/z" not in root
        and "x.npy" not in root
        and "../x" not in root
    )
    assert root.get("nope") is None
    assert dict(root["b"].items()).keys() == {"x", "y"}
    with pytest.raises(MemberNotFoundError, match="'nope'") as info:
        root["b"]["nope"]
    assert isinstance(info.value, KeyError) and str(root.filename) in str(info.value)
    del root["a"]
    del root["b"]  # recursive
    assert list(root) == ["c"] and not (root.filename / "b").exists()
    with pytest.raises(KeyError):
        del root["b"]


def test_setitem_mapping_and_array_copies(root):
    class WithAttrs(dict):
        attrs = {"rate": 10}

    root["ds"] = WithAttrs(train={"x": np.arange(4)}, val={"x": np.arange(2)})
    assert root["ds/train/x"].shape == (4,) and root["ds"].attrs["rate"] == 10
    root["ds/train/x"].attrs["u"] = "v"
    root["copy"] = root["ds/train/x"]
    np.testing.assert_array_equal(root["copy"][:], np.arange(4))
    assert dict(root["copy"].attrs) == {"u": "v"}
    with pytest.raises(AlreadyExistsError):
        root["copy"] = np.zeros(1)


def test_members_visit_tree(root):
    root["a/x"] = np.zeros((2, 3), "f4")
    root["a/b/y"] = np.zeros(1, "i8")
    root["z"] = np.zeros(4, "u1")
    names = [n for n, _ in root.members()]
    assert names == ["a", "a/b", "a/b/y", "a/x", "z"]
    assert [n for n, _ in root.members(max_depth=0)] == ["a", "z"]
    assert [n for n, _ in root.members(max_depth=1)] == ["a", "a/b", "a/x", "z"]
    seen = []
    assert root.visit(seen.append) is None
    assert seen == names
    assert root.visit(lambda n: n if n.endswith("y") else None) == "a/b/y"  # non-None stops
    items = []
    root["a"].visititems(lambda n, o: items.append((n, type(o).__name__)))
    assert items == [("b", "Group"), ("b/y", "Array"), ("x", "Array")]
    text = str(root.tree())
    assert text.splitlines() == [
        "/",
        "├── a",
        "│   ├── b",
        "│   │   └── y (1,) int64",
        "│   └── x (2, 3) float32",
        "└── z (4,) uint8",
    ]
    assert repr(root.tree()) == text


def test_move(root):
    root["a/x"] = np.arange(3)
    root["a/x"].attrs["k"] = 1
    root.move("a/x", "b/c/y")
    assert "a/x" not in root and root["b/c/y"].attrs["k"] == 1
    np.testing.assert_array_equal(root["b/c/y"][:], np.arange(3))
    root.move("b", "a/b")
    assert list(root) == ["a"] and root["a/b/c/y"].shape == (3,)
    with pytest.raises(ValueError, match="into itself"):
        root.move("a", "a/q")
    with pytest.raises(MemberNotFoundError):
        root.move("nope", "q")
    root["w"] = np.zeros(1)
    with pytest.raises(AlreadyExistsError):
        root.move("w", "a/b")


def test_require_dataset(root):
    x = root.create_dataset("x", shape=(3, 2), dtype="f8")
    assert root.require_dataset("x", (3, 2), "f8") is x
    assert root.require_dataset("x", (3, 2), "f4") is x  # f4 casts safely to f8
    with pytest.raises(IncompatibleError, match=r"'x'.*expected \(3, 3\), found \(3, 2\)"):
        root.require_dataset("x", (3, 3), "f8")
    with pytest.raises(
        IncompatibleError, match="complex128 cannot be safely cast to the existing float64"
    ):
        root.require_dataset("x", (3, 2), "c16")
    with pytest.raises(IncompatibleError, match="expected float32, found float64"):
        root.require_dataset("x", (3, 2), "f4", exact=True)
    root.create_group("g")
    with pytest.raises(IncompatibleError, match="group exists"):
        root.require_dataset("g", (1,), "f4")
    with pytest.raises(IncompatibleError, match="array exists"):
        root.require_group("x")
    y = root.require_dataset("y", (2,), "i4")
    assert y.shape == (2,) and y.dtype == np.dtype("i4")
    assert isinstance(IncompatibleError("m"), TypeError)


def test_array_views_do_not_copy(root):
    x = root.create_dataset("x", data=np.arange(20.0).reshape(10, 2))
    view = x[2:5]
    full = np.asarray(x)
    assert np.shares_memory(view, full)
    # np.asarray strips the memmap subclass but returns a view of the mapping itself
    assert isinstance(full, np.memmap) or isinstance(full.base, np.memmap)
    assert isinstance(x[:], np.memmap) and x[:].filename == str(x.filename)
    view[0, 0] = -1  # writes through the mapping
    x.flush()
    assert np.load(x.filename)[2, 0] == -1
    assert np.asarray(x, dtype="f4").dtype == np.dtype("f4")
    assert [row.tolist() for row in x][:2] == [[0.0, 1.0], [2.0, 3.0]]
    assert x.read() is not None and not np.shares_memory(x.read(), full)


def test_append(root):
    x = root.create_dataset("x", shape=(0, 3), dtype="f4")
    x.append(np.ones((2, 3), "f4"))
    x.append(np.full((1, 3), 2, "i2"))  # safe cast
    x.append([3, 3, 3])  # one row from a list
    assert x.shape == (4, 3) and len(x) == 4
    np.testing.assert_array_equal(x[:, 0], [1, 1, 2, 3])
    assert root["x"] is x  # one object per array per open store: everyone sees the new length
    with pytest.raises(TypeError, match="float64 to float32 safely"):
        x.append(np.zeros((1, 3), "f8"))
    with pytest.raises(ValueError, match=r"block of shape \(1, 2\)"):
        x.append(np.zeros((1, 2), "f4"))
    z = root.create_dataset("z", data=np.array(1))
    with pytest.raises(ValueError, match="0-d"):
        z.append(1)
    assert np.load(x.filename).shape == (4, 3)  # any numpy reads it
    # a reader opened before the append sees it after reopening
    reader = npydir.open(root.filename, "r")
    before = reader["x"].shape
    x.append(np.zeros((5, 3), "f4"), sync=False)
    assert before == (4, 3) and npydir.open(root.filename, "r")["x"].shape == (9, 3)


def test_resize(root):
    x = root.create_dataset("x", data=np.arange(6).reshape(3, 2))
    with open(x.filename, "ab") as f:
        f.write(b"\xff" * 16)  # torn bytes of a killed append must not become rows
    x.resize(5)
    assert x.shape == (5, 2) and (x[3:] == 0).all()
    view = x[:]
    x.resize(1)  # shrinking never pulls pages from under a live view (no SIGBUS)
    assert view.sum() == 15 and x.shape == (1, 2)
    x.resize(3)
    np.testing.assert_array_equal(x[:], [[0, 1], [0, 0], [0, 0]])
    x.resize((2, 2))
    np.testing.assert_array_equal(x[:], [[0, 1], [0, 0]])
    with pytest.raises(ValueError, match="axis 0"):
        x.resize((2, 3))


def test_attrs_api(root):
    g = root.create_group("g")
    g.attrs["a"] = 1
    g.attrs.update({"b": [1, 2], "c": np.arange(2)})
    assert dict(g.attrs).keys() == {"a", "b", "c"} and len(g.attrs) == 3 and "a" in g.attrs
    del g.attrs["a"]
    assert "a" not in g.attrs and g.attrs.get("a") is None
    with pytest.raises(KeyError, match="'zz'"):
        g.attrs["zz"]
    x = root.create_dataset("x", data=[1])
    x.attrs["unit"] = "V"
    assert (root.filename / "x.attrs.json").exists() and (
        root.filename / "g" / "attrs.json"
    ).exists()
    assert json.loads((root.filename / "x.attrs.json").read_text()) == {"unit": "V"}
    with pytest.raises(npydir.errors.AttributeEncodingError, match="'bad'"):
        g.attrs["bad"] = {1, 2}
    assert "bad" not in g.attrs  # a failed set writes nothing
    g.attrs.clear()
    assert len(g.attrs) == 0
    # a reader sees a writer's later changes (re-read when the file changes)
    reader_attrs = npydir.open(root.filename, "r")["g"].attrs
    assert dict(reader_attrs) == {}
    g.attrs["late"] = 1
    assert dict(reader_attrs) == {"late": 1}


def test_close_and_context_manager(store):
    root = npydir.open(store, "w")
    x = root.create_dataset("x", data=np.arange(3))
    view = x[:]
    root.close()
    root.close()  # idempotent
    assert not root
    with pytest.raises(StoreClosedError, match="closed"):
        x[0]
    with pytest.raises(StoreClosedError):
        list(root)
    with pytest.raises(StoreClosedError):
        root.attrs["a"]
    assert view.tolist() == [0, 1, 2]  # views handed out stay valid
    with npydir.open(store, "r+") as r:  # the lock was released
        assert r


def test_pickle_is_small_and_lazy(store, tmp_path):
    with npydir.open(store, "w") as root:
        x = root.create_dataset("big/x", shape=(10**7, 128), dtype="f8")  # ~10 GB, sparse
        x[5] = 1
    r = npydir.open(store)
    x = r["big/x"]
    blob = pickle.dumps(x)
    assert len(blob) < 400
    y = pickle.loads(blob)
    assert y.readonly and y.shape == (10**7, 128) and y[5, 0] == 1
    g = pickle.loads(pickle.dumps(r["big"]))
    assert g.path == "big" and g.readonly
    # reopens in another process from another working directory
    code = (
        "import pickle,sys; sys.path.insert(0, %r); a = pickle.loads(sys.stdin.buffer.read()); "
        "print(a.shape, a[5, 0])"
    ) % (os.getcwd(),)
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=blob,
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().strip() == "(10000000, 128) 1.0"


def test_repr(root):
    x = root.create_dataset("x", data=np.zeros((2, 2), "f4"))
    assert "'/x'" in repr(x) and "(2, 2) float32" in repr(x)
    assert "Group '/'" in repr(root)


def test_foreign_files_are_not_members(root):
    (root.filename / "notes.txt").write_text("hi")
    (root.filename / ".hidden").mkdir()
    (root.filename / "x.npy.bak").write_text("hi")
    root["x"] = np.zeros(1)
    assert list(root) == ["x"]


def test_unsynced_appends_are_fsynced_on_flush_and_close(store, monkeypatch):
    from npydir import npyfile

    synced = []
    monkeypatch.setattr(npyfile, "fsync_file", lambda p, **kw: synced.append(p))
    root = npydir.open(store, "w")
    x = root.create_dataset("x", shape=(0, 2), dtype="i4")
    y = root.create_dataset("y", shape=(0,), dtype="i4")
    x.append(np.zeros((3, 2), "i4"), sync=False)
    y.append([1])  # synced as it goes: nothing left to do at close
    x.flush()
    assert synced == [x.filename]
    x.flush()  # clean now
    x.append(np.zeros((1, 2), "i4"), sync=False)
    root["z"] = np.zeros(2)
    root["z"].append([1.0], sync=False)  # the caller keeps no reference to this Array
    import gc

    gc.collect()
    root.close()
    assert sorted(synced) == sorted([x.filename, x.filename, root.filename / "z.npy"])


def test_deleted_array_handles_refuse_use(root):
    x = root.create_dataset("x", data=np.arange(3))
    attrs = x.attrs
    del root["x"]
    with pytest.raises(MemberNotFoundError, match="deleted or moved"):
        x[0]
    with pytest.raises(MemberNotFoundError, match="deleted or moved"):
        attrs["a"] = 1  # would leave an orphan attrs file
    assert sorted(p.name for p in root.filename.iterdir()) == [".npydir.json", ".npydir.lock"]
