# cython: language_level=3, boundscheck=False, wraparound=False
"""Batch memory for :class:`npydir.Batches`' prefetching iterators, reused without any
reference-count reading.

A prefetching loader keeps a few batches alive at once (the one being used, the ones made
ahead), so a freshly allocated multi-MB batch cannot reuse the block just freed: ``malloc``
hands out memory that the kernel must first fault in page by page, which costs more than
the copy.  A :class:`BlockPool` therefore hands out arrays over blocks it keeps, and a
block goes back to the pool exactly when nothing can reach the array's data any more:

* each array the pool makes is a new ndarray whose ``base`` is a new :class:`Lease`,
  the only object that holds the block while it is in use;
* a lease is not an ndarray, so numpy never skips it when it sets the base of a view:
  ``batch[0]``, ``batch.reshape(...)``, ``memoryview(batch)``, ``torch.from_numpy(batch)``
  all hold the batch, the batch holds the lease (and so does anyone holding
  ``batch.base``);
* the lease returns the block from its deallocator, which runs when the last of those is
  gone.  Nothing here depends on how CPython counts references, only on when it frees.

Only a bare address (``batch.ctypes.data`` kept as an integer) escapes, as it already
dangles in plain numpy once an array is freed.

The free list is changed only by C code that calls no Python code while it holds an item,
so under the GIL no two threads (a copier taking a block, any thread dropping a batch)
ever see it half-changed, and no lock is needed (a lock could deadlock: a lease can die
inside a garbage collection that runs while the pool is in use).
"""

cimport cython
cimport numpy as cnp
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF

import numpy as np

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    # steals the reference to ``descr``
    object PyArray_NewFromDescr(PyTypeObject* subtype, cnp.PyArray_Descr* descr, int nd,
                                cnp.npy_intp* dims, cnp.npy_intp* strides, void* data,
                                int flags, PyObject* obj)

#: block addresses are multiples of this (a cache line; streaming stores need 16)
cdef enum:
    _ALIGN = 64


@cython.final
@cython.no_gc
cdef class _Block:
    """``size`` bytes at ``data``, inside ``memory``: a numpy uint8 array, so a block comes
    from numpy's allocator (with its large-page hint for big blocks)."""

    cdef object memory
    cdef char* data
    cdef Py_ssize_t size


cdef _Block _new_block(Py_ssize_t size):
    cdef _Block block = _Block.__new__(_Block)
    cdef cnp.ndarray memory = np.empty(size + _ALIGN, dtype=np.uint8)
    cdef size_t address = <size_t>cnp.PyArray_DATA(memory)
    block.memory = memory
    block.data = <char*>cnp.PyArray_DATA(memory) + (_ALIGN - address % _ALIGN) % _ALIGN
    block.size = size
    return block


@cython.final
@cython.no_gc
cdef class Lease:
    """The ``base`` of an array a :class:`BlockPool` made: holds its block while anything
    can reach the array, and gives the block back to the pool when it is freed.

    Neither the block nor the pool ever refers to a lease, so a lease is never part of a
    reference cycle (hence no cyclic-GC support).
    """

    cdef _Block block
    cdef BlockPool pool

    @property
    def nbytes(self) -> int:
        """Bytes of the block it holds."""
        return self.block.size if self.block is not None else 0

    def __dealloc__(self):
        if self.pool is not None and self.block is not None:
            self.pool._give_back(self.block)

    def __reduce__(self):
        raise TypeError(
            "npydir.loader._buffers.Lease (the base of a batch array) cannot be pickled; "
            "pickle the batch array itself"
        )


@cython.final
cdef class BlockPool:
    """Arrays over reused blocks, each block back in the pool once its array is garbage.

    Parameters
    ----------
    capacity : int
        Idle blocks kept for reuse.  Blocks in use are never counted: a consumer holding on
        to every batch costs no more memory than fresh arrays would, and once it lets go
        the pool keeps at most ``capacity`` of them.
    """

    cdef list _free
    cdef readonly Py_ssize_t capacity
    #: blocks allocated so far (reused ones are not counted again)
    cdef readonly Py_ssize_t allocated

    def __cinit__(self, capacity):
        self._free = []
        self.capacity = max(0, int(capacity))
        self.allocated = 0

    @property
    def idle(self) -> int:
        """Blocks in the pool waiting to be reused."""
        return len(self._free)

    def close(self) -> None:
        """Free the idle blocks and keep none from now on (arrays still in use stay valid;
        their blocks are freed with them)."""
        self.capacity = 0
        self._free = []

    cdef void _give_back(self, _Block block) noexcept:
        if len(self._free) < self.capacity:
            self._free.append(block)

    cdef _Block _take(self, Py_ssize_t size):
        """An idle block of at least ``size`` bytes, or None.  C only between reading the
        free list and popping from it (see the module docstring)."""
        cdef list free = self._free
        cdef Py_ssize_t k, n = len(free)
        cdef _Block block
        for k in range(n):
            block = <_Block>free[k]
            if block.size >= size:
                return <_Block>free.pop(k)
        if n:
            # all idle blocks are too small (the shape changed): drop one, so the pool
            # fills with blocks that fit instead of keeping ones nobody can use
            free.pop(0)
        return None

    def empty(self, tuple shape, cnp.dtype dtype) -> cnp.ndarray:
        """A C-contiguous, writable array of ``shape`` and ``dtype`` over a block nobody else
        can reach (contents undefined, like ``numpy.empty``).

        Its ``base`` is a :class:`Lease`; it owns no data (``flags.owndata`` is False).
        """
        cdef int nd = len(shape)
        cdef cnp.npy_intp dims[cnp.NPY_MAXDIMS]
        cdef Py_ssize_t size = dtype.itemsize
        cdef int k
        if nd > cnp.NPY_MAXDIMS:
            raise ValueError(f"BlockPool.empty: {nd} dimensions, numpy allows {cnp.NPY_MAXDIMS}")
        for k in range(nd):
            dims[k] = shape[k]
            if dims[k] < 0:
                raise ValueError(f"BlockPool.empty: negative dimension in {shape}")
            size *= dims[k]
        cdef _Block block = self._take(size)
        if block is None:
            block = _new_block(size)
            self.allocated += 1
        cdef Lease lease = Lease.__new__(Lease)
        lease.block = block
        lease.pool = self  # from here on the block goes back when the lease dies
        Py_INCREF(dtype)
        cdef cnp.ndarray arr = PyArray_NewFromDescr(
            <PyTypeObject*>np.ndarray, <cnp.PyArray_Descr*>dtype, nd, dims, NULL, block.data,
            cnp.NPY_ARRAY_CARRAY, NULL,
        )
        cnp.set_array_base(arr, lease)
        return arr
