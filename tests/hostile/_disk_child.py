"""Child process of the full-disk tests: write into a store until the disk (or a limit) says no.

Usage: ``python _disk_child.py <store> <fsize_limit_bytes or 0> <trials> [sigbus]``

With a limit, ``RLIMIT_FSIZE`` is set and ``SIGXFSZ`` ignored, so a write past the limit fails
with ``EFBIG`` instead of killing the process.  Each step tries one write operation and records
its outcome: ``ok`` or the exception's type, errno and message.  The parent checks the store
afterwards.  The last line of stdout is the JSON list of outcomes.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
import warnings

warnings.simplefilter("ignore")

import numpy as np  # noqa: E402

import npydir  # noqa: E402


def outcome(fn) -> dict:
    try:
        fn()
        return {"outcome": "ok"}
    except Exception as exc:  # record whatever comes out; the parent judges it
        return {
            "outcome": type(exc).__name__,
            "mro": [c.__name__ for c in type(exc).__mro__],
            "errno": getattr(exc, "errno", None),
            "message": str(exc)[:400],
        }


def main() -> None:
    store, limit, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(
            resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1])
        )
    big = max(limit, 1 << 20) // 4 + 4096  # float32 elements past the limit / the free space
    results = []
    root = npydir.open(store, "a")
    for t in range(trials):
        step = t % 5
        if step == 0:  # a whole new array from data (atomic write of real bytes)
            name = f"new{t}"
            r = outcome(lambda: root.create_dataset(name, data=np.ones(big, "f4")))
        elif step == 1:  # append to an existing array
            r = outcome(lambda: root["grow"].append(np.ones((big // 16 + 1, 16), "f4")))
        elif step == 2:  # attributes too large to write
            r = outcome(lambda: root.attrs.update(huge="x" * (4 * big), n=t))
        elif step == 3:  # array attributes
            r = outcome(lambda: root["keep"].attrs.update(huge=list(range(big // 2))))
        else:  # a group plus a small array: may fit or not
            r = outcome(
                lambda: root.create_dataset(
                    f"g{t}/small", data=np.arange(1000 * (t + 1), dtype="f8")
                )
            )
        r["step"] = ["create", "append", "root-attrs", "array-attrs", "small-create"][step]
        results.append(r)
    root.close()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
