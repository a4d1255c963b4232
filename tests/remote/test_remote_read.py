"""Reading a store from a real S3 endpoint (moto) and a real web server (nginx): the same
tree, attrs, arrays and windows as the local store, and clear errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import npydir
import npydir.remote
from npydir.errors import ReadOnlyError


@pytest.fixture
def roots(remote, local_store):
    url, options = remote
    return npydir.open(url, storage_options=options), npydir.open(local_store)


def test_tree_attrs_and_arrays_match_local(roots):
    r, loc = roots
    assert r.tree() == loc.tree()
    assert dict(r.attrs) == dict(loc.attrs)
    assert [p for p, _ in r.members()] == [p for p, _ in loc.members()]
    assert r["train"].array_keys() == ["i16", "x", "y"]
    assert r["empty"].attrs["why"] == "a group without arrays"
    for path, obj in loc.members():
        if isinstance(obj, npydir.Array):
            ra = r[path]
            assert (ra.shape, ra.dtype, dict(ra.attrs)) == (obj.shape, obj.dtype, dict(obj.attrs))
            assert "train/x" in r and "train/nope" not in r


def test_slicing_reads_only_the_rows_asked_for(roots):
    r, loc = roots
    x, lx = r["train/x"], loc["train/x"]
    client = x._store.client
    x.shape  # header fetched (and cached) first
    before = client.bytes_fetched
    np.testing.assert_array_equal(x[100:110], lx[100:110])
    assert client.bytes_fetched - before == 10 * 3 * 4
    np.testing.assert_array_equal(x[7], lx[7])
    np.testing.assert_array_equal(x[-1, 1:], lx[-1, 1:])
    np.testing.assert_array_equal(x[[5, 3, 5, 40_000]], lx[[5, 3, 5, 40_000]])
    np.testing.assert_array_equal(x[10:1000:7, 2], lx[10:1000:7, 2])
    np.testing.assert_array_equal(r["val/cube"][3:9, 1], loc["val/cube"][3:9, 1])
    np.testing.assert_array_equal(np.asarray(r["val/x"]), loc["val/x"][:])


def test_headers_and_attrs_are_fetched_once(roots):
    r, _ = roots
    x = r["train/x"]
    x.shape, dict(x.attrs), dict(r.attrs), r.tree()
    client = x._store.client
    n = client.requests
    for _ in range(3):
        x.shape, x.dtype, dict(x.attrs), dict(r.attrs), r.tree()
    assert client.requests == n


def test_asarray_of_a_large_array_is_refused(roots, monkeypatch):
    r, _ = roots
    monkeypatch.setattr(npydir.remote._nodes, "MAX_ASARRAY_BYTES", 1000)
    with pytest.raises(MemoryError, match="refusing to download all of .*train/x.npy"):
        np.asarray(r["train/x"])
    assert r["train/x"][:2].shape == (2, 3)  # slices still work


def test_writes_are_refused(remote):
    url, options = remote
    for mode in ("r+", "a", "w", "w-", "x"):
        with pytest.raises(ReadOnlyError, match="read-only"):
            npydir.open(url, mode, storage_options=options)
    r = npydir.open(url, storage_options=options)
    with pytest.raises(ReadOnlyError):
        r.create_group("g")
    with pytest.raises(ReadOnlyError):
        r["train/x"][0] = 1
    with pytest.raises(ReadOnlyError):
        r.attrs["a"] = 1


def test_missing_store_and_key_are_named(remote):
    url, options = remote
    bad = url.replace("ds.npy", "nothere.npy")
    with pytest.raises(FileNotFoundError, match="nothere.npy"):
        npydir.open(bad, storage_options=options)
    r = npydir.open(url, storage_options=options)
    with pytest.raises(KeyError, match="train/nope"):
        r["train/nope"]


def test_forbidden_says_permission(nginx):
    with pytest.raises(PermissionError, match="permission denied"):
        npydir.open(f"{nginx.url}/forbidden/ds.npy", storage_options={"retries": 0})


def test_unknown_storage_option_is_refused(remote):
    url, _ = remote
    with pytest.raises(ValueError, match="unknown key.*'passwd'"):
        npydir.open(url, storage_options={"passwd": "x"})
    with pytest.raises(ValueError, match="storage_options is for"):
        npydir.open("local.npy", storage_options={})


def test_http_without_manifest_finds_keys_but_cannot_list(nginx, web_root, local_store):
    import shutil

    target = web_root / "nomanifest" / "ds.npy"
    if not target.exists():
        shutil.copytree(local_store, target)
        (target / npydir.remote.MANIFEST).unlink()
    r = npydir.open(f"{nginx.url}/nomanifest/ds.npy")
    np.testing.assert_array_equal(r["train/x"][:5], npydir.open(local_store)["train/x"][:5])
    assert isinstance(r["empty"], npydir.remote.RemoteGroup)
    with pytest.raises(NotImplementedError, match="write_manifest"):
        list(r)


def test_pickle_roundtrip(roots):
    r, loc = roots
    x = pickle.loads(pickle.dumps(r["train/x"]))
    np.testing.assert_array_equal(x[:3], loc["train/x"][:3])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from(["train/x", "train/i16", "val/x"]),
    window=st.integers(1, 300),
    step=st.integers(1, 4),
    n=st.integers(1, 40),
    pad=st.sampled_from(["error", "zero", "edge", "reflect"]),
    cast=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_windows_match_local(roots, key, window, step, n, pad, cast, seed):
    r, loc = roots
    x, lx = r[key], loc[key]
    rng = np.random.default_rng(seed)
    if pad == "error":
        starts = rng.integers(0, len(lx) - window + 1, n)
    else:
        starts = rng.integers(-window - 5, len(lx) + 5, n)
    starts[: n // 3] = starts[0]  # overlapping and repeated windows
    kw = dict(step=step, pad=pad)
    if cast:
        kw.update(dtype=np.float32, scale=0.5)
    got = npydir.gather_windows(x, starts, window, **kw)
    np.testing.assert_array_equal(got, npydir.gather_windows(lx, starts, window, **kw))


def test_adjacent_windows_are_one_request(roots):
    r, loc = roots
    x = r["train/x"]
    x.shape
    client = x._store.client
    n0, b0 = client.requests, client.bytes_fetched
    starts = np.array([1000, 1016, 1032, 20_000, 1008])  # a run of touching windows, and one apart
    got = npydir.gather_windows(x, starts, 16)
    np.testing.assert_array_equal(got, npydir.gather_windows(loc["train/x"], starts, 16))
    assert client.requests - n0 == 2
    assert client.bytes_fetched - b0 == (48 + 16) * 3 * 4


def test_missing_obstore_names_the_extra(monkeypatch):
    import sys

    for name in ("obstore", "obstore.store", "obstore.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    with pytest.raises(npydir.errors.MissingDependencyError, match=r"npydir\[remote\]"):
        npydir.open("s3://bucket/ds.npy")
