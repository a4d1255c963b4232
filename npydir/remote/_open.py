"""``npydir.open``: a local store (:mod:`npydir.store.group`) or a remote one, by its path.

The store layer opens directories and knows nothing of URLs; this layer, above it, sends
``s3://`` and ``http(s)://`` URLs to :func:`~npydir.remote.open_remote` and everything else to
the store.
"""

from __future__ import annotations

import os
from typing import cast

from ..errors import ReadOnlyError
from ..store.group import MODES, Group
from ..store.group import open as open_local
from ._nodes import RemoteGroup, RemoteStore
from ._url import is_remote_url

__all__ = ["open", "open_remote"]


def open(
    path: str | os.PathLike,
    mode: str = "r",
    *,
    das_compat: bool = False,
    portable: bool = True,
    sync: bool = True,
    storage_options: dict | None = None,
) -> Group:
    """Open a store and return its root :class:`~npydir.Group`.

    Parameters
    ----------
    path : str or path
        The store directory (by DAS convention named ``*.npy``), or the URL of a read-only
        store in object storage or on a web server (``s3://...``, ``http(s)://...``).
    mode : {"r", "r+", "a", "w", "w-", "x"}
        As h5py (see :mod:`npydir.store.group`); URLs take ``"r"`` only.
    das_compat : bool
        Also write DAS's pickled ``attrs.npy`` whenever the root attributes change, so DAS's own
        loader reads the attributes.  Stores that already have an ``attrs.npy`` keep it in sync
        regardless.
    portable : bool
        Refuse names that do not work on Windows or case-insensitive file systems.
    sync : bool
        fsync every write (the default).  ``False`` keeps the order of writes and the atomic
        renames -- a killed process still leaves a consistent store -- but not durability across
        a power loss; an fsync costs milliseconds on many disks (README.md, "Crash safety", has
        numbers).
    storage_options : dict, optional
        For ``s3://`` and ``http(s)://`` URLs only (read-only stores in object storage,
        :mod:`npydir.remote`): credentials and endpoint in fsspec/s3fs's names.

    Returns
    -------
    Group
        The root group (a :class:`~npydir.remote.RemoteGroup` for a URL); use it as a context
        manager or call ``close()``.

    Examples
    --------
    >>> with npydir.open("data.npy", "w") as root:             # doctest: +SKIP
    ...     x = root.create_dataset("train/x", data=np.zeros((100, 2), "f4"))
    ...     root.attrs["samplerate_x_Hz"] = 10_000
    """
    if is_remote_url(path) and mode in MODES:  # an invalid mode: the store's error names it
        # Typed as Group: a RemoteGroup has Group's reading API (the same methods), and user
        # code should type-check alike whether the path is a directory or a URL.
        return cast(Group, open_remote(str(path), mode, storage_options))
    return open_local(
        path, mode, das_compat=das_compat, portable=portable, sync=sync,
        storage_options=storage_options,
    )


def open_remote(url: str, mode: str = "r", storage_options: dict | None = None) -> RemoteGroup:
    """Open the store at ``url`` read-only and return its root group.

    Parameters
    ----------
    url : str
        ``s3://bucket/path/ds.npy`` or ``http(s)://host/path/ds.npy``.
    mode : {"r"}
        Remote stores are read-only; any other mode raises :class:`ReadOnlyError`.
    storage_options : dict, optional
        fsspec/s3fs names (``key``, ``secret``, ``token``, ``anon``, ``endpoint_url``,
        ``client_kwargs``) and npydir's transfer settings; see docs/remote.md.

    Raises
    ------
    ReadOnlyError
        ``mode`` is not ``"r"``.
    FileNotFoundError
        Nothing is stored at ``url``.
    PermissionError
        The server refused the credentials (HTTP 401/403).
    """
    if mode != "r":
        raise ReadOnlyError(
            f"cannot open {url} with mode {mode!r}: remote stores are read-only (mode 'r'); "
            f"write a local store and upload its files (aws s3 sync, rclone)"
        )
    store = RemoteStore(url, storage_options)
    store.check_exists()
    return RemoteGroup(store, ())
