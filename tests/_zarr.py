"""zarr-python 2.18 and 3 in the tests: which one runs, the formats it writes, and stores
written with the real zarr API of each (never through npydir, whose reading is under test).

The zarr tests carry the ``zarr`` marker; ``make test`` runs them a second time against
zarr 2.18 (``-m zarr`` with ``.zarr2-site`` first on the path).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

#: 2 or 3: the zarr-python API the tests run against
MAJOR = int(zarr.__version__.split(".")[0])
ZARR2 = MAJOR == 2
# `make test` says which zarr its second run must have: a wrong one is a collection error,
# never a silent rerun against the first run's zarr
if os.environ.get("NPYDIR_TEST_ZARR", str(MAJOR)) != str(MAJOR):
    raise RuntimeError(f"NPYDIR_TEST_ZARR={os.environ['NPYDIR_TEST_ZARR']} but zarr "
                       f"{zarr.__version__} ({zarr.__file__}) is first on the path")

#: a format 3 store needs zarr-python 3: skipped, with the reason, under zarr 2
needs_zarr3 = pytest.mark.skipif(ZARR2, reason=f"zarr {zarr.__version__} writes and reads "
                                               "zarr format 2 only")


def formats() -> list:
    """``parametrize`` values for the zarr formats: 3 is skipped under zarr 2."""
    return [2, pytest.param(3, marks=needs_zarr3)]


def open_group(store, fmt: int | None = None, mode: str = "w"):
    """``zarr.open_group`` in format ``fmt`` (zarr's own default when None)."""
    store = os.fspath(store) if isinstance(store, os.PathLike) else store
    kwargs = {} if fmt is None else {"zarr_format": fmt}
    if ZARR2:
        assert fmt in (None, 2), "zarr 2 writes format 2 only"
        kwargs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zarr.open_group(store, mode=mode, **kwargs)


def create_array(group, name: str, *, shape, dtype, chunks, separator: str | None = None,
                 **kwargs):
    """An array in ``group``; ``separator`` sets the format 2 chunk key separator."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ZARR2:
            if separator is not None:
                kwargs["dimension_separator"] = separator
            return group.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, **kwargs)
        if separator is not None:
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": separator}
        return group.create_array(name, shape=shape, dtype=dtype, chunks=chunks, **kwargs)


def zarr_format(node) -> int:
    """The format of a zarr group or array as zarr itself reports it."""
    return 2 if ZARR2 else int(node.metadata.zarr_format)


def compressor_text(arr) -> str:
    """repr of an array's (last) compressor."""
    if ZARR2:
        return repr(arr.compressor)
    meta = arr.metadata
    return repr(meta.compressor if meta.zarr_format == 2 else meta.codecs[-1])


def das_store(path, arrays: dict, attrs: dict, *, chunk_len: int = 1_000_000):
    """A store as DAS's ``make_dataset.init_store`` makes it and DAS's dataset maker fills it:
    format 2 through ``zarr.group(store=..., overwrite=True)``; per split, arrays created
    empty as float16 with ``chunk_len``-row chunks (``y_<class>`` with the chunk width of
    ``y``, as DAS gives them) and grown by ``append``; attrs set on the root one by one.
    ``arrays`` maps split -> name -> data (``x``, ``y``, ``y_<class>``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ZARR2:
            root = zarr.group(store=str(path), overwrite=True)
        else:  # zarr 3: Group.empty ignores the group's format, create_array keeps it
            root = zarr.group(store=str(path), overwrite=True, zarr_format=2)
        for split, members in arrays.items():
            width = members["y"].shape[1]
            for name, data in members.items():
                shape = (0,) + tuple(data.shape[1:])
                chunks = (chunk_len, width if name.startswith("y_") else data.shape[1])
                if ZARR2:
                    arr = root.empty(name=f"{split}/{name}", shape=shape, chunks=chunks,
                                     dtype=np.float16)
                else:
                    arr = root.create_array(f"{split}/{name}", shape=shape, chunks=chunks,
                                            dtype=np.float16)
                half = len(data) // 2  # appended in two steps, as recordings are
                arr.append(np.asarray(data[:half], np.float16))
                arr.append(np.asarray(data[half:], np.float16))
        for key, value in attrs.items():
            root.attrs[key] = value
    return root


def das_reads(path) -> tuple[dict, dict]:
    """What ``das.io.load`` gets from a ``.zarr``: ``({split: {name: ndarray}}, attrs)``.

    Under zarr 2 through the zarr calls ``das.io.load`` makes (a group over an LRU-cached
    ``DirectoryStore``, opened with ``overwrite=False``, which creates an empty group where
    it finds none: a format 3 store reads as empty).  zarr 3 has no ``DirectoryStore``; there
    the store is read as format 2, which fails for anything DAS could not read either."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ZARR2:
            store = zarr.LRUStoreCache(zarr.storage.DirectoryStore(str(path)), max_size=2**28)
            root = zarr.group(store=store, overwrite=False)
        else:
            root = zarr.open_group(str(path), mode="r", zarr_format=2)
        # das.io.load walks each split with items(); zarr 3 groups have arrays() instead
        data = {split: {name: np.asarray(arr[...]) for name, arr in
                        (root[split].items() if ZARR2 else root[split].arrays())}
                for split in root.keys()}
        return data, dict(root.attrs)
