"""The kernel against the plain-C limit: ``gather_windows`` vs a bare C loop, same run.

Run on demand (``make limit`` does this and prints the ratio table)::

    .venv/bin/python -m pytest benchmarks/bench_limit.py --benchmark-enable -s -p no:cacheprovider

The limit is ``benchmarks/c/gather_limit.c``, compiled here with the kernel's flags (``-O3``)
into a shared library and called through ctypes with the timing inside C: per batch it copies
the windows into one reused buffer, one thread, three ways (plain ``memcpy`` per window,
prefetch-ahead, two-pass blocks), and the best of the three is the limit.  The kernel is
called as a user calls it, from Python, ``gather_windows(x, starts, window, out=buf,
threads=1)``, so its figure includes the per-call Python work.

Data: a float32 ``[samples, 9]`` file of ``NPYDIR_BENCH_GB`` GB (default 1.2), page cache warm,
mapped once.  For (batch, window) in (32, 4096), (256, 64), (1024, 16), ``NPYDIR_BENCH_ROUNDS``
rounds (default 7): every round measures the three C schemes and the kernel, in an order that
alternates between rounds, each on ``NPYDIR_BENCH_BATCHES`` batches (default 200) of its own
fresh random starts (the same starts twice would find the windows in the last-level cache the
second time).  The table gives medians per batch and the ratio ``limit / kernel`` (1.0: the
kernel is as fast as the best C loop) with its range over rounds.  Every round also copies one
batch through the kernel and each C scheme and compares the outputs byte for byte.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from npydir.kernel.windows import gather_windows

CHANNELS = 9
GB = float(os.environ.get("NPYDIR_BENCH_GB", "1.2"))
ROUNDS = int(os.environ.get("NPYDIR_BENCH_ROUNDS", "7"))
BATCHES = int(os.environ.get("NPYDIR_BENCH_BATCHES", "200"))
CONFIGS = [(32, 4096), (256, 64), (1024, 16)]
SCHEMES = {"plain": 0, "ahead": 1, "two-pass": 2}
BLOCK_BYTES = 32 * 1024
SOURCE = Path(__file__).resolve().parent / "c" / "gather_limit.c"

#: (batch, window) -> {method: [seconds per batch, one per round]}; read by ratio_table()
RESULTS: dict[tuple[int, int], dict[str, list[float]]] = {}


@pytest.fixture(scope="session")
def limit_lib(tmp_path_factory):
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    cc = cc if shutil.which(cc) else "cc"
    lib = tmp_path_factory.mktemp("limit") / "libgather_limit.so"
    subprocess.run([cc, "-O3", "-shared", "-fPIC", str(SOURCE), "-o", str(lib)], check=True)
    dll = ctypes.CDLL(str(lib))
    f = dll.gather_limit
    i64 = ctypes.c_int64
    f.argtypes = [ctypes.c_void_p, i64, ctypes.c_void_p, i64, i64, i64, ctypes.c_void_p,
                  ctypes.c_int, i64]
    f.restype = i64
    return f


@pytest.fixture(scope="session")
def data():
    keep = os.environ.get("NPYDIR_BENCH_DIR")
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="npydir-limit-", dir="/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"limit-{GB:g}GB-f32x{CHANNELS}.npy"
    n = int(GB * 1e9) // (4 * CHANNELS)
    if not path.exists():
        out = np.lib.format.open_memmap(path.with_suffix(".tmp"), mode="w+", dtype=np.float32,
                                        shape=(n, CHANNELS))
        rng = np.random.default_rng(0)
        for i in range(0, n, 1 << 21):
            out[i : i + (1 << 21)] = rng.standard_normal(
                (min(1 << 21, n - i), CHANNELS), dtype=np.float32)
        out.flush()
        del out
        os.replace(path.with_suffix(".tmp"), path)
    x = np.load(path, mmap_mode="r")
    np.add.reduce(x, axis=0)  # warm: every page in the page cache and mapped
    yield x
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)


def _c_round(f, x, starts, batch, window, out, scheme) -> float:
    ns = f(x.ctypes.data, x.strides[0], starts.ctypes.data, batch, len(starts) // batch,
           window, out.ctypes.data, scheme, BLOCK_BYTES)
    return ns * 1e-9 / (len(starts) // batch)


def _kernel_round(x, starts, batch, window, out) -> float:
    per = starts.reshape(-1, batch)
    t0 = time.perf_counter()
    for s in per:
        gather_windows(x, s, window, out=out, threads=1)
    return (time.perf_counter() - t0) / len(per)


@pytest.mark.parametrize("batch,window", CONFIGS, ids=[f"{b}x{w}" for b, w in CONFIGS])
def test_kernel_vs_plain_c(benchmark, limit_lib, data, batch, window):
    x = data
    rng = np.random.default_rng(batch * window)
    out_k = np.empty((batch, window, CHANNELS), np.float32)
    out_c = np.empty_like(out_k)
    times: dict[str, list[float]] = {m: [] for m in ["kernel", *SCHEMES]}

    def measure() -> None:
        for r in range(ROUNDS):
            methods = ["kernel", *SCHEMES] if r % 2 == 0 else [*SCHEMES, "kernel"]
            for m in methods:
                # Fresh windows for every method: with the windows of the method before it, a
                # method would find much of them still in the last-level cache.
                starts = rng.integers(0, len(x) - window, BATCHES * batch).astype(np.int64)
                if m == "kernel":
                    times[m].append(_kernel_round(x, starts, batch, window, out_k))
                else:
                    times[m].append(_c_round(limit_lib, x, starts, batch, window, out_c,
                                             SCHEMES[m]))
            # the same bytes: one batch through the kernel and every C scheme
            check = rng.integers(0, len(x) - window, batch).astype(np.int64)
            _kernel_round(x, check, batch, window, out_k)
            for m, scheme in SCHEMES.items():
                _c_round(limit_lib, x, check, batch, window, out_c, scheme)
                np.testing.assert_array_equal(out_c, out_k, err_msg=f"{m}, round {r}")

    benchmark.pedantic(measure, rounds=1, iterations=1)
    RESULTS[(batch, window)] = times


def ratio_table() -> str:
    if not RESULTS:
        return ""
    lines = [
        f"{'batch x window':<16}{'kernel µs':>11}{'plain':>9}{'ahead':>9}{'two-pass':>10}"
        f"{'limit/kernel (median, range)':>32}",
    ]
    for (batch, window), t in RESULTS.items():
        med = {m: float(np.median(v)) for m, v in t.items()}
        best = min(SCHEMES, key=lambda m: med[m])
        per_round = [min(t[m][r] for m in SCHEMES) / t["kernel"][r]
                     for r in range(len(t["kernel"]))]
        lines.append(
            f"{f'{batch} x {window}':<16}{med['kernel'] * 1e6:>11.1f}"
            f"{med['plain'] * 1e6:>9.1f}{med['ahead'] * 1e6:>9.1f}{med['two-pass'] * 1e6:>10.1f}"
            f"{med[best] / med['kernel']:>14.2f} ({min(per_round):.2f}-{max(per_round):.2f}, "
            f"best C: {best})"
        )
    return "\n".join(lines)
