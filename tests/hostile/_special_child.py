"""Child process of the special-file tests: every read and write API on stores holding a FIFO,
socket or device in place of one store file.

Usage: ``python _special_child.py <workdir> <kind>`` with kind ``fifo``, ``socket`` or
``device``.  For each position (``attrs.json``, ``y.npy``, ``attrs.npy``, ``g/attrs.json``,
``x.attrs.json``) a fresh store is built, the special file planted, and each operation run under
an alarm: an operation still blocked after ``ALARM`` seconds counts as a hang (and is
interrupted, so the child goes on).  The last line of stdout is the JSON list of outcomes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import sys
import warnings
from pathlib import Path

warnings.simplefilter("ignore")

import numpy as np  # noqa: E402

import npydir  # noqa: E402

ALARM = 5
POSITIONS = ("attrs.json", "y.npy", "attrs.npy", "g/attrs.json", "x.attrs.json")


class Hang(BaseException):
    """Raised by the alarm: the operation blocked."""


def _alarm(signum, frame):
    raise Hang()


def build(store: Path, position: str, kind: str, keep: list) -> None:
    with npydir.open(store, "w", das_compat=True) as r:
        r.attrs["root"] = 1
        r["x"] = np.arange(6, dtype="i4").reshape(3, 2)
        r["x"].attrs["unit"] = "V"
        r["y"] = np.arange(3, dtype="f4")
        r["g/z"] = np.zeros(2)
        r["g"].attrs["k"] = "v"
    if position == "attrs.npy":  # a DAS store: attrs.npy is where the root attrs are read from
        os.unlink(store / "attrs.json")
    p = store / position
    os.unlink(p)
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        cwd = os.getcwd()
        os.chdir(p.parent)  # AF_UNIX paths are limited to 108 bytes: bind by the short name
        try:
            s.bind(p.name)
        finally:
            os.chdir(cwd)
        keep.append(s)
    else:  # /dev/null's numbers: reading it would not hang, but it is not a store file
        os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(1, 3))


def op_attrs(store: Path) -> None:
    with npydir.open(store, "r") as r:
        dict(r.attrs)
        for _, obj in r.members():
            dict(obj.attrs)


def op_read(store: Path) -> None:
    with npydir.open(store, "r") as r:
        for _, obj in r.members():
            if isinstance(obj, npydir.Array):
                np.asarray(obj).copy()


def op_update(store: Path) -> None:
    with npydir.open(store, "a") as r:
        for obj in [r] + [o for _, o in r.members()]:
            obj.attrs["touched"] = 1
            if isinstance(obj, npydir.Array):
                obj.append(np.asarray(obj[:1]))


def op_verify(store: Path) -> str:
    return str(npydir.verify(store))


def op_repair(store: Path) -> str:
    return str(npydir.repair(store))


def op_load(store: Path) -> None:
    data = npydir.load(store)

    def walk(d):
        dict(d.attrs)
        for v in d.values():
            if isinstance(v, dict):
                walk(v)
            else:
                np.asarray(v).copy()

    walk(data)


def op_convert(store: Path) -> None:
    out = store.with_name("out.npy")
    shutil.rmtree(out, ignore_errors=True)
    npydir.convert(store, out, progress=False)


OPS = {
    "attrs": op_attrs,
    "read": op_read,
    "update": op_update,
    "verify": op_verify,
    "repair": op_repair,
    "load": op_load,
    "convert": op_convert,
}


def main() -> None:
    work, kind = Path(sys.argv[1]), sys.argv[2]
    signal.signal(signal.SIGALRM, _alarm)
    results = []
    for position in POSITIONS:
        for name, fn in OPS.items():
            store = work / f"{kind}-{position.replace('/', '_')}-{name}" / "s.npy"
            store.parent.mkdir(parents=True)
            keep: list = []
            build(store, position, kind, keep)
            res = {"position": position, "op": name, "file": str(store / position)}
            signal.alarm(ALARM)
            try:
                out = fn(store)
                res.update(outcome="ok", text=out or "")
            except Hang:
                res.update(outcome="hang")
            except Exception as exc:
                res.update(
                    outcome="error",
                    type=type(exc).__name__,
                    mro=[c.__name__ for c in type(exc).__mro__],
                    message=str(exc)[:1000],
                )
            finally:
                signal.alarm(0)
                for s in keep:
                    s.close()
            results.append(res)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
