"""Random-window batch throughput of npydir against the other ways to keep the same data.

``npydir bench`` (and :func:`run_bench`) answers one question for one dataset: how many
training windows per second does each backend deliver?  Every backend reads the *same*
random window starts in a repeat (fresh starts each repeat) into a preallocated batch
buffer, and the report gives the median over repeats.

Backends
--------
``memcpy``
    The limit: the bytes a batch holds, copied contiguously from the same data: a ``memcpy``
    out of the memory map (warm), one ``read()`` of the file (cold, where a copy out of a
    fresh map would fault page by page and be no limit).
``npydir`` / ``npydir-1t``
    :func:`npydir.gather_windows` on the memory-mapped ``.npy`` file: threads as the kernel
    chooses them (up to all cores, as many as the batch pays for; ``threads=N`` forces N) /
    one thread.
``numpy``
    The best pure-NumPy way: ``np.take(x, starts[:, None] + arange(window), axis=0)``.
``das-loop``
    What DAS's ``AudioSequence`` does: a Python loop of ``x[s:s + window].copy()``.
``zarr``
    zarr as stored (the user's ``.zarr``), or written with zarr's defaults; read by the DAS loop.
``zarr-das``
    zarr as DAS's ``make_dataset`` writes it: format 2, float16, chunks
    ``(1_000_000, channels)``, Blosc lz4 level 5 with byte shuffle; read by the DAS loop.
``h5-chunked`` / ``h5-contiguous``
    HDF5 via h5py, chunked (about 1 MiB chunks, uncompressed) and contiguous; read by the DAS
    loop.  A user's ``.h5`` takes the slot of its own layout.
``tensorstore``
    The ``zarr`` store read by tensorstore, when tensorstore is installed (skipped otherwise).

Cache states
------------
*warm*: the steady state of a training run on data that fits in memory.  Every file is read
once (page cache), and each backend is opened once for the whole run, memory maps with every
page already mapped into the process (``prefault``), so the numbers are copies, not faults.
*cold* (``cold=True``): before every batch the reader is closed, the kernel is told to drop
the backend's files from the page cache (``posix_fadvise(POSIX_FADV_DONTNEED)``, after an
``fsync`` so no dirty page survives) and the files are opened and mapped afresh.  Only the
batch itself is timed.

Numbers
-------
``windows_per_s`` is the median over repeats of windows read divided by the time spent
reading them.  ``gb_per_s`` is that rate times the bytes of one window *as the backend stores
it* (float16 for ``zarr-das``).  ``ratio_to_limit`` = ``gb_per_s / gb_per_s(memcpy)``, the
fraction of the copy bandwidth; ``ratio_to_npydir`` = ``windows_per_s /
windows_per_s(npydir)``, how many windows a backend delivers per npydir window.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..conversion.adapters import zarr_compat as zc
from ..conversion.adapters.zarr_store import DAS_CHUNK_ROWS, DAS_COMPRESSION, zarr_compressors
from ..conversion.backends import load
from ..das import synthetic
from ..errors import MemberNotFoundError, StoreNotFoundError
from ..kernel import windows
from ..store.group import open as open_store
from ..store.npyfile import pread_full

__all__ = [
    "ALL_BACKENDS",
    "format_table",
    "drop_cache",
    "make_plan",
    "make_synthetic",
    "parse_size",
    "plot_results",
    "run_bench",
    "write_json",
]

#: Every backend name, in report order.
ALL_BACKENDS: tuple[str, ...] = (
    "memcpy",
    "npydir",
    "npydir-1t",
    "numpy",
    "das-loop",
    "zarr",
    "zarr-das",
    "h5-chunked",
    "h5-contiguous",
    "tensorstore",
)

#: Backends every run measures, because the ratios are relative to them.
_REFERENCE = ("memcpy", "npydir")

_DESCRIPTIONS = {
    "memcpy": "memcpy of the same bytes from the same map (the limit)",
    "npydir": "npydir.gather_windows, threads by the kernel's policy (up to all cores)",
    "npydir-1t": "npydir.gather_windows, 1 thread",
    "numpy": "np.take(x, starts[:, None] + arange(window), axis=0)",
    "das-loop": "DAS AudioSequence loop: x[s:s+window].copy() over the memmap",
    "zarr": "zarr as stored, DAS loop",
    "zarr-das": "zarr as DAS writes it (v2, float16, 1M-row chunks, blosc lz4), DAS loop",
    "h5-chunked": "HDF5 chunked, DAS loop",
    "h5-contiguous": "HDF5 contiguous, DAS loop",
    "tensorstore": "tensorstore on the zarr store",
}

_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Parse a byte count such as ``"2GB"``, ``"512MiB"``, ``"100M"`` or ``"4096"``.

    Decimal suffixes (``kB``, ``MB``, ``GB``, ``TB``) are powers of 1000, binary ones
    (``KiB``, ``MiB``, ...) powers of 1024; a bare ``K``/``M``/``G``/``T`` is decimal.

    Raises
    ------
    ValueError
        The text is not a positive size.
    """
    if isinstance(text, (int, np.integer)):
        value = int(text)
    else:
        m = _SIZE_RE.match(str(text))
        if not m:
            raise ValueError(f"cannot read size {text!r}: expected e.g. 2GB, 512MiB or 1000000")
        number, unit, binary, _ = m.groups()
        power = " kmgt".index(unit.lower()) if unit else 0
        value = int(float(number) * (1024 if binary else 1000) ** power)
    if value <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return value


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


# --------------------------------------------------------------------------------------
# page cache control


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file()))
        elif p.is_file():
            out.append(p)
    return out


def _sync(paths: Iterable[Path]) -> None:
    """fsync the files so that a later DONTNEED can drop every page (dirty pages stay)."""
    for f in _files(paths):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def drop_cache(paths: Iterable[Path]) -> None:
    """Ask the kernel to drop ``paths`` (files, or every file under a directory) from the
    page cache.  Pages still mapped by this process are not dropped, so close first."""
    if not hasattr(os, "posix_fadvise"):  # pragma: no cover - macOS, Windows
        raise OSError("cold-cache runs need os.posix_fadvise (Linux)")
    for f in _files(paths):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _preread(paths: Iterable[Path]) -> None:
    """Read every file once so that it is in the page cache (the warm state)."""
    buf = bytearray(1 << 22)
    view = memoryview(buf)
    for f in _files(paths):
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(view):
                pass


# --------------------------------------------------------------------------------------
# readers: open once, read(starts, out) many times, close


class _Reader:
    def read(self, starts: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def prefault(self) -> None:
        """Make every page of the data present in this process (warm runs)."""

    def close(self) -> None:
        pass


class _NpyReader(_Reader):
    """A fresh read-only memory map of the npydir array, and one way to cut windows."""

    def __init__(self, store: Path, key: str, window: int, how: str, threads: int | None,
                 cold: bool = False):
        self._root = open_store(store, mode="r")
        arr = self._root[key]
        self.x = np.asarray(arr)
        self.window = window
        self.how = how
        self.threads = threads
        self._arange = np.arange(window, dtype=np.intp)
        self._fd = -1
        if how == "memcpy" and cold:
            # From a cold cache a copy out of a fresh map faults page by page; the limit
            # is what the kernel delivers for one read() of the same bytes (readahead).
            self._fd = os.open(arr.filename, os.O_RDONLY)
            self._data_offset = _npy_data_offset(Path(arr.filename))

    def read(self, starts: np.ndarray, out: np.ndarray) -> None:
        x, w = self.x, self.window
        if self.how == "npydir":
            windows.gather_windows(x, starts, w, out=out, threads=self.threads)
        elif self.how == "numpy":
            np.take(x, starts[:, None] + self._arange, axis=0, out=out)
        elif self.how == "das-loop":
            for i, s in enumerate(starts.tolist()):
                out[i] = x[s:s + w].copy()  # what AudioSequence.__getitem__ does
        elif self.how == "memcpy":
            # The same number of bytes as the batch, copied contiguously from the same data,
            # starting where the first window starts (wrapping if the batch is larger
            # than the array, which only tiny test datasets are).
            flat = x.reshape(-1)
            dst = out.reshape(-1)
            n = dst.size
            pos = int(starts[0]) * (x.shape[1] if x.ndim > 1 else 1) % flat.size
            done = 0
            while done < n:
                k = min(n - done, flat.size - pos)
                if self._fd >= 0:
                    _pread_into(self._fd, dst[done:done + k],
                                self._data_offset + pos * flat.itemsize)
                else:
                    dst[done:done + k] = flat[pos:pos + k]
                done += k
                pos = 0
        else:  # pragma: no cover
            raise ValueError(self.how)

    def prefault(self) -> None:
        # One read per page maps the whole file into this process (the kernel maps the
        # pages around each fault too), so warm runs time copies, not minor faults.
        flat = self.x.reshape(-1).view(np.uint8)
        step = mmap.PAGESIZE
        for i0 in range(0, flat.size, 64 << 20):
            int(flat[i0:i0 + (64 << 20):step].sum())

    def close(self) -> None:
        # closed: not read again
        self.x = None  # type: ignore[assignment]  # unmap, or DONTNEED cannot drop the pages
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(Exception):
            self._root.close()
        self._root = None  # type: ignore[assignment]  # closed: not read again


def _npy_data_offset(path: Path) -> int:
    """Byte offset of the data in an ``.npy`` file (just after its header)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(fh)
        else:
            np.lib.format.read_array_header_2_0(fh)
        return fh.tell()


def _pread_into(fd: int, dst: np.ndarray, offset: int) -> None:
    view = dst.data.cast("B")
    got = pread_full(fd, view, offset)
    if got < len(view):
        raise OSError(f"short read at byte {offset + got} of the array file")


class _LoopReader(_Reader):
    """zarr / h5py / tensorstore arrays read window by window, as DAS reads them."""

    def __init__(self, opener: Callable[[], tuple[Any, Callable[[], None]]], window: int,
                 tensorstore: bool = False):
        self.x, self._close = opener()
        self.window = window
        self.ts = tensorstore

    def read(self, starts: np.ndarray, out: np.ndarray) -> None:
        x, w = self.x, self.window
        if self.ts:  # tensorstore is asynchronous: issue every read, then collect
            futures = [x[s:s + w].read() for s in starts.tolist()]
            for i, f in enumerate(futures):
                out[i] = f.result()
        else:
            for i, s in enumerate(starts.tolist()):
                out[i] = x[s:s + w]

    def close(self) -> None:
        self.x = None  # closed: not read again
        self._close()


def _opener(path: Path, key: str) -> Callable[[], tuple[Any, Callable[[], None]]]:
    """A function that opens ``key`` of a zarr/HDF5 dataset afresh: ``(array, close)``."""
    return lambda: _open_any(path, key)


def _open_tensorstore(path: Path, key: str, zarr_format: int):
    import tensorstore as ts  # only reached when importable

    def opener():
        spec = {
            "driver": "zarr3" if zarr_format == 3 else "zarr",
            "kvstore": {"driver": "file", "path": str(Path(path) / key)},
        }
        return ts.open(spec, read=True).result(), lambda: None

    return opener


# --------------------------------------------------------------------------------------
# datasets: the synthetic one, and the copies in the other backends


def make_synthetic(out: str | os.PathLike, size: int | str = "256MB", *, channels: int = 9,
                   samplerate: float = 10_000.0, seed: int = 0, progress: bool = False,
                   key: str = "train/x") -> Path:
    """Write a synthetic DAS-like npydir store with ``key`` (float32 ``[samples, channels]``).

    The samples are one recording of :func:`npydir.das.synthetic.recording_blocks` (fly-song-like
    pulse trains and sine bouts in noise), generated and written block by block.

    Parameters
    ----------
    out : path
        The store directory to create (replaced if it exists).
    size : int or str
        Bytes of ``x``, e.g. ``"2GB"``; rounded down to whole rows (at least one window's
        worth is the caller's business).
    channels, samplerate, seed
        Shape and content of the recording; the same arguments give the same samples.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    Path of the store.
    """
    nbytes = parse_size(size)
    rows = max(1, nbytes // (4 * channels))
    out = Path(out)
    block_rows = max(1, (16 << 20) // (4 * channels))
    with open_store(out, mode="w") as root:
        root.attrs.update({
            "samplerate_x_Hz": float(samplerate),
            "samplerate_y_Hz": float(samplerate),
            "class_names": ["noise", *synthetic.DEFINITIONS],
            "class_types": ["segment", *synthetic.DEFINITIONS.values()],
            "synthetic": "npydir bench: fly-song-like noise, sine and pulse trains",
        })
        arr = root.create_dataset(key, shape=(rows, channels), dtype="float32")
        with _bar(progress, rows * 4 * channels, f"synthetic {_human_bytes(rows * 4 * channels)}"
                  ) as bar:
            i0 = 0
            for block in synthetic.recording_blocks(rows, samplerate, channels, seed,
                                                    block_samples=block_rows):
                arr[i0:i0 + len(block)] = block
                i0 += len(block)
                bar.update(block.nbytes)
    return out


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return _NullBar()
    tqdm = require("tqdm.auto", "progress bars").tqdm
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False)


def _blocks(rows: int, step: int) -> Iterable[tuple[int, int]]:
    for i0 in range(0, rows, step):
        yield i0, min(rows, i0 + step)


def _copy_rows(src, dst, rows: int, step: int, bar, row_bytes: int,
               dtype: np.dtype | None = None) -> None:
    for i0, i1 in _blocks(rows, step):
        block = np.asarray(src[i0:i1])
        dst[i0:i1] = block if dtype is None else block.astype(dtype)
        bar.update((i1 - i0) * row_bytes)


def _write_zarr(x: np.ndarray, path: Path, key: str, *, das: bool, bar) -> dict:
    zc.zarr_module("the zarr benchmark")
    rows, channels = x.shape[0], int(np.prod(x.shape[1:]))
    if das:  # as DAS's make_dataset writes it: format 2, float16, 1M-row chunks, Blosc lz4
        zarr_format, dtype = 2, np.dtype("float16")
        chunks = (DAS_CHUNK_ROWS,) + tuple(x.shape[1:])
        compressors = zarr_compressors(DAS_COMPRESSION, 2)
    else:  # zarr's own defaults (format, chunks, compressor)
        zarr_format, dtype, chunks, compressors = zc.default_format(), None, None, "auto"
    root = zc.create_root(path, zarr_format, mode="w")
    z = zc.create_array(root, key, shape=x.shape, dtype=dtype or x.dtype, chunks=chunks,
                        compressors=compressors, zarr_format=zarr_format)
    step = z.chunks[0] * max(1, (32 << 20) // max(1, z.chunks[0] * channels * x.itemsize))
    _copy_rows(x, z, rows, step, bar, channels * x.itemsize, dtype)
    info = {"chunks": list(z.chunks), "dtype": str(z.dtype), "zarr_format": zarr_format}
    with contextlib.suppress(Exception):
        info["compressors"] = zc.compressor_names(z)
    return info


def _write_h5(x: np.ndarray, path: Path, key: str, *, chunked: bool, bar) -> dict:
    h5py = require("h5py", "the HDF5 benchmark")
    rows, channels = x.shape[0], int(np.prod(x.shape[1:]))
    chunks = None
    if chunked:  # about 1 MiB per chunk, whole rows
        chunks = (max(1, min(rows, (1 << 20) // (channels * x.itemsize))),) + tuple(x.shape[1:])
    with h5py.File(path, "w") as f:
        d = f.create_dataset(key, shape=x.shape, dtype=x.dtype, chunks=chunks)
        _copy_rows(x, d, rows, max(1, (32 << 20) // (channels * x.itemsize)), bar,
                   channels * x.itemsize)
    return {"chunks": list(chunks) if chunks else None, "dtype": str(x.dtype),
            "layout": "chunked" if chunked else "contiguous"}


#: Extensions by which :func:`npydir.load` tells the backends apart.
_ZARR_EXT = (".zarr", ".zarr.zip", ".zip")
_HDF5_EXT = (".h5", ".hdf5", ".hdf", ".he5")


def _kind(path: Path) -> str:
    """'zarr', 'h5' or 'npydir', by extension as :func:`npydir.load` decides (any other
    directory is taken for an npydir store)."""
    name = Path(path).name.lower()
    if name.endswith(_ZARR_EXT):
        return "zarr"
    if name.endswith(_HDF5_EXT):
        return "h5"
    return "npydir"


def _lookup(data: Any, key: str, path: Path) -> Any:
    node = data
    for part in [p for p in key.split("/") if p]:
        try:
            node = node[part]
        except (KeyError, TypeError):
            raise _key_error(path, key, f"no member {part!r}") from None
    if not hasattr(node, "shape"):
        raise _key_error(path, key, "that is a group")
    return node


def _open_any(path: Path, key: str) -> tuple[Any, Callable[[], None]]:
    """``(array, close)`` for ``key`` in a dataset :func:`npydir.load` opens (npydir stores
    through :func:`npydir.open`, so that the array is the memory-mappable npydir Array)."""
    if _kind(path) == "npydir":
        root = open_store(path, mode="r")
        try:
            return _lookup(root, key, path), root.close
        except BaseException:
            root.close()
            raise
    data = load(path)
    try:
        return _lookup(data, key, path), data.close
    except BaseException:
        data.close()
        raise


def _key_error(path: Path, key: str, why: str) -> Exception:
    return MemberNotFoundError(f"{path}: no array {key!r} to benchmark ({why}); "
                               f"choose one with --key")


# --------------------------------------------------------------------------------------
# the run


@dataclass
class _Backend:
    name: str
    description: str
    files: list[Path]
    open: Callable[[bool], _Reader]  # open(cold)
    dtype: np.dtype
    info: dict = field(default_factory=dict)


def _tensorstore_available() -> bool:
    try:
        import tensorstore  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_backends(backends: Sequence[str] | None) -> list[str]:
    wanted = list(ALL_BACKENDS) if not backends else []
    for b in backends or ():
        for name in str(b).split(","):
            name = name.strip()
            if not name:
                continue
            if name == "all":
                wanted.extend(ALL_BACKENDS)
            elif name not in ALL_BACKENDS:
                raise ValueError(f"unknown backend {name!r}; choose from {', '.join(ALL_BACKENDS)}")
            else:
                wanted.append(name)
    for ref in _REFERENCE:
        if ref not in wanted:
            wanted.append(ref)
    return [b for b in ALL_BACKENDS if b in wanted]


def run_bench(path: str | os.PathLike | None = None, *, key: str = "train/x",
              backends: Sequence[str] | None = None, batch: int = 32, window: int = 4096,
              cold: bool = False, size: int | str = "256MB", channels: int = 9,
              repeats: int = 5, batches: int = 8, time_limit: float = 2.0, seed: int = 0,
              stored: Sequence[str | os.PathLike] = (), workdir: str | os.PathLike | None = None,
              keep: bool = False, threads: int | None = None, progress: bool = False
              ) -> dict:
    """Measure random-window batch throughput of each backend; return the JSON-able report.

    Parameters
    ----------
    path : path or None
        A dataset :func:`npydir.load` opens (npydir ``.npy`` store, ``.zarr``, ``.h5``).
        None: generate a synthetic DAS-like store of ``size`` bytes with ``channels``.
    key : str
        The array to read, ``train/x`` by default.
    backends : sequence of str, optional
        Names from :data:`ALL_BACKENDS` (comma-separated entries allowed); default all.
        ``memcpy`` and ``npydir`` are always measured: the ratios refer to them.
    batch, window : int
        Windows per batch and samples per window.
    cold : bool
        Also measure with a cold page cache (Linux).
    repeats : int
        Repeats, each with fresh random starts shared by every backend; medians are reported.
    batches : int
        Batches per repeat and backend, cut short after ``time_limit`` seconds (at least one).
    seed : int
        Seeds the random starts and the synthetic dataset.
    stored : paths
        Other copies of the same dataset (``.zarr``, ``.h5``) to measure as stored instead of
        writing the ``zarr`` / ``h5-*`` copies.
    workdir : path, optional
        Where the converted copies go (kept).  Default: a temporary directory next to the
        dataset (or the current directory), removed afterwards unless ``keep``.
    threads : int, optional
        Threads of the ``npydir`` backend.  Default: the kernel's own policy, which uses up to
        all cores this process may use, as many as the batch is large enough to pay for
        (forcing all cores on tiny batches only measures thread start-up).
    progress : bool
        tqdm bars on stderr.

    Returns
    -------
    dict
        ``{"dataset", "params", "machine", "backends", "skipped", "results": {"warm": ...,
        "cold": ...}}``; each result maps a backend to ``windows_per_s``, ``gb_per_s``,
        ``ratio_to_limit``, ``ratio_to_npydir``, ``bytes_per_window`` and ``repeats``.
    """
    for name, value in (("batch", batch), ("window", window), ("repeats", repeats),
                        ("batches", batches), ("channels", channels)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if time_limit <= 0:
        raise ValueError(f"time_limit must be positive, got {time_limit}")
    if cold and not hasattr(os, "posix_fadvise"):  # pragma: no cover
        raise OSError("--cold needs os.posix_fadvise, which this platform lacks")
    names = _resolve_backends(backends)
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    threads = None if threads is None else int(threads)

    src = Path(path) if path is not None else None
    if src is not None and not src.exists():
        raise StoreNotFoundError(f"{src}: no such dataset")
    own_workdir = workdir is None
    if workdir is None:
        # Beside the dataset, so that the copies sit on the same disk as the original (cold
        # numbers compare devices otherwise); the system's temp dir if that is read-only.
        base = src.resolve().parent if src is not None else Path.cwd()
        try:
            work = Path(tempfile.mkdtemp(prefix=".npydir-bench-", dir=base))
        except OSError:
            work = Path(tempfile.mkdtemp(prefix="npydir-bench-"))
    else:
        work = Path(workdir)
        work.mkdir(parents=True, exist_ok=True)
    try:
        result = _run(src, key, names, batch, window, cold, size, channels, repeats, batches,
                      time_limit, seed, [Path(p) for p in stored], work, threads, progress)
        result["params"]["workdir"] = str(work)
        result["params"]["workdir_kept"] = not own_workdir or keep
        return result
    finally:
        if own_workdir and not keep:
            shutil.rmtree(work, ignore_errors=True)


@dataclass
class _Prepared:
    """The dataset and every backend, ready to measure."""

    store: Path
    key: str
    shape: tuple
    dtype: np.dtype
    dataset: dict
    backends: dict[str, _Backend]
    skipped: dict[str, str]


def _run(src, key, names, batch, window, cold, size, channels, repeats, batches, time_limit,
         seed, stored, work, threads, progress) -> dict:
    prep = _prepare(src, key, names, window, size, channels, seed, stored, work, threads,
                    progress)
    plan = make_plan(seed, repeats, batches, batch, prep.shape[0], window)
    modes = ["warm"] + (["cold"] if cold else [])
    results = {mode: _measure_all(prep, plan, window, mode == "cold", time_limit, progress)
               for mode in modes}
    return {
        "npydir_bench": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dataset": prep.dataset,
        "params": {"batch": batch, "window": window, "repeats": repeats,
                   "batches_per_repeat": batches, "time_limit_s": time_limit,
                   "cold": cold, "seed": seed,
                   "threads": "auto" if threads is None else threads, "cores": windows.available_cores()},
        "machine": _machine(),
        "backends": {n: {"description": b.description, "dtype": str(b.dtype), **b.info}
                     for n, b in prep.backends.items()},
        "skipped": prep.skipped,
        "notes": _notes(prep),
        "results": results,
    }


def make_plan(seed: int, repeats: int, batches: int, batch: int, nrows: int,
              window: int) -> list[list[np.ndarray]]:
    """Random window starts: ``plan[repeat][batch]`` is an array of ``batch`` starts in
    ``[0, nrows - window]``.  Every backend reads the same plan; each repeat is fresh."""
    rng = np.random.default_rng(seed)
    return [[rng.integers(0, nrows - window + 1, size=batch, dtype=np.intp)
             for _ in range(batches)] for _ in range(repeats)]


def _measure_all(prep: _Prepared, plan: list[list[np.ndarray]], window: int, cold: bool,
                 time_limit: float, progress: bool) -> dict:
    names = list(prep.backends)
    files = _unique_files(prep.backends.values())
    rates: dict[str, list[float]] = {n: [] for n in names}
    batch = len(plan[0][0])
    readers: dict[str, _Reader] = {}
    warmup = np.random.default_rng(len(plan) * 7919 + batch).integers(
        0, prep.shape[0] - window + 1, size=batch, dtype=np.intp)
    bar_cm = (require("tqdm.auto", "progress bars").tqdm(
        total=len(plan) * len(names), desc=f"measuring ({'cold' if cold else 'warm'})",
        leave=False) if progress else _NullBar())
    try:
        if not cold:
            # The steady state of a training run on data that fits in memory: the files are
            # in the page cache and the process has them open and mapped, every page present.
            _preread(files)
            for name, backend in prep.backends.items():
                readers[name] = backend.open(False)
                readers[name].prefault()
        with bar_cm as bar:
            for batches in plan:
                for name in names:
                    rates[name].append(_measure(prep.backends[name], batches, batch, window,
                                                prep.shape[1:], cold, time_limit,
                                                readers.get(name), warmup))
                    bar.update(1)
    finally:
        for reader in readers.values():
            reader.close()
    return _summarise(rates, prep.backends, window, prep.shape[1:])


def _prepare(src, key, names, window, size, channels, seed, stored, work, threads,
             progress) -> _Prepared:
    skipped: dict[str, str] = {}
    work.mkdir(parents=True, exist_ok=True)
    # 1. the npydir store every memmap backend reads
    if src is None:
        store = make_synthetic(work / "synthetic.npy", size, channels=channels, seed=seed,
                               progress=progress, key=key)
        dataset: dict[str, Any] = {"path": None, "synthetic": True}
    elif _kind(src) == "npydir":
        store = src
        dataset = {"path": str(src), "synthetic": False}
    else:
        store = work / "npydir.npy"
        _to_npydir(src, key, store, progress)
        dataset = {"path": str(src), "synthetic": False}
        stored = [src, *stored]

    with open_store(store, mode="r") as root:
        arr = _lookup(root, key, store)
        x_file = Path(arr.filename)
        x = np.asarray(arr)
        shape, dtype = tuple(x.shape), x.dtype
        del x
    if len(shape) != 2:
        raise ValueError(f"{store}: {key} has shape {shape}; the benchmark needs "
                         f"[samples, channels]")
    if shape[0] < window:
        raise ValueError(f"{store}: {key} has {shape[0]} samples, fewer than one window "
                         f"of {window}")
    dataset.update({"key": key, "shape": list(shape), "dtype": str(dtype),
                    "nbytes": int(np.prod(shape)) * dtype.itemsize, "store": str(store)})
    row_bytes = shape[1] * dtype.itemsize

    # 2. the backends
    made: dict[str, _Backend] = {}

    def npy_backend(name: str, how: str, nthreads: int | None) -> _Backend:
        return _Backend(name, _DESCRIPTIONS[name], [x_file],
                        lambda cold: _NpyReader(store, key, window, how, nthreads, cold), dtype,
                        {"path": str(x_file)})

    for name, how, t in (("memcpy", "memcpy", None), ("npydir", "npydir", threads),
                         ("npydir-1t", "npydir", 1), ("numpy", "numpy", None),
                         ("das-loop", "das-loop", None)):
        if name in names:
            made[name] = npy_backend(name, how, t)
    if "npydir" in made:
        made["npydir"].description = (
            f"npydir.gather_windows, up to {windows.available_cores()} threads (kernel's policy)"
            if threads is None else f"npydir.gather_windows, {threads} threads")
        made["npydir"].info["threads"] = "auto" if threads is None else threads

    given = _classify_stored(stored, key)
    want_convert = [n for n in ("zarr", "zarr-das", "h5-chunked", "h5-contiguous")
                    if n in names and n not in given]
    if "tensorstore" in names and "zarr" not in given and "zarr" not in want_convert:
        if _tensorstore_available():
            want_convert.append("zarr")
    if want_convert:
        with open_store(store, mode="r") as root:
            x = np.asarray(root[key])
            total = len(want_convert) * shape[0] * row_bytes
            with _bar(progress, total, "writing backend copies") as bar:
                for name in want_convert:
                    given[name] = _convert_one(name, x, work, key, bar)
            del x
    for name, (p, info) in given.items():
        if name not in names and not (name == "zarr" and "tensorstore" in names):
            continue
        opener = _opener(p, key)
        bdtype = np.dtype(info.get("dtype", dtype))
        # only the benchmarked array's files matter for the page cache (zarr directories)
        files = [p / key] if p.is_dir() and (p / key).is_dir() else [p]
        made[name] = _Backend(name, _describe(name, info), files,
                              # a lambda with a bound default, which mypy cannot infer
                              (lambda cold, o=opener: _LoopReader(o, window)),  # type: ignore[misc]
                              bdtype,
                              {"path": str(p), **info})
    if "tensorstore" in names:
        if not _tensorstore_available():
            skipped["tensorstore"] = "tensorstore is not installed (pip install tensorstore)"
        elif not given["zarr"][0].is_dir():
            skipped["tensorstore"] = (f"the zarr store {given['zarr'][0]} is not a directory "
                                      f"(tensorstore reads it through its file driver)")
        else:
            p, info = given["zarr"]
            opener = _open_tensorstore(p, key, int(info.get("zarr_format", 3)))
            ts_backend = _Backend("tensorstore", _DESCRIPTIONS["tensorstore"], made["zarr"].files,
                                  lambda cold: _LoopReader(opener, window, True),
                                  np.dtype(info.get("dtype", dtype)), {"path": str(p)})
            try:  # tensorstore may refuse a codec zarr-python wrote: skip it, say why
                ts_backend.open(False).close()
            except Exception as exc:  # noqa: BLE001 - any failure means: not measurable
                skipped["tensorstore"] = f"tensorstore cannot open {p}: {exc}"
            else:
                made["tensorstore"] = ts_backend
        if "zarr" not in names:
            made.pop("zarr", None)
    order = [n for n in ALL_BACKENDS if n in made]
    _sync(_unique_files(made.values()))
    return _Prepared(store, key, shape, dtype, dataset, {n: made[n] for n in order}, skipped)


def _unique_files(backends: Iterable[_Backend]) -> list[Path]:
    """The backends' files, each once (the memmap backends share the ``.npy`` file)."""
    return list(dict.fromkeys(Path(f) for b in backends for f in b.files))


def _mem_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _notes(prep: _Prepared) -> list[str]:
    notes = []
    total = sum(f.stat().st_size for f in _files(_unique_files(prep.backends.values())))
    avail = _mem_available()
    if avail is not None and total > avail // 2:
        notes.append(f"the backends' files ({_human_bytes(total)}) exceed half the available "
                     f"memory ({_human_bytes(avail)}): 'warm' runs are partly cold; "
                     f"trust --cold, or bench a smaller --size")
    return notes


def _describe(name: str, info: dict) -> str:
    base = _DESCRIPTIONS[name]
    bits = []
    if info.get("stored"):
        bits.append("as stored")
    if info.get("chunks"):
        bits.append("chunks " + "x".join(str(c) for c in info["chunks"]))
    if info.get("compressors"):
        bits.append("+".join(c.split("(")[0] for c in info["compressors"]))
    return base + (f" [{', '.join(bits)}]" if bits else "")


def _classify_stored(stored: Sequence[Path], key: str) -> dict[str, tuple[Path, dict]]:
    """Assign the user's own copies to the zarr / h5-chunked / h5-contiguous slots."""
    out: dict[str, tuple[Path, dict]] = {}
    for p in stored:
        if not p.exists():
            raise StoreNotFoundError(f"{p}: no such dataset")
        kind = _kind(p)
        x, close = _open_any(p, key)
        try:
            info: dict[str, Any] = {"dtype": str(x.dtype), "stored": True}
            if kind == "zarr":
                info["chunks"] = list(x.chunks)
                info["zarr_format"] = zc.array_format(x)
                with contextlib.suppress(Exception):
                    info["compressors"] = zc.compressor_names(x)
                slot = "zarr"
            elif kind == "h5":
                info["chunks"] = list(x.chunks) if x.chunks else None
                info["compression"] = x.compression
                slot = "h5-chunked" if x.chunks else "h5-contiguous"
            else:
                raise ValueError(f"{p}: --stored takes .zarr or .h5 copies; the npydir store "
                                 f"is the PATH argument")
        finally:
            close()
        out[slot] = (p, info)
    return out


def _convert_one(name: str, x: np.ndarray, work: Path, key: str, bar) -> tuple[Path, dict]:
    if name == "zarr":
        p = work / "zarr-default.zarr"
        return p, _write_zarr(x, p, key, das=False, bar=bar)
    if name == "zarr-das":
        p = work / "zarr-das.zarr"
        return p, _write_zarr(x, p, key, das=True, bar=bar)
    p = work / f"{name}.h5"
    return p, _write_h5(x, p, key, chunked=name == "h5-chunked", bar=bar)


def _to_npydir(src: Path, key: str, store: Path, progress: bool) -> None:
    """Copy ``key`` of a zarr/HDF5 dataset into an npydir store (the memmap backends read it)."""
    x, close = _open_any(src, key)
    try:
        shape, dtype = tuple(x.shape), np.dtype(x.dtype)
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        with open_store(store, mode="w") as root:
            arr = root.create_dataset(key, shape=shape, dtype=dtype)
            with _bar(progress, shape[0] * row_bytes, f"{src.name} -> npydir") as bar:
                _copy_rows(x, arr, shape[0], max(1, (32 << 20) // max(1, row_bytes)), bar,
                           row_bytes)
    finally:
        close()


def _measure(backend: _Backend, plan: list[np.ndarray], batch: int, window: int,
             trailing: tuple, cold: bool, time_limit: float,
             reader: _Reader | None = None, warmup: np.ndarray | None = None) -> float:
    """Windows per second of one backend over one repeat's batches.

    Warm: ``reader`` is the backend's long-lived reader (opened and prefaulted once per run).
    Cold: before every batch the reader is closed, the files dropped from the page cache and
    opened afresh; only the batch is timed.
    """
    out = np.empty((batch, window, *trailing), dtype=backend.dtype)
    elapsed = 0.0
    done = 0
    own = None
    try:
        if not cold:
            if reader is None:
                reader = own = backend.open(False)
                reader.prefault()
            # run the code paths once, untimed, on windows the timed batches do not read
            # (so no timed window starts in the CPU caches)
            reader.read(plan[0] if warmup is None else warmup, out)
        for starts in plan:
            if cold:
                if own is not None:
                    own.close()
                    own = None
                drop_cache(backend.files)
                reader = own = backend.open(True)
            t0 = time.perf_counter()
            reader.read(starts, out)  # type: ignore[union-attr]  # opened above, cold or warm
            elapsed += time.perf_counter() - t0
            done += len(starts)
            if elapsed > time_limit:
                break
    finally:
        if own is not None:
            own.close()
    return done / max(elapsed, 1e-9)


def _summarise(rates: dict[str, list[float]], made: dict[str, _Backend], window: int,
               trailing: tuple) -> dict:
    per_window = {n: window * int(np.prod(trailing, dtype=np.int64)) * made[n].dtype.itemsize
                  for n in rates}
    med = {n: statistics.median(v) for n, v in rates.items()}
    gbps = {n: med[n] * per_window[n] / 1e9 for n in rates}
    out = {}
    for n in rates:
        out[n] = {
            "windows_per_s": med[n],
            "gb_per_s": gbps[n],
            "ratio_to_limit": gbps[n] / gbps["memcpy"],
            "ratio_to_npydir": med[n] / med["npydir"],
            "bytes_per_window": per_window[n],
            "repeats": rates[n],
        }
    return out


def _machine() -> dict:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": windows.available_cores(), "numpy": np.__version__}
    from importlib import metadata

    for dist in ("npydir", "zarr", "h5py", "tensorstore"):
        with contextlib.suppress(Exception):
            info[dist] = metadata.version(dist)
    with contextlib.suppress(Exception):
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                  / 1e9, 1)
    return info


# --------------------------------------------------------------------------------------
# output


def format_table(result: dict) -> str:
    """The report as plain-text tables, one per cache state."""
    ds, params = result["dataset"], result["params"]
    shape = ds["shape"]
    head = (f"dataset: {ds['path'] or 'synthetic'} [{ds['key']}] {shape[0]} x "
            f"{'x'.join(str(s) for s in shape[1:])} {ds['dtype']} "
            f"({_human_bytes(ds['nbytes'])})\n"
            f"batch {params['batch']} windows x {params['window']} samples, "
            f"{params['repeats']} repeats (medians), npydir threads: "
            + (f"auto, up to {params.get('cores')} cores" if params["threads"] == "auto"
               else str(params["threads"])))
    lines = [head]
    width = max(len(n) for n in result["backends"]) + 2
    for mode, rows in result["results"].items():
        lines.append("")
        lines.append(f"{mode} cache")
        lines.append(f"{'backend':<{width}}{'windows/s':>12}{'GB/s':>9}{'vs limit':>10}"
                     f"{'vs npydir':>11}")
        for name, r in rows.items():
            lines.append(f"{name:<{width}}{_num(r['windows_per_s']):>12}"
                         f"{_sig(r['gb_per_s']):>9}{_sig(r['ratio_to_limit']):>10}"
                         f"{_sig(r['ratio_to_npydir']):>11}")
    for name, why in result.get("skipped", {}).items():
        lines.append(f"skipped {name}: {why}")
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _sig(v: float) -> str:
    """Three significant digits, without an exponent down to 1e-4 (so 0.0042, 0.871, 17.2)."""
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:#.3g}".rstrip(".") if v >= 1e-4 else f"{v:.1e}"


def _num(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def write_json(result: dict, path: str | os.PathLike) -> Path:
    """Write the report as JSON (atomically: temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def plot_results(result: dict, path: str | os.PathLike) -> Path:
    """Draw a PNG bar chart of windows/s per backend (log scale), one panel per cache state."""
    matplotlib = require("matplotlib", "the benchmark chart")
    matplotlib.use("Agg", force=True)
    plt = require("matplotlib.pyplot", "the benchmark chart")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    modes = list(result["results"])
    names = list(result["backends"])
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 0.45 * len(names) + 1.8),
                             squeeze=False)
    colours = {"memcpy": "#999999", "npydir": "#1f77b4", "npydir-1t": "#6baed6"}
    for ax, mode in zip(axes[0], modes):
        rows = result["results"][mode]
        ys = np.arange(len(names))[::-1]
        vals = [rows[n]["windows_per_s"] for n in names]
        ax.barh(ys, vals, color=[colours.get(n, "#ff7f0e") for n in names])
        ax.set_yticks(ys, names)
        ax.set_xscale("log")
        ax.set_xlabel("windows / s (log scale)")
        ax.set_title(f"{mode} cache")
        for y, n, v in zip(ys, names, vals):
            ax.text(v, y, f" {_sig(rows[n]['gb_per_s'])} GB/s, x{_sig(rows[n]['ratio_to_npydir'])}",
                    va="center", fontsize=8)
        ax.set_xlim(min(vals) / 2, max(vals) * 30)
    params = result["params"]
    fig.suptitle(f"npydir bench: batch {params['batch']} x window {params['window']}, "
                 f"{result['dataset']['dtype']} x {result['dataset']['shape'][1]} ch, medians "
                 f"of {params['repeats']} (x = ratio to npydir)", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path

