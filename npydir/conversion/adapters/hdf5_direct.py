"""Read HDF5 dataset rows straight from the file's bytes, outside h5py's global lock.

h5py serialises every call behind one global lock, so a pool of reader threads calling
``read_direct`` reads one block at a time: no two reads (and no read and a decompression) of
one conversion ever overlap.  For the layouts that hold plain bytes at known file offsets this
module reads them itself, with ``os.preadv`` on its own file descriptor (which releases the
GIL), and decodes the standard filters outside the lock:

* **contiguous** datasets: the rows are ``H5Dget_offset() + row * row_bytes``;
* **chunked** datasets: each chunk's address and stored size come from
  ``H5Dget_chunk_info_by_coord`` (one short h5py call per chunk); an unfiltered chunk of whole
  rows is read straight into the caller's buffer, any other chunk is read, decoded if needed
  (``deflate`` with :mod:`zlib`, ``shuffle`` with numpy; in the reverse order of the filter
  pipeline, skipping the filters the chunk's filter mask says were not applied) and its part
  copied into place; a chunk that was never written reads as the dataset's fill value.

Everything else — other filters (lzf, szip, fletcher32, scale-offset, plugins), compact,
external or virtual storage, file drivers other than ``sec2``, types whose file
representation differs from the numpy dtype, and missing chunks whose fill value HDF5 would
not write — is declined (:meth:`DirectReader.create` returns None, or ``read_into`` returns
False) and h5py reads it as before.  The tests compare every path with h5py's own read, byte
for byte.
"""

from __future__ import annotations

import itertools
import zlib
from typing import Any

import numpy as np

from ..protocol import scratch as _scratch
from ...errors import ConversionError
from ...store.npyfile import pread_full

#: HDF5 filter ids decoded here (H5Zpublic.h)
DEFLATE, SHUFFLE = 1, 2

def _pread_into(fd: int, view: memoryview, offset: int, where: str) -> None:
    """Fill ``view`` from ``fd`` at ``offset``; a short file is a clear error."""
    total = len(view)
    done = pread_full(fd, view, offset)
    if done < total:
        raise ConversionError(
            f"{where}: the file ends before byte {offset + total} "
            f"(read {done} of {total} bytes at offset {offset}); is it truncated?")


def _unshuffle(data: memoryview | bytes, itemsize: int) -> np.ndarray:
    """Undo HDF5's shuffle filter: byte ``j`` of every element was stored together."""
    raw = np.frombuffer(data, np.uint8)
    n = len(raw) // itemsize
    out = np.empty(len(raw), np.uint8)
    out[:n * itemsize].reshape(n, itemsize)[...] = raw[:n * itemsize].reshape(itemsize, n).T
    out[n * itemsize:] = raw[n * itemsize:]  # leftover bytes are stored as they are
    return out


class DirectReader:
    """Reads rows of one dataset from the file's bytes; see the module docstring."""

    def __init__(self, dset, fd: int, where: str):
        self.fd = fd
        self.where = where
        self.shape = tuple(int(s) for s in dset.shape)
        self.dtype = np.dtype(dset.dtype)
        self.itemsize = self.dtype.itemsize
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.itemsize
        self.dsid = dset.id
        dcpl = dset.id.get_create_plist()
        self.chunks = tuple(int(c) for c in dset.chunks) if dset.chunks else None
        self.offset = None if self.chunks else dset.id.get_offset()
        self.filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
        self.fill = self._fill_value(dset, dcpl)

    @classmethod
    def create(cls, dset, fd: int, where: str) -> DirectReader | None:
        """A reader for ``dset``, or None when h5py must read it (see the module docstring)."""
        import h5py

        try:
            dtype = np.dtype(dset.dtype)
            dcpl = dset.id.get_create_plist()
            layout = dcpl.get_layout()
            if (not dset.shape or dtype.kind not in "biufc" or dtype.names is not None
                    or dtype.itemsize == 0 or dset.file.driver != "sec2"
                    or dset.is_virtual or dcpl.get_external_count()
                    or layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED)):
                return None
            # the bytes in the file are exactly numpy's: same size, order, sign, format
            if dset.id.get_type() != h5py.h5t.py_create(dtype):
                return None
            if layout == h5py.h5d.CHUNKED:
                filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
                if any(f not in (DEFLATE, SHUFFLE) for f in filters):
                    return None
            return cls(dset, fd, where)
        except Exception:  # anything h5py cannot tell us: let it read the data itself
            return None

    @staticmethod
    def _fill_value(dset, dcpl) -> np.ndarray | None:
        """The value HDF5 reads for storage never written, or None where HDF5 would leave
        the caller's buffer as it is (no fill value defined, or fill time "never")."""
        import h5py

        status = dcpl.fill_value_defined()
        if (status not in (h5py.h5d.FILL_VALUE_DEFAULT, h5py.h5d.FILL_VALUE_USER_DEFINED)
                or dcpl.get_fill_time() == h5py.h5d.FILL_TIME_NEVER):
            return None
        value = np.zeros((), dtype=dset.dtype)
        dcpl.get_fill_value(value)
        return value

    # ---------------------------------------------------------------------------- reading

    def read_into(self, start: int, stop: int, out: np.ndarray) -> bool:
        """Rows ``start:stop`` into ``out`` (C-contiguous, this dataset's dtype and row
        shape).  False (``out`` untouched or to be overwritten) when h5py has to do it."""
        if (out.dtype != self.dtype or not out.flags.c_contiguous or stop <= start
                or start < 0 or stop > self.shape[0]
                or out.shape != (stop - start,) + self.shape[1:]):
            return False
        if self.chunks is None:
            return self._read_contiguous(start, stop, out)
        return self._read_chunked(start, stop, out)

    def _read_contiguous(self, start: int, stop: int, out: np.ndarray) -> bool:
        if self.offset is None:  # storage never allocated: all fill value
            if self.fill is None:
                return False
            out[...] = self.fill
            return True
        view = out.reshape(-1).view(np.uint8).data
        _pread_into(self.fd, view, self.offset + start * self.row_bytes, self.where)
        return True

    def _read_chunked(self, start: int, stop: int, out: np.ndarray) -> bool:
        c = self.chunks
        assert c is not None  # a chunked dataset
        whole_rows = c[1:] == self.shape[1:]
        chunk_nbytes = int(np.prod(c, dtype=np.int64)) * self.itemsize
        # chunk grid: rows first, then every chunk across the other dimensions
        grids = [range(start // c[0] * c[0], stop, c[0])]
        grids += [range(0, n, k) for n, k in zip(self.shape[1:], c[1:])]
        for corner in itertools.product(*grids):
            try:
                info = self.dsid.get_chunk_info_by_coord(corner)
            except Exception as exc:  # a damaged chunk index
                raise ConversionError(f"{self.where}: cannot locate the chunk at {corner}: "
                                      f"{exc}") from exc
            # the part of this chunk inside rows start:stop, in dataset coordinates
            lo = [max(corner[0], start)] + list(corner[1:])
            hi = [min(corner[0] + c[0], stop)] + [min(o + k, n) for o, k, n in
                                                   zip(corner[1:], c[1:], self.shape[1:])]
            dst = out[(slice(lo[0] - start, hi[0] - start),)
                      + tuple(slice(a, b) for a, b in zip(lo[1:], hi[1:]))]
            if info.byte_offset is None:  # never written
                if self.fill is None:
                    return False
                dst[...] = self.fill
                continue
            applied = [f for i, f in enumerate(self.filters) if not (info.filter_mask >> i) & 1]
            where = f"{self.where}: chunk at {corner}"
            if not applied:
                if info.size != chunk_nbytes:
                    raise ConversionError(f"{where} holds {info.size} bytes, "
                                          f"{chunk_nbytes} expected")
                if whole_rows:  # the rows are plain bytes in the file: read them in place
                    skip = (lo[0] - corner[0]) * self.row_bytes
                    view = dst.reshape(-1).view(np.uint8).data
                    _pread_into(self.fd, view, info.byte_offset + skip, where)
                    continue
                raw: Any = _scratch(chunk_nbytes)
                _pread_into(self.fd, raw, info.byte_offset, where)
            else:
                raw = _scratch(info.size)
                _pread_into(self.fd, raw, info.byte_offset, where)
                raw = self._decode(raw, applied, chunk_nbytes, where)
            chunk = np.frombuffer(raw, self.dtype, count=chunk_nbytes // self.itemsize)
            chunk = chunk.reshape(c)
            dst[...] = chunk[tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, corner))]
        return True

    def _decode(self, raw, applied: list[int], nbytes: int, where: str):
        """Undo the filters in ``applied`` (pipeline order), last one first."""
        data = raw
        for fid in reversed(applied):
            if fid == DEFLATE:
                try:
                    data = zlib.decompress(data, bufsize=nbytes)
                except zlib.error as exc:
                    raise ConversionError(f"{where}: corrupt deflate data: {exc}") from exc
            elif fid == SHUFFLE:
                data = _unshuffle(data, self.itemsize)
        if len(data) != nbytes:
            raise ConversionError(f"{where} decodes to {len(data)} bytes, {nbytes} expected")
        return data
