"""Shared hooks for the benchmark suites: print ratio tables measured in this session."""

from __future__ import annotations

import sys


def pytest_terminal_summary(terminalreporter):
    """Print the ratio table of every bench module that offers ``ratio_table()``."""
    for name in ("bench_windows", "bench_limit", "bench_frameworks"):
        module = sys.modules.get(name)
        table = module.ratio_table() if module and hasattr(module, "ratio_table") else ""
        if table:
            terminalreporter.write_sep("=", f"{name} ratios")
            terminalreporter.write_line(table)
