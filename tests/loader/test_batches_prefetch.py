"""Batches iteration: the prefetch thread, its shutdown, errors and page-cache hints."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from _prefetch_threads import (  # noqa: F401 (autouse fixture)
    copies_in_flight,
    no_leaked_threads,
    prefetch_threads,
)

import npydir.kernel.windows
import npydir.loader.batches
from npydir import Batches
from npydir.kernel import _windows
from npydir.loader.batches import _background


def make(prefetch, **kw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 3)).astype("f4")
    y = np.eye(4, dtype="f4")[rng.integers(0, 4, 3000)]
    kw = {"window": 40, "batch_size": 16, "seed": 5, "y_window": True, "data_padding": 3} | kw
    return Batches(x, y, prefetch=prefetch, **kw)


@pytest.mark.parametrize("prefetch", [1, 2, 7])
def test_prefetch_gives_identical_batches(prefetch):
    a, b = make(0), make(prefetch)
    for epoch in (0, 1):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        got, want = list(b), list(a)
        assert len(got) == len(want) == len(a)
        for i, (g, w) in enumerate(zip(got, want)):
            for ga, wa in zip(g, w):
                np.testing.assert_array_equal(ga, wa)
            np.testing.assert_array_equal(g[0], a[i][0])


def test_set_epoch_during_iteration_does_not_change_the_running_pass():
    a, b = make(2), make(0)
    it = iter(a)
    first = next(it)
    a.set_epoch(1)
    rest = list(it)
    want = list(b)
    np.testing.assert_array_equal(first[0], want[0][0])
    for g, w in zip(rest, want[1:]):
        np.testing.assert_array_equal(g[0], w[0])


def test_break_stops_and_joins_the_thread():
    b = make(3)
    for n, _ in enumerate(b):
        if n == 2:
            break
    # the loop's iterator is gone: the fixture checks that its thread was joined


def slow(prefetch: int) -> Batches:
    """Batches whose copies take milliseconds each (8 MiB, one thread): copies queued ahead
    are still queued when the consumer acts right after taking a batch."""
    x = np.ones((1 << 20, 8), dtype="f4")
    return Batches(x, window=4096, batch_size=64, seed=0, prefetch=prefetch, threads=1)


def test_local_data_starts_no_thread():
    """Local data is copied by the kernel's runners: no Python thread wants the GIL."""
    it = iter(make(3))
    next(it)
    assert prefetch_threads() == []
    it.close()


@pytest.mark.parametrize("how", ["close", "del"])
def test_leaving_withdraws_the_copies_ahead(how):
    b = slow(prefetch=4)
    it = iter(b)
    before = _windows.runner_tasks()
    next(it)  # batch 0 made; batches 1-4 queued ahead, batch 1 likely running
    if how == "close":
        it.close()
    else:
        del it
    assert copies_in_flight() == 0  # nothing queued or running once the iterator is gone
    ran = _windows.runner_tasks() - before
    time.sleep(0.1)
    assert _windows.runner_tasks() - before == ran  # nothing withdrawn runs later
    assert ran < 5  # the copies still queued were withdrawn, not made


def test_background_close_joins_its_threads():
    """Object storage's path: copier threads, joined by close()."""
    it = _background(iter(range(100)), lambda item, hand_over: item, 2, 2, "npydir-batches-test")
    assert next(it) == 0
    assert len(prefetch_threads()) == 2
    it.close()
    assert prefetch_threads() == []


def test_background_dropping_an_unfinished_iterator_joins_its_threads():
    it = _background(iter(range(100)), lambda item, hand_over: item, 1, 1, "npydir-batches-test")
    next(it)
    del it  # the ring is full and the copier waits: dropping the iterator must free it
    assert prefetch_threads() == []


def test_exceptions_reach_the_consumer_at_their_batch(monkeypatch):
    real = npydir.kernel.windows.start_gather_windows
    calls = []

    def flaky(x, starts, window, **kw):
        calls.append(1)
        if len(calls) == 7:  # x and y per batch: the 4th batch's x
            raise OSError("disk went away")
        return real(x, starts, window, **kw)

    monkeypatch.setattr(npydir.kernel.windows, "start_gather_windows", flaky)
    got = []
    with pytest.raises(OSError, match="disk went away"):
        for batch in make(2):
            got.append(batch)  # noqa: PERF402 - keeps what arrived before the error
    assert len(got) == 3


@pytest.mark.parametrize("copiers", [None, 3], ids=["default", "three-copiers"])
def test_planner_exceptions_reach_the_consumer(monkeypatch, copiers):
    monkeypatch.setattr(npydir.loader.batches, "_CHUNK_WINDOWS", 32)  # two batches of 16 a chunk
    b = make(2 if copiers is None else copiers)
    real = b._starts_of_batches
    calls = []

    def flaky(indices, epoch):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("planner failed")
        return real(indices, epoch)

    monkeypatch.setattr(b, "_starts_of_batches", flaky)
    got = []
    with pytest.raises(MemoryError, match="planner failed"):
        batches = b if copiers is None else b._iterate(range(len(b)), copiers=copiers)
        for batch in batches:
            got.append(batch)  # noqa: PERF402 - keeps what arrived before the error
    assert len(got) == 4  # two chunks of two batches, then the third chunk fails


def test_the_queue_is_bounded(monkeypatch):
    real = npydir.kernel.windows.start_gather_windows
    made = []

    def counting(x, starts, window, **kw):
        made.append(1)
        return real(x, starts, window, **kw)

    monkeypatch.setattr(npydir.kernel.windows, "start_gather_windows", counting)
    b = make(2, batch_size=8)
    it = iter(b)
    next(it)
    time.sleep(0.3)  # a runaway producer would make all len(b) batches meanwhile
    # consumed 1, at most prefetch=2 made ahead; x and y are gathered for each
    assert 2 * 2 <= len(made) <= 2 * (1 + 2)
    assert len(b) > 20
    it.close()


@pytest.mark.parametrize("mode", [True, "auto"])
def test_advise_is_asked_for_the_next_batch(monkeypatch, tmp_path, mode):
    """advise=True: every next batch; "auto" on cold data (the check finds pages missing,
    simulated here): every next batch too."""
    seen = []
    if mode is True:
        monkeypatch.setattr(
            npydir.kernel.windows,
            "advise_windows",
            lambda x, starts, window, **kw: seen.append((np.copy(starts), window)),
        )
    else:  # the kernel's sampled check: mincore a few windows, madvise all if one is cold
        real = npydir.kernel.windows._advise

        def spy(a, starts, window, sample):
            assert sample > 0
            seen.append((np.copy(starts), window))
            real(a, starts, window, sample)
            return 1  # "cold": one read-ahead request made

        monkeypatch.setattr(npydir.kernel.windows, "_advise", spy)
    b0 = make(0)
    np.save(tmp_path / "x.npy", b0._x.array)
    np.save(tmp_path / "y.npy", b0._y.array)
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    y = np.load(tmp_path / "y.npy", mmap_mode="r")
    for prefetch in (0, 2):
        seen.clear()
        b = Batches(x, y, window=40, batch_size=16, seed=5, prefetch=prefetch, advise=mode)
        list(b)
        assert len(seen) == len(b) - 1
        for i, (starts, window) in enumerate(seen):
            np.testing.assert_array_equal(starts, b.starts(i + 1))
            assert window == b.window


def test_auto_advice_backs_off_while_warm():
    checks = []
    results = iter([0] * 6 + [1] + [0] * 100)  # warm, warm, ..., one cold check, warm
    advice = npydir.loader.batches._BackoffAdvice(
        lambda starts: checks.append(int(starts[0])) or next(results)
    )
    for i in range(200):
        advice(np.array([i]))
    # checks at 0, then after skipping 1, 3, 7, 15, 31, 31 batches; the cold one resets
    assert checks[:7] == [0, 2, 6, 14, 30, 62, 94]
    assert checks[7:10] == [95, 97, 101]
    assert len(checks) < 20


def test_advise_off_and_in_memory_never_advise(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("advised")

    monkeypatch.setattr(npydir.kernel.windows, "advise_windows", boom)
    monkeypatch.setattr(npydir.kernel.windows, "_advise", boom)
    list(make(2))  # in-memory x with advise="auto": nothing to read ahead
    with pytest.raises(ValueError, match="advise must be True, False or 'auto'"):
        make(2, advise="yes")


def test_many_consumers_at_once():
    b = make(2)
    want = [batch[0] for batch in make(0)]
    errors = []

    def consume():
        try:
            got = [batch[0] for batch in b]
            assert len(got) == len(want)
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_prefetch_beyond_memory_is_refused_with_the_bound():
    x = np.zeros((100_000, 9), np.float32)
    with pytest.raises(ValueError, match=r"prefetch=1000000000 .* use prefetch <= \d+") as e:
        Batches(x, window=4096, batch_size=32, prefetch=10**9)
    most = int(str(e.value).rsplit("prefetch <= ", 1)[1].split()[0])
    Batches(x, window=4096, batch_size=32, prefetch=most)  # the bound it names is accepted
    with pytest.raises(ValueError, match="prefetch"):
        Batches(x, window=4096, batch_size=32, prefetch=most + 1)


def _prefetch_bound(*args, **kwargs) -> int:
    with pytest.raises(ValueError, match="prefetch") as e:
        Batches(*args, prefetch=10**9, **kwargs)
    return int(str(e.value).rsplit("prefetch <= ", 1)[1].split()[0])


def test_prefetch_bound_counts_targets_and_weights():
    x = np.zeros((10_000, 1), np.float32)
    y = np.zeros((10_000, 512), np.float32)  # targets 512x the bytes of x per window
    alone = _prefetch_bound(x, window=16, batch_size=64)
    with_y = _prefetch_bound(x, y, window=16, batch_size=64, y_window=True, data_padding=2)
    assert with_y * 100 < alone


def test_prefetch_raised_after_construction_is_refused_before_allocating():
    """Checked again when iteration starts, in a child whose address space is capped at
    4 GiB: the refusal must come before the hand-over slots are set up."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import resource
        import numpy as np
        from npydir import Batches
        b = Batches(np.zeros((10_000, 2), np.float32), window=16, batch_size=8, prefetch=2)
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        b.prefetch = 10**9
        try:
            next(iter(b))
        except ValueError as e:
            print("ValueError:", e)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.startswith("ValueError: Batches: prefetch=1000000000"), proc.stderr[-2000:]
