"""Hostile suite: prints the counts every test actually ran at the end of the run.

Run alone with ``make hostile`` (``pytest -m hostile -s``); it also runs in ``make test``.
Counts are set by environment variables, see ``_hostile.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _hostile


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _hostile.COUNTS:
        return
    tr = terminalreporter
    tr.write_sep("=", "npydir hostile suite: counts")
    width = max(len(f"{a}: {w}") for a, w in _hostile.COUNTS)
    for (area, what), n in sorted(_hostile.COUNTS.items()):
        tr.write_line(f"{f'{area}: {what}':<{width}}  {n}")


_SELECTED: list[str] = []


def pytest_collection_finish(session):
    """Remember the selected fuzz targets (their fuzzers start with the first hostile test)."""
    for item in session.items:
        name = item.module.__name__ if getattr(item, "module", None) else ""
        target = name.removeprefix("test_fuzz_")
        if (
            name.startswith("test_fuzz_")
            and target in _hostile.FUZZ_TARGETS
            and target not in _SELECTED
        ):
            _SELECTED.append(target)


def pytest_runtest_setup(item):
    """At the first test of this directory, start the selected fuzzers in the background, so the
    CPU-bound fuzzing overlaps the crash/concurrency tests (which mostly wait) and not the rest
    of the project's suite; each fuzz test then collects its fuzzer's result."""
    while _SELECTED:
        target = _SELECTED.pop(0)
        _hostile.start_fuzzer("hypothesis", target)
        _hostile.start_fuzzer("atheris", target)


def pytest_sessionfinish(session, exitstatus):
    _hostile.stop_background()
