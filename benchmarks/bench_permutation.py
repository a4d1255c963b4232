"""Drawing a chunk of window starts: the compiled planner against its baselines, same run.

Run on demand::

    .venv/bin/python -m pytest benchmarks/bench_permutation.py --benchmark-enable -s \\
        -p no:cacheprovider

``Batches`` draws the starts of its next batches a chunk of ~8192 windows at a time (see
``Batches._plan``): batch indices -> this rank's slots -> positions of the epoch's keyed
order (a Feistel permutation) -> start samples.  Three ways to do it, each for a chunk of
``8192 // batch`` batches of a 59.6 M-window epoch (the 2 GiB benchmark file), timed in
rounds that alternate their order (NPYDIR_BENCH_ROUNDS, default 7, of 50 chunks each):

* ``planner``: ``Batches._plan``, the loader's path: one compiled pass from batch indices
  to starts (``_feistel.batch_starts``: eight positions encrypted side by side, the radix
  split with a floating-point reciprocal), then one view per batch;
* ``per position``: the planner's arrangement before ``batch_starts``: the slots built
  with NumPy, then the compiled pass on them one slot at a time (``Batches._starts_of``:
  batches of one window), then ``np.split`` into batches.  The compiled permutation is the
  same, so this row shows what the NumPy steps around it cost;
* ``numpy``: the pure-NumPy twin ``Batches._starts_of_reference`` on the same slots, split
  the same way — the plain-NumPy limit the compiled code has to beat by a wide margin to be
  worth keeping.

Chunks are drawn from every batch but the epoch's last (short) one, which only the planner
handles.

Reported: ns per window (median over rounds, range) and the ratio of each baseline's time
to the planner's in the same round.  All three must agree, which the run checks first.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest

from npydir import Batches

ROUNDS = int(os.environ.get("NPYDIR_BENCH_ROUNDS", "7"))
CHUNKS = 50
WINDOWS = 59_652_323  # the windows of bench_batches' 2 GiB file at window 1
CHUNK_WINDOWS = 8192
CONFIGS = [(32, 4096), (256, 64), (1024, 16)]


def _loader(batch: int) -> Batches:
    """A Batches over a zero-stride view: the epoch's size without 2 GiB of memory."""
    x = np.lib.stride_tricks.as_strided(np.zeros(1, "f4"), (WINDOWS, 1), (0, 0))
    return Batches(x, window=1, batch_size=batch, seed=0)


@pytest.mark.parametrize("batch, window", CONFIGS)
def test_planner_vs_baselines(benchmark, batch, window):
    b = _loader(batch)
    per_chunk = max(1, CHUNK_WINDOWS // batch)
    rng = np.random.default_rng(0)

    def split(starts: np.ndarray, idx: np.ndarray) -> list[np.ndarray]:
        return np.split(starts, np.arange(1, len(idx)) * batch)

    def slots_of(idx: np.ndarray) -> np.ndarray:
        return (idx[:, None] * batch + np.arange(batch)[None, :]).reshape(-1)

    ways = {
        "planner": lambda idx: next(b._plan(idx, 0)),
        "per position": lambda idx: split(b._starts_of(slots_of(idx), 0), idx),
        "numpy": lambda idx: split(b._starts_of_reference(slots_of(idx), 0), idx),
    }
    full = len(b) - 1  # batches of exactly ``batch`` windows
    probe = rng.integers(0, full, per_chunk)
    want = np.concatenate(ways["numpy"](probe))
    for name in ("planner", "per position"):
        np.testing.assert_array_equal(np.concatenate(ways[name](probe)), want, err_msg=name)

    times: dict[str, list[float]] = {name: [] for name in ways}

    def one_round() -> None:
        chunks = [rng.integers(0, full, per_chunk) for _ in range(CHUNKS)]
        names = list(ways)
        k = len(times["planner"]) % len(names)
        for name in names[k:] + names[:k]:
            way = ways[name]
            t0 = time.perf_counter()
            for idx in chunks:
                way(idx)
            times[name].append((time.perf_counter() - t0) / (CHUNKS * per_chunk * batch))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    parts = []
    for name, t in times.items():
        t = t[-ROUNDS:]
        med = statistics.median(t) * 1e9
        benchmark.extra_info[f"{name} ns per window"] = med
        text = f"{name} {med:.1f} ns/window ({min(t) * 1e9:.1f}-{max(t) * 1e9:.1f})"
        if name != "planner":
            ratio = statistics.median(
                o / p for o, p in zip(t, times["planner"][-ROUNDS:])
            )
            benchmark.extra_info[f"{name} / planner"] = ratio
            text += f", {ratio:.2f}x the planner's time"
        parts.append(text)
    print(f"\n{per_chunk} batches of {batch}: " + "; ".join(parts))
