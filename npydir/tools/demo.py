"""``npydir demo`` / ``make demo``: the whole pipeline on a built-in fly-song-like dataset.

1. :func:`npydir.das.synthetic.make_recordings` writes audio (``.npz``) with
   ``*_annotations.csv`` (pulse events and sine segments);
2. :func:`npydir.das.make_dataset` builds a DAS training store ``dataset.npy``;
3. :func:`npydir.convert` converts it to ``dataset.zarr`` and ``dataset.h5``;
4. :func:`npydir.tools.bench.run_bench` measures random-window batches on the three (plus the
   memcpy limit, the DAS loop, zarr as DAS writes it and the other HDF5 layout) and writes
   ``bench.json`` and ``bench.png``.

The output directory is replaced on every run, but only if it is empty or holds an earlier
demo (a ``.npydir-demo`` marker file): the demo never deletes anything else.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..conversion.engine import convert
from ..das import synthetic
from ..das.dataset import make_dataset
from ..errors import AlreadyExistsError
from . import bench

__all__ = ["run_demo", "DEFAULTS"]

_MARKER = ".npydir-demo"

#: Defaults of :func:`run_demo`, sized to finish in well under 3 minutes on 2 cores.
DEFAULTS = {
    "recordings": 8,
    "seconds": 120.0,
    "channels": 9,
    "samplerate": 10_000,
    "batch": 32,
    "window": 4096,
    "repeats": 5,
}


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise AlreadyExistsError(f"{out}: exists and is not a directory; choose another --out")
        if any(out.iterdir()) and not (out / _MARKER).exists():
            raise AlreadyExistsError(
                f"{out}: exists, is not empty and holds no earlier demo ({_MARKER}); "
                f"refusing to delete it, choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / _MARKER).write_text("output of `npydir demo`; the next run replaces this folder\n")


def run_demo(out: str | os.PathLike = "demo-output", *, recordings: int | None = None,
             seconds: float | None = None, channels: int | None = None,
             samplerate: int | None = None, batch: int | None = None,
             window: int | None = None, repeats: int | None = None, cold: bool = True,
             progress: bool = False, seed: int = 0,
             echo: Callable[[str], None] = print) -> dict:
    """Run the demo into ``out`` and return the benchmark report (see :mod:`npydir.tools.bench`).

    Parameters
    ----------
    out : path
        Output directory; replaced if empty or an earlier demo, refused otherwise.
    recordings, seconds, channels, samplerate
        Size of the generated recording set (defaults in :data:`DEFAULTS`).
    batch, window, repeats
        Benchmark parameters.
    cold : bool
        Also measure with a cold page cache.
    progress : bool
        tqdm bars on stderr.
    echo : callable
        Where the step messages and the table go.
    """
    cfg = dict(DEFAULTS)
    for k, v in (("recordings", recordings), ("seconds", seconds), ("channels", channels),
                 ("samplerate", samplerate), ("batch", batch), ("window", window),
                 ("repeats", repeats)):
        if v is not None:
            cfg[k] = v
    out = Path(out)
    t_start = time.perf_counter()
    _prepare_out(out)

    def step(msg: str) -> float:
        echo(f"[{time.perf_counter() - t_start:6.1f} s] {msg}")
        return time.perf_counter()

    step(f"1/4 recordings: {cfg['recordings']} x {cfg['seconds']:g} s fly-song-like audio, "
         f"{cfg['channels']} channel(s) at {cfg['samplerate']} Hz -> {out / 'recordings'}")
    pairs = synthetic.make_recordings(out / "recordings", n_recordings=int(cfg["recordings"]),
                                      seconds=float(cfg["seconds"]),
                                      samplerate=int(cfg["samplerate"]),
                                      channels=int(cfg["channels"]), seed=seed)

    store = out / "dataset.npy"
    step(f"2/4 make_dataset -> {store}")
    # whole recordings per split as DAS does; too few of them for train/val/test: cut each
    split = "recording" if len(pairs) >= 3 else "fraction"
    make_dataset(pairs, store, split=split, progress=progress)

    zarr_path, h5_path = out / "dataset.zarr", out / "dataset.h5"
    step(f"3/4 convert -> {zarr_path}, {h5_path}")
    convert(store, zarr_path, progress=progress)
    convert(store, h5_path, progress=progress)

    step(f"4/4 bench: batch {cfg['batch']} x window {cfg['window']}, {cfg['repeats']} repeats"
         + (", warm and cold cache" if cold else ", warm cache"))
    result = bench.run_bench(store, key="train/x", batch=int(cfg["batch"]),
                             window=int(cfg["window"]), repeats=int(cfg["repeats"]), cold=cold,
                             stored=[zarr_path, h5_path], seed=seed, progress=progress,
                             time_limit=1.0)
    result["demo"] = dict(cfg, out=str(out))
    json_path = bench.write_json(result, out / "bench.json")
    png_path = bench.plot_results(result, out / "bench.png")
    elapsed = time.perf_counter() - t_start
    echo("")
    echo(bench.format_table(result))
    echo("")
    echo(f"chart: {png_path}")
    echo(f"results: {json_path}")
    echo(f"dataset: {store} (zarr: {zarr_path}, HDF5: {h5_path})")
    echo(f"demo finished in {elapsed:.0f} s")
    result["demo"]["elapsed_s"] = elapsed
    return result
