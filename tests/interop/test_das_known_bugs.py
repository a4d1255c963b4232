"""Bugs in das 0.33.2 that the interop suite found, each pinned to DAS's exact behaviour.

npydir does not work around them; docs/das.md lists them ("Known DAS bugs we found"). Each
test asserts what DAS does today, so it fails (and the docs need updating) when DAS changes.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from _interop import assert_same_arrays, assert_same_attrs, das_style_dataset, onehot

import npydir


def test_io_load_cannot_open_any_h5_file(das, tmp_path):
    """``das.io.load`` calls ``h5py.File.open``, which h5py does not have."""
    data = das_style_dataset()
    path = tmp_path / "ds.h5"
    npydir.save(path, data)
    assert not hasattr(h5py.File, "open")
    with pytest.raises(AttributeError, match="type object 'File' has no attribute 'open'"):
        das.io.load(str(path))
    # the same happens for a file h5py itself writes: the bug is DAS's, not the file's
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.create_dataset("train/x", data=np.zeros((4, 1)))
    with pytest.raises(AttributeError, match="has no attribute 'open'"):
        das.io.load(str(plain))


def test_what_io_load_would_return_for_an_npydir_h5_file(das, tmp_path):
    """Past the failing open, ``das.io.load`` turns the file into a dict with ``_to_dict``:
    done with a correctly opened file, DAS sees npydir's ``.h5`` as saved, plus the one
    attribute in which npydir records the Python types HDF5 cannot keep (lists)."""
    data = das_style_dataset()
    path = tmp_path / "ds.h5"
    npydir.save(path, data)
    with h5py.File(path, "r") as f:
        seen = das.io._core._to_dict(f)
        assert_same_arrays(data, seen, "h5")
        assert set(seen.attrs) - set(data.attrs) == {"npydir_attr_types"}
        del seen.attrs["npydir_attr_types"]
        assert_same_attrs(data.attrs, seen.attrs)


def test_io_load_of_a_directory_that_is_not_zarr_2_is_empty_and_gets_a_zgroup(das, tmp_path):
    """``das.io.load`` opens ``.zarr`` with ``zarr.group(overwrite=False)``: a directory
    without zarr 2 metadata (a zarr 3 store, an npydir store named ``.zarr``) silently loads
    as an empty dataset, and DAS writes a ``.zgroup`` into it."""
    path = tmp_path / "v3.zarr"
    path.mkdir()
    (path / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"a": 1}})
    )
    loaded = das.io.load(str(path))
    assert dict(loaded) == {} and loaded.attrs == {}
    assert sorted(p.name for p in path.iterdir()) == [".zgroup", "zarr.json"]
    assert json.loads((path / ".zgroup").read_text()) == {"zarr_format": 2}


def test_audiosequence_unpack_channels_fails(das):
    """``unpack_channels=True`` makes x a list, and 0.33.2's final ``astype`` fails on it."""
    x = np.zeros((100, 2), np.float32)
    seq = das.io.AudioSequence(x, onehot(100, 2), batch_size=4, nb_hist=10, shuffle=False,
                               unpack_channels=True)
    with pytest.raises(AttributeError, match="'list' object has no attribute 'astype'"):
        seq[0]


def test_audiosequence_nb_repeats_unshuffled_runs_past_the_data(das):
    """``nb_repeats`` multiplies ``len()``, but unshuffled batch ``i`` still starts at
    window ``i * batch_size``: the first batch of the second repeat reads past the end."""
    n, batch_size, window = 100, 4, 10
    x = np.arange(n, dtype=np.float32)[:, None]
    seq = das.io.AudioSequence(x, onehot(n, 2), batch_size=batch_size, nb_hist=window,
                               shuffle=False, nb_repeats=2)
    once = das.io.AudioSequence(x, onehot(n, 2), batch_size=batch_size, nb_hist=window,
                                shuffle=False)
    assert len(seq) == 2 * len(once) == 44
    for i in range(len(once)):
        seq[i]
    with pytest.raises(ValueError, match="could not broadcast input array from shape"):
        seq[len(once)]


def test_init_store_does_not_check_the_number_of_class_types(das, tmp_path):
    """``init_store`` compares ``len(class_names)`` with ``nb_classes`` twice and never
    ``len(class_types)``: a store whose class types do not match its classes is made."""
    import zarr

    root = das.make_dataset.init_store(
        nb_channels=1, nb_classes=3, store=zarr.DirectoryStore(str(tmp_path / "s.zarr")),
        samplerate=10_000, class_names=["noise", "pulse", "sine"], class_types=["segment"],
    )
    assert root.attrs["class_types"] == ["segment"]
    assert root["train/y"].shape == (0, 3)
    with pytest.raises(ValueError, match="needs to match len"):
        das.make_dataset.init_store(
            nb_channels=1, nb_classes=3, store=zarr.DirectoryStore(str(tmp_path / "t.zarr")),
            samplerate=10_000, class_names=["noise", "pulse"], class_types=["segment"] * 3,
        )
