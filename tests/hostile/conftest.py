"""Hostile suite (issue 7): prints the counts every test actually ran at the end of the run.

Run alone with ``make hostile`` (``pytest -m hostile -s``); it also runs in ``make test``.
Counts are set by environment variables, see ``_hostile.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _hostile  # noqa: E402


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _hostile.COUNTS:
        return
    tr = terminalreporter
    tr.write_sep("=", "npydir hostile suite: counts")
    width = max(len(f"{a}: {w}") for a, w in _hostile.COUNTS)
    for (area, what), n in sorted(_hostile.COUNTS.items()):
        tr.write_line(f"{f'{area}: {what}':<{width}}  {n}")


def pytest_collection_finish(session):
    """Start the fuzzers of the selected fuzz tests now, in the background (see _hostile.py)."""
    for item in session.items:
        name = item.module.__name__ if getattr(item, "module", None) else ""
        if name.startswith("test_fuzz_"):
            target = name.removeprefix("test_fuzz_")
            if target in _hostile.FUZZ_TARGETS:
                _hostile.start_fuzzer("hypothesis", target)
                _hostile.start_fuzzer("atheris", target)


def pytest_sessionfinish(session, exitstatus):
    _hostile.stop_background()
