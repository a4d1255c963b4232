"""PyTorch integration: :class:`WindowDataset`, an ``IterableDataset`` of whole batches.

Importing this module needs torch (``pip install "npydir[torch]"``); ``import npydir`` does
not.  Use it with ``batch_size=None`` — the dataset already yields batches::

    from torch.utils.data import DataLoader
    from npydir.torch import WindowDataset

    ds = WindowDataset(root["train/x"], root["train/y"], window=4096, batch_size=32, seed=0)
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    for epoch in range(10):
        ds.set_epoch(epoch)          # before creating the epoch's iterator
        for x, y in loader:          # torch tensors, made from the numpy batches without a copy
            ...

Sharding: the rank's batches (see :class:`npydir.Batches`) are dealt round-robin to the
DataLoader's workers, worker ``w`` of ``W`` making batches ``w, w + W, ...``.  The
DataLoader collects from its workers in the same round-robin order, so the loader yields
exactly the batches of ``iter(Batches(...))`` in the same order, whatever ``num_workers``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._optional import require
from .batches import Batches

torch = require("torch", "npydir.torch")

__all__ = ["WindowDataset"]


class WindowDataset(torch.utils.data.IterableDataset):
    """Batches of windows for a ``torch.utils.data.DataLoader(..., batch_size=None)``.

    Parameters
    ----------
    x, y
        As for :class:`npydir.Batches`; or pass a ready ``Batches`` as ``x`` (and no other
        argument).  npydir Arrays and memmaps travel to worker processes by path.
    rank, world_size : int, optional
        Data-parallel shard.  By default taken from ``torch.distributed`` when it is
        initialised, else 0 and 1.
    as_tensors : bool, default True
        Yield ``torch.Tensor`` s (``torch.from_numpy``: no copy) instead of numpy arrays.
    **kwargs
        Any other :class:`npydir.Batches` argument (``window``, ``batch_size``, ``seed``, ...).

    Notes
    -----
    Call :meth:`set_epoch` before each epoch's ``iter(loader)``: workers get a copy of the
    dataset when the iterator starts, so with ``persistent_workers=True`` they keep the
    epoch they started with (use non-persistent workers to reshuffle per epoch).
    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        as_tensors: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if isinstance(x, Batches):
            if y is not None or rank is not None or world_size is not None or kwargs:
                raise TypeError("WindowDataset(batches) takes no other Batches arguments")
            self.batches = x
        else:
            if rank is None or world_size is None:
                dist_rank, dist_size = _distributed_rank()
                rank = dist_rank if rank is None else rank
                world_size = dist_size if world_size is None else world_size
            self.batches = Batches(
                x,
                y,
                rank=0 if rank is None else rank,
                world_size=1 if world_size is None else world_size,
                **kwargs,
            )
        self.as_tensors = bool(as_tensors)

    def __len__(self) -> int:
        """Batches per epoch of this rank (over all workers)."""
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle order of ``epoch`` (call before iterating the loader)."""
        self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # In worker processes the DataLoader already runs copies side by side: one copier
        # thread each, rather than one per core in every worker.
        copiers = 1 if info is not None else None
        indices = range(worker, len(self.batches), workers)
        for batch in self.batches._iterate(indices, copiers=copiers):
            yield tuple(torch.from_numpy(a) for a in batch) if self.as_tensors else batch

    def __repr__(self) -> str:
        return f"WindowDataset({self.batches!r})"


def _distributed_rank() -> tuple[int | None, int | None]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None, None
