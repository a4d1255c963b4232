"""Fuzz targets of the hostile suite: one function per parser, shared by hypothesis and atheris.

Each ``case_<target>(data, ctx)`` feeds one input through the real entry points (the low-level
reader *and* ``npydir.open`` on a store that contains the fuzzed file, plus ``npydir.verify``)
and returns an outcome label (``"ok"`` or the name of the documented exception).  Anything
else -- another exception, a wrong result, a value read from outside the file -- raises
:class:`Violation` (or propagates), which the runner records as a failure.

The module is imported only in child processes (``_fuzz_worker.py``, ``_atheris_worker.py``)
so that a segfault or an endless loop kills a child, never pytest.
"""

from __future__ import annotations

import io
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import npydir
from npydir import attrs as nattrs
from npydir import npyfile
from npydir.das import read_annotations, write_annotations
from npydir.errors import (
    AlreadyExistsError,
    AttributeEncodingError,
    DASFormatError,
    FormatError,
    InvalidNameError,
    PathEscapeError,
)
from npydir.store.names import validate_name


def cap_memory(headroom: int = 2 << 30) -> None:
    """Limit this process's address space to what it uses now plus ``headroom``.

    The machine is shared: an input that makes a parser allocate gigabytes (bug-log.md H10) must
    fail fast with MemoryError in the fuzzer, not push the machine into swap.
    """
    import re
    import resource

    try:
        status = open("/proc/self/status").read()
        vm = int(re.search(r"VmSize:\s+(\d+) kB", status).group(1)) * 1024
        resource.setrlimit(
            resource.RLIMIT_AS, (vm + headroom, resource.getrlimit(resource.RLIMIT_AS)[1])
        )
    except (OSError, AttributeError, ValueError):  # pragma: no cover - not Linux
        pass


class Violation(AssertionError):
    """A case ended in something other than success or the documented exception."""


@dataclass
class Context:
    """Per-worker scratch space: a store, an outside directory, a sentinel directory."""

    work: Path

    def __post_init__(self) -> None:
        self.store = self.work / "store.npy"
        self.outside = self.work / "outside"
        self.sentinels = self.work / "sentinels"
        self.scratch = self.work / "scratch"
        for d in (self.outside, self.sentinels, self.scratch):
            d.mkdir(parents=True, exist_ok=True)
        self.names_cases = 0
        self.reset_store()

    def reset_store(self) -> None:
        if self.store.exists():
            shutil.rmtree(self.store)
        with npydir.open(self.store, "w") as root:
            root.create_dataset("x", data=np.arange(6, dtype="<i4").reshape(3, 2))
        # a symbolic link that leaves the store: nothing may ever resolve through it
        os.symlink(self.outside, self.store / "escape")


def _kinds(ctx: Context) -> list[str]:
    """verify's problem kinds, without the store's deliberate link ``escape`` out of it
    (which verify rightly reports as ``path-escape``)."""
    report = npydir.verify(ctx.store)
    escape = ctx.store / "escape"
    return [p.kind for p in report.problems if not (p.kind == "path-escape" and p.file == escape)]


# ============================================================================ .npy headers

NPY_OK = (FormatError,)  # UnsupportedDTypeError is a FormatError


def case_npy(data: bytes, ctx: Context) -> str:
    """An ``.npy`` file: header reader, then the store's Array on it, then verify."""
    # 1. the reader on bytes
    try:
        hdr = npyfile.read_header(io.BytesIO(data), "<fuzz>")
    except NPY_OK as exc:
        hdr, first = None, type(exc).__name__
    else:
        first = "ok"
        if hdr.offset > len(data) or any(n < 0 for n in hdr.shape):
            raise Violation(f"header parsed past the data: offset {hdr.offset}, {len(data)} bytes")
    # 2. a store holding the file
    path = ctx.store / "x.npy"
    path.write_bytes(data)
    try:
        with npydir.open(ctx.store, "r") as root:
            if "x" not in root.array_keys():
                raise Violation("x.npy is not listed as an array")
            a = root["x"]
            shape, dtype = a.shape, a.dtype
            if hdr is None:
                raise Violation(
                    f"read_header refused ({first}) but the store read shape {shape} {dtype}"
                )
            if shape != hdr.shape or dtype != hdr.dtype:
                raise Violation(f"store says {shape} {dtype}, header {hdr.shape} {hdr.dtype}")
            values = a[...]
            raw = np.asarray(values).tobytes(order="F" if hdr.fortran_order else "C")
            expect = data[hdr.offset : hdr.offset + hdr.nbytes]
            if len(expect) < hdr.nbytes:
                raise Violation(
                    f"read {hdr.nbytes} bytes from a file with {len(data)} bytes "
                    f"(header {hdr.offset}): a read outside the file"
                )
            # zero-itemsize dtypes ('<U0', '|S0', 'V0') hold no bytes; numpy materialises them as
            # one-character zeros, which is not a read of anything
            if raw != expect and hdr.dtype.itemsize != 0:
                raise Violation("array bytes differ from the file's data bytes")
        outcome = "ok"
    except NPY_OK as exc:
        outcome = type(exc).__name__
        if "x.npy" not in str(exc) and "x" not in str(exc):
            raise Violation(f"error does not name the file: {exc}")
    # 3. verify never raises on a bad file, it reports
    kinds = set(_kinds(ctx))
    if not kinds <= {"bad-header", "truncated", "torn-append"}:
        raise Violation(f"verify reported unexpected kinds {kinds}")
    if outcome == "ok" and hdr is not None and "bad-header" in kinds:
        raise Violation("store reads the array but verify calls its header bad")
    return outcome


# ============================================================================ attrs.json

ATTRS_OK = (FormatError,)


def _plain_roundtrip(d: dict) -> None:
    """What decoding returns must be writable again (a reader may update and write it back)."""
    try:
        text = nattrs.encode_attrs(d)
        text.encode("utf-8")
    except (AttributeEncodingError, UnicodeEncodeError) as exc:
        raise Violation(
            f"decoded attributes cannot be written back: {type(exc).__name__}: {exc}"
        ) from None
    again = nattrs.decode_attrs(text)
    if sorted(again) != sorted(d):
        raise Violation(f"keys changed in a write-back: {sorted(d)} -> {sorted(again)}")


def case_attrs(data: bytes, ctx: Context) -> str:
    """A group attrs.json and an array .attrs.json: decoder, store attrs, verify."""
    try:
        decoded = nattrs.decode_attrs(data, "<fuzz>")
    except ATTRS_OK as exc:
        decoded, first = None, type(exc).__name__
    else:
        first = "ok"
        if not isinstance(decoded, dict):
            raise Violation(f"decode_attrs returned {type(decoded).__name__}")
        _plain_roundtrip(decoded)
    (ctx.store / "attrs.json").write_bytes(data)
    (ctx.store / "x.attrs.json").write_bytes(data)
    outcomes = []
    with npydir.open(ctx.store, "r") as root:
        for owner in (root, root["x"]):
            try:
                got = owner.attrs.asdict()
                outcomes.append("ok")
                if decoded is None:
                    raise Violation(
                        f"decode_attrs refused ({first}) but the store read {got!r:.200}"
                    )
                if sorted(got) != sorted(decoded):
                    raise Violation("store attrs differ from decode_attrs")
            except ATTRS_OK as exc:
                outcomes.append(type(exc).__name__)
                if "attrs.json" not in str(exc):
                    raise Violation(f"error does not name the attrs file: {exc}")
    if len(set(outcomes)) != 1 or outcomes[0] != first:
        raise Violation(f"decoder said {first}, store said {outcomes}")
    kinds = _kinds(ctx)
    expect_bad = first != "ok"
    if expect_bad != ("bad-attrs" in kinds):
        raise Violation(f"verify kinds {kinds} disagree with the decoder ({first})")
    return first


# ============================================================================ attrs.npy pickles

PICKLE_OK = (FormatError,)  # UnsafePickleError is a FormatError


def _check_plain(value, depth=0) -> None:
    if depth > 200:
        raise Violation("legacy attrs nested deeper than the reader allows")
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise Violation("an object array came out of attrs.npy")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(v, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_plain(v, depth + 1)
        return
    if value is None or isinstance(value, (str, bytes, int, float, complex, np.generic)):
        return
    raise Violation(f"a {type(value).__module__}.{type(value).__name__} came out of attrs.npy")


def case_pickle(data: bytes, ctx: Context) -> str:
    """A root attrs.npy: restricted unpickler, store attrs, verify; nothing may run."""
    for p in ctx.store.glob("attrs.json"):
        p.unlink()
    path = ctx.store / "attrs.npy"
    path.write_bytes(data)
    try:
        got = nattrs.read_legacy_attrs(path)
        first = "ok"
        if not isinstance(got, dict):
            raise Violation(f"read_legacy_attrs returned {type(got).__name__}")
        _check_plain(got)
    except PICKLE_OK as exc:
        first = type(exc).__name__
    with npydir.open(ctx.store, "r") as root:
        try:
            root.attrs.asdict()
            second = "ok"
        except PICKLE_OK as exc:
            second = type(exc).__name__
            if "attrs.npy" not in str(exc):
                raise Violation(f"error does not name attrs.npy: {exc}")
    if first != second:
        raise Violation(f"read_legacy_attrs said {first}, the store said {second}")
    kinds = _kinds(ctx)
    if (first != "ok") != ("bad-attrs" in kinds):
        raise Violation(f"verify kinds {kinds} disagree with the reader ({first})")
    if any(ctx.sentinels.iterdir()):
        raise Violation(f"a pickle ran code: sentinel files {sorted(os.listdir(ctx.sentinels))}")
    return first


# ============================================================================ annotation CSVs

ANN_OK = (DASFormatError,)


def case_annotations(data: bytes, ctx: Context) -> str:
    """An ``*_annotations.csv``: read, check invariants, write back, read back equal."""
    path = ctx.scratch / "rec_annotations.csv"
    path.write_bytes(data)
    try:
        ann = read_annotations(path)
    except ANN_OK as exc:
        if str(path) not in str(exc):
            raise Violation(f"error does not name the file: {exc}")
        return type(exc).__name__
    n = len(ann)
    names = list(ann.names)
    start = np.asarray(ann.start_seconds, dtype=float)
    stop = np.asarray(ann.stop_seconds, dtype=float)
    if not (len(names) == start.shape[0] == stop.shape[0] == n):
        raise Violation("columns of different lengths")
    normal = ~np.isnan(start)
    if np.isinf(start).any() or np.isinf(stop).any():
        raise Violation("an infinite time was accepted")
    if (np.isnan(stop) & normal).any() or (stop[normal] < start[normal]).any():
        raise Violation("an inconsistent row was accepted")
    if any((not isinstance(s, str)) or not s.strip() for s in names):
        raise Violation("an empty name was accepted")
    out = ctx.scratch / "back_annotations.csv"
    write_annotations(out, ann)
    again = read_annotations(out)
    if (
        list(again.names) != names
        or not np.array_equal(np.asarray(again.start_seconds, float), start, equal_nan=True)
        or not np.array_equal(np.asarray(again.stop_seconds, float), stop, equal_nan=True)
    ):
        raise Violation("annotations changed in a write/read round trip")
    return "ok"


# ============================================================================ DAS audio

AUDIO_OK = (DASFormatError,)


def case_audio(data: bytes, suffix: str, ctx: Context) -> str:
    """An audio file (.npz or .wav): ``das.load_audio`` reads it or says why not."""
    from npydir.das import load_audio

    path = ctx.scratch / f"rec.{suffix}"
    path.write_bytes(data)
    try:
        x, rate = load_audio(path)
    except AUDIO_OK as exc:
        if str(path) not in str(exc):
            raise Violation(f"error does not name the file: {exc}") from None
        return type(exc).__name__
    x = np.asarray(x)
    if x.ndim != 2 or x.dtype.kind not in "biuf":
        raise Violation(f"audio came back as {x.dtype} {x.shape}")
    if not (isinstance(rate, float) and math.isfinite(rate) and rate > 0):
        raise Violation(f"samplerate {rate!r}")
    x.sum()  # every sample readable
    return "ok"


# ============================================================================ names

NAME_OK = (InvalidNameError, PathEscapeError, AlreadyExistsError)


def case_names(key: str, portable: bool, ctx: Context) -> str:
    """validate_name, then create_group / create_dataset with the key; nothing leaves the store."""
    ctx.names_cases += 1
    if ctx.names_cases % 300 == 0:
        ctx.reset_store()
    try:
        validate_name(key, portable=portable)
        valid = True
    except InvalidNameError:
        valid = False
    root = npydir.open(ctx.store, "a", portable=portable)
    outcome = "ok"
    try:
        for how in ("group", "array"):
            try:
                if how == "group":
                    node = root.create_group(key)
                else:
                    node = root.create_dataset(key, data=np.zeros(1, "u1"))
            except NAME_OK as exc:
                outcome = type(exc).__name__
                if (
                    valid
                    and isinstance(exc, InvalidNameError)
                    and how == "group"
                    and "differs only in case" not in str(exc)
                ):
                    raise Violation(
                        f"validate_name accepts {key!r} but create_group refuses: {exc}"
                    )
                continue
            real = os.path.realpath(node.filename)
            if not real.startswith(os.path.realpath(ctx.store) + os.sep):
                raise Violation(f"{key!r} created {real}, outside the store")
            if how == "array" and not os.path.isfile(node.filename):
                raise Violation(f"{key!r}: array file {node.filename} missing")
            parts = [p for p in key.split("/") if p not in ("", ".")]
            if root[key] != node or node.path != "/".join(parts):
                raise Violation(
                    f"{key!r} does not read back as the node created (path {node.path!r})"
                )
            if how == "group" and not parts:
                raise Violation("created the root again")
            del root[key]
            if key in root:
                raise Violation(f"{key!r} still there after del")
    finally:
        root.close()
    if any(ctx.outside.iterdir()) or sorted(
        n for n in os.listdir(ctx.work) if not n.startswith(".")
    ) != sorted(["store.npy", "outside", "sentinels", "scratch"]):
        raise Violation(
            f"{key!r} wrote outside the store: {sorted(os.listdir(ctx.work))}, "
            f"{sorted(os.listdir(ctx.outside))}"
        )
    return outcome


def isnan(x) -> bool:  # pragma: no cover - helper for strategies
    return isinstance(x, float) and math.isnan(x)
