"""Stores both ways: DAS's loaders on what npydir writes, npydir on what DAS writes.

DAS side: ``das.npy_dir.load``/``das.io.load`` (npy directories, zarr), ``das.npy_dir.save``,
and zarr stores made by ``das.make_dataset.init_store`` and filled by appending, as DAS's
dataset maker does. The ``.h5`` direction is in test_das_known_bugs.py: ``das.io.load``
cannot open any ``.h5`` file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _interop import (
    AttrsDict,
    assert_same_arrays,
    assert_same_attrs,
    das_style_dataset,
    onehot,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import npydir
from npydir import das as npydas


def zarr_format_of(path: Path) -> int:
    """The zarr format a directory store was written in, from its root metadata file."""
    if (path / "zarr.json").exists():
        return json.loads((path / "zarr.json").read_text())["zarr_format"]
    return json.loads((path / ".zgroup").read_text())["zarr_format"]


def assert_das_reads(das, path: Path, expected: AttrsDict) -> dict:
    """``das.io.load`` sees exactly ``expected``: keys, shapes, dtypes, values and attrs."""
    loaded = das.io.load(str(path))
    assert len(loaded) > 0, f"das.io.load({path}) found nothing"
    assert_same_arrays(expected, loaded, str(path))
    assert_same_attrs(expected.attrs, loaded.attrs)
    return loaded


# --------------------------------------------------------------------------- DAS reads npydir


def test_das_npy_dir_load_reads_a_das_compat_store(das, tmp_path):
    data = das_style_dataset()
    path = tmp_path / "ds.npy"
    npydir.save(path, data, das_compat=True)

    loaded = das.npy_dir.load(str(path))
    assert_same_arrays(data, loaded, "npy_dir.load")
    # the pickled attrs come back as the very objects that were saved
    assert loaded.attrs == data.attrs
    assert {k: type(v) for k, v in loaded.attrs.items()} == {
        k: type(v) for k, v in data.attrs.items()
    }
    # DAS memory-maps train and reads the other splits into memory: both work on our files
    assert isinstance(loaded["train"]["x"], np.memmap)
    assert not isinstance(loaded["val"]["x"], np.memmap)
    assert_same_arrays(data, das.npy_dir.load(str(path), memmap_dirs="all"), "memmap all")

    assert_das_reads(das, path, data)


def test_das_reads_numpy_attrs_of_a_das_compat_store_as_saved(das, tmp_path):
    data = das_style_dataset()
    data.attrs.update(
        nb_samples=np.int64(400),
        gain=np.float32(0.5),
        channel_gains=np.array([0.25, 1.5]),
        labels=np.array(["a", "bc"]),
        settings={"split": "recording", "seed": 0, "event_std_seconds": None},
    )
    path = tmp_path / "ds.npy"
    npydir.save(path, data, das_compat=True)
    attrs = das.npy_dir.load(str(path)).attrs
    for key, value in data.attrs.items():
        assert type(attrs[key]) is type(value), key
        if isinstance(value, np.ndarray):
            assert attrs[key].dtype == value.dtype, key
            np.testing.assert_array_equal(attrs[key], value)
        else:
            assert attrs[key] == value, key


def test_without_das_compat_das_finds_no_attrs(das, tmp_path):
    """Why ``das_compat`` exists: DAS reads attrs only from its pickled ``attrs.npy``."""
    data = das_style_dataset()
    path = tmp_path / "ds.npy"
    npydir.save(path, data)
    loaded = das.npy_dir.load(str(path))
    assert_same_arrays(data, loaded)
    assert loaded.attrs == {}
    assert npydir.load(path).attrs == data.attrs


@pytest.mark.parametrize("source_kind", [".h5", ".npy"])
def test_das_reads_npydir_convert_to_npy_with_das_compat(das, tmp_path, source_kind):
    data = das_style_dataset()
    src = tmp_path / f"src{source_kind}"
    npydir.save(src, data)
    dst = tmp_path / "dst.npy"
    npydir.convert(src, dst, das_compat=True, progress=False)
    assert_das_reads(das, dst, data)


def test_das_trains_on_make_dataset_output(das, tmp_path):
    npydas.make_recordings(tmp_path / "recs", n_recordings=4, seconds=2.0, channels=2)
    out = npydas.make_dataset(tmp_path / "recs", tmp_path / "ds.npy", suffixes=True)
    ours = npydir.load(out)
    theirs = das.io.load(str(out))
    assert_same_arrays(ours, theirs, "make_dataset")
    assert_same_attrs(ours.attrs, theirs.attrs)
    # the attrs DAS's training reads, and a y_suffix selection as das.train does it
    assert theirs.attrs["class_names"][0] == "noise"
    assert theirs["train"]["y"].shape[1] == len(theirs.attrs["class_names"])
    pulse = das.io.load(str(out), y_suffix="pulse")
    assert pulse.attrs["class_names"] == ["noise", "pulse"]
    np.testing.assert_array_equal(pulse["train"]["y"], ours["train"]["y_pulse"][...])
    seq = das.io.AudioSequence(
        theirs["train"]["x"], theirs["train"]["y"], batch_size=4, nb_hist=64, shuffle=False
    )
    x, y = seq[0]
    assert x.shape == (4, 64, 2) and y.shape == (4, len(theirs.attrs["class_names"]))


# zarr: what npydir writes for DAS must be format 2 (das.io.load opens it with zarr 2's
# DirectoryStore) and must never look empty to DAS.


def test_das_reads_npydir_save_to_zarr_with_das_compat(das, tmp_path):
    data = das_style_dataset()
    path = tmp_path / "ds.zarr"
    npydir.save(path, data, das_compat=True)
    assert zarr_format_of(path) == 2
    assert_das_reads(das, path, data)


def test_das_reads_npydir_convert_to_zarr_with_das_compat(das, tmp_path):
    data = das_style_dataset()
    src = tmp_path / "src.npy"
    npydir.save(src, data)
    dst = tmp_path / "dst.zarr"
    npydir.convert(src, dst, das_compat=True, progress=False)
    assert zarr_format_of(dst) == 2
    assert_das_reads(das, dst, data)


def test_das_reads_npydir_make_dataset_to_zarr(das, tmp_path):
    npydas.make_recordings(tmp_path / "recs", n_recordings=4, seconds=2.0)
    npy = npydas.make_dataset(tmp_path / "recs", tmp_path / "ds.npy")
    zarr_out = npydas.make_dataset(tmp_path / "recs", tmp_path / "ds.zarr")
    assert zarr_format_of(Path(zarr_out)) == 2
    expected = npydir.load(npy)
    theirs = das.io.load(str(zarr_out))
    assert_same_arrays(expected, theirs, "make_dataset .zarr")
    assert_same_attrs(expected.attrs, theirs.attrs)


# --------------------------------------------------------------------------- npydir reads DAS


def test_npydir_reads_das_npy_dir_save(das, tmp_path):
    data = das_style_dataset()
    path = tmp_path / "das.npy"
    das.npy_dir.save(str(path), data)

    loaded = npydir.load(path)
    assert_same_arrays(data, loaded, "npydir.load")
    assert loaded.attrs == data.attrs

    with npydir.open(path) as root:
        assert sorted(root.group_keys()) == sorted(data)
        assert dict(root.attrs) == data.attrs
        for split in data:
            for key, value in data[split].items():
                arr = root[f"{split}/{key}"]
                assert (arr.shape, arr.dtype) == (value.shape, value.dtype)
                np.testing.assert_array_equal(arr[:], value)
    report = npydir.verify(path)
    assert report.ok, report.problems


@pytest.mark.parametrize("dst_name", ["copy.npy", "copy.h5", "copy.zarr"])
def test_npydir_converts_das_npy_dir_save(das, tmp_path, dst_name):
    data = das_style_dataset()
    src = tmp_path / "das.npy"
    das.npy_dir.save(str(src), data)
    dst = tmp_path / dst_name
    npydir.convert(src, dst, progress=False, verify=True)
    loaded = npydir.load(dst)
    assert_same_arrays(data, loaded, dst_name)
    assert_same_attrs(data.attrs, loaded.attrs)


# attribute values DAS pickles and npydir's restricted unpickler admits: dicts, lists,
# strings, numbers and numeric/str numpy arrays
_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                   max_size=3),
    max_leaves=8,
)
_arrays = st.sampled_from(["f4", "f8", "i2", "i8", "u1", "U5"]).flatmap(
    lambda dt: st.lists(st.integers(0, 99), max_size=5).map(
        lambda v: np.array(v).astype(dt)
    )
)


@given(attrs=st.dictionaries(st.text(min_size=1, max_size=10), _values | _arrays, max_size=5))
@settings(max_examples=30)
def test_npydir_reads_any_attrs_das_pickles(das, tmp_path_factory, attrs):
    path = tmp_path_factory.mktemp("attrs") / "das.npy"
    data = AttrsDict(train={"x": np.zeros((3, 1), "f4")}, attrs=attrs)
    das.npy_dir.save(str(path), data)
    loaded = npydir.load(path).attrs
    assert sorted(loaded) == sorted(attrs)
    for key, value in attrs.items():
        if isinstance(value, np.ndarray):
            assert loaded[key].dtype == value.dtype
            np.testing.assert_array_equal(loaded[key], value)
        else:
            assert loaded[key] == value and type(loaded[key]) is type(value)


def das_zarr_store(das, path: Path, recordings, *, single_class: bool = True):
    """A zarr store made as DAS's dataset maker makes it.

    ``init_store`` creates the (0, C) float16 arrays and the attrs; each recording is then
    appended to its split, and the per-split file lists are re-assigned (zarr attrs are
    stored copies, so DAS's maker appends to a list and assigns it back).
    """
    import zarr

    root = das.make_dataset.init_store(
        nb_channels=recordings[0][1].shape[1],
        nb_classes=3,
        store=zarr.DirectoryStore(str(path)),
        samplerate=10_000,
        make_single_class_datasets=single_class,
        class_names=["noise", "pulse", "sine"],
        class_types=["segment", "event", "segment"],
        chunk_len=64,
    )
    for split, x, y, name in recordings:
        start = root[f"{split}/x"].shape[0]
        root[f"{split}/x"].append(x)
        root[f"{split}/y"].append(y)
        if single_class:
            for k, cls in enumerate(["pulse", "sine"], start=1):
                single = np.stack([1 - y[:, k], y[:, k]], axis=1)
                root[f"{split}/y_{cls}"].append(single)
        for attr, value in (
            (f"filename_{split}", name),
            (f"filename_startsample_{split}", start),
            (f"filename_endsample_{split}", start + len(x)),
        ):
            root.attrs[attr] = root.attrs[attr] + [value]
    return root


def das_recordings(channels: int = 2):
    rng = np.random.default_rng(1)
    out = []
    for k, (split, n) in enumerate(
        [("train", 150), ("train", 90), ("val", 70), ("test", 50), ("test", 33)]
    ):
        out.append(
            (split, rng.standard_normal((n, channels)), onehot(n, 3, seed=k), f"rec{k:03d}.wav")
        )
    return out


def test_npydir_reads_zarr_made_by_das_init_store(das, tmp_path):
    path = tmp_path / "das.zarr"
    das_zarr_store(das, path, das_recordings())
    expected = das.io.load(str(path))  # DAS's own view of its store
    assert expected["train"]["x"].dtype == np.float16  # init_store's choice, kept by append
    assert expected["train"]["x"].shape == (240, 2)

    loaded = npydir.load(path)
    assert_same_arrays(expected, loaded, "npydir.load")
    assert_same_attrs(expected.attrs, loaded.attrs)

    dst = tmp_path / "das.npy"
    npydir.convert(path, dst, das_compat=True, progress=False, verify=True)
    with npydir.open(dst) as root:
        assert_same_attrs(expected.attrs, dict(root.attrs))
        np.testing.assert_array_equal(root["train/y_pulse"][:], expected["train"]["y_pulse"][:])
    # and DAS trains on the converted store exactly as on its own
    assert_same_arrays(expected, das.io.load(str(dst)), "converted")
    assert_same_attrs(expected.attrs, das.io.load(str(dst)).attrs)


def test_npydir_reads_das_npy_dir_save_of_its_zarr_store(das, tmp_path):
    """DAS's maker ends with ``npy_dir.save(<name>.npy, zarr_root)``: a store npydir opens."""
    root = das_zarr_store(das, tmp_path / "das.zarr", das_recordings(channels=1))
    npy = tmp_path / "das.npy"
    das.npy_dir.save(str(npy), root)
    expected = das.io.load(str(tmp_path / "das.zarr"))
    loaded = npydir.load(npy)
    assert_same_arrays(expected, loaded, "npy_dir.save(zarr)")
    assert_same_attrs(expected.attrs, loaded.attrs)
    assert loaded.attrs["filename_startsample_train"] == [0, 150]
    batches = npydir.Batches(
        loaded["train"]["x"], loaded["train"]["y"], window=16, batch_size=8,
        boundaries=loaded.attrs["filename_startsample_train"], shuffle=False, prefetch=0,
    )
    assert len(batches) > 0 and batches[0][0].shape == (8, 16, 1)


@pytest.mark.parametrize("suffixes", [dict(y_suffix="pulse"), dict(x_suffix="spec"),
                                      dict(x_suffix="spec", y_suffix="pulse")])
def test_suffix_selection_matches_das_io_load(das, tmp_path, suffixes):
    """``npydir.load(x_suffix=, y_suffix=)`` selects what ``das.io.load`` selects."""
    data = das_style_dataset()
    for split in data:
        data[split]["x_spec"] = np.abs(data[split]["x"]).astype(np.float32)
    data.attrs["samplerate_x_spec_Hz"] = 500.0
    path = tmp_path / "ds.npy"
    npydir.save(path, data, das_compat=True)
    theirs = das.io.load(str(path), **suffixes)
    ours = npydir.load(path, **suffixes)
    assert_same_arrays(theirs, ours, str(suffixes))
    assert_same_attrs(theirs.attrs, ours.attrs)
