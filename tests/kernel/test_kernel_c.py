"""The kernel's C on its own: tests/kernel/c/*.c compiled against src_cython/c/ and run.

Each C test program prints "ok" and exits 0, or names the failed check.  They run plain and,
where the compiler has it, under ThreadSanitizer, which reports data races in the helper pool
that a plain run would only show by chance.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
C_DIR = REPO / "src_cython" / "c"
TESTS = REPO / "tests" / "kernel" / "c"

#: test program -> the kernel C files it links
PROGRAMS = {"test_pool.c": ["npydir_pool.c"], "test_runner.c": ["npydir_runner.c"]}

SANITIZERS = {
    "plain": ([], {}),
    # fork() in a threaded process is what the pool must survive; TSan refuses to start
    # threads after it unless told to carry on
    "tsan": (["-fsanitize=thread", "-g"], {"TSAN_OPTIONS": "die_after_fork=0 halt_on_error=1"}),
}


def _cc() -> str:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return cc if shutil.which(cc) else "cc"


@pytest.mark.parametrize("sanitizer", list(SANITIZERS))
@pytest.mark.parametrize("program", list(PROGRAMS))
def test_c_program(tmp_path, program, sanitizer):
    flags, env = SANITIZERS[sanitizer]
    exe = tmp_path / Path(program).stem
    sources = [str(TESTS / program)] + [str(C_DIR / c) for c in PROGRAMS[program]]
    build = subprocess.run(
        [_cc(), "-O1", "-pthread", "-Wall", "-Werror", f"-I{C_DIR}", *flags, *sources,
         "-o", str(exe)],
        capture_output=True, text=True, timeout=300,
    )
    if build.returncode != 0 and sanitizer != "plain":
        pytest.skip(f"the C compiler cannot build with {sanitizer}: {build.stderr.strip()[:200]}")
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr
    assert "WARNING: ThreadSanitizer" not in run.stderr, run.stderr
