"""The fast path of gather_windows: the common call, checked in C (``_windows.gather_plain``).

A call without ``dtype`` or ``scale`` first goes to the kernel, which checks the common case in
C and copies, or answers ``NOT_HANDLED`` for anything else.  Whatever it takes must give exactly
what the general path (the Python checks in npydir/windows.py) gives, result or error message,
and whatever it does not take must reach the general path untouched.
"""

from __future__ import annotations

import mmap
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npydir.kernel import _windows, windows
from npydir.kernel.windows import gather_windows, gather_windows_reference

from test_windows import DTYPES, PADS, assert_gil_released, assert_same, make_x


def _outcome(fn):
    try:
        return "ok", fn()
    except Exception as e:  # noqa: BLE001 - the error itself is what is compared
        return "error", type(e), str(e)


def _general_only(monkeypatch):
    monkeypatch.setattr(_windows, "gather_plain", lambda *a: _windows.NOT_HANDLED)


@st.composite
def calls(draw):
    """Arguments of a gather_windows call without dtype/scale: mostly valid, some not."""
    n = draw(st.integers(0, 30))
    c = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([*DTYPES, np.complex64, ">f4", "M8[s]", "U2", object]))
    layout = draw(st.sampled_from(["c", "fortran", "strided", "reversed", "1-d", "mmap",
                                   "3-d"]))
    window = draw(st.one_of(st.integers(1, 40), st.sampled_from([0, -1, 2**62, np.int64(3)])))
    step = draw(st.one_of(st.integers(1, 5), st.sampled_from([0, np.int32(2), 2**70])))
    pad = draw(st.sampled_from([*PADS, "bad", None]))
    hi = n - window if isinstance(window, int) and 0 < window <= n else n
    values = draw(st.lists(st.integers(-50, max(hi, 0) + draw(st.sampled_from([0, 0, 1, 60]))),
                           max_size=12))
    kind = draw(st.sampled_from(["int64", "int64", "int32", "list", "noncontig", "2-d",
                                 "float", ">i8", "uint64"]))
    threads = draw(st.sampled_from([None, 1, 2, 3, 0, True, np.int64(2), 2**70]))
    out = draw(st.sampled_from([None, None, "right", "right", "shape", "dtype", "fortran",
                                "readonly", "overlap", "subclass"]))
    nontemporal = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return n, c, dtype, layout, window, step, pad, values, kind, threads, out, nontemporal, seed


def _build(case):
    """Fresh arguments for one call (each path gets its own out)."""
    n, c, dtype, layout, window, step, pad, values, kind, threads, out, nontemporal, seed = case
    dt = np.dtype(dtype)
    with np.errstate(invalid="ignore"):  # NaN/inf to datetime
        base = make_x(n, 2 * c, np.float64, seed).astype(dt) if dt.kind not in "iub" \
            else make_x(n, 2 * c, dt, seed)
    pool = None
    if out == "overlap" or layout == "mmap":
        # x and out carved from one buffer (an anonymous file mapping for "mmap")
        count = base.size + 4096
        pool = (np.frombuffer(mmap.mmap(-1, count * dt.itemsize), dt) if layout == "mmap"
                and not dt.hasobject else np.zeros(count, dt))
        pool[: base.size] = base.ravel()
        base = pool[: base.size].reshape(base.shape)
    x = {"c": base[:, :c], "mmap": base[:, :c], "fortran": np.asfortranarray(base[:, :c]),
         "strided": base[:, ::2], "reversed": base[::-1, c - 1 :: -1], "1-d": base[:, 0],
         "3-d": base.reshape(n, 2, c)}[layout]
    st_ = {"int64": lambda v: np.array(v, np.int64), "int32": lambda v: np.array(v, np.int32),
           "list": list, "noncontig": lambda v: np.repeat(np.array(v, np.int64), 2)[::2],
           "2-d": lambda v: np.array(v, np.int64)[None], "float": lambda v: np.array(v, float),
           ">i8": lambda v: np.array(v, ">i8"),
           "uint64": lambda v: np.array(v, np.int64).astype(np.uint64)}[kind](values)
    o = None
    if out is not None:
        w = window if isinstance(window, (int, np.integer)) and 0 < window < 1000 else 1
        s = step if isinstance(step, (int, np.integer)) and 0 < step < 1000 else 1
        shape = (len(values), -(-int(w) // int(s)), 1 if x.ndim == 1 else x.shape[-1])
        if out == "shape":
            shape = (shape[0] + 1, *shape[1:])
        odt = np.float32 if out == "dtype" and dt != np.float32 else (
            np.float64 if out == "dtype" else dt)
        size = int(np.prod(shape))
        if out == "overlap" and pool is not None:
            o = pool[pool.size - size - base.size // 2 :][:size].reshape(shape) \
                if base.size else pool[-max(size, 1):][:size].reshape(shape)
        elif out == "fortran":
            o = np.asfortranarray(np.zeros(shape, odt))
        else:
            o = np.zeros(shape, odt)
        if out == "readonly":
            o.flags.writeable = False
        if out == "subclass":
            o = o.view(np.matrix) if o.ndim == 2 else o.view(_Sub)
    kw = dict(step=step, pad=pad, threads=threads, nontemporal=nontemporal)
    if out is not None:
        kw["out"] = o
    return x, st_, window, kw, o


class _Sub(np.ndarray):
    pass


def _same_outcome(fast, general):
    assert fast[0] == general[0], (fast, general)
    if fast[0] == "error":
        assert fast[1:] == general[1:]
    else:
        assert_same(fast[1], general[1])


@settings(max_examples=400, deadline=None)
@given(calls())
def test_fast_path_answers_like_the_general_path(case):
    x, starts, window, kw, out = _build(case)
    fast = _outcome(lambda: gather_windows(x, starts, window, **kw))
    if fast[0] == "ok" and out is not None:
        assert fast[1] is out
    saved = _windows.gather_plain
    _windows.gather_plain = lambda *a: _windows.NOT_HANDLED
    try:
        x, starts, window, kw, out = _build(case)
        general = _outcome(lambda: gather_windows(x, starts, window, **kw))
    finally:
        _windows.gather_plain = saved
    _same_outcome(fast, general)
    # (strings padded with "zero" are zero bytes in the kernel, "0" in numpy.pad: not compared)
    if fast[0] == "ok" and fast[1].size and fast[1].dtype.kind != "U":
        x, starts, window, kw, out = _build(case)
        kw.pop("out", None)
        with np.errstate(invalid="ignore"):  # an out of another dtype casts, as astype does
            want = gather_windows_reference(x, starts, window, dtype=fast[1].dtype, **kw)
        assert_same(fast[1], want)


def test_the_common_call_is_checked_in_c(monkeypatch):
    """A training loop's call (out= a reused buffer, or a fresh batch) runs no Python checks:
    they cost more than their own time, as the interpreter's memory they touch evicts the
    batch's lines from the caches between kernel calls."""
    x = make_x(1000, 9, np.float32)
    starts = np.array([0, 7, 500, 990], np.int64)
    buf = np.empty((4, 10, 9), np.float32)
    want = gather_windows_reference(x, starts, 10)
    want_1d = gather_windows_reference(x[:, 0], starts, 20, step=3, pad="reflect")

    def refuse(*a, **k):
        raise AssertionError("the general path ran")

    monkeypatch.setattr(windows, "_prepare", refuse)
    assert gather_windows(x, starts, 10, out=buf, threads=1) is buf
    assert_same(buf, want)
    assert_same(gather_windows(x[:, 0], starts, 20, step=3, pad="reflect"), want_1d)
    with pytest.raises(AssertionError, match="general path"):  # a cast is not the fast path
        gather_windows(x, starts, 10, dtype=np.float64)


def test_fast_path_errors_are_the_general_paths(tmp_path):
    x = np.zeros((100, 2), np.float32)
    with pytest.raises(IndexError, match=r"start 95 at index 2 .*\[0, 90\]"):
        gather_windows(x, np.array([0, 5, 95, 200], np.int64), 10)
    with pytest.raises(IndexError, match="window 101 is longer than x"):
        gather_windows(x, np.array([0], np.int64), 101, out=np.empty((1, 101, 2), np.float32))
    with pytest.raises(IndexError, match="beyond the supported range"):
        gather_windows(x, np.array([0, -(2**62) - 1], np.int64), 10, pad="zero")
    with pytest.raises(ValueError, match="out overlaps x"):
        big = np.zeros(1000, np.float32)
        gather_windows(big[:200].reshape(100, 2), np.array([0], np.int64), 10,
                       out=big[150:170].reshape(1, 10, 2))


@pytest.mark.parametrize("kind", ["fast", "general"])
def test_bad_starts_are_found_before_a_batch_is_allocated(kind):
    """A window far longer than x: IndexError, not a MemoryError for a 24 GiB batch."""
    x = np.zeros((1, 1), np.int32)
    starts = np.zeros(3, np.int64) if kind == "fast" else [0, 0, 0]
    with pytest.raises(IndexError, match="window 2147483648 is longer than x"):
        gather_windows(x, starts, 2**31)
    with pytest.raises(IndexError, match="window 2147483648 is longer than x"):
        gather_windows(x, starts, 2**31, dtype=np.float64)


def test_fresh_batches_do_not_leak():
    """out=None allocates in C: the dtype's reference count and the memory stay flat."""
    x = make_x(5000, 3, np.int16)
    dt = x.dtype
    starts = np.arange(0, 4000, 100, dtype=np.int64)
    for _ in range(100):
        got = gather_windows(x, starts, 50)
    before = sys.getrefcount(dt)
    for _ in range(2000):
        got = gather_windows(x, starts, 50)
    assert sys.getrefcount(dt) == before
    assert sys.getrefcount(got) == 2  # only `got` (and the argument) hold it
    assert got.base is None and got.flags.owndata


def test_fast_path_releases_the_gil():
    """A Python thread keeps running while one long fast-path call is in the kernel."""
    x = make_x(1 << 16, 16, np.float64)[:, ::2]  # strided rows: the row-by-row copy
    starts = np.random.default_rng(0).integers(-(1 << 16), 1 << 17, 4000)
    out = np.empty((4000, 1000, 8), np.float64)  # 256 MB of output
    st64 = np.asarray(starts, np.int64)
    assert_gil_released(lambda: _windows.gather_plain(x, st64, 1000, 1, out, "reflect", 1,
                                                      False, 1))
    assert_same(out[:3], gather_windows_reference(x, starts[:3], 1000, pad="reflect"))


def test_mapping_walk():
    """The walk behind the cold-page probe and the SIGBUS message finds the mapping through
    views and memoryviews."""
    m = mmap.mmap(-1, 4096)
    a = np.frombuffer(m, np.float32)
    assert windows._mapping(a) is m
    assert windows._mapping(np.frombuffer(memoryview(m), np.uint8)[10:]) is m
    assert windows._mapping(a[5:][::2, None]) is m
    assert windows._mapping(np.zeros(3)) is None
    assert windows._mapping(np.frombuffer(bytearray(8), np.uint8)) is None
    del a
