"""The README's Python examples type-check as a user's code: mypy over every ```python block,
with npydir found the way a user's mypy finds an installed package (through its py.typed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _readme import README, python_blocks

pytest.importorskip("mypy")

ROOT = README.parent

#: the README's list of calls, whose arguments stand for the reader's values
CHEAT_SHEET = "## API at a glance"

#: the reader's values in the cheat sheet, with the types they stand for
GIVEN = """\
from collections.abc import Callable
from typing import Any

import numpy as np

import npydir

path: str
n: int
shape: tuple[int, ...]
dtype: np.dtype
func: Callable[..., Any]
src: str
dst: str
i: int
j: int
block: np.ndarray
x: np.ndarray
y: np.ndarray
starts: np.ndarray
window: int
nb_samples: int
class_names: list[str]
class_types: list[str]
"""

#: shows that mypy read npydir's own hints (a missing or untyped package would be Any)
PROBE = "import npydir\n\nreveal_type(npydir.open)\n"

#: documented arguments beyond the README's, which the hints once refused
API_USE = """\
import numpy as np

import npydir.das

ann = npydir.das.Annotations(["song"], [0.5], [1.5])  # array_like, as documented
act = np.zeros((10, 1))
y = npydir.das.normalize_targets(act, dtype=np.float16)  # any dtype-like
"""


def _modules(folder: Path) -> list[Path]:
    """One module per README block; the cheat sheet's paragraphs each after ``GIVEN``."""
    files = []
    for line, heading, code in python_blocks():
        parts = [code]
        if heading == CHEAT_SHEET:
            parts = [GIVEN + "\n" + p for p in code.split("\n\n")]
        for k, part in enumerate(parts):
            f = folder / f"readme_line_{line}_{k}.py"
            f.write_text(part, encoding="utf-8")
            files.append(f)
    assert len(files) > 5, "no README examples found"
    return files


@pytest.mark.slow
def test_readme_examples_type_check(tmp_path):
    files = _modules(tmp_path)
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE, encoding="utf-8")
    api_use = tmp_path / "api_use.py"
    api_use.write_text(API_USE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    if not os.environ.get("NPYDIR_TYPECHECK_INSTALLED"):
        # this tree, as an installed package: mypy reads PYTHONPATH like site-packages, so it
        # sees npydir's hints only through py.typed (`make typecheck` checks the install)
        env["PYTHONPATH"] = str(ROOT)
    # the project's settings (Python 3.10; torch, keras may be missing), from outside the repo
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", "--show-error-codes",
         str(probe), str(api_use), *map(str, files)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, f"mypy on README.md's examples (files in {tmp_path}):\n{out}"
    assert 'Revealed type is "def (path: ' in out, f"mypy did not see npydir's hints:\n{out}"
