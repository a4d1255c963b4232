"""Child processes of the concurrency tests: one writer, several readers, racing.

``python _rw_children.py writer <store> <seconds>``: appends rows (row i holds i) and, after
each append, updates the root attributes (``gen``, ``n`` = rows committed, ``payload``) and the
array's attributes (``n``); exits after ``seconds``.  Prints ``{"appends": k, "gen": g}``.

``python _rw_children.py reader <store> <seconds>``: until the deadline, reads attributes and
shapes, both through a fresh ``npydir.open`` each round and through one long-lived handle,
and checks what it sees: shape never beyond the bytes on disk, every row present holds its
index, attributes are complete JSON with exactly the writer's keys and self-consistent
values, and never ahead of the data (``attrs["n"] <= len(x)``, attrs read first).  Prints
``{"rounds": r, "problems": [...]}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

warnings.simplefilter("ignore")

import numpy as np  # noqa: E402

import npydir  # noqa: E402
from npydir import npyfile  # noqa: E402

COLS = 64
KEYS = ["gen", "n", "payload"]


def writer(store: str, seconds: float) -> None:
    rng = np.random.default_rng(1)
    deadline = time.monotonic() + seconds
    gen = appends = 0
    with npydir.open(store, "a") as root:
        x = root["x"]
        while time.monotonic() < deadline:
            n = len(x)
            k = int(rng.integers(1, 200))
            x.append(np.repeat(np.arange(n, n + k, dtype="i8")[:, None], COLS, axis=1))
            appends += 1
            gen += 1
            root.attrs.update(gen=gen, n=n + k, payload=list(range(gen % 50)))
            x.attrs["n"] = n + k
    print(json.dumps({"appends": appends, "gen": gen}))


def check_round(root, problems: list, last: dict) -> None:
    a = root.attrs.asdict()  # attrs first: they may lag the data, never lead it
    xa = root["x"].attrs.asdict()
    x = root["x"]
    path = x.filename
    header = npyfile.read_header_path(path)
    size = os.path.getsize(path)
    if size < header.expected_size:
        problems.append(f"shape {header.shape} needs {header.expected_size} bytes, file has {size}")
    if a:
        if sorted(a) != KEYS:
            problems.append(f"root attrs keys {sorted(a)}")
        elif a["payload"] != list(range(a["gen"] % 50)):
            problems.append(f"root attrs of mixed generations {a}")
        elif a["n"] > header.shape[0]:
            problems.append(f"attrs say n={a['n']} rows, the header only {header.shape[0]}")
        elif a["gen"] < last.get("gen", 0):
            problems.append(f"gen went back {last['gen']} -> {a['gen']}")
        else:
            last["gen"] = a["gen"]
    if xa and (sorted(xa) != ["n"] or xa["n"] > header.shape[0]):
        problems.append(f"array attrs {xa} vs shape {header.shape}")
    data = x[:]
    if data.shape[0] < header.shape[0] and data.shape[0] < last.get("rows", 0):
        problems.append(f"rows went back {last['rows']} -> {data.shape[0]}")
    last["rows"] = data.shape[0]
    # the mapped rows are exactly the committed ones: row i holds i
    if data.size and not (data[:, 0] == np.arange(len(data))).all():
        bad = int(np.argmax(data[:, 0] != np.arange(len(data))))
        problems.append(f"row {bad} holds {data[bad, 0]} (shape {data.shape})")
    if data.size and not (data[-1] == len(data) - 1).all():
        problems.append("last row not complete")


def reader(store: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    problems: list[str] = []
    rounds = 0
    last_fresh: dict = {}
    last_long: dict = {}
    long_lived = npydir.open(store, "r")
    while time.monotonic() < deadline and len(problems) < 20:
        try:
            with npydir.open(store, "r") as root:
                check_round(root, problems, last_fresh)
            # a handle kept open: attrs are re-read when they change on disk
            check_round(long_lived, problems, last_long)
        except Exception as exc:  # any exception is a consistency failure here
            problems.append(f"{type(exc).__name__}: {exc}")
        rounds += 1
    long_lived.close()
    print(json.dumps({"rounds": rounds, "problems": problems}))


if __name__ == "__main__":
    role, store, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    (writer if role == "writer" else reader)(store, seconds)
