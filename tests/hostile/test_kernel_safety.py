"""Kernel safety: bad arguments to ``gather_windows`` are errors, never reads outside ``x``.

``gather_windows`` validates everything once in Python, then hands raw pointers to a
``nogil`` kernel that trusts them.  These tests throw hostile arguments at it -- starts out
of range by one, negative, near the int64 limits, unsigned; zero, negative, huge and
non-integer windows and steps; ``out=`` arrays of the wrong shape, dtype, layout, read-only or
overlapping ``x`` -- and check each call either matches an independent NumPy computation or
raises ``IndexError`` / ``ValueError`` / ``TypeError``.  ``test_kernel_safety_asan.py`` runs this
file and the kernel test zoo against an AddressSanitizer build, where a single byte read
outside an array aborts the run.
"""

from __future__ import annotations

import operator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npydir import gather_windows
from npydir.kernel import windows as npydir_windows

pytestmark = pytest.mark.hostile

ERRORS = (IndexError, ValueError, TypeError)
DTYPES = ["i1", "u1", "<i2", "<i4", "<f2", "<f4", "<f8", ">i2", ">f4", "c8", "?"]
BIG = [0, 1, -1, 2**31, -(2**31), 2**62, 2**63 - 1, -(2**63), 2**63, 2**64 - 1]


def _expected(x2d, starts, window, step):
    return np.stack([x2d[s : s + window : step] for s in starts]) if len(starts) else None


@st.composite
def calls(draw):
    n = draw(st.integers(0, 40))
    c = draw(st.integers(1, 4))
    x = np.arange(n * c, dtype="f8").reshape(n, c).astype(draw(st.sampled_from(DTYPES)))
    if draw(st.booleans()) and n > 1:
        x = x[::2]  # strided rows
    if draw(st.booleans()):
        x = np.asfortranarray(x)
    window = draw(
        st.one_of(
            st.integers(-2, 50), st.sampled_from(BIG), st.sampled_from([1.0, "3", None, True])
        )
    )
    step = draw(st.one_of(st.integers(-2, 8), st.sampled_from(BIG), st.sampled_from([0.5, None])))
    starts = draw(
        st.one_of(
            st.lists(st.integers(-3, 60), max_size=6),
            st.lists(st.sampled_from(BIG), min_size=1, max_size=3),
        )
    )
    sdtype = draw(st.sampled_from(["i8", "i4", "u8", "u2", "f8", "O"]))
    return (
        x,
        starts,
        sdtype,
        window,
        step,
        draw(
            st.sampled_from(
                ["none", "ok", "shape", "dtype", "fortran", "readonly", "overlap", "list"]
            )
        ),
    )


def _valid(x2d, starts, window, step) -> bool:
    """Our own statement of the contract: integer (operator.index) window and step in
    [1, 2**62), every start in [0, len(x) - window]."""
    try:
        window, step = operator.index(window), operator.index(step)
    except TypeError:
        return False
    if not (1 <= window < 2**62 and 1 <= step < 2**62):
        return False
    return all(0 <= s <= x2d.shape[0] - window for s in starts)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(calls())
def test_hostile_arguments_are_errors_or_correct(case):
    x, starts, sdtype, window, step, out_kind = case
    x2d = x
    try:
        st_arr = np.array(starts, dtype=sdtype)
    except (OverflowError, ValueError):
        return  # numpy itself refuses to build such a starts array
    valid = _valid(x2d, starts, window, step)
    shape = (
        len(starts),
        -(-operator.index(window) // operator.index(step)) if valid else 1,
        x.shape[1],
    )
    out = None
    if out_kind == "ok":
        out = np.empty(shape, x.dtype)
    elif out_kind == "shape":
        out = np.empty((shape[0] + 1,) + shape[1:], x.dtype)
    elif out_kind == "dtype":
        out = np.empty(shape, "f8" if x.dtype != np.float64 else "f4")
    elif out_kind == "fortran":
        out = (
            np.asfortranarray(np.empty(shape, x.dtype))
            if shape[0] > 1 and shape[2] > 1
            else np.empty((0, 0))
        )
    elif out_kind == "readonly":
        out = np.empty(shape, x.dtype)
        out.flags.writeable = False
    elif out_kind == "overlap":
        out = (
            x.reshape(-1)[: int(np.prod(shape))].reshape(shape)
            if x.size >= np.prod(shape) and x.flags.c_contiguous
            else np.empty((0,))
        )
    elif out_kind == "list":
        out = np.zeros(shape).tolist()
    try:
        # "dtype": out of another dtype together with dtype=x.dtype is a contradiction
        got = gather_windows(
            x,
            st_arr,
            window,
            step=step,
            out=out,
            threads=2,
            dtype=x.dtype if out_kind == "dtype" else None,
        )
    except ERRORS:
        return
    # accepted: the arguments must have been valid and the result exact
    assert sdtype != "O" or all(isinstance(s, int) for s in starts)
    assert _valid(x2d, [int(s) for s in st_arr], window, step), (starts, window, step)
    if out is not None:
        assert out_kind in ("ok", "overlap") and got is out
        assert out_kind == "ok" or len(starts) == 0 or shape[1] == 0, (
            "an out= overlapping x was accepted"
        )
    want = _expected(x2d, [int(s) for s in st_arr], operator.index(window), operator.index(step))
    if want is not None:
        np.testing.assert_array_equal(got, want)


def test_one_past_the_end_is_an_index_error():
    x = np.arange(100, dtype="f4").reshape(50, 2)
    for s in (41, 50, -1, 2**62, -(2**62), 2**63 - 1):
        with pytest.raises(IndexError, match=str(s)):
            gather_windows(x, np.array([0, s]), 10)
    with pytest.raises(IndexError):
        gather_windows(x, np.array([2**64 - 1], dtype="u8"), 1)
    np.testing.assert_array_equal(gather_windows(x, [40], 10)[0], x[40:50])


@pytest.mark.parametrize("step", [0, -1, 2**62, 1.5, None, "2"])
def test_bad_steps_are_errors(step):
    with pytest.raises((ValueError, TypeError)):
        gather_windows(np.zeros((10, 1)), [0], 4, step=step)


@pytest.mark.parametrize("window", [0, -5, 2**62, 2.0, None])
def test_bad_windows_are_errors(window):
    with pytest.raises((ValueError, TypeError)):
        gather_windows(np.zeros((10, 1)), [0], window)


def test_mismatched_out_arrays_are_errors():
    x = np.zeros((100, 3), "f4")
    starts = [0, 5]
    good = np.empty((2, 10, 3), "f4")
    assert gather_windows(x, starts, 10, out=good) is good
    for bad in (
        np.empty((2, 10, 2), "f4"),
        np.empty((3, 10, 3), "f4"),
        np.empty((2, 9, 3), "f4"),
        np.empty((2, 10, 3), "f4", order="F"),
        np.empty((2, 20, 3), "f4")[:, ::2],
        x[:20].reshape(2, 10, 3),
    ):
        with pytest.raises((ValueError, TypeError)):
            gather_windows(x, starts, 10, out=bad)
    with pytest.raises(
        ValueError, match="dtype"
    ):  # out's dtype is the output dtype unless dtype= says otherwise
        gather_windows(x, starts, 10, out=np.empty((2, 10, 3), "f8"), dtype="f4")
    ro = np.empty((2, 10, 3), "f4")
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        gather_windows(x, starts, 10, out=ro)
    with pytest.raises((ValueError, TypeError)):
        gather_windows(x, starts, 10, out=np.empty((2, 10, 3), "f4").tolist())


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    path = tmp_path_factory.mktemp("adv") / "x.npy"
    np.save(path, np.arange(40_000, dtype="f4").reshape(-1, 4))
    return np.load(path, mmap_mode="r")


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    starts=st.lists(
        st.one_of(st.integers(-(10**6), 10**6), st.sampled_from(BIG[:8] + [9999, 10000])),
        max_size=5,
    ),
    window=st.sampled_from([1, 2, 100, 9999, 10000, 10001, 2**31, 2**62 - 1, 2**62, 0, -1]),
    step=st.sampled_from([1, 2, 7, 2**62 - 1]),
    view=st.sampled_from(["plain", "rows-reversed", "channels-reversed", "strided"]),
    pad=st.sampled_from(["error", "zero", "edge", "reflect"]),
)
def test_advice_and_padding_with_hostile_starts(mapped, starts, window, step, view, pad):
    """advise_windows is only a hint: any starts (clipped) and windows are fine or a
    ValueError/TypeError, never a bad madvise range; padded gathers of windows far outside x
    read only x (checked against the NumPy reference, and under ASan by the asan test)."""
    x = {
        "plain": mapped,
        "rows-reversed": mapped[::-1],
        "channels-reversed": mapped[:, ::-1],
        "strided": mapped[::3, ::2],
    }[view]
    st_arr = np.array(starts, dtype=np.int64)
    try:
        assert npydir_windows.advise_windows(x, st_arr, window, step=step) is None
    except ERRORS:
        pass
    w = min(window, 64) if window > 0 else window
    try:
        got = gather_windows(x, st_arr, w, step=step, pad=pad, threads=2)
    except ERRORS:
        return
    if pad != "error" and len(starts) and max(abs(s) for s in starts) < 10**7:
        want = npydir_windows.gather_windows_reference(x, st_arr, w, step=step, pad=pad)
        np.testing.assert_array_equal(got, want)
