"""Keras integration: :class:`WindowDataset`, a ``keras.utils.PyDataset`` of npydir batches.

Importing this module needs Keras 3 and one of its backends (``pip install "npydir[keras]"``
plus torch, jax or tensorflow, chosen with ``KERAS_BACKEND``); ``import npydir`` does not
import Keras.  It stands in for DAS's ``AudioSequence`` in ``model.fit``::

    from npydir.keras import WindowDataset

    train = WindowDataset(root["train/x"], root["train/y"], window=4096, batch_size=32,
                          y_window=True, data_padding=512, seed=0)
    val = WindowDataset(root["val/x"], root["val/y"], window=4096, batch_size=32,
                        y_window=True, data_padding=512, shuffle=False)
    model.fit(train, validation_data=val, epochs=10)

Batches are those of :class:`npydir.Batches` with the same arguments, cast to float32 like
das 0.33's ``AudioSequence`` (x inside the kernel's copy, y and the weights after it), and
weights are the third element exactly when DAS returns them: with ``y`` and
``data_padding > 0``.

Keras reads a ``PyDataset`` by index, from a generator that walks a list of the epoch's
indices: ``range(len)`` with ``model.fit(..., shuffle=False)``, ``evaluate`` and
``predict``, a random permutation with ``model.fit``'s default ``shuffle=True``.  The
adapter reads that list from Keras's generator at the epoch's first read and serves the
epoch from a prefetching ``Batches`` iterator in the same order, so the next batches are
copied in the background while the model trains on this one.  Reads from elsewhere (your
own code) are prefetched from the second read in a row by increasing index; any other index
is computed on the spot (O(batch), with the kernel's threads).  The windows inside every
batch are shuffled by npydir either way; Keras's ``shuffle`` only permutes whole batches.
Keras's own worker threads and processes are refused: they would call the dataset out of
order (no prefetch) or copy and pickle every batch once more.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import warnings
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from .adapters import batches_for
from .._optional import require
from .batches import Batches
from ..errors import MissingDependencyError

__all__ = ["WindowDataset"]


def _import_keras():
    """Keras 3, or a MissingDependencyError that says what is missing."""
    try:
        keras = require("keras", "npydir.keras")
    except MissingDependencyError as exc:
        cause = exc.__cause__
        if importlib.util.find_spec("keras") is None:
            raise
        raise MissingDependencyError(
            f"keras is installed but failed to import ({type(cause).__name__}: {cause}); "
            f"Keras 3 needs a backend: install torch, jax or tensorflow and name it in "
            f"KERAS_BACKEND (e.g. KERAS_BACKEND=torch)"
        ) from cause
    if not hasattr(getattr(keras, "utils", None), "PyDataset"):
        raise MissingDependencyError(
            f"npydir.keras needs Keras 3 (keras.utils.PyDataset), found keras "
            f"{getattr(keras, '__version__', '?')}: pip install \"npydir[keras]\""
        )
    return keras


# Any: a module imported at run time, whose classes (a base class below) mypy cannot see
keras: Any = _import_keras()


class WindowDataset(keras.utils.PyDataset):
    """Batches of windows for ``model.fit`` / ``evaluate`` / ``predict``.

    Parameters
    ----------
    x, y
        As for :class:`npydir.Batches`; or pass a ready ``Batches`` as ``x`` (and no other
        :class:`~npydir.Batches` argument).
    window, batch_size, stride, shuffle, seed, y_offset, y_window, output_stride, \
data_padding, class_weights, first, last, rank, world_size, prefetch, threads, boundaries, \
drop_last, scale, advise
        As for :class:`npydir.Batches` (``window`` is required unless ``x`` is a
        ``Batches``).  ``class_weights`` without ``data_padding`` warns and is dropped, as
        DAS drops it (DAS returns no weights then); for class weighting without margins use
        ``model.fit(..., class_weight=...)``.
    dtype : numpy dtype or None, default float32
        dtype of the x, y and weight arrays, as das 0.33 (x is cast inside the copy).  None
        keeps x's and y's stored dtypes.
    workers, use_multiprocessing
        Keras's own parallelism, refused beyond ``workers=1, use_multiprocessing=False``:
        npydir makes the batches in the background (see the module docstring).

    Notes
    -----
    ``on_epoch_end`` (Keras calls it after each epoch) moves to the next epoch's order, if
    a batch of the current one was read; :meth:`set_epoch` picks one (e.g. when resuming).
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        *,
        window: int | None = None,
        batch_size: int = 32,
        stride: int = 1,
        shuffle: bool = True,
        seed: int | None = None,
        y_offset: int | None = None,
        y_window: bool = False,
        output_stride: int = 1,
        data_padding: int = 0,
        class_weights: Sequence[float] | None = None,
        first: int = 0,
        last: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        prefetch: int = 2,
        threads: int | None = None,
        boundaries: Sequence[int] | None = None,
        drop_last: bool = False,
        dtype: Any = "float32",
        scale: float | None = None,
        advise: bool | str = "auto",
        workers: int = 1,
        use_multiprocessing: bool = False,
    ) -> None:
        if workers > 1 or use_multiprocessing:
            raise ValueError(
                f"npydir.keras.WindowDataset: workers={workers}, use_multiprocessing="
                f"{use_multiprocessing} refused. npydir makes the batches in the background "
                f"(prefetch=, threads=), without the GIL; Keras worker "
                f"threads would read batches out of order (nothing to prefetch) and worker "
                f"processes copy and pickle every batch once more (measured 0.04-0.12x for "
                f"torch DataLoader workers). Leave workers=1, use_multiprocessing=False"
            )
        super().__init__(workers=workers, use_multiprocessing=False)
        arguments = dict(locals())
        if isinstance(x, Batches):
            del arguments["dtype"]  # casts the batches of the given Batches
        elif class_weights is not None and data_padding == 0 and y is not None:
            arguments["class_weights"] = None  # dropped below; not worth computing
        # x is cast by the kernel while it copies; y and the weights after it
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.batches = batches_for("WindowDataset", WindowDataset.__init__, x, y, arguments)
        # DAS returns weights with y and data_padding > 0, and only then
        b = self.batches
        self._arrays = 1 if b._y is None else 2
        if b.returns_weights and b.data_padding > 0:
            self._arrays = 3
        if class_weights is not None or (b.class_weights is not None and self._arrays < 3):
            if self._arrays < 3:
                warnings.warn(
                    "npydir.keras.WindowDataset: class_weights without data_padding are "
                    "dropped, as DAS's AudioSequence drops them (it returns weights only "
                    "with data_padding > 0); pass data_padding, or use "
                    "model.fit(..., class_weight=...)",
                    stacklevel=2,
                )
        self._lock = threading.Lock()
        self._stream: Generator[tuple, None, None] | None = None
        self._order: Sequence[int] = range(0)  # the stream's batch indices, in its order
        self._pos = 0  # the stream gives batch ``self._order[self._pos]`` next
        self._last = -2  # index read last (-2: none yet)
        self._drawn = False  # a batch of the current epoch was read

    # ---------------------------------------------------------------- PyDataset

    def __len__(self) -> int:
        """Batches per epoch (of this rank)."""
        return len(self.batches)

    def __getitem__(self, index: int) -> tuple:
        """Batch ``index`` of the current epoch: ``(x,)``, ``(x, y)`` or ``(x, y, weights)``.

        Equal to ``self.batches[index]`` (cast to ``dtype``) whatever the order of reads;
        reads in Keras's order, or by increasing index, are served by a prefetching
        iterator.
        """
        n = len(self.batches)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"WindowDataset: batch index must be an integer, got {index!r}")
        if not -n <= index < n:
            raise IndexError(f"WindowDataset: batch index {index} out of range for {n} batches")
        index = int(index) % n
        batch = None
        with self._lock:
            self._drawn = True
            if self._stream is not None and index == self._order[self._pos]:
                batch = self._next_from_stream()
            else:
                self._close_stream()
                order = _keras_order(sys._getframe(1), self, index, n)
                if order is None and index == self._last + 1 and index + 1 < n:
                    # the second read in order: prefetch from here to the end of the epoch
                    order = range(index, n)
                if order is not None:
                    self._stream = self.batches._iterate(order)
                    self._order, self._pos = order, 0
                    batch = self._next_from_stream()
            self._last = index
        if batch is None:
            batch = self.batches[index]  # outside the lock: the kernel's threads copy
        return self._cast(batch)

    def on_epoch_end(self) -> None:
        """Move to the next epoch's order (if a batch of this epoch was read)."""
        with self._lock:
            if self._drawn:
                self.batches.set_epoch(self.batches.epoch + 1)
                self._restart()

    # ---------------------------------------------------------------- epochs

    @property
    def epoch(self) -> int:
        """The epoch whose order ``[i]`` reads."""
        return self.batches.epoch

    def set_epoch(self, epoch: int) -> None:
        """Read the order of ``epoch`` from now on."""
        with self._lock:
            self.batches.set_epoch(epoch)
            self._restart()

    # ---------------------------------------------------------------- internals

    def _restart(self) -> None:
        self._close_stream()
        self._last = -2
        self._drawn = False

    def _next_from_stream(self) -> tuple:
        batch = next(self._stream)  # type: ignore[arg-type]  # the caller opened it
        self._pos += 1
        if self._pos >= len(self._order):
            self._close_stream()
        return batch

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        self._order, self._pos = range(0), 0  # Keras's list of indices can be long
        if stream is not None:
            stream.close()  # joins its threads

    def _cast(self, batch: tuple) -> tuple:
        dtype = self.dtype
        batch = batch[: self._arrays]
        if dtype is None:
            return tuple(batch)
        return tuple(a if a.dtype == dtype else a.astype(dtype) for a in batch)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_lock"] = None
        state["_stream"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._restart()

    def __repr__(self) -> str:
        return f"npydir.keras.WindowDataset({self.batches!r})"


def _keras_order(caller: Any, dataset: WindowDataset, index: int, n: int) -> Sequence[int] | None:
    """The indices Keras will read from ``dataset`` after ``index`` in this epoch, ``index``
    first, when ``caller`` (the frame that asked for it) is Keras's epoch generator; else None.

    Keras 3 reads a ``PyDataset`` in ``PyDatasetAdapter._finite_generator``: ``for i in
    indices``, where ``indices`` is ``range(num_batches)`` or, with ``shuffle=True``, that
    range as a list in ``random.shuffle``'d order, made at the epoch's first read.  Anything
    else (other Keras versions, your own loop) gives None and reads are served as they come.
    """
    if caller is None or caller.f_code.co_name != "_finite_generator":
        return None
    local = caller.f_locals
    adapter, indices = local.get("self"), local.get("indices")
    if getattr(adapter, "py_dataset", None) is not dataset or local.get("i") != index:
        return None
    if isinstance(indices, range):
        return range(index, n) if indices == range(n) else None
    if not isinstance(indices, list) or len(indices) != n:
        return None
    try:
        order = np.asarray(indices, dtype=np.int64)  # a copy: Keras's list stays Keras's
    except (TypeError, ValueError, OverflowError):
        return None
    if order.ndim != 1 or (n and (order.min() < 0 or order.max() >= n)):
        return None
    here = np.flatnonzero(order == index)
    return order[here[0] :].tolist() if here.size else None
