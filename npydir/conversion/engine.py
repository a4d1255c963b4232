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
   Nothing planted under the hidden names is trusted (:mod:`npydir.conversion.files`), and an
   existing ``dst`` is replaced (``overwrite=True``) by swapping the two names in one step.
3. **Stream.** Arrays are preallocated at their full size and filled in blocks of whole source
   chunks (and whole destination chunks): a small thread pool reads and decompresses the next
   blocks while earlier ones are written.  In-flight blocks are bounded by ``memory_budget``,
   whatever the dataset's size.  Each reader thread decodes into its own reused buffer and
   writes the rows into the preallocated ``.npy`` file with ``pwrite``.
4. **Journal.** Finished blocks are recorded in ``.<dst name>.partial.journal`` after the data
   is flushed (see :mod:`npydir.conversion.journal`).  Running the same conversion again after
   Ctrl-C (acted on between blocks, :mod:`npydir.conversion.interrupt`), ``kill -9`` or a crash
   skips the finished blocks.
5. **Verify** (optional). blake2b checksums of every array, source against destination.

With ``client=`` (a ``dask.distributed.Client``) the block copies of an npydir destination run
on the cluster's workers, each writing its rows straight into the preallocated ``.npy`` files
(the destination must be on a filesystem all workers share).
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
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

from .adapters.hdf5 import Hdf5Dest
from .adapters.npydir_store import RowsFile, safe_store_name
from .adapters.zarr_store import zarr_options
from .files import (
    identity,
    is_empty,
    lstat,
    open_directory,
    open_regular,
)
from .interrupt import DeferredInterrupt
from .journal import Journal
from .protocol import Destination, Node, Source, join
from .registry import backend_of, open_destination, open_source
from .values import LINKS, ORIGINAL_NAME, REFUSED, apply_transform
from .._optional import require
from ..errors import AlreadyExistsError, ConversionError, IntegrityError, StoreNotFoundError
from ..kernel.windows import available_cores
from ..remote._url import is_remote_url
from ..store.fsutil import fsync_dir, publish_directory, remove, rename_new
from ..store.layout import JOURNAL_SUFFIX, PARTIAL_SUFFIX, REPLACED_SUFFIX, is_temp_name

__all__ = [
    "ConversionReport",
    "NullJournal",
    "convert",
    "copy_tree",
    "open_partial",
    "partial_path",
    "publish",
    "write_das_zarr",
]


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
    return (dst.parent / f".{dst.name}{PARTIAL_SUFFIX}",
            dst.parent / f".{dst.name}{JOURNAL_SUFFIX}")


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
    allow_external: bool = False,
    storage_options: dict | None = None,
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
        Replace an existing ``dst`` once the new one is complete, in one step where the
        system can swap two names (Linux ``renameat2``): at every instant the old or the new
        ``dst`` is there, and a rerun after a crash finishes the replacement.
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
    allow_external : bool
        Also copy arrays whose data lies outside the source: zarr chunk files (or array
        directories) that are symbolic links, HDF5 datasets with external storage
        (``external=``) or virtual datasets.  By default they are refused per array (any
        local file the user can read would otherwise end up in the output).

    Ctrl-C (SIGINT) stops a conversion between two blocks with ``KeyboardInterrupt``, its
    journal saved, so running it again resumes.

    Returns
    -------
    ConversionReport
    """
    t0 = time.perf_counter()
    src_kind = backend_of(src, role="source")
    dst_kind = backend_of(dst, role="destination")
    remote = is_remote_url(src)  # s3:// or http(s):// source, read where it lies
    if storage_options is not None and not remote:
        raise ValueError(f"storage_options is for s3:// and http(s):// sources, not {src!r}")
    if remote and verify:
        raise ConversionError(f"verify=True re-reads the source; not supported for {src}")
    src_path = Path(os.path.abspath(os.fspath(src))) if not remote else Path(str(src).rstrip("/"))
    dst_path = Path(os.path.abspath(os.path.normpath(os.fspath(dst))))
    if not remote and not src_path.exists():
        raise StoreNotFoundError(f"source {os.fspath(src)!r} does not exist")
    if src_path == dst_path:
        raise ConversionError(f"source and destination are the same path {os.fspath(src)!r}")
    if dst_kind == "zarr" and dst_path.name.lower().endswith(".zip"):
        raise ConversionError(
            f"destination {os.fspath(dst)!r}: zip stores can be read, not written; convert to a "
            ".zarr directory and zip it afterwards"
        )
    if dst_kind == "zarr":
        zarr_format, chunks, compression = zarr_options(
            zarr_format, chunks, compression, das_compat=das_compat,
            where=f"destination {os.fspath(dst)!r}")
    if client is not None and dst_kind != "npydir":
        raise ConversionError("client= (Dask) needs an npydir (.npy) destination")
    if memory_budget < 1:
        raise ValueError(f"memory_budget must be positive, got {memory_budget}")
    partial, jpath = partial_path(dst_path)
    if lstat(dst_path) is not None and not overwrite and lstat(jpath) is None:
        raise AlreadyExistsError(
            f"destination {os.fspath(dst)!r} already exists "
            "(overwrite=True, or --overwrite, replaces it)"
        )

    report = ConversionReport(src=os.fspath(src), dst=os.fspath(dst))
    threads = max(1, threads or min(4, available_cores()))
    with DeferredInterrupt() as interrupt:
        if remote:
            spec: tuple[Any, ...] = (src_kind, str(src), allow_external, storage_options or {})
        else:
            spec = (src_kind, str(src_path), allow_external)
        source = open_source(spec)
        try:
            nodes = []
            for node in source.nodes():
                nodes.append(node)
                interrupt.check()
            plan, options = _plan_json(nodes, src if remote else src_path, dst_kind,
                                       zarr_format, chunks, compression)
            refused = {n.path: n.reason for n in nodes if n.kind == "refused"}
            if strict and refused:
                raise ConversionError(
                    f"{os.fspath(src)}: {len(refused)} arrays cannot be converted: "
                    + "; ".join(f"/{k}: {v}" for k, v in refused.items())
                )
            journal = Journal(jpath, plan, interval=journal_interval, durable=durable)
            try:
                if _finish_published(journal, partial, dst_path):
                    if journal.matched:  # published by an earlier run that died after it
                        report.resumed = True
                        journal.complete = True
                        return report
                    journal.reset()
                if lstat(dst_path) is not None and not overwrite:
                    raise AlreadyExistsError(
                        f"destination {os.fspath(dst)!r} already exists "
                        "(overwrite=True, or --overwrite, replaces it)"
                    )
                ours = _claim_partial(journal, partial, dst_path)
                if not journal.matched or not ours:
                    if ours:  # an earlier conversion into dst, of another plan
                        remove(partial)
                    journal.reset()
                report.resumed = journal.matched and any(journal.done.values())
                if journal.matched:
                    _remove_temp_files(partial)
                dest = open_partial(dst_kind, partial, options, das_compat, journal)
                if getattr(dest, "restarted", False):
                    report.resumed = False  # the partial file was unreadable: built anew
                try:
                    copy_tree(source, nodes, dest, journal, report,
                              memory_budget=memory_budget, threads=threads, client=client,
                              progress=progress, name=src_path.name, durable=durable,
                              interrupt=interrupt)
                    # everything written (and on disk when durable) before it appears by name
                    dest.flush(durable)
                finally:
                    dest.close()
                interrupt.check()
                journal.finish()
                publish(partial, dst_path, overwrite, journal)
            finally:
                journal.close(remove=journal.complete and lstat(partial) is None)
        finally:
            source.close()
    report.seconds = time.perf_counter() - t0
    for key, reason in report.refused.items():
        warnings.warn(f"{os.fspath(src)}:/{key} not converted: {reason}", stacklevel=2)
    for key, target in report.links.items():
        warnings.warn(f"{os.fspath(src)}:/{key} is a link to {target}; recorded in attrs, not "
                      "followed", stacklevel=2)
    if verify:
        report.checksums = verify_conversion(src_path, dst_path, report, memory_budget,
                                             allow_external=allow_external)
    return report


# --------------------------------------------------------------------------- planning


def copy_tree(source: Source, nodes: list[Node], dest: Destination, journal, report: ConversionReport, *, memory_budget: int,
              threads: int, client: Any = None, progress: bool = False, name: str = "",
              durable: bool = True, interrupt: DeferredInterrupt | None = None) -> None:
    """Create ``nodes`` at ``dest`` and copy every block the journal does not list as done.

    ``interrupt.check()`` runs between blocks (Ctrl-C stops the copy there)."""
    def flush() -> None:
        dest.flush(durable)

    check = interrupt.check if interrupt is not None else (lambda: None)

    blocks, mapping = _prepare(nodes, dest, report, memory_budget, threads)
    todo = [b for b in blocks if not journal.is_done(*b[:3])]
    report.blocks_skipped = len(blocks) - len(todo)
    report.nbytes = sum(mapping[p][1].nbytes for p in mapping)
    done_bytes = sum(b[3] for b in blocks) - sum(b[3] for b in todo)
    bar = _progress_bar(progress, report.nbytes, done_bytes, name)
    try:
        if client is not None:
            _run_dask(client, source, dest, mapping, todo, journal, bar, report, durable, check)
        else:
            _run_threads(source, dest, mapping, todo, journal, bar, report, threads, flush,
                         check)
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


def open_partial(kind: str, partial: Path, options: dict, das_compat: bool,
                 journal: Journal | None = None) -> Destination:
    """The destination adapter writing the partial result ``partial`` of a conversion into a
    ``kind`` backend (``options`` as :func:`npydir.conversion.registry.open_destination`
    takes them), creating it (and recording its identity in ``journal``) when it does not
    exist yet; with a journal, what was opened must be the recorded one.

    Raises
    ------
    ConversionError
        ``partial`` was replaced by something else while it was opened.
    """
    created = _create_partial(kind, partial, journal)
    try:
        dest = open_destination(kind, partial, options=options, das_compat=das_compat,
                                create=created)
    except ConversionError:
        if kind != "hdf5" or created:
            raise
        # a partial HDF5 file killed mid-write may be unreadable: start it over
        remove(partial)
        if journal is not None:
            journal.reset()
        _create_partial(kind, partial, journal)
        dest = open_destination(kind, partial, options=options, create=True)
        dest.restarted = True  # type: ignore[attr-defined]
    if journal is not None:
        # an HDF5 file: the one h5py opened, whatever the name points at now
        st = dest.opened_stat() if isinstance(dest, Hdf5Dest) else lstat(partial)
        if st is None or identity(st) != journal.owner:
            dest.close()
            raise ConversionError(f"{partial}: was replaced while the conversion opened it; "
                                  "expected the partial result it created")
    return dest


def _create_partial(kind: str, partial: Path, journal) -> bool:
    """Create the partial result if it is missing: a new directory (npydir, zarr) or an
    empty file (HDF5), never through a link; record its identity before anything is written
    into it.  True when it was created."""
    if lstat(partial) is not None:
        return False
    if kind == "hdf5":
        fd = open_regular(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL,
                          what="the partial result of the conversion")
    else:
        try:
            os.mkdir(partial)
        except FileExistsError:
            raise ConversionError(f"{partial}: appeared while the conversion created it") \
                from None
        fd = open_directory(partial, what="the partial result of the conversion")
    try:
        if journal is not None:
            journal.record_owner(identity(os.fstat(fd)))
    finally:
        os.close(fd)
    return True


def _claim_partial(journal, partial: Path, dst: Path) -> bool:
    """True when ``partial`` exists and is the one ``journal`` records; False when there is
    nothing there (an empty foreign directory or file holds nothing and is removed).
    Anything else (a link, a foreign tree) is refused: it is never trusted nor deleted."""
    st = lstat(partial)
    if st is None:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise ConversionError(f"{partial}: is a symbolic link; expected the partial result of "
                              f"a conversion into {dst.name} (never followed); remove the link")
    if journal.owner is not None and identity(st) == journal.owner:
        return True
    if is_empty(partial, st):
        remove(partial)
        return False
    raise ConversionError(
        f"{partial}: is not the partial result of a conversion into {dst.name} (its journal "
        f"{journal.path.name} does not record it); move it away or delete it")


def _same(st: os.stat_result | None, ident: list[int] | None) -> bool:
    return (st is not None and ident is not None and not stat.S_ISLNK(st.st_mode)
            and identity(st) == ident)


def _replaced_path(dst: Path) -> Path:
    return dst.parent / f".{dst.name}{REPLACED_SUFFIX}"


def _finish_published(journal, partial: Path, dst: Path) -> bool:
    """Finish what an earlier, complete conversion into ``dst`` left undone when it died
    while publishing; True when its result is (now) at ``dst``.

    Only names whose identity the journal recorded are touched: ``dst`` holding the recorded
    partial result means it was published, and the old destination it replaced (at
    ``.DST.partial`` after a swap, at ``.DST.replaced`` after a rename aside) is removed."""
    if not journal.complete or journal.owner is None:
        return False
    replaced = _replaced_path(dst)
    d, p, r = lstat(dst), lstat(partial), lstat(replaced)
    if _same(d, journal.owner):
        for path, st in ((partial, p), (replaced, r)):
            if _same(st, journal.replacing):
                remove(path)
        fsync_dir(dst.parent)
        return True
    if d is None and _same(p, journal.owner) and _same(r, journal.replacing):
        rename_new(partial, dst)  # died between the two renames of the fallback
        fsync_dir(dst.parent)
        remove(replaced)
        fsync_dir(dst.parent)
        return True
    return False


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
    assert node.dtype is not None  # an array's node
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
                 flush, check=lambda: None) -> None:
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
                check()
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
              durable: bool = True, check=lambda: None) -> None:
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
            check()
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


def _remove_temp_files(partial: Path) -> None:
    """Delete the temp files an interrupted run left in its partial tree.

    A run killed inside :func:`npydir.store.npyfile.atomic_write` (preallocating an array, writing
    attributes) leaves its ``.<name>.*.npydir-tmp`` file behind; the resumed run writes the
    file anew under a fresh temp name, so the old one is garbage that :func:`publish` would
    otherwise rename into the finished result.  Links are not followed (``os.walk`` does not
    descend into them, and a link named like a temp file is removed, never its target).
    """
    if not partial.is_dir() or partial.is_symlink():
        return  # an HDF5 partial is a single file
    removed = False
    for dirpath, dirnames, filenames in os.walk(partial):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            if is_temp_name(name):
                os.unlink(os.path.join(dirpath, name))
                removed = True
        if removed:
            fsync_dir(Path(dirpath))
            removed = False


def publish(partial: Path, dst: Path, overwrite: bool, journal: Journal | None = None) -> None:
    """Move the finished result into place (replacing ``dst`` if asked):
    :func:`npydir.store.fsutil.publish_directory`, with ``.DST.replaced`` as the place the old
    destination waits where two names cannot be swapped.  A crash between its two renames
    leaves the old copy there and the complete result under the partial name, and the rerun
    finishes (:func:`_finish_published`).  With a ``journal``, the old destination's identity
    is recorded first, so only it is removed."""
    replaced = _replaced_path(dst)
    record = None if journal is None else (lambda old: journal.record_replacing(identity(old)))
    try:
        publish_directory(partial, dst, overwrite=overwrite, aside=replaced,
                          before_replace=record)
    except FileExistsError as exc:
        if exc.filename == os.fspath(replaced):
            raise ConversionError(f"{replaced}: exists; expected no file there (it is where the "
                                  f"old {dst.name} is moved while it is replaced); move it away "
                                  "or delete it") from None
        raise AlreadyExistsError(f"destination {dst} appeared while converting") from None


def write_das_zarr(src: str | os.PathLike, dst: Path, *, overwrite: bool,
                   progress: bool) -> None:
    """Convert the npydir store ``src`` into ``dst``, zarr format 2 as DAS writes it.

    For builders that make an npydir store first (``make_dataset``): a conversion into
    ``dst`` left by an earlier, killed run is discarded, never resumed (its source was another
    build), and this one leaves nothing behind when it fails."""
    leftovers = partial_path(dst)
    for p in leftovers:
        remove(p)
    try:
        convert(src, dst, das_compat=True, overwrite=overwrite, progress=progress)
    except BaseException:
        for p in leftovers:
            remove(p)
        raise


# --------------------------------------------------------------------------- verify


def checksums(path: str | os.PathLike, memory_budget: int = 64 * 2**20, *,
              allow_external: bool = False) -> dict[str, str]:
    """blake2b digest of every array of a store (any backend), over C-order bytes, streamed.

    Arrays stored in a converted form (variable-length strings, UTF-8 strings in HDF5) are
    hashed in the form a conversion to npydir would store them.  Arrays with data outside
    the store are left out unless ``allow_external`` (see :func:`convert`).
    """
    source = open_source((backend_of(path, role="store"), os.fspath(path), allow_external))
    try:
        out = {}
        for node in source.nodes():
            if node.kind == "array":
                out[node.path] = _digest(source, node, memory_budget)
        return out
    finally:
        source.close()


def _digest(source, node: Node, budget: int) -> str:
    assert node.dtype is not None  # an array's node
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


def verify_conversion(src: Path, dst: Path, report: ConversionReport, budget: int, *,
                      allow_external: bool = False) -> dict:
    """Compare checksums of every converted array; raise IntegrityError on a mismatch."""
    a = checksums(src, budget, allow_external=allow_external)
    b = checksums(dst, budget)
    bad = [f"/{s} -> /{d}" for s, d in report.arrays.items() if a.get(s) != b.get(d)]
    if bad:
        raise IntegrityError(f"verify: {dst} differs from {src} in {len(bad)} arrays: "
                             + ", ".join(bad))
    return {d: b[d] for d in report.arrays.values()}
