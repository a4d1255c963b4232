"""What a new iterator's first batches and a pause before reading cost: the bench's warm-up.

Run on demand::

    flock /tmp/npydir-bench.lock env NPYDIR_BENCH_GB=2 .venv/bin/python -m pytest \\
        benchmarks/bench_startup.py --benchmark-enable -s -p no:cacheprovider

``benchmarks/bench_frameworks.py`` starts each path's clock after a warm-up (100 batches and
60 ms).  This suite measures why, on the same file (float32 ``[samples, 9]``, page cache warm;
environment as bench_batches.py, NPYDIR_BENCH_ROUNDS rounds, default 7):

* ``first batches``: a new prefetching ``iter(Batches(...))``, timed 50 batches at a time
  for its first ``SEGMENTS * 50`` batches, with the minor page faults of each segment: its
  fresh blocks are faulted in during the first segments, after which the rate is the
  steady one.  Printed: µs a batch and faults per segment (medians over rounds).
* ``after a pause``: 300 batches of an iterator that has already made 101, right after a
  0.12 s ``time.sleep`` (what Keras's shuffle of an epoch's indices does to the loader: the
  process keeps one core busy, or none, for ~0.1 s), against the same without the pause,
  alternating round by round.  Printed: the ratio of their times (median and range); 1.00
  means the pause costs nothing afterwards.
"""

from __future__ import annotations

import resource
import statistics
import time

import numpy as np
import pytest
from bench_batches import ROUNDS, data, data_path, gib  # noqa: F401 - fixtures

from npydir import Batches

SEGMENT = 50
SEGMENTS = 8
PAUSE = 0.12
AFTER = 300
CONFIGS = [(256, 64), (1024, 16)]


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.parametrize("batch, window", CONFIGS)
def test_first_batches_of_a_new_iterator(benchmark, data, batch, window):
    times: list[list[float]] = [[] for _ in range(SEGMENTS)]
    faults: list[list[int]] = [[] for _ in range(SEGMENTS)]
    epoch = [0]

    def one_round() -> None:
        epoch[0] += 1
        b = Batches(data, window=window, batch_size=batch, seed=0)
        b.set_epoch(epoch[0])
        it = iter(b)
        next(it)
        for k in range(SEGMENTS):
            f0, t0 = _faults(), time.perf_counter()
            for _ in range(SEGMENT):
                next(it)
            times[k].append((time.perf_counter() - t0) / SEGMENT)
            faults[k].append(_faults() - f0)
        it.close()

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    us = [statistics.median(t[-ROUNDS:]) * 1e6 for t in times]
    flt = [statistics.median(f[-ROUNDS:]) for f in faults]
    benchmark.extra_info.update(us_per_batch=us, faults=flt)
    print(
        f"\n({batch}, {window}) new iterator, {SEGMENT}-batch segments: µs a batch "
        + ", ".join(f"{u:.0f}" for u in us)
        + "; minor faults "
        + ", ".join(f"{f:.0f}" for f in flt)
    )


@pytest.mark.parametrize("batch, window", CONFIGS)
def test_reading_after_a_pause(benchmark, data, batch, window):
    ratios: list[float] = []
    epoch = [0]

    def timed(pause: bool) -> float:
        epoch[0] += 1
        b = Batches(data, window=window, batch_size=batch, seed=0)
        b.set_epoch(epoch[0])
        it = iter(b)
        for _ in range(101):
            next(it)
        if pause:
            time.sleep(PAUSE)
        t0 = time.perf_counter()
        for _ in range(AFTER):
            next(it)
        elapsed = time.perf_counter() - t0
        it.close()
        return elapsed

    def one_round() -> None:
        first = len(ratios) % 2 == 0  # alternate which runs first
        a = timed(not first)
        b = timed(first)
        paused, plain = (b, a) if first else (a, b)
        ratios.append(plain / paused)

    benchmark.pedantic(one_round, rounds=max(ROUNDS, 11), iterations=1, warmup_rounds=1)
    r = ratios[-max(ROUNDS, 11) :]
    med = statistics.median(r)
    benchmark.extra_info["rate after a pause / without"] = med
    print(
        f"\n({batch}, {window}) {AFTER} batches after a {PAUSE:g} s pause: "
        f"{med:.2f}x the rate without it ({min(r):.2f}-{max(r):.2f})"
    )
