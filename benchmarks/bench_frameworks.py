"""Do the torch and Keras adapters hand a training loop the rate of in-process Batches?

Run on demand::

    flock /tmp/npydir-bench.lock env NPYDIR_BENCH_GB=2 NPYDIR_BENCH_ROUNDS=7 \
        .venv/bin/python -m pytest benchmarks/bench_frameworks.py --benchmark-enable -s \
        -p no:cacheprovider

Environment: as benchmarks/bench_batches.py (NPYDIR_BENCH_GB: file size, default 2 GiB, or
1/16 GiB for a smoke run without --benchmark-enable; NPYDIR_BENCH_DIR, where the file is
kept, shared with bench_batches; NPYDIR_BENCH_ROUNDS, 7; NPYDIR_BENCH_BATCHES, batches per
path and round, 200), plus NPYDIR_BENCH_FIT_STEPS (steps per ``model.fit`` round, 30).

For each (batch, window) of a float32 ``[samples, 9]`` memmap with the page cache warm, the
paths take turns round by round (the order rotates), each reading the same epoch's batches
(the same seed, a new epoch each round):

* ``Batches``: ``iter(npydir.Batches(x, ..., prefetch=2))`` — the baseline;
* ``torch dataset``: ``iter(npydir.torch.WindowDataset(x, ...))`` (tensors);
* ``torch DataLoader``: ``DataLoader(ds, batch_size=None)``, the documented loop (no
  worker processes);
* ``torch 2 workers``: ``DataLoader(ds, batch_size=None, num_workers=2)``: what the
  warning in worker processes quotes, not a documented path;
* ``keras in order``: ``ds[0], ds[1], ...`` of ``npydir.keras.WindowDataset`` — what
  ``model.fit(..., shuffle=False)``, ``evaluate`` and ``predict`` read;
* ``keras shuffled``: ``ds[i]`` in a random order — what ``model.fit`` reads by default.

Each path's clock starts after its first batch (iterator start-up and worker start-up are
left out: they are paid once per epoch).  A consumer that does nothing but pull batches
shows every microsecond a path adds; the ratio of a path is the median over rounds of
(Batches time / path time) in the same round.  The goal for the documented paths is
>= 0.9x.

``test_keras_fit``: ``model.fit`` of a small DAS-like Conv1D model for
NPYDIR_BENCH_FIT_STEPS steps on ``npydir.keras.WindowDataset`` (with Keras's default
``shuffle=True`` and with ``shuffle=False``) against the same model fed batches computed
beforehand (a PyDataset that only returns arrays it holds): the ratio is the share of the
training rate npydir's loading leaves.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings

import numpy as np
import pytest
from bench_batches import ROUNDS, ROUNDS_BATCHES, data, data_path, gib  # noqa: F401 - fixtures

from npydir import Batches

# keras's torch backend calls np.array() on tensors whose __array__ predates numpy 2's copy=
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CONFIGS = [(32, 4096), (256, 64), (1024, 16)]
FIT_STEPS = int(os.environ.get("NPYDIR_BENCH_FIT_STEPS", "30"))

#: (batch, window) -> {path: [seconds per round]}, for ratio_table()
RESULTS: dict[tuple[int, int], dict[str, list[float]]] = {}
FIT_RESULTS: dict[tuple[int, int], dict[str, list[float]]] = {}


def _torch():
    try:
        import torch
        from torch.utils.data import DataLoader

        from npydir.torch import WindowDataset
    except ImportError:
        return None
    return torch, DataLoader, WindowDataset


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras

        from npydir.keras import WindowDataset
    except ImportError:
        return None
    return keras, WindowDataset


def _timed(it, n: int) -> float:
    """Seconds to pull ``n`` batches from ``it`` after its first one."""
    next(it)
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    return time.perf_counter() - t0


def _paths(data: np.ndarray, batch: int, window: int) -> dict:
    """path name -> function(epoch) -> seconds for ROUNDS_BATCHES batches."""
    kw = {"window": window, "batch_size": batch, "seed": 0}
    n = ROUNDS_BATCHES

    def drain(make_iter, epoch: int) -> float:
        it = make_iter(epoch)
        try:
            return _timed(it, n)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # joins prefetch threads at once
            del it  # a DataLoader iterator shuts its workers down when dropped

    def batches(epoch: int):
        b = Batches(data, **kw)
        b.set_epoch(epoch)
        return iter(b)

    paths = {"Batches": lambda epoch: drain(batches, epoch)}
    tv = _torch()
    if tv is not None:
        _, DataLoader, TorchDataset = tv

        def torch_dataset(epoch: int):
            ds = TorchDataset(data, **kw)
            ds.set_epoch(epoch)
            return ds

        paths["torch dataset"] = lambda epoch: drain(lambda e: iter(torch_dataset(e)), epoch)
        paths["torch DataLoader"] = lambda epoch: drain(
            lambda e: iter(DataLoader(torch_dataset(e), batch_size=None)), epoch
        )
        paths["torch 2 workers"] = lambda epoch: drain(
            lambda e: iter(DataLoader(torch_dataset(e), batch_size=None, num_workers=2)), epoch
        )
    kv = _keras()
    if kv is not None:
        _, KerasDataset = kv

        def keras_reads(epoch: int, shuffled: bool):
            ds = KerasDataset(data, **kw)
            ds.set_epoch(epoch)
            order = range(len(ds))
            if shuffled:  # as keras's PyDataset adapter: random.shuffle of the indices
                order = np.random.default_rng(epoch).permutation(len(ds)).tolist()
            try:
                for i in order:
                    yield ds[i]
            finally:
                ds.set_epoch(epoch)  # closes its prefetch iterator

        paths["keras in order"] = lambda epoch: drain(lambda e: keras_reads(e, False), epoch)
        paths["keras shuffled"] = lambda epoch: drain(lambda e: keras_reads(e, True), epoch)
    return paths


#: the paths the README documents (the goal: >= 0.9x Batches)
DOCUMENTED = ("torch dataset", "torch DataLoader", "keras in order", "keras shuffled")


@pytest.mark.parametrize("batch, window", CONFIGS)
def test_frameworks_vs_batches(benchmark, data, gib, batch, window):
    paths = _paths(data, batch, window)
    times: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    epoch = [0]

    with warnings.catch_warnings():
        # the worker processes' warning is what this measures; say it once, not every round
        warnings.filterwarnings("ignore", message="npydir.torch.WindowDataset in DataLoader")

        def one_round() -> None:
            epoch[0] += 1
            k = epoch[0] % len(names)  # rotate the order: each path runs in each position
            for name in names[k:] + names[:k]:
                times[name].append(paths[name](epoch[0]))

        one_round()  # warm-up (first fork, first kernel calls): not counted
        for name in names:
            times[name].clear()
        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)

    RESULTS[(batch, window)] = times
    base = times["Batches"]
    rate = ROUNDS_BATCHES / statistics.median(base)
    mb = batch * window * 9 * 4 / 1e6
    parts = [f"Batches {rate:.0f} batches/s"]
    for name in names[1:]:
        ratios = [b / t for b, t in zip(base, times[name])]
        med = statistics.median(ratios)
        benchmark.extra_info[f"{name} ratio"] = med
        parts.append(f"{name} {med:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
    benchmark.extra_info["Batches batches_per_s"] = rate
    print(
        f"\n(batch, window)=({batch}, {window}), {mb:.2f} MB/batch, {gib:g} GiB file, "
        f"ratio to Batches, median (range) of {len(base)} rounds: " + ", ".join(parts)
    )


@pytest.mark.parametrize("batch, window", CONFIGS)
def test_keras_fit(benchmark, data, gib, batch, window):
    kv = _keras()
    if kv is None:
        pytest.skip("keras 3 with a backend is not installed")
    keras, KerasDataset = kv

    class Held(keras.utils.PyDataset):
        """A loader that costs nothing: batches made beforehand, returned by index."""

        def __init__(self, batches: list) -> None:
            super().__init__()
            self.batches = batches

        def __len__(self) -> int:
            return len(self.batches)

        def __getitem__(self, i: int) -> tuple:
            return self.batches[i]

    kw = {"window": window, "batch_size": batch, "seed": 0, "y_window": True}
    y = np.zeros((len(data), 2), dtype=np.float32)
    y[:, 0] = 1
    held_source = KerasDataset(data, y, **kw)
    held = Held([held_source[i] for i in range(FIT_STEPS)])
    keras.utils.set_random_seed(0)
    inp = keras.Input((window, data.shape[1]))
    hidden = keras.layers.Conv1D(8, 3, padding="same", activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Conv1D(2, 1, activation="softmax")(hidden))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(held, epochs=1, verbose=0)  # builds and compiles the step outside the clock

    def fit(dataset, shuffle: bool) -> float:
        t0 = time.perf_counter()
        model.fit(dataset, epochs=1, steps_per_epoch=FIT_STEPS, shuffle=shuffle, verbose=0)
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {"held": [], "npydir, shuffle=True": [],
                                     "npydir, shuffle=False": []}  # fmt: skip
    epoch = [0]

    def one_round() -> None:
        epoch[0] += 1
        ds = KerasDataset(data, y, **kw)
        ds.set_epoch(epoch[0])
        runs = [
            ("held", lambda: fit(held, False)),
            ("npydir, shuffle=True", lambda: fit(ds, True)),
            ("npydir, shuffle=False", lambda: fit(ds, False)),
        ]
        k = epoch[0] % len(runs)
        for name, run in runs[k:] + runs[:k]:
            times[name].append(run())

    benchmark.pedantic(one_round, rounds=max(2, ROUNDS // 2), iterations=1)
    FIT_RESULTS[(batch, window)] = times
    base = times["held"]
    parts = [f"held batches {FIT_STEPS / statistics.median(base):.0f} steps/s"]
    for name in ("npydir, shuffle=True", "npydir, shuffle=False"):
        ratios = [b / t for b, t in zip(base, times[name])]
        benchmark.extra_info[f"fit {name} ratio"] = statistics.median(ratios)
        parts.append(
            f"{name} {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        )
    print(
        f"\nmodel.fit (batch, window)=({batch}, {window}), {gib:g} GiB file, ratio of steps/s "
        f"to batches held in memory, median (range): " + ", ".join(parts)
    )


def ratio_table() -> str:
    """Ratios measured in this session (printed by benchmarks/conftest.py)."""
    if not RESULTS and not FIT_RESULTS:
        return ""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [f"load average {load}; ratio to in-process Batches, median (min-max) over rounds"]
    names = [n for n in next(iter(RESULTS.values()), {}) if n != "Batches"]
    if RESULTS:
        lines.append(f"{'batch x window':>15} {'Batches/s':>10}" + "".join(f" {n:>18}" for n in names))
    for (batch, window), times in RESULTS.items():
        base = times["Batches"]
        row = f"{f'{batch} x {window}':>15} {ROUNDS_BATCHES / statistics.median(base):10.0f}"
        for n in names:
            r = [b / t for b, t in zip(base, times[n])]
            row += f" {f'{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})':>18}"
        lines.append(row)
    if FIT_RESULTS:
        lines.append("model.fit steps/s relative to batches held in memory")
    for (batch, window), times in FIT_RESULTS.items():
        base = times["held"]
        row = f"{f'{batch} x {window}':>15} {FIT_STEPS / statistics.median(base):8.1f}/s"
        for n in ("npydir, shuffle=True", "npydir, shuffle=False"):
            r = [b / t for b, t in zip(base, times[n])]
            row += f"  {n} {statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"
        lines.append(row)
    return "\n".join(lines)
