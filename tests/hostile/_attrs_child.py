"""Child of test_attrs_decoding.py: read one hostile store's attributes every way, report JSON.

``python _attrs_child.py <store> <cap_mib>``: caps the address space at ``cap_mib`` MiB above
what the process uses after importing npydir (so an attempt to allocate gigabytes is a fast
MemoryError, not a swapped machine), then runs the decoder of the file, the root group's
``.attrs``, ``npydir.verify`` and ``npydir.load``, and prints one JSON object: for each, ``"ok"``
with a digest of what came back, or ``"<ErrorClass>: <message>"``.  A crash (the test's
subprocess sees the signal) fails the test instead of killing pytest.
"""

from __future__ import annotations

import hashlib
import json
import resource
import sys
from pathlib import Path

import numpy as np

import npydir
from npydir.store.attrs import read_attrs_file, read_legacy_attrs


def _cap(extra_mib: int) -> None:
    with open("/proc/self/statm") as fp:
        used = int(fp.read().split()[0]) * resource.getpagesize()
    limit = used + (extra_mib << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))


def _digest(value) -> str:
    """What came back, as bytes: arrays by their raw bytes (uninitialised memory shows here)."""
    out = hashlib.sha256()

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                out.update(repr(k).encode())
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, (np.ndarray, np.generic)):
            out.update(np.asarray(v).tobytes())
        else:
            out.update(repr(v).encode())

    walk(value)
    return out.hexdigest()


def _run(fn):
    try:
        value = fn()
    except MemoryError as exc:
        return f"MemoryError: {exc}"
    except Exception as exc:  # noqa: BLE001 - the test judges the class
        return f"{type(exc).__name__}: {exc}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {"ok": value}
    raw = b""
    if isinstance(value, dict):
        for v in value.values():
            if isinstance(v, (np.ndarray, np.generic)):
                raw += np.asarray(v).tobytes()
    return {"ok": _digest(value), "raw": raw.hex()[:200000]}


def main() -> None:
    store, cap = Path(sys.argv[1]), int(sys.argv[2])
    secret = sys.argv[3].encode() if len(sys.argv) > 3 else b""
    if secret:  # a secret freed just before the read: uninitialised memory would hold it
        [secret * 64 for _ in range(4000)]  # made and freed at once
    _cap(cap)
    legacy = store / "attrs.npy"
    result = {
        "decode": _run(
            (lambda: read_legacy_attrs(legacy))
            if legacy.exists()
            else (lambda: read_attrs_file(store / "attrs.json"))
        ),
        "attrs": _run(lambda: dict(npydir.open(store, "r").attrs)),
        "verify": _run(lambda: [str(p) for p in npydir.verify(store).problems]),
        "load": _run(lambda: dict(npydir.load(store).attrs)),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
