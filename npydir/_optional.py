"""Import optional dependencies where they are used, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

#: module name -> the npydir extra that installs it
EXTRAS = {
    "zarr": "zarr",
    "h5py": "hdf5",
    "scipy": "audio",
    "scipy.io.wavfile": "audio",
    "tqdm": "progress",
    "tqdm.auto": "progress",
    "matplotlib": "plot",
    "matplotlib.pyplot": "plot",
    "torch": "torch",
    "keras": "keras",
    "dask": "dask",
    "dask.distributed": "dask",
    "distributed": "dask",
    "obstore": "remote",
    "obstore.store": "remote",
    "obstore.exceptions": "remote",
}


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"h5py"``.
    purpose : str, optional
        What the module is needed for, shown in the error message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS.get(module, EXTRAS.get(module.split(".")[0], "all"))
        why = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"{module} is needed{why} but is not installed: pip install \"npydir[{extra}]\""
        ) from exc
