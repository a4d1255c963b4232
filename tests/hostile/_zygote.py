"""A fork server for the crash tests: imports npydir once, then forks one writer per trial.

Starting a Python child costs ~0.5 s (numpy, npydir, h5py, zarr imports); forking this
already-warm process costs a few milliseconds, which is what makes 50+ SIGKILL trials per
operation fit the time budget.  Protocol (JSON lines on stdin/stdout)::

    -> {"cmd": "run", "op": "append", "args": {...}}   <- {"pid": 1234}
    -> {"cmd": "reap", "pid": 1234}                    <- {"pid": 1234, "status": -9}

The test kills the writer itself (``os.kill(pid, SIGKILL)``) after a random delay, then asks
the zygote to reap it.  A writer that finishes on its own exits 0.  Writers write ``ready``
markers nowhere: the kill lands at a uniformly random time after the fork, which covers
opening the store, taking the lock, and every step of the operation.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings

warnings.simplefilter("ignore")

import numpy as np  # noqa: E402

import npydir  # noqa: E402

try:  # the conversion writers need them; import before forking so children start warm
    import h5py  # noqa: F401
    import zarr  # noqa: F401
except ImportError:  # pragma: no cover
    pass

COLS = 1024  # 8 KiB rows of int64


def rows(start: int, n: int, cols: int = COLS) -> np.ndarray:
    """Rows ``start .. start+n-1``; row i holds i in every column (checkable after a crash)."""
    return np.repeat(np.arange(start, start + n, dtype="i8")[:, None], cols, axis=1)


def content(i: int) -> np.ndarray:
    """The complete content of array number i of the create writer (size varies with i)."""
    n = 1 + (i * 7919) % 3000
    return (np.arange(n * 16, dtype="<i4").reshape(n, 16) + i).astype("<i4")


def op_append(store: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    root = npydir.open(store, "a")
    x = root["x"] if "x" in root else root.create_dataset("x", shape=(0, COLS), dtype="i8")
    while True:
        n = len(x)
        x.append(rows(n, int(rng.integers(1, 256))))


def op_create(store: str, seed: int) -> None:
    root = npydir.open(store, "a")
    i = seed * 10_000
    while True:
        name = f"g{i % 3}/a{i}" if i % 2 else f"a{i}"
        root.create_dataset(name, data=content(i))
        root[name].attrs["i"] = i
        i += 1


def op_attrs(store: str, seed: int) -> None:
    root = npydir.open(store, "a", das_compat=True)
    x = root["x"]
    gen = int(root.attrs.get("gen", -1))
    while True:
        gen += 1
        root.attrs.update(
            gen=gen,
            payload=list(range(gen % 97)),
            blob=np.arange(gen % 1000, dtype="f8"),
            text="x" * (gen % 5000),
        )
        x.attrs.update(gen=gen, payload=list(range(gen % 31)))


def op_churn(store: str, seed: int) -> None:
    """Create, move (array + attrs) and delete arrays in a loop."""
    root = npydir.open(store, "a")
    i = seed * 10_000
    while True:
        name = f"m{i}"
        root.create_dataset(name, data=content(i))
        root[name].attrs["i"] = i
        root.move(name, f"moved/{name}")
        if i % 2 == 0:
            del root[f"moved/{name}"]
        i += 1


def op_convert(src: str, dst: str, budget: int) -> None:
    npydir.convert(src, dst, progress=False, memory_budget=budget, threads=1, journal_interval=0)


def op_convert_slow(src: str, dst: str, budget: int) -> None:
    """A conversion whose reads take 20 ms each, so a test can kill it at a chosen stage."""
    import time

    from npydir.conversion.adapters.zarr_store import ZarrSource

    real = ZarrSource.read

    def read(self, *args):
        time.sleep(0.02)
        return real(self, *args)

    ZarrSource.read = read
    ZarrSource.read_into = lambda self, *a: False  # force the (slowed) read path
    op_convert(src, dst, budget)


OPS = {
    "convert_slow": op_convert_slow,
    "churn": op_churn,
    "append": op_append,
    "create": op_create,
    "attrs": op_attrs,
    "convert": op_convert,
}


def main() -> None:
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "run":
            errpath = msg.get("stderr") or os.devnull
            pid = os.fork()
            if pid == 0:  # the writer
                code = 0
                try:
                    fd = os.open(errpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(fd, 2)
                    OPS[msg["op"]](**msg["args"])
                except BaseException:
                    traceback.print_exc()
                    code = 1
                finally:
                    sys.stderr.flush()
                    os._exit(code)
            print(json.dumps({"pid": pid}), flush=True)
        elif msg["cmd"] == "reap":
            _, status = os.waitpid(msg["pid"], 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            print(json.dumps({"pid": msg["pid"], "status": code}), flush=True)
        elif msg["cmd"] == "exit":
            break


if __name__ == "__main__":
    main()
