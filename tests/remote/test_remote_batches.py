"""Batches and the torch adapter over remote arrays give the local store's batches."""

from __future__ import annotations

import numpy as np
import pytest

import npydir


def _pairs(remote, local_store):
    url, options = remote
    r = npydir.open(url, storage_options=options)
    loc = npydir.open(local_store)
    return r, loc


@pytest.mark.parametrize("prefetch", [0, 3])
def test_batches_match_local(remote, local_store, prefetch):
    r, loc = _pairs(remote, local_store)
    # a slice of the data: moto answers a few hundred requests a second
    kw = dict(window=48, batch_size=64, seed=3, prefetch=prefetch, class_weights=[1.0, 2.0],
              first=1000, last=4000)
    got = list(npydir.Batches(r["train/x"], r["train/y"], **kw))
    want = list(npydir.Batches(loc["train/x"], loc["train/y"], **kw))
    assert len(got) == len(want) == 47
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            np.testing.assert_array_equal(a, b)


def test_batches_windowed_targets_cast_and_shards(remote, local_store):
    r, loc = _pairs(remote, local_store)
    for rank in range(2):
        kw = dict(window=32, batch_size=8, seed=1, y_window=True, output_stride=4,
                  data_padding=4, rank=rank, world_size=2, dtype=np.float32, scale=2.0)
        windowed = ("y_window", "output_stride", "data_padding")
        plain = {k: v for k, v in kw.items() if k not in windowed}
        got = npydir.Batches(r["train/i16"], None, **plain)
        want = npydir.Batches(loc["train/i16"], None, **plain)
        for i in (0, 7, len(got) - 1):
            np.testing.assert_array_equal(got[i][0], want[i][0])
        got = npydir.Batches(r["train/x"], r["train/y"], **kw)
        want = npydir.Batches(loc["train/x"], loc["train/y"], **kw)
        for i in (0, 5, len(got) - 1):
            for a, b in zip(got[i], want[i]):
                np.testing.assert_array_equal(a, b)


def test_batches_of_a_3d_array(remote, local_store):
    r, loc = _pairs(remote, local_store)
    got = npydir.Batches(r["val/cube"], window=5, batch_size=4, seed=0, advise=True)
    want = npydir.Batches(loc["val/cube"], window=5, batch_size=4, seed=0)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g[0], w[0])


@pytest.mark.parametrize("workers", [0, 2])
def test_torch_dataloader(remote, local_store, workers):
    torch = pytest.importorskip("torch")
    from npydir.torch import WindowDataset

    r, loc = _pairs(remote, local_store)
    kw = dict(window=64, batch_size=128, seed=5, first=0, last=3000)
    ds = WindowDataset(r["train/x"], r["train/y"], **kw)
    want = list(npydir.Batches(loc["train/x"], loc["train/y"], **kw))
    # workers are spawned: the arrays travel by URL and each worker opens its own connections
    context = "spawn" if workers else None
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=workers, multiprocessing_context=context
    )
    got = list(loader)
    assert len(got) == len(want)
    for (gx, gy), (wx, wy) in zip(got, want):
        np.testing.assert_array_equal(gx.numpy(), wx)
        np.testing.assert_array_equal(gy.numpy(), wy)


def test_forked_child_is_refused_not_hung(remote):
    import multiprocessing as mp

    url, options = remote
    x = npydir.open(url, storage_options=options)["train/x"]
    x[:1]  # the parent's I/O runtime is running now
    with mp.get_context("fork").Pool(1) as pool:
        message = pool.apply(_read_in_child, (x,))
    assert "forked" in message and "spawn" in message


def _read_in_child(x) -> str:
    try:
        x._store.client.head(x._rel)
    except ConnectionError as exc:
        return str(exc)
    return "no error"


def test_keras_window_dataset(remote, local_store):
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("keras", reason="keras (with a backend) is not installed")
    from npydir.keras import WindowDataset

    r, loc = _pairs(remote, local_store)
    kw = dict(window=64, batch_size=128, seed=2, first=0, last=3000)
    got = WindowDataset(r["train/x"], r["train/y"], **kw)
    want = WindowDataset(loc["train/x"], loc["train/y"], **kw)
    assert len(got) == len(want)
    for i in range(len(want)):  # in order: the prefetching path
        for a, b in zip(got[i], want[i]):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(got[3], want[3]):  # out of order: a direct read
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
