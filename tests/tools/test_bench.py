"""npydir.tools.bench: sizes, the synthetic dataset, every backend's reader, the report, the chart."""

from __future__ import annotations

import ctypes
import json
import math
import mmap
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npydir
from npydir.tools import bench
from npydir.das import synthetic

pytest.importorskip("zarr")
pytest.importorskip("h5py")

WINDOW = 64
CHANNELS = 3


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "tiny.npy"
    bench.make_synthetic(path, size=200_000 * CHANNELS * 4 // 10, channels=CHANNELS, seed=1)
    return path


def _x(store: Path) -> np.ndarray:
    return np.load(store / "train" / "x.npy")


# --------------------------------------------------------------------------------------
# sizes


@pytest.mark.parametrize("text, expected", [
    ("4096", 4096), ("2GB", 2_000_000_000), ("2gb", 2_000_000_000), ("512MiB", 512 * 2**20),
    ("1.5G", 1_500_000_000), ("100k", 100_000), ("3 MB", 3_000_000), ("1KiB", 1024), (7, 7),
])
def test_parse_size(text, expected):
    assert bench.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "0", "-1GB", "2XB", "GB", 0])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        bench.parse_size(text)


@given(st.integers(1, 10**6), st.sampled_from(["", "k", "M", "G", "KiB", "MiB", "GiB"]))
def test_parse_size_property(n, unit):
    base = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "KiB": 2**10, "MiB": 2**20,
            "GiB": 2**30}[unit]
    assert bench.parse_size(f"{n}{unit}") == n * base


# --------------------------------------------------------------------------------------
# synthetic data


def test_make_synthetic_is_das_like_and_deterministic(tmp_path):
    a = bench.make_synthetic(tmp_path / "a.npy", size="400kB", channels=2, seed=3)
    b = bench.make_synthetic(tmp_path / "b.npy", size="400kB", channels=2, seed=3)
    xa, xb = _x(a), _x(b)
    assert xa.shape == (50_000, 2) and xa.dtype == np.float32
    np.testing.assert_array_equal(xa, xb)
    with npydir.open(a) as root:
        assert root.attrs["samplerate_x_Hz"] == 10_000.0
        assert list(root.attrs["class_names"]) == ["noise", "pulse", "sine"]
        assert list(root.attrs["class_types"]) == ["segment", "event", "segment"]
    assert not np.array_equal(xa, _x(bench.make_synthetic(tmp_path / "c.npy", size="400kB",
                                                          channels=2, seed=4)))
    assert 0.01 < xa[:, 0].std() < 1.0


def test_make_synthetic_samples_come_from_the_das_generator(tmp_path):
    # one recording of npydir.das.synthetic, the same seed giving the same samples; 17 MB of
    # one channel spans two of the blocks make_synthetic writes
    store = bench.make_synthetic(tmp_path / "s.npy", size="17MB", channels=1, seed=5)
    x = _x(store)
    assert x.shape == (4_250_000, 1) and x.dtype == np.float32
    data, ann = synthetic.make_recording(seconds=425.0, samplerate=10_000, channels=1, seed=5)
    np.testing.assert_array_equal(x, data)
    # the song is there: every annotated pulse sits on a transient well above the noise
    centres = np.round(np.asarray(ann.events("pulse")) * 10_000).astype(int)
    assert len(centres) > 100
    assert np.all(np.abs(x[centres, 0]) > 0.05)


# --------------------------------------------------------------------------------------
# readers: every backend reads exactly the windows it is asked for


def _prepared(store: Path, tmp_path: Path, names=bench.ALL_BACKENDS, stored=()):
    return bench._prepare(store, "train/x", bench._resolve_backends(names), WINDOW,
                          "1MB", CHANNELS, 0, [Path(p) for p in stored], tmp_path, 2, False)


@pytest.mark.zarr
def test_every_reader_returns_the_right_windows(tiny_store, tmp_path):
    prep = _prepared(tiny_store, tmp_path)
    expected_names = [n for n in bench.ALL_BACKENDS if n != "tensorstore"]
    assert [n for n in prep.backends if n != "tensorstore"] == expected_names
    x = _x(tiny_store)
    starts = np.array([0, 5, len(x) - WINDOW, 1234, 1234], dtype=np.intp)
    ref = np.stack([x[s:s + WINDOW] for s in starts])
    for name, backend in prep.backends.items():
        out = np.full((len(starts), WINDOW, CHANNELS), np.nan, dtype=backend.dtype)
        for cold in (False, True):
            out[...] = 0
            reader = backend.open(cold)
            try:
                reader.read(starts, out)
            finally:
                reader.close()
            if name == "memcpy":  # the batch's bytes, contiguous from the first start
                flat = x.reshape(-1)
                s0 = starts[0] * CHANNELS
                np.testing.assert_array_equal(out.reshape(-1), flat[s0:s0 + out.size])
            elif name == "zarr-das":
                assert backend.dtype == np.float16
                np.testing.assert_array_equal(out, ref.astype(np.float16))
            else:
                np.testing.assert_array_equal(out, ref, err_msg=f"{name} cold={cold}")


@pytest.mark.zarr
def test_backend_layouts(tiny_store, tmp_path):
    import h5py
    from _zarr import compressor_text, open_group, zarr_format

    prep = _prepared(tiny_store, tmp_path)
    das = open_group(prep.backends["zarr-das"].info["path"], mode="r")["train/x"]
    assert zarr_format(das) == 2
    assert das.dtype == np.float16
    assert das.chunks == (1_000_000, CHANNELS)
    assert "lz4" in compressor_text(das)
    with h5py.File(prep.backends["h5-chunked"].info["path"], "r") as f:
        assert f["train/x"].chunks is not None
        assert f["train/x"].chunks[0] * CHANNELS * 4 <= 1 << 20
    with h5py.File(prep.backends["h5-contiguous"].info["path"], "r") as f:
        assert f["train/x"].chunks is None


def test_memcpy_wraps_when_the_batch_exceeds_the_array(tmp_path):
    store = bench.make_synthetic(tmp_path / "s.npy", size=100 * 2 * 4, channels=2)
    prep = bench._prepare(store, "train/x", ["memcpy", "npydir"], 40, None, 2, 0, [],
                          tmp_path, 1, False)
    flat = _x(store).reshape(-1)
    expect = np.concatenate([flat[100:], flat, flat])[:4 * 40 * 2]
    for cold in (False, True):
        reader = prep.backends["memcpy"].open(cold)
        out = np.empty((4, 40, 2), np.float32)
        reader.read(np.array([50, 0, 0, 0]), out)
        reader.close()
        np.testing.assert_array_equal(out.reshape(-1), expect)


def test_stored_copies_take_their_slots(tiny_store, tmp_path):
    import h5py

    x = _x(tiny_store)
    h5 = tmp_path / "user.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("train/x", data=x, chunks=(1000, CHANNELS))
    prep = _prepared(tiny_store, tmp_path / "work", names=["h5-chunked", "h5-contiguous"],
                     stored=[h5])
    assert prep.backends["h5-chunked"].info["path"] == str(h5)
    assert prep.backends["h5-chunked"].info["stored"] is True
    assert prep.backends["h5-contiguous"].info["path"] != str(h5)  # written by the bench


@pytest.mark.zarr
def test_zarr_dataset_as_path_is_copied_for_the_memmap_backends(tiny_store, tmp_path):
    from _zarr import create_array, open_group

    x = _x(tiny_store)
    zpath = tmp_path / "user.zarr"
    root = open_group(zpath)
    create_array(root, "train/x", shape=x.shape, dtype=x.dtype, chunks=(5000, CHANNELS))[:] = x
    result = bench.run_bench(zpath, backends=["zarr"], batch=4, window=WINDOW, repeats=1,
                             batches=2, workdir=tmp_path / "work")
    assert result["backends"]["zarr"]["path"] == str(zpath)
    assert result["backends"]["zarr"]["stored"] is True
    copy = Path(result["dataset"]["store"])
    np.testing.assert_array_equal(np.load(copy / "train" / "x.npy"), x)


# --------------------------------------------------------------------------------------
# the run and its report


def _check_report(result: dict, names: list[str], modes: list[str]) -> None:
    assert list(result["results"]) == modes
    for mode in modes:
        rows = result["results"][mode]
        assert set(names) <= set(rows)
        mem, npy = rows["memcpy"], rows["npydir"]
        for name, r in rows.items():
            for key in ("windows_per_s", "gb_per_s", "ratio_to_limit", "ratio_to_npydir"):
                assert math.isfinite(r[key]) and r[key] > 0, (mode, name, key)
            assert len(r["repeats"]) == result["params"]["repeats"]
            assert r["windows_per_s"] == pytest.approx(np.median(r["repeats"]))
            assert r["gb_per_s"] == pytest.approx(r["windows_per_s"] * r["bytes_per_window"]
                                                  / 1e9)
            assert r["ratio_to_limit"] == pytest.approx(r["gb_per_s"] / mem["gb_per_s"])
            assert r["ratio_to_npydir"] == pytest.approx(r["windows_per_s"]
                                                         / npy["windows_per_s"])
        assert mem["ratio_to_limit"] == pytest.approx(1.0)
        assert npy["ratio_to_npydir"] == pytest.approx(1.0)


def test_run_bench_synthetic_all_backends_warm_and_cold(tmp_path):
    result = bench.run_bench(None, size="600kB", channels=CHANNELS, batch=4, window=WINDOW,
                             repeats=3, batches=2, cold=True, workdir=tmp_path / "w")
    names = [n for n in bench.ALL_BACKENDS if n != "tensorstore"]
    _check_report(result, names, ["warm", "cold"])
    assert result["dataset"]["synthetic"] is True
    assert result["dataset"]["shape"] == [600_000 // (4 * CHANNELS), CHANNELS]
    if "tensorstore" not in result["results"]["warm"]:
        assert "not installed" in result["skipped"]["tensorstore"]
    assert result["results"]["warm"]["zarr-das"]["bytes_per_window"] == WINDOW * CHANNELS * 2
    assert result["results"]["warm"]["npydir"]["bytes_per_window"] == WINDOW * CHANNELS * 4
    json.dumps(result)  # JSON-able as it is
    table = bench.format_table(result)
    for name in names:
        assert name in table
    assert "warm cache" in table and "cold cache" in table


def test_requested_backends_plus_references_only(tiny_store, tmp_path):
    result = bench.run_bench(tiny_store, backends=["das-loop,numpy"], batch=4, window=WINDOW,
                             repeats=2, batches=1, workdir=tmp_path)
    assert list(result["results"]["warm"]) == ["memcpy", "npydir", "numpy", "das-loop"]
    _check_report(result, ["das-loop", "numpy"], ["warm"])
    # nothing converted: only backends reading the npydir file
    assert not any(p.suffix in (".zarr", ".h5") for p in tmp_path.iterdir())


def test_same_starts_for_every_backend_fresh_each_repeat(tiny_store, tmp_path, monkeypatch):
    seen: dict[str, list] = {}
    real = bench._measure

    def spy(backend, plan, *args, **kwargs):
        seen.setdefault(backend.name, []).append([s.copy() for s in plan])
        return real(backend, plan, *args, **kwargs)

    monkeypatch.setattr(bench, "_measure", spy)
    bench.run_bench(tiny_store, backends=["das-loop", "npydir-1t"], batch=5, window=WINDOW,
                    repeats=3, batches=2, workdir=tmp_path, seed=7)
    runs = list(seen.values())
    assert len(runs) == 4
    for other in runs[1:]:
        for rep_a, rep_b in zip(runs[0], other):
            for a, b in zip(rep_a, rep_b):
                np.testing.assert_array_equal(a, b)
    flat = [np.concatenate(rep) for rep in runs[0]]
    assert not np.array_equal(flat[0], flat[1]) and not np.array_equal(flat[1], flat[2])
    n = len(_x(tiny_store))
    assert all(((f >= 0) & (f <= n - WINDOW)).all() for f in flat)


def test_make_plan_is_seeded():
    a = bench.make_plan(3, 2, 4, 8, 1000, 100)
    b = bench.make_plan(3, 2, 4, 8, 1000, 100)
    assert len(a) == 2 and len(a[0]) == 4 and a[0][0].shape == (8,)
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb):
            np.testing.assert_array_equal(x, y)
    assert max(int(s.max()) for r in a for s in r) <= 900


# --------------------------------------------------------------------------------------
# the page cache really is dropped for cold runs


def _resident_fraction(path: Path) -> float:
    libc = ctypes.CDLL(None, use_errno=True)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        m = mmap.mmap(fh.fileno(), size, prot=mmap.PROT_READ)
        try:
            view = np.frombuffer(m, dtype=np.uint8)
            pages = -(-size // mmap.PAGESIZE)
            vec = (ctypes.c_ubyte * pages)()
            rc = libc.mincore(ctypes.c_void_p(view.ctypes.data), ctypes.c_size_t(size), vec)
            del view
            assert rc == 0, os.strerror(ctypes.get_errno())
            return sum(v & 1 for v in vec) / pages
        finally:
            m.close()


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="needs posix_fadvise")
def test_drop_cache_evicts_files_and_directories(tmp_path):
    f = tmp_path / "d" / "a.bin"
    f.parent.mkdir()
    f.write_bytes(os.urandom(1 << 21))
    bench._sync([f])
    bench._preread([tmp_path / "d"])
    assert _resident_fraction(f) > 0.9
    bench.drop_cache([tmp_path / "d"])
    assert _resident_fraction(f) < 0.1


# --------------------------------------------------------------------------------------
# errors and outputs


def test_errors(tiny_store, tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        bench.run_bench(tiny_store, backends=["nope"], workdir=tmp_path)
    with pytest.raises(KeyError, match="train/z"):
        bench.run_bench(tiny_store, key="train/z", backends=["npydir"], workdir=tmp_path)
    with pytest.raises(KeyError, match="'train'.*that is a group"):
        bench.run_bench(tiny_store, key="train", backends=["npydir"], workdir=tmp_path)
    with pytest.raises(ValueError, match="fewer than one window"):
        bench.run_bench(tiny_store, window=10**7, backends=["npydir"], workdir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no-such"):
        bench.run_bench(tmp_path / "no-such.npy")
    with pytest.raises(ValueError, match="batch"):
        bench.run_bench(tiny_store, batch=0, workdir=tmp_path)


def test_temporary_workdir_is_removed(tiny_store):
    before = set(tiny_store.parent.iterdir())
    bench.run_bench(tiny_store, backends=["zarr"], batch=2, window=WINDOW, repeats=1, batches=1)
    assert set(tiny_store.parent.iterdir()) == before


def test_json_and_png(tiny_store, tmp_path):
    result = bench.run_bench(tiny_store, backends=["das-loop"], batch=2, window=WINDOW,
                             repeats=1, batches=1, cold=True, workdir=tmp_path / "w")
    j = bench.write_json(result, tmp_path / "out" / "r.json")
    assert json.loads(j.read_text()) == json.loads(json.dumps(result))
    png = bench.plot_results(result, tmp_path / "out" / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5000
    assert not [p for p in png.parent.iterdir() if p.name.startswith(".")]


def test_tensorstore_is_skipped_with_a_note_when_missing(tiny_store, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "_tensorstore_available", lambda: False)
    result = bench.run_bench(tiny_store, backends=["tensorstore"], batch=2, window=WINDOW,
                             repeats=1, batches=1, workdir=tmp_path)
    assert "tensorstore" not in result["results"]["warm"]
    assert "pip install tensorstore" in result["skipped"]["tensorstore"]
    assert "skipped tensorstore" in bench.format_table(result)
    assert not any(p.suffix == ".zarr" for p in tmp_path.iterdir())  # nothing written for it


def test_tensorstore_reads_the_zarr_copy_when_installed(tiny_store, tmp_path):
    pytest.importorskip("tensorstore")
    result = bench.run_bench(tiny_store, backends=["tensorstore"], batch=2, window=WINDOW,
                             repeats=1, batches=1, workdir=tmp_path)
    assert result["results"]["warm"]["tensorstore"]["windows_per_s"] > 0
    assert "zarr" not in result["results"]["warm"]  # its store is written, not measured
    assert result["backends"]["tensorstore"]["path"].endswith(".zarr")


def test_note_when_the_files_do_not_fit_in_memory(tiny_store, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "_mem_available", lambda: 1000)
    result = bench.run_bench(tiny_store, backends=["npydir"], batch=2, window=WINDOW,
                             repeats=1, batches=1, workdir=tmp_path)
    assert "exceed half the available memory" in result["notes"][0]
    assert "note: the backends' files" in bench.format_table(result)
    monkeypatch.setattr(bench, "_mem_available", lambda: 10**12)
    result = bench.run_bench(tiny_store, backends=["npydir"], batch=2, window=WINDOW,
                             repeats=1, batches=1, workdir=tmp_path)
    assert result["notes"] == []


def test_read_only_dataset_folder_falls_back_to_the_temp_dir(tiny_store, tmp_path,
                                                             monkeypatch):
    real = bench.tempfile.mkdtemp
    calls = []

    def mkdtemp(prefix="", dir=None):
        calls.append(dir)
        if dir is not None:
            raise PermissionError(13, "Permission denied", str(dir))
        return real(prefix=prefix, dir=tmp_path)

    monkeypatch.setattr(bench.tempfile, "mkdtemp", mkdtemp)
    result = bench.run_bench(tiny_store, backends=["h5-contiguous"], batch=2, window=WINDOW,
                             repeats=1, batches=1)
    assert calls == [tiny_store.resolve().parent, None]
    assert result["params"]["workdir"].startswith(str(tmp_path))
    assert not Path(result["params"]["workdir"]).exists()  # removed afterwards


def test_shared_files_are_counted_once(tiny_store, tmp_path):
    prep = _prepared(tiny_store, tmp_path, names=["memcpy", "npydir", "das-loop", "numpy"])
    files = bench._unique_files(prep.backends.values())
    assert files == [tiny_store / "train" / "x.npy"]


def test_threads_default_to_the_kernels_policy(tiny_store, tmp_path, monkeypatch):
    from npydir.kernel import windows

    seen = []
    real = windows.gather_windows

    def spy(*args, **kwargs):
        seen.append(kwargs.get("threads"))
        return real(*args, **kwargs)

    monkeypatch.setattr(windows, "gather_windows", spy)
    common = dict(backends=["npydir-1t"], batch=2, window=WINDOW, repeats=1, batches=1,
                  workdir=tmp_path)
    result = bench.run_bench(tiny_store, **common)
    assert result["params"]["threads"] == "auto" and result["params"]["cores"] >= 1
    assert set(seen) == {None, 1}
    assert "auto, up to" in bench.format_table(result)
    seen.clear()
    result = bench.run_bench(tiny_store, threads=3, **common)
    assert set(seen) == {3, 1} and result["backends"]["npydir"]["threads"] == 3
    with pytest.raises(ValueError, match="threads"):
        bench.run_bench(tiny_store, threads=0, **common)


def test_tensorstore_failure_to_open_is_a_skip_with_the_reason(tiny_store, tmp_path,
                                                               monkeypatch):
    pytest.importorskip("tensorstore")

    def broken(path, key, zarr_format):
        def opener():
            raise ValueError("unsupported codec")
        return opener

    monkeypatch.setattr(bench, "_open_tensorstore", broken)
    result = bench.run_bench(tiny_store, backends=["tensorstore"], batch=2, window=WINDOW,
                             repeats=1, batches=1, workdir=tmp_path)
    assert "unsupported codec" in result["skipped"]["tensorstore"]
    assert "tensorstore" not in result["results"]["warm"]
