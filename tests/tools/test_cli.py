"""The ``npydir`` command: every subcommand in-process via main([...]) and as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import npydir
from npydir.tools.cli import build_parser, main

COMMANDS = ["info", "tree", "verify", "repair", "convert", "make-dataset", "bench", "demo"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m npydir ARGS`` in a fresh interpreter."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "npydir", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=env)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("npydir: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def store(tmp_path) -> Path:
    path = tmp_path / "ds.npy"
    with npydir.open(path, mode="w") as root:
        root.attrs["samplerate_x_Hz"] = 10_000.0
        root.attrs["class_names"] = ["noise", "pulse"]
        train = root.create_group("train")
        train.create_dataset("x", data=np.arange(3000, dtype=np.float32).reshape(1000, 3))
        train.create_dataset("y", data=np.zeros((1000, 2), dtype=np.float32))
        train["x"].attrs["units"] = "volts"
        root.create_group("val").create_dataset("x", data=np.ones((10, 3), dtype=np.int16))
    return path


# --------------------------------------------------------------------------------------
# help, usage errors, exit codes


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in COMMANDS:
        assert cmd in out
    assert "example:" in out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help_with_an_example(cmd, capsys):
    assert main([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: npydir {cmd}" in out
    example = out.split("example:", 1)[1]
    assert f"npydir {cmd}" in example


def test_help_via_subprocess_and_version():
    r = run("convert", "--help")
    assert r.returncode == 0 and "example:" in r.stdout and "--zarr-format" in r.stdout
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"npydir {npydir.__version__}"


@pytest.mark.parametrize("argv, fragment", [
    ([], "a command is required: info, tree, verify, repair, convert, make-dataset, bench"),
    (["frobnicate"], "invalid choice"),
    (["info"], "required: path"),
    (["bench", "--batch", "0"], "--batch"),
    (["bench", "--size", "lots"], "cannot read size"),
    (["bench", "--backends", "npydir,leveldb"], "unknown backend 'leveldb'"),
    (["convert", "a.npy", "b.zarr", "--zarr-format", "4"], "--zarr-format"),
    (["info", "x", "--bogus"], "unrecognized arguments"),
])
def test_bad_usage_exits_2_with_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in one_error_line(err)


def test_bad_usage_via_subprocess():
    r = run("bench", "--window", "-3")
    assert r.returncode == 2
    assert "--window" in one_error_line(r.stderr)


def test_failure_is_one_line_exit_1(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.npy")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "missing.npy" in line


def test_failure_via_subprocess_and_debug_traceback(tmp_path):
    r = run("verify", str(tmp_path / "missing.npy"))
    assert r.returncode == 1
    assert "missing.npy" in one_error_line(r.stderr)
    r = run("--debug", "info", str(tmp_path / "missing.npy"))
    assert r.returncode == 1 and "Traceback" in r.stderr
    r = run("info", str(tmp_path / "missing.npy"), "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr


# --------------------------------------------------------------------------------------
# info / tree


def test_info_shows_tree_shapes_dtypes_sizes_attrs(store, capsys):
    assert main(["info", str(store)]) == 0
    out = capsys.readouterr().out
    assert "train/" in out and "val/" in out
    assert "x  (1000, 3) float32  12.0 kB" in out
    assert "y  (1000, 2) float32" in out
    assert "x  (10, 3) int16" in out
    assert "on disk" in out
    assert "@samplerate_x_Hz = 10000.0" in out
    assert "@class_names = " in out and "pulse" in out
    assert "@units = 'volts'" in out
    assert out.strip().splitlines()[-1].startswith("2 groups, 3 arrays")


def test_info_key_and_no_attrs(store, capsys):
    assert main(["info", str(store), "--key", "train/x", "--no-attrs"]) == 0
    out = capsys.readouterr().out
    assert "(1000, 3) float32" in out and "(1000, 2)" not in out and "@" not in out
    assert main(["info", str(store), "--key", "nope"]) == 1
    assert "nope" in one_error_line(capsys.readouterr().err)


def test_tree(store, capsys):
    assert main(["tree", str(store)]) == 0
    out = capsys.readouterr().out
    assert "├── train/" in out and "└── val/" in out
    assert "(1000, 3) float32" in out
    assert "@" not in out and "on disk" not in out


@pytest.mark.zarr
def test_info_on_zarr_and_hdf5(tmp_path, capsys):
    pytest.importorskip("zarr")
    h5py = pytest.importorskip("h5py")
    from _zarr import create_array, open_group

    z = open_group(tmp_path / "d.zarr")
    z.attrs["samplerate_x_Hz"] = 8000
    create_array(z, "train/x", shape=(50, 2), dtype=np.float16, chunks=(10, 2))[:] = 0
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.attrs["samplerate_x_Hz"] = 8000
        f.create_dataset("train/x", data=np.zeros((50, 2), np.int16))
    assert main(["info", str(tmp_path / "d.zarr")]) == 0
    out = capsys.readouterr().out
    assert "(zarr)" in out and "x  (50, 2) float16" in out and "@samplerate_x_Hz = 8000" in out
    assert main(["info", str(tmp_path / "d.h5")]) == 0
    out = capsys.readouterr().out
    assert "(h5)" in out and "x  (50, 2) int16  200 B, 200 B on disk" in out


# --------------------------------------------------------------------------------------
# verify / repair


def _grow_behind_header(store: Path) -> Path:
    """What a writer killed between writing data and the new shape leaves: extra bytes."""
    f = store / "train" / "y.npy"
    with open(f, "ab") as fh:
        fh.write(b"\0" * 8)
    return f


def test_verify_and_repair(store, capsys):
    assert main(["verify", str(store)]) == 0
    capsys.readouterr()
    _grow_behind_header(store)
    assert main(["verify", str(store)]) == 1
    assert "y" in capsys.readouterr().out
    assert main(["repair", str(store)]) == 0
    capsys.readouterr()
    assert main(["verify", str(store)]) == 0
    np.testing.assert_array_equal(np.load(store / "train" / "y.npy"), np.zeros((1000, 2)))


def test_verify_repair_via_subprocess(store):
    _grow_behind_header(store)
    assert run("verify", str(store)).returncode == 1
    assert run("repair", str(store)).returncode == 0
    assert run("verify", str(store)).returncode == 0


# --------------------------------------------------------------------------------------
# convert


@pytest.mark.zarr
def test_convert_roundtrip_with_options(store, tmp_path, capsys):
    pytest.importorskip("zarr")
    from _zarr import open_group, zarr_format

    dst = tmp_path / "out.zarr"
    assert main(["convert", str(store), str(dst), "--verify", "--zarr-format", "2",
                 "--chunks", "100", "--compression", "none", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "verified" in out
    z = open_group(dst, mode="r")
    assert zarr_format(z["train/x"]) == 2
    assert z["train/x"].chunks[0] == 100
    np.testing.assert_array_equal(z["train/x"][:], np.load(store / "train" / "x.npy"))
    back = tmp_path / "back.npy"
    assert main(["convert", str(dst), str(back), "--budget", "1MB", "--no-progress"]) == 0
    np.testing.assert_array_equal(np.load(back / "val" / "x.npy"), np.ones((10, 3), np.int16))
    # the destination exists now: a failure, one line, the data untouched
    capsys.readouterr()
    assert main(["convert", str(dst), str(back), "--no-progress"]) == 1
    assert "back.npy" in one_error_line(capsys.readouterr().err)
    np.testing.assert_array_equal(np.load(back / "train" / "x.npy"),
                                  np.load(store / "train" / "x.npy"))


def test_convert_to_hdf5_via_subprocess(store, tmp_path):
    h5py = pytest.importorskip("h5py")
    r = run("convert", str(store), str(tmp_path / "o.h5"), "--verify")
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "o.h5", "r") as f:
        np.testing.assert_array_equal(f["train/x"][:], np.load(store / "train" / "x.npy"))
    r = run("convert", str(tmp_path / "nothing.zarr"), str(tmp_path / "o2.npy"))
    assert r.returncode == 1 and "nothing.zarr" in one_error_line(r.stderr)


# --------------------------------------------------------------------------------------
# make-dataset


@pytest.fixture
def recordings(tmp_path):
    from npydir.das import synthetic

    return synthetic.make_recordings(tmp_path / "rec", n_recordings=3, seconds=1.0,
                                     samplerate=2_000, seed=0)


def test_make_dataset_from_folder(recordings, tmp_path, capsys):
    out = tmp_path / "ds.npy"
    assert main(["make-dataset", str(recordings[0][0].parent), str(out), "--no-progress"]) == 0
    assert "3 recordings" in capsys.readouterr().out
    with npydir.open(out) as root:
        assert "train" in root and "val" in root
        x = root["train/x"]
        assert x.ndim == 2 and len(x) > 0
        assert root["train/y"].shape[0] == x.shape[0]
        assert "class_names" in root.attrs


def test_make_dataset_from_files_via_subprocess(recordings, tmp_path):
    out = tmp_path / "ds2.npy"
    r = run("make-dataset", *[str(a) for a, _ in recordings], str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "train" / "x.npy").exists()


def test_make_dataset_wav_scaling_and_event_options(tmp_path):
    from npydir.das import synthetic

    from scipy.io import wavfile

    recs = synthetic.make_recordings(tmp_path / "w", n_recordings=3, seconds=1.0,
                                     samplerate=4_000, seed=0, audio_format="wav")
    for wav, _ in recs:  # as most recorders write it: int16 PCM
        rate, data = wavfile.read(wav)
        wavfile.write(wav, rate, np.round(data / np.abs(data).max() * 20_000).astype(np.int16))
    folder = str(recs[0][0].parent)
    scaled, raw = tmp_path / "scaled.npy", tmp_path / "raw.npy"
    assert main(["make-dataset", folder, str(scaled), "--no-progress", "--x-dtype", "float32",
                 "--event-std-seconds", "0.0016"]) == 0
    assert main(["make-dataset", folder, str(raw), "--no-progress", "--raw-audio",
                 "--x-dtype", "int16", "--event-std-seconds", "0.0016",
                 "--event-kernel", "symmetric"]) == 0
    with npydir.open(scaled) as s, npydir.open(raw) as r:
        xs, xr = np.asarray(s["train/x"]), np.asarray(r["train/x"])
        assert xr.dtype == np.int16 and s.attrs["audio_scaling"] == "das"
        assert r.attrs["audio_scaling"] == "raw"
        np.testing.assert_array_equal(xs, xr.astype(np.float32) / 32768)
        # DAS's Gaussian against the symmetric one: close, not equal (some split has pulses)
        diff = max(np.abs(np.asarray(s[f"{k}/y"]) - np.asarray(r[f"{k}/y"])).max()
                   for k in ("train", "val", "test"))
        assert 0 < diff < 0.1


def test_make_dataset_errors(tmp_path, capsys):
    assert main(["make-dataset", str(tmp_path / "out.npy")]) == 2
    assert "at least one recording" in one_error_line(capsys.readouterr().err)
    (tmp_path / "lonely.npz").write_bytes(b"")
    assert main(["make-dataset", str(tmp_path / "lonely.npz"), str(tmp_path / "o.npy")]) == 1
    assert "lonely_annotations.csv" in one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------------------
# bench / demo


@pytest.mark.zarr
def test_bench_json_and_plot(tmp_path, capsys):
    j, png = tmp_path / "b.json", tmp_path / "b.png"
    assert main(["bench", "--size", "300kB", "--channels", "2", "--batch", "4", "--window",
                 "64", "--repeats", "2", "--batches", "2", "--backends", "das-loop,zarr-das",
                 "--cold", "--json", str(j), "--plot", str(png), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "windows/s" in out and "zarr-das" in out and str(j) in out and str(png) in out
    result = json.loads(j.read_text())
    assert set(result["results"]) == {"warm", "cold"}
    assert list(result["results"]["cold"]) == ["memcpy", "npydir", "das-loop", "zarr-das"]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bench_on_a_store_via_subprocess(store, tmp_path):
    j = tmp_path / "r.json"
    r = run("bench", str(store), "--window", "32", "--batch", "3", "--repeats", "1",
            "--backends", "numpy", "--json", str(j))
    assert r.returncode == 0, r.stderr
    assert "numpy" in r.stdout
    assert json.loads(j.read_text())["dataset"]["shape"] == [1000, 3]
    r = run("bench", str(store), "--size", "1GB")
    assert r.returncode == 2 and "--size" in one_error_line(r.stderr)
    r = run("bench", str(store), "--key", "train/nope", "--backends", "npydir")
    assert r.returncode == 1 and "train/nope" in one_error_line(r.stderr)


TINY_DEMO = ["--recordings", "2", "--seconds", "1", "--channels", "1", "--batch", "4",
             "--window", "256", "--repeats", "1", "--no-progress"]


@pytest.mark.zarr
def test_demo_tiny_and_rerunnable(tmp_path, capsys, monkeypatch):
    from npydir.tools import bench

    # the chart is checked by test_bench and test_demo_via_subprocess; drawing it twice more
    # here would only cost time
    def fake_plot(result, path):
        Path(path).write_bytes(b"png")
        return Path(path)

    monkeypatch.setattr(bench, "plot_results", fake_plot)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *TINY_DEMO]) == 0
    printed = capsys.readouterr().out
    for name in ("memcpy", "npydir", "das-loop", "zarr", "h5-"):
        assert name in printed
    assert str(out / "bench.png") in printed and str(out / "bench.json") in printed
    result = json.loads((out / "bench.json").read_text())
    assert result["backends"]["zarr"]["path"] == str(out / "dataset.zarr")
    assert "cold" in result["results"]
    stale = out / "recordings" / "stale.txt"
    stale.write_text("from an earlier run")
    assert main(["demo", "--out", str(out), *TINY_DEMO, "--no-cold"]) == 0
    assert not stale.exists()
    assert list(json.loads((out / "bench.json").read_text())["results"]) == ["warm"]


def test_demo_refuses_to_replace_a_foreign_directory(tmp_path, capsys):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    assert main(["demo", "--out", str(precious), *TINY_DEMO]) == 1
    assert "refusing" in one_error_line(capsys.readouterr().err)
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_parser_is_importable_without_optional_modules():
    # building the parser must not import zarr, h5py, matplotlib or tqdm
    code = ("import sys; from npydir.tools.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('zarr','h5py','matplotlib','tqdm') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
    assert build_parser().prog == "npydir"


@pytest.mark.zarr
def test_progress_bars_on_stderr_when_asked(tmp_path, capsys):
    assert main(["bench", "--size", "200kB", "--channels", "1", "--batch", "2", "--window",
                 "32", "--repeats", "1", "--batches", "1", "--backends", "zarr",
                 "--progress"]) == 0
    captured = capsys.readouterr()
    assert "measuring" in captured.err and "windows/s" in captured.out


def test_interrupt_exits_130(monkeypatch, store, capsys):
    import npydir.tools.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_tree", interrupted)
    assert main(["tree", str(store)]) == 130
    assert capsys.readouterr().err.strip() == "npydir: interrupted"


def test_unexpected_errors_name_their_type(monkeypatch, store, capsys):
    import npydir.tools.cli as cli

    def broken(args):
        raise TypeError("unsupported operand\nsecond line")

    monkeypatch.setattr(cli, "_cmd_tree", broken)
    assert main(["tree", str(store)]) == 1
    assert one_error_line(capsys.readouterr().err) == (
        "npydir: error: TypeError: unsupported operand second line")


def test_verify_and_repair_report_what_they_cannot_fix(store, capsys):
    f = store / "train" / "x.npy"
    with open(f, "r+b") as fh:  # a truncated array: data lost, nothing to guess
        fh.truncate(f.stat().st_size - 100)
    assert main(["verify", str(store)]) == 1
    captured = capsys.readouterr()
    assert "x.npy" in captured.out
    assert "1 problem(s)" in one_error_line(captured.err)
    assert main(["repair", str(store)]) == 1
    captured = capsys.readouterr()
    assert "x.npy" in captured.out
    assert "will not guess" in one_error_line(captured.err)
    assert f.exists()  # repair never deletes user data


def test_convert_over_a_dask_scheduler(store, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        assert main(["convert", str(store), str(tmp_path / "c.npy"), "--scheduler",
                     cluster.scheduler_address, "--verify", "--no-progress"]) == 0
    assert "verified" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy" / "train" / "x.npy"),
                                  np.load(store / "train" / "x.npy"))


@pytest.mark.parametrize("cmd", ["info", "tree"])
def test_info_and_tree_via_subprocess(cmd, store):
    r = run(cmd, str(store))
    assert r.returncode == 0, r.stderr
    assert "x  (1000, 3) float32" in r.stdout and r.stderr == ""


def test_demo_via_subprocess(tmp_path):
    r = run("demo", "--out", "out", *TINY_DEMO, "--no-cold", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "demo finished" in r.stdout
    assert (tmp_path / "out" / "bench.png").stat().st_size > 0
    assert json.loads((tmp_path / "out" / "bench.json").read_text())["demo"]["recordings"] == 2


def test_info_depth_and_full(store, tmp_path, capsys):
    with npydir.open(store, mode="r+") as root:
        root.attrs["long"] = "z" * 200
    assert main(["info", str(store), "--depth", "1", "--no-attrs"]) == 0
    out = capsys.readouterr().out
    assert "train/" in out and "(1000, 3)" not in out  # one level: the groups only
    assert main(["tree", str(store), "--depth", "2"]) == 0
    assert "(1000, 3)" in capsys.readouterr().out
    assert main(["info", str(store)]) == 0
    short = capsys.readouterr().out
    assert "z" * 200 not in short and "zzz..." in short
    assert main(["info", str(store), "--full"]) == 0
    assert "z" * 200 in capsys.readouterr().out
