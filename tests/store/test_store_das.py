"""DAS compatibility: DAS's npy_dir stores open with their attrs; das_compat writes attrs.npy."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

import npydir
from npydir.errors import UnsafePickleError

ATTRS = {
    "samplerate_x_Hz": 10000,
    "samplerate_y_Hz": 10000,
    "class_names": ["noise", "pulse", "sine"],
    "class_types": ["segment", "event", "segment"],
    "filename_train": np.array(["rec1.wav", "rec2.wav"]),
    "filename_startsample_train": np.array([0, 5000]),
    "rate": np.float32(2.5),
}


def make_das_store(path, attrs=ATTRS):
    """What DAS's npy_dir.save writes, built with numpy alone."""
    rng = np.random.default_rng(0)
    os.makedirs(path)
    np.save(path / "attrs.npy", dict(attrs), allow_pickle=True)
    data = {}
    for split, n in (("train", 100), ("val", 30), ("test", 20)):
        os.makedirs(path / split)
        x = rng.standard_normal((n, 2)).astype("f4")
        y = np.eye(3, dtype="f4")[rng.integers(0, 3, n)]
        np.save(path / split / "x.npy", x)
        np.save(path / split / "y.npy", y)
        data[split] = {"x": x, "y": y}
    return data


def das_load(location):
    """DAS's npy_dir.load, as DAS ships it (what DAS's trainer reads)."""
    dirs = [
        os.path.join(location, n)
        for n in os.listdir(location)
        if os.path.isdir(os.path.join(location, n))
    ]
    out, attrs = {}, {}
    if os.path.exists(os.path.join(location, "attrs.npy")):
        attrs = np.load(os.path.join(location, "attrs.npy"), allow_pickle=True)[()]
    for d in dirs:
        key = os.path.basename(d)
        out[key] = {
            os.path.splitext(os.path.basename(f))[0]: np.lib.format.open_memmap(f, "r")
            for f in glob.glob(os.path.join(d, "*.npy"))
        }
    return out, attrs


def assert_attrs_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_das_store_opens_with_its_attrs(tmp_path):
    store = tmp_path / "das.npy"
    data = make_das_store(store)
    root = npydir.open(store)
    assert list(root) == ["test", "train", "val"] and root["train"].array_keys() == ["x", "y"]
    for split in data:
        for k, v in data[split].items():
            np.testing.assert_array_equal(root[split][k][:], v)
    assert_attrs_equal(dict(root.attrs), ATTRS)
    assert isinstance(root.attrs["rate"], np.float32)
    assert "attrs" not in root and len(root) == 3  # attrs.npy is not a member
    assert npydir.verify(store).ok


def test_writing_to_a_das_store_keeps_attrs_npy_in_sync(tmp_path):
    store = tmp_path / "das.npy"
    make_das_store(store)
    with npydir.open(store, "a") as root:
        root.attrs["new"] = 1
        root["train/x"].append(np.zeros((5, 2), "f4"))  # np.save headers have room to grow
    # attrs.json is written and is what npydir reads from now on ...
    assert (store / "attrs.json").exists()
    assert npydir.open(store).attrs["new"] == 1
    # ... and DAS's own loader still sees every attribute, including the new one
    arrays, attrs = das_load(store)
    assert attrs["new"] == 1 and attrs["class_names"] == ATTRS["class_names"]
    assert arrays["train"]["x"].shape == (105, 2)


def test_attrs_json_wins_over_attrs_npy(tmp_path):
    store = tmp_path / "das.npy"
    make_das_store(store)
    (store / "attrs.json").write_text('{"samplerate_x_Hz": 1}')
    assert dict(npydir.open(store).attrs) == {"samplerate_x_Hz": 1}


def test_das_compat_writes_attrs_npy_that_das_reads(tmp_path):
    store = tmp_path / "ours.npy"
    with npydir.open(store, "w", das_compat=True) as root:
        root.create_dataset("train/x", data=np.arange(20, dtype="f4").reshape(10, 2))
        root.create_dataset("val/x", data=np.zeros((3, 2), "f4"))
        root.attrs.update(ATTRS)
        root["train"].attrs["only_json"] = (
            1  # subgroup attrs live in attrs.json only, as DAS has none
        )
    arrays, attrs = das_load(store)
    assert_attrs_equal(attrs, ATTRS)
    assert sorted(arrays) == ["train", "val"] and sorted(arrays["train"]) == [
        "x"
    ]  # no stray entries
    np.testing.assert_array_equal(arrays["train"]["x"], np.arange(20).reshape(10, 2))
    assert not (store / "train" / "attrs.npy").exists()
    with npydir.open(store, "a", das_compat=True) as root:
        del root.attrs["rate"]
    assert "rate" not in das_load(store)[1]
    # without das_compat a fresh store has no attrs.npy
    with npydir.open(tmp_path / "plain.npy", "w") as root:
        root.attrs["a"] = 1
    assert not (tmp_path / "plain.npy" / "attrs.npy").exists()


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_attrs_npy_is_refused_and_runs_nothing(tmp_path):
    store = tmp_path / "das.npy"
    marker = tmp_path / "pwned"
    make_das_store(store, attrs={"samplerate_x_Hz": 1, "payload": Evil(marker)})
    root = npydir.open(store)  # opening is lazy and reads no attrs
    np.testing.assert_array_equal(root["train/x"].shape, (100, 2))
    with pytest.raises(
        UnsafePickleError, match="attrs.npy.*refusing to unpickle global (posix|os).system"
    ):
        dict(root.attrs)
    assert not marker.exists()
    rep = npydir.verify(store)
    assert rep.kinds() == ["bad-attrs"] and not marker.exists()
