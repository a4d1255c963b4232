"""start_gather_windows: the kernel's copies in the background runners.

A job checks its arguments when it starts (raising as gather_windows does, with nothing
queued), its copy runs on a process-wide C runner thread, and ``result()`` waits for it
without the GIL.  Lanes run their copies in order, at most ``concurrency`` at a time; the
default lane one at a time.  Cancelling or dropping a job withdraws a queued copy (its output
is never written) or waits for a running one; the job keeps x, starts and out alive until
then, even through the garbage collector.  A file that shrinks under a queued copy makes
``result()`` an OSError naming it, and a job started before fork() is a RuntimeError in the
child rather than a hang.

Several tests need a copy to be still queued at a given moment: they queue it behind
"blockers", copies that take tens of milliseconds (float16 -> float32 with reflect padding,
40 MB of output, one thread), in a lane of one.
"""

from __future__ import annotations

import gc
import os
import re
import threading
import time
import weakref

import numpy as np
import pytest
from _fork import run_child
from _threads import run_in_threads
from hypothesis import given, settings
from hypothesis import strategies as st

from npydir.kernel import _windows
from npydir.kernel.windows import (
    CopyLane,
    GatherJob,
    gather_windows,
    gather_windows_reference,
    start_gather_windows,
)

from test_windows import assert_gil_released, assert_same, make_x

TIMEOUT = 60.0  # seconds; generous, for a busy 2-core VM
SENTINEL = 7777.5  # far outside the data of make_x (normal * 100) and of scaled int16


def wait_until(pred, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.0005)


@pytest.fixture(autouse=True)
def quiet_runners():
    """Every test starts (and must end) with no copy queued or running in this process."""
    wait_until(lambda: _windows.runner_inflight() == 0, "copies of an earlier test")
    yield
    gc.collect()
    wait_until(lambda: _windows.runner_inflight() == 0, "this test's copies")


# --- blockers: copies long enough to queue others behind ----------------------------------------

BLOCK_WINDOW = 20_000


class _BlockerData:
    def __init__(self) -> None:
        rng = np.random.default_rng(5)
        self.x = (rng.standard_normal(5000) * 100).astype(np.float16)
        self.starts = rng.integers(-20_000, 20_000, 500)
        self.kw = dict(dtype=np.float32, pad="reflect", threads=1)
        self.want = gather_windows(self.x, self.starts, BLOCK_WINDOW, **self.kw)
        self.outs = [np.zeros_like(self.want) for _ in range(4)]  # pages touched once


@pytest.fixture(scope="module")
def blocker_data():
    return _BlockerData()


class Blockers:
    """Start long copies (at most 4 per test: each writes its own pre-touched buffer)."""

    def __init__(self, data: _BlockerData) -> None:
        self.data = data
        self.used = 0
        self.jobs: list[GatherJob] = []

    def check(self, out: np.ndarray) -> None:
        """out holds a blocker's batch (np.array_equal: no NaN here, and 40x faster)."""
        assert np.array_equal(out, self.data.want), "a blocker's batch is wrong"

    def start(self, lane: CopyLane | None) -> tuple[GatherJob, np.ndarray]:
        assert self.used < len(self.data.outs), "a test may start 4 blockers"
        out = self.data.outs[self.used]
        self.used += 1
        d = self.data
        job = start_gather_windows(d.x, d.starts, BLOCK_WINDOW, out=out, lane=lane, **d.kw)
        self.jobs.append(job)
        return job, out


@pytest.fixture
def blockers(blocker_data):
    b = Blockers(blocker_data)
    yield b
    for job in b.jobs:
        job.cancel()


def wait_running(lane: CopyLane, count: int = 1) -> None:
    wait_until(lambda: lane.running >= count, f"{count} running copies in the lane")


# Medium copies: plain float32, 500 windows of 1000 rows x 8 channels (16 MB), a few ms.
@pytest.fixture(scope="module")
def medium():
    rng = np.random.default_rng(11)
    x = make_x(1 << 17, 8, np.float32, seed=11)
    cases = []
    for k in range(6):
        starts = rng.integers(0, x.shape[0] - 1000, 500)
        cases.append((starts, gather_windows_reference(x, starts, 1000)))
    return x, cases


def sentinel_like(a: np.ndarray) -> np.ndarray:
    return np.full(a.shape, SENTINEL, a.dtype)


def untouched(out: np.ndarray) -> bool:
    return bool(np.all(out == out.dtype.type(SENTINEL)))


# --- 1. the background copy is gather_windows ----------------------------------------------------

PADS = ["error", "zero", "edge", "reflect"]
# (x dtype, output dtype, scale)
CASTS = [
    (np.float32, None, None),
    (np.int16, None, None),
    (np.uint8, None, None),
    (np.float64, None, None),
    (np.bool_, None, None),
    (np.int16, np.float32, 1 / 32768),  # the loader's cast
    (np.int16, np.float64, None),
    (np.float32, np.float64, -0.5),
    (np.float16, np.float32, None),
    (np.uint8, np.float32, 2.0),
    (np.int16, np.int32, None),  # outside the one-pass kernel: copied at start
    (np.float32, np.float16, None),  # likewise
]
LAYOUTS = ["c", "fortran", "strided", "reversed", "1d", "1d-strided", "misaligned",
           "memmap", "memmap-strided", "memmap-1d"]


@pytest.fixture(scope="module")
def map_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("maps")


_map_count = [0]


def _memmap(a: np.ndarray, directory) -> np.memmap:
    _map_count[0] += 1
    path = directory / f"x{_map_count[0]}.npy"
    np.save(path, a)
    m = np.load(path, mmap_mode="r")
    assert isinstance(m, np.memmap)
    return m


def _layout(x2: np.ndarray, c: int, layout: str, directory) -> np.ndarray:
    """A view of x2[:, :c] (x2 has 2c channels) in the given layout."""
    if layout == "c":
        return np.ascontiguousarray(x2[:, :c])
    if layout == "fortran":
        return np.asfortranarray(x2[:, :c])
    if layout == "strided":
        return x2[:, ::2]
    if layout == "reversed":
        return x2[::-1, c - 1 :: -1]
    if layout == "1d":
        return np.ascontiguousarray(x2[:, 0])
    if layout == "1d-strided":
        return x2[:, 0]
    if layout == "misaligned":
        a = np.ascontiguousarray(x2[:, :c])
        buf = np.zeros(a.nbytes + 1, np.uint8)
        m = buf[1:].view(a.dtype).reshape(a.shape)
        m[...] = a
        return m
    if layout == "memmap":
        return _memmap(np.ascontiguousarray(x2[:, :c]), directory)
    if layout == "memmap-strided":
        return _memmap(x2, directory)[:, ::2]
    if layout == "memmap-1d":
        return _memmap(np.ascontiguousarray(x2[:, 0]), directory)
    raise AssertionError(layout)


@st.composite
def cases(draw):
    layout = draw(st.sampled_from(LAYOUTS))
    n = draw(st.integers(0 if layout in ("c", "fortran", "strided") else 1, 50))
    c = draw(st.integers(1, 4))
    src, target, scale = draw(st.sampled_from(CASTS))
    window = draw(st.integers(1, 70))
    step = draw(st.integers(1, 5))
    pad = draw(st.sampled_from(PADS if n else ["zero"]))
    if pad == "error":
        window = min(window, n)
        starts = draw(st.lists(st.integers(0, n - window), max_size=12))
    else:
        starts = draw(st.lists(st.integers(-2 * window - n, 2 * window + n), max_size=12))
    as_array = draw(st.booleans())
    give_out = draw(st.booleans())
    threads = draw(st.sampled_from([None, 1, 2]))
    nontemporal = draw(st.booleans())
    concurrency = draw(st.integers(0, 3))  # 0: the default lane
    njobs = draw(st.integers(1, 3))
    order = draw(st.permutations(range(njobs)))
    seed = draw(st.integers(0, 2**16))
    return (layout, n, c, src, target, scale, window, step, pad, starts, as_array, give_out,
            threads, nontemporal, concurrency, order, seed)


@settings(max_examples=150, deadline=None)
@given(case=cases())
def test_property_background_equals_gather_windows(case, map_dir):
    (layout, n, c, src, target, scale, window, step, pad, starts, as_array, give_out,
     threads, nontemporal, concurrency, order, seed) = case
    x = _layout(make_x(n, 2 * c, src, seed), c, layout, map_dir)
    st_arg = np.array(starts, np.int64) if as_array else starts
    kw = dict(step=step, dtype=target, scale=scale, pad=pad)
    want = gather_windows_reference(x, np.array(starts, np.int64), window, **kw)
    sync = gather_windows(x, st_arg, window, threads=threads, nontemporal=nontemporal, **kw)
    assert_same(sync, want)
    lane = None if concurrency == 0 else CopyLane(concurrency)
    jobs = []
    for _ in order:
        out = np.full(want.shape, 3, want.dtype) if give_out else None
        job = start_gather_windows(x, st_arg, window, out=out, threads=threads,
                                   nontemporal=nontemporal, lane=lane, **kw)
        assert isinstance(job, GatherJob)
        if (want.size == 0 or layout == "misaligned" and x.dtype.itemsize > 1
                or target is not None and np.dtype(target) in (np.int32, np.float16)):
            assert job.done()  # documented: copied now, in the calling thread
        jobs.append((job, out))
    for k in order:
        job, out = jobs[k]
        got = job.result()
        if out is not None:
            assert got is out
        assert_same(got, want)
        assert job.done()
        assert job.result() is got  # a second result() returns the same batch
    if lane is not None:
        assert lane.running == 0


# --- 2. errors are raised at start, with nothing queued -------------------------------------------


def test_errors_are_raised_at_start_and_queue_nothing():
    x = make_x(100, 2, np.float32)
    xi = make_x(100, 2, np.int16)
    lane = CopyLane(2)
    before = (_windows.runner_inflight(), _windows.runner_tasks())
    assert before[0] == 0
    paths = [  # plain, the casting kernel, a cast it does not cover, a strided view
        (x, {}),
        (x, dict(dtype=np.float64)),
        (xi, dict(dtype=np.float32, scale=0.5)),
        (xi, dict(dtype=np.int32)),
        (x[:, ::2], {}),
    ]
    for lane_arg in (None, lane):
        for xv, kw in paths:
            nch = xv.shape[1]
            dt = np.dtype(kw.get("dtype", xv.dtype))
            for give_out in (False, True):
                out = np.full((4, 10, nch), SENTINEL, dt) if give_out else None
                with pytest.raises(IndexError, match=r"start 95 at index 2 .*\[0, 90\]"):
                    start_gather_windows(xv, [0, 5, 95, 200], 10, out=out, lane=lane_arg, **kw)
                with pytest.raises(IndexError, match=r"start -1 at index 0"):
                    start_gather_windows(xv, np.array([-1, 3, 4, 5], np.int64), 10, out=out,
                                         lane=lane_arg, threads=1, **kw)
                if out is not None:
                    assert untouched(out)  # nothing was copied before the check
            with pytest.raises(IndexError, match=r"window 200 is longer than x \(100 samples\)"):
                start_gather_windows(xv, [0], 200, lane=lane_arg, **kw)
        bad = [
            (dict(dtype=np.int16, scale=2.0), ValueError, "scale needs a floating-point"),
            (dict(dtype=object), TypeError, "object dtypes"),
            (dict(out=np.empty((2, 4, 3), np.float32)), ValueError, r"out has shape"),
            (dict(out=np.empty((2, 4, 2), np.float64), dtype=np.float32), ValueError,
             "out has dtype float64, expected dtype=float32"),
            (dict(out=np.empty((2, 4, 2), np.float32), dtype=np.float64), ValueError,
             "expected dtype=float64"),
            (dict(out=np.empty((2, 4, 4), np.float32)[:, :, ::2]), ValueError, "C-contiguous"),
            (dict(out=[[0.0]]), TypeError, "out must be a numpy array"),
            (dict(step=0), ValueError, "step must be a positive integer"),
            (dict(pad="wrap"), ValueError, "pad must be one of"),
            (dict(threads=0), ValueError, "threads must be >= 1"),
        ]
        for kw, exc, match in bad:
            with pytest.raises(exc, match=match):
                start_gather_windows(x, [0, 1], 4, lane=lane_arg, **kw)
        big = np.zeros((100, 2), np.float32)
        with pytest.raises(ValueError, match="overlaps x"):
            start_gather_windows(big[:50], [0, 1], 4, out=big[40:48].reshape(2, 4, 2),
                                 lane=lane_arg)
    with pytest.raises(TypeError):
        start_gather_windows(x, [0, 1], 4, lane="lane")  # not a CopyLane
    assert (_windows.runner_inflight(), _windows.runner_tasks()) == before
    assert lane.running == 0
    # and the lane still works afterwards
    assert_same(start_gather_windows(x, [0, 90], 10, lane=lane).result(),
                gather_windows_reference(x, [0, 90], 10))


# --- 3. lanes: order, concurrency ----------------------------------------------------------------


def test_copy_lane_bounds():
    for bad in (0, -1, 65):
        with pytest.raises(ValueError, match=r"concurrency must lie in \[1, 64\]"):
            CopyLane(bad)
    assert CopyLane(1).concurrency == 1
    assert CopyLane(64).concurrency == 64  # (never submitted to: no 64 runner threads here)
    assert CopyLane().concurrency == 1
    assert CopyLane(3).running == 0


@pytest.fixture
def spins():
    """Set the runners' and waiters' spins for one test, then restore them."""
    saved = _windows.tune()
    yield
    _windows.tune(runner_spin_ns=saved["runner_spin_ns"], wait_spin_ns=saved["wait_spin_ns"])


@pytest.mark.parametrize(
    "runner_spin_ns, wait_spin_ns",
    [(None, None), (0, 0), (0, 10**6), (10**6, 0)],
    ids=["defaults", "no-spin", "waiters-spin", "runners-spin"],
)
def test_many_jobs_in_one_lane(spins, runner_spin_ns, wait_spin_ns):
    # without spins every hand-over goes through the condition variables' sleep and wake
    _windows.tune(runner_spin_ns=runner_spin_ns, wait_spin_ns=wait_spin_ns)
    x = make_x(5000, 3, np.int16, seed=3)
    rng = np.random.default_rng(3)
    lane = CopyLane(3)
    specs = []
    for k in range(40):
        starts = rng.integers(-50, 5000, 30)
        kw = dict(pad="edge", step=1 + k % 3)
        if k % 2:
            kw.update(dtype=np.float32, scale=1 / 32768)
        specs.append((starts, kw, gather_windows_reference(x, starts, 64, **kw)))
    jobs = [start_gather_windows(x, s, 64, lane=lane, threads=1 + k % 2, **kw)
            for k, (s, kw, _) in enumerate(specs)]
    for job, (_, _, want) in zip(jobs, specs):
        assert_same(job.result(), want)
    assert lane.running == 0


def assert_done_in_order(jobs: list[GatherJob], timeout: float = TIMEOUT) -> None:
    """Until all are done: no job is done while one queued before it is not.

    done() only goes from False to True, so reading the flags from the last job to the first
    makes a violation visible: a later job seen done before an earlier one seen not done."""
    deadline = time.monotonic() + timeout
    while True:
        flags = [job.done() for job in reversed(jobs)][::-1]
        for k in range(1, len(flags)):
            assert not (flags[k] and not flags[k - 1]), f"job {k} done before job {k - 1}: {flags}"
        if all(flags):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"jobs not done in time: {flags}")


@pytest.mark.parametrize("lane_kind", ["default", "lane-of-1"])
def test_jobs_of_a_one_copy_lane_complete_in_order(lane_kind, medium):
    x, cases_ = medium
    lane = None if lane_kind == "default" else CopyLane(1)
    jobs = [start_gather_windows(x, s, 1000, lane=lane, threads=1) for s, _ in cases_]
    assert _windows.runner_threads() >= 1
    assert_done_in_order(jobs)
    for job, (_, want) in zip(jobs, cases_):
        assert_same(job.result(), want)


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_lane_never_runs_more_than_its_concurrency(concurrency, medium):
    x, cases_ = medium
    lane = CopyLane(concurrency)
    # fresh outputs: page faults make each copy longer, so copies overlap for a while
    jobs = [start_gather_windows(x, cases_[k % len(cases_)][0], 1000, lane=lane, threads=1)
            for k in range(3 * concurrency + 3)]
    assert _windows.runner_threads() >= concurrency
    seen = set()
    deadline = time.monotonic() + TIMEOUT
    while not all(job.done() for job in jobs):
        seen.add(lane.running)
        assert time.monotonic() < deadline, "lane did not finish"
    seen.add(lane.running)
    assert max(seen) <= concurrency, seen
    # That a lane of k does reach k copies at once is shown deterministically, with a barrier
    # inside the copies, by tests/kernel/c/test_runner.c; polling from here cannot promise to
    # see it on a loaded machine (under ASan it did not).
    assert lane.running == 0
    for k, job in enumerate(jobs):
        assert_same(job.result(), cases_[k % len(cases_)][1])


# --- 4. cancellation ----------------------------------------------------------------------------


def test_cancel_withdraws_queued_copies_and_waits_for_the_running_one(blockers, medium):
    x, cases_ = medium
    lane = CopyLane(1)
    tasks0 = _windows.runner_tasks()
    outs = [sentinel_like(cases_[k][1]) for k in range(5)]
    b, b_out = blockers.start(lane)
    wait_running(lane)  # b is running now; everything below queues behind it
    b2, b2_out = blockers.start(lane)  # more time for the test to act while jobs are queued
    jobs = [start_gather_windows(x, cases_[k][0], 1000, out=outs[k], lane=lane, threads=1)
            for k in range(5)]
    assert not any(job.done() for job in jobs), "the blockers ended too early"
    j0, j1, j2, j3, j4 = jobs
    del jobs
    # withdraw from the back of the queue: each is still behind b, b2 and j0
    assert j4.cancel() is True
    assert j3.cancel() is True
    assert j4.done() and j3.done()
    assert j4.cancel() is False  # nothing left to withdraw
    del j2, j1  # dropped while queued: withdrawn, they never run
    # the running one: cancel waits for it and says it was too late
    assert b.cancel() is False
    assert b.done()
    blockers.check(b_out)
    b2.result()
    blockers.check(b2_out)
    got = j0.result()
    assert got is outs[0]
    assert_same(got, cases_[0][1])
    # b, b2 and j0 ran; the four others never did
    assert _windows.runner_inflight() == 0
    assert _windows.runner_tasks() - tasks0 == 3
    for k in (1, 2, 3, 4):
        assert untouched(outs[k]), f"withdrawn job {k} wrote its output"
    # a withdrawn job's result() says so (its batch was never filled), every time
    for _ in range(2):
        with pytest.raises(RuntimeError, match="cancelled before it ran"):
            j4.result()
    assert untouched(outs[4])
    # one that was too late to withdraw still gives its batch
    blockers.check(b.result())


def test_cancel_of_a_finished_job_is_false():
    x = make_x(300, 2, np.float32)
    job = start_gather_windows(x, [0, 10], 50)
    want = gather_windows_reference(x, [0, 10], 50)
    wait_until(job.done, "a small copy")
    assert job.cancel() is False
    assert_same(job.result(), want)


# --- 5. lifetime ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "plain-out", "cast-out", "strided-view"])
def test_job_keeps_x_starts_and_out_alive(kind, blockers):
    lane = CopyLane(1)

    def start():  # everything but the job goes out of scope on return
        base = make_x(20_000, 6, np.int16 if kind == "cast-out" else np.float32, seed=9)
        x = base[:, ::2] if kind == "strided-view" else base
        starts = np.random.default_rng(9).integers(-100, 20_000, 300)
        kw = dict(pad="reflect", dtype=np.float32, scale=0.25) if kind == "cast-out" \
            else dict(pad="reflect")
        want = gather_windows(x, starts, 500, **kw)
        out = sentinel_like(want) if kind.endswith("-out") else None
        refs = [weakref.ref(base), weakref.ref(starts)]
        if out is not None:
            refs.append(weakref.ref(out))
        for _ in range(4):  # queued behind ~100 ms of copies
            blockers.start(lane)
        job = start_gather_windows(x, starts, 500, out=out, lane=lane, threads=1, **kw)
        return job, want, refs

    job, want, refs = start()
    # the caller's references are gone and the copy has not run yet
    assert not job.done(), "the blockers ended too early"
    gc.collect()
    assert all(r() is not None for r in refs)  # the job holds them
    # reuse freed memory, in case something was freed early
    junk = [np.full(want.shape, -1, want.dtype) for _ in range(3)]
    got = job.result()
    del junk
    assert_same(got, want)
    del got, job
    gc.collect()
    assert all(r() is None for r in refs), "the finished job leaked its arrays"
    for j, out in zip(blockers.jobs, blockers.data.outs):
        j.result()
        blockers.check(out)


class _Holder(np.ndarray):
    """An output array that can refer to its own job (a reference cycle)."""


@pytest.mark.parametrize("state", ["running", "queued"])
def test_job_in_a_reference_cycle_collected_while_copying(state, blockers):
    """gc collects a cycle out -> job -> PendingCopy -> out while the copy runs (or is
    queued): the PendingCopy (no_gc_clear) must wait for (or withdraw) its copy before the
    output it writes is freed."""
    lane = CopyLane(1)
    d = blockers.data
    out = np.zeros_like(d.want).view(_Holder)  # 40 MB, written for tens of ms
    tasks0 = _windows.runner_tasks()
    if state == "queued":
        for _ in range(3):
            blockers.start(lane)
        wait_running(lane)
    job = start_gather_windows(d.x, d.starts, BLOCK_WINDOW, out=out, lane=lane, **d.kw)
    out.job = job  # out -> job -> (batch, pending -> keep) -> out
    assert job._batch is out
    ref = weakref.ref(out)
    if state == "running":
        wait_running(lane)
    assert not job.done(), "the copy ended before the collection"
    del out, job
    assert ref() is not None  # only the cycle holds it now
    gc.collect()
    assert ref() is None, "gc did not collect the cycle"
    assert gc.garbage == []
    # collected means waited for or withdrawn: nothing of it is in flight any more
    for j in blockers.jobs:
        j.result()
    assert _windows.runner_inflight() == 0
    ran = _windows.runner_tasks() - tasks0
    if state == "running":
        assert ran == 1  # it was waited for, not abandoned
    else:
        assert ran in (3, 4)  # the blockers, and it if it started before gc reached it
    # the process is fine: allocate over the freed memory and copy again
    junk = [np.full(d.want.shape, 1.0, np.float32) for _ in range(2)]
    assert all(np.all(j == 1.0) for j in junk)
    x = make_x(400, 2, np.float32)
    assert_same(start_gather_windows(x, [0, 300], 100, lane=lane).result(),
                gather_windows_reference(x, [0, 300], 100))


# --- 6. threads ----------------------------------------------------------------------------------


def test_python_threads_start_collect_and_cancel_concurrently():
    x = make_x(30_000, 8, np.float32, seed=21)
    xi = make_x(30_000, 4, np.int16, seed=22)
    rng = np.random.default_rng(21)
    specs = []
    for k in range(8):
        src = x if k % 2 else xi
        kw = dict(pad=PADS[k % 4], step=1 + k % 2)
        if src is xi:
            kw.update(dtype=np.float32, scale=1 / 32768)
        lo, hi = (0, 30_000 - 256) if kw["pad"] == "error" else (-300, 30_000)
        starts = rng.integers(lo, hi, 200)
        specs.append((src, starts, kw, gather_windows(src, starts, 256, **kw)))
    shared = CopyLane(2)
    counts = {"ran": 0, "withdrawn": 0}
    lock = threading.Lock()

    def work(t):
        r = np.random.default_rng(100 + t)
        queue = []

        def collect(job, out, want, cancel):
            if cancel:
                if job.cancel():
                    assert untouched(out)
                    key = "withdrawn"
                else:
                    np.testing.assert_array_equal(out, want)
                    key = "ran"
                with lock:
                    counts[key] += 1
            else:
                got = job.result()
                assert got is out
                np.testing.assert_array_equal(got, want)

        for i in range(40):
            src, starts, kw, want = specs[int(r.integers(len(specs)))]
            out = sentinel_like(want)
            lane = shared if i % 2 else None
            job = start_gather_windows(src, starts, 256, out=out, lane=lane,
                                       threads=1 + int(r.integers(2)), **kw)
            queue.append((job, out, want, i % 5 == 0))
            if len(queue) > 3:
                collect(*queue.pop(int(r.integers(len(queue)))))
        while queue:
            collect(*queue.pop())

    run_in_threads(work, 4)
    assert counts["ran"] + counts["withdrawn"] == 4 * 8
    assert _windows.runner_inflight() == 0
    assert shared.running == 0


def test_waiting_for_a_job_releases_the_gil(blockers):
    lane = CopyLane(1)
    jobs = []

    def call():
        jobs.append(blockers.start(lane))
        jobs.append(blockers.start(lane))
        jobs[1][0].result()  # waits for both copies, tens of ms

    assert_gil_released(call)
    for job, out in jobs:
        assert job.done()
        blockers.check(out)


def test_a_counter_thread_runs_during_result(blockers):
    counter = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        lane = CopyLane(1)
        blockers.start(lane)
        job, out = blockers.start(lane)
        c0 = counter[0]
        job.result()
        c1 = counter[0]
    finally:
        stop.set()
        t.join()
    assert c1 - c0 > 1000, (c0, c1)
    blockers.check(out)


# --- 7. a file that shrinks under a queued copy ---------------------------------------------------


def test_file_truncated_under_a_queued_copy_raises_oserror(tmp_path, blockers):
    n = 1 << 16
    path = tmp_path / "x.npy"
    np.save(path, np.arange(n * 4, dtype=np.float32).reshape(n, 4))  # 1 MB
    x = np.load(path, mmap_mode="r")
    assert isinstance(x, np.memmap)
    window = 256
    starts = np.array([0, n // 2, n - window - 100, n - window], np.int64)  # to the end
    lane = CopyLane(1)
    for _ in range(2):
        blockers.start(lane)
    jobs = [start_gather_windows(x, starts, window, lane=lane, threads=1),
            start_gather_windows(x, starts, window, lane=lane, threads=2),
            start_gather_windows(x, starts, window, lane=lane, dtype=np.float64, scale=0.5)]
    os.truncate(path, 4096)
    assert not any(job.done() for job in jobs), "the blockers ended before the truncation"
    for job in jobs:
        for _ in range(2):  # the error stays: a second result() never hands out the batch
            with pytest.raises(OSError, match=re.escape(str(path))) as info:
                job.result()
            assert "shrank" in str(info.value)
    for job, out in zip(blockers.jobs, blockers.data.outs):
        assert job.done()
        blockers.check(out)
    # still an error on the truncated map, and fine on intact arrays
    with pytest.raises(OSError, match=re.escape(str(path))):
        start_gather_windows(x, starts, window).result()
    good = make_x(n, 4, np.float32)
    assert_same(start_gather_windows(good, starts, window, lane=lane).result(),
                gather_windows_reference(good, starts, window))
    path2 = tmp_path / "y.npy"
    np.save(path2, good)
    y = np.load(path2, mmap_mode="r")
    assert_same(start_gather_windows(y, starts, window, threads=2).result(),
                gather_windows_reference(good, starts, window))
    del x, y


# --- 8. fork -------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_job_queued_across_fork_is_an_error_in_the_child(blockers):
    x = make_x(50_000, 4, np.float32, seed=31)
    starts = np.random.default_rng(31).integers(0, 50_000 - 512, 300)
    want = gather_windows_reference(x, starts, 512)
    lane = CopyLane(1)
    b1, _ = blockers.start(lane)
    blockers.start(lane)
    wait_running(lane)
    job = start_gather_windows(x, starts, 512, lane=lane, threads=1)

    def child() -> int:
        try:
            if _windows.runner_inflight() != 0:
                return 10
            for k, j in enumerate((b1, job)):
                try:
                    j.result()
                except RuntimeError as e:
                    if "fork" not in str(e):
                        return 11
                else:
                    return 12 + k  # the parent's copy "finished" in the child
            # the child's own copies work, in the same lane and in the default one
            for lane_arg in (lane, None):
                j = start_gather_windows(x, starts, 512, lane=lane_arg, threads=2)
                if not np.array_equal(j.result(), want):
                    return 14
            if _windows.runner_inflight() != 0 or _windows.runner_threads() < 1:
                return 15
            return 0
        except BaseException:
            return 20

    assert not job.done(), "the blockers ended before the fork"
    code = run_child(child, TIMEOUT)
    assert code == 0, {10: "inflight copies in the child", 11: "wrong RuntimeError",
                       12: "blocker returned in the child", 13: "job returned in the child",
                       14: "child's own copy wrong", 15: "runner state after child's copies",
                       20: "unexpected exception"}.get(code, code)
    # the parent's copies are untouched by the fork
    assert_same(job.result(), want)
    for j, out in zip(blockers.jobs, blockers.data.outs):
        j.result()
        blockers.check(out)
