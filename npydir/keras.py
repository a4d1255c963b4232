"""Keras 3 access to windows: ``from npydir.keras import WindowDataset``.

The adapter lives in :mod:`npydir.loader.keras`; this module is its public name.
"""

from .loader.keras import WindowDataset

__all__ = ["WindowDataset"]
