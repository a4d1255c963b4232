"""Child of test_concurrency_maps.py: hold memory maps of a store's arrays and keep reading them.

``python _maps_reader.py <store> <seconds>``: each round lists the arrays, takes a view of each
(``root[name][...]``, a view of the memory map), keeps the last 50 views alive and sums every
one of them, touching every page.  If a writer ever shrank a file under a live map, the read
would raise SIGBUS and kill this process (the parent sees the signal).  Exceptions are counted
by type; the parent checks they are documented ones.  Prints ``{"rounds", "views", "errors"}``.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, deque

import numpy as np

import npydir


def main() -> None:
    store, seconds = sys.argv[1], float(sys.argv[2])
    deadline = time.monotonic() + seconds
    views: deque = deque(maxlen=50)
    errors: Counter = Counter()
    rounds = total = 0
    while time.monotonic() < deadline:
        try:
            with npydir.open(store, "r") as root:
                for name in root.array_keys():
                    try:
                        views.append(root[name][...])
                        total += 1
                    except Exception as exc:  # counted, judged by the parent
                        errors[f"{type(exc).__module__}.{type(exc).__name__}"] += 1
        except Exception as exc:
            errors[f"{type(exc).__module__}.{type(exc).__name__}"] += 1
        for v in views:
            np.asarray(v).sum()  # touch every page of every live view
        rounds += 1
    print(json.dumps({"rounds": rounds, "views": total, "errors": errors}))


if __name__ == "__main__":
    main()
