"""gather_windows: the Cython kernel against its pure-NumPy reference, and their contract."""

from __future__ import annotations

import mmap
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from _threads import run_in_threads
from hypothesis import given
from hypothesis import strategies as st

from npydir.kernel import _windows
from npydir.kernel.windows import advise_windows, gather_windows, gather_windows_reference

DTYPES = [
    np.float16, np.float32, np.float64,
    np.int8, np.int16, np.int32, np.int64,
    np.uint8, np.uint16, np.uint32, np.uint64, np.bool_,
]
PADS = ["error", "zero", "edge", "reflect"]


def make_x(n: int, c: int, dtype, seed: int = 0) -> np.ndarray:
    """Random data that uses the dtype's range (and NaN/inf for floats)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.integers(0, 2, (n, c)).astype(dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, (n, c), dtype=dt, endpoint=True)
    x = (rng.standard_normal((n, c)) * 100).astype(dt)
    if x.size > 3:
        x.flat[0], x.flat[1], x.flat[2] = np.nan, np.inf, -np.inf
    return x


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert a.dtype == b.dtype
    assert a.flags.c_contiguous and a.flags.writeable
    np.testing.assert_array_equal(a, b)  # NaN == NaN here


def starts_for(n: int, window: int, pad: str, rng, count: int = 12) -> np.ndarray:
    if pad == "error":
        return rng.integers(0, n - window + 1, count)
    return rng.integers(-2 * window - n, n + 2 * window, count)


def layouts(x: np.ndarray, tmp_path, c: int):
    """Yield (name, array) views of the same data in the layouts the kernel must handle."""
    yield "c", x
    path = tmp_path / f"x_{x.dtype.str.strip('<>|=')}_{c}.npy"
    np.save(path, x)
    yield "memmap-ro", np.load(path, mmap_mode="r")
    wide = np.repeat(x, 2, axis=1)
    wide[:, 1::2] = 0
    yield "strided-channels", wide[:, ::2]
    yield "fortran", np.asfortranarray(x)
    yield "reversed", x[::-1, ::-1]


@pytest.mark.parametrize("channels", [1, 2, 9, 64])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_zoo_matches_reference(dtype, channels, tmp_path):
    """Every dtype x channels x window x step x pad x threads x layout x out=."""
    n = 23
    rng = np.random.default_rng(channels)
    x = make_x(n, channels, dtype, seed=channels)
    for name, xv in layouts(x, tmp_path, channels):
        for window in (1, 7, n, 3 * n + 2):
            for step in (1, 3):
                for pad in PADS:
                    if pad == "error" and window > n:
                        continue
                    starts = starts_for(n, window, pad, rng)
                    want = gather_windows_reference(xv, starts, window, step=step, pad=pad)
                    for threads in (1, 2, 4):
                        got = gather_windows(xv, starts, window, step=step, pad=pad,
                                             threads=threads)
                        assert_same(got, want)
                    out = np.full_like(want, 1)
                    res = gather_windows(xv, starts, window, step=step, pad=pad, out=out)
                    assert res is out
                    assert_same(out, want)


def test_reference_padding_is_numpy_pad():
    """The documented semantics: windows of numpy.pad(x) along the sample axis."""
    x = np.arange(4, dtype=np.float32)[:, None] + 1  # a b c d = 1 2 3 4
    got = gather_windows(x, [-3, 2], 9, pad="reflect")[:, :, 0]
    np.testing.assert_array_equal(got[0], [4, 3, 2, 1, 2, 3, 4, 3, 2])
    np.testing.assert_array_equal(got[1], [3, 4, 3, 2, 1, 2, 3, 4, 3])
    np.testing.assert_array_equal(gather_windows(x, [-2], 4, pad="edge")[0, :, 0], [1, 1, 1, 2])
    np.testing.assert_array_equal(gather_windows(x, [3], 3, pad="zero")[0, :, 0], [4, 0, 0])
    for n in (1, 2, 3, 5):
        x = np.arange(n, dtype=np.int32)[:, None] * 10 + 7
        for mode, np_mode in (("reflect", "reflect"), ("edge", "edge"), ("zero", "constant")):
            padded = np.pad(x, ((40, 40), (0, 0)), mode=np_mode)
            starts = np.arange(-40, n + 40 - 17)
            want = np.stack([padded[s + 40 : s + 40 + 17] for s in starts])
            assert_same(gather_windows(x, starts, 17, pad=mode), want)
            assert_same(gather_windows_reference(x, starts, 17, pad=mode), want)


def test_one_dimensional_is_one_channel():
    x = np.arange(100, dtype=np.int16)
    got = gather_windows(x, [0, 10, 90], 10)
    assert got.shape == (3, 10, 1)
    np.testing.assert_array_equal(got[:, :, 0], [x[0:10], x[10:20], x[90:100]])


def test_step_shape_is_ceil():
    x = make_x(50, 3, np.float32)
    for window, step in ((10, 3), (10, 5), (1, 7), (9, 10)):
        got = gather_windows(x, [0, 5], window, step=step)
        assert got.shape == (2, -(-window // step), 3)
        np.testing.assert_array_equal(got[1], x[5 : 5 + window : step])


def test_empty_cases():
    x = make_x(10, 4, np.float32)
    assert gather_windows(x, [], 5).shape == (0, 5, 4)
    assert gather_windows(np.zeros((10, 0), np.float32), [1, 2], 5).shape == (2, 5, 0)
    z = gather_windows(np.zeros((0, 3), np.int8), [-2, 0, 5], 4, pad="zero")
    assert z.shape == (3, 4, 3) and not z.any()


# --- casting and scale -------------------------------------------------------------------------


@pytest.mark.parametrize("src", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("dst", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [None, 0.001, -3.5])
def test_cast_and_scale_is_astype_then_multiply(src, dst, scale):
    x = make_x(300, 5, src, seed=3)
    starts = np.array([0, 17, 250, 100])
    got = gather_windows(x, starts, 50, dtype=dst, scale=scale, threads=2)
    want = np.stack([x[s : s + 50] for s in starts]).astype(dst)
    if scale is not None:
        want *= np.dtype(dst).type(scale)
    assert_same(got, want)
    # strided channels and padding go through the per-row cast loop
    got = gather_windows(x[:, ::2], starts - 20, 50, dtype=dst, scale=scale, pad="reflect")
    assert_same(got, gather_windows_reference(x[:, ::2], starts - 20, 50, dtype=dst,
                                              scale=scale, pad="reflect"))


@pytest.mark.parametrize(
    "src,dst,scale",
    [(np.float32, np.float16, None), (np.int16, np.int32, None), (np.float64, np.float16, 2.0),
     (np.uint8, np.int8, None), (">f4", np.float32, 0.5), (">i2", np.float32, None)],
)
def test_casts_outside_the_one_pass_kernel_are_still_right(src, dst, scale):
    x = make_x(64, 3, np.dtype(src).newbyteorder("=")).astype(src)
    starts = [0, 3, 30]
    got = gather_windows(x, starts, 20, dtype=dst, scale=scale)
    want = gather_windows_reference(x, starts, 20, dtype=dst, scale=scale)
    assert_same(got, want)
    assert got.dtype == np.dtype(dst)


def test_int16_to_float32_scaled_exact():
    x = np.arange(-32768, 32768, dtype=np.int16).reshape(-1, 8)
    got = gather_windows(x, [0, 4000], 96, dtype=np.float32, scale=1 / 32768)
    want = np.stack([x[0:96], x[4000:4096]]).astype(np.float32) * np.float32(1 / 32768)
    assert_same(got, want)


def test_float16_exhaustive():
    """All 65536 half values convert bit-exactly (subnormals, +-0, +-inf, NaN payloads)."""
    bits = np.arange(65536, dtype=np.uint16)
    want = bits.view(np.float16).astype(np.float32)
    out = np.empty(65536, np.float32)
    _windows.half_to_float_bits(bits, out)
    np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))
    x = bits.view(np.float16).reshape(-1, 4)  # through the public path too
    got = gather_windows(x, [0], x.shape[0], dtype=np.float32)
    np.testing.assert_array_equal(got.reshape(-1).view(np.uint32), want.view(np.uint32))
    got = gather_windows(x, [0], x.shape[0], dtype=np.float64)
    with np.errstate(invalid="ignore"):  # signalling NaNs
        np.testing.assert_array_equal(got.reshape(-1), want.astype(np.float64))


# --- property test -----------------------------------------------------------------------------


@st.composite
def cases(draw):
    n = draw(st.integers(0, 40))
    c = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from(DTYPES))
    window = draw(st.integers(1, 60))
    step = draw(st.integers(1, 6))
    pad = draw(st.sampled_from(PADS if n else ["zero"]))
    if pad == "error":
        if window > n:
            window = draw(st.integers(1, n))
        starts = draw(st.lists(st.integers(0, n - window), max_size=20))
    else:
        starts = draw(st.lists(st.integers(-3 * window - n, 3 * window + n), max_size=20))
    target = draw(st.sampled_from([None, np.float32, np.float64, np.int32]))
    scale = draw(st.sampled_from([None, 0.5, -1e-3])) if target in (np.float32, np.float64) \
        else None
    threads = draw(st.integers(1, 3))
    layout = draw(st.sampled_from(["c", "fortran", "strided", "reversed"]))
    seed = draw(st.integers(0, 2**16))
    return n, c, dtype, window, step, pad, starts, target, scale, threads, layout, seed


@given(cases())
def test_property_kernel_equals_reference(case):
    n, c, dtype, window, step, pad, starts, target, scale, threads, layout, seed = case
    x = make_x(n, 2 * c, dtype, seed)
    x = {"c": x[:, :c], "fortran": np.asfortranarray(x[:, :c]), "strided": x[:, ::2],
         "reversed": x[::-1, c - 1 :: -1] if c > 0 else x}[layout]
    kw = dict(step=step, pad=pad, dtype=target, scale=scale)
    with np.errstate(invalid="ignore"):  # NaN/inf to int32 warns, as astype does
        want = gather_windows_reference(x, np.array(starts, dtype=np.int64), window, **kw)
        got = gather_windows(x, starts, window, threads=threads, **kw)
    assert_same(got, want)


# --- errors ------------------------------------------------------------------------------------


def test_bad_start_names_index_and_range():
    x = np.zeros((100, 2), np.float32)
    with pytest.raises(IndexError, match=r"start 95 at index 2 .*\[0, 90\]"):
        gather_windows(x, [0, 5, 95, 200], 10)
    with pytest.raises(IndexError, match=r"start -1 at index 0"):
        gather_windows(x, [-1], 10)
    with pytest.raises(IndexError, match=r"window 200 is longer than x \(100 samples\)"):
        gather_windows(x, [0], 200)
    with pytest.raises(IndexError, match="start 95 at index 0"):
        gather_windows_reference(x, [95], 10)
    with pytest.raises(IndexError, match="does not fit in int64"):
        gather_windows(x, np.array([2**63], np.uint64), 10)
    with pytest.raises(IndexError, match="supported range"):
        gather_windows(x, [-(2**63) + 5], 10, pad="zero")


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(step=0), ValueError, "step must be a positive integer"),
        (dict(step=-2), ValueError, "step"),
        (dict(step=1.5), TypeError, "step must be an integer"),
        (dict(window=0), ValueError, "window must be a positive integer"),
        (dict(window=2.0), TypeError, "window must be an integer"),
        (dict(pad="wrap"), ValueError, "pad must be one of"),
        (dict(scale=2.0, dtype=np.int16), ValueError, "scale needs a floating-point"),
        (dict(scale=1j, dtype=np.float32), TypeError, "scale must be a real number"),
        (dict(threads=0), ValueError, "threads must be >= 1"),
        (dict(starts=[1.0, 2.0]), TypeError, "starts must be integers, found dtype float64"),
        (dict(starts=[[1, 2]]), ValueError, "starts must be 1-D"),
        (dict(starts=[True]), TypeError, "starts must be integers"),
        (dict(x=np.zeros((4, 5, 6))), ValueError, r"found 3-D shape \(4, 5, 6\)"),
        (dict(x=np.zeros((4, 2), object)), TypeError, "object dtypes"),
        (dict(x=np.zeros((0, 2)), pad="edge"), ValueError, "needs at least one sample"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    args = dict(x=np.zeros((50, 2), np.float32), starts=[0, 1], window=4)
    args.update(kwargs)
    x, starts, window = args.pop("x"), args.pop("starts"), args.pop("window")
    for fn in (gather_windows, gather_windows_reference):
        with pytest.raises(exc, match=match):
            fn(x, starts, window, **args)


def test_bad_out():
    x = np.zeros((50, 3), np.float32)
    good = np.empty((2, 4, 3), np.float32)
    cases = [
        (np.empty((2, 4, 2), np.float32), r"out has shape \(2, 4, 2\), expected \(2, 4, 3\)"),
        (np.empty((2, 4, 6), np.float32)[:, :, ::2], "C-contiguous"),
        (good.copy().view(), None),
    ]
    for out, match in cases:
        if match is None:
            assert gather_windows(x, [0, 1], 4, out=out) is out
        else:
            with pytest.raises(ValueError, match=match):
                gather_windows(x, [0, 1], 4, out=out)
    ro = np.empty((2, 4, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        gather_windows(x, [0, 1], 4, out=ro)
    big = np.zeros((100, 3), np.float32)
    with pytest.raises(ValueError, match="overlaps x"):
        gather_windows(big[:50], [0, 1], 4, out=big[40:48].reshape(2, 4, 3))
    with pytest.raises(ValueError, match="expected dtype=float64"):
        gather_windows(x, [0, 1], 4, out=good, dtype=np.float64)
    with pytest.raises(TypeError, match="out must be a numpy array"):
        gather_windows(x, [0, 1], 4, out=[[0]])
    # dtype taken from out when not given
    o64 = np.empty((2, 4, 3), np.float64)
    assert gather_windows(x, [0, 1], 4, out=o64, scale=2.0) is o64


def test_bad_start_never_reads_outside_a_mapping(tmp_path):
    """A start just past the end of a memmap is an IndexError, not a segfault."""
    np.save(tmp_path / "x.npy", np.ones((4096, 1), np.float32))
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    for s in (4096 - 63, 10**9, -1):
        with pytest.raises(IndexError):
            gather_windows(x, [0, s], 64)


# --- threads, GIL, fork ------------------------------------------------------------------------


def test_many_python_threads_share_the_kernel():
    x = make_x(20_000, 9, np.float32)
    rng = np.random.default_rng(7)
    jobs = [rng.integers(-100, 20_000, 200) for _ in range(16)]
    want = [gather_windows_reference(x, s, 128, pad="reflect") for s in jobs]
    got: dict[int, np.ndarray] = {}

    def work(k):
        for _ in range(5):
            got[k] = gather_windows(x, jobs[k], 128, pad="reflect", threads=2)

    run_in_threads(work, 16)
    for k in range(16):
        assert_same(got[k], want[k])


def assert_gil_released(call) -> None:
    """A Python thread keeps running while ``call()`` (one long kernel call) runs."""
    ticks: list[float] = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    t = threading.Thread(target=ticker)
    t.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    call()
    t1 = time.perf_counter()
    stop.set()
    t.join()
    inside = [v for v in ticks if t0 < v < t1]
    # Holding the GIL would leave the ticker frozen for the whole call.  Released, it ticks
    # throughout: require ticks over most of the call, not just at its edges.
    assert len(inside) > 100, (len(inside), t1 - t0)
    assert inside[-1] - inside[0] > 0.5 * (t1 - t0), (inside[0] - t0, t1 - inside[-1])


def test_kernel_releases_the_gil():
    """A Python thread keeps running while one long gather_windows call is in the kernel."""
    x = make_x(1 << 16, 16, np.int16)[:, ::2]  # strided int16 -> float64: the slow cast loop
    starts = np.random.default_rng(0).integers(-(1 << 16), 1 << 17, 2000)
    out = np.empty((2000, 1000, 8), np.float64)  # 128 MB of output, ~0.1-0.5 s
    assert_gil_released(lambda: gather_windows(x, starts, 1000, out=out, dtype=np.float64,
                                               scale=0.5, pad="reflect", threads=1))
    assert_same(out[:3], gather_windows_reference(x, starts[:3], 1000, dtype=np.float64,
                                                  scale=0.5, pad="reflect"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_with_threads_does_not_hang():
    """torch DataLoader forks after the parent used threads: the child must still work."""
    x = make_x(50_000, 9, np.float32)
    starts = np.random.default_rng(1).integers(0, 50_000 - 512, 256)
    parent = gather_windows(x, starts, 512, threads=2)  # threads were used before the fork
    want = gather_windows_reference(x, starts, 512)
    assert_same(parent, want)
    pid = os.fork()
    if pid == 0:  # child: exit code 0 only if the threaded call returns the right answer
        code = 1
        try:
            got = gather_windows(x, starts, 512, threads=2)
            got2 = gather_windows(x, starts, 512)  # default thread choice too
            code = 0 if np.array_equal(got, want) and np.array_equal(got2, want) else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("forked child hung in gather_windows(threads=2)")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0


def test_default_threads_rule(monkeypatch):
    """threads=None: one thread per 64 KiB of output, at most the cores and the windows."""
    from npydir.kernel import windows

    per = windows._MIN_BYTES_PER_THREAD
    monkeypatch.setattr(windows, "available_cores", lambda: 2)
    assert windows._pick_threads(None, 10, 100) == 1  # tiny batch
    assert windows._pick_threads(None, 1000, 2 * per - 1) == 1
    assert windows._pick_threads(None, 1000, 2 * per) == 2
    assert windows._pick_threads(None, 1000, 1 << 30) == 2  # never more than the cores
    assert windows._pick_threads(None, 1, 1 << 30) == 1  # one window cannot be split
    assert windows._pick_threads(8, 3, 10) == 3  # explicit, capped at the windows
    assert windows._pick_threads(4, 1000, 1 << 30) == 4  # explicit is explicit
    assert windows._pick_threads(2**70, 5, 10) == 5  # any int
    assert windows._pick_threads(np.int64(3), 5, 10) == 3
    monkeypatch.setattr(windows, "available_cores", lambda: 64)
    assert windows._pick_threads(None, 1000, 5 * per + 1) == 5  # one per 64 KiB
    assert windows._pick_threads(None, 3, 1 << 30) == 3


def test_default_threads_do_not_sample_the_machine(monkeypatch):
    """threads=None is a rule of the batch and the process's cores, not of the machine's
    load: neither path reads /proc/stat or the load average."""
    import builtins

    from npydir.kernel import windows

    opened: list = []

    def spy_open(*a, **k):
        opened.append(a[0] if a else k.get("file"))
        return builtins.open(*a, **k)

    def no_loadavg():
        raise AssertionError("the load average was read")

    monkeypatch.setattr(windows, "open", spy_open, raising=False)
    monkeypatch.setattr(os, "getloadavg", no_loadavg)
    x = np.zeros((100_000, 4), np.float32)
    starts = np.arange(0, 64_000, 1000, dtype=np.int64)
    time.sleep(1.1)  # longer than a sampler would reuse its last look for
    gather_windows(x, starts, 1000)  # 1 MB of output: more than one thread's share
    gather_windows(x, list(starts), 1000)  # the general path
    gather_windows(x, starts, 1000, dtype=np.float64)
    assert opened == []


_THREADS_CHILD = """
import numpy as np
from npydir.kernel import _windows, windows
windows.available_cores = lambda: {cores}
x = np.zeros((100_000, 4), np.float32)
starts = np.arange(0, 64_000, 1000, dtype=np.int64)
assert _windows.pool_helpers() == 0
windows.gather_windows(x, starts, 1000, {out})  # 64 x 1000 x 16 B = 1 MB of output
print(_windows.pool_helpers())
"""


@pytest.mark.parametrize("cores", [1, 3])
@pytest.mark.parametrize("out", ["", "out=np.empty((64, 1000, 4), np.float32)"])
def test_default_threads_use_the_cores(cores, out):
    """A big batch with threads=None uses every core the process may run on, no /proc/stat
    sampling (a busy machine does not change it): the pool starts cores - 1 helpers."""
    code = _THREADS_CHILD.format(cores=cores, out=out)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) == cores - 1


# --- page-cache hints --------------------------------------------------------------------------


def test_advise_windows(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(1 << 20, dtype=np.float32).reshape(-1, 4))
    x = np.load(path, mmap_mode="r")
    assert advise_windows(np.zeros((100, 4)), [0, 5], 10) is None  # in memory: no-op
    advise_windows(x, [0, 100, 10**12, -50], 64)  # out-of-range parts are clipped, no error
    # adjacent windows merge into one request, far-apart ones do not
    assert _windows.advise(x, np.array([0, 64, 128], np.int64), 64, 16, False, 0) == 1
    far = np.array([0, 100_000, 200_000], np.int64)
    assert _windows.advise(x, far, 64, 16, False, 0) == 3
    # a long range is asked for in 128 KiB pieces (Linux caps one WILLNEED at its read-ahead)
    head = x.offset % mmap.PAGESIZE  # x[0] sits this far into its page
    long = _windows.advise(x, np.array([0], np.int64), 1 << 16, 16, False, 0)
    assert long == -(-(head + (1 << 20)) // (1 << 17))
    x.sum()  # warm: the cold check finds every sampled page resident and does nothing
    assert _windows.advise(x, far, 64, 16, True, 2) == 0


def test_cold_file_is_advised_and_read_correctly(tmp_path):
    path = tmp_path / "x.npy"
    data = make_x(1 << 18, 9, np.float32)
    np.save(path, data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    x = np.load(path, mmap_mode="r")
    starts = np.random.default_rng(2).integers(0, (1 << 18) - 4096, 16)
    calls = _windows.advise(x, starts, 4096, 36, True, 2)
    if calls == 0:
        pytest.skip("this filesystem kept the file cached after POSIX_FADV_DONTNEED")
    assert_same(gather_windows(x, starts, 4096), gather_windows_reference(data, starts, 4096))


def test_npydir_array_input(tmp_path):
    """An npydir Array is read through its memmap (np.asarray), and counts as file-mapped."""
    import npydir
    from npydir.kernel import windows

    data = make_x(500, 3, np.int16)
    with npydir.open(tmp_path / "s.npy", mode="w") as root:
        root.create_dataset("train/x", data=data)
    with npydir.open(tmp_path / "s.npy", mode="r") as root:
        a = root["train/x"]
        starts = [0, 7, 400]
        got = gather_windows(a, starts, 100, dtype=np.float32, scale=0.5)
        assert_same(got, gather_windows_reference(data, starts, 100, dtype=np.float32,
                                                  scale=0.5))
        assert windows._file_mapped(np.asarray(a))


@pytest.mark.parametrize(
    "dtype", [np.complex64, np.complex128, "datetime64[ns]", "S3", [("a", "<i2"), ("b", "<f8")]],
    ids=["c8", "c16", "M8", "S3", "struct"],
)
def test_other_dtypes_are_copied_exactly(dtype):
    raw = np.random.default_rng(5).integers(0, 255, (40 * 7 * np.dtype(dtype).itemsize,),
                                            dtype=np.uint8)
    x = raw.view(dtype).reshape(40, 7)
    starts = [-3, 0, 20, 35]
    for layout in (x, x[:, ::3], np.asfortranarray(x)):
        want = gather_windows_reference(layout, starts, 9, pad="reflect")
        got = gather_windows(layout, starts, 9, pad="reflect", threads=2)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("pad", PADS)
def test_misaligned_input_is_gathered_by_numpy(pad):
    """A view at an odd byte offset never reaches the C kernel (misaligned loads)."""
    raw = np.random.default_rng(9).integers(0, 255, 4 * 60 * 3 + 1, dtype=np.uint8)
    x = np.frombuffer(raw.data, dtype=np.float32, count=60 * 3, offset=1).reshape(60, 3)
    assert not x.flags.aligned
    rng = np.random.default_rng(1)
    for window, step in ((1, 1), (7, 2), (150, 3)):
        if pad == "error" and window > 60:
            continue
        starts = starts_for(60, window, pad, rng)
        for dtype, scale in ((None, None), (np.float64, 0.25), (np.int16, None)):
            with np.errstate(invalid="ignore"):
                got = gather_windows(x, starts, window, step=step, pad=pad, dtype=dtype,
                                     scale=scale)
                want = gather_windows_reference(np.ascontiguousarray(x), starts, window,
                                                step=step, pad=pad, dtype=dtype, scale=scale)
            assert_same(got, want)


@pytest.mark.skipif(
    shutil.which("objdump") is None or platform.machine() not in ("x86_64", "AMD64"),
    reason="needs objdump on x86-64",
)
def test_built_kernel_contains_prefetch_instructions():
    """A compiler once dropped every __builtin_prefetch silently (1.4x slower small windows).

    prefetcht0: the first and last line of long windows, a few windows ahead; prefetcht2:
    every line of a block of small windows into L2 (the first of the two passes).
    """
    asm = subprocess.run(["objdump", "-d", _windows.__file__], capture_output=True, text=True,
                         timeout=120).stdout
    assert asm.count("prefetcht0") >= 4
    assert asm.count("prefetcht2") >= 2  # the plain copy and (inlined) cast kernels
