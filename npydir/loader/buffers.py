"""Recycle batch arrays that the consumer of a :class:`npydir.Batches` iterator has dropped.

A prefetching loader keeps a few batches alive at once (the one being used, the ones made
ahead), so a freshly allocated batch cannot reuse the block just freed: for batches of a few
MB, ``malloc`` hands out memory that the kernel must first fault in page by page (and zero),
which was measured to cost more than the copy itself.  A :class:`Recycler` keeps the arrays
it handed out and gives one back for a new batch as soon as nothing but the recycler refers
to it any more: written again, it is cache-warm and already faulted in.

"Nothing else refers to it" is read from the reference count, which counts every holder
that can reach the data through Python: the consumer's variables and containers, views
(``arr[0]``, ``arr.reshape(...)``: their ``base``), buffer exports (``memoryview``, a
``torch.from_numpy`` tensor, which keeps the array alive) — so an array that anyone can
still read is never written again.  Only a bare address (``arr.ctypes.data`` kept as an
integer) or a weak reference escapes the count; both already dangle in plain numpy once
the array is freed.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

__all__ = ["Recycler"]

#: ``sys.getrefcount(arr)`` for an array referred to only by the recycler's list, seen
#: while iterating that list: the list, the loop variable and getrefcount's argument
_FREE = 3


class Recycler:
    """At most ``capacity`` arrays, handed out again once their users have dropped them.

    Parameters
    ----------
    capacity : int
        Arrays kept.  When all are in use a new array is allocated and not kept, so a
        consumer that holds on to every batch costs no more memory than without recycling.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, int(capacity))
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()  # several prefetch threads ask at once

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A C-contiguous writable array of ``shape`` and ``dtype`` that no one else refers
        to (contents undefined, like ``numpy.empty``)."""
        with self._lock:
            arrays = self._arrays
            spare = -1
            for k in range(len(arrays)):
                arr = arrays[k]
                if sys.getrefcount(arr) != _FREE:  # in use
                    continue
                if arr.shape == shape and arr.dtype == dtype:
                    return arr
                spare = k
            fresh = np.empty(shape, dtype)
            if len(arrays) < self.capacity:
                arrays.append(fresh)
            elif spare >= 0:  # e.g. the short last batch: replace an idle array of the old shape
                arrays[spare] = fresh
            return fresh

    def __len__(self) -> int:
        return len(self._arrays)

