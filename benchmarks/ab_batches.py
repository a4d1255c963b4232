"""Before/after in one process: the ``Batches`` loader of a git revision against this tree's.

Run on demand (from the repository root, with the extensions built)::

    flock /tmp/npydir-bench.lock env PYTHONPATH=$PWD .venv/bin/python \
        benchmarks/ab_batches.py REVISION [--rounds 11] [--batches 600] [--gib 2]

``npydir/batches.py`` of ``REVISION`` (with the private sibling modules it imports that this
tree no longer has, e.g. ``_recycle.py``) is copied into a temporary package whose other
imports point at this tree's ``npydir``: both loaders then call the same kernel, and only the
loader code differs.  Each round pulls ``--batches`` batches (after the first) from a new
epoch of each loader, the order alternating, plainly and through a
``torch.utils.data.DataLoader(batch_size=None)`` over a minimal ``IterableDataset`` (when
torch is installed).  Printed: the median (min-max) over rounds of old time / new time, so
above 1 means this tree is faster.  The data is the float32 ``[n, 9]`` file of
``benchmarks/bench_batches.py`` (``NPYDIR_BENCH_DIR``), made if missing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = [(32, 4096), (256, 64), (1024, 16)]


def _old_loader(revision: str, into: Path):
    """``Batches`` of ``npydir/batches.py`` at ``revision``, importing this tree's npydir."""
    package = into / "npydir_before"
    package.mkdir()
    (package / "__init__.py").write_text("")

    def show(path: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{revision}:{path}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    pending, done = ["batches"], set()
    while pending:
        name = pending.pop()
        done.add(name)
        source = show(f"npydir/{name}.py")
        for sibling in re.findall(r"^from \.(\w+) import", source, flags=re.MULTILINE):
            if importlib.util.find_spec(f"npydir.{sibling}") is None and sibling not in done:
                pending.append(sibling)  # gone from this tree: take the revision's
            elif sibling not in done:
                source = re.sub(
                    rf"^from \.{sibling} import", f"from npydir.{sibling} import", source,
                    flags=re.MULTILINE,
                )  # fmt: skip
        source = re.sub(r"^from \. import", "from npydir import", source, flags=re.MULTILINE)
        (package / f"{name}.py").write_text(source)
    sys.path.insert(0, str(into))
    return importlib.import_module("npydir_before.batches").Batches


def _data(gib: float) -> np.ndarray:
    folder = Path(os.environ.get("NPYDIR_BENCH_DIR", tempfile.gettempdir()))
    n = int(gib * 2**30) // (4 * 9)
    path = folder / f"npydir-bench-batches-{n}x9-f4.npy"
    if not path.exists():
        out = np.lib.format.open_memmap(path, mode="w+", dtype="f4", shape=(n, 9))
        rng = np.random.default_rng(0)
        for i in range(0, n, 1 << 22):
            out[i : i + (1 << 22)] = rng.random((min(1 << 22, n - i), 9), dtype=np.float32)
        out.flush()
        del out
    x = np.load(path, mmap_mode="r")
    for i in range(0, len(x), 1 << 22):
        x[i : i + (1 << 22)].sum()  # warm
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("revision")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--batches", type=int, default=600)
    parser.add_argument("--gib", type=float, default=2.0)
    args = parser.parse_args()

    from npydir.loader.batches import Batches as New

    with tempfile.TemporaryDirectory() as tmp:
        Old = _old_loader(args.revision, Path(tmp))
        x = _data(args.gib)
        try:
            import torch
            from torch.utils.data import DataLoader, IterableDataset
        except ImportError:
            torch = None

        def timed(it) -> float:
            next(it)
            t0 = time.perf_counter()
            for _ in range(args.batches):
                next(it)
            return time.perf_counter() - t0

        def plain(b):
            it = iter(b)
            try:
                return timed(it)
            finally:
                it.close()

        def loader(b):
            class Dataset(IterableDataset):
                def __iter__(self):
                    it = b._iterate(range(len(b)))
                    try:
                        for batch in it:
                            yield tuple(map(torch.from_numpy, batch))
                    finally:
                        it.close()

            it = iter(DataLoader(Dataset(), batch_size=None))
            try:
                return timed(it)
            finally:
                it._dataset_fetcher.dataset_iter.close()

        kinds = {"plain": plain} | ({"DataLoader": loader} if torch is not None else {})
        print(f"{args.revision} -> this tree, {args.batches} batches x {args.rounds} rounds, "
              f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
        for batch, window in CONFIGS:
            ratios: dict[str, list[float]] = {kind: [] for kind in kinds}
            for r in range(args.rounds + 1):  # round 0 warms up
                order = [("old", Old), ("new", New)][:: 1 if r % 2 else -1]
                for kind, run in kinds.items():
                    t = {}
                    for name, cls in order:
                        b = cls(x, window=window, batch_size=batch, seed=0)
                        b.set_epoch(r)
                        t[name] = run(b)
                    if r:
                        ratios[kind].append(t["old"] / t["new"])
            print(f"({batch}, {window}): old time / new time " + ", ".join(
                f"{kind} {statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"
                for kind, v in ratios.items()
            ))  # fmt: skip


if __name__ == "__main__":
    main()
