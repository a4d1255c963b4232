"""Every refusal of the store: names, escapes, read-only writes, dtypes, attrs."""

from __future__ import annotations

import os

import numpy as np
import pytest

import npydir
from npydir.errors import (
    AttributeEncodingError,
    InvalidNameError,
    PathEscapeError,
    ReadOnlyError,
    UnsupportedDTypeError,
)


@pytest.fixture
def root(tmp_path):
    with npydir.open(tmp_path / "s.npy", "w") as r:
        yield r


@pytest.mark.parametrize(
    "name",
    [
        "x.npy",
        "x.json",
        "attrs",
        ".hidden",
        "a\x00b",
        "a\\b",
        "bad:name",
        "CON",
        "x" * 256,
        "trailing.",
    ],
)
def test_bad_names_refused_everywhere(root, name):
    with pytest.raises(InvalidNameError, match="invalid name"):
        root.create_group(name)
    with pytest.raises(InvalidNameError):
        root.create_dataset(name, shape=(1,))
    with pytest.raises(InvalidNameError):
        root[name] = np.zeros(1)
    assert list(root) == []


@pytest.mark.parametrize("name", ["x.npy", "attrs", ".hidden", "a\\b"])
def test_bad_names_refused_on_lookup(root, name):
    with pytest.raises(InvalidNameError):
        root[name]
    assert name not in root


def test_non_portable_names_allowed_when_asked(tmp_path):
    with npydir.open(tmp_path / "p.npy", "w", portable=False) as r:
        r["a:b"] = np.zeros(1)
        r.create_group("CON")
        r.create_group("Train")
        r.create_group("train")
        assert sorted(r) == ["CON", "Train", "a:b", "train"]
    assert "a:b" in npydir.open(tmp_path / "p.npy")  # readable with the default portable=True


def test_case_clash_refused(root):
    root.create_group("Train")
    with pytest.raises(InvalidNameError, match="differs only in case"):
        root.create_group("train")
    root["x"] = np.zeros(1)
    with pytest.raises(InvalidNameError, match="differs only in case"):
        root.create_dataset("X", shape=(1,))
    with pytest.raises(InvalidNameError, match="differs only in case"):
        root.create_group("TRAIN/sub")


@pytest.mark.parametrize("key", ["..", "../x", "a/../../x", "a/.."])
def test_dotdot_refused(root, key):
    root.create_group("a")
    with pytest.raises(PathEscapeError, match=r"'\.\.'"):
        root[key]
    with pytest.raises(PathEscapeError):
        root.create_group(key)
    with pytest.raises(PathEscapeError):
        root.create_dataset(key, shape=(1,))
    with pytest.raises(PathEscapeError):
        root.move("a", key)
    assert key not in root


def test_absolute_keys_stay_inside(root, tmp_path):
    outside = tmp_path / "etc"
    root.create_dataset("/etc/passwd", data=np.zeros(1))  # h5py semantics: from the store root
    assert (root.filename / "etc" / "passwd.npy").exists() and not outside.exists()
    assert root.require_group("g")["/etc/passwd"].path == "etc/passwd"


def test_symlinks_leaving_the_store_are_refused(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    np.save(outside / "secret.npy", np.arange(3))
    os.symlink(outside, root.filename / "link")
    os.symlink(outside / "secret.npy", root.filename / "filelink.npy")
    os.symlink(tmp_path / "nowhere", root.filename / "dangling")
    with pytest.raises(PathEscapeError, match="outside the store"):
        root["link"]
    with pytest.raises(PathEscapeError, match="outside the store"):
        root["link/secret"]
    with pytest.raises(PathEscapeError, match="outside the store"):
        root["filelink"]
    with pytest.raises(PathEscapeError):
        root.create_dataset("link/new", shape=(1,))
    with pytest.raises(PathEscapeError):
        root.create_group("link/sub")
    with pytest.raises(PathEscapeError):
        root["dangling"]
    assert sorted(os.listdir(outside)) == ["secret.npy"]  # nothing written outside
    # a symlink that stays inside the store is fine
    root.create_group("real")["x"] = np.ones(2)
    os.symlink(root.filename / "real", root.filename / "alias")
    assert root["alias/x"][:].tolist() == [1, 1]


def test_read_only_refuses_every_write(tmp_path):
    p = tmp_path / "s.npy"
    with npydir.open(p, "w") as w:
        w["g/x"] = np.arange(4.0)
        w["g"].attrs["a"] = 1
    r = npydir.open(p, "r")
    x = r["g/x"]
    writes = {
        "create_group": lambda: r.create_group("h"),
        "require_group": lambda: r.require_group("h"),
        "create_dataset": lambda: r.create_dataset("y", shape=(1,)),
        "require_dataset": lambda: r.require_dataset("y", (1,), "f4"),
        "setitem": lambda: r.__setitem__("y", np.zeros(1)),
        "delitem": lambda: r.__delitem__("g"),
        "move": lambda: r.move("g", "h"),
        "attrs set": lambda: r["g"].attrs.__setitem__("b", 2),
        "attrs del": lambda: r["g"].attrs.__delitem__("a"),
        "attrs update": lambda: r.attrs.update(a=1),
        "array attrs": lambda: x.attrs.__setitem__("b", 2),
        "array setitem": lambda: x.__setitem__(0, 5.0),
        "append": lambda: x.append([1.0]),
        "resize": lambda: x.resize(10),
    }
    for what, write in writes.items():
        with pytest.raises(ReadOnlyError, match=r"read-only \(mode 'r'\)"):
            write()
            pytest.fail(f"{what} wrote to a read-only store")
    with pytest.raises(ValueError, match="read-only"):
        x[:][0] = 5.0  # numpy views of a read-only map refuse too: never a segfault
    with pytest.raises(ValueError, match="read-only"):
        np.asarray(x)[0] = 5.0
    assert isinstance(ReadOnlyError("m"), PermissionError)
    assert np.load(p / "g" / "x.npy").tolist() == [0, 1, 2, 3] and dict(r["g"].attrs) == {"a": 1}
    assert sorted(os.listdir(p)) == [".npydir.json", ".npydir.lock", "g"]


def test_object_dtypes_refused(root):
    with pytest.raises(UnsupportedDTypeError, match="object"):
        root.create_dataset("o", data=np.array([1, "a"], dtype=object))
    with pytest.raises(UnsupportedDTypeError):
        root.create_dataset("o", shape=(2,), dtype=object)
    with pytest.raises(UnsupportedDTypeError):
        root.create_dataset("o", shape=(2,), dtype=[("a", "i4"), ("b", "O")])
    with pytest.raises(UnsupportedDTypeError):
        root["o"] = [{"a": 1}]
    assert "o" not in root
    np.save(root.filename / "p.npy", np.array([None]), allow_pickle=True)
    with pytest.raises(UnsupportedDTypeError, match="p.npy.*object"):
        _ = root["p"].shape
    assert isinstance(UnsupportedDTypeError("m"), TypeError)


def test_unsupported_attr_values(root):
    x = root.create_dataset("x", shape=(1,))
    for target in (root.attrs, x.attrs):
        with pytest.raises(AttributeEncodingError, match="'when'.*datetime"):
            import datetime

            target["when"] = datetime.datetime.now()
        with pytest.raises(AttributeEncodingError, match="'objs'.*object"):
            target["objs"] = np.array([None, 1])
        with pytest.raises(AttributeEncodingError, match="str"):
            target[3] = 1
        assert len(target) == 0


def test_append_refusals(root):
    x = root.create_dataset("x", shape=(0, 2), dtype="i2")
    with pytest.raises(TypeError, match="int64 to int16"):
        x.append(np.zeros((1, 2), "i8"))
    with pytest.raises(TypeError, match="convert"):
        x.append([[70000, 1]])  # out of int16 range
    with pytest.raises(ValueError, match="does not fit"):
        x.append(np.zeros((1, 3), "i2"))
    assert x.shape == (0, 2)
    np.save(root.filename / "f.npy", np.asfortranarray(np.zeros((2, 2))))
    assert root["f"][:].tolist() == [[0, 0], [0, 0]]  # Fortran-order files read fine
    with pytest.raises(npydir.errors.FormatError, match="Fortran"):
        root["f"].append(np.zeros((1, 2)))


def test_deep_and_long_keys(root):
    import time

    from npydir.store.fsutil import remove

    with pytest.raises(InvalidNameError, match="exceed"):
        root.create_group("/".join(["e" * 200] * 25))  # refused before anything is created
    assert list(root) == []
    try:
        t0 = time.perf_counter()
        deep = "/".join(["d"] * 1500)
        g = root.create_group(deep)  # creating 1500 levels is linear, not quadratic, in depth
        assert g.path == deep and time.perf_counter() - t0 < 10
        assert "d/d/d" in root
        del root["d"]  # deletes without recursing once per level (shutil.rmtree would)
        assert list(root) == []
    finally:  # never leave a tree pytest's own (recursive) cleanup cannot remove
        if (root.filename / "d").exists():
            remove(root.filename / "d")


def _key_of_length(root, total: int) -> str:
    """A group key whose directory path is ``total`` bytes long (components of 200 bytes)."""
    base = len(os.fsencode(str(root.filename)))
    n = (total - base) // 200
    key = "/".join(["g" * 199] * n)
    rest = total - base - n * 200 - 1
    return key + "/" + "h" * rest if rest > 0 else key


def test_paths_near_path_max_work_or_are_refused_up_front(root):
    """Every group path is either refused by the name rules, naming the path and the limit, or
    every file npydir writes for it (attrs, arrays, their temp files) can be written."""
    from npydir.store.fsutil import remove
    from npydir.store.group import MAX_PATH_BYTES

    worked = refused = 0
    try:
        for total in range(MAX_PATH_BYTES - 60, MAX_PATH_BYTES + 1):
            key = _key_of_length(root, total)
            try:
                g = root.create_group(key)
            except InvalidNameError as exc:
                msg = str(exc)
                assert "PATH_MAX" in msg and str(MAX_PATH_BYTES) in msg and "\n" not in msg
                assert str(root.filename) in msg  # names the path
                refused += 1
                continue
            g.attrs["a"] = 1
            try:
                x = g.create_dataset("x", data=np.arange(3))
            except InvalidNameError as exc:
                assert "PATH_MAX" in str(exc)
            else:
                x.attrs["unit"] = "V"
                x.append([3])
                x.resize(2)
                assert root[key + "/x"][:].tolist() == [0, 1]
            assert root[key].attrs["a"] == 1
            worked += 1
            del root[key.split("/")[0]]
    finally:
        for n in os.listdir(root.filename):
            if n.startswith("g"):
                remove(root.filename / n)
    assert worked and refused


def test_moving_a_group_below_path_max_is_checked_for_everything_inside(root):
    from npydir.store.fsutil import remove

    root.create_group("a/" + "b" * 200 + "/" + "c" * 200).attrs["deep"] = 1
    far = _key_of_length(root, 3800)
    root.create_group(far)
    try:
        with pytest.raises(InvalidNameError, match="PATH_MAX"):
            root.move("a", far + "/a")
        assert root["a/" + "b" * 200 + "/" + "c" * 200].attrs["deep"] == 1
    finally:
        remove(root.filename / far.split("/")[0])


def test_copying_a_group_into_itself_is_refused_and_leaves_nothing(root):
    root["g/x"] = np.arange(3)
    root["g"].attrs["a"] = 1
    for key in ("g/inner", "g/a/b/c", "/g/inner"):
        with pytest.raises(ValueError, match="into itself"):
            root[key] = root["g"]
    with pytest.raises(ValueError, match="into itself"):
        root["g"]["inner"] = root  # the root holds every group
    assert root.tree() == "/\n└── g\n    └── x (3,) int64"
    root["copy"] = root["g"]  # a copy beside it is fine
    assert root["copy/x"][:].tolist() == [0, 1, 2] and root["copy"].attrs["a"] == 1
    loop: dict = {"x": np.arange(2)}
    loop["self"] = loop
    with pytest.raises(ValueError, match="contains itself"):
        root["loop"] = loop
    with pytest.raises(UnsupportedDTypeError):  # fails half-way: the partial copy is removed
        root["new/deep/half"] = {"a": np.arange(2), "b": {"c": np.array([object()])}}
    assert sorted(root) == ["copy", "g"]


def test_ints_beyond_the_4300_digit_bound_are_refused_naming_the_key(root):
    INT_MAX_DIGITS = 4300  # the README's bound: Python's default int/str conversion limit
    biggest = 10**INT_MAX_DIGITS - 1
    root.attrs.update(big=biggest, small=-biggest)
    assert root.attrs["big"] == biggest and root.attrs["small"] == -biggest
    for value in (10**INT_MAX_DIGITS, -(10**INT_MAX_DIGITS), 1 << 100_000):
        with pytest.raises(AttributeEncodingError, match=r"'huge\[0\]'.*4300 decimal digits"):
            root.attrs["huge"] = [value]
    assert "huge" not in root.attrs


def test_a_store_path_near_path_max_is_refused_for_writing(tmp_path):
    from npydir.store.fsutil import remove
    from npydir.store.group import MAX_PATH_BYTES

    base = tmp_path / ("p" * 200)
    parent = base
    while len(os.fsencode(str(parent))) < MAX_PATH_BYTES - 240:
        parent = parent / ("p" * 200)
    parent.mkdir(parents=True)
    try:
        store = parent / ("s" * (MAX_PATH_BYTES - len(os.fsencode(str(parent))) - 20))
        with pytest.raises(InvalidNameError, match="PATH_MAX") as exc:
            npydir.open(store, "w")
        assert "\n" not in str(exc.value) and not store.exists()
    finally:
        remove(base)
