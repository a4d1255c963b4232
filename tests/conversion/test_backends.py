"""load(): every backend by extension, DAS suffix selection, laziness, refusals."""

from __future__ import annotations

import numpy as np
import pytest

import npydir
from npydir.conversion.backends import Dataset
from npydir.errors import MemberNotFoundError, StoreNotFoundError, UnknownBackendError

from _convert_fixtures import DAS_ATTRS, make_hdf5, make_npydir, make_zarr

zarr = pytest.importorskip("zarr")
h5py = pytest.importorskip("h5py")
from _zarr import create_array, needs_zarr3, open_group  # noqa: E402

pytestmark = [pytest.mark.zarr,
              pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")]


def _zip(tmp_path):
    from zarr.storage import ZipStore

    make_zarr(tmp_path / "dir.zarr", zarr_format=2)
    store = ZipStore(tmp_path / "d.zarr.zip", mode="w")
    src = open_group(tmp_path / "dir.zarr", mode="r")
    dst = open_group(store, 2)
    dst.attrs.update(src.attrs.asdict())
    for split in ("train", "val"):
        g = dst.create_group(split)
        for name, arr in src[split].arrays():
            out = create_array(g, name, shape=arr.shape, dtype=arr.dtype, chunks=arr.chunks)
            out[:] = arr[:]
    store.close()
    return tmp_path / "d.zarr.zip"


MAKERS = {
    "d.npy": lambda p: make_npydir(p / "d.npy") and p / "d.npy",
    "d.zarr": lambda p: make_zarr(p / "d.zarr", zarr_format=3) and p / "d.zarr",
    "d2.zarr": lambda p: make_zarr(p / "d2.zarr", zarr_format=2) and p / "d2.zarr",
    "d.zarr.zip": _zip,
    "d.h5": lambda p: make_hdf5(p / "d.h5") and p / "d.h5",
}
#: the makers' names; the format 3 store is skipped under zarr 2
NAMES = [pytest.param(n, marks=needs_zarr3) if n == "d.zarr" else n for n in MAKERS]


@pytest.mark.parametrize("name", NAMES)
def test_load_every_backend_same_structure(tmp_path, name):
    path = MAKERS[name](tmp_path)
    with npydir.load(path) as data:
        assert isinstance(data, Dataset) and isinstance(data["train"], Dataset)
        assert sorted(data) == ["train", "val"]
        assert sorted(data["train"]) == ["x", "y", "y_pulse"]
        assert data["train"]["x"].shape == (3000, 3)
        assert data["train"]["x"].dtype == np.float16
        ref = make_npydir(tmp_path / "ref.npy") if name != "d.npy" else None
        if ref is not None:
            np.testing.assert_array_equal(data["train"]["x"][100:200], ref["train"]["x"][100:200])
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                 for k, v in data.attrs.items()}
        assert attrs == DAS_ATTRS


def test_arrays_stay_lazy(tmp_path):
    make_zarr(tmp_path / "d.zarr")
    make_hdf5(tmp_path / "d.h5")
    make_npydir(tmp_path / "d.npy")
    assert isinstance(npydir.load(tmp_path / "d.zarr")["train"]["x"], zarr.Array)
    with npydir.load(tmp_path / "d.h5") as data:
        assert isinstance(data["train"]["x"], h5py.Dataset)
    x = npydir.load(tmp_path / "d.npy")["train"]["x"]
    assert isinstance(x, npydir.Array)
    assert not np.asarray(x).flags.owndata  # a view of the memory map, not a copy


def test_hdf5_dataset_close(tmp_path):
    make_hdf5(tmp_path / "d.h5")
    data = npydir.load(tmp_path / "d.h5")
    x = data["train"]["x"]
    data.close()
    with pytest.raises(Exception):
        x[0]


@pytest.mark.parametrize("name", ["d.npy", "d2.zarr", "d.h5"])
def test_suffix_selection_as_das(tmp_path, name):
    path = MAKERS[name](tmp_path)
    data = npydir.load(path, y_suffix="pulse")
    for split in ("train", "val"):
        assert data[split]["y"] is data[split]["y_pulse"]
        assert data[split]["y"].shape[1] == 2
    assert list(data.attrs["class_names"]) == ["noise", "pulse"]
    assert list(data.attrs["class_types"]) == ["segment", "event"]
    plain = npydir.load(path)
    assert plain["train"]["y"].shape[1] == 3
    assert list(plain.attrs["class_names"]) == ["noise", "pulse", "sine"]


def test_x_suffix_and_samplerate(tmp_path):
    with npydir.open(tmp_path / "d.npy", "w") as root:
        root.attrs.update({"samplerate_x_Hz": 10_000, "samplerate_x_spec_Hz": 500})
        for split in ("train", "val"):
            root.create_dataset(f"{split}/x", data=np.zeros((10, 1)))
            root.create_dataset(f"{split}/x_spec", data=np.ones((10, 4)))
            root.create_dataset(f"{split}/eventtimes_spec", data=np.arange(3))
    data = npydir.load(tmp_path / "d.npy", x_suffix="spec")
    assert data["train"]["x"].shape == (10, 4)
    assert data["val"]["eventtimes"] is data["val"]["eventtimes_spec"]
    assert data.attrs["samplerate_x_Hz"] == 500


def test_unknown_suffix_is_an_error_listing_the_available_ones(tmp_path):
    make_npydir(tmp_path / "d.npy")
    with pytest.raises(MemberNotFoundError, match="y_sine.*y_pulse"):
        npydir.load(tmp_path / "d.npy", y_suffix="sine")


def test_unknown_extension_lists_supported(tmp_path):
    (tmp_path / "d.parquet").mkdir()
    with pytest.raises(UnknownBackendError) as info:
        npydir.load(tmp_path / "d.parquet")
    for ext in (".npy", ".zarr", ".zip", ".h5", ".hdf5"):
        assert ext in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_path(tmp_path):
    for name in ("nope.npy", "nope.zarr", "nope.h5"):
        with pytest.raises(StoreNotFoundError, match=name):
            npydir.load(tmp_path / name)


def test_not_a_store_is_a_clear_error(tmp_path):
    (tmp_path / "bad.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(npydir.errors.ConversionError, match="bad.h5"):
        npydir.load(tmp_path / "bad.h5")


def test_das_legacy_npy_dir_loads(tmp_path):
    """A store as DAS's npy_dir writes it: np.save of every array and of the attrs dict."""
    root = tmp_path / "legacy.npy"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    for split in ("train", "val"):
        np.save(root / split / "x.npy", x)
        np.save(root / split / "y.npy", np.eye(2)[np.arange(10) % 2])
    np.save(root / "attrs.npy", {"samplerate_x_Hz": 1000, "class_names": ["noise", "song"]})
    data = npydir.load(root)
    np.testing.assert_array_equal(data["train"]["x"][...], x)
    assert data.attrs["samplerate_x_Hz"] == 1000
    assert list(data.attrs["class_names"]) == ["noise", "song"]
