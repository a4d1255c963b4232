"""PyTorch access to windows: ``from npydir.torch import WindowDataset``.

The adapter lives in :mod:`npydir.loader.torch`; this module is its public name.
"""

from .loader.torch import WindowDataset

__all__ = ["WindowDataset"]
