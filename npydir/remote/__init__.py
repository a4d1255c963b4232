"""Read-only npydir stores in object storage (``s3://``) and on web servers (``http(s)://``).

``npydir.open(url, storage_options=...)`` returns a :class:`RemoteGroup`; its arrays
(:class:`RemoteArray`) have the read API of local ones, and :func:`npydir.gather_windows`,
:class:`npydir.Batches` and the torch/keras adapters read their windows by byte ranges: one
request per run of touching windows, dozens in flight.  docs/remote.md is the user guide.

Needs the ``remote`` extra (obstore): ``pip install "npydir[remote]"``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import FormatError, StoreNotFoundError
from ..store.layout import MANIFEST, MANIFEST_FORMAT
from ._array import RemoteArray
from ._gather import gather_remote
from ._nodes import MAX_ASARRAY_BYTES, RemoteGroup
from ._open import open_remote
from ._url import is_remote_url

__all__ = [
    "MANIFEST",
    "MAX_ASARRAY_BYTES",
    "RemoteArray",
    "RemoteGroup",
    "gather_remote",
    "is_remote_url",
    "open_remote",
    "write_manifest",
]


def write_manifest(path: str | os.PathLike) -> Path:
    """Write ``<store>/.npydir-manifest.json``: the list of the store's files and sizes.

    An ``http(s)://`` server has no listing; with the manifest uploaded alongside, a remote
    store lists its groups and arrays as a local one does.  Rewrite it after changing the
    store.  S3 stores do not need it (the bucket listing is used).

    Returns
    -------
    Path
        The manifest written.
    """
    root = Path(path)
    if not root.is_dir():
        raise StoreNotFoundError(f"store {root} does not exist or is not a directory")
    files: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            if p.is_file():
                files[p.relative_to(root).as_posix()] = p.stat().st_size
    if not files:
        raise FormatError(f"{root}: no files to list (not an npydir store?)")
    target = root / MANIFEST
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps({"format": MANIFEST_FORMAT, "version": 1, "files": files}))
    os.replace(tmp, target)
    return target
