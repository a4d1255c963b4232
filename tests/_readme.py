"""Run the README's code examples in tests, so what users copy keeps working."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import npydir

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(heading: str) -> str:
    """The first ```python block after the README line ``heading``."""
    text = README.read_text(encoding="utf-8")
    at = text.index(f"\n{heading}\n")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, at)
    assert match is not None, f"no python block after {heading!r} in README.md"
    return match.group(1)


def python_blocks() -> list[tuple[int, str, str]]:
    """Every ```python block of the README as ``(line, heading, code)``: the line its code
    starts on and the ``#`` heading it stands under."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.compile(r"```python\n(.*?)```", re.S).finditer(text):
        before = text[: match.start()]
        headings = re.findall(r"^#+ .*$", before, re.M)
        blocks.append((before.count("\n") + 2, headings[-1] if headings else "", match.group(1)))
    return blocks


def small_das_store(folder: Path, samples: int = 4096 + 127) -> Path:
    """``folder/dataset.npy``: train and val splits as make_dataset lays them out, each
    ``samples`` long (four batches of 32 windows of 4096), one recording each."""
    rng = np.random.default_rng(0)
    path = folder / "dataset.npy"
    with npydir.open(path, mode="w") as root:
        for split in ("train", "val"):
            x = rng.standard_normal((samples, 2)).astype("f4")
            labels = (x[:, 0] > 0.5).astype(int) + (x[:, 1] > 0.5)
            root.create_dataset(f"{split}/x", data=x)
            root.create_dataset(f"{split}/y", data=np.eye(3, dtype="f4")[labels])
            root.attrs[f"filename_startsample_{split}"] = [0]
    return path
