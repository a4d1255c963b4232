"""Prefetching with several copier threads, and batch memory reused from a block pool.

A block is written again only once the array over it is garbage (its base, a
``npydir.loader._buffers.Lease``, returns the block when freed); these tests hold on to batches
(and views, buffers, tensors, bases of them) in random patterns and check that what they
hold never changes, and that memory stays bounded when they hold nothing.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import pickle
import queue
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest
from _prefetch_threads import (  # noqa: F401 (autouse fixture)
    copies_in_flight,
    no_leaked_threads,
    prefetch_threads,
)
from _threads import run_in_threads
from hypothesis import given, settings
from hypothesis import strategies as st

import npydir.kernel.windows
import npydir.loader.batches
from npydir import Batches
from npydir.loader._buffers import BlockPool, Lease
from npydir.loader.batches import _background


def make(prefetch=2, **kw):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4000, 3)).astype("f4")
    y = np.eye(4, dtype="f4")[rng.integers(0, 4, 4000)]
    kw = {"window": 40, "batch_size": 16, "seed": 5, "y_window": True, "data_padding": 3} | kw
    return Batches(x, y, prefetch=prefetch, **kw)


def want(b: Batches) -> list[tuple]:
    return [b[i] for i in range(len(b))]  # __getitem__: fresh arrays, no thread, no pool


F4 = np.dtype("f4")


# ----------------------------------------------------------------------------- BlockPool


def test_pool_reuses_a_block_only_once_its_array_is_garbage():
    pool = BlockPool(3)
    a = pool.empty((4, 5), F4)
    address = a.ctypes.data
    b = pool.empty((4, 5), F4)
    assert b.ctypes.data != address  # a is still alive
    del a
    c = pool.empty((4, 5), F4)
    assert c.ctypes.data == address  # a is gone: its block again
    assert pool.allocated == 2
    for arr in (b, c):
        assert arr.flags.c_contiguous and arr.flags.writeable and arr.flags.aligned
        assert not arr.flags.owndata and isinstance(arr.base, Lease)
        assert arr.ctypes.data % 64 == 0  # streaming stores need 16-byte alignment


@pytest.mark.parametrize(
    "holder",
    [
        lambda a: a[1:],  # a view: its base is the array, not the block
        lambda a: a[1:][1:][0],  # a view of a view: numpy collapses bases, still the array
        lambda a: a.reshape(-1).view(np.int32),
        lambda a: a.T,
        lambda a: memoryview(a),  # a buffer export
        lambda a: memoryview(a)[1:],
        lambda a: np.frombuffer(memoryview(a), dtype=a.dtype),
        lambda a: np.lib.stride_tricks.as_strided(a, shape=(2, 5)),
        lambda a: np.from_dlpack(a),  # a DLPack export (what torch.from_dlpack takes)
        lambda a: [a],
        lambda a: a.base,  # the lease itself: the block stays its own
        lambda a: np.asarray(a),  # the array itself
    ],
    ids=[
        "slice", "view-of-view", "reshape-view", "transpose", "memoryview",
        "memoryview-slice", "frombuffer", "as_strided", "dlpack", "list", "base", "asarray",
    ],
)  # fmt: skip
def test_pool_never_reuses_a_block_still_reachable(holder):
    pool = BlockPool(4)
    a = pool.empty((4, 5), F4)
    a[...] = 7
    address = a.ctypes.data
    held = holder(a)
    del a
    gc.collect()
    for _ in range(6):
        b = pool.empty((4, 5), F4)  # dropped at once: its block is reused over and over
        assert b.ctypes.data != address
        b[...] = -1
        del b
    if isinstance(held, Lease):
        assert held.nbytes == 80
    else:
        view = np.asarray(held[0] if isinstance(held, list) else held)
        assert (view.view(F4) == 7).all()
        del view
    del held
    again = [pool.empty((4, 5), F4) for _ in range(2)]  # let go: its block is reused
    assert address in {arr.ctypes.data for arr in again}


def test_pool_reuse_needs_no_reference_counts(monkeypatch):
    """CPython's reference counts may change between versions: reuse must not read them.
    A getrefcount that always says "only the pool refers to it" (or never says so) changes
    nothing here."""
    for claim in (3, 10**6):
        monkeypatch.setattr(sys, "getrefcount", lambda obj, claim=claim: claim)
        pool = BlockPool(2)
        a = pool.empty((8,), F4)
        a[...] = 1
        for _ in range(5):
            pool.empty((8,), F4)[...] = 2
        assert (a == 1).all()
        assert pool.allocated == 2


def test_pool_picks_a_block_that_fits_and_keeps_at_most_capacity_idle():
    pool = BlockPool(2)
    held = [pool.empty((3,), np.dtype("f8")) for _ in range(5)]  # all in use: 5 blocks
    assert pool.allocated == 5 and pool.idle == 0
    del held
    assert pool.idle == 2  # the other three are freed
    short = pool.empty((2,), np.dtype("f8"))  # e.g. an epoch's short last batch: fits in one
    assert short.shape == (2,) and pool.allocated == 5 and pool.idle == 1
    wide = pool.empty((5,), np.dtype("f8"))  # fits none: a new block, the idle one dropped
    assert pool.allocated == 6 and pool.idle == 0
    del short, wide
    assert pool.empty((4,), np.dtype("i8")).dtype == np.dtype("i8")
    assert pool.empty((0, 3), F4).shape == (0, 3)
    with pytest.raises(ValueError, match="negative"):
        pool.empty((-1,), F4)


def test_pool_close_frees_idle_blocks_and_keeps_arrays_valid():
    pool = BlockPool(4)
    kept = pool.empty((16,), F4)
    kept[...] = 3
    for _ in range(3):
        pool.empty((16,), F4)
    assert pool.idle == 1
    pool.close()
    assert pool.idle == 0
    del _
    assert (kept == 3).all()
    del kept
    assert pool.idle == 0  # nothing kept once closed


def test_pool_arrays_pickle_and_copy_as_plain_arrays():
    pool = BlockPool(2)
    a = pool.empty((3, 4), F4)
    a[...] = np.arange(12).reshape(3, 4)
    for other in (pickle.loads(pickle.dumps(a)), copy.copy(a), copy.deepcopy(a), a.copy()):
        assert other.flags.owndata and not np.shares_memory(other, a)
        np.testing.assert_array_equal(other, np.arange(12).reshape(3, 4))
    with pytest.raises(TypeError, match="pickle the batch array itself"):
        pickle.dumps(a.base)


def test_pool_from_many_threads_never_shares_a_block():
    pool = BlockPool(4)

    def use(k):
        for _ in range(300):
            a = pool.empty((64,), np.dtype("i8"))
            a[...] = k
            time.sleep(0)
            assert (a == k).all(), "another thread wrote into an array in use"

    run_in_threads(use, 4)


def test_pool_blocks_come_back_from_whichever_thread_drops_them():
    """Arrays made in one thread and dropped in another (a copier and the consumer)."""
    pool = BlockPool(3)
    handed: queue.SimpleQueue = queue.SimpleQueue()
    seen = []

    def consume(_):
        for k in range(400):
            a = handed.get()
            seen.append(bool((a == k).all()))
            del a

    consumer = threading.Thread(target=consume, args=(0,))
    consumer.start()
    for k in range(400):
        a = pool.empty((32,), np.dtype("i8"))
        a[...] = k
        handed.put(a)
        del a
    consumer.join()
    assert all(seen) and len(seen) == 400
    assert pool.allocated <= 400


# ----------------------------------------------------------------------------- copiers


def test_copier_count_follows_batch_bytes_cores_and_prefetch(monkeypatch):
    monkeypatch.setattr(npydir.kernel.windows, "available_cores", lambda: 2)
    x = np.zeros((10_000, 16), "f4")
    big = 32 * 1024 * 16 * 4  # 2 MiB a batch
    assert big // npydir.loader.batches._MIN_BYTES_PER_COPIER >= 2
    assert Batches(x, window=1024, batch_size=32, prefetch=2)._copiers() == 2
    assert Batches(x, window=1024, batch_size=32, prefetch=1)._copiers() == 1
    assert Batches(x, window=1024, batch_size=32, prefetch=5)._copiers() == 2  # cores
    assert Batches(x, window=16, batch_size=4, prefetch=2)._copiers() == 1  # 4 KiB batches
    # above half a group: one copier; the kernel's thread pool splits each batch
    assert Batches(x, window=4096, batch_size=32, prefetch=2)._copiers() == 1
    monkeypatch.setattr(npydir.kernel.windows, "available_cores", lambda: 1)
    assert Batches(x, window=1024, batch_size=32, prefetch=2)._copiers() == 1


@pytest.mark.parametrize("copiers, prefetch", [(2, 2), (3, 3), (3, 1)])
def test_several_copiers_give_the_batches_in_order(copiers, prefetch):
    b = make(prefetch)
    for epoch in (0, 1):
        b.set_epoch(epoch)
        expected = want(b)
        got = list(b._iterate(range(len(b)), copiers=copiers))
        assert len(got) == len(expected)
        for g, w in zip(got, expected):
            for ga, wa in zip(g, w):
                np.testing.assert_array_equal(ga, wa)


def test_several_copiers_close_mid_epoch_joins_all_threads():
    """Object storage's path (copier threads): close() joins them all."""
    it = _background(iter(range(200)), lambda item, hand_over: item, 3, 3, "npydir-batches-t")
    next(it)
    next(it)
    assert len(prefetch_threads()) == 3
    it.close()
    assert prefetch_threads() == []


def test_several_copiers_dropping_the_iterator_joins_them():
    it = _background(iter(range(200)), lambda item, hand_over: item, 2, 2, "npydir-batches-t")
    next(it)  # the ring is full: both copiers wait for a slot or hold a batch
    time.sleep(0.05)
    del it
    assert prefetch_threads() == []


def test_several_copiers_leave_no_copy_behind():
    """Local data (the kernel's runners, a lane of 3): nothing queued once closed."""
    it = make(3)._iterate(range(200), copiers=3)
    next(it)
    next(it)
    it.close()
    assert copies_in_flight() == 0


@pytest.mark.parametrize("copiers", [1, 2, 3])
def test_several_copiers_raise_at_the_failing_batch(monkeypatch, copiers):
    b = make(3)
    bad = b.starts(5)
    expected = want(b)
    real = npydir.kernel.windows.start_gather_windows

    def flaky(x, starts, window, **kw):
        if np.isin(bad, starts).all():  # batch 5 alone, or a group of batches holding it
            raise OSError("disk went away")
        return real(x, starts, window, **kw)

    monkeypatch.setattr(npydir.kernel.windows, "start_gather_windows", flaky)
    got = []
    with pytest.raises(OSError, match="disk went away"):
        for batch in b._iterate(range(len(b)), copiers=copiers):
            got.append(batch)  # noqa: PERF402 - keeps what arrived before the error
    assert len(got) == 5
    for g, w in zip(got, expected):
        np.testing.assert_array_equal(g[0], w[0])


def test_slow_consumer_bounds_what_several_copiers_make(monkeypatch):
    real = npydir.kernel.windows.start_gather_windows
    windows = []

    def counting(x, starts, window, **kw):
        windows.append(len(starts))
        return real(x, starts, window, **kw)

    monkeypatch.setattr(npydir.kernel.windows, "start_gather_windows", counting)
    b = make(2, batch_size=8)
    batch_bytes = 8 * 40 * 3 * 4
    group = min(npydir.loader.batches._GROUP_MAX, npydir.loader.batches._GROUP_BYTES // batch_bytes)
    it = b._iterate(range(len(b)), copiers=2)
    next(it)
    time.sleep(0.3)  # a runaway producer would make all len(b) batches meanwhile
    # the consumer's group, and ring depth prefetch + copiers - 1 = 3 groups made ahead;
    # x and y are gathered for each window
    assert sum(windows) <= 2 * (1 + 3) * group * 8
    assert len(b) > 8 * group
    it.close()


# ----------------------------------------------------------------------------- recycling


try:
    import torch
except ImportError:  # the tensor pattern needs torch
    torch = None

HOLDS = ["drop", "keep", "view", "view-of-view", "buffer", "base", "pickle", "copy-y",
         "thread", "for-a-while", "cycle"] + (["tensor"] if torch is not None else [])  # fmt: skip


def _hold(what: str, batch: tuple, other_thread: queue.SimpleQueue):
    """What a consumer keeps of ``batch``: (kept, read(kept) -> bytes, expect(fresh batch)
    -> the bytes ``read`` must give), or Nones for "drop"."""
    x = batch[0]

    def whole_x(fresh: tuple) -> bytes:
        return fresh[0].tobytes()

    if what in ("keep", "for-a-while"):
        return batch, lambda kept: kept[0].tobytes(), whole_x
    if what == "view":
        return x[1:], lambda kept: kept.tobytes(), lambda fresh: fresh[0][1:].tobytes()
    if what == "view-of-view":  # numpy must not point the view's base past x
        return x[1:][1:], lambda kept: kept.tobytes(), lambda fresh: fresh[0][2:].tobytes()
    if what == "buffer":
        return memoryview(x), lambda kept: kept.tobytes(), whole_x
    if what == "tensor":
        return torch.from_numpy(x), lambda kept: kept.numpy().tobytes(), whole_x
    if what == "base":  # only x's base (a Lease, or its group's array) and x's address
        return (x.base, x.ctypes.data, x.nbytes), lambda kept: ctypes.string_at(*kept[1:]), whole_x
    if what == "pickle":
        return pickle.loads(pickle.dumps(x)), lambda kept: kept.tobytes(), whole_x
    if what == "copy-y":
        return batch[1], lambda kept: kept.tobytes(), lambda fresh: fresh[1].tobytes()
    if what == "thread":  # another thread holds it
        box: list = []
        other_thread.put((box, x))
        return box, lambda kept: kept[0].tobytes(), whole_x
    if what == "cycle":  # dropped into a reference cycle: freed by whichever thread collects
        cycle: list = [batch]
        cycle.append(cycle)
        if gc.get_count()[0] % 3 == 0:
            gc.collect()
    return None, None, None


@settings(max_examples=30, deadline=None)
@given(
    keep=st.lists(st.sampled_from(HOLDS), min_size=1, max_size=12),
    copiers=st.integers(1, 3),
    batch_size=st.sampled_from([8, 16, 37]),
)
def test_batches_kept_by_the_consumer_are_never_overwritten(keep, copiers, batch_size):
    """Hold on to random batches, or only a view, a view of a view, a buffer, a tensor, the
    base of their x, a pickled copy, their y, or hand them to another thread, while
    iterating (the last batch is short, small batches travel in groups); whatever is held
    must still equal the batch made afresh."""
    b = make(3, batch_size=batch_size)
    expected = want(b)
    assert len(expected[-1][0]) < batch_size  # a short last batch
    held = []
    handed: queue.SimpleQueue = queue.SimpleQueue()

    def holder() -> None:  # keeps what it is handed in the box it came with
        while (item := handed.get()) is not None:
            box, x = item
            box.append(x)
            del item, box, x

    other = threading.Thread(target=holder)
    other.start()
    recent: list = []
    try:
        for i, batch in enumerate(b._iterate(range(len(b)), copiers=copiers)):
            what = keep[i % len(keep)]
            kept, read, expect = _hold(what, batch, handed)
            del batch
            if what == "for-a-while":  # dropped four batches later, checked then
                recent.append((i, kept))
                if len(recent) > 4:
                    j, old = recent.pop(0)
                    np.testing.assert_array_equal(old[0], expected[j][0])
                    del old
            elif kept is not None:
                held.append((i, kept, read, expect))
            del kept
    finally:
        handed.put(None)
        other.join()
    for i, kept, read, expect in held:
        assert read(kept) == expect(expected[i]), f"batch {i} changed"
    for j, old in recent:
        np.testing.assert_array_equal(old[0], expected[j][0])


@pytest.mark.parametrize("copiers", [1, 2])
def test_batches_freed_by_garbage_collection_inside_the_copiers(copiers):
    """Batches dropped in reference cycles die wherever the collector runs: with collections
    after nearly every allocation that is inside the copier threads too, also while they
    take a block from the pool.  Nothing deadlocks, and kept batches never change."""
    b = make(3, batch_size=8)
    expected = want(b)
    kept = []
    threshold = gc.get_threshold()
    gc.set_threshold(5, 1, 1)
    try:
        for i, batch in enumerate(b._iterate(range(len(b)), copiers=copiers)):
            cycle: list = [batch]
            cycle.append(cycle)
            if i % 9 == 0:
                kept.append((i, batch))
            del batch, cycle
    finally:
        gc.set_threshold(*threshold)
    for i, batch in kept:
        np.testing.assert_array_equal(batch[0], expected[i][0])
        np.testing.assert_array_equal(batch[1], expected[i][1])


@pytest.mark.parametrize("claim", [3, 10**6])
def test_reuse_reads_no_reference_counts(monkeypatch, claim):
    """Reference counts are an implementation detail CPython changes between versions.
    With a getrefcount that always claims "nobody else holds it" (3) or never does, kept
    batches still never change and memory is still reused."""
    monkeypatch.setattr(sys, "getrefcount", lambda obj: claim)
    b = make(2, batch_size=8)
    expected = want(b)
    real_empty = np.empty
    big = []  # allocations of at least a batch's x

    def counting_empty(shape, dtype=float, *args, **kw):
        arr = real_empty(shape, dtype, *args, **kw)
        if arr.nbytes >= expected[0][0].nbytes:
            big.append(arr.nbytes)
        return arr

    monkeypatch.setattr(np, "empty", counting_empty)
    kept = []
    for i, batch in enumerate(b._iterate(range(len(b)), copiers=1)):
        if i % 7 == 0:
            kept.append((i, batch))
        del batch
    monkeypatch.undo()
    for i, batch in kept:
        np.testing.assert_array_equal(batch[0], expected[i][0])
        np.testing.assert_array_equal(batch[1], expected[i][1])
    # x and y pools: blocks for what is alive at once (prefetch + copiers + 1) and for the
    # kept batches, never one per batch
    assert len(b) > 400
    assert len(big) <= 2 * (2 * (2 + 1 + 1) + len(kept))


def test_memory_is_bounded_and_idle_blocks_go_with_the_iterator():
    """A consumer that drops every batch costs a few blocks, not one per batch; once the
    iterator is closed a batch still kept holds its own block, not the pool's idle ones."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100_000, 8)).astype("f4")
    b = Batches(x, window=4096, batch_size=20, seed=1, prefetch=2)  # 2.6 MB: one copier
    nbytes = 20 * 4096 * 8 * 4
    gc.collect()
    tracemalloc.start()
    it = iter(b)
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(60):
            batch = next(it)
        peak = tracemalloc.get_traced_memory()[1]
        # prefetch 2 ahead, one being made, the consumer's, and at most 4 idle
        assert peak - base < 9 * nbytes, f"{(peak - base) / nbytes:.1f} batches at once"
        it.close()
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
        assert kept < 1.5 * nbytes, f"{kept / nbytes:.1f} batches' memory for one batch"
        np.testing.assert_array_equal(batch[0], b[59][0])
        del batch
        gc.collect()
        assert tracemalloc.get_traced_memory()[0] - base < nbytes // 4
    finally:
        it.close()
        tracemalloc.stop()


@pytest.mark.parametrize("copiers", [1, 2])  # 2: small batches made in groups (views)
def test_recycled_batches_are_fresh_writable_contiguous_and_exclusive(copiers):
    b = make(2)
    previous = None
    for batch in b._iterate(range(len(b)), copiers=copiers):
        for arr in batch:
            assert arr.flags.c_contiguous and arr.flags.writeable
            assert not np.shares_memory(arr, b._x.array)
        if previous is not None:  # the batch still referenced is not the one handed out
            for a, p in zip(batch, previous):
                assert not np.shares_memory(a, p)
        previous = batch
