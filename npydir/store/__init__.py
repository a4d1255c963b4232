"""The store: a directory of ``.npy`` files, groups as directories, attributes as JSON.

The bottom layer: it knows the on-disk format and nothing above it.  Modules, from the ground
up: :mod:`.fsutil` (descriptor-relative opens, atomic writes, fsync of directories, removal),
:mod:`.names` (key rules and on-disk suffixes), :mod:`.npyfile` (the ``.npy`` format, appends,
crash-safe writes), :mod:`.attrs` with :mod:`.attrs_dtype` and :mod:`.legacy_pickle` (the
attribute file), :mod:`.lock` (one writer), :mod:`.node`, :mod:`.array` and :mod:`.group`
(the h5py-like tree) and :mod:`.integrity` (verify and repair).
"""
