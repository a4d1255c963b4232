"""Conversion between npydir stores, zarr (format 2 and 3), HDF5 and in-memory mappings.

:mod:`.engine` copies any source into any destination, resumably (:mod:`.journal`), with one
value policy (:mod:`.values`).  Every format is an adapter in :mod:`.adapters` implementing the
source/destination interfaces of :mod:`.protocol`; :mod:`.registry` maps file extensions and
backend names to adapters; :mod:`.backends` is ``load`` and ``save`` on top.  Imports run one
way: protocol <- adapters <- registry <- engine <- backends.
"""
