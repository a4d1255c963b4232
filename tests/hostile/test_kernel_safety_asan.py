"""The window kernel built with AddressSanitizer passes the kernel test zoo.

The extension is rebuilt from a copy of the source tree with ``NPYDIR_ASAN=1`` (setup.py adds
``-fsanitize=address``) into a temp directory, then ``tests/kernel/test_windows*.py`` and
``tests/hostile/test_kernel_safety.py`` run in a child Python with ``PYTHONPATH`` pointing
at the instrumented build and ``LD_PRELOAD`` = gcc's ``libasan.so`` (Python itself is not
instrumented; ``detect_leaks=0`` because CPython keeps memory alive at exit on purpose).
A single byte read or written outside an allocation aborts the child with an ASan report.

A control test proves the sanitizer is live: calling the raw kernel (which trusts its
arguments) with an ``out`` buffer too small for the window must be caught as a
heap-buffer-overflow.

``NPYDIR_HOSTILE_ASAN=0`` skips these tests (the build costs ~15 s of CPU).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import _hostile
import pytest

pytestmark = [pytest.mark.hostile, pytest.mark.timeout(400)]

REPO = _hostile.REPO


def _libasan() -> str | None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    out = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = out.stdout.strip()
    return path if out.returncode == 0 and os.path.isabs(path) and os.path.exists(path) else None


@pytest.fixture(scope="module")
def asan_build(tmp_path_factory):
    if _hostile.env_int("NPYDIR_HOSTILE_ASAN", 1) == 0:
        pytest.skip("NPYDIR_HOSTILE_ASAN=0")
    libasan = _libasan()
    if libasan is None:
        pytest.skip("the C toolchain has no libasan.so (gcc -print-file-name=libasan.so)")
    base = tmp_path_factory.mktemp("asan")
    src, lib = base / "src", base / "lib"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "src_cython", src / "src_cython")
    shutil.copytree(
        REPO / "npydir", src / "npydir", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    env = {**os.environ, "NPYDIR_ASAN": "1"}
    build = subprocess.run(
        [
            sys.executable,
            "setup.py",
            "-q",
            "build_ext",
            "--build-lib",
            str(lib),
            "--build-temp",
            str(base / "tmp"),
        ],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if build.returncode != 0:
        if "sanitize" in build.stderr and (
            "unrecognized" in build.stderr or "cannot find" in build.stderr
        ):
            pytest.skip(f"the compiler cannot build with -fsanitize=address: {build.stderr[-500:]}")
        raise AssertionError(f"ASan build failed:\n{build.stdout[-2000:]}\n{build.stderr[-4000:]}")
    # the pure-Python package beside the instrumented extensions
    shutil.copytree(
        src / "npydir",
        lib / "npydir",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    sos = sorted(p.name for p in (lib / "npydir" / "kernel").glob("*.so"))
    assert any(n.startswith("_windows") for n in sos), sos
    runenv = {
        **_hostile.child_env(),
        "PYTHONPATH": str(lib),
        "LD_PRELOAD": libasan,
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:halt_on_error=1:exitcode=86",
        "HYPOTHESIS_PROFILE": "ci",
    }
    runenv.pop("PYTHONFAULTHANDLER", None)
    _hostile.record("kernel/ASan", "instrumented extensions", ", ".join(sos))
    return lib, runenv


def _run(
    code_or_args: list[str], env: dict, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *code_or_args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_asan_build_is_the_one_loaded_and_live(asan_build, tmp_path):
    """Control: the child imports the instrumented kernel, and ASan catches an overflow in it."""
    lib, env = asan_build
    out = _run(["-c", "import npydir.kernel._windows as w; print(w.__file__)"], env, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().startswith(str(lib)), out.stdout
    # bypass gather_windows' validation: the raw kernel trusts that out holds window rows
    # (it maps out-of-range starts back into x by itself, so a too-small out is the lever)
    code = (
        "import numpy as np, npydir.kernel._windows as w\n"
        "x = np.zeros((1000, 4), np.float32)\n"
        "out = np.empty((1, 10, 4), np.float32)\n"
        "w.gather(x, np.array([0], np.int64), 100, out)\n"
        "print('no report')\n"
    )
    out = _run(["-c", code], env, tmp_path)
    assert (
        out.returncode == 86
        and "AddressSanitizer" in out.stderr
        and "heap-buffer-overflow" in out.stderr
    ), (
        f"ASan did not catch a write past the end (exit {out.returncode}):\n"
        f"{out.stdout}\n{out.stderr[-3000:]}"
    )


def test_kernel_zoo_under_asan(asan_build, tmp_path):
    lib, env = asan_build
    files = sorted(str(p) for p in (REPO / "tests" / "kernel").glob("test_windows*.py"))
    files.append(str(_hostile.HERE / "test_kernel_safety.py"))
    out = _run(
        [
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--benchmark-disable",
            "-x",
            *files,
            "-o",
            f"cache_dir={tmp_path / 'cache'}",
        ],
        env,
        tmp_path,
        timeout=360,
    )
    tail = out.stdout[-3000:] + "\n" + out.stderr[-5000:]
    assert "AddressSanitizer" not in out.stderr, f"ASan report:\n{tail}"
    assert out.returncode == 0, f"kernel zoo failed under ASan (exit {out.returncode}):\n{tail}"
    summary = [ln for ln in out.stdout.splitlines() if " passed" in ln]
    _hostile.record(
        "kernel/ASan", "zoo under AddressSanitizer", summary[-1].strip("= ") if summary else "?"
    )
