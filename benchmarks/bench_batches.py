"""Does Batches (with its prefetch thread) hand a consumer the kernel's own batch rate?

Run on demand::

    NPYDIR_BENCH_GB=2 .venv/bin/python -m pytest benchmarks/bench_batches.py \
        --benchmark-enable -s -p no:cacheprovider

Environment: NPYDIR_BENCH_GB (file size; default 2, or 1/16 for a smoke run without
--benchmark-enable), NPYDIR_BENCH_DIR (where the file is kept between runs, default the
temp dir), NPYDIR_BENCH_ROUNDS (7), NPYDIR_BENCH_BATCHES (batches per round, 200),
NPYDIR_BENCH_COLD_BATCHES (30).

For each (batch, window) a memory-mapped float32 ``[samples, 9]`` file of
``NPYDIR_BENCH_GB`` GiB (default 2, far above the last-level cache) is read with the page
cache warm.  In the same test, alternating round by round so both see the same machine:

* kernel: ``gather_windows(x, starts_i, window)`` for ``ROUNDS_BATCHES`` precomputed
  batches of fresh random starts (the starts of ``Batches.starts(i)``, computed before the
  clock starts) — the rate no loader on top of the kernel can beat;
* held: the kernel loop keeping its last 3 batches alive, as the consumer of a
  ``prefetch=2`` loader does (fresh arrays that stay alive cannot reuse the buffer just
  freed, which costs large batches their cache-warm destination);
* thread: the least any prefetching loader does — the same kernel calls in one
  background thread, handed over through a ``queue.Queue(maxsize=2)``; it shows how much of
  the gap is the thread hand-off itself on this machine;
* Batches: a consumer pulling the same number of batches from ``iter(Batches(x, ...,
  prefetch=2))`` (starts computed, pages advised, windows gathered in its copier threads).

Rates are medians over rounds; the ratio is the median over rounds of (kernel time /
Batches time) in the same round, which cancels most of the load other processes add.  All
are printed and stored in the benchmark's ``extra_info``; the goal is Batches >= 0.9x kernel.

Cold cache (run first, before anything maps the file): the file is evicted with
``posix_fadvise(DONTNEED)`` and mapped afresh before each round, and Batches with
``advise="auto"`` (the next batch's pages requested while the current one is copied) is
compared with ``advise=False`` (only the kernel's own read-ahead inside each call).
"""

from __future__ import annotations

import gc
import os
import queue
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import npydir
from npydir import Batches
from npydir.tools.bench import drop_cache

CHANNELS = 9


def _gib(config) -> float:
    """File size: NPYDIR_BENCH_GB, else 2 GiB, or 1/16 GiB for a smoke run (benchmarks
    disabled, the default in pyproject): seconds, not a measurement."""
    if "NPYDIR_BENCH_GB" in os.environ:
        return float(os.environ["NPYDIR_BENCH_GB"])
    enabled = config.getoption("benchmark_enable", False) or config.getoption(
        "benchmark_only", False
    )
    return 2.0 if enabled else 0.0625


ROUNDS = int(os.environ.get("NPYDIR_BENCH_ROUNDS", "7"))
ROUNDS_BATCHES = int(os.environ.get("NPYDIR_BENCH_BATCHES", "200"))


@pytest.fixture(scope="module")
def gib(request) -> float:
    return _gib(request.config)


@pytest.fixture(scope="module")
def data_path(gib) -> Path:
    """A float32 [samples, 9] .npy of NPYDIR_BENCH_GB GiB, kept between runs."""
    folder = Path(os.environ.get("NPYDIR_BENCH_DIR", tempfile.gettempdir()))
    n = int(gib * 2**30) // (4 * CHANNELS)
    path = folder / f"npydir-bench-batches-{n}x{CHANNELS}-f4.npy"
    if not path.exists():
        tmp = path.with_suffix(".tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype="f4", shape=(n, CHANNELS))
        rng = np.random.default_rng(0)
        step = 1 << 22
        for i in range(0, n, step):
            out[i : i + step] = rng.random((min(step, n - i), CHANNELS), dtype=np.float32)
        out.flush()
        del out
        os.replace(tmp, path)
    return path


COLD_BATCHES = int(os.environ.get("NPYDIR_BENCH_COLD_BATCHES", "30"))


# Runs before the warm tests below: their module-scoped mapping would pin the pages.
@pytest.mark.parametrize("batch, window", [(32, 4096), (256, 64)])
def test_cold_cache_lookahead(benchmark, data_path, gib, batch, window):
    """Cold page cache: advise="auto" (next batch's pages requested while this one is
    copied) against advise=False (only the kernel's own in-call read-ahead)."""
    if not hasattr(os, "posix_fadvise"):
        pytest.skip("posix_fadvise is needed to evict the file")
    times: dict = {False: [], "auto": []}
    seed = [0]

    def cold_round(mode) -> None:
        gc.collect()
        drop_cache([data_path])
        x = np.load(data_path, mmap_mode="r")  # a fresh mapping, nothing else maps the file
        loader = Batches(x, window=window, batch_size=batch, seed=seed[0], advise=mode)
        t0 = time.perf_counter()
        it = iter(loader)
        for _ in range(COLD_BATCHES):
            next(it)
        times[mode].append(time.perf_counter() - t0)
        it.close()

    def setup():
        seed[0] += 1
        cold_round(False)
        return (), {}

    benchmark.pedantic(lambda: cold_round("auto"), setup=setup, rounds=3, iterations=1)
    n = min(len(times[False]), len(times["auto"]))
    ratio = statistics.median(a / b for a, b in zip(times[False][-n:], times["auto"][-n:]))
    off = COLD_BATCHES / statistics.median(times[False])
    auto = COLD_BATCHES / statistics.median(times["auto"])
    benchmark.extra_info.update(
        cold_off_batches_per_s=off, cold_auto_batches_per_s=auto, ratio=ratio
    )
    print(
        f"\ncold (batch, window)=({batch}, {window}), {gib:g} GiB file: advise=False "
        f"{off:.0f} batches/s, advise='auto' {auto:.0f} batches/s, ratio {ratio:.2f}"
    )


@pytest.fixture(scope="module")
def data(data_path) -> np.ndarray:
    """The benchmark file mapped and read once: the warm path."""
    x = np.load(data_path, mmap_mode="r")
    for i in range(0, len(x), 1 << 22):
        x[i : i + (1 << 22)].sum()
    return x


def _median_rate(times: list[float]) -> float:
    return ROUNDS_BATCHES / statistics.median(times)


@pytest.mark.parametrize("batch, window", [(32, 4096), (256, 64), (1024, 16)])
def test_batches_vs_kernel(benchmark, data, gib, batch, window):
    loader = Batches(data, window=window, batch_size=batch, seed=0, prefetch=2)
    kernel_times: list[float] = []
    thread_times: list[float] = []
    held_times: list[float] = []
    batches_times: list[float] = []
    epoch = [0]

    def kernel_round(starts) -> None:
        t0 = time.perf_counter()
        for s in starts:
            npydir.gather_windows(data, s, window)
        kernel_times.append(time.perf_counter() - t0)

    def held_round(starts) -> None:
        # the kernel loop again, but keeping the last 3 batches alive as a consumer of a
        # prefetch=2 loader does: fresh buffers no longer reuse the one just freed
        t0 = time.perf_counter()
        alive: list = []
        for s in starts:
            alive.append(npydir.gather_windows(data, s, window))
            del alive[:-3]
        held_times.append(time.perf_counter() - t0)

    def thread_round(starts) -> None:
        t0 = time.perf_counter()
        q: queue.Queue = queue.Queue(maxsize=2)

        def produce() -> None:
            for s in starts:
                q.put(npydir.gather_windows(data, s, window))
            q.put(None)

        worker = threading.Thread(target=produce)
        worker.start()
        while q.get() is not None:
            pass
        thread_times.append(time.perf_counter() - t0)
        worker.join()

    def batches_round() -> None:
        t0 = time.perf_counter()
        it = iter(loader)
        for _ in range(ROUNDS_BATCHES):
            next(it)
        batches_times.append(time.perf_counter() - t0)
        it.close()

    def setup():
        # fresh random starts each round (a new epoch), the same for all four methods,
        # which take turns so that all see the same machine
        epoch[0] += 1
        loader.set_epoch(epoch[0])
        starts = [loader.starts(i) for i in range(ROUNDS_BATCHES)]
        if epoch[0] % 2:  # alternate which baseline runs next to Batches
            held_round(starts)
            thread_round(starts)
            kernel_round(starts)
        else:
            kernel_round(starts)
            thread_round(starts)
            held_round(starts)
        return (), {}

    benchmark.pedantic(batches_round, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    kernel_rate = _median_rate(kernel_times)
    thread_rate = _median_rate(thread_times)
    # own clock, not benchmark.stats: the same numbers with --benchmark-disable (smoke runs)
    batches_rate = _median_rate(batches_times)
    # The machine is shared: load changes between rounds more than within one.  The ratio
    # is the median over rounds of kernel time / Batches time measured side by side.
    n = min(len(kernel_times), len(batches_times))
    ratio = statistics.median(k / b for k, b in zip(kernel_times[-n:], batches_times[-n:]))
    held_rate = _median_rate(held_times)
    held_ratio = statistics.median(k / b for k, b in zip(kernel_times[-n:], held_times[-n:]))
    mb = batch * window * CHANNELS * 4 / 1e6
    benchmark.extra_info.update(
        kernel_batches_per_s=kernel_rate,
        thread_batches_per_s=thread_rate,
        batches_per_s=batches_rate,
        ratio=ratio,
        thread_ratio=thread_rate / kernel_rate,
        held_batches_per_s=held_rate,
        held_ratio=held_ratio,
    )
    print(
        f"\n(batch, window)=({batch}, {window}), {mb:.2f} MB/batch, {gib:g} GiB file: "
        f"kernel {kernel_rate:.0f} batches/s, kernel holding 3 {held_rate:.0f} "
        f"({held_ratio:.2f}x), thread+queue {thread_rate:.0f} "
        f"({thread_rate / kernel_rate:.2f}x), Batches(prefetch=2) {batches_rate:.0f} "
        f"batches/s, ratio {ratio:.2f}"
    )
