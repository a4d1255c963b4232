"""Prefetching with several copier threads, and recycled batch arrays.

A batch array is written again only once nothing but the recycler refers to it; these
tests hold on to batches (and views, buffers, tensors of them) in random patterns and
check that what they hold never changes.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from _threads import run_in_threads
from _prefetch_threads import no_leaked_threads, prefetch_threads  # noqa: F401 (autouse fixture)
from hypothesis import given, settings
from hypothesis import strategies as st

import npydir.loader.batches
import npydir.kernel.windows
from npydir import Batches
from npydir.loader.buffers import Recycler


def make(prefetch=2, **kw):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4000, 3)).astype("f4")
    y = np.eye(4, dtype="f4")[rng.integers(0, 4, 4000)]
    kw = {"window": 40, "batch_size": 16, "seed": 5, "y_window": True, "data_padding": 3} | kw
    return Batches(x, y, prefetch=prefetch, **kw)


def want(b: Batches) -> list[tuple]:
    return [b[i] for i in range(len(b))]  # __getitem__: fresh arrays, no thread, no recycler


# ----------------------------------------------------------------------------- Recycler


def test_recycler_reuses_only_arrays_nobody_holds():
    r = Recycler(3)
    a = r.empty((4, 5), np.dtype("f4"))
    a_id = id(a)
    b = r.empty((4, 5), np.dtype("f4"))
    assert b is not a  # a is still held
    del a
    c = r.empty((4, 5), np.dtype("f4"))
    assert id(c) == a_id  # dropped: handed out again
    assert c.flags.c_contiguous and c.flags.writeable and c.flags.owndata
    del b, c


@pytest.mark.parametrize(
    "holder",
    [
        lambda a: a[1:],  # a view: its base is the array
        lambda a: a.reshape(-1),
        lambda a: memoryview(a),  # a buffer export
        lambda a: [a],
        lambda a: np.asarray(a),  # the array itself
    ],
    ids=["slice", "reshape", "memoryview", "list", "asarray"],
)
def test_recycler_never_hands_out_an_array_still_reachable(holder):
    r = Recycler(4)
    a = r.empty((4, 5), np.dtype("f4"))
    a[...] = 7
    held = holder(a)
    del a
    for _ in range(6):
        r.empty((4, 5), np.dtype("f4"))[...] = -1  # dropped at once: reused over and over
    assert (np.asarray(held[0] if isinstance(held, list) else held) == 7).all()


def test_recycler_is_bounded_and_replaces_idle_arrays_of_another_shape():
    r = Recycler(2)
    held = [r.empty((3,), np.dtype("f8")) for _ in range(5)]  # all in use: 3 fresh ones
    assert len(r) == 2
    del held
    short = r.empty((2,), np.dtype("f8"))  # e.g. an epoch's short last batch
    assert len(r) == 2 and short.shape == (2,)
    again = r.empty((2,), np.dtype("f8"))
    assert again is not short and len(r) == 2
    del short, again
    assert r.empty((2,), np.dtype("i8")).dtype == np.dtype("i8")


def test_recycler_from_many_threads_never_shares_an_array():
    r = Recycler(4)

    def use(k):
        for _ in range(300):
            a = r.empty((64,), np.dtype("i8"))
            a[...] = k
            time.sleep(0)
            assert (a == k).all(), "another thread wrote into an array in use"

    run_in_threads(use, 4)


# ----------------------------------------------------------------------------- copiers


def test_copier_count_follows_batch_bytes_cores_and_prefetch(monkeypatch):
    monkeypatch.setattr(npydir.loader.batches, "_cores", lambda: 2)
    x = np.zeros((10_000, 16), "f4")
    big = 32 * 1024 * 16 * 4  # 2 MiB a batch
    assert big // npydir.loader.batches._MIN_BYTES_PER_COPIER >= 2
    assert Batches(x, window=1024, batch_size=32, prefetch=2)._copiers() == 2
    assert Batches(x, window=1024, batch_size=32, prefetch=1)._copiers() == 1
    assert Batches(x, window=1024, batch_size=32, prefetch=5)._copiers() == 2  # cores
    assert Batches(x, window=16, batch_size=4, prefetch=2)._copiers() == 1  # 4 KiB batches
    # above half a group: one copier; the kernel's thread pool splits each batch
    assert Batches(x, window=4096, batch_size=32, prefetch=2)._copiers() == 1
    monkeypatch.setattr(npydir.loader.batches, "_cores", lambda: 1)
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
    it = make(3)._iterate(range(200), copiers=3)
    next(it)
    next(it)
    assert len(prefetch_threads()) == 3
    it.close()
    assert prefetch_threads() == []


def test_several_copiers_dropping_the_iterator_joins_them():
    it = make(2)._iterate(range(200), copiers=2)
    next(it)  # the ring is full: both copiers wait for a slot or hold a batch
    time.sleep(0.05)
    del it
    assert prefetch_threads() == []


@pytest.mark.parametrize("copiers", [1, 2, 3])
def test_several_copiers_raise_at_the_failing_batch(monkeypatch, copiers):
    b = make(3)
    bad = b.starts(5)
    expected = want(b)
    real = npydir.kernel.windows.gather_windows

    def flaky(x, starts, window, **kw):
        if np.isin(bad, starts).all():  # batch 5 alone, or a group of batches holding it
            raise OSError("disk went away")
        return real(x, starts, window, **kw)

    monkeypatch.setattr(npydir.kernel.windows, "gather_windows", flaky)
    got = []
    with pytest.raises(OSError, match="disk went away"):
        for batch in b._iterate(range(len(b)), copiers=copiers):
            got.append(batch)  # noqa: PERF402 - keeps what arrived before the error
    assert len(got) == 5
    for g, w in zip(got, expected):
        np.testing.assert_array_equal(g[0], w[0])


def test_slow_consumer_bounds_what_several_copiers_make(monkeypatch):
    real = npydir.kernel.windows.gather_windows
    windows = []

    def counting(x, starts, window, **kw):
        windows.append(len(starts))
        return real(x, starts, window, **kw)

    monkeypatch.setattr(npydir.kernel.windows, "gather_windows", counting)
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


@settings(max_examples=25, deadline=None)
@given(
    keep=st.lists(st.sampled_from(["drop", "keep", "view", "buffer", "copy-y"]), min_size=1),
    copiers=st.integers(1, 3),
)
def test_batches_kept_by_the_consumer_are_never_overwritten(keep, copiers):
    """Hold on to random batches (or only a view / buffer of their x) while iterating;
    afterwards every held one must still equal the batch made afresh."""
    b = make(3, batch_size=8)
    expected = want(b)
    held = []
    for i, batch in enumerate(b._iterate(range(len(b)), copiers=copiers)):
        what = keep[i % len(keep)]
        if what == "keep":
            held.append((i, batch[0], batch[1]))
        elif what == "view":
            held.append((i, batch[0][1:], None))
        elif what == "buffer":
            held.append((i, memoryview(batch[0]), None))
        elif what == "copy-y":
            held.append((i, None, batch[1]))
        del batch
    for i, xb, yb in held:
        if xb is not None:
            wx = expected[i][0]
            np.testing.assert_array_equal(np.asarray(xb), wx[1:] if xb.shape != wx.shape else wx)
        if yb is not None:
            np.testing.assert_array_equal(yb, expected[i][1])


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
