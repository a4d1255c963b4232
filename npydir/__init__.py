"""npydir: training data for sequence models as a directory of memory-mapped ``.npy`` files.

The public API (DESIGN.md section 3) is re-exported here and nothing else.
"""

from . import das, errors
from .backends import load, save
from .batches import Batches
from .convert import convert
from .group import Array, Group, open
from .integrity import repair, verify
from .windows import gather_windows

__version__ = "0.1.0"

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
