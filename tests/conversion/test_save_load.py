"""save(): nested Mappings of any depth with attrs, atomically, to every backend."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import npydir
from npydir.conversion.backends import Dataset
from npydir.errors import AlreadyExistsError, ConversionError

from _convert_fixtures import DAS_ATTRS, das_arrays, make_zarr

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def _nested():
    data = Dataset(attrs={"level": 0, "rate": np.float32(2.5), "names": ["a", "b"]})
    data["train"] = Dataset(attrs={"level": 1})
    data["train"]["x"] = np.arange(12, dtype="i2").reshape(6, 2)
    data["train"]["deep"] = Dataset(attrs={"level": 2})
    data["train"]["deep"]["deeper"] = {"z": [1.0, 2.0, 3.0], "s": np.float64(7.0)}
    data["labels"] = np.array(["noise", "pulse"])
    return data


def _check(loaded):
    assert loaded.attrs["level"] == 0 and loaded.attrs["names"] == ["a", "b"]
    assert loaded.attrs["rate"] == np.float32(2.5)
    assert loaded["train"].attrs == {"level": 1}
    assert loaded["train"]["deep"].attrs == {"level": 2}
    np.testing.assert_array_equal(loaded["train"]["x"][...], np.arange(12).reshape(6, 2))
    assert loaded["train"]["x"].dtype == np.dtype("i2")
    assert loaded["train"]["deep"]["deeper"]["z"][...].tolist() == [1.0, 2.0, 3.0]
    assert loaded["train"]["deep"]["deeper"]["s"][...] == 7.0
    # h5py hands back unicode stored in HDF5 as UTF-8 bytes (load keeps h5py's datasets)
    labels = [s.decode() if isinstance(s, bytes) else str(s) for s in loaded["labels"][...]]
    assert labels == ["noise", "pulse"]


@pytest.mark.parametrize("name", ["d.npy", pytest.param("d.zarr", marks=pytest.mark.zarr),
                                  "d.h5"])
def test_save_nested_any_depth_with_attrs(tmp_path, name):
    pytest.importorskip("zarr")
    pytest.importorskip("h5py")
    npydir.save(tmp_path / name, _nested())
    with npydir.load(tmp_path / name) as loaded:
        _check(loaded)
    assert not any(p.name.startswith(".d.") for p in tmp_path.iterdir())


def test_save_das_compat_writes_attrs_npy(tmp_path):
    data = Dataset(attrs=dict(DAS_ATTRS))
    for split, members in das_arrays().items():
        data[split] = dict(members)
    npydir.save(tmp_path / "d.npy", data, das_compat=True)
    legacy = np.load(tmp_path / "d.npy" / "attrs.npy", allow_pickle=True)[()]
    assert legacy == DAS_ATTRS
    assert (tmp_path / "d.npy" / "train" / "x.npy").is_file()
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy" / "train" / "x.npy"),
                                  data["train"]["x"])
    npydir.save(tmp_path / "plain.npy", data)
    assert not (tmp_path / "plain.npy" / "attrs.npy").exists()


@pytest.mark.zarr
def test_save_streams_lazy_arrays(tmp_path):
    pytest.importorskip("zarr")
    arrays = make_zarr(tmp_path / "d.zarr", chunk_rows=100)
    loaded = npydir.load(tmp_path / "d.zarr")
    npydir.save(tmp_path / "d.npy", loaded, memory_budget=10_000)
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy" / "train" / "x.npy"),
                                  arrays["train"]["x"])


def test_save_round_trips_a_loaded_store(tmp_path):
    npydir.save(tmp_path / "a.npy", _nested())
    npydir.save(tmp_path / "b.npy", npydir.load(tmp_path / "a.npy"))
    _check(npydir.load(tmp_path / "b.npy"))


def test_save_refuses_existing_unless_overwrite(tmp_path):
    npydir.save(tmp_path / "d.npy", {"x": np.arange(3)})
    with pytest.raises(AlreadyExistsError, match="overwrite=True"):
        npydir.save(tmp_path / "d.npy", {"x": np.arange(4)})
    assert np.load(tmp_path / "d.npy" / "x.npy").tolist() == [0, 1, 2]  # untouched
    npydir.save(tmp_path / "d.npy", {"x": np.arange(4)}, overwrite=True)
    assert np.load(tmp_path / "d.npy" / "x.npy").tolist() == [0, 1, 2, 3]


def test_save_refuses_objects_before_writing(tmp_path):
    with pytest.raises(ConversionError, match="'bad'.*objects"):
        npydir.save(tmp_path / "d.npy", {"x": np.arange(3), "bad": np.array([{}, 1], dtype=object)})
    assert not (tmp_path / "d.npy").exists()
    assert not (tmp_path / ".d.npy.partial").exists()
    with pytest.raises(ConversionError, match="not a string"):
        npydir.save(tmp_path / "d.npy", {1: np.arange(3)})
    with pytest.raises(ConversionError, match="attribute 'f'"):
        npydir.save(tmp_path / "e.npy", Dataset({"x": np.arange(2)}, attrs={"f": open}))
    assert not (tmp_path / "e.npy").exists()
    with pytest.raises(TypeError, match="Mapping"):
        npydir.save(tmp_path / "f.npy", [np.arange(3)])


def test_save_killed_mid_way_leaves_no_store(tmp_path, monkeypatch):
    from npydir.conversion.adapters.npydir_store import NpydirDest

    real = NpydirDest.write
    count = {"n": 0}

    def dying(self, *args):
        count["n"] += 1
        if count["n"] == 2:
            raise OSError("disk full")
        return real(self, *args)

    monkeypatch.setattr(NpydirDest, "write", dying)
    monkeypatch.setattr(NpydirDest, "concurrent_writes", False)
    with pytest.raises(OSError, match="disk full"):
        npydir.save(tmp_path / "d.npy", {"a": np.arange(3), "b": np.arange(4), "c": np.ones(2)})
    assert list(tmp_path.iterdir()) == []


def test_saved_arrays_pickle_small(tmp_path):
    npydir.save(tmp_path / "d.npy", {"x": np.zeros((100_000, 4), "f4")})
    x = npydir.load(tmp_path / "d.npy")["x"]
    assert len(pickle.dumps(x)) < 2000
