"""npydir.load and npydir.convert read remote sources: an npydir store by byte ranges, a
zarr store (DAS's assembly format) through fsspec, both from the moto S3 server."""

from __future__ import annotations

import numpy as np
import pytest

import npydir


@pytest.fixture(scope="module")
def s3_zarr(moto_server, s3_store, tmp_path_factory):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("s3fs")
    local = tmp_path_factory.mktemp("z") / "ds.zarr"
    root = zarr.open_group(local, mode="w")
    root.attrs["samplerate_x_Hz"] = 8000
    x = root.create_array("train/x", shape=(5000, 2), chunks=(1000, 2), dtype="f4")
    x[:] = np.arange(10_000, dtype="f4").reshape(5000, 2)
    root.create_array("train/y", shape=(5000, 3), chunks=(1000, 3), dtype="f4")[:] = 1
    moto_server.upload_dir(local, "npydir-zarr", "ds.zarr")
    _, options = s3_store
    return "s3://npydir-zarr/ds.zarr", options


def test_load_remote_npydir(remote, local_store):
    url, options = remote
    data = npydir.load(url, storage_options=options)
    local = npydir.load(local_store)
    assert data.attrs == local.attrs
    np.testing.assert_array_equal(data["train"]["x"][10:20], local["train"]["x"][10:20])


def test_load_remote_zarr(s3_zarr):
    url, options = s3_zarr
    data = npydir.load(url, storage_options=options)
    assert data.attrs["samplerate_x_Hz"] == 8000
    np.testing.assert_array_equal(data["train"]["x"][3], [6.0, 7.0])


def test_convert_s3_zarr_to_local_store(s3_zarr, tmp_path):
    url, options = s3_zarr
    out = tmp_path / "out.npy"
    npydir.convert(url, out, progress=False, storage_options=options)
    with npydir.open(out) as root:
        assert root.attrs["samplerate_x_Hz"] == 8000
        want = np.arange(10_000, dtype="f4").reshape(5000, 2)
        np.testing.assert_array_equal(root["train/x"][:], want)
        assert root["train/y"].shape == (5000, 3)


def test_convert_remote_npydir_to_local(remote, local_store, tmp_path):
    url, options = remote
    out = tmp_path / "copy.npy"
    npydir.convert(url, out, progress=False, storage_options=options)
    with npydir.open(out) as root, npydir.open(local_store) as loc:
        assert root.tree() == loc.tree()
        np.testing.assert_array_equal(root["train/i16"][:], loc["train/i16"][:])
        assert dict(root["train/x"].attrs) == dict(loc["train/x"].attrs)
