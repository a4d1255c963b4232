"""npydir.torch: WindowDataset in DataLoaders with worker processes, zero-copy tensors."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import npydir
from npydir import Batches
from npydir.errors import MissingDependencyError

torch = pytest.importorskip(
    "torch", reason="torch is not installed: pip install 'npydir[torch]' to test npydir.torch"
)
from torch.utils.data import DataLoader

from npydir.loader.torch import WORKERS_WARNING
from npydir.torch import WindowDataset


@pytest.fixture(params=["memmap", "npydir"])
def stored(tmp_path, request):
    """x and y as memory-mapped .npy files or npydir Arrays (both reach workers by path)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5000, 3)).astype("f4")
    y = np.eye(3, dtype="f4")[rng.integers(0, 3, 5000)]
    if request.param == "npydir":
        root = npydir.open(tmp_path / "ds.npy", mode="w")
        return root.create_dataset("train/x", data=x), root.create_dataset("train/y", data=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return (np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r"))


def test_from_numpy_takes_batches_without_copy_or_warning():
    x = np.random.default_rng(0).standard_normal((500, 2)).astype("f4")
    y = np.eye(2, dtype="f4")[np.arange(500) % 2]
    for arr in Batches(x, y, window=16, batch_size=4, y_window=True, data_padding=1)[0]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "The given NumPy array is not writable"
            t = torch.from_numpy(arr)
        assert t.data_ptr() == arr.ctypes.data
        t.add_(1)  # the tensor is the batch
        np.testing.assert_array_equal(arr, t.numpy())
        assert np.shares_memory(arr, t.numpy())


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_yield_the_batches_of_iter(stored, context):
    x, y = stored
    kw = {
        "window": 64,
        "batch_size": 32,
        "stride": 3,
        "seed": 11,
        "y_window": True,
        "data_padding": 4,
    }
    ds = WindowDataset(x, y, **kw)
    ds.set_epoch(1)
    want = Batches(x, y, prefetch=0, **kw)
    want.set_epoch(1)
    want = list(want)
    loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context=context)
    got = list(loader)
    assert len(got) == len(want) == len(ds) == len(loader)
    for g, w in zip(got, want):
        assert len(g) == 3 and all(isinstance(t, torch.Tensor) for t in g)
        for gt, wa in zip(g, w):
            np.testing.assert_array_equal(gt.numpy(), wa)


def test_ranks_and_workers_shard_disjointly(stored):
    x, _ = stored
    seen = []
    for rank in range(2):
        ds = WindowDataset(
            x,
            window=100,
            batch_size=16,
            stride=7,
            seed=4,
            rank=rank,
            world_size=2,
        )
        for (xb,) in DataLoader(ds, batch_size=None, num_workers=2):
            # random data: a window is identified by its first value
            seen.extend(xb[:, 0, 0].tolist())
    every = Batches(x, window=100, stride=7, shuffle=False, prefetch=0)
    want = sorted(np.concatenate([b[0][:, 0, 0] for b in every]).tolist())
    assert sorted(seen) == want


def test_set_epoch_reaches_the_workers_and_idle_workers_are_fine(stored):
    x, _ = stored
    ds = WindowDataset(x, window=500, batch_size=1000, seed=3)
    assert len(ds) == 5
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    first = [b[0].numpy() for b in loader]
    ds.set_epoch(1)
    second = [b[0].numpy() for b in loader]
    assert len(first) == len(second) == 5
    assert not np.array_equal(first[0], second[0])
    ref = Batches(x, window=500, batch_size=1000, seed=3, prefetch=0)
    ref.set_epoch(1)
    for got, want in zip(second, ref):
        np.testing.assert_array_equal(got, want[0])
    # more workers than batches: the idle ones end at once
    small = WindowDataset(x, window=10, batch_size=8000, shuffle=False)
    assert len(small) == 1
    got = list(DataLoader(small, batch_size=None, num_workers=2))
    assert [len(b[0]) for b in got] == [4991]


def test_single_process_and_batches_argument(stored):
    x, y = stored
    b = Batches(x, y, window=32, batch_size=8, seed=2)
    ds = WindowDataset(b)
    got = next(iter(ds))
    np.testing.assert_array_equal(got[0].numpy(), b[0][0])
    with pytest.raises(TypeError, match="takes no other Batches arguments, got window"):
        WindowDataset(b, window=3)
    with pytest.raises(TypeError, match="got y, seed"):
        WindowDataset(b, y, seed=1)
    with pytest.raises(TypeError, match="window is required"):
        WindowDataset(x, y)


def test_import_npydir_does_not_import_torch():
    code = "import sys, npydir; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    monkeypatch.delitem(sys.modules, "npydir.torch")
    monkeypatch.delitem(sys.modules, "npydir.loader.torch")
    with pytest.raises(MissingDependencyError, match=r'pip install "npydir\[torch\]"'):
        importlib.import_module("npydir.torch")


def test_tensors_kept_from_recycled_batches_are_never_overwritten():
    """torch.from_numpy keeps the batch array alive, so the prefetch threads never write
    into an array that a kept tensor still shows (batch arrays are recycled)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6000, 16)).astype("f4")
    b = Batches(x, window=512, batch_size=16, seed=3, prefetch=3)  # 512 KiB: 2 copiers
    want = [b[i][0] for i in range(len(b))]
    kept = []
    for i, (xb,) in enumerate(b):
        t = torch.from_numpy(xb)
        if i % 3 == 0:
            kept.append((i, t))
        del xb, t
    assert len(kept) > 3
    for i, t in kept:
        np.testing.assert_array_equal(t.numpy(), want[i])


# ------------------------------------------------------------------ the documented default


def test_in_process_dataloader_yields_the_batches_without_warning(stored):
    """The documented loop: DataLoader(ds, batch_size=None), no worker processes."""
    x, y = stored
    kw = {"window": 50, "batch_size": 24, "seed": 5, "y_window": True, "class_weights": [1, 2, 3]}
    ds = WindowDataset(x, y, dtype="float32", **kw)
    ds.set_epoch(2)
    want = Batches(x, y, prefetch=0, **kw)
    want.set_epoch(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = list(DataLoader(ds, batch_size=None))
    assert len(got) == len(want) == len(ds)
    for g, w in zip(got, want):
        assert [t.dtype for t in g] == [torch.float32] * 3
        for gt, wa in zip(g, w):
            np.testing.assert_array_equal(gt.numpy(), wa)
    # the same batches from the dataset itself, and numpy arrays with as_tensors=False
    direct = WindowDataset(x, y, as_tensors=False, **kw)
    direct.set_epoch(2)
    for g, w in zip(direct, want):
        assert all(type(a) is np.ndarray for a in g)
        for ga, wa in zip(g, w):
            np.testing.assert_array_equal(ga, wa)


def test_signature_shows_every_batches_parameter():
    """IDEs and type checkers see Batches' parameters, not **kwargs."""
    import inspect

    own = inspect.signature(WindowDataset).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own.values())
    for name, p in inspect.signature(Batches).parameters.items():
        assert name in own, name
        if name in ("window", "rank", "world_size"):  # window: optional with a Batches as x
            assert own[name].default is None  # rank/world_size: from torch.distributed
        else:
            assert own[name].default == p.default, name
            assert own[name].annotation == p.annotation, name


# ------------------------------------------------------------------ traps


@pytest.mark.parametrize("workers", [0, 1])
def test_dataloader_that_batches_again_is_refused(stored, workers):
    """DataLoader(ds) (batch_size=1 by default) would stack each batch into [1, ...]."""
    x, y = stored
    ds = WindowDataset(x, y, window=16, batch_size=8, seed=0)
    for loader in (DataLoader(ds, num_workers=workers), DataLoader(ds, batch_size=4)):
        with pytest.raises(ValueError, match=r"DataLoader\(ds, batch_size=None\)"):
            next(iter(loader))


@pytest.mark.parametrize("workers", [0, 1])
def test_numpy_batches_through_the_default_collate_are_refused(stored, workers):
    """as_tensors=False, but DataLoader's default_convert turns them into tensors."""
    x, y = stored
    ds = WindowDataset(x, y, window=16, batch_size=8, seed=0, as_tensors=False)
    with pytest.raises(ValueError, match=r"as_tensors=False.*for x, y in ds"):
        next(iter(DataLoader(ds, batch_size=None, num_workers=workers)))
    # what the message offers instead: an identity collate_fn keeps numpy arrays
    got = next(iter(DataLoader(ds, batch_size=None, collate_fn=lambda b: b)))
    assert all(type(a) is np.ndarray for a in got)
    np.testing.assert_array_equal(got[0], Batches(x, y, window=16, batch_size=8, seed=0)[0][0])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_persistent_workers_follow_set_epoch(stored, context):
    """Workers that outlive an epoch read the epoch from shared memory: no silent repeat
    of epoch 0."""
    x, y = stored
    kw = {"window": 40, "batch_size": 300, "seed": 9}
    ds = WindowDataset(x, y, **kw)
    loader = DataLoader(
        ds, batch_size=None, num_workers=2, persistent_workers=True,
        multiprocessing_context=context,
    )  # fmt: skip
    ref = Batches(x, y, prefetch=0, **kw)
    for epoch in (0, 1, 2):
        ds.set_epoch(epoch)
        got = list(loader)
        ref.set_epoch(epoch)
        assert len(got) == len(ref)
        for g, w in zip(got, ref):
            np.testing.assert_array_equal(g[0].numpy(), w[0])
            np.testing.assert_array_equal(g[1].numpy(), w[1])
    assert not np.array_equal(got[0][0].numpy(), Batches(x, y, **kw)[0][0])


def test_worker_processes_warn_with_the_cost(tmp_path):
    """The first worker warns (in the worker, so a subprocess reads its stderr)."""
    np.save(tmp_path / "x.npy", np.arange(3000, dtype="f4").reshape(-1, 3))
    code = f"""
import numpy as np
from torch.utils.data import DataLoader
from npydir.torch import WindowDataset
if __name__ == "__main__":
    x = np.load({str(tmp_path / "x.npy")!r}, mmap_mode="r")
    ds = WindowDataset(x, window=10, batch_size=50, seed=0)
    for context in ("fork", "spawn"):
        n = sum(1 for _ in DataLoader(ds, batch_size=None, num_workers=2,
                                       multiprocessing_context=context))
        assert n == len(ds), n
    n = sum(1 for _ in DataLoader(ds, batch_size=None))
    print("in-process done")
"""
    script = tmp_path / "run.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    warned = proc.stderr.count("in DataLoader worker processes")
    assert warned == 2, proc.stderr  # worker 0 of each of the two loaders, not worker 1
    assert " ".join(WORKERS_WARNING.split()) in " ".join(proc.stderr.split())
    assert proc.stdout.strip() == "in-process done"


def test_the_readme_torch_loop_runs(tmp_path, monkeypatch):
    from _readme import python_block, small_das_store

    code = python_block("### PyTorch")
    assert "range(10)" in code
    small_das_store(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(code.replace("range(10)", "range(2)"), "README.md", "exec"), namespace)
    x, y = namespace["x"], namespace["y"]
    assert x.dtype == y.dtype == torch.float32
    assert x.shape == (32, 2, 4096) and y.shape == (32, 3, 4096)
    assert namespace["loss"].requires_grad
