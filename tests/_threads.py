"""Run one function in several Python threads at once and fail the test if any call raised."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_in_threads(work: Callable[[int], object], count: int) -> None:
    """Call ``work(k)`` for ``k`` in ``range(count)``, each in its own thread, and join them.

    An exception in any thread is re-raised here (the first one, with the others attached
    as notes), so a failure inside a thread fails the test instead of being printed and lost.
    """
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            work(k)
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        first = errors[0]
        for other in errors[1:]:
            first.add_note(f"also raised in another thread: {other!r}")
        raise first
