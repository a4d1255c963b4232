"""Member names and path-like keys (docs/design.md, section 2; :mod:`npydir.store.layout`
names the files they become).

A *name* is one path component: 1-255 bytes of UTF-8; no ``/``, ``\\``, NUL or control
characters; not ``.`` or ``..``; not starting with ``.``; not ending in ``.npy`` or ``.json``;
not ``attrs``.  With ``portable=True`` (the default) names must also be valid on Windows and
case-insensitive file systems: no ``<>:"|?*``, no device names (``CON``, ``NUL``, ``COM1``, ...,
also with an extension), no trailing space or dot, and no sibling that differs only in case
or Unicode normalization.

A *key* is a name or a ``/``-separated path of names (``"train/x"``).  A key starting with ``/``
is absolute *within the store* (h5py semantics: resolved from the store root), so it can never
name a file outside the store.  ``.`` components are ignored, empty components collapse; ``..``
is refused (:class:`~npydir.errors.PathEscapeError`).  :func:`check_inside` additionally resolves
symbolic links and refuses any path whose real location is outside the root.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from ..errors import InvalidNameError, PathEscapeError
from .layout import (
    ARRAY_SUFFIX,
    ATTRS_SUFFIX,
    GROUP_ATTRS,
    LEGACY_ATTRS,
    RESERVED_NAME,
    RESERVED_SUFFIXES,
)

__all__ = [
    "ARRAY_SUFFIX",
    "ATTRS_SUFFIX",
    "DEVICE_NAMES",
    "check_inside",
    "check_sibling_case",
    "is_device_name",
    "split_key",
    "validate_name",
]

MAX_NAME_BYTES = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NON_PORTABLE = set('<>:"|?*')
#: Windows device names: a file of that name (in any case, with any extension) is the device
DEVICE_NAMES = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{p}{i}" for p in ("COM", "LPT") for i in list("123456789") + ["¹", "²", "³"]
})


def is_device_name(name: str) -> bool:
    """Whether Windows takes ``name`` for a device: ``CON``, ``nul.txt``, ``COM1 .npy``, ...

    What counts is the part before the first dot, trailing blanks dropped, in any case.
    """
    return name.split(".")[0].rstrip(" ").upper() in DEVICE_NAMES


def validate_name(name: object, *, portable: bool = True, array: bool = False) -> str:
    """Return ``name`` if it is a valid member name, else raise :class:`InvalidNameError`.

    Parameters
    ----------
    name : str
        One path component.
    portable : bool
        Also apply the Windows / case-insensitive rules.
    array : bool
        The name is for an array, whose files ``<name>.npy`` and ``<name>.attrs.json`` must
        fit in 255 bytes too.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"member names are str, got {type(name).__name__} {name!r}")

    def bad(rule: str) -> InvalidNameError:
        return InvalidNameError(f"invalid name {name!r}: {rule}")

    if name in (".", ".."):
        raise bad("'.' and '..' are not names")
    if not name:
        raise bad("empty name")
    try:
        nbytes = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise bad("not encodable as UTF-8 (lone surrogate)") from None
    if nbytes > MAX_NAME_BYTES:
        raise bad(f"longer than {MAX_NAME_BYTES} bytes of UTF-8 ({nbytes})")
    if array and nbytes + len(ATTRS_SUFFIX) > MAX_NAME_BYTES:
        raise bad(
            f"an array's attrs file '<name>{ATTRS_SUFFIX}' must fit in {MAX_NAME_BYTES} bytes "
            f"(name has {nbytes}, at most {MAX_NAME_BYTES - len(ATTRS_SUFFIX)})"
        )
    if "/" in name or "\\" in name:
        raise bad("contains a path separator ('/' or '\\')")
    if _CONTROL.search(name):
        raise bad("contains NUL or a control character")
    if name.startswith("."):
        raise bad("starts with '.' (reserved for the store's own files)")
    if name.lower().endswith(RESERVED_SUFFIXES):
        raise bad("ends in '.npy' or '.json' (reserved for array and attribute files)")
    if name == RESERVED_NAME:
        raise bad(
            f"{RESERVED_NAME!r} is reserved ({GROUP_ATTRS} / {LEGACY_ATTRS} hold group attributes)"
        )
    if portable:
        found = sorted(set(name) & _NON_PORTABLE)
        if found:
            raise bad(
                f"contains {''.join(found)!r}, not allowed on Windows (portable=False allows it)"
            )
        if is_device_name(name):
            raise bad("is a Windows device name (portable=False allows it)")
        if name.endswith((" ", ".")):
            raise bad("ends in a space or '.', which Windows drops (portable=False allows it)")
    return name


def split_key(key: object) -> tuple[tuple[str, ...], bool]:
    """Split a key into its components.

    Returns
    -------
    (parts, absolute)
        ``parts`` without empty or ``.`` components; ``absolute`` if the key starts with ``/``.

    Raises
    ------
    InvalidNameError
        ``key`` is not a str (or bytes/PathLike decodable to one).
    PathEscapeError
        A component is ``..``.
    """
    if isinstance(key, bytes):
        try:
            key = key.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidNameError(f"key {key!r} is not UTF-8") from None
    elif isinstance(key, os.PathLike):
        key = os.fspath(key)
    if not isinstance(key, str):
        raise InvalidNameError(
            f"keys are str paths like 'train/x', got {type(key).__name__} {key!r}"
        )
    absolute = key.startswith("/")
    parts = []
    for part in key.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise PathEscapeError(
                f"key {key!r}: '..' is not allowed (nothing may resolve outside its group's tree)"
            )
        parts.append(part)
    return tuple(parts), absolute


def check_inside(root: str, path: str | os.PathLike, key: str = "") -> None:
    """Raise :class:`PathEscapeError` if ``path`` (symlinks resolved) is not ``root`` or below.

    ``root`` must already be a real path (``os.path.realpath``).
    """
    real = os.path.realpath(path)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        what = f"key {key!r}" if key else str(path)
        raise PathEscapeError(
            f"{what} resolves to {real}, outside the store {root} (symbolic link?)"
        )


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def check_sibling_case(directory: Path, name: str, existing: Iterable[str]) -> None:
    """Refuse ``name`` if a sibling differs from it only in case or Unicode normalization.

    Both clash on the file systems of Windows and macOS (``"Train"`` / ``"train"``, and ``"é"``
    written precomposed / decomposed).
    """
    folded = _fold(name)
    for other in existing:
        if other != name and _fold(other) == folded:
            raise InvalidNameError(
                f"invalid name {name!r}: a sibling {other!r} in {directory} differs only in "
                "case or Unicode normalization, which clashes on case-insensitive or "
                "normalizing file systems (portable=False allows it)"
            )
