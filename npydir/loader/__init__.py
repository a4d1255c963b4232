"""The loader: :class:`Batches` of windows for training loops, and the framework adapters.

:mod:`.batches` draws windows in a seeded order (:mod:`.permutation`) into batch memory from a
block pool (:mod:`._buffers`) with the kernel's threads; :mod:`.torch` and :mod:`.keras`
present it to PyTorch and Keras 3 (public as :mod:`npydir.torch` and :mod:`npydir.keras`).
"""
