"""Convert whole datasets between npydir, zarr (format 2 and 3) and HDF5, streaming and resumable.

``convert(src, dst)`` copies the whole tree — groups, arrays, every attribute — from ``src`` to
``dst``; the backends are chosen by extension (``.npy`` store, ``.zarr`` directory or zip,
``.h5``/``.hdf5`` file; a zip can only be a source).

How it works
------------
1. **Plan.** The source tree is listed; each array is kept as it is, converted
   (variable-length strings to fixed-width, measured in one extra pass) or refused with a
   reason (object references, ragged arrays, types the destination cannot hold).  Names the
   destination cannot use are escaped (the original kept in attrs).  Soft and external links
   are not followed: their targets are recorded in the parent's ``npydir_links`` attribute.
2. **Build in a hidden place.** The destination is built at ``.<dst name>.partial`` beside
   ``dst``; ``dst`` itself appears (one rename) only when everything is written, so nothing
   half-written ever looks complete.  A reader opening ``dst`` meanwhile gets "not found"
   (``npydir.load`` says that an interrupted conversion exists and how to finish it).
3. **Stream.** Arrays are preallocated at their full size and filled in blocks of whole source
   chunks (and whole destination chunks): a small thread pool reads and decompresses the next
   blocks while earlier ones are written.  In-flight blocks are bounded by ``memory_budget``,
   whatever the dataset's size.  Each reader thread decodes into its own reused buffer and
   writes the rows into the preallocated ``.npy`` file with ``pwrite``.
4. **Journal.** Finished blocks are recorded in ``.<dst name>.partial.journal`` after the data
   is flushed (see :mod:`npydir._convert_journal`).  Running the same conversion again after
   Ctrl-C, ``kill -9`` or a crash skips the finished blocks.
5. **Verify** (optional). blake2b checksums of every array, source against destination.

With ``client=`` (a ``dask.distributed.Client``) the block copies of an npydir destination run
on the cluster's workers, each writing its rows straight into the preallocated ``.npy`` files
(the destination must be on a filesystem all workers share).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import threading
import time
import uuid
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._convert_base import Node, backend_of, join, open_source
from ._convert_journal import Journal
from ._convert_values import LINKS, ORIGINAL_NAME, REFUSED, apply_transform
from .errors import AlreadyExistsError, ConversionError, IntegrityError, StoreNotFoundError

__all__ = ["ConversionReport", "convert", "partial_path"]


@dataclass
class ConversionReport:
    """What a conversion did; ``str(report)`` is a human summary.

    Attributes
    ----------
    arrays : dict
        source path -> destination path of every array copied.
    refused : dict
        source path -> reason, for arrays that were not copied.
    links : dict
        source path -> target of soft/external links (recorded, not followed).
    renamed : dict
        source path -> destination path where a name had to be escaped.
    converted : dict
        source path -> (source dtype, stored dtype) where the dtype changed.
    dropped_attrs : dict
        "path:key" -> reason for attributes that could not be stored.
    blocks_written, blocks_skipped : int
        Blocks copied by this run, and blocks found finished by an earlier, interrupted run.
    checksums : dict or None
        destination path -> blake2b hex digest, when ``verify=True``.
    """

    src: str
    dst: str
    arrays: dict = field(default_factory=dict)
    groups: int = 0
    refused: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)
    renamed: dict = field(default_factory=dict)
    converted: dict = field(default_factory=dict)
    dropped_attrs: dict = field(default_factory=dict)
    nbytes: int = 0
    bytes_written: int = 0
    blocks_written: int = 0
    blocks_skipped: int = 0
    resumed: bool = False
    seconds: float = 0.0
    checksums: dict | None = None

    def __str__(self) -> str:
        lines = [
            f"converted {self.src} -> {self.dst}: {len(self.arrays)} arrays, {self.groups} groups, "
            f"{self.nbytes / 2**20:.1f} MiB in {self.seconds:.1f} s"
            + (f" (resumed: {self.blocks_skipped} blocks were already done)"
               if self.resumed else "")
        ]
        for title, items in (("refused", self.refused), ("links not followed", self.links),
                             ("renamed", self.renamed), ("dtype converted", self.converted),
                             ("attributes dropped", self.dropped_attrs)):
            for key, value in items.items():
                lines.append(f"  {title}: {key}: {value}")
        if self.checksums is not None:
            lines.append(f"  verified: {len(self.checksums)} arrays have identical checksums")
        return "\n".join(lines)


def partial_path(dst: str | os.PathLike) -> tuple[Path, Path]:
    """Where a conversion into ``dst`` builds its result, and its journal."""
    dst = Path(os.path.normpath(os.fspath(dst)))
    return dst.parent / f".{dst.name}.partial", dst.parent / f".{dst.name}.partial.journal"


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    progress: bool = True,
    memory_budget: int = 256 * 2**20,
    zarr_format: int = 2,
    chunks: int | tuple | None = None,
    compression: Any = None,
    verify: bool = False,
    client: Any = None,
    threads: int | None = None,
    overwrite: bool = False,
    strict: bool = False,
    das_compat: bool = False,
    journal_interval: float = 2.0,
    durable: bool = True,
) -> ConversionReport:
    """Convert the dataset at ``src`` into ``dst``; backends are chosen by extension.

    Parameters
    ----------
    src : path
        A ``.npy`` store, a ``.zarr`` directory or ``.zip`` (zarr format 2 or 3), or an
        ``.h5``/``.hdf5`` file.
    dst : path
        A ``.npy`` store, a ``.zarr`` directory or an ``.h5``/``.hdf5`` file; must not exist
        unless ``overwrite=True`` (or it is the unfinished result of the same conversion).
    progress : bool
        Show a progress bar (tqdm) with bytes/s.
    memory_budget : int
        Upper bound, in bytes, for the blocks in flight (read ahead, being converted, being
        written).  A single source chunk larger than the budget is read in slices.
    zarr_format : {2, 3}
        Format of a zarr destination.  2 (the default) is read by every zarr-python and by
        DAS; 3 needs zarr-python 3.
    chunks : int or tuple, optional
        zarr/HDF5 destinations: rows per chunk (int) or a full chunk shape (tuple, for arrays
        of that rank).  Default: whole rows, about 8 MiB per chunk (HDF5: contiguous unless a
        compression is asked for).
    compression : str or codec, optional
        zarr: ``"none"``, ``"blosc[:cname[:clevel]]"``, ``"zstd[:level]"``, ``"gzip[:level]"``
        or a codec object; default zarr's own.  HDF5: ``"none"``, ``"gzip[:level]"``,
        ``"lzf"``; default none.
    verify : bool
        After converting, compare blake2b checksums of every array in source and destination;
        a mismatch raises :class:`~npydir.errors.IntegrityError`.
    client : dask.distributed.Client, optional
        Spread the block copies over a Dask cluster (npydir destinations only).
    threads : int, optional
        Reader threads (default: number of CPUs, at most 4).
    overwrite : bool
        Replace an existing ``dst`` (only once the new one is complete).
    strict : bool
        Refuse the whole conversion, before writing anything, if any array would be refused.
    das_compat : bool
        Write for DAS.  npydir destination: also write DAS's pickled ``attrs.npy``.  zarr
        destination: zarr format 2 as DAS's ``make_dataset`` writes it (1,000,000-row chunks,
        Blosc lz4, unless ``chunks``/``compression`` say otherwise); ``zarr_format=3`` is
        refused.
    journal_interval : float
        Seconds between journal commits (data flushed, then finished blocks fsynced to the
        journal); 0 commits after every block.
    durable : bool
        fsync the data before each journal commit and at the end (default), so a finished
        conversion and every journalled block survive a power cut.  ``False`` skips every
        fsync: resuming after Ctrl-C or a killed process still works (the page cache keeps
        the writes), and the kernel writes the data back in its own time.

    Returns
    -------
    ConversionReport
    """
    t0 = time.perf_counter()
    src_kind = backend_of(src, role="source")
    dst_kind = backend_of(dst, role="destination")
    src_path = Path(os.path.abspath(os.fspath(src)))
    dst_path = Path(os.path.abspath(os.path.normpath(os.fspath(dst))))
    if not src_path.exists():
        raise StoreNotFoundError(f"source {os.fspath(src)!r} does not exist")
    if src_path == dst_path:
        raise ConversionError(f"source and destination are the same path {os.fspath(src)!r}")
    if dst_kind == "zarr" and dst_path.name.lower().endswith(".zip"):
        raise ConversionError(
            f"destination {os.fspath(dst)!r}: zip stores can be read, not written; convert to a "
            ".zarr directory and zip it afterwards"
        )
    if dst_kind == "zarr":
        from ._convert_zarr import zarr_options

        zarr_format, chunks, compression = zarr_options(
            zarr_format, chunks, compression, das_compat=das_compat,
            where=f"destination {os.fspath(dst)!r}")
    if client is not None and dst_kind != "npydir":
        raise ConversionError("client= (Dask) needs an npydir (.npy) destination")
    if memory_budget < 1:
        raise ValueError(f"memory_budget must be positive, got {memory_budget}")
    partial, jpath = partial_path(dst_path)
    if dst_path.exists() and not overwrite:
        if jpath.exists() and not partial.exists() and _journal_done(jpath):
            # the previous run finished but died between publishing and removing its journal
            jpath.unlink()
            return ConversionReport(src=os.fspath(src), dst=os.fspath(dst), resumed=True)
        raise AlreadyExistsError(
            f"destination {os.fspath(dst)!r} already exists "
            "(overwrite=True, or --overwrite, replaces it)"
        )

    report = ConversionReport(src=os.fspath(src), dst=os.fspath(dst))
    threads = max(1, threads or min(4, os.cpu_count() or 1))
    source = open_source((src_kind, str(src_path)))
    try:
        nodes = list(source.nodes())
        plan, options = _plan_json(nodes, src_path, dst_kind, zarr_format, chunks, compression)
        refused = {n.path: n.reason for n in nodes if n.kind == "refused"}
        if strict and refused:
            raise ConversionError(
                f"{os.fspath(src)}: {len(refused)} arrays cannot be converted: "
                + "; ".join(f"/{k}: {v}" for k, v in refused.items())
            )
        journal = Journal(jpath, plan, interval=journal_interval, durable=durable)
        try:
            if not journal.matched or not partial.exists():
                _remove(partial)
                if journal.matched:  # journal without data: start over
                    journal.close(remove=True)
                    journal = Journal(jpath, plan, interval=journal_interval, durable=durable)
            report.resumed = journal.matched and any(journal.done.values())
            if journal.matched:
                _remove_temp_files(partial)
            dest = _open_dest(dst_kind, partial, options, das_compat)
            if getattr(dest, "restarted", False) and journal.matched:
                # the partial file was unreadable and is built anew: forget its blocks
                journal.close(remove=True)
                journal = Journal(jpath, plan, interval=journal_interval, durable=durable)
                report.resumed = False
            try:
                copy_tree(source, nodes, dest, journal, report, memory_budget=memory_budget,
                          threads=threads, client=client, progress=progress,
                          name=src_path.name, durable=durable)
                # everything written (and on disk when durable) before it appears by name
                dest.flush(durable)
            finally:
                dest.close()
            journal.finish()
            _publish(partial, dst_path, overwrite)
        finally:
            journal.close(remove=journal.complete and not partial.exists())
    finally:
        source.close()
    report.seconds = time.perf_counter() - t0
    for key, reason in report.refused.items():
        warnings.warn(f"{os.fspath(src)}:/{key} not converted: {reason}", stacklevel=2)
    for key, target in report.links.items():
        warnings.warn(f"{os.fspath(src)}:/{key} is a link to {target}; recorded in attrs, not "
                      "followed", stacklevel=2)
    if verify:
        report.checksums = verify_conversion(src_path, dst_path, report, memory_budget)
    return report


# --------------------------------------------------------------------------- planning


def copy_tree(source, nodes, dest, journal, report: ConversionReport, *, memory_budget: int,
              threads: int, client: Any = None, progress: bool = False, name: str = "",
              durable: bool = True) -> None:
    """Create ``nodes`` at ``dest`` and copy every block the journal does not list as done."""
    def flush() -> None:
        dest.flush(durable)

    blocks, mapping = _prepare(nodes, dest, report, memory_budget, threads)
    todo = [b for b in blocks if not journal.is_done(*b[:3])]
    report.blocks_skipped = len(blocks) - len(todo)
    report.nbytes = sum(mapping[p][1].nbytes for p in mapping)
    done_bytes = sum(b[3] for b in blocks) - sum(b[3] for b in todo)
    bar = _progress_bar(progress, report.nbytes, done_bytes, name)
    try:
        if client is not None:
            _run_dask(client, source, dest, mapping, todo, journal, bar, report, durable)
        else:
            _run_threads(source, dest, mapping, todo, journal, bar, report, threads, flush)
    finally:
        if bar is not None:
            bar.close()
        # also on Ctrl-C or an error: every recorded block is written, keep them
        journal.commit(flush)


class NullJournal:
    """Journal stand-in for one-shot writes (``save``): nothing is resumable."""

    matched = False
    complete = False
    done: dict = {}

    def is_done(self, path, start, stop) -> bool:
        return False

    def record(self, path, start, stop) -> None:
        pass

    def due(self) -> bool:
        return False

    def commit(self, flush_data) -> None:
        flush_data()

    def commit_in_background(self, flush_data) -> None:
        pass

    def finish(self) -> None:
        self.complete = True

    def close(self, *, remove: bool = False) -> None:
        pass


def _plan_json(nodes, src_path, dst_kind, zarr_format, chunks, compression):
    options = {"zarr_format": zarr_format, "chunks": chunks, "compression": compression}
    layout = {k: (v if isinstance(v, (int, str, type(None))) else
                  (list(v) if isinstance(v, tuple) else repr(v))) for k, v in options.items()}
    plan = {
        "src": str(src_path),
        "dst_kind": dst_kind,
        "options": layout if dst_kind != "npydir" else {},
        "arrays": [[n.path, list(n.shape), n.dtype.str if n.dtype is not None else None]
                   for n in nodes if n.kind == "array"],
    }
    return plan, options


def _open_dest(kind: str, partial: Path, options: dict, das_compat: bool):
    if kind == "npydir":
        from ._convert_npydir import NpydirDest

        return NpydirDest(partial, das_compat=das_compat)
    if kind == "zarr":
        from ._convert_zarr import ZarrDest

        return ZarrDest(partial, zarr_format=options["zarr_format"], chunks=options["chunks"],
                        compression=options["compression"])
    from ._convert_hdf5 import Hdf5Dest

    try:
        return Hdf5Dest(partial, chunks=options["chunks"], compression=options["compression"])
    except ConversionError:  # a partial HDF5 file killed mid-write may be unreadable: restart
        _remove(partial)
        dest = Hdf5Dest(partial, chunks=options["chunks"], compression=options["compression"])
        dest.restarted = True
        return dest


def _prepare(nodes: list[Node], dest, report: ConversionReport, budget: int, threads: int):
    """Create every group and array at the destination; return the blocks to copy.

    Returns ``(blocks, mapping)``: blocks are ``(src path, start, stop, nbytes)``; mapping is
    src path -> (dst path, node).
    """
    out_path: dict[str, str] = {"": ""}
    originals: dict[str, str] = {}
    extra: dict[str, dict] = {}
    # first pass: destination names, dtype checks, links and refusals per parent group
    for node in nodes:
        if not node.path:
            continue
        parent, _, name = node.path.rpartition("/")
        dparent = out_path.get(parent, parent)
        # an npydir source gives back the names an earlier conversion had to escape
        wanted = getattr(node, "out_path", name).rpartition("/")[2]
        if dest.kind == "npydir":
            from ._convert_npydir import safe_store_name

            dname = safe_store_name(dest, dparent, wanted, array=node.kind == "array")
        else:
            dname = wanted
        out_path[node.path] = join(dparent, dname)
        if dname != wanted:
            originals[node.path] = wanted
        if dname != name:
            report.renamed[node.path] = out_path[node.path]
        if node.kind == "array":
            reason = dest.check(node)
            if reason:
                node.kind, node.reason = "refused", reason
        if node.kind == "refused":
            report.refused[node.path] = node.reason
            extra.setdefault(parent, {}).setdefault(REFUSED, {})[name] = node.reason
        elif node.kind == "link":
            report.links[node.path] = node.reason
            extra.setdefault(parent, {}).setdefault(LINKS, {})[name] = node.reason
    blocks: list[tuple[str, int, int, int]] = []
    mapping: dict[str, tuple[str, Node]] = {}
    # each block in flight may exist twice (decoded chunks and the assembled block)
    block_budget = max(1, budget // (2 * (threads + 1)))
    for node in nodes:
        if node.kind not in ("group", "array"):
            continue
        dpath = out_path[node.path]
        attrs = dict(node.attrs)
        attrs.update(extra.get(node.path, {}) if node.kind == "group" else {})
        if node.path in originals:
            attrs[ORIGINAL_NAME] = originals[node.path]
        for key, reason in node.dropped_attrs.items():
            report.dropped_attrs[f"{node.path}:{key}"] = reason
        dropped: dict = {}
        if node.kind == "group":
            report.groups += node.path != ""
            dest.group(dpath, attrs, dropped)
        else:
            dest.array(dpath, node, attrs, dropped)
            report.arrays[node.path] = dpath
            mapping[node.path] = (dpath, node)
            if node.transform is not None or str(node.dtype) != node.src_dtype:
                report.converted[node.path] = (node.src_dtype, str(node.dtype))
            blocks.extend(_blocks(node, dest.chunk_rows(dpath), block_budget))
        for key, reason in dropped.items():
            report.dropped_attrs[f"{node.path}:{key}"] = reason
    return blocks, mapping


def _blocks(node: Node, dst_rows: int, block_budget: int):
    """Row ranges of ``node``: whole source and destination chunks, about ``block_budget``."""
    if node.nbytes == 0 and node.shape:
        return []
    rows, row_bytes = node.rows, node.row_bytes
    align = math.lcm(max(1, node.chunk_rows), max(1, dst_rows))
    if align * row_bytes > block_budget:
        align = max(1, node.chunk_rows)
    if align * row_bytes > block_budget:  # one chunk exceeds the budget: slice inside it
        step = max(1, block_budget // row_bytes)
    else:
        step = align * max(1, block_budget // (align * row_bytes))
    return [(node.path, i, min(i + step, rows), (min(i + step, rows) - i) * row_bytes)
            for i in range(0, rows, step)]


# --------------------------------------------------------------------------- copying


def _progress_bar(enabled: bool, total: int, initial: int, name: str):
    if not enabled:
        return None
    from ._optional import require

    tqdm = require("tqdm.auto", "the progress bar (or pass progress=False)").tqdm
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"convert {name}", dynamic_ncols=True)


_LOCAL = threading.local()


def _block_buffer(node: Node, start: int, stop: int, phase: int = 0) -> np.ndarray | None:
    """This thread's reusable buffer, shaped for rows ``start:stop`` of ``node``, starting at
    an address ``phase`` bytes past a 4 KiB boundary (the rows' phase in the destination
    file, so the destination can write the aligned interior with direct I/O).

    Reusing one buffer per thread keeps the memory in flight at threads x block and spares
    the page faults of a fresh allocation for every block."""
    if not node.shape or node.dtype.hasobject:
        return None
    nbytes = (stop - start) * node.row_bytes
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or buf.nbytes < nbytes + 4096:
        buf = _LOCAL.buf = np.empty(nbytes + 4096, np.uint8)
    k = (phase - buf.ctypes.data) % 4096
    view = buf[k:k + nbytes]
    return view.view(node.dtype).reshape((stop - start,) + tuple(node.shape[1:]))


def _read_block(source, node: Node, path: str, start: int, stop: int,
                phase: int = 0) -> np.ndarray:
    """Rows ``start:stop`` as stored at the destination: decoded into this thread's buffer
    when the backend can, else read and converted."""
    if node.transform is None:
        buf = _block_buffer(node, start, stop, phase)
        if buf is not None and source.read_into(path, start, stop, buf):
            return buf
    return apply_transform(node.transform, source.read(path, start, stop))


def _transfer(source, node: Node, path: str, start: int, stop: int, rows) -> None:
    """Rows ``start:stop`` into the preallocated ``.npy`` file ``rows`` (a RowsFile): copied
    file to file in the kernel when the source stores them as plain rows (unfiltered HDF5),
    else decoded into this thread's buffer and written."""
    if node.transform is None and rows.copy_from(source, path, start, stop):
        return
    rows.write(start, stop, _read_block(source, node, path, start, stop,
                                        rows.file_phase(start)))


def _copy_block(source, dest, mapping, path: str, start: int, stop: int):
    """Read (and decompress, convert) one block; write it too when the destination allows
    concurrent writers.  Returns the block for the caller to write, or None."""
    dpath, node = mapping[path]
    if dest.concurrent_writes:
        if node.nbytes:
            _transfer(source, node, path, start, stop, dest.rows_file(dpath))
        return None
    return apply_transform(node.transform, source.read(path, start, stop))


def _run_threads(source, dest, mapping, todo, journal, bar, report, threads: int,
                 flush) -> None:
    """Read ahead with ``threads`` workers, in order, at most ``threads`` blocks in flight."""
    pending: deque = deque()
    it = iter(todo)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="npydir-convert") as pool:
        try:
            for _ in range(threads):
                blk = next(it, None)
                if blk is None:
                    break
                pending.append((blk, pool.submit(_copy_block, source, dest, mapping, *blk[:3])))
            while pending:
                (path, start, stop, nbytes), fut = pending.popleft()
                block = fut.result()
                if block is not None:
                    dest.write(mapping[path][0], start, stop, block)
                del block  # release before reading further ahead: the budget counts it
                journal.record(path, start, stop)
                report.blocks_written += 1
                report.bytes_written += nbytes
                if bar is not None:
                    bar.update(nbytes)
                if journal.due():
                    journal.commit_in_background(flush)
                blk = next(it, None)
                if blk is not None:
                    pending.append((blk, pool.submit(_copy_block, source, dest, mapping,
                                                     *blk[:3])))
        except BaseException:
            # Ctrl-C or an error: let running copies finish, keep what is finished, re-raise
            for _, fut in pending:
                fut.cancel()
            for (path, start, stop, _), fut in pending:
                if not fut.cancelled():
                    try:
                        if fut.result() is None:
                            journal.record(path, start, stop)
                    except BaseException:
                        pass
            try:
                journal.commit(flush)
            except Exception:
                pass
            raise


# --------------------------------------------------------------------------- dask

# Sources opened by _dask_copy in this (worker) process, keyed by (conversion token, spec):
# each conversion's blocks share one open source per worker, and the conversion closes and
# drops them on every worker when it ends (_dask_release).  Without that, a long-lived
# worker would keep every source file it ever read open, a later conversion of a rewritten
# file at the same path would read the stale handle, and an in-process worker
# (LocalCluster(processes=False)) would leave them in the client's own process.
_WORKER_SOURCES: dict[tuple, Any] = {}
# tokens of conversions already released here: a block still running when its conversion
# was cancelled closes its source instead of caching it again (a few bytes per conversion)
_RELEASED: set[str] = set()
_WORKER_LOCK = threading.Lock()


def _dask_copy(token: str, spec: tuple, path: str, node: Node, filename: str,
               start: int, stop: int, durable: bool = True) -> tuple[str, int, int]:
    """Runs on a Dask worker: copy rows ``start:stop`` of ``path`` into the ``.npy`` file."""
    from ._convert_npydir import RowsFile

    key = (token, spec)
    with _WORKER_LOCK:  # worker threads of one conversion open the source once
        source = _WORKER_SOURCES.get(key)
        cached = source is not None or token not in _RELEASED
        if source is None:
            source = open_source(spec)
            if cached:
                _WORKER_SOURCES[key] = source
    rows = None
    try:
        rows = RowsFile(filename)
        if rows.nbytes:
            _transfer(source, node, path, start, stop, rows)
            if durable:  # on disk before the scheduler hears of it (the journal follows)
                rows.flush()
    finally:
        if rows is not None:
            rows.close()
        if not cached:
            source.close()
    return path, start, stop


def _dask_release(token: str) -> int:
    """Runs on every worker when a conversion ends: close the sources it opened there.

    Returns how many were closed."""
    with _WORKER_LOCK:
        _RELEASED.add(token)
        sources = [_WORKER_SOURCES.pop(k) for k in list(_WORKER_SOURCES) if k[0] == token]
    for source in sources:
        try:
            source.close()
        except Exception:  # closing a reader must not fail the conversion
            pass
    return len(sources)


def _run_dask(client, source, dest, mapping, todo, journal, bar, report,
              durable: bool = True) -> None:
    from ._optional import require

    distributed = require("dask.distributed", "converting on a Dask cluster")
    token = uuid.uuid4().hex
    by_key = {}
    futures = []
    try:
        for path, start, stop, nbytes in todo:
            dpath, node = mapping[path]
            fut = client.submit(_dask_copy, token, source.spec, path, node,
                                str(dest.filename(dpath)), start, stop, durable, pure=False)
            by_key[fut.key] = nbytes
            futures.append(fut)
        for fut in distributed.as_completed(futures):
            path, start, stop = fut.result()
            journal.record(path, start, stop)
            report.blocks_written += 1
            report.bytes_written += by_key[fut.key]
            if bar is not None:
                bar.update(by_key[fut.key])
            if journal.due():
                journal.commit(lambda: None)  # workers flushed their rows already
    except BaseException:
        client.cancel(futures)
        journal.commit(lambda: None)
        raise
    finally:
        try:
            client.run(_dask_release, token)
        except Exception:  # a worker gone or unreachable: its process took its files along
            pass


# --------------------------------------------------------------------------- finishing


def _journal_done(jpath: Path) -> bool:
    try:
        return '"done": true' in jpath.read_text(encoding="utf-8", errors="replace")[-64:]
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _remove_temp_files(partial: Path) -> None:
    """Delete the temp files an interrupted run left in its partial tree.

    A run killed inside :func:`npydir.npyfile.atomic_write` (preallocating an array, writing
    attributes) leaves its ``.<name>.*.npydir-tmp`` file behind; the resumed run writes the
    file anew under a fresh temp name, so the old one is garbage that ``_publish`` would
    otherwise rename into the finished result.  Links are not followed (``os.walk`` does not
    descend into them, and a link named like a temp file is removed, never its target).
    """
    from .npyfile import is_temp_name

    if not partial.is_dir() or partial.is_symlink():
        return  # an HDF5 partial is a single file
    removed = False
    for dirpath, dirnames, filenames in os.walk(partial):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            if is_temp_name(name):
                os.unlink(os.path.join(dirpath, name))
                removed = True
        if removed:
            _fsync_dir(Path(dirpath))
            removed = False


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(partial: Path, dst: Path, overwrite: bool) -> None:
    """Move the finished result into place with one rename (replacing ``dst`` if asked)."""
    old = None
    if dst.exists():
        if not overwrite:
            raise AlreadyExistsError(f"destination {dst} appeared while converting")
        old = dst.parent / f".{dst.name}.replaced"
        _remove(old)
        os.replace(dst, old)
    os.replace(partial, dst)
    _fsync_dir(dst.parent)
    if old is not None:
        _remove(old)


# --------------------------------------------------------------------------- verify


def checksums(path: str | os.PathLike, memory_budget: int = 64 * 2**20) -> dict[str, str]:
    """blake2b digest of every array of a store (any backend), over C-order bytes, streamed.

    Arrays stored in a converted form (variable-length strings, UTF-8 strings in HDF5) are
    hashed in the form a conversion to npydir would store them.
    """
    source = open_source((backend_of(path, role="store"), os.fspath(path)))
    try:
        out = {}
        for node in source.nodes():
            if node.kind == "array":
                out[node.path] = _digest(source, node, memory_budget)
        return out
    finally:
        source.close()


def _digest(source, node: Node, budget: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((tuple(node.shape), node.dtype.str)).encode())
    for _, start, stop, _ in _blocks(node, 1, budget):
        block = apply_transform(node.transform, source.read(node.path, start, stop))
        block = np.ascontiguousarray(block, dtype=node.dtype)  # scalars come back native
        try:
            h.update(block.data)
        except (TypeError, ValueError, BufferError):
            h.update(block.tobytes())
    return h.hexdigest()


def verify_conversion(src: Path, dst: Path, report: ConversionReport, budget: int) -> dict:
    """Compare checksums of every converted array; raise IntegrityError on a mismatch."""
    a = checksums(src, budget)
    b = checksums(dst, budget)
    bad = [f"/{s} -> /{d}" for s, d in report.arrays.items() if a.get(s) != b.get(d)]
    if bad:
        raise IntegrityError(f"verify: {dst} differs from {src} in {len(bad)} arrays: "
                             + ", ".join(bad))
    return {d: b[d] for d in report.arrays.values()}
