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
* ``DataLoader alone``: torch's own floor, no npydir: a ``DataLoader(batch_size=None)``
  over an ``IterableDataset`` that yields tensors made beforehand, against a plain loop
  over the same tensors.  The difference is what the DataLoader costs per batch whatever
  feeds it; the ratio shown is what that cost alone leaves of the Batches rate measured
  around it (Batches time / (Batches time + the DataLoader's cost));
* ``DataLoader bound``: the best any loader can do through ``DataLoader(batch_size=None)``
  on this machine: the DataLoader's cost per batch measured around kernel calls (where its
  code and data keep being evicted by the copies), shared over the cores that copy; the
  ratio is Batches time / (Batches time + that cost / cores).  A documented DataLoader path
  at this ratio has nothing of npydir's left to remove;
* ``DataLoader, no hook``: a diagnostic, not a path to use: ``torch DataLoader`` with
  ``torch.autograd.profiler.record_function``, which the DataLoader enters around every
  batch, replaced by a no-op for that run; what the rest of the gap is;
* ``Batches, shuffled order``: a diagnostic: the prefetching iterator over the batch indices
  in a shuffled order (``Batches._iterate(list)``), as it serves Keras's ``fit()``, without
  Keras;
* ``keras in order``: ``npydir.keras.WindowDataset`` read by Keras's own epoch generator
  (``PyDatasetAdapter(ds, shuffle=False)``) — what ``model.fit(..., shuffle=False)``,
  ``evaluate`` and ``predict`` read;
* ``keras shuffled``: the same with ``shuffle=True`` — what ``model.fit`` reads by
  default (a random permutation of the indices each epoch).

* ``Batches again``: a control: the baseline measured as if it were a path.  Its median
  should be 1.00 and its range is the noise of one round on this machine: a path's median
  within that range of another's is not distinguishable from it.

Each path's clock starts after a warm-up of at least NPYDIR_BENCH_WARMUP batches (default
100) and NPYDIR_BENCH_WARMUP_MS milliseconds (default 60).  What it leaves out is paid once
per epoch, not per batch, and a round of a few hundred batches would weigh it a thousand
times more than an epoch does: iterator and worker start-up; the page faults of a new
iterator's fresh blocks (about 2000, which make its first 50 or so batches up to 2x slower
here); and the slow start of this virtual machine's threads after the process has kept
one core busy or idle for a while, which Keras's shuffle of the epoch's batch indices
(~0.1 s at the first read) does: after a 0.12 s pause the next 100 batches at 256 x 64
took 20 % longer and the 300 after them 4-11 % longer, whatever followed the pause
(docs/dev/frameworks.md; benchmarks/bench_startup.py measures both effects).  A consumer that does nothing but pull batches
shows every microsecond a path adds.  Every path run is bracketed by two Batches runs; its
ratio in a round is the mean of those two Batches times / the path's time, and the
reported ratio is the median over rounds.  The goal for the documented paths is >= 0.9x.

``test_keras_fit``: ``model.fit`` of a small DAS-like Conv1D model for an epoch of about
NPYDIR_BENCH_FIT_STEPS steps (windows spread over the whole file) on
``npydir.keras.WindowDataset`` (with Keras's default ``shuffle=True`` and with
``shuffle=False``) against the same model fed batches computed beforehand (a PyDataset
that only returns arrays it holds): the ratio is the share of the training rate npydir's
loading leaves.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
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
#: batches, and seconds, each path runs before its clock starts (start-up is paid once per
#: epoch; see the module docstring)
WARMUP = int(os.environ.get("NPYDIR_BENCH_WARMUP", "100"))
WARMUP_SECONDS = float(os.environ.get("NPYDIR_BENCH_WARMUP_MS", "60")) / 1000

#: (batch, window) -> (baseline rate, {path: [ratio per round]}), for ratio_table()
RESULTS: dict[tuple[int, int], tuple[float, dict[str, list[float]]]] = {}
FIT_RESULTS: dict[tuple[int, int], tuple[float, dict[str, list[float]]]] = {}


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
    """Seconds to pull ``n`` batches from ``it`` after a warm-up: its first batch, then at
    least ``WARMUP`` batches and ``WARMUP_SECONDS``."""
    next(it)
    end = time.perf_counter() + WARMUP_SECONDS
    pulled = 0
    while pulled < WARMUP or time.perf_counter() < end:
        next(it)
        pulled += 1
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

    def batches_shuffled(epoch: int):
        # the batch order Keras's fit() reads, without Keras: batch indices shuffled
        b = Batches(data, **kw)
        b.set_epoch(epoch)
        order = list(range(len(b)))
        random.Random(epoch).shuffle(order)
        return b._iterate(order)

    paths = {
        "Batches": lambda epoch: drain(batches, epoch),
        AGAIN: lambda epoch: drain(batches, epoch),
        SHUFFLED: lambda epoch: drain(batches_shuffled, epoch),
    }
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
        paths[FLOOR] = _dataloader_cost(tv[0], DataLoader, data, batch, window)
        paths[BOUND] = _dataloader_bound(tv[0], DataLoader, data, batch, window)

        def without_profiler_hook(epoch: int) -> float:
            # a diagnostic, not a path to use: the DataLoader with torch's per-batch
            # profiler hook (record_function around every __next__) made a no-op
            profiler = tv[0].autograd.profiler
            real = profiler.record_function
            profiler.record_function = contextlib.nullcontext
            try:
                return drain(lambda e: iter(DataLoader(torch_dataset(e), batch_size=None)), epoch)
            finally:
                profiler.record_function = real

        paths[NO_HOOK] = without_profiler_hook
    kv = _keras()
    if kv is not None:
        _, KerasDataset = kv
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

        def keras_reads(epoch: int, shuffled: bool):
            # what model.fit iterates on every backend: Keras's generator over the indices
            # (with shuffle, a random.shuffle'd list of all of them, made at the first read)
            ds = KerasDataset(data, **kw)
            ds.set_epoch(epoch)
            random.seed(epoch)
            reads = PyDatasetAdapter(ds, shuffle=shuffled)._get_iterator()
            try:
                yield from reads
            finally:
                reads.close()
                ds.set_epoch(epoch)  # closes its prefetch iterator

        paths["keras in order"] = lambda epoch: drain(lambda e: keras_reads(e, False), epoch)
        paths["keras shuffled"] = lambda epoch: drain(lambda e: keras_reads(e, True), epoch)
    return paths


#: a control: the baseline measured as a path; its range is the noise of one round
AGAIN = "Batches again"
#: a diagnostic: Batches serving its batches in a shuffled order, as for Keras's fit()
SHUFFLED = "Batches, shuffled order"
#: the path that measures torch's DataLoader alone (an added cost, not a rate)
FLOOR = "DataLoader alone"
#: what the DataLoader's cost around the kernel's copies leaves of the rate at best
BOUND = "DataLoader bound"
#: the documented DataLoader path with torch's profiler hook made a no-op (a diagnostic)
NO_HOOK = "DataLoader, no hook"


class _Added(float):
    """Seconds a path adds to the baseline's time rather than takes on its own."""


def _dataloader_cost(torch, DataLoader, data: np.ndarray, batch: int, window: int):
    """function(epoch) -> _Added seconds the DataLoader adds to ROUNDS_BATCHES batches: the
    time through ``DataLoader(batch_size=None)`` over tensors made beforehand, less a
    plain loop over the same tensors."""
    made = [
        (torch.from_numpy(np.ascontiguousarray(data[i * window : (i + 1) * window][None])),)
        for i in range(8)
    ]  # small stand-ins: what the DataLoader does per batch does not depend on the size

    class Premade(torch.utils.data.IterableDataset):
        def __iter__(self):
            return itertools.cycle(made)  # endless: the warm-up is partly timed

    def cost(epoch: int) -> _Added:
        loader = _timed(iter(DataLoader(Premade(), batch_size=None)), ROUNDS_BATCHES)
        plain = _timed(iter(Premade()), ROUNDS_BATCHES)
        return _Added(max(0.0, loader - plain))

    return cost


def _dataloader_bound(torch, DataLoader, data: np.ndarray, batch: int, window: int):
    """function(epoch) -> _Added seconds: the least a DataLoader can add to ROUNDS_BATCHES
    batches made at the kernel's rate on every core.

    The DataLoader's own work per batch runs in the consumer's thread, on the cores that
    copy.  Measured where it runs in a loader: around real batches, whose copies evict its
    code and data from the caches (around tensors made beforehand, ``DataLoader alone``, it
    stays cached and costs less).  Two loops over fresh random starts (a new draw every batch),
    each calling ``gather_windows`` for a batch and yielding it as a tensor: one through
    ``DataLoader(batch_size=None)``, one not.  Their difference ``D`` is CPU time taken from
    the copy; with the copy spread over ``c`` cores, the best a loader can then do is the
    baseline's time plus ``D / c``."""
    from npydir.kernel.windows import available_cores, gather_windows

    cores = available_cores()
    rng = np.random.default_rng(1)

    class Kernel(torch.utils.data.IterableDataset):
        def __iter__(self):
            while True:  # endless (the warm-up is partly timed); starts drawn 64 batches at a time
                for s in rng.integers(0, len(data) - window, (64, batch)):
                    yield (torch.from_numpy(gather_windows(data, s, window)),)

    def cost(epoch: int) -> _Added:
        loader = _timed(iter(DataLoader(Kernel(), batch_size=None)), ROUNDS_BATCHES)
        plain = _timed(iter(Kernel()), ROUNDS_BATCHES)
        return _Added(max(0.0, loader - plain) / cores)

    return cost


def _bracketed(baseline, paths: dict, rounds: int, benchmark) -> tuple[list[float], dict]:
    """Run ``rounds`` rounds of: baseline, then each path followed by the baseline again.

    A path's ratio in a round is the mean of the baseline runs just before and just after
    it divided by the path's time: the load on a shared machine drifts within a round.
    The paths' order rotates round by round, and a first round is a warm-up (first fork,
    first kernel calls, first model step) left out.  Returns (baseline times, ratios).
    """
    names = list(paths)
    base_times: list[float] = []
    ratios: dict[str, list[float]] = {name: [] for name in names}
    count = [0]

    def one_round() -> None:
        count[0] += 1
        k = count[0] % len(names)
        before = baseline(count[0])
        for name in names[k:] + names[:k]:
            t = paths[name](count[0])
            after = baseline(count[0])
            base = (before + after) / 2
            if isinstance(t, _Added):  # what the path's cost alone leaves of the baseline
                t = base + t
            ratios[name].append(base / t)
            base_times.append(after)
            before = after

    one_round()
    base_times.clear()
    for values in ratios.values():
        values.clear()
    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    return base_times, ratios


def _summary(ratios: dict[str, list[float]], benchmark, prefix: str = "") -> str:
    parts = []
    for name, r in ratios.items():
        med = statistics.median(r)
        benchmark.extra_info[f"{prefix}{name} ratio"] = med
        parts.append(f"{name} {med:.2f}x ({min(r):.2f}-{max(r):.2f})")
    return ", ".join(parts)


@pytest.mark.parametrize("batch, window", CONFIGS)
def test_frameworks_vs_batches(benchmark, data, gib, batch, window):
    paths = _paths(data, batch, window)
    baseline = paths.pop("Batches")
    with warnings.catch_warnings():
        # the worker processes' warning is what this measures; say it once, not every round
        warnings.filterwarnings("ignore", message="npydir.torch.WindowDataset in DataLoader")
        base_times, ratios = _bracketed(baseline, paths, ROUNDS, benchmark)
    rate = ROUNDS_BATCHES / statistics.median(base_times)
    RESULTS[(batch, window)] = (rate, ratios)
    benchmark.extra_info["Batches batches_per_s"] = rate
    mb = batch * window * 9 * 4 / 1e6
    print(
        f"\n(batch, window)=({batch}, {window}), {mb:.2f} MB/batch, {gib:g} GiB file, "
        f"ratio to Batches, median (range) of {ROUNDS} rounds: Batches {rate:.0f} "
        f"batches/s, " + _summary(ratios, benchmark)
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

    # an epoch of FIT_STEPS batches whose windows are spread over the whole file: Keras's
    # shuffle=True permutes a list of every batch index at the start of each epoch, which
    # for the millions of batches of the whole file would outweigh a short epoch
    stride = max(1, (len(data) - window) // (FIT_STEPS * batch))
    kw = {"window": window, "batch_size": batch, "seed": 0, "y_window": True, "stride": stride}
    y = np.zeros((len(data), 2), dtype=np.float32)
    y[:, 0] = 1
    held_source = KerasDataset(data, y, **kw)
    held = Held([held_source[i] for i in range(len(held_source))])
    keras.utils.set_random_seed(0)
    inp = keras.Input((window, data.shape[1]))
    hidden = keras.layers.Conv1D(8, 3, padding="same", activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Conv1D(2, 1, activation="softmax")(hidden))
    model.compile(optimizer="adam", loss="categorical_crossentropy")

    def fit(dataset, shuffle: bool) -> float:
        t0 = time.perf_counter()
        model.fit(dataset, epochs=1, shuffle=shuffle, verbose=0)
        return time.perf_counter() - t0

    def npydir_fit(epoch: int, shuffle: bool) -> float:
        ds = KerasDataset(data, y, **kw)
        ds.set_epoch(epoch)
        return fit(ds, shuffle)

    paths = {
        "shuffle=True": lambda epoch: npydir_fit(epoch, True),
        "shuffle=False": lambda epoch: npydir_fit(epoch, False),
    }
    base_times, ratios = _bracketed(
        lambda epoch: fit(held, False), paths, max(2, ROUNDS // 2), benchmark
    )
    rate = len(held) / statistics.median(base_times)
    FIT_RESULTS[(batch, window)] = (rate, ratios)
    print(
        f"\nmodel.fit (batch, window)=({batch}, {window}), {gib:g} GiB file, ratio of steps/s "
        f"to batches held in memory ({rate:.1f} steps/s), median (range): "
        + _summary(ratios, benchmark, "fit ")
    )


def _table(results: dict, unit: str) -> list[str]:
    names = list(next(iter(results.values()))[1])
    lines = [f"{'batch x window':>15} {unit:>12}" + "".join(f" {n:>18}" for n in names)]
    for (batch, window), (rate, ratios) in results.items():
        row = f"{f'{batch} x {window}':>15} {rate:12.1f}"
        for n in names:
            r = ratios[n]
            row += f" {f'{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})':>18}"
        lines.append(row)
    return lines


def ratio_table() -> str:
    """Ratios measured in this session (printed by benchmarks/conftest.py)."""
    if not RESULTS and not FIT_RESULTS:
        return ""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [f"load average {load}; median (min-max) over rounds of per-round ratios"]
    if RESULTS:
        lines.append("batches/s relative to in-process Batches in the same round")
        lines += _table(RESULTS, "Batches/s")
    if FIT_RESULTS:
        lines.append("model.fit steps/s relative to batches held in memory, same round")
        lines += _table(FIT_RESULTS, "held steps/s")
    return "\n".join(lines)
