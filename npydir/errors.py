"""Exception hierarchy of npydir.

Every error raised on purpose by npydir derives from :class:`NpydirError` and also from the
builtin exception a user of numpy or h5py would expect (``KeyError`` for a missing member,
``ValueError`` for bad input, ``PermissionError`` for writes in read mode, ...), so existing
``except`` clauses keep working.  Messages name the store or file, the key, and what was
expected versus what was found.
"""

from __future__ import annotations


class NpydirError(Exception):
    """Base class of every error npydir raises on purpose."""


class InvalidNameError(NpydirError, ValueError):
    """A member name breaks the naming rules (docs/design.md, section 2)."""


class PathEscapeError(NpydirError, ValueError):
    """A key or path would resolve outside the store root."""


class ReadOnlyError(NpydirError, PermissionError):
    """A write was attempted on a store, group or array opened read-only."""


class StoreNotFoundError(NpydirError, FileNotFoundError):
    """The store, group or array does not exist."""


class MemberNotFoundError(NpydirError, KeyError):
    """A key names no member of the group."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""


class AlreadyExistsError(NpydirError, FileExistsError):
    """A member, or a store opened with mode 'w-'/'x', already exists."""


class FormatError(NpydirError, ValueError):
    """A file on disk is not what the format says it should be (bad header, bad JSON, ...)."""


class UnsafePickleError(FormatError):
    """A legacy DAS ``attrs.npy`` holds a pickle that would build anything but plain data."""


class AttributeEncodingError(NpydirError, TypeError):
    """An attribute value cannot be stored in the JSON encoding."""


class LockError(NpydirError, RuntimeError):
    """Another writer holds the store's lock."""


class IntegrityError(NpydirError, RuntimeError):
    """verify() found files whose size disagrees with their header (see repair())."""


class ConversionError(NpydirError, RuntimeError):
    """A value could not be converted between backends."""


class MissingDependencyError(NpydirError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""


class DASFormatError(FormatError):
    """An audio, annotation, definition file or DAS dataset is malformed."""


class StoreClosedError(NpydirError, ValueError):
    """An operation was attempted on a group or array whose store has been closed."""


class UnsupportedDTypeError(FormatError, TypeError):
    """A dtype npydir cannot store or map (object dtypes, or object fields of a structure)."""


class IncompatibleError(NpydirError, TypeError):
    """``require_dataset``/``require_group`` found an existing member that does not match."""


class UnknownBackendError(NpydirError, ValueError):
    """A path's extension names no backend npydir reads or writes (the message lists them)."""


class RemotePermissionError(NpydirError, PermissionError):
    """The object store refused a read (HTTP 401/403): credentials or bucket policy."""


class RemoteChangedError(NpydirError, OSError):
    """A remote object changed (ETag or size) between reading its header and its data."""


class RemoteUnavailableError(NpydirError, ConnectionError):
    """A remote store did not answer, or answered with errors, after every retry."""
