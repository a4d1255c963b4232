"""The kernel's two prefetch schemes and its pool of helper threads.

Small windows are copied in two passes over blocks (prefetch every line into L2, then copy);
long windows prefetch a few windows ahead.  Both must give the reference's answer for every
layout, dtype, pad and thread count, including windows right at the threshold and blocks cut
by chunk boundaries.  The helper threads are pooled: they must persist between calls, stay
bounded, sleep when idle, and be rebuilt in a forked child (a torch DataLoader forks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from _fork import run_child as _run_child
from _threads import run_in_threads

from npydir.kernel import _windows
from npydir.kernel.windows import gather_windows, gather_windows_reference

from test_windows import assert_same, make_x

ROW = 9 * 4  # bytes per row of the float32 [n, 9] arrays used below


@pytest.fixture
def tuned():
    """Set kernel tunables for one test and restore them afterwards."""
    saved = _windows.tune()
    yield _windows.tune
    _windows.tune(**saved)


# --- both prefetch schemes against the reference ---------------------------------------------

# Windows (rows of 36 bytes) around a 2 KiB threshold: 56 rows = 2016 bytes (block mode),
# 57 rows = 2052 bytes (prefetch ahead).  block_bytes=4096 makes blocks of 2 windows of 56
# rows, so chunk boundaries cut through blocks too.
THRESHOLD = 2048
SCHEMES = {
    # ahead_plain=False: plain copies of whole windows inside x take the blocks too
    "blocks-only": dict(small_window=1 << 30, ahead_plain=False),
    "ahead-only": dict(small_window=0),
    "threshold-2k": dict(small_window=THRESHOLD, block_bytes=4096, ahead_plain=False),
    "one-window-blocks": dict(small_window=1 << 30, block_bytes=64, ahead_plain=False),
    # as shipped: plain copies inside x ahead, padded windows and casts in small blocks
    "default-small-blocks": dict(small_window=1 << 30, block_bytes=4096),
}
CASTS = [
    (np.float32, None, None),
    (np.int16, np.float32, 1 / 32768),
    (np.float16, np.float32, None),
    (np.uint8, np.float64, 0.5),
    (np.float64, None, None),
]


@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize("src,dtype,scale", CASTS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_schemes_match_reference(tuned, scheme, src, dtype, scale, tmp_path):
    tuned(**SCHEMES[scheme])
    n = 3000
    x = make_x(n, 9, src, seed=3)
    path = tmp_path / "x.npy"
    np.save(path, x)
    rng = np.random.default_rng(4)
    for xv in (x, np.load(path, mmap_mode="r")):
        for window in (1, 2, 55, 56, 57, 58, 200, 700):
            for step in (1, 2, 5):
                for pad in ("error", "reflect", "zero"):
                    if pad == "error":
                        starts = rng.integers(0, n - window + 1, 37)
                    else:  # a mix of inside and padded windows within each block
                        starts = rng.integers(-window, n, 37)
                    kw = dict(step=step, pad=pad, dtype=dtype, scale=scale)
                    want = gather_windows_reference(xv, starts, window, **kw)
                    for threads in (1, 2, 3, 4):
                        got = gather_windows(xv, starts, window, threads=threads, **kw)
                        assert_same(got, want)


@pytest.mark.parametrize("scheme", ["blocks-only", "ahead-only", "threshold-2k"])
def test_strided_layouts_match_reference(tuned, scheme):
    """Layouts that never qualify for blocks (or barely do) still take the right path."""
    tuned(**SCHEMES[scheme])
    x = make_x(2000, 18, np.float32, seed=5)
    rng = np.random.default_rng(6)
    views = [x[:, ::2], x[::-1, :9], np.asfortranarray(x[:, :9]), x[:, 3:12], x[::2, :9]]
    for xv in views:
        for window in (56, 57, 300):
            starts = rng.integers(0, len(xv) - window + 1, 50)
            want = gather_windows_reference(xv, starts, window, dtype=np.float64)
            for threads in (1, 3):
                got = gather_windows(xv, starts, window, threads=threads, dtype=np.float64)
                assert_same(got, want)


def test_many_python_threads_with_pooled_helpers(tuned):
    """Concurrent calls, each asking for helpers: one owns the pool, the rest run alone."""
    tuned(small_window=THRESHOLD)
    x = make_x(40_000, 9, np.int16)
    rng = np.random.default_rng(8)
    jobs = []
    for k in range(12):
        window = (16, 56, 57, 512)[k % 4]
        starts = rng.integers(-window, 40_000, 300)
        kw = dict(pad="edge", dtype=np.float32, scale=1 / 32768) if k % 2 else dict(pad="edge")
        jobs.append((starts, window, kw, 1 + k % 4))
    want = [gather_windows_reference(x, s, w, **kw) for s, w, kw, _ in jobs]
    got: dict[int, list[np.ndarray]] = {k: [] for k in range(len(jobs))}
    barrier = threading.Barrier(len(jobs))

    def work(k):
        starts, window, kw, threads = jobs[k]
        barrier.wait()
        for _ in range(20):
            got[k].append(gather_windows(x, starts, window, threads=threads, **kw))

    run_in_threads(work, len(jobs))
    for k in range(len(jobs)):
        for g in got[k]:
            assert_same(g, want[k])


def test_tune_checks_its_arguments(tuned):
    with pytest.raises(ValueError, match="block_bytes"):
        tuned(block_bytes=0)
    with pytest.raises(ValueError, match="block_bytes"):
        tuned(block_bytes=1 << 20)
    with pytest.raises(ValueError, match="small_window"):
        tuned(small_window=-1)
    with pytest.raises(ValueError, match="spin_ns"):
        tuned(spin_ns=-5)
    with pytest.raises(ValueError, match="runner_spin_ns"):
        tuned(runner_spin_ns=-5)
    with pytest.raises(ValueError, match="wait_spin_ns"):
        tuned(wait_spin_ns=-5)
    spins = tuned(runner_spin_ns=1234, wait_spin_ns=567)
    assert (spins["runner_spin_ns"], spins["wait_spin_ns"]) == (1234, 567)
    assert tuned(spin_ns=89)["runner_spin_ns"] == 1234  # the helpers' spin is their own
    with pytest.raises(ValueError, match="advise_min_bytes"):
        tuned(advise_min_bytes=-1)
    assert tuned(block_bytes=8192)["block_bytes"] == 8192
    assert tuned(advise_min_bytes=0)["advise_min_bytes"] == 0
    assert tuned(ahead_plain=False)["ahead_plain"] is False


# --- the pool ----------------------------------------------------------------------------------

POOL_CHILD = textwrap.dedent(
    """
    import os, threading, sys, time
    import numpy as np
    from npydir.kernel import _windows
    from npydir.kernel.windows import gather_windows, gather_windows_reference

    def os_threads():
        with open("/proc/self/status") as f:
            return int(next(l for l in f if l.startswith("Threads:")).split()[1])

    x = np.random.default_rng(0).standard_normal((20000, 9)).astype(np.float32)
    starts = np.random.default_rng(1).integers(0, 20000 - 64, 500)
    want = gather_windows_reference(x, starts, 64)
    assert _windows.pool_helpers() == 0
    before = os_threads()  # numpy's BLAS may have started threads of its own
    bad = []

    def work():
        for _ in range(200):
            if not np.array_equal(gather_windows(x, starts, 64, threads=3), want):
                bad.append(1)

    ts = [threading.Thread(target=work) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    # 1200 threaded calls from 6 threads: two helpers in all, started once and kept.  (A
    # joined Python thread may take a moment to leave the OS thread list.)
    for _ in range(200):
        if os_threads() - before <= 2:
            break
        time.sleep(0.01)
    print(_windows.pool_helpers(), os_threads() - before, len(bad))
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_pool_is_persistent_and_bounded():
    proc = subprocess.run([sys.executable, "-c", POOL_CHILD], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    helpers, new_threads, bad = map(int, proc.stdout.split())
    assert bad == 0
    assert helpers == 2  # threads=3 is the caller and two helpers
    assert new_threads == 2  # the two pooled helpers are all that is left


def test_idle_helpers_sleep():
    """After a threaded call the helpers spin for microseconds, then use no CPU."""
    x = make_x(20_000, 9, np.float32)
    starts = np.random.default_rng(2).integers(0, 20_000 - 64, 400)
    gather_windows(x, starts, 64, threads=2)
    assert _windows.pool_helpers() >= 1
    time.sleep(0.05)  # far longer than the spin
    t0, c0 = time.monotonic(), time.process_time()
    time.sleep(0.5)
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    # A helper spinning while idle would show as about one core busy (cpu close to wall).
    assert cpu < 0.2 * wall, (cpu, wall)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_starts_its_own_helpers():
    x = make_x(30_000, 9, np.float32)
    starts = np.random.default_rng(3).integers(0, 30_000 - 64, 600)
    want = gather_windows_reference(x, starts, 64)
    assert_same(gather_windows(x, starts, 64, threads=2), want)
    assert _windows.pool_helpers() >= 1  # the parent has helpers now

    def child():
        if _windows.pool_helpers() != 0:  # the parent's helpers do not exist here
            return 3
        for _ in range(50):
            if not np.array_equal(gather_windows(x, starts, 64, threads=2), want):
                return 2
        return 0 if _windows.pool_helpers() == 1 else 4

    assert _run_child(child) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_owns_the_pool():
    """Fork while a second Python thread is inside a threaded call: the child's pool is free."""
    x = make_x(200_000, 9, np.float32)
    starts = np.random.default_rng(4).integers(0, 200_000 - 256, 4000)
    want = gather_windows_reference(x, starts, 256)
    stop = threading.Event()
    calls = [0]

    def busy():
        out = np.empty_like(want)
        while not stop.is_set():
            gather_windows(x, starts, 256, out=out, threads=2)
            calls[0] += 1

    t = threading.Thread(target=busy)
    t.start()
    try:
        while calls[0] < 3:
            time.sleep(0.001)

        def child():
            small = starts[:200]
            for _ in range(20):
                if not np.array_equal(gather_windows(x, small, 256, threads=2), want[:200]):
                    return 2
            # The pool was owned by a thread that does not exist here; had its flag survived
            # the fork, every call would have run alone and started no helper.
            return 0 if _windows.pool_helpers() == 1 else 3

        codes = [_run_child(child) for _ in range(5)]
    finally:
        stop.set()
        t.join()
    assert codes == [0] * 5


# --- non-temporal stores (nontemporal=True) ----------------------------------------------------


@pytest.mark.parametrize("window", [1, 3, 16, 64, 341, 4096])
@pytest.mark.parametrize("pad", ["error", "reflect"])
@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("dtype", ["f4", "i2", "f8", "u1"])
def test_nontemporal_matches_the_reference(window, pad, threads, dtype):
    """Streaming stores write the same bytes, whatever the window size (whole 64-byte groups
    plus a tail), padding (padded windows take the row-by-row path) and thread count."""
    x = make_x(6000, 9, dtype, seed=window)
    rng = np.random.default_rng(window + threads)
    starts = rng.integers(0, len(x) - window + 1, 40)
    if pad == "reflect":
        starts[::3] = rng.integers(-window - 50, len(x) + 50, len(starts[::3]))
    got = gather_windows(x, starts, window, pad=pad, threads=threads, nontemporal=True)
    assert_same(got, gather_windows_reference(x, starts, window, pad=pad))


def test_nontemporal_into_a_misaligned_out():
    """``out`` at an address that is not 16-byte aligned (a view 4 bytes into a buffer): the
    kernel falls back to memcpy for those windows and the bytes are still right; the rest of
    the buffer is untouched."""
    x = make_x(5000, 3, "f4", seed=3)
    starts = np.random.default_rng(3).integers(0, 5000 - 50, 30)
    raw = np.full(30 * 50 * 3 + 8, -7.0, np.float32)
    out = raw[1 : 1 + 30 * 50 * 3].reshape(30, 50, 3)
    assert out.ctypes.data % 16 != 0
    gather_windows(x, starts, 50, out=out, nontemporal=True, threads=2)
    assert_same(out, gather_windows_reference(x, starts, 50))
    assert raw[0] == -7.0 and raw[-7:].tolist() == [-7.0] * 7


def test_nontemporal_casts_and_strides():
    """Casts and strided inputs ignore the option (they never take the whole-window path)."""
    x = make_x(4000, 8, "i2", seed=5)
    starts = np.random.default_rng(5).integers(0, 4000 - 64, 25)
    got = gather_windows(x, starts, 64, dtype=np.float32, scale=0.5, nontemporal=True)
    assert_same(got, gather_windows_reference(x, starts, 64, dtype=np.float32, scale=0.5))
    got = gather_windows(x[:, ::2], starts, 64, step=3, nontemporal=True)
    assert_same(got, gather_windows_reference(x[:, ::2], starts, 64, step=3))


def test_nontemporal_from_many_python_threads():
    """Several Python threads, each streaming into its own buffer with pooled helpers: every
    batch is complete when its call returns (the stores are fenced before the call ends)."""
    x = make_x(50_000, 9, "f4", seed=11)
    jobs = [np.random.default_rng(k).integers(0, len(x) - 64, 300) for k in range(8)]
    outs = [np.empty((300, 64, 9), np.float32) for _ in jobs]

    def work(k: int) -> None:
        for _ in range(20):
            outs[k].fill(np.nan)
            gather_windows(x, jobs[k], 64, out=outs[k], threads=2, nontemporal=True)
            np.testing.assert_array_equal(outs[k], gather_windows_reference(x, jobs[k], 64))

    run_in_threads(work, len(jobs))


@pytest.mark.skipif(not _windows.HAS_STREAM, reason="non-temporal stores are x86-only")
def test_the_built_module_has_streaming_stores():
    """The option is real: the extension contains non-temporal store instructions."""
    objdump = subprocess.run(["objdump", "-d", _windows.__file__], capture_output=True, text=True)
    if objdump.returncode != 0:
        pytest.skip("objdump is not available")
    assert "movntdq" in objdump.stdout or "movntps" in objdump.stdout
