"""Read-only stores in object storage: :class:`RemoteGroup` and :class:`RemoteArray`.

The same on-disk format as a local store (docs/design.md, section 2), read over byte ranges:

* the **tree** comes from the bucket listing (``s3://``, one LIST per store), or for
  ``http(s)://`` (which has no listing) from the store's manifest ``.npydir-manifest.json``
  (:func:`write_manifest` writes it before upload).  An http store without a manifest still
  opens: members are then found by asking for ``<key>.npy`` / ``<key>/attrs.json``, and only
  listing a group is refused;
* an array's **header** is the first bytes of its ``.npy`` (one range request, which also gives
  the object's size and ETag); later reads of its data carry ``If-Match: <ETag>`` and check the
  size, so a replaced object is an error, never wrong data;
* **attrs** are ``attrs.json`` / ``<name>.attrs.json`` (and DAS's ``attrs.npy`` at a group,
  read by the same restricted unpickler as locally).

Headers, listing and attrs are fetched once per opened store and cached.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..store import npyfile
from ..store.attrs import decode_attrs, read_legacy_attrs
from ..errors import (
    FormatError,
    InvalidNameError,
    MemberNotFoundError,
    PathEscapeError,
    ReadOnlyError,
    StoreNotFoundError,
)
from ..store.node import _Node
from ..store.group import Group
from ..store.layout import (
    ARRAY_SUFFIX,
    FORMAT_FILE,
    GROUP_ATTRS,
    LEGACY_ATTRS,
    MANIFEST,
    MANIFEST_FORMAT,
)
from ..store.names import validate_name
from ._client import Client, Meta

if TYPE_CHECKING:
    from ._array import RemoteArray

#: ``np.asarray(remote_array)`` downloads at most this many bytes; larger is refused
MAX_ASARRAY_BYTES = 64 * 2**20
#: bytes fetched for a header; enough for any header numpy writes for up to ~60 dimensions
_HEADER_PROBE = 4096


class RemoteStore:
    """State shared by the groups and arrays of one opened remote store (all caches)."""

    def __init__(self, url: str, storage_options: dict | None) -> None:
        self.client = Client(url, storage_options)
        self.url = self.client.url
        self.scheme = self.url.split("://", 1)[0].lower()
        self._lock = threading.Lock()
        self._files: dict[str, int] | None = None
        self._listed = False
        self.headers: dict[tuple[str, ...], tuple[npyfile.Header, Meta]] = {}
        self.attrs: dict[str, dict[str, Any]] = {}
        self.closed = False
        self.mode = "r"  # what groups and arrays report (npydir.store.node._Node)
        self.readonly = True

    # ---------------------------------------------------------------- tree

    def files(self) -> dict[str, int] | None:
        """``{relative path: size}`` of every file of the store, or None when unknown
        (an http store without a manifest)."""
        with self._lock:
            if not self._listed:
                self._files = self._load_listing()
                self._listed = True
            return self._files

    def _load_listing(self) -> dict[str, int] | None:
        if self.scheme == "s3":
            files = self.client.list()
            if not files:
                raise StoreNotFoundError(
                    f"store {self.url} does not exist (no object under that prefix)"
                )
            return files
        try:
            _, data = self.client.read(MANIFEST)
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(data)
            if doc.get("format") != MANIFEST_FORMAT or not isinstance(doc.get("files"), dict):
                raise ValueError("not an npydir manifest")
            return {str(k): int(v) for k, v in doc["files"].items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise FormatError(
                f"{self.client.where(MANIFEST)}: expected {{'format': '{MANIFEST_FORMAT}', "
                f"'files': {{path: size}}}} ({exc})"
            ) from None

    def check_exists(self) -> None:
        """Raise StoreNotFoundError unless the store root answers (listing, manifest, or
        one of the root's own files)."""
        if self.files() is not None:
            return
        for name in (FORMAT_FILE, GROUP_ATTRS, LEGACY_ATTRS):
            try:
                self.client.read(name, 0, 1)
                return
            except FileNotFoundError:
                continue
        raise StoreNotFoundError(
            f"store {self.url} does not exist or is not an npydir store: none of "
            f"{MANIFEST}, {FORMAT_FILE}, {GROUP_ATTRS}, {LEGACY_ATTRS} is there"
        )

    def exists(self, rel: str) -> bool | None:
        """Whether the file ``rel`` exists (None: unknown without a listing)."""
        files = self.files()
        return None if files is None else rel in files

    def is_dir(self, rel: str) -> bool | None:
        files = self.files()
        if files is None:
            return None
        prefix = rel + "/"
        return any(f.startswith(prefix) for f in files)

    def entries(self, parts: tuple[str, ...], where: str) -> list[tuple[str, str]]:
        files = self.files()
        if files is None:
            raise NotImplementedError(
                f"group {where}: an http(s) store has no listing; write one with "
                f"npydir.remote.write_manifest(<local store>) before uploading, or look "
                f"members up by key"
            )
        prefix = "".join(p + "/" for p in parts)
        found: dict[str, str] = {}
        for f in files:
            if not f.startswith(prefix):
                continue
            rest = f[len(prefix) :]
            head, sep, _ = rest.partition("/")
            if head.startswith("."):
                continue
            try:
                if sep:
                    validate_name(head, portable=False)
                    found.setdefault(head, "group")
                elif head.endswith(ARRAY_SUFFIX):
                    stem = head[: -len(ARRAY_SUFFIX)]
                    validate_name(stem, portable=False)
                    found[stem] = "array"
            except ValueError:
                continue
        return sorted(found.items())

    # ---------------------------------------------------------------- files

    def header(self, parts: tuple[str, ...]) -> tuple[npyfile.Header, Meta]:
        with self._lock:
            cached = self.headers.get(parts)
        if cached is not None:
            return cached
        rel = "/".join(parts) + ARRAY_SUFFIX
        where = self.client.where(rel)
        meta = self.client.head(rel)
        _, data = self.client.read(rel, 0, min(meta.size, _HEADER_PROBE), meta)
        try:
            header = npyfile.read_header(_Buffer(data), where)
        except FormatError:
            if len(data) >= meta.size or len(data) >= npyfile.MAX_HEADER_SIZE:
                raise
            _, data = self.client.read(rel, 0, min(meta.size, npyfile.MAX_HEADER_SIZE), meta)
            header = npyfile.read_header(_Buffer(data), where)
        if header.fortran_order and len(header.shape) > 1:
            raise FormatError(f"{where}: Fortran-order arrays are not read remotely")
        if meta.size < header.expected_size:
            raise FormatError(
                f"{where}: the object has {meta.size} bytes but its header promises "
                f"{header.expected_size} (shape {header.shape}, {header.dtype})"
            )
        with self._lock:
            self.headers[parts] = (header, meta)
        return header, meta

    def json_attrs(self, rel: str, legacy: str | None = None) -> dict[str, Any]:
        with self._lock:
            cached = self.attrs.get(rel)
        if cached is not None:
            return cached
        data = self._file_or_none(rel)
        if data is not None:
            result = decode_attrs(data, self.client.where(rel))
        elif legacy is not None and (raw := self._file_or_none(legacy)) is not None:
            result = _legacy(raw, self.client.where(legacy))
        else:
            result = {}
        with self._lock:
            self.attrs[rel] = result
        return result

    def _file_or_none(self, rel: str) -> bytes | None:
        if self.exists(rel) is False:
            return None
        try:
            return self.client.read(rel)[1]
        except FileNotFoundError:
            return None


class _Buffer:
    """The read()/tell() of a file, over bytes (numpy's header reader wants a file)."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(bytes(data))
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n is None or n < 0 else self.pos + n
        out = bytes(self.data[self.pos : end])
        self.pos += len(out)
        return out

    def tell(self) -> int:
        return self.pos


def _legacy(raw: bytes, where: str) -> dict[str, Any]:
    """DAS's pickled ``attrs.npy``, through the local restricted reader (a temp copy)."""
    fd, tmp = tempfile.mkstemp(suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(raw)
        try:
            return read_legacy_attrs(tmp)
        except FormatError as exc:
            raise type(exc)(str(exc).replace(tmp, where)) from None
    finally:
        os.unlink(tmp)


class RemoteAttrs(Mapping):
    """The attributes of a remote group or array: a read-only mapping, fetched once."""

    def __init__(self, load: Callable[[], dict[str, Any]], owner: str) -> None:
        self._load = load
        self._owner = owner

    def __getitem__(self, key: str) -> Any:
        data = self._load()
        if key not in data:
            raise MemberNotFoundError(f"no attribute {key!r} in {self._owner}")
        return data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def asdict(self) -> dict[str, Any]:
        """A copy of all attributes as a plain dict."""
        return dict(self._load())

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise ReadOnlyError(
            f"cannot change the attributes of {self._owner}: remote stores are read-only"
        )

    __setitem__ = __delitem__ = update = clear = _refuse

    def __repr__(self) -> str:
        return f"<npydir remote attributes of {self._owner}: {self._load()!r}>"


class _RemoteNode(_Node):
    _store: RemoteStore  # type: ignore[assignment]
    _parts: tuple[str, ...]
    _rel: str
    #: RemoteGroup and RemoteArray by kind (see _Node): a group makes its arrays through it
    _kinds: ClassVar[dict[str, type[_Node]]] = {}

    @property
    def url(self) -> str:
        """URL of this group's directory or this array's ``.npy`` object."""
        return self._store.client.where(self._rel)

    # A remote group has Group's read API without being a Group (it cannot write).
    @property
    def file(self) -> RemoteGroup:  # type: ignore[override]
        return RemoteGroup(self._store, ())

    @property
    def parent(self) -> RemoteGroup:  # type: ignore[override]
        return RemoteGroup(self._store, self._parts[:-1])

    def _where(self) -> str:
        return f"{self.name!r} of store {self._store.url}"

    def _refuse(self, what: str) -> ReadOnlyError:
        return ReadOnlyError(f"cannot {what} in {self._where()}: remote stores are read-only")

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and other._store.url == self._store.url
            and other._parts == self._parts
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._store.url, self._parts))


class RemoteGroup(_RemoteNode, Mapping, kind="group"):
    """A group of a remote store: the read API of :class:`npydir.Group`.

    Members are looked up with ``g["train/x"]``, listed with ``list(g)``, ``g.arrays()``,
    ``g.members()``, ``g.tree()``; ``g.attrs`` is read-only.  Every write method raises
    :class:`~npydir.errors.ReadOnlyError`.
    """

    def __init__(self, store: RemoteStore, parts: tuple[str, ...]) -> None:
        self._store = store
        self._parts = tuple(parts)
        self._rel = "/".join(parts)

    def __repr__(self) -> str:
        return f"<npydir.RemoteGroup {self.name!r} in {self._store.url!r} (mode 'r')>"

    def __reduce__(self) -> tuple:
        return (_reopen, (self._store.url, self._store.client.storage_options, self.path, "group"))

    def __enter__(self) -> RemoteGroup:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __bool__(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release (no lock, no open files); kept for the local API."""
        self._store.closed = True

    @property
    def filename(self) -> str:
        return self.url

    @property
    def attrs(self) -> RemoteAttrs:
        rel = "/".join(self._parts + (GROUP_ATTRS,))
        legacy = "/".join(self._parts + (LEGACY_ATTRS,))
        return RemoteAttrs(lambda: self._store.json_attrs(rel, legacy), f"group {self._where()}")

    # ---------------------------------------------------------------- lookup

    # key -> validated parts, as locally (Group's method, on a group that is not a Group)
    _resolve: ClassVar[Callable[[Any, Any], tuple[str, ...]]] = Group._resolve

    def _kind(self, parts: tuple[str, ...]) -> str | None:
        if not parts:
            return "group"
        rel = "/".join(parts)
        exists = self._store.exists(rel + ARRAY_SUFFIX)
        if exists is None:  # no listing: ask the server
            try:
                self._store.header(parts)
                return "array"
            except FileNotFoundError:
                pass
            if self._store._file_or_none(rel + "/" + GROUP_ATTRS) is not None:
                return "group"
            return None
        if exists:
            return "array"
        return "group" if self._store.is_dir(rel) else None

    def _node(self, parts: tuple[str, ...], kind: str) -> RemoteGroup | RemoteArray:
        return self._kinds[kind](self._store, parts)  # type: ignore[return-value, call-arg]

    def __getitem__(self, key: str) -> Any:  # a RemoteGroup or a RemoteArray, as Group's
        parts = self._resolve(key)
        kind = self._kind(parts)
        if kind is None:
            raise MemberNotFoundError(f"no member {key!r} in group {self._where()}")
        return self._node(parts, kind)

    def __contains__(self, key: object) -> bool:
        try:
            return self._kind(self._resolve(key)) is not None
        except (InvalidNameError, PathEscapeError):
            return False

    # ---------------------------------------------------------------- listing

    def _entries(self) -> list[tuple[str, str]]:
        return self._store.entries(self._parts, self._where())

    # Group's listing and walking use only _entries, _node and [] (defined above)
    get = Group.get
    __iter__ = Group.__iter__
    __len__ = Group.__len__
    keys = Group.keys  # type: ignore[assignment]  # a list, as Group.keys
    group_keys = Group.group_keys
    array_keys = Group.array_keys
    groups = Group.groups
    arrays = Group.arrays
    members = Group.members
    visit = Group.visit
    visititems = Group.visititems
    tree = Group.tree

    # ---------------------------------------------------------------- writes: refused

    def create_group(self, name: str) -> Any:
        raise self._refuse(f"create group {name!r}")

    def require_group(self, name: str) -> Any:
        raise self._refuse(f"create group {name!r}")

    def create_dataset(self, name: str, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse(f"create array {name!r}")

    create_array = require_dataset = create_dataset

    def __setitem__(self, key: str, value: Any) -> None:
        raise self._refuse(f"write {key!r}")

    def __delitem__(self, key: str) -> None:
        raise self._refuse(f"delete {key!r}")

    def move(self, source: str, dest: str) -> None:
        raise self._refuse(f"move {source!r}")


def _reopen(url: str, storage_options: dict, path: str, kind: str) -> Any:
    """Unpickle a remote group/array: a fresh store object, nothing fetched until used."""
    store = RemoteStore(url, storage_options)
    parts = tuple(p for p in path.split("/") if p)
    return _RemoteNode._kinds[kind](store, parts)  # type: ignore[call-arg]
