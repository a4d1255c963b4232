"""Smoke-run benchmarks/bench_convert.py on one chunk so the benchmark cannot rot unnoticed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("zarr")
pytest.importorskip("h5py")
ROOT = Path(__file__).resolve().parents[2]


def test_bench_convert_smoke(tmp_path):
    env = dict(os.environ, NPYDIR_BENCH_CONVERT_GB="0.001", NPYDIR_BENCH_ROUNDS="0",
               NPYDIR_BENCH_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/bench_convert.py", "--benchmark-enable",
         "-s", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'pt'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for kind in ("zarr", "hdf5"):
        assert f"{kind}: 0.02 GiB" in out.stdout  # one chunk of (1_000_000, 9) float16
    assert "RssAnon peak" in out.stdout
