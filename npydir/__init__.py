"""npydir: training data for sequence models as a directory of memory-mapped ``.npy`` files.

The public API is re-exported here and nothing else; docs/design.md draws the layers behind it.
"""

from . import _moved, das, errors
from .conversion.backends import load, save
from .loader.batches import Batches
from .conversion.engine import convert
from .store.group import Array, Group
from .remote._open import open
from .store.integrity import repair, verify
from .kernel.windows import gather_windows

__version__ = "0.1.0"

_moved.install()

__all__ = [
    "Array",
    "Batches",
    "Group",
    "convert",
    "das",
    "errors",
    "gather_windows",
    "load",
    "open",
    "repair",
    "save",
    "verify",
]
