"""Old module paths of the flat layout, kept importable so pickles and imports keep working.

Until the subpackages, every module lived directly in ``npydir/``.  Pickles name the module of
what they rebuild (a pickled :class:`~npydir.Array` calls ``npydir.group._reopen``), and user
code may import ``npydir.batches`` or ``npydir.group``.  A finder on :data:`sys.meta_path`
resolves each old name to the module's new home, the same module object, only when something
imports it: ``import npydir`` imports nothing more.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

#: old flat name -> where the module lives now.  ``npydir.convert`` is absent: that name is the
#: function, which importing a module of that name would shadow; ``npydir.torch`` and
#: ``npydir.keras`` are real modules.
MOVED = {
    "npydir._adapters": "npydir.loader.adapters",
    "npydir._attrs_dtype": "npydir.store.attrs_dtype",
    "npydir._attrs_pickle": "npydir.store.legacy_pickle",
    "npydir._convert_base": "npydir.conversion.protocol",
    "npydir._convert_files": "npydir.conversion.files",
    "npydir._convert_h5direct": "npydir.conversion.adapters.hdf5_direct",
    "npydir._convert_hdf5": "npydir.conversion.adapters.hdf5",
    "npydir._convert_interrupt": "npydir.conversion.interrupt",
    "npydir._convert_journal": "npydir.conversion.journal",
    "npydir._convert_mapping": "npydir.conversion.adapters.mapping",
    "npydir._convert_npydir": "npydir.conversion.adapters.npydir_store",
    "npydir._convert_values": "npydir.conversion.values",
    "npydir._convert_writeback": "npydir.conversion.writeback",
    "npydir._convert_zarr": "npydir.conversion.adapters.zarr_store",
    "npydir._feistel": "npydir.kernel._feistel",
    "npydir._fsutil": "npydir.store.fsutil",
    "npydir._node": "npydir.store.node",
    "npydir._permutation": "npydir.loader.permutation",
    "npydir._windows": "npydir.kernel._windows",
    "npydir._zarr_compat": "npydir.conversion.adapters.zarr_compat",
    "npydir.array": "npydir.store.array",
    "npydir.attrs": "npydir.store.attrs",
    "npydir.backends": "npydir.conversion.backends",
    "npydir.batches": "npydir.loader.batches",
    "npydir.bench": "npydir.tools.bench",
    "npydir.cli": "npydir.tools.cli",
    "npydir.demo": "npydir.tools.demo",
    "npydir.group": "npydir.store.group",
    "npydir.integrity": "npydir.store.integrity",
    "npydir.lock": "npydir.store.lock",
    "npydir.names": "npydir.store.names",
    "npydir.npyfile": "npydir.store.npyfile",
    "npydir.windows": "npydir.kernel.windows",
}


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module at its new path (imported if it is not yet)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(self.target)
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run (the module ran under its new name); only undo the import system's
        one change to it, its ``__spec__``, which must keep naming the module's real home."""
        module.__spec__ = self._own_spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    """Put the finder first on :data:`sys.meta_path`, once (a reload of npydir must not add
    another).  First, because no other finder may answer for these names: an editable install
    of an older checkout would find its own ``npydir/group.py`` and run a second copy."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
