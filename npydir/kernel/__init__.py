"""The window kernel: random windows of ``[samples, channels]`` arrays into batches.

:mod:`._windows` (Cython over the C in ``src_cython/c/``) does the copying without the GIL;
:mod:`.windows` is its Python face, :func:`gather_windows`, which checks arguments and
resolves what is stored (npydir arrays, memory maps, plain arrays).  :mod:`._feistel` is the
permutation kernel the loader shuffles with.
"""
