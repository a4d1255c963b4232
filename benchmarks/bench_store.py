"""What the store's crash safety costs: appends and reads against plain baselines.

Run on demand::

    .venv/bin/python -m pytest benchmarks/bench_store.py --benchmark-enable -s -p no:cacheprovider

Environment: NPYDIR_BENCH_ROUNDS (rounds, default 7), NPYDIR_BENCH_APPENDS (appends per round,
default 200), NPYDIR_BENCH_DIR (where files go, default the temp dir).

Appends: ``APPENDS`` blocks of 1024 x 8 float32 (32 KiB) grow one array, alternating round by
round between

* raw: the same bytes ``write()`` n to an open file, no header, no fsync (the limit);
* npydir ``append(sync=False)``: data, then the shape rewritten in the header (no fsync);
* npydir ``append()`` (default): the same plus an fdatasync after the data and after the header;
* h5py: ``resize`` + slice assignment on a chunked, resizable dataset (when h5py is installed).

Reads: ``x[i:i + 256]`` of a memory-mapped ``[1_000_000, 8]`` float32 array at random ``i``,
through ``npydir.Array`` and directly on ``np.load(mmap_mode="r")``: the cost of the wrapper.

Medians over rounds and the per-round ratio to the baseline are printed and stored in the
benchmark's ``extra_info``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import npydir

ROUNDS = int(os.environ.get("NPYDIR_BENCH_ROUNDS", "7"))
APPENDS = int(os.environ.get("NPYDIR_BENCH_APPENDS", "200"))
BLOCK = np.ones((1024, 8), "f4")


def _workdir() -> Path:
    base = os.environ.get("NPYDIR_BENCH_DIR") or tempfile.gettempdir()
    d = Path(tempfile.mkdtemp(prefix="npydir-bench-store-", dir=base))
    return d


def _raw(d: Path) -> float:
    p = d / "raw.bin"
    t0 = time.perf_counter()
    with open(p, "wb") as f:
        for _ in range(APPENDS):
            f.write(memoryview(BLOCK).cast("B"))
    dt = time.perf_counter() - t0
    p.unlink()
    return dt


def _npydir(d: Path, sync: bool) -> float:
    store = d / f"s{int(sync)}.npy"
    with npydir.open(store, "w", sync=sync) as root:
        x = root.create_dataset("x", shape=(0, 8), dtype="f4")
        t0 = time.perf_counter()
        for _ in range(APPENDS):
            x.append(BLOCK, sync=sync)
        dt = time.perf_counter() - t0
        assert x.shape == (APPENDS * 1024, 8)
    return dt


def _h5py(d: Path) -> float | None:
    try:
        import h5py
    except ImportError:  # pragma: no cover - optional baseline
        return None
    p = d / "x.h5"
    with h5py.File(p, "w") as f:
        ds = f.create_dataset("x", shape=(0, 8), maxshape=(None, 8), dtype="f4", chunks=(1024, 8))
        t0 = time.perf_counter()
        for _ in range(APPENDS):
            n = ds.shape[0]
            ds.resize(n + 1024, axis=0)
            ds[n:] = BLOCK
        f.flush()
        dt = time.perf_counter() - t0
    p.unlink()
    return dt


def test_append_cost(benchmark):
    d = _workdir()
    times: dict[str, list[float]] = {"raw": [], "sync=False": [], "sync=True": [], "h5py": []}
    for _ in range(ROUNDS):
        times["raw"].append(_raw(d))
        times["sync=False"].append(_npydir(d, False))
        times["sync=True"].append(_npydir(d, True))
        h = _h5py(d)
        if h is not None:
            times["h5py"].append(h)
    benchmark.pedantic(lambda: _npydir(d, False), rounds=1, iterations=1)
    mb = APPENDS * BLOCK.nbytes / 2**20
    lines = [f"{APPENDS} appends of {BLOCK.nbytes // 1024} KiB, {ROUNDS} rounds"]
    for name, ts in times.items():
        if not ts:
            continue
        med = statistics.median(ts)
        ratio = statistics.median(t / r for t, r in zip(ts, times["raw"], strict=True))
        lines.append(
            f"  {name:11s} median {med * 1e3:8.1f} ms  {mb / med:8.0f} MiB/s  "
            f"{med / APPENDS * 1e6:7.1f} us/append  {ratio:6.1f}x raw"
        )
        benchmark.extra_info[name] = {"median_s": med, "ratio_to_raw": ratio}
    print("\n" + "\n".join(lines))


def test_read_overhead(benchmark):
    d = _workdir()
    with npydir.open(d / "r.npy", "w") as root:
        root.create_dataset("x", data=np.random.default_rng(0).random((1_000_000, 8), "f4"))
    x = npydir.open(d / "r.npy")["x"]
    raw = np.load(d / "r.npy" / "x.npy", mmap_mode="r")
    starts = np.random.default_rng(1).integers(0, 1_000_000 - 256, 20_000)

    def run(a) -> float:
        t0 = time.perf_counter()
        s = 0.0
        for i in starts:
            s += float(a[i : i + 256][0, 0])
        return time.perf_counter() - t0

    ta, tr = [], []
    for _ in range(ROUNDS):
        ta.append(run(x))
        tr.append(run(raw))
    benchmark.pedantic(lambda: run(x), rounds=1, iterations=1)
    ratio = statistics.median(a / r for a, r in zip(ta, tr, strict=True))
    per = (statistics.median(ta) - statistics.median(tr)) / len(starts) * 1e6
    print(
        f"\nx[i:i+256] via npydir.Array: median {statistics.median(ta) * 1e3:.1f} ms, "
        f"np.load(mmap_mode='r'): {statistics.median(tr) * 1e3:.1f} ms for {len(starts)} slices; "
        f"{ratio:.2f}x, {per:+.2f} us per slice"
    )
    benchmark.extra_info.update(ratio=ratio, extra_us_per_slice=per)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "--benchmark-enable", "-s", "-p", "no:cacheprovider"])
