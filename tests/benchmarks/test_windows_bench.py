"""Smoke-run benchmarks/bench_windows.py on a tiny file so the suite cannot rot unnoticed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_windows_smoke(tmp_path):
    env = dict(os.environ, NPYDIR_BENCH_GB="0.02", NPYDIR_BENCH_ROUNDS="3",
               NPYDIR_BENCH_COLD_ROUNDS="1", NPYDIR_BENCH_DIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/bench_windows.py", "--benchmark-enable",
         "-q", "-p", "no:cacheprovider", "--benchmark-columns=median"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "bench_windows ratios" in out
    warm, cold = out.split("bench_windows ratios", 1)[1].split("cold:", 1)
    rows = [line for line in warm.splitlines() if re.match(r"\s+\d+ x \d+ ", line)]
    assert len(rows) == 6, warm
    for line in rows:  # every warm method got a ratio
        assert len(re.findall(r"\d+\.\d\dx", line)) == 7, line
    cold_rows = [line for line in cold.splitlines() if re.match(r"\s+\d+ x \d+ ", line)]
    assert len(cold_rows) == 2 and all(len(re.findall(r"\d\.\dx", r)) == 3 for r in cold_rows)
