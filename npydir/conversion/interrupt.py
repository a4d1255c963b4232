"""Ctrl-C during a conversion: noted at once, acted on between blocks.

Python raises ``KeyboardInterrupt`` at whatever point the interpreter is when SIGINT arrives.
Inside h5py that point is often a callback whose exceptions are only printed ("Exception
ignored in ...", e.g. a weak-reference callback run when an HDF5 identifier is freed), and
the interrupt is lost: the conversion ran on to the end.  While a conversion runs in the main
thread, :class:`DeferredInterrupt` replaces Python's default SIGINT handler with one that only
sets a flag; the conversion calls :meth:`DeferredInterrupt.check` between blocks, which raises
``KeyboardInterrupt`` from a known place (the journal is then saved as on any error).  A
handler the application installed itself is left alone.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


class DeferredInterrupt:
    """Context manager; see the module docstring."""

    def __init__(self) -> None:
        self.pending = False
        self._previous: Callable[[int, FrameType | None], Any] | int | None = None

    def __enter__(self) -> DeferredInterrupt:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self.pending = True

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed since the last check."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        if exc_type is None:
            self.check()  # pressed after the last block: still an interruption
