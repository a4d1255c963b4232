"""Reading, growing and atomically writing ``.npy`` files; opening them as memory maps.

Builds on :mod:`numpy.lib.format`, whose docstring is the NPY spec.  What this module adds:

Header with room to grow
    Every header written here is padded (numpy >= 1.24 does the same) so that ``shape[0]`` can
    grow to :data:`numpy.lib.format.GROWTH_AXIS_MAX_DIGITS` digits without the header changing
    length.  :func:`rewrite_shape` therefore rewrites the header *in place*.  Files written by
    older tools without that room are re-padded to their existing header length if the new
    shape still fits, else the file is rewritten once (atomically) with a roomy header.

Atomic whole-file writes
    :func:`atomic_write` writes to a temp file named ``.<name>.<random>.npydir-tmp`` in the same
    directory, fsyncs it, ``os.replace`` s it over the target and fsyncs the directory, so a
    reader sees either the old or the new file, never half of one.

Appends
    :func:`append_rows` writes the new rows after the existing data, fsyncs, then rewrites the
    shape in the header, fsyncs.  A crash in between leaves the old, still valid shape plus extra
    bytes past the data, which :func:`npydir.verify` reports and :func:`npydir.repair` trims.

Memory maps
    :func:`open_memmap` maps the data; 0-byte arrays (empty shapes, zero-itemsize dtypes) cannot
    be mapped and are returned as ordinary arrays.  Object dtypes are refused (they are pickles,
    not data); headers that do not parse and files shorter than their header says are a
    :class:`~npydir.errors.FormatError` naming the file.
"""

from __future__ import annotations

import ast
import errno
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

import numpy as np
from numpy.lib import format as npformat

from . import fsutil
from .fsutil import fsync_dir
from ..errors import FormatError, UnsupportedDTypeError
from .layout import TEMP_SUFFIX, is_temp_name

__all__ = [
    "TEMP_SUFFIX",
    "Header",
    "append_rows",
    "atomic_write",
    "build_header",
    "check_dtype",
    "create_array_file",
    "fsync_dir",
    "is_temp_name",
    "open_memmap",
    "read_header",
    "rewrite_shape",
    "save_array",
    "temp_path",
]

#: Headers larger than this are refused as corrupt (numpy's own default limit is 10000).
MAX_HEADER_SIZE = 1 << 20
#: Copy/fill block size.
_BLOCK = 16 << 20


@dataclass(frozen=True)
class Header:
    """Parsed header of an ``.npy`` file.

    Attributes
    ----------
    shape, dtype, fortran_order
        As in the header dictionary.
    version : tuple of int
        NPY format version, e.g. ``(1, 0)``.
    offset : int
        Byte offset of the data (= total header length including magic).
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    version: tuple[int, int]
    offset: int

    @property
    def nbytes(self) -> int:
        """Bytes of data the header promises."""
        return prod(self.shape) * self.dtype.itemsize

    @property
    def expected_size(self) -> int:
        """File size the header promises: header plus data."""
        return self.offset + self.nbytes


def check_dtype(dtype: np.dtype, where: str = "") -> np.dtype:
    """Refuse dtypes that cannot be stored as plain data (object, or structured with objects)."""
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        at = f" ({where})" if where else ""
        raise UnsupportedDTypeError(
            f"object dtype {dtype} cannot be stored{at}: npydir stores plain data, not pickles; "
            "convert to a numeric, bool, str ('U') or bytes ('S') dtype"
        )
    return dtype


# ----------------------------------------------------------------------------- header reading


class ReadableFile(Protocol):
    """What :func:`read_header` needs of a file: ``read(n)`` and ``tell()``."""

    def read(self, n: int = -1, /) -> bytes: ...

    def tell(self) -> int: ...


def read_header(
    fp: ReadableFile, name: str | os.PathLike = "<file>", *, allow_object: bool = False
) -> Header:
    """Read and validate the header of an ``.npy`` file open at position 0.

    Parameters
    ----------
    fp : binary file
        Positioned at the start of the file.
    name : str or path
        Shown in error messages.
    allow_object : bool
        Accept object dtypes (only the legacy ``attrs.npy`` reader does).

    Raises
    ------
    FormatError
        Bad magic, unsupported version, header that does not parse or is inconsistent.
    UnsupportedDTypeError
        Object dtype and ``allow_object`` is false.
    """
    try:
        version = npformat.read_magic(fp)
    except (ValueError, EOFError) as exc:
        raise FormatError(f"{name}: not an .npy file ({exc})") from None
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise FormatError(f"{name}: unsupported .npy format version {version}")
    try:
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(
                fp, max_header_size=MAX_HEADER_SIZE
            )
        else:
            # numpy reads v3 headers (utf8 field names) with the same private reader; v2 and v3
            # only differ in the header encoding, which read_array_header_2_0 does not decode.
            if version == (3, 0):
                shape, fortran, dtype = _read_header_v3(fp)
            else:
                shape, fortran, dtype = npformat.read_array_header_2_0(
                    fp, max_header_size=MAX_HEADER_SIZE
                )
    except Exception as exc:  # noqa: BLE001 - literal_eval/tokenize raise a zoo of types
        # (TokenError, RecursionError, MemoryError, OverflowError, ...): all mean "bad header"
        raise FormatError(
            f"{name}: .npy header does not parse ({type(exc).__name__}: {exc})"
        ) from None
    offset = fp.tell()
    if any((not isinstance(n, int)) or n < 0 for n in shape):
        raise FormatError(f"{name}: bad shape {shape!r} in .npy header")
    _check_representable(tuple(shape), dtype, name)
    if dtype.hasobject and not allow_object:
        raise UnsupportedDTypeError(
            f"{name}: object dtype {dtype} is refused: such .npy files hold pickles, and loading "
            "them can run arbitrary code"
        )
    return Header(tuple(int(n) for n in shape), dtype, bool(fortran), version, offset)


#: numpy's limits: dimensions per array, and bytes (and each dimension) within a signed intp
_MAX_NDIM = 64
_MAX_INTP = np.iinfo(np.intp).max


def _check_representable(shape: tuple[int, ...], dtype: np.dtype, name) -> None:
    """Refuse shapes numpy cannot make an array of, even when they hold no data.

    A zero-size array (a 0 in the shape) has no bytes to check against the file size, so its
    other dimensions could be anything; numpy refuses more than 64 dimensions and (like
    ``PyArray_NewFromDescr``) a product of the non-zero dimensions times the itemsize past
    ``intp``.  The itemsize counts as at least 1: numpy makes 'S0'/'U0' arrays one wide.
    """
    if len(shape) > _MAX_NDIM:
        raise FormatError(
            f"{name}: .npy header has {len(shape)} dimensions, numpy allows at most {_MAX_NDIM}"
        )
    nbytes = max(dtype.itemsize, 1)
    for n in shape:
        if n:
            nbytes *= n
            if nbytes > _MAX_INTP:
                raise FormatError(
                    f"{name}: shape {shape} of {dtype} in the .npy header is too large for numpy "
                    f"(more than {_MAX_INTP} bytes, or a dimension past it)"
                )


def _read_header_v3(fp: ReadableFile) -> tuple:
    import struct

    raw = fp.read(4)
    if len(raw) != 4:
        raise EOFError("header length truncated")
    (hlen,) = struct.unpack("<I", raw)
    if hlen > MAX_HEADER_SIZE:
        raise ValueError(f"header length {hlen} exceeds {MAX_HEADER_SIZE}")
    header = fp.read(hlen)
    if len(header) != hlen:
        raise EOFError("header truncated")
    d = ast.literal_eval(header.decode("utf8"))
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise ValueError(f"header is not a dict with keys descr, fortran_order, shape: {d!r}")
    return tuple(d["shape"]), bool(d["fortran_order"]), npformat.descr_to_dtype(d["descr"])


def read_header_path(
    path: str | os.PathLike, *, allow_object: bool = False, dir_fd: int | None = None
) -> Header:
    """Read the header of the file at ``path`` (see :func:`read_header`).

    ``dir_fd``: the open directory holding ``path`` (see :mod:`npydir.store.fsutil`); a FIFO or
    device in place of the file is a :class:`FormatError`, never a hang.
    """
    with _open_fp(path, os.O_RDONLY, dir_fd) as fp:
        return read_header(fp, path, allow_object=allow_object)


def _open_fp(path: str | os.PathLike, flags: int, dir_fd: int | None) -> BinaryIO:
    """A store file opened as :func:`npydir.store.fsutil.open_file` does, as a binary file object.

    Reads (``O_RDONLY``) may follow a link (:class:`Array` lookups already refused links that
    leave the store); writes never do.
    """
    fd = fsutil.open_file(path, flags, dir_fd=dir_fd, follow=flags == os.O_RDONLY)
    fp = open(fd, "rb" if flags == os.O_RDONLY else "r+b")
    # np.memmap takes its .filename from here; .raw is a FileIO, which typeshed cannot tell
    # from a mode that is not a literal
    fp.raw.name = os.fspath(path)  # type: ignore[attr-defined]
    return fp


# ----------------------------------------------------------------------------- header writing


def build_header(
    shape: tuple[int, ...],
    dtype: np.dtype,
    fortran_order: bool = False,
    *,
    length: int | None = None,
    version: tuple[int, int] | None = None,
) -> bytes:
    """Return the bytes of an NPY header (magic included).

    With ``length=None`` the header is padded like numpy >= 1.24 does: room for ``shape[0]`` to
    grow to ``GROWTH_AXIS_MAX_DIGITS`` digits, total length a multiple of 64.  With ``length``
    given, the header is padded to exactly that many bytes (used to rewrite a header in place);
    ``ValueError`` if it does not fit.
    """
    d = {
        "descr": npformat.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": bool(fortran_order),
        "shape": tuple(int(n) for n in shape),
    }
    text = "{" + "".join(f"'{k}': {d[k]!r}, " for k in sorted(d)) + "}"
    if length is None:
        if shape:
            grow_axis = -1 if fortran_order else 0
            text += " " * max(0, npformat.GROWTH_AXIS_MAX_DIGITS - len(repr(int(shape[grow_axis]))))
        return _wrap(text, version, None)
    return _wrap(text, version, length)


def _wrap(text: str, version: tuple[int, int] | None, length: int | None) -> bytes:
    try:
        body = text.encode("latin1")
        enc_version = None
    except UnicodeEncodeError:  # structured dtype with non-latin1 field names: format 3.0
        body = text.encode("utf8")
        enc_version = (3, 0)
    candidates = (
        [version] if version is not None else ([enc_version] if enc_version else [(1, 0), (2, 0)])
    )
    for ver in candidates:
        if ver == (1, 0) and enc_version is not None:
            continue
        fmt_len = 2 if ver == (1, 0) else 4
        prefix_len = npformat.MAGIC_LEN + fmt_len
        if length is None:
            total = prefix_len + len(body) + 1
            pad = -total % npformat.ARRAY_ALIGN
            total += pad
        else:
            total = length
            pad = total - (prefix_len + len(body) + 1)
            if pad < 0:
                continue
        hlen = total - prefix_len
        if ver == (1, 0) and hlen >= 1 << 16:
            continue
        import struct

        return (
            npformat.magic(*ver)
            + struct.pack("<H" if ver == (1, 0) else "<I", hlen)
            + body
            + b" " * pad
            + b"\n"
        )
    raise ValueError("header does not fit" + (f" in {length} bytes" if length else ""))


# ----------------------------------------------------------------------------- atomic writes


def temp_path(path: Path) -> Path:
    """A fresh temp-file path for ``path``: same directory, '.'-prefixed, unique."""
    path = Path(path)
    tail = f".{secrets.token_hex(4)}{TEMP_SUFFIX}"
    # keep the whole name within NAME_MAX (255 bytes): shorten the copied name if needed
    room = 255 - 1 - len(tail)
    stem = os.fsencode(path.name)[:room].decode("utf-8", "ignore")
    return path.with_name(f".{stem}{tail}")


def named_oserror(exc: OSError, path: str | os.PathLike) -> OSError:
    """``exc`` with ``path`` as its filename when it names no file (ENOSPC, EFBIG, EDQUOT, EIO).

    Write errors from ``write``/``pwrite``/``fsync`` carry no path; the message must say which
    store file could not be written.  The errno is kept (``OSError(errno, ...)`` also picks the
    same subclass) so callers can still test for ``errno.ENOSPC``.
    """
    if exc.filename is not None or exc.errno is None:
        return exc
    named = OSError(exc.errno, exc.strerror or os.strerror(exc.errno), os.fspath(path))
    named.__cause__ = exc
    return named


def write_temp(
    path: str | os.PathLike,
    write: Callable[[BinaryIO], object],
    *,
    sync: bool = True,
    dir_fd: int | None = None,
) -> Path:
    """``write(fp)`` into a fresh temp file beside ``path`` (fsynced) and return the temp's path.

    The first half of :func:`atomic_write`, for callers that stage several files before they
    rename any.  The temp file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (in ``dir_fd``,
    the open directory holding ``path``, when given).  On any error the temp file is removed; an
    ``OSError`` that names no file (a full disk, a file-size limit) is re-raised with ``path``
    as its filename.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        fd = fsutil.open_file(tmp, os.O_WRONLY | os.O_CREAT, dir_fd=dir_fd, mode=0o644)
        with open(fd, "wb") as fp:
            write(fp)
            fp.flush()
            if sync:
                os.fsync(fp.fileno())
    except BaseException as exc:
        remove_if_present(tmp, dir_fd=dir_fd)
        if isinstance(exc, OSError) and exc.filename is None:
            raise named_oserror(exc, path) from exc
        raise
    return tmp


def pread_full(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` (bytes) from ``fd`` at ``offset``, looping over short reads.

    Returns the bytes read: ``len(view)``, or fewer where the file ends (the caller says what
    that means).  ``os.preadv`` releases the GIL, so reader threads overlap.
    """
    done = 0
    total = len(view)
    while done < total:
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            break
        done += n
    return done


def remove_if_present(path: str | os.PathLike, *, dir_fd: int | None = None) -> None:
    """Unlink ``path`` (in the open directory ``dir_fd``, if given); already gone is fine."""
    try:
        os.unlink(fsutil.name_at(path, dir_fd), dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def replace(src: str | os.PathLike, dst: str | os.PathLike, *, dir_fd: int | None = None) -> None:
    """``os.replace(src, dst)``, both in the open directory ``dir_fd`` when given.

    Renaming replaces a link at ``dst``; it never writes through one.
    """
    os.replace(
        fsutil.name_at(src, dir_fd),
        fsutil.name_at(dst, dir_fd),
        src_dir_fd=dir_fd,
        dst_dir_fd=dir_fd,
    )


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[BinaryIO], object],
    *,
    sync: bool = True,
    dir_fd: int | None = None,
) -> None:
    """Write a whole file atomically: ``write(fp)`` into a temp file, fsync, rename, fsync dir.

    With ``dir_fd`` (the open directory holding ``path``, see :mod:`npydir.store.fsutil`) every step
    happens in that directory, whatever its path leads to by then.  On any error the temp file
    is removed and the target is left as it was.  An ``OSError`` that names no file (a full
    disk, a file-size limit) is re-raised with ``path`` as its filename.
    """
    path = Path(path)
    tmp = write_temp(path, write, sync=sync, dir_fd=dir_fd)
    try:
        replace(tmp, path, dir_fd=dir_fd)
    except BaseException as exc:
        remove_if_present(tmp, dir_fd=dir_fd)
        if isinstance(exc, OSError) and exc.filename is None:
            raise named_oserror(exc, path) from exc
        raise
    if sync:
        fsync_dir(path.parent, fd=dir_fd)


def _bytes_of(arr: np.ndarray) -> memoryview:
    """The raw bytes of ``arr`` in C order, without a copy when it is C-contiguous.

    Goes through a uint8 view because memoryview refuses some dtypes (datetime64, ...).
    """
    flat = np.ascontiguousarray(arr).reshape(-1)
    if flat.nbytes == 0:
        return memoryview(b"")
    return flat.view(np.uint8).data


def _write_array_data(fp: BinaryIO, arr: np.ndarray) -> None:
    """Write ``arr`` in C order in blocks (no full copy of a non-contiguous input)."""
    if arr.size == 0 or arr.itemsize == 0:
        return
    if arr.flags.c_contiguous:
        fp.write(_bytes_of(arr))
        return
    # Non-contiguous input: write it a slab of rows at a time.
    rows_per_block = max(1, _BLOCK // max(1, arr[0].nbytes if arr.ndim else arr.nbytes))
    if arr.ndim == 0:
        fp.write(np.ascontiguousarray(arr).tobytes())
        return
    for i in range(0, arr.shape[0], rows_per_block):
        fp.write(np.ascontiguousarray(arr[i : i + rows_per_block]).tobytes())


def _copy_bytes(
    path: str | os.PathLike, offset: int, nbytes: int, fp: BinaryIO, doing: str, src_fd: int
) -> None:
    """Copy ``nbytes`` of the open file ``src_fd`` (``path``) from ``offset`` into ``fp`` in
    blocks (never all at once)."""
    remaining = nbytes
    pos = offset
    while remaining:
        chunk = os.pread(src_fd, min(_BLOCK, remaining), pos)
        if not chunk:
            raise FormatError(f"{path}: file is truncated {doing}")
        fp.write(chunk)
        remaining -= len(chunk)
        pos += len(chunk)


def save_array(
    path: str | os.PathLike, arr: np.ndarray, *, sync: bool = True, dir_fd: int | None = None
) -> Header:
    """Atomically write ``arr`` as an ``.npy`` file with a growable header (C order).

    ``dir_fd``: the open directory holding ``path`` (see :func:`atomic_write`).
    """
    arr = np.asanyarray(arr)
    if type(arr) is not np.ndarray and not isinstance(arr, np.memmap):
        arr = np.asarray(arr)
    dtype = check_dtype(arr.dtype, str(path))
    header = build_header(arr.shape, dtype)

    def write(fp: BinaryIO) -> None:
        fp.write(header)
        _write_array_data(fp, arr)

    atomic_write(path, write, sync=sync, dir_fd=dir_fd)
    return Header(tuple(arr.shape), dtype, False, _version_of(header), len(header))


def create_array_file(
    path: str | os.PathLike,
    shape: tuple[int, ...],
    dtype: np.dtype,
    fillvalue=None,
    *,
    sync: bool = True,
    dir_fd: int | None = None,
) -> Header:
    """Atomically create an ``.npy`` file of ``shape`` filled with ``fillvalue`` (default zeros).

    Zero fill reserves the disk blocks with ``posix_fallocate`` (no data is written: ext4, xfs,
    btrfs and tmpfs allocate unwritten extents), so a full disk or quota is an ``OSError``
    (``ENOSPC``) here and not a ``SIGBUS`` later, when rows are written through a memory map.
    Where the file system cannot reserve blocks the file is extended sparsely (see
    :func:`reserve`).  ``dir_fd``: the open directory holding ``path``.
    """
    dtype = check_dtype(dtype, str(path))
    shape = tuple(int(n) for n in shape)
    header = build_header(shape, dtype)
    nbytes = prod(shape) * dtype.itemsize
    fill = None
    if fillvalue is not None:
        fill = (
            np.asarray(fillvalue, dtype=dtype)
            if not isinstance(fillvalue, np.ndarray)
            else fillvalue.astype(dtype)
        )
        if fill.shape != ():
            raise ValueError(f"fillvalue must be a scalar, got shape {fill.shape}")
        if not fill.tobytes().strip(b"\0"):
            fill = None  # all-zero bytes: sparse extension does it

    def write(fp: BinaryIO) -> None:
        fp.write(header)
        if fill is None:
            fp.flush()
            reserve(fp.fileno(), len(header) + nbytes)
            return
        per = max(1, _BLOCK // max(1, dtype.itemsize))
        block = np.full(min(per, prod(shape)), fill, dtype=dtype)
        remaining = prod(shape)
        while remaining:
            n = min(remaining, block.size)
            fp.write(_bytes_of(block[:n]))
            remaining -= n

    atomic_write(path, write, sync=sync, dir_fd=dir_fd)
    return Header(shape, dtype, False, _version_of(header), len(header))


#: errnos of posix_fallocate meaning "this file system cannot do that" (not "no room")
_NO_FALLOCATE = {errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, getattr(errno, "ENOTSUP", -1)}


def reserve(fd: int, size: int) -> None:
    """Extend the file ``fd`` to ``size`` bytes of zeros with its disk blocks reserved.

    Writes through a memory map have no way to report a full disk: the kernel raises ``SIGBUS``
    and the interpreter dies.  Reserving the blocks up front turns that into ``ENOSPC`` here.
    File systems without ``fallocate`` support (some network and FUSE file systems) get a sparse
    extension with ``ftruncate`` instead: there a full disk can still end in ``SIGBUS``.
    """
    current = os.fstat(fd).st_size
    if size > current and hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, current, size - current)
        except OSError as exc:
            if exc.errno not in _NO_FALLOCATE:
                raise
    if os.fstat(fd).st_size != size:
        os.ftruncate(fd, size)


def _version_of(header: bytes) -> tuple[int, int]:
    return (header[6], header[7])


# ----------------------------------------------------------------------------- memmaps


def open_memmap(
    path: str | os.PathLike,
    mode: Literal["r", "r+"] = "r",
    header: Header | None = None,
    *,
    dir_fd: int | None = None,
) -> tuple[np.ndarray, Header]:
    """Map the data of an ``.npy`` file.

    Parameters
    ----------
    path : path
        The ``.npy`` file.
    mode : {"r", "r+"}
        Read-only or read-write mapping.
    header : Header, optional
        Already parsed header (saves a read).
    dir_fd : int, optional
        The open directory holding ``path`` (see :mod:`npydir.store.fsutil`).  Mode ``"r+"`` never
        follows a link in place of the file; neither mode opens a FIFO or device.

    Returns
    -------
    (array, header)
        ``array`` is an ``np.memmap`` (a plain, non-writable-in-mode-"r" ndarray for 0-byte data,
        which cannot be mapped).

    Raises
    ------
    FormatError
        The file is shorter than its header says.
    """
    if mode not in ("r", "r+"):
        raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
    path = os.fspath(path)
    with _open_fp(path, os.O_RDONLY if mode == "r" else os.O_RDWR, dir_fd) as fp:
        if header is None:
            header = read_header(fp, path)
        size = os.fstat(fp.fileno()).st_size
        if size < header.expected_size:
            raise FormatError(
                f"{path}: file is truncated: header says shape {header.shape} {header.dtype} "
                f"(expected {header.expected_size} bytes), found {size} bytes"
            )
        order: Literal["C", "F"] = "F" if header.fortran_order else "C"
        if header.nbytes == 0:
            if prod(header.shape) == 0:
                arr = np.zeros(header.shape, dtype=header.dtype, order=order)
                if mode == "r":
                    arr.flags.writeable = False
            else:
                # elements of zero itemsize: nothing to map or store, and np.zeros would widen
                # 'S0'/'U0' to one character and allocate that per element (terabytes for a
                # header of a few bytes).  A zero-strided read-only view allocates one element.
                arr = np.lib.stride_tricks.as_strided(
                    np.zeros(1, dtype=header.dtype),
                    shape=header.shape,
                    strides=(0,) * len(header.shape),
                    writeable=False,
                )
            return arr, header
        # Passing the open file keeps one open() per mapping; mmap dups the descriptor.
        arr = np.memmap(
            fp, dtype=header.dtype, mode=mode, offset=header.offset, shape=header.shape, order=order
        )
    return arr, header


# ----------------------------------------------------------------------------- growing


def rewrite_shape(
    fd: int, old: Header, new_shape: tuple[int, ...], name: str | os.PathLike = "<file>"
) -> bool:
    """Rewrite the header of an open file (descriptor ``fd``) in place with ``new_shape``.

    Returns False when the new header does not fit in the old header's length (the caller then
    rewrites the file, see :func:`regrow_file`).
    """
    try:
        header = build_header(
            new_shape, old.dtype, old.fortran_order, length=old.offset, version=old.version
        )
    except ValueError:
        return False
    if len(header) != old.offset:  # pragma: no cover - build_header guarantees it
        return False
    os.pwrite(fd, header, 0)
    return True


def regrow_file(
    path: str | os.PathLike,
    old: Header,
    *,
    sync: bool = True,
    dir_fd: int | None = None,
    src_fd: int | None = None,
) -> Header:
    """Rewrite ``path`` atomically with a header that has room to grow; data unchanged.

    Only needed for files written without growth padding (numpy < 1.24 or other tools).
    ``dir_fd``: the open directory holding ``path``; ``src_fd``: ``path`` already open.
    """
    header = build_header(old.shape, old.dtype, old.fortran_order)
    own = src_fd is None
    if src_fd is None:
        src_fd = fsutil.open_file(path, os.O_RDONLY, dir_fd=dir_fd)

    def write(fp: BinaryIO) -> None:
        fp.write(header)
        _copy_bytes(path, old.offset, old.nbytes, fp, "while rewriting its header", src_fd)

    try:
        atomic_write(path, write, sync=sync, dir_fd=dir_fd)
    finally:
        if own:
            os.close(src_fd)
    return Header(old.shape, old.dtype, old.fortran_order, _version_of(header), len(header))


def _sync(fd: int) -> None:
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def append_rows(
    path: str | os.PathLike,
    block: np.ndarray,
    *,
    sync: bool = True,
    header: Header | None = None,
    dir_fd: int | None = None,
) -> Header:
    """Append ``block`` (C-ordered rows of the file's dtype) along axis 0, in place.

    Order of writes: data after the existing data, fsync, new shape into the header, fsync.  Extra
    bytes already past the data (a previous torn append) are trimmed first.

    Parameters
    ----------
    path : path
        The ``.npy`` file.
    block : ndarray
        Rows of the file's dtype and row shape.
    sync : bool
        fdatasync after the data and after the header.
    header : Header, optional
        The file's current header, when the caller knows it (a writer holding the store's lock);
        saves reading it again.
    dir_fd : int, optional
        The open directory holding ``path`` (see :mod:`npydir.store.fsutil`).  The file is opened
        ``O_NOFOLLOW``: a link in its place is refused, never written through.

    Returns
    -------
    Header
        The new header.
    """
    path = os.fspath(path)
    try:
        return _append_rows(path, block, sync, header, dir_fd)
    except OSError as exc:
        if exc.filename is None:
            raise named_oserror(exc, path) from exc
        raise


def _append_rows(
    path: str, block: np.ndarray, sync: bool, header: Header | None, dir_fd: int | None
) -> Header:
    # Data is written with pwrite, not through a memory map, so a full disk is an ENOSPC from
    # pwrite here: no block reservation needed (unlike create_array_file / resize_rows).
    fd = fsutil.open_file(path, os.O_RDWR, dir_fd=dir_fd)
    try:
        if header is None:
            with open(fd, "rb", closefd=False) as fp:
                header = read_header(fp, path)
        if header.fortran_order:
            raise FormatError(
                f"{path}: cannot append to a Fortran-order .npy file "
                "(only C order grows along axis 0)"
            )
        if not header.shape:
            raise FormatError(f"{path}: cannot append to a 0-d array")
        if block.dtype != header.dtype or block.shape[1:] != header.shape[1:]:
            raise ValueError(
                f"{path}: block of shape {block.shape} {block.dtype} does not match rows of "
                f"shape {header.shape[1:]} {header.dtype}"
            )
        new_shape = (header.shape[0] + block.shape[0],) + header.shape[1:]
        size = os.fstat(fd).st_size
        if size < header.expected_size:
            raise FormatError(
                f"{path}: file is truncated: header says {header.expected_size} bytes, found {size}"
            )
        try:
            new_header = build_header(
                new_shape, header.dtype, False, length=header.offset, version=header.version
            )
        except ValueError:  # no room to grow (a foreign file): rewrite it once with room
            header = regrow_file(path, header, sync=sync, dir_fd=dir_fd, src_fd=fd)
            os.close(fd)
            fd = -1
            new_header = build_header(
                new_shape, header.dtype, False, length=header.offset, version=header.version
            )
            fd = fsutil.open_file(path, os.O_RDWR, dir_fd=dir_fd)
            size = os.fstat(fd).st_size
        end = header.expected_size
        if size > end:
            # bytes of an append that never committed its header: not data, trim them
            os.ftruncate(fd, end)
        view = _bytes_of(block)
        written = 0
        while written < len(view):
            written += os.pwrite(fd, view[written:], end + written)
        if sync:
            _sync(fd)
        os.pwrite(fd, new_header, 0)
        if sync:
            _sync(fd)
    finally:
        if fd >= 0:
            os.close(fd)
    return Header(new_shape, header.dtype, False, header.version, header.offset)


def fsync_file(path: str | os.PathLike, *, dir_fd: int | None = None) -> None:
    """fsync a file by path (after writes made without ``sync``); never opens a FIFO."""
    fd = fsutil.open_file(path, os.O_RDONLY, dir_fd=dir_fd, follow=True)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resize_rows(
    path: str | os.PathLike, n: int, *, sync: bool = True, dir_fd: int | None = None
) -> Header:
    """Set ``shape[0]`` of ``path`` to ``n`` (grow with zeros, or shrink).

    Growing is in place: the file is extended with zeros (blocks reserved, see :func:`reserve`)
    before the header is rewritten, so a crash leaves the old, valid shape.  Shrinking rewrites
    the kept rows into a new file that replaces the old one atomically: truncating in place would
    pull pages out from under live memory maps (SIGBUS in any process still reading the old rows).
    ``dir_fd``: the open directory holding ``path``; the file is opened ``O_NOFOLLOW``.
    """
    path = os.fspath(path)
    fd = fsutil.open_file(path, os.O_RDWR, dir_fd=dir_fd)
    try:
        return _resize_rows(path, n, sync, dir_fd, fd)
    finally:
        os.close(fd)


def _resize_rows(path: str, n: int, sync: bool, dir_fd: int | None, fd: int) -> Header:
    with open(fd, "rb", closefd=False) as fp:
        header = read_header(fp, path)
    if header.fortran_order or not header.shape:
        raise FormatError(f"{path}: only C-order arrays with at least one axis can be resized")
    n = int(n)
    new_shape = (n,) + header.shape[1:]
    if header.shape[0] == n:
        return header
    if n < header.shape[0]:
        new_header = build_header(new_shape, header.dtype)
        keep = prod(new_shape) * header.dtype.itemsize

        def write(fp: BinaryIO) -> None:
            fp.write(new_header)
            _copy_bytes(path, header.offset, keep, fp, "while shrinking it", fd)

        atomic_write(path, write, sync=sync, dir_fd=dir_fd)
        return Header(new_shape, header.dtype, False, _version_of(new_header), len(new_header))
    try:
        build_header(new_shape, header.dtype, False, length=header.offset, version=header.version)
    except ValueError:
        header = regrow_file(path, header, sync=sync, dir_fd=dir_fd, src_fd=fd)
        fd = fsutil.open_file(path, os.O_RDWR, dir_fd=dir_fd)  # the new file
    else:
        fd = os.dup(fd)
    new = Header(new_shape, header.dtype, False, header.version, header.offset)
    try:
        os.ftruncate(
            fd, header.expected_size
        )  # torn bytes of an earlier append must not become rows
        # the new rows are written through memory maps: reserve their blocks (ENOSPC, not SIGBUS)
        try:
            reserve(fd, new.expected_size)
        except OSError as exc:
            os.ftruncate(fd, header.expected_size)  # leave the file as it was
            raise named_oserror(exc, path) from exc
        if sync:
            _sync(fd)
        rewrite_shape(fd, header, new_shape, path)
        if sync:
            _sync(fd)
    finally:
        os.close(fd)
    return new
