"""The on-disk layout of an npydir store: every file name npydir writes or recognizes.

A store is a directory, by DAS's convention named ``*.npy`` (:data:`STORE_SUFFIX`); every name
below is defined here once and imported from here.

What a store directory holds
----------------------------
``.npydir.json`` (:data:`FORMAT_FILE`)
    The format marker, at the store's root only: the JSON object
    ``{"format": "npydir", "version": 1}`` (:data:`FORMAT_NAME`, :data:`FORMAT_VERSION`).  Every
    store npydir has opened for writing holds it: it is written atomically, under the writer
    lock, before anything else.  A directory without it is a store only if it holds DAS's root
    ``attrs.npy`` (a store DAS wrote) or nothing but an interrupted first open's files.

``.npydir.lock`` (:data:`LOCK_NAME`)
    The writer lock file, at the root: a writer holds an exclusive ``flock`` on it (and on the
    directory) and records ``{"pid", "host", "time"}`` in it; closing empties it, and it stays.

``<name>/`` (a group)
    A directory per group, nested as the groups are.

``<name>.npy`` (:data:`ARRAY_SUFFIX`; an array)
    An NPY file (numpy's format, version 1.0 to 3.0) per array, in its group's directory; its
    header is padded so ``shape[0]`` can grow in place (:mod:`npydir.store.npyfile`).

``attrs.json`` (:data:`GROUP_ATTRS`) and ``<name>.attrs.json`` (:data:`ATTRS_SUFFIX`)
    A group's attributes, in its directory, and an array's, beside its ``.npy``: one JSON
    object (:mod:`npydir.store.attrs` is its encoding).  Absent while there are none.

``attrs.npy`` (:data:`LEGACY_ATTRS`)
    DAS's root attributes, ``np.save`` of a dict (a pickle; read without unpickling).  Kept
    in step with the root's ``attrs.json`` where it exists or ``das_compat`` asks for it.

``.<name>.<8 hex digits>.npydir-tmp`` (:data:`TEMP_SUFFIX`, :func:`is_temp_name`)
    A whole-file write in progress (array data, attrs, the marker): written, fsynced, then
    renamed over ``<name>``.  One left behind was a write killed before its rename:
    :func:`npydir.verify` reports it, :func:`npydir.repair` removes it.

Every other name starting with ``.`` is not a member: listings skip it.  Member names may not
start with ``.``, end in :data:`RESERVED_SUFFIXES` or be :data:`RESERVED_NAME`, so no member
can take one of the names above (:mod:`npydir.store.names` has the rules).

Beside a store
--------------
``.npydir-manifest.json`` (:data:`MANIFEST`)
    Not written by the store: :func:`npydir.remote.write_manifest` lists a store's files (for
    web servers, which have no listing) as ``{"format": "npydir-manifest", "version": 1,
    "files": {path: size}}``.

``.<DST>.partial``, ``.<DST>.partial.journal``, ``.<DST>.replaced``
    A conversion into ``DST`` (:func:`npydir.convert`) builds its result at the first name,
    journals finished blocks in the second, and, where two names cannot be swapped in one step,
    moves the old ``DST`` to the third while replacing it (:data:`PARTIAL_SUFFIX`,
    :data:`JOURNAL_SUFFIX`, :data:`REPLACED_SUFFIX`).
"""

from __future__ import annotations

__all__ = [
    "ARRAY_SUFFIX",
    "ATTRS_SUFFIX",
    "FORMAT_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "GROUP_ATTRS",
    "JOURNAL_SUFFIX",
    "JSON_SUFFIX",
    "LEGACY_ATTRS",
    "LOCK_NAME",
    "MANIFEST",
    "MANIFEST_FORMAT",
    "PARTIAL_SUFFIX",
    "REPLACED_SUFFIX",
    "RESERVED_NAME",
    "RESERVED_SUFFIXES",
    "STORE_SUFFIX",
    "TEMP_SUFFIX",
    "is_temp_name",
]

#: a store directory's name ends in this by DAS's convention (``load``/``convert`` go by it)
STORE_SUFFIX = ".npy"
#: the format marker at a store's root
FORMAT_FILE = ".npydir.json"
#: its ``"format"`` value
FORMAT_NAME = "npydir"
#: the newest store format this npydir reads and the one it writes
FORMAT_VERSION = 1
#: the writer lock file at a store's root
LOCK_NAME = ".npydir.lock"
#: an array's file: ``<name>.npy``
ARRAY_SUFFIX = ".npy"
#: an array's attributes: ``<name>.attrs.json`` beside its ``.npy``
ATTRS_SUFFIX = ".attrs.json"
#: a group's attributes, in its directory
GROUP_ATTRS = "attrs.json"
#: DAS's pickled root attributes
LEGACY_ATTRS = "attrs.npy"
#: the temp file of a whole-file write: ``.<name>.<8 hex digits>.npydir-tmp``
TEMP_SUFFIX = ".npydir-tmp"
#: what every attrs file (and the marker) ends in
JSON_SUFFIX = ".json"
#: member names may not end in these (case-insensitively): the store's own files do
RESERVED_SUFFIXES = (ARRAY_SUFFIX, JSON_SUFFIX)
#: the member name a group's attribute files would clash with
RESERVED_NAME = "attrs"
#: the file list of a store served over http(s)
MANIFEST = ".npydir-manifest.json"
MANIFEST_FORMAT = "npydir-manifest"
#: a conversion into DST: ``.DST.partial``, ``.DST.partial.journal``, ``.DST.replaced``
PARTIAL_SUFFIX = ".partial"
JOURNAL_SUFFIX = ".partial.journal"
REPLACED_SUFFIX = ".replaced"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is the temp file of a whole-file write (see :data:`TEMP_SUFFIX`)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)
