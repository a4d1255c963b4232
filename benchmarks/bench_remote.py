"""Random windows from a store on a web server: npydir byte ranges vs zarr and tensorstore.

Run on demand::

    flock /tmp/npydir-bench.lock .venv/bin/python -m pytest benchmarks/bench_remote.py \\
        --benchmark-enable -s -p no:cacheprovider

One nginx on 127.0.0.1 (started here, as the tests do) serves, in the same run, the same
``[samples, channels]`` float16 data as an npydir store and as a zarr array chunked as DAS
chunks it, ``(1_000_000, channels)`` with zarr's default compressor.  Every request goes
through a proxy adding ``NPYDIR_BENCH_LATENCY_MS`` (default 5) per request, as a bucket in
another building would.  For each reader, rounds alternate (``NPYDIR_BENCH_ROUNDS``, default
3) and medians are reported:

* **windows/s** -- random windows of 1024 samples, a batch of 256 per call for npydir
  (``gather_windows``, one range request per window, 64 in flight); zarr reads each window
  with ``z[s:s + 1024]`` (it fetches and decompresses the chunk under it), tensorstore
  issues a batch's reads at once and waits for all;
* **fetched/delivered** -- bytes of response bodies divided by the bytes of the windows
  handed out (npydir counts its bodies; the proxy counts everything on the wire, headers
  included, shown as *wire*).

Goals (asserted): npydir fetches <= 1.1x the bytes it delivers, and reads >= 10x zarr's
windows/s.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "remote"))
from _servers import LatencyProxy, Nginx, nginx_binary  # noqa: E402

import npydir  # noqa: E402

ROWS = int(os.environ.get("NPYDIR_BENCH_REMOTE_ROWS", 4_000_000))
CHANNELS = 4
WINDOW = 1024
BATCH = 256
CHUNK = 1_000_000
ROUNDS = int(os.environ.get("NPYDIR_BENCH_ROUNDS", 3))
LATENCY = float(os.environ.get("NPYDIR_BENCH_LATENCY_MS", 5)) / 1000

_RESULTS: dict[str, dict[str, list[float]]] = {}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    pytest.importorskip("obstore")
    zarr = pytest.importorskip("zarr")
    www = tmp_path_factory.mktemp("www")
    data = np.random.default_rng(0).standard_normal((ROWS, CHANNELS)).astype(np.float16)
    with npydir.open(www / "ds.npy", "w") as root:
        root.create_dataset("x", data=data)
    z = zarr.open_array(www / "x.zarr", mode="w", shape=data.shape, dtype=data.dtype,
                        chunks=(CHUNK, CHANNELS))
    z[:] = data
    server = Nginx(www, tmp_path_factory.mktemp("nginx"))
    proxy = LatencyProxy(server.port, delay=LATENCY)
    yield proxy, data
    proxy.kill()
    server.stop()


def _npydir(proxy, data, rng):
    x = npydir.open(f"{proxy.url}/ds.npy")["x"]
    x.shape
    client = x._store.client

    def run():
        starts = rng.integers(0, ROWS - WINDOW, BATCH)
        b0, w0 = client.bytes_fetched, proxy.bytes_down
        t = time.perf_counter()
        out = npydir.gather_windows(x, starts, WINDOW)
        dt = time.perf_counter() - t
        assert np.array_equal(out[0], data[starts[0] : starts[0] + WINDOW])
        fetched = (client.bytes_fetched - b0) / out.nbytes
        return BATCH / dt, fetched, (proxy.bytes_down - w0) / out.nbytes

    return run


def _zarr(proxy, data, rng):
    import zarr

    z = zarr.open_array(f"{proxy.url}/x.zarr", mode="r")

    def run():
        n = 4
        starts = rng.integers(0, ROWS - WINDOW, n)
        w0 = proxy.bytes_down
        t = time.perf_counter()
        outs = [z[s : s + WINDOW] for s in starts]
        dt = time.perf_counter() - t
        assert np.array_equal(outs[0], data[starts[0] : starts[0] + WINDOW])
        wire = (proxy.bytes_down - w0) / (n * WINDOW * CHANNELS * 2)
        return n / dt, float("nan"), wire

    return run


def _tensorstore(proxy, data, rng):
    ts = pytest.importorskip("tensorstore")
    try:
        arr = ts.open({"driver": "zarr3", "kvstore": f"{proxy.url}/x.zarr/"}).result()
    except Exception as exc:  # noqa: BLE001 - reported, the row is skipped
        pytest.skip(f"tensorstore cannot read the zarr store over http here: {exc}")

    def run():
        n = 4
        starts = rng.integers(0, ROWS - WINDOW, n)
        w0 = proxy.bytes_down
        t = time.perf_counter()
        futures = [arr[s : s + WINDOW].read() for s in starts]
        outs = [f.result() for f in futures]
        dt = time.perf_counter() - t
        assert np.array_equal(outs[0], data[starts[0] : starts[0] + WINDOW])
        wire = (proxy.bytes_down - w0) / (n * WINDOW * CHANNELS * 2)
        return n / dt, float("nan"), wire

    return run


def test_remote_windows(served, benchmark):
    proxy, data = served
    rng = np.random.default_rng(1)
    runners = {"npydir": _npydir(proxy, data, rng), "zarr": _zarr(proxy, data, rng)}
    try:
        runners["tensorstore"] = _tensorstore(proxy, data, rng)
    except pytest.skip.Exception as exc:
        print(f"tensorstore row skipped: {exc}")
    for name in runners:
        _RESULTS[name] = {"windows/s": [], "fetched": [], "wire": []}
    for _ in range(ROUNDS):
        for name, run in runners.items():
            rate, fetched, wire = run()
            _RESULTS[name]["windows/s"].append(rate)
            _RESULTS[name]["fetched"].append(fetched)
            _RESULTS[name]["wire"].append(wire)
    benchmark.pedantic(runners["npydir"], rounds=1, iterations=1)
    print()
    print(table())
    med = {n: statistics.median(r["windows/s"]) for n, r in _RESULTS.items()}
    assert statistics.median(_RESULTS["npydir"]["fetched"]) <= 1.1
    assert med["npydir"] >= 10 * med["zarr"]


def table() -> str:
    lines = [f"latency {LATENCY * 1000:.0f} ms/request, {ROWS} x {CHANNELS} float16, "
             f"windows of {WINDOW}, {ROUNDS} rounds (median [min-max])",
             f"{'reader':12} {'windows/s':>26} {'fetched/delivered':>18} {'wire/delivered':>16}"]
    base = statistics.median(_RESULTS["zarr"]["windows/s"]) if "zarr" in _RESULTS else None
    for name, r in _RESULTS.items():
        w = r["windows/s"]
        rel = f" ({statistics.median(w) / base:.0f}x zarr)" if base else ""
        fetched = statistics.median(r["fetched"])
        lines.append(
            f"{name:12} {statistics.median(w):9.0f} [{min(w):.0f}-{max(w):.0f}]{rel:>12} "
            f"{'-' if np.isnan(fetched) else f'{fetched:.3f}':>18} "
            f"{statistics.median(r['wire']):16.3f}"
        )
    return "\n".join(lines)
