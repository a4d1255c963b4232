"""PyTorch integration: :class:`WindowDataset`, an ``IterableDataset`` of whole batches.

Importing this module needs torch (``pip install "npydir[torch]"``); ``import npydir`` does
not.  Iterate the dataset in the training process itself — the kernel's background threads
(``prefetch``, ``threads``) copy the next batches while you train::

    from npydir.torch import WindowDataset

    ds = WindowDataset(root["train/x"], root["train/y"], window=4096, batch_size=32, seed=0,
                       dtype="float32")
    for epoch in range(10):
        ds.set_epoch(epoch)          # before creating the epoch's iterator
        for x, y in ds:              # torch tensors, made from the numpy batches without a copy
            x = x.permute(0, 2, 1)   # [batch, channels, window] for torch.nn.Conv1d
            ...

Code that needs a ``DataLoader`` gets the same batches from ``DataLoader(ds,
batch_size=None)`` (the dataset yields whole batches; num_workers=0).  Its per-batch
bookkeeping costs some of the rate for small batches (benchmarks/bench_frameworks.py).

Why no worker processes: the copy is the work, and npydir's kernel already does it in
its own C threads, without the GIL.  A DataLoader worker process copies each batch once more into
shared memory and sends it to the main process, which costs more than making the batch.
Worker processes still work — the same batches in the same order — but the first worker
warns with that cost.

Sharding: the rank's batches (see :class:`npydir.Batches`) are dealt round-robin to the
DataLoader's workers, worker ``w`` of ``W`` making batches ``w, w + W, ...``.  The
DataLoader collects from its workers in the same round-robin order, so the loader yields
exactly the batches of ``iter(Batches(...))`` in the same order, whatever ``num_workers``.
The epoch lives in shared memory, so :meth:`WindowDataset.set_epoch` reaches workers that
are already running (``persistent_workers=True``).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from .adapters import batches_for
from .._optional import require
from .batches import Batches

# Any: a module imported at run time, whose classes (a base class below) mypy cannot see
torch: Any = require("torch", "npydir.torch")

__all__ = ["WindowDataset"]

#: what the first DataLoader worker says about worker processes (the ratios are measured by
#: benchmarks/bench_frameworks.py: ``DataLoader(num_workers=2)`` against in-process Batches)
WORKERS_WARNING = (
    "npydir.torch.WindowDataset in DataLoader worker processes: every batch is copied into "
    "shared memory and sent to the main process, which measured 0.04-0.12x the batches/s of "
    "the same dataset in the main process (benchmarks/bench_frameworks.py). npydir already "
    "copies in its own threads, without the GIL: use DataLoader(ds, batch_size=None) with "
    "num_workers=0 (the default) and tune prefetch/threads instead"
)


class WindowDataset(torch.utils.data.IterableDataset):
    """Batches of windows as torch tensors: iterate it, or ``DataLoader(ds, batch_size=None)``.

    Parameters
    ----------
    x, y
        As for :class:`npydir.Batches`; or pass a ready ``Batches`` as ``x`` (and no other
        :class:`~npydir.Batches` argument).  npydir Arrays and memmaps travel to worker
        processes by path.
    window, batch_size, stride, shuffle, seed, y_offset, y_window, output_stride, \
data_padding, class_weights, first, last, prefetch, threads, boundaries, drop_last, dtype, \
scale, advise
        As for :class:`npydir.Batches` (``window`` is required unless ``x`` is a
        ``Batches``).  torch convolutions want ``dtype="float32"``.
    rank, world_size : int, optional
        Data-parallel shard.  By default taken from ``torch.distributed`` when it is
        initialised, else 0 and 1.
    as_tensors : bool, default True
        Yield ``torch.Tensor`` s (``torch.from_numpy``: no copy) instead of numpy arrays.
        numpy arrays are for iterating the dataset itself: a DataLoader's default
        ``collate_fn`` would turn them into tensors anyway, so that combination is refused.

    Raises
    ------
    ValueError
        When iterated by a DataLoader that batches on its own (``batch_size`` other than
        None: every batch would gain a leading axis of 1), or with ``as_tensors=False``
        by a DataLoader that converts to tensors (its default ``collate_fn``).

    Warns
    -----
    UserWarning
        In the first DataLoader worker process: worker processes cost most of the rate.
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
        rank: int | None = None,
        world_size: int | None = None,
        prefetch: int = 2,
        threads: int | None = None,
        boundaries: Sequence[int] | None = None,
        drop_last: bool = False,
        dtype: Any = None,
        scale: float | None = None,
        advise: bool | str = "auto",
        as_tensors: bool = True,
    ) -> None:
        super().__init__()
        arguments = dict(locals())
        if not isinstance(x, Batches) and (rank is None or world_size is None):
            dist_rank, dist_size = _distributed_rank()
            arguments["rank"] = (dist_rank or 0) if rank is None else rank
            arguments["world_size"] = (dist_size or 1) if world_size is None else world_size
        self.batches = batches_for("WindowDataset", WindowDataset.__init__, x, y, arguments)
        self.as_tensors = bool(as_tensors)
        # shared with worker processes, also ones already running (persistent workers)
        self._epoch = torch.full((1,), self.batches.epoch, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        """Batches per epoch of this rank (over all workers)."""
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle order of ``epoch`` (call before iterating the loader)."""
        self.batches.set_epoch(epoch)
        self._epoch[0] = self.batches.epoch

    def __iter__(self) -> Iterator[tuple]:
        _check_loader(sys._getframe(1), self.as_tensors)
        info = torch.utils.data.get_worker_info()
        if info is None:
            worker, workers, copiers = 0, 1, None
        else:
            if info.id == 0:
                warnings.warn(WORKERS_WARNING, stacklevel=2)
            # the worker's copy of the dataset may date from an earlier epoch
            self.batches.set_epoch(int(self._epoch[0]))
            # the DataLoader already runs workers side by side: one copy at a time each
            worker, workers, copiers = info.id, info.num_workers, 1
        indices = range(worker, len(self.batches), workers)
        return self._generate(self.batches._iterate(indices, copiers=copiers))

    def _generate(self, batches: Generator[tuple, None, None]) -> Iterator[tuple]:
        try:
            if not self.as_tensors:
                yield from batches
                return
            from_numpy = torch.from_numpy
            for batch in batches:
                yield tuple(map(from_numpy, batch))
        finally:
            batches.close()  # withdraws the copies made ahead at once when the loop is left

    def __repr__(self) -> str:
        return f"WindowDataset({self.batches!r})"


def _check_loader(caller: Any, as_tensors: bool) -> None:
    """Refuse the DataLoader settings that would silently change the batches.

    ``caller`` is the frame that called ``iter(dataset)``: in a DataLoader (main process or
    worker) that is the fetcher, which holds the loader's collation settings.  Anything
    else (your own ``for`` loop, another torch version's internals) is not checked.
    """
    fetcher = caller.f_locals.get("self") if caller is not None else None
    fetch = getattr(getattr(torch.utils.data, "_utils", None), "fetch", None)
    kind = getattr(fetch, "_IterableDatasetFetcher", None)
    if kind is None or not isinstance(fetcher, kind):
        return
    if fetcher.auto_collation:
        raise ValueError(
            "npydir.torch.WindowDataset yields whole batches, but this DataLoader batches "
            "them again (its batch_size is not None), which adds a leading axis to every "
            "array: use DataLoader(ds, batch_size=None) and set the batch size on the dataset"
        )
    convert = getattr(torch.utils.data, "default_convert", None)
    if not as_tensors and fetcher.collate_fn is convert:
        raise ValueError(
            "npydir.torch.WindowDataset(as_tensors=False) in a DataLoader: its default "
            "collate_fn turns the numpy batches into tensors anyway. Iterate the dataset "
            "itself for numpy batches (for x, y in ds), or pass "
            "collate_fn=lambda batch: batch to the DataLoader"
        )


def _distributed_rank() -> tuple[int | None, int | None]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None, None
