"""Builders of small zarr / HDF5 / npydir datasets shared by the conversion tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import npydir


def das_arrays(seed: int = 0, n: int = 3_000, channels: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for split, rows in (("train", n), ("val", n // 3)):
        x = rng.standard_normal((rows, channels)).astype(np.float16)
        y = np.zeros((rows, 3), np.float32)
        y[np.arange(rows), rng.integers(0, 3, rows)] = 1
        out[split] = {"x": x, "y": y, "y_pulse": y[:, :2].copy()}
    return out


DAS_ATTRS = {
    "samplerate_x_Hz": 10_000,
    "samplerate_y_Hz": 10_000,
    "class_names": ["noise", "pulse", "sine"],
    "class_types": ["segment", "event", "segment"],
    "class_names_pulse": ["noise", "pulse"],
    "class_types_pulse": ["segment", "event"],
}


def make_zarr(path: Path, *, zarr_format: int | None = None, chunk_rows: int = 500,
              seed: int = 0) -> dict:
    """A DAS-like zarr store (as DAS's make_dataset writes them) in ``zarr_format`` (zarr's
    own default when None); returns the arrays."""
    from _zarr import create_array, open_group

    arrays = das_arrays(seed)
    root = open_group(path, zarr_format)
    root.attrs.update(DAS_ATTRS)
    for split, members in arrays.items():
        g = root.create_group(split)
        for name, value in members.items():
            a = create_array(g, name, shape=value.shape, dtype=value.dtype,
                             chunks=(chunk_rows,) + value.shape[1:])
            a[:] = value
    return arrays


def make_hdf5(path: Path, *, chunk_rows: int = 500, seed: int = 0,
              compression: str | None = "gzip") -> dict:
    import h5py

    arrays = das_arrays(seed)
    with h5py.File(path, "w") as f:
        f.attrs.update(DAS_ATTRS)
        for split, members in arrays.items():
            g = f.create_group(split)
            for name, value in members.items():
                g.create_dataset(name, data=value, chunks=(chunk_rows,) + value.shape[1:],
                                 compression=compression)
    return arrays


def make_npydir(path: Path, seed: int = 0) -> dict:
    arrays = das_arrays(seed)
    with npydir.open(path, "w") as root:
        root.attrs.update(DAS_ATTRS)
        for split, members in arrays.items():
            g = root.create_group(split)
            for name, value in members.items():
                g.create_dataset(name, data=value)
    return arrays


def tree_of(path) -> tuple[dict, dict]:
    """({array path: ndarray}, {group/array path: attrs}) of an npydir store."""
    arrays, attrs = {}, {}
    root = npydir.open(path, "r")
    attrs[""] = dict(root.attrs)

    def visit(name, obj):
        attrs[name] = dict(obj.attrs)
        if not hasattr(obj, "keys"):
            arrays[name] = np.array(obj[...])

    root.visititems(visit)
    return arrays, attrs


def assert_same_tree(a, b) -> None:
    from npydir.conversion.values import same_value

    arrays_a, attrs_a = a
    arrays_b, attrs_b = b
    assert sorted(arrays_a) == sorted(arrays_b)
    for key in arrays_a:
        x, y = arrays_a[key], arrays_b[key]
        assert x.dtype == y.dtype and x.shape == y.shape, key
        assert x.tobytes() == y.tobytes(), key
    assert sorted(attrs_a) == sorted(attrs_b)
    for key in attrs_a:
        assert same_value(attrs_a[key], attrs_b[key]), (key, attrs_a[key], attrs_b[key])
