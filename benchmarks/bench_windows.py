"""How close does gather_windows get to memcpy, and how far ahead of the alternatives is it?

Run on demand (prints a ratio table at the end of the session)::

    .venv/bin/python -m pytest benchmarks/bench_windows.py --benchmark-enable -p no:cacheprovider

``NPYDIR_BENCH_GB`` (default 2) sets the size of the float32 ``[samples, 9]`` file, far above
the last-level cache; ``NPYDIR_BENCH_GB=0.1`` is a smoke run.  The files are written once per
session into a temporary directory under ``/tmp`` (on disk, not ``/dev/shm``: the cold-cache
benchmarks need a real file to evict), or into ``NPYDIR_BENCH_DIR`` where they are kept.

Warm (page cache warm, fresh random starts for every batch, drawn outside the clock): for
(batch, window) in (32, 4096), (256, 64), (1024, 16), each method's median time per batch is
compared with a memcpy of the same number of bytes from the same file (one contiguous block
at a random offset copied with ``np.copyto`` into a preallocated buffer):

* ``kernel-1t`` / ``kernel-all``: ``gather_windows(x, starts, window, out=buf, threads=1|cores)``
* ``kernel-auto``: the same with ``threads=None`` (the kernel's own choice)
* ``1t-nocheck``: ``kernel-1t`` with the cold-page check (mincore) switched off
* ``das-loop``: ``np.stack([x[s:s + window] for s in starts])`` over the memmap (what DAS does)
* ``fancy``: ``x[starts[:, None] + np.arange(window)]``
* ``sliding``: ``sliding_window_view(x, window, axis=0)[starts]`` made C-contiguous
* the same for int16 data gathered into float32 with a scale (``dtype=np.float32, scale=s``);
  its kernel time is also compared with the float32 kernel time of the same windows.

Cold (the file evicted with ``posix_fadvise(DONTNEED)`` before each batch, mapped afresh inside
the timed call, no other mapping of it alive): the kernel (which checks residency with mincore
and then asks for every window's pages at once with madvise WILLNEED), the kernel with that
check disabled, the DAS loop over a fresh memmap, and ``os.pread`` of every window from a pool
of 32 threads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from npydir.kernel import _windows
from npydir.kernel.windows import gather_windows
from npydir.tools.bench import drop_cache

CHANNELS = 9
GIB = float(os.environ.get("NPYDIR_BENCH_GB", "2"))
CONFIGS = [(32, 4096), (256, 64), (1024, 16)]
SCALE = 1 / 32768
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
WARM_ROUNDS = int(os.environ.get("NPYDIR_BENCH_ROUNDS", "60"))
COLD_ROUNDS = int(os.environ.get("NPYDIR_BENCH_COLD_ROUNDS", "7"))

# (section, batch, window, kind, method) -> median seconds per batch; read by ratio_table().
RESULTS: dict[tuple[str, int, int, str, str], float] = {}


def _write(path: Path, n: int, dtype, seed: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, CHANNELS))
    rng = np.random.default_rng(seed)
    step = 1 << 21
    for i in range(0, n, step):
        block = rng.standard_normal((min(step, n - i), CHANNELS), dtype=np.float32)
        out[i : i + step] = block if out.dtype == np.float32 else (block * 3000).astype(dtype)
    out.flush()
    del out
    os.replace(tmp, path)


@pytest.fixture(scope="session")
def bench_dir():
    keep = os.environ.get("NPYDIR_BENCH_DIR")
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="npydir-bench-", dir="/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def files(bench_dir):
    """float32 and int16 [n, 9] files for the warm runs, a separate float32 one for cold."""
    n = int(GIB * 2**30) // (4 * CHANNELS)
    paths = {
        "float32": bench_dir / f"warm-{n}-f4.npy",
        "int16": bench_dir / f"warm-{n}-i2.npy",
        "cold": bench_dir / f"cold-{n}-f4.npy",
    }
    for (kind, path), dt in zip(paths.items(), (np.float32, np.int16, np.float32)):
        if not path.exists():
            _write(path, n, dt, seed=len(kind))
    return paths


@pytest.fixture(scope="session")
def warm(files):
    """Warm memmaps: every page read once so it sits in the page cache and the page tables."""
    maps = {k: np.load(files[k], mmap_mode="r") for k in ("float32", "int16")}
    for m in maps.values():
        a = np.asarray(m)
        for i in range(0, len(a), 1 << 22):
            a[i : i + (1 << 22)].max()
    return maps


def _record(benchmark, key) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None and not getattr(benchmark, "disabled", False):
        RESULTS[key] = stats.stats.median


def _methods(kind: str, x: np.memmap, batch: int, window: int):
    """name -> (function of starts) for one warm configuration."""
    cast = {} if kind == "float32" else {"dtype": np.float32, "scale": SCALE}
    buf = np.empty((batch, window, CHANNELS), np.float32)
    arange = np.arange(window)
    view = sliding_window_view(x, window, axis=0)  # [n - window + 1, 9, window]

    def post(a):
        return a if kind == "float32" else np.multiply(a, np.float32(SCALE), dtype=np.float32)

    return {
        "kernel-1t": lambda s: gather_windows(x, s, window, out=buf, threads=1, **cast),
        "kernel-all": lambda s: gather_windows(x, s, window, out=buf, threads=CORES, **cast),
        "kernel-auto": lambda s: gather_windows(x, s, window, out=buf, **cast),
        "1t-nocheck": lambda s: _no_cold_check(x, s, window, buf, cast),
        "das-loop": lambda s: post(np.stack([x[i : i + window] for i in s])),
        "fancy": lambda s: post(x[s[:, None] + arange]),
        "sliding": lambda s: post(np.ascontiguousarray(view[s].transpose(0, 2, 1))),
    }


def _no_cold_check(x, starts, window, buf, cast):
    """kernel-1t without the mincore residency check: what that check costs when warm."""
    saved = _windows.tune()["advise_min_bytes"]
    _windows.tune(advise_min_bytes=1 << 62)
    try:
        return gather_windows(x, starts, window, out=buf, threads=1, **cast)
    finally:
        _windows.tune(advise_min_bytes=saved)


WARM_METHODS = [
    "kernel-1t", "1t-nocheck", "kernel-all", "kernel-auto", "das-loop", "fancy", "sliding"
]


@pytest.mark.parametrize("batch,window", CONFIGS, ids=lambda v: str(v))
def test_warm_memcpy(benchmark, warm, batch, window):
    """The limit: one contiguous block of batch * window rows, float32, from the same file."""
    x = np.asarray(warm["float32"])
    rows = batch * window
    buf = np.empty((rows, CHANNELS), np.float32)
    rng = np.random.default_rng(1)

    def setup():
        s = int(rng.integers(0, len(x) - rows))
        return (buf, x[s : s + rows]), {}

    benchmark.pedantic(np.copyto, setup=setup, rounds=WARM_ROUNDS, warmup_rounds=3)
    _record(benchmark, ("warm", batch, window, "float32", "memcpy"))


@pytest.mark.parametrize("method", WARM_METHODS)
@pytest.mark.parametrize("kind", ["float32", "int16"])
@pytest.mark.parametrize("batch,window", CONFIGS, ids=lambda v: str(v))
def test_warm(benchmark, warm, batch, window, kind, method):
    x = warm[kind]
    fn = _methods(kind, x, batch, window)[method]
    # A different stream per method: with the same starts, a method would find the windows
    # the one before it just read still in the last-level cache.
    rng = np.random.default_rng([2, zlib.crc32(f"{kind}/{method}".encode())])
    n = len(x) - window

    def setup():
        return (rng.integers(0, n, batch),), {}

    rounds = WARM_ROUNDS if method.startswith("kernel") else max(5, WARM_ROUNDS // 3)
    result = benchmark.pedantic(fn, setup=setup, rounds=rounds, warmup_rounds=2)
    assert result.shape == (batch, window, CHANNELS) and result.dtype == np.float32
    _record(benchmark, ("warm", batch, window, kind, method))


COLD_METHODS = ["kernel", "kernel-no-advise", "das-loop", "pread-32"]
COLD_CONFIGS = [(32, 4096), (256, 64)]


@pytest.fixture(scope="session")
def pread_pool():
    with ThreadPoolExecutor(32) as pool:
        yield pool


@pytest.mark.parametrize("method", COLD_METHODS)
@pytest.mark.parametrize("batch,window", COLD_CONFIGS, ids=lambda v: str(v))
def test_cold(benchmark, files, pread_pool, request, batch, window, method):
    path = files["cold"]
    probe = np.load(path, mmap_mode="r")
    shape, offset = probe.shape, probe.offset
    del probe  # no mapping may outlive the setup: it would keep evicted pages resident
    n = shape[0] - window
    row = 4 * CHANNELS
    rng = np.random.default_rng(3)
    if method == "kernel-no-advise":
        saved = _windows.tune()["advise_min_bytes"]
        _windows.tune(advise_min_bytes=1 << 62)
        request.addfinalizer(lambda: _windows.tune(advise_min_bytes=saved))

    def setup():
        drop_cache([path])
        return (rng.integers(0, n, batch),), {}

    # Each try maps the file afresh and drops the mapping (munmap) before returning, so no
    # mapping keeps evicted pages alive between tries.
    def kernel(starts):
        x = np.load(path, mmap_mode="r")
        out = gather_windows(x, starts, window)
        del x
        return out

    def das_loop(starts):
        x = np.load(path, mmap_mode="r")
        out = np.stack([x[s : s + window] for s in starts])
        del x
        return out

    def pread(starts):
        out = np.empty((batch, window, CHANNELS), np.float32)
        flat = out.reshape(batch, -1).view(np.uint8)
        fd = os.open(path, os.O_RDONLY)
        try:

            def one(k):
                want = window * row
                got = os.preadv(fd, [flat[k]], offset + int(starts[k]) * row)
                assert got == want

            list(pread_pool.map(one, range(batch)))
        finally:
            os.close(fd)
        return out

    fn = {"kernel": kernel, "kernel-no-advise": kernel, "das-loop": das_loop, "pread-32": pread}[
        method
    ]
    result = benchmark.pedantic(fn, setup=setup, rounds=COLD_ROUNDS, warmup_rounds=0)
    assert result.shape == (batch, window, CHANNELS)
    _record(benchmark, ("cold", batch, window, "float32", method))


def ratio_table() -> str:
    """Ratios of medians measured in this session (printed by benchmarks/conftest.py)."""
    if not RESULTS:
        return ""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        f"gather_windows: {GIB:g} GiB float32 [n, 9], {CORES} cores, load average {load};"
        " medians per batch"
    ]
    lines.append("warm: throughput relative to memcpy of the same bytes (higher is better)")
    head = (
        f"{'batch x window':>15} {'data':>12} {'memcpy':>9}"
        + "".join(f" {m:>11}" for m in WARM_METHODS)
        + "  int16/f32 time"
    )
    lines.append(head)
    for batch, window in CONFIGS:
        base = RESULTS.get(("warm", batch, window, "float32", "memcpy"))
        for kind in ("float32", "int16"):
            label = "float32" if kind == "float32" else "int16->f32*s"
            row = f"{f'{batch} x {window}':>15} {label:>12} "
            row += f"{base * 1e6:7.0f}us" if base else f"{'-':>9}"
            for m in WARM_METHODS:
                t = RESULTS.get(("warm", batch, window, kind, m))
                row += f" {base / t:10.2f}x" if (t and base) else f" {'-':>11}"
            t16 = RESULTS.get(("warm", batch, window, "int16", "kernel-1t"))
            t32 = RESULTS.get(("warm", batch, window, "float32", "kernel-1t"))
            if kind == "int16" and t16 and t32:
                row += f"  {t16 / t32:.2f}"
            lines.append(row)
    lines.append("cold: speed-up over the DAS loop over a memmap (higher is better)")
    lines.append(
        f"{'batch x window':>15} {'das-loop':>10}"
        + "".join(f" {m:>17}" for m in COLD_METHODS if m != "das-loop")
    )
    for batch, window in COLD_CONFIGS:
        base = RESULTS.get(("cold", batch, window, "float32", "das-loop"))
        row = f"{f'{batch} x {window}':>15} " + (f"{base * 1e3:8.1f}ms" if base else f"{'-':>10}")
        for m in COLD_METHODS:
            if m == "das-loop":
                continue
            t = RESULTS.get(("cold", batch, window, "float32", m))
            row += f" {base / t:8.1f}x {t * 1e3:5.1f}ms" if (t and base) else f" {'-':>17}"
        lines.append(row)
    return "\n".join(lines)
