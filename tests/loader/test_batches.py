"""Batches: DAS AudioSequence semantics, ordering, sharding, geometry and errors."""

from __future__ import annotations

import itertools
import pickle
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npydir
from npydir import Batches

# ----------------------------------------------------------------------------- references


def das_sequence(
    x,
    y,
    *,
    nb_hist,
    batch_size,
    stride=1,
    y_offset=None,
    with_y_hist=False,
    data_padding=0,
    output_stride=1,
    class_weights=None,
):
    """A literal re-statement of DAS ``AudioSequence`` with ``shuffle=False``, first=0.

    Written from DAS's documented behaviour (das/data.py): batch ``idx`` holds windows
    ``idx*batch_size .. (idx+1)*batch_size - 1``, window ``k`` starts at ``k * stride``;
    ``len`` = floor((n - (stride*(batch_size-1) + nb_hist)) / (stride*batch_size)) + 1.
    """
    n = len(x)
    y_offset = int(nb_hist / 2) if y_offset is None else y_offset
    length = int(
        max(0, np.floor((n - (stride * (batch_size - 1) + nb_hist)) / (stride * batch_size)) + 1)
    )
    if with_y_hist:
        base = np.ones((batch_size, nb_hist))
        if data_padding > 0:
            base[:, :data_padding] = 0
            base[:, -data_padding:] = 0
        base = base[:, ::output_stride]
    else:
        base = np.ones((batch_size,))
    out = []
    for idx in range(length):
        bx, by = [], []
        for k in range(idx * batch_size, (idx + 1) * batch_size):
            s = k * stride
            bx.append(x[s : s + nb_hist])
            if with_y_hist:
                by.append(y[s : s + nb_hist : output_stride])
            else:
                by.append(y[s + y_offset])
        bx, by = np.array(bx), np.array(by)
        if class_weights is not None:
            weights = np.zeros_like(base)
            labels = np.argmax(by, axis=-1)
            for label, weight in enumerate(class_weights):
                weights[labels == label] = weight
            weights *= base
        else:
            weights = base
        out.append((bx, by, weights) if data_padding > 0 else (bx, by))
    return out


def reference_starts(n, window, stride=1, first=0, last=None, boundaries=None):
    """Every whole window, recording by recording, by brute force."""
    last = n if last is None else last
    edges = sorted({0, n, *(boundaries or [])})
    starts = []
    for lo, hi in itertools.pairwise(edges):
        s = max(lo, first)
        while s + window <= min(hi, last):
            starts.append(s)
            s += stride
    return starts


def all_starts(b):
    return np.concatenate([b.starts(i) for i in range(len(b))]) if len(b) else np.array([])


def onehot(n, classes, seed=0):
    rng = np.random.default_rng(seed)
    return np.eye(classes, dtype="f4")[rng.integers(0, classes, n)]


def ramp(n, channels=2, dtype="f4"):
    """x[s, c] = s * channels + c: every value names its sample."""
    return np.arange(n * channels).reshape(n, channels).astype(dtype)


# ----------------------------------------------------------------------------- DAS parity


@given(
    n=st.integers(20, 300),
    window=st.integers(1, 40),
    stride=st.integers(1, 9),
    batch_size=st.integers(1, 12),
    output_stride=st.sampled_from([1, 2, 4]),
    y_window=st.booleans(),
    padding=st.integers(0, 6),
    y_offset=st.one_of(st.none(), st.integers(0, 39)),
    weighted=st.booleans(),
)
@settings(max_examples=40)
def test_matches_das_audiosequence(
    n, window, stride, batch_size, output_stride, y_window, padding, y_offset, weighted
):
    if y_window:
        window = max(output_stride, window - window % output_stride)
        padding = min(padding, (window - 1) // 2)
    if y_offset is not None:
        y_offset = min(y_offset, window - 1)
    if window > n:
        return
    x, y = ramp(n), onehot(n, 3)
    cw = [0.5, 2.0, 3.0] if weighted else None
    das = das_sequence(
        x,
        y,
        nb_hist=window,
        batch_size=batch_size,
        stride=stride,
        y_offset=y_offset,
        with_y_hist=y_window,
        data_padding=padding,
        output_stride=output_stride,
        class_weights=cw,
    )
    b = Batches(
        x,
        y,
        window=window,
        batch_size=batch_size,
        stride=stride,
        shuffle=False,
        y_offset=y_offset,
        y_window=y_window,
        output_stride=output_stride,
        data_padding=padding,
        class_weights=cw,
        drop_last=True,
        prefetch=0,
    )
    assert len(b) == len(das)
    for ours, theirs in zip(b, das):
        if padding == 0 and cw is not None:
            # DAS computes class weights but returns them only when data_padding > 0
            assert len(ours) == 3
            ours = ours[:2]
        assert len(ours) == len(theirs)
        for a, t in zip(ours, theirs):
            np.testing.assert_array_equal(a, t)


@given(
    n=st.integers(10, 200),
    window=st.integers(1, 30),
    stride=st.integers(1, 7),
    batch_size=st.integers(1, 9),
    first=st.integers(0, 30),
    tail=st.integers(0, 30),
    cuts=st.lists(st.integers(0, 200), max_size=4),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**64),
)
@settings(max_examples=40)
def test_every_window_once_per_epoch(
    n, window, stride, batch_size, first, tail, cuts, shuffle, seed
):
    last = n - tail
    bounds = [c for c in cuts if c <= n]
    expected = reference_starts(n, window, stride, first, last, bounds)
    if first >= last or not expected:
        with pytest.raises(ValueError):
            Batches(
                ramp(n), window=window, stride=stride, first=first, last=last, boundaries=bounds
            )
        return
    b = Batches(
        ramp(n),
        onehot(n, 2),
        window=window,
        batch_size=batch_size,
        stride=stride,
        first=first,
        last=last,
        boundaries=bounds,
        shuffle=shuffle,
        seed=seed,
        prefetch=0,
    )
    got = all_starts(b)
    assert sorted(got.tolist()) == expected
    if not shuffle:
        assert got.tolist() == expected
    assert len(b) == -(-len(expected) // batch_size)
    assert all(len(b.starts(i)) == batch_size for i in range(len(b) - 1))
    # contents: each window is the data under its start (x ramp names the sample)
    x, y = ramp(n), onehot(n, 2)
    xb, yb = b[len(b) - 1]
    for row, s in zip(range(len(xb)), b.starts(len(b) - 1)):
        np.testing.assert_array_equal(xb[row], x[s : s + window])
        np.testing.assert_array_equal(yb[row], y[s + window // 2])


def test_boundaries_no_window_straddles():
    n = 1000
    bounds = [0, 130, 131, 500, 777]  # a one-sample recording holds no window
    b = Batches(ramp(n, 1), window=50, stride=7, boundaries=bounds, batch_size=16, seed=3)
    starts = all_starts(b)
    edges = np.array(sorted({*bounds, n}))
    rec = np.searchsorted(edges, starts, side="right") - 1
    assert np.all(starts + 50 <= edges[rec + 1]), "a window crosses a recording boundary"
    assert sorted(starts.tolist()) == reference_starts(n, 50, 7, boundaries=bounds)
    # every recording contributes, each aligned to its own start
    assert set(np.unique(rec)) == {0, 2, 3, 4}
    assert np.all((starts - edges[rec]) % 7 == 0)


def test_one_dimensional_and_3d_inputs_keep_their_trailing_shape():
    x1 = np.arange(500, dtype="i2")
    b = Batches(x1, window=20, batch_size=4, seed=0)
    (xb,) = b[0]
    assert xb.shape == (4, 20)
    np.testing.assert_array_equal(xb, np.stack([x1[s : s + 20] for s in b.starts(0)]))
    x3 = np.arange(500 * 6, dtype="f4").reshape(500, 3, 2)
    (xb,) = Batches(x3, window=10, batch_size=3, seed=0)[1]
    assert xb.shape == (3, 10, 3, 2)


def test_dtype_and_scale_are_applied_to_x():
    x = (np.arange(400) % 100).astype("i2").reshape(200, 2)
    b = Batches(x, window=8, batch_size=5, dtype="f4", scale=0.5, seed=1)
    (xb,) = b[0]
    assert xb.dtype == np.float32
    np.testing.assert_allclose(xb, np.stack([x[s : s + 8] for s in b.starts(0)]) * 0.5)


# ----------------------------------------------------------------------------- ordering


def test_same_seed_same_batches_across_instances_and_pickles():
    x = ramp(5000)
    a = Batches(x, window=33, batch_size=7, seed=12345)
    b = pickle.loads(pickle.dumps(Batches(x, window=33, batch_size=7, seed=12345)))
    for epoch in (0, 3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        for i in (0, 5, len(a) - 1):
            np.testing.assert_array_equal(a.starts(i), b.starts(i))
            np.testing.assert_array_equal(a[i][0], b[i][0])
    assert not np.array_equal(a.starts(0, epoch=0), a.starts(0, epoch=1))
    c = Batches(x, window=33, batch_size=7, seed=12346)
    assert not np.array_equal(a.starts(0, epoch=0), c.starts(0, epoch=0))


def test_seed_none_is_fixed_at_construction():
    b = Batches(ramp(3000), window=10, seed=None)
    c = pickle.loads(pickle.dumps(b))
    np.testing.assert_array_equal(b.starts(0), c.starts(0))
    assert b.seed == c.seed


def test_order_is_platform_independent_golden():
    """Golden values: the order depends only on (seed, epoch) via SeedSequence and uint64
    arithmetic; a change here changes every user's shuffles and must be deliberate."""
    b = Batches(np.zeros((20, 1), "f4"), window=1, batch_size=20, seed=0)
    assert b.starts(0).tolist() == GOLDEN_SEED0_EPOCH0
    b.set_epoch(1)
    assert b.starts(0).tolist() == GOLDEN_SEED0_EPOCH1
    # domains of 2**20 windows and more use fewer Feistel rounds: pin that path too
    b = Batches(np.zeros((2**21 + 5, 1), "i1"), window=1, batch_size=8, seed=1)
    assert b.starts(0).tolist() == GOLDEN_LARGE_SEED1


GOLDEN_SEED0_EPOCH0 = [18, 6, 7, 11, 0, 17, 2, 14, 13, 9, 4, 5, 19, 15, 12, 8, 16, 10, 1, 3]
GOLDEN_SEED0_EPOCH1 = [18, 1, 9, 15, 14, 19, 8, 5, 7, 2, 17, 13, 6, 3, 11, 0, 16, 12, 10, 4]
GOLDEN_LARGE_SEED1 = [1590813, 250354, 619967, 538280, 259396, 460286, 1066067, 1195358]


def test_permutation_is_uniform_over_seeds():
    """Where each element lands, over 1000 seeds, n = 10: ~100 per (element, position)."""
    from npydir.loader.permutation import FeistelPermutation

    counts = np.zeros((10, 10), dtype=int)
    for seed in range(1000):
        counts[np.arange(10), FeistelPermutation(10, seed, 0)(np.arange(10))] += 1
    assert counts.min() > 55 and counts.max() < 145, counts  # ~4.7 sigma each side


@given(
    n=st.integers(1, 5000),
    window=st.integers(1, 9),
    stride=st.integers(1, 5),
    cuts=st.lists(st.integers(0, 5000), max_size=5),
    seed=st.integers(0, 2**70),
    epoch=st.integers(0, 10**6),
    shuffle=st.booleans(),
    world=st.integers(1, 3),
    data=st.data(),
)
@settings(max_examples=60)
def test_compiled_starts_match_the_numpy_twin(
    n, window, stride, cuts, seed, epoch, shuffle, world, data
):
    bounds = [c for c in cuts if c <= n]
    if not reference_starts(n, window, stride, boundaries=bounds) or n < window:
        return
    rank = data.draw(st.integers(0, world - 1))
    b = Batches(
        np.zeros((n, 1), "i1"),
        window=window,
        stride=stride,
        boundaries=bounds,
        seed=seed,
        shuffle=shuffle,
        rank=rank,
        world_size=world,
    )
    count = b._rank_count()
    slots = np.array(
        data.draw(st.lists(st.integers(0, max(count - 1, 0)), max_size=50)), dtype=np.int64
    )[:count]
    np.testing.assert_array_equal(b._starts_of(slots, epoch), b._starts_of_reference(slots, epoch))


@given(
    n=st.integers(1, 3000),
    window=st.integers(1, 9),
    stride=st.integers(1, 4),
    cuts=st.lists(st.integers(0, 3000), max_size=4),
    seed=st.integers(0, 2**70),
    epoch=st.integers(0, 10**6),
    shuffle=st.booleans(),
    world=st.integers(1, 3),
    batch_size=st.integers(1, 40),
    drop_last=st.booleans(),
    data=st.data(),
)
@settings(max_examples=80)
def test_batch_starts_are_the_slots_starts_batch_by_batch(
    n, window, stride, cuts, seed, epoch, shuffle, world, batch_size, drop_last, data
):
    """The planner's compiled batch indices -> starts equals the NumPy twin on each batch's
    slots, in the order asked for, the last (short) batch included."""
    bounds = [c for c in cuts if c <= n]
    if not reference_starts(n, window, stride, boundaries=bounds) or n < window:
        return
    rank = data.draw(st.integers(0, world - 1))
    b = Batches(
        np.zeros((n, 1), "i1"), window=window, stride=stride, boundaries=bounds, seed=seed,
        shuffle=shuffle, rank=rank, world_size=world, batch_size=batch_size,
        drop_last=drop_last,
    )  # fmt: skip
    if len(b) == 0:
        return
    order = data.draw(st.lists(st.integers(0, len(b) - 1), max_size=12))
    got = b._starts_of_batches(np.array(order, dtype=np.int64), epoch)
    want = [b._starts_of_reference(b_slots(b, i), epoch) for i in order]
    np.testing.assert_array_equal(got, np.concatenate(want) if want else np.empty(0, np.int64))
    for i in order[:3]:  # and the public per-batch view agrees
        np.testing.assert_array_equal(b.starts(i, epoch), b._starts_of_reference(b_slots(b, i), epoch))


def b_slots(b: Batches, i: int) -> np.ndarray:
    """This rank's slots of batch ``i``."""
    lo = i * b.batch_size
    return np.arange(lo, min(lo + b.batch_size, b._rank_count()), dtype=np.int64)


@pytest.mark.parametrize("bad", [-1, 4, 2**40])
def test_batch_starts_refuse_a_batch_outside_the_epoch_and_write_nothing(bad):
    from npydir.kernel import _feistel

    b = Batches(np.zeros((100, 1), "i1"), window=1, batch_size=30, seed=1)  # batches 0..3
    perm = b._permutation(0)
    out = np.full(3 * 30, -7, dtype=np.int64)
    with pytest.raises(IndexError, match=f"batch {bad} has no windows"):
        _feistel.batch_starts(
            np.array([0, bad, 1], dtype=np.int64), 30, b._rank_count(), 1, 0, perm.keys,
            perm.a, perm.b, b.n_windows, b._seg_lo, b._cum, 1, out,
        )  # fmt: skip
    assert (out[30:] == -7).all()  # stopped at the bad batch; nothing permuted or mapped
    with pytest.raises(ValueError, match="out holds"):
        _feistel.batch_starts(
            np.array([0, 1], dtype=np.int64), 30, b._rank_count(), 1, 0, perm.keys, perm.a,
            perm.b, b.n_windows, b._seg_lo, b._cum, 1, out[:59],
        )  # fmt: skip


@settings(max_examples=60)
@given(n=st.integers(2, 2**62), seed=st.integers(0, 2**32), data=st.data())
def test_compiled_permutation_is_exact_on_huge_domains(n, seed, data):
    """Positions are split into their two radices with a floating-point reciprocal and one
    correction step: the permutation must be the NumPy twin's (integer division) bit for
    bit, also where doubles no longer hold every integer, and at the edges of the radix
    (q * b - 1, q * b)."""
    from npydir.kernel import _feistel
    from npydir.loader.permutation import FeistelPermutation

    perm = FeistelPermutation(n, seed, 0)
    picks = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=20))
    edges = [v for q in (1, perm.a // 2, perm.a - 1) for v in (q * perm.b - 1, q * perm.b)]
    pos = np.array(sorted({*picks, *(v for v in edges if 0 <= v < n), 0, n - 1}), dtype=np.int64)
    out = np.empty_like(pos)
    seg_lo, cum = np.zeros(1, np.int64), np.array([0, n], np.int64)
    # batches of one window, one rank: batch k is position k
    _feistel.batch_starts(pos, 1, n, 1, 0, perm.keys, perm.a, perm.b, n, seg_lo, cum, 1, out)
    np.testing.assert_array_equal(out, perm(pos))


def test_batch_starts_from_many_threads_at_once():
    """batch_starts releases the GIL: concurrent calls must not disturb each other."""
    from concurrent.futures import ThreadPoolExecutor

    n = 3_000_000
    b = Batches(
        np.zeros((n, 1), "i1"), window=5, stride=2, seed=5, boundaries=[0, 1000, n // 3],
        batch_size=333, world_size=3, rank=2,
    )  # fmt: skip
    rng = np.random.default_rng(4)
    jobs = [(rng.integers(0, len(b), 300), k) for k in range(8)]
    want = [np.concatenate([b._starts_of_reference(b_slots(b, i), e) for i in idx]) for idx, e in jobs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda job: b._starts_of_batches(*job), jobs))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_compiled_starts_match_on_a_large_domain():
    """n >= 2**20 windows: the four-round path, positions four at a time and the tail, and
    cycle walking (n just above a*b's floor)."""
    for n in (2**20 + 1, 3_000_017):
        b = Batches(np.zeros((n, 1), "i1"), window=1, seed=99, boundaries=[0, 777, n // 2])
        slots = np.random.default_rng(0).integers(0, n, 20_003)  # fours and a tail of 3
        np.testing.assert_array_equal(b._starts_of(slots, 3), b._starts_of_reference(slots, 3))


def test_compiled_starts_from_many_threads_at_once():
    """The compiled pass releases the GIL: concurrent calls must not disturb each other."""
    from concurrent.futures import ThreadPoolExecutor

    n = 3_000_000
    b = Batches(np.zeros((n, 1), "i1"), window=5, stride=2, seed=5, boundaries=[0, 1000, n // 3])
    jobs = [(np.random.default_rng(k).integers(0, b.n_windows, 200_000), k) for k in range(8)]
    want = [b._starts_of_reference(slots, epoch) for slots, epoch in jobs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda job: b._starts_of(*job), jobs))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_shuffle_looks_random():
    """Not a sequence of runs: consecutive draws are far apart and cover the range."""
    n = 100_000
    b = Batches(np.zeros((n, 1), "i1"), window=1, batch_size=1000, seed=7)
    s = b.starts(0)
    assert len(np.unique(s)) == 1000
    # a uniform sample of 1000 of 100000: each decile holds ~100
    counts = np.histogram(s, bins=10, range=(0, n))[0]
    assert counts.min() > 60 and counts.max() < 140
    assert np.median(np.abs(np.diff(s))) > n / 10


# ----------------------------------------------------------------------------- sharding


@given(
    n=st.integers(5, 400),
    world=st.integers(1, 5),
    batch_size=st.integers(1, 9),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
)
@settings(max_examples=30)
def test_shards_are_disjoint_and_cover(n, world, batch_size, shuffle, drop_last):
    x = ramp(n, 1)
    shards = [
        Batches(
            x,
            window=3,
            batch_size=batch_size,
            seed=9,
            shuffle=shuffle,
            rank=r,
            world_size=world,
            drop_last=drop_last,
        )
        for r in range(world)
    ]
    for s in shards:
        s.set_epoch(2)
    parts = [all_starts(s).astype(int).tolist() for s in shards]
    flat = [v for p in parts for v in p]
    assert len(flat) == len(set(flat)), "shards overlap"
    everything = reference_starts(n, 3)
    if drop_last:
        lens = {len(s) for s in shards}
        assert len(lens) == 1, "ranks must agree on the number of batches with drop_last"
        assert len(flat) == (len(everything) // (world * batch_size)) * world * batch_size
        assert all(len(p) == len(s) * batch_size for p, s in zip(parts, shards))
        assert set(flat) <= set(everything)
    else:
        assert sorted(flat) == everything
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


# ----------------------------------------------------------------------------- cost


def test_drawing_a_batch_costs_o_batch_not_o_samples(tmp_path):
    """100 M samples: any per-window or per-sample array would need >= 100 MB."""
    n = 100_000_000
    path = tmp_path / "big.npy"
    x = np.lib.format.open_memmap(path, mode="w+", dtype="i1", shape=(n, 1))  # sparse
    del x
    x = np.load(path, mmap_mode="r")
    tracemalloc.start()
    try:
        b = Batches(x, window=64, stride=1, batch_size=32, seed=0, boundaries=[0, n // 2])
        b.set_epoch(5)
        (xb,) = b[len(b) // 2]
        for _ in b:  # the prefetching iterator too
            break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert xb.shape == (32, 64, 1)
    assert peak < 2_000_000, f"peak {peak} bytes for a batch of 2 KiB"


# ----------------------------------------------------------------------------- arrays out


def test_batches_are_fresh_writable_contiguous():
    x = ramp(300)
    x.flags.writeable = False
    y = onehot(300, 4)
    b = Batches(x, y, window=16, batch_size=4, y_window=True, data_padding=2, seed=0)
    for arr in b[0]:
        assert arr.flags.c_contiguous and arr.flags.writeable
        assert not np.shares_memory(arr, x) and not np.shares_memory(arr, y)
    xb, _yb, wb = b[0]
    assert wb.dtype == np.float32 and wb.shape == (4, 16)
    xb[...] = -1  # writing into a batch never touches the data
    assert x.min() >= 0


def test_pickles_memmaps_by_path(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, ramp(20_000, 3))
    mm = np.load(path, mmap_mode="r")
    for x in (mm, mm[1000:15000], mm[::2], np.asarray(mm)[5:], mm[:, 1:]):
        b = Batches(x, window=25, batch_size=4, seed=1)
        blob = pickle.dumps(b)
        assert len(blob) < 4000, "a memmap must not be pickled with its data"
        c = pickle.loads(blob)
        np.testing.assert_array_equal(c[3][0], b[3][0])
        np.testing.assert_array_equal(c[3][0][0], x[b.starts(3)[0] : b.starts(3)[0] + 25])
    # in-memory arrays travel by value
    arr = ramp(1000)
    assert len(pickle.dumps(Batches(arr, window=5))) > arr.nbytes


def test_npydir_arrays_pickle_by_path(tmp_path):
    root = npydir.open(tmp_path / "ds.npy", mode="w")
    x = root.create_dataset("train/x", data=ramp(4000, 3))
    y = root.create_dataset("train/y", data=onehot(4000, 3))
    b = Batches(x, y, window=30, batch_size=5, seed=2, y_window=True, output_stride=3)
    blob = pickle.dumps(b)
    assert len(blob) < 4000, "an npydir Array must pickle by path, not by value"
    c = pickle.loads(blob)
    for got, want in zip(c[7], b[7]):
        np.testing.assert_array_equal(got, want)
    s = b.starts(7)[0]
    np.testing.assert_array_equal(c[7][0][0], ramp(4000, 3)[s : s + 30])
    np.testing.assert_array_equal(c[7][1][0], onehot(4000, 3)[s : s + 30 : 3])


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"window": 101}, r"window=101 is longer than the data: x has 100 samples"),
        ({"window": 10, "first": 95}, r"window=10 is longer than the data"),
        ({"window": 10, "last": 101}, r"last=101 is past the end of x \(100 samples\)"),
        ({"window": 10, "first": 50, "last": 50}, r"first=50 must be < last=50"),
        (
            {"window": 10, "rank": 2, "world_size": 2},
            r"rank must be in \[0, world_size=2\), got rank=2",
        ),
        ({"window": 10, "rank": -1}, r"rank must be in"),
        ({"window": 10, "world_size": 0}, r"world_size must be >= 1"),
        ({"window": 0}, r"window must be >= 1, got 0"),
        ({"window": 10, "batch_size": 0}, r"batch_size must be >= 1"),
        ({"window": 10, "stride": 0}, r"stride must be >= 1"),
        ({"window": 10, "y_window": True, "output_stride": 3}, r"multiple of output_stride=3"),
        ({"window": 10, "y_window": True, "data_padding": 5}, r"data_padding=5 leaves no sample"),
        ({"window": 10, "y_offset": 10, "last": 95}, None),  # fine: 84 + 10 < 100
        ({"window": 10, "y_offset": 10}, r"y_offset=10 points outside y \(100 samples\)"),
        ({"window": 10, "y_offset": -1}, r"y_offset=-1 points outside y"),
        ({"window": 10, "class_weights": [1, 2]}, r"class_weights has 2 entries but y has shape"),
        ({"window": 10, "boundaries": [0, 500]}, r"boundaries must lie in \[0, 100\]"),
        ({"window": 60, "boundaries": [50]}, r"no recording between boundaries holds a whole"),
        ({"window": 10.5}, r"window must be an integer"),
    ],
)
def test_errors_say_what_is_wrong(kwargs, match):
    x, y = ramp(100), onehot(100, 3)
    if match is None:
        Batches(x, y, **kwargs)
        return
    with pytest.raises((ValueError, TypeError), match=match):
        Batches(x, y, **kwargs)


def test_errors_name_the_store_key_or_file(tmp_path):
    root = npydir.open(tmp_path / "ds.npy", mode="w")
    x = root.create_dataset("train/x", data=ramp(100))
    y = root.create_dataset("train/y", data=onehot(90, 2))
    with pytest.raises(
        ValueError,
        match=r"y \(/train/y\) has 90 samples but x \(/train/x\) "
        r"has 100",
    ):
        Batches(x, y, window=4)
    np.save(tmp_path / "x.npy", ramp(100))
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    with pytest.raises(ValueError, match=r"window=200 is longer than the data: x \(.*x\.npy\)"):
        Batches(mm, window=200)


def test_error_y_length_mismatch_and_types():
    with pytest.raises(ValueError, match=r"y has 99 samples but x has 100"):
        Batches(ramp(100), onehot(99, 2), window=4)
    with pytest.raises(TypeError, match=r"x must be an npydir Array, a numpy.memmap"):
        Batches([[1.0]] * 100, window=4)
    with pytest.raises(ValueError, match=r"x has no samples \(shape \(0, 2\)\)"):
        Batches(np.zeros((0, 2)), window=1)
    with pytest.raises(ValueError, match=r"class_weights needs y"):
        Batches(ramp(100), window=4, class_weights=[1.0])
    b = Batches(ramp(100), window=4, batch_size=10)
    with pytest.raises(IndexError, match=r"batch index 10 out of range for 10 batches"):
        b[10]
    np.testing.assert_array_equal(b[-1][0], b[9][0])
    with pytest.raises(ValueError, match=r"epoch must be >= 0"):
        b.set_epoch(-1)


@pytest.mark.parametrize(
    "order",
    [
        "reversed-strided-array",
        "shuffled-list",
        "with-short-last",
    ],
)
@pytest.mark.parametrize("prefetch", [0, 2])
def test_any_order_of_batches_is_served_batch_by_batch(order, prefetch):
    """``_iterate`` (what Keras's shuffled reads go through) takes any sequence of batch
    indices, a strided view of an array included, and serves exactly ``b[i]`` for each."""
    b = Batches(np.arange(2000.0)[:, None], window=5, batch_size=16, seed=3, prefetch=prefetch)
    n = len(b)  # 125 batches, the last one short
    indices = {
        "reversed-strided-array": np.arange(n - 1)[::-3],
        "shuffled-list": list(np.random.default_rng(0).permutation(n - 1)[:40]),
        "with-short-last": [n - 1, 0, n - 1, 5],
    }[order]
    got = [x for (x,) in b._iterate(indices)]
    assert len(got) == len(indices)
    for x, i in zip(got, indices):
        np.testing.assert_array_equal(x, b[int(i)][0])
    with pytest.raises(IndexError, match=f"batch {n} has no windows"):
        list(b._iterate([0, n]))
