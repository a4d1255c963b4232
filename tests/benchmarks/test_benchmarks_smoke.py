"""Smoke-run the loader and store benchmarks on tiny data so they cannot rot unnoticed.

(The kernel and conversion benchmarks have their own smoke tests, which also check the ratio
tables they print: tests/benchmarks/test_windows_bench.py, tests/benchmarks/test_convert_bench.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "suite",
    [
        "bench_batches.py",
        "bench_store.py",
        "bench_limit.py",
        "bench_frameworks.py",
        "bench_permutation.py",
        "bench_startup.py",
    ],
)
def test_benchmark_suite_runs(tmp_path, suite):
    env = dict(
        os.environ,
        NPYDIR_BENCH_GB="0.02",
        NPYDIR_BENCH_ROUNDS="2",
        NPYDIR_BENCH_BATCHES="5",
        NPYDIR_BENCH_COLD_BATCHES="2",
        NPYDIR_BENCH_APPENDS="5",
        NPYDIR_BENCH_FIT_STEPS="2",
        NPYDIR_BENCH_WARMUP="3",
        NPYDIR_BENCH_WARMUP_MS="0",
        NPYDIR_BENCH_DIR=str(tmp_path),
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"benchmarks/{suite}",
            "--benchmark-enable",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
    # every measurement reached its report line (a ratio against its same-run baseline)
    assert "ratio" in proc.stdout, proc.stdout[-3000:]
