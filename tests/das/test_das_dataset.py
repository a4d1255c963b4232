"""npydir.das.make_dataset: a DAS training store, checked sample by sample and with DAS's loader."""

from __future__ import annotations

import glob
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import npydir
from npydir.das import (
    Annotations,
    Recording,
    find_recordings,
    load_audio,
    make_dataset,
    make_recordings,
    make_targets,
    read_annotations,
    save_audio,
    write_annotations,
    write_definitions,
)
from npydir.das.dataset import SPLITS
from npydir.errors import AlreadyExistsError, DASFormatError

SR = 10_000
WIDTH = 0.006  # default event width: 60 samples


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recs")
    return make_recordings(folder, n_recordings=5, seconds=2.0, samplerate=SR, channels=2, seed=3)


def expected_y(ann: Annotations, n: int, sr: float, width: float = WIDTH) -> np.ndarray:
    """Targets written out row by row from the documented rules (no gaps, no overlaps here)."""
    y = np.zeros((n, 3))
    w = round(width * sr)
    for name, start, stop in ann.rows():
        if math.isnan(start):
            continue
        if name == "pulse":
            c = int(start * sr)  # DAS's make_annotation_matrix: int(t * sr)
            for i in range(c - w // 2, c - w // 2 + w):
                if 0 <= i < n:
                    y[i, 1] = 1
        else:
            for i in range(int(start * sr), int(stop * sr + 1)):
                if 0 <= i < n:
                    y[i, 2] = 1
    y[:, 0] = 1 - y[:, 1:].sum(axis=1)
    return y


def das_npy_dir_load(location: str) -> tuple[dict, dict]:
    """What DAS's own ``das.npy_dir.load`` does with a store (re-implemented for the test)."""
    dirs = [
        os.path.join(location, n)
        for n in os.listdir(location)
        if os.path.isdir(os.path.join(location, n))
    ]
    attrs = np.load(os.path.join(location, "attrs.npy"), allow_pickle=True)[()]
    data: dict = {}
    for d in dirs:
        key = os.path.splitext(os.path.basename(d))[0]
        data[key] = {}
        for f in glob.glob(os.path.join(d, "*.npy")):
            k = os.path.splitext(os.path.basename(f))[0]
            data[key][k] = np.lib.format.open_memmap(f, mode="r") if key == "train" else np.load(f)
    return data, attrs


@pytest.fixture(scope="module")
def store(recordings, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "data.npy"
    # a small block size, so recordings are appended in several blocks
    make_dataset(
        recordings,
        out,
        split="recording",
        val_fraction=0.2,
        test_fraction=0.2,
        seed=1,
        suffixes=True,
        block_samples=7_777,
    )
    return out


def test_store_layout_and_attrs(store, recordings):
    attrs = json.loads((store / "attrs.json").read_text())
    assert attrs["samplerate_x_Hz"] == SR and attrs["samplerate_y_Hz"] == SR
    assert attrs["class_names"] == ["noise", "pulse", "sine"]
    assert attrs["class_types"] == ["segment", "event", "segment"]
    assert attrs["class_names_pulse"] == ["noise", "pulse"] and attrs["class_types_pulse"] == [
        "segment",
        "event",
    ]
    assert attrs["class_names_sine"] == ["noise", "sine"] and attrs["class_types_sine"] == [
        "segment",
        "segment",
    ]
    used = sorted(f for s in ("train", "val", "test") for f in attrs[f"filename_{s}"])
    assert used == sorted(str(a) for a, _ in recordings)
    assert len(attrs["filename_val"]) == 1 and len(attrs["filename_test"]) == 1
    for s in ("train", "val", "test"):
        assert sorted(os.listdir(store / s)) == ["x.npy", "y.npy", "y_pulse.npy", "y_sine.npy"]
    # no temporary directory left beside the store
    assert sorted(p.name for p in store.parent.iterdir()) == ["data.npy"]


def test_sample_by_sample(store):
    root = npydir.open(store)
    attrs = root.attrs
    for s in ("train", "val", "test"):
        x, y = root[s]["x"][...], root[s]["y"][...]
        assert x.dtype == np.float16 and y.dtype == np.float32
        assert x.shape[1] == 2 and y.shape[1] == 3
        starts, ends = attrs[f"filename_startsample_{s}"], attrs[f"filename_endsample_{s}"]
        assert starts[0] == 0 and ends[-1] == len(x) == len(y)
        assert starts[1:] == ends[:-1]  # parts are contiguous
        np.testing.assert_allclose(y.sum(axis=1), 1, atol=1e-6)
        for name, a, b, r0 in zip(
            attrs[f"filename_{s}"], starts, ends, attrs[f"filename_recording_startsample_{s}"]
        ):
            audio, sr = load_audio(name)
            ann = read_annotations(Path(name).with_name(Path(name).stem + "_annotations.csv"))
            assert r0 == 0 and b - a == len(audio)
            np.testing.assert_array_equal(x[a:b], audio.astype(np.float16))
            exp = expected_y(ann, len(audio), sr)
            np.testing.assert_array_equal(y[a:b], exp)
            # and directly at the annotations: every pulse sample is pulse, sine boxes are sine
            for t in ann.events("pulse"):
                assert y[a + round(t * sr), 1] == 1
            for t0, t1 in ann.segments("sine"):
                i0, i1 = round(t0 * sr), round(t1 * sr)
                assert np.all(y[a + i0 : a + i1 + 1, 2] == 1)
                assert y[a + i0 - 1, 2] == 0 and (a + i1 + 1 == b or y[a + i1 + 1, 2] == 0)
            # single-class targets
            np.testing.assert_array_equal(
                root[s]["y_pulse"][a:b], np.stack([1 - exp[:, 1], exp[:, 1]], 1)
            )
            np.testing.assert_array_equal(
                root[s]["y_sine"][a:b], np.stack([1 - exp[:, 2], exp[:, 2]], 1)
            )
    root.close()


def test_das_loader_parity(store):
    data, attrs = das_npy_dir_load(str(store))
    assert set(data) == {"train", "val", "test"}
    assert attrs == json.loads((store / "attrs.json").read_text())
    assert isinstance(data["train"]["x"], np.memmap)
    root = npydir.open(store)
    for s in data:
        assert set(data[s]) == {"x", "y", "y_pulse", "y_sine"}
        for k in data[s]:
            np.testing.assert_array_equal(data[s][k], root[s][k][...])
    # what DAS's training code reads
    assert len(attrs["class_names"]) == data["train"]["y"].shape[1]
    assert attrs["samplerate_x_Hz"] == attrs["samplerate_y_Hz"]
    root.close()


def test_fraction_split(recordings, tmp_path):
    out = make_dataset(
        recordings[:2],
        tmp_path / "f.npy",
        split="fraction",
        val_fraction=0.25,
        test_fraction=0.1,
        suffixes=["sine"],
        x_dtype="float32",
    )
    root = npydir.open(out)
    attrs = root.attrs
    assert sorted(root["train"].keys()) == ["x", "y", "y_sine"]
    n = 2 * SR
    lengths = {"train": n - 5000 - 2000, "val": 5000, "test": 2000}
    for s, first in (("train", 0), ("val", n - 7000), ("test", n - 2000)):
        assert attrs[f"filename_{s}"] == [str(a) for a, _ in recordings[:2]]
        assert attrs[f"filename_recording_startsample_{s}"] == [first, first]
        assert attrs[f"filename_startsample_{s}"] == [0, lengths[s]]
        x, y = root[s]["x"][...], root[s]["y"][...]
        assert x.dtype == np.float32 and len(x) == 2 * lengths[s]
        for i, (audio_path, ann_path) in enumerate(recordings[:2]):
            audio, sr = load_audio(audio_path)
            part = slice(first, first + lengths[s])
            off = i * lengths[s]
            np.testing.assert_array_equal(x[off : off + lengths[s]], audio[part])
            exp = expected_y(read_annotations(ann_path), n, sr)[part]
            np.testing.assert_array_equal(y[off : off + lengths[s]], exp)
    root.close()


def test_block_size_does_not_change_the_result(recordings, tmp_path):
    a = make_dataset(
        recordings[:3],
        tmp_path / "a.npy",
        block_samples=1_000_000,
        event_std_seconds=0.002,
        segment_gap_seconds=0.01,
        split="fraction",
    )
    b = make_dataset(
        recordings[:3],
        tmp_path / "b.npy",
        block_samples=333,
        event_std_seconds=0.002,
        segment_gap_seconds=0.01,
        split="fraction",
    )
    for s in ("train", "val", "test"):
        for k in ("x", "y"):
            assert (a / s / f"{k}.npy").read_bytes() == (b / s / f"{k}.npy").read_bytes()


def test_folder_input_and_wav(tmp_path):
    pairs = make_recordings(
        tmp_path / "w", n_recordings=3, seconds=1.0, samplerate=8000, audio_format="wav"
    )
    recs = find_recordings(tmp_path / "w")
    assert [r.audio for r in recs] == [a for a, _ in pairs]
    assert all(
        r.definitions is not None and r.definitions.name.endswith("_definitions.csv") for r in recs
    )
    out = make_dataset(tmp_path / "w", tmp_path / "w.npy", test_fraction=0)
    root = npydir.open(out)
    assert root.attrs["samplerate_x_Hz"] == 8000
    assert len(root["test"]["x"]) == 0 and root.attrs["filename_test"] == []
    assert len(root["train"]["x"]) == 2 * 8000 and len(root["val"]["x"]) == 8000
    root.close()
    data, _ = das_npy_dir_load(str(out))  # DAS also reads the empty test split
    assert data["test"]["x"].shape == (0, 1)


def test_class_names_from_definitions_and_explicit(tmp_path, recordings):
    folder = tmp_path / "defs"
    folder.mkdir()
    for audio, ann in recordings[:3]:
        (folder / audio.name).write_bytes(audio.read_bytes())
        (folder / ann.name).write_bytes(ann.read_bytes())
        # a type that is defined but never annotated still becomes a class
        write_definitions(
            folder / ann.name.replace("_annotations", "_definitions"),
            {"pulse": "event", "sine": "segment", "tick": "event"},
        )
    out = make_dataset(folder, tmp_path / "d.npy")
    with npydir.open(out) as root:
        assert root.attrs["class_names"] == ["noise", "pulse", "sine", "tick"]
        assert root.attrs["class_types"] == ["segment", "event", "segment", "event"]
        assert np.all(root["train"]["y"][:, 3] == 0)
    with pytest.warns(
        UserWarning,
        match=r"\['pulse', 'tick'\] of the annotations or definitions are not in class_names",
    ):
        out = make_dataset(folder, tmp_path / "e.npy", class_names=["sine"])
    with npydir.open(out) as root:
        assert root.attrs["class_names"] == ["noise", "sine"]
        assert root.attrs["class_types"] == ["segment", "segment"]
    with pytest.raises(ValueError, match=r"\['whip'\] appear in no annotations"):
        make_dataset(folder, tmp_path / "g.npy", class_names=["noise", "whip"])
    with pytest.warns(UserWarning, match="not in class_names"):
        out = make_dataset(
            folder,
            tmp_path / "h.npy",
            class_names=["whip", "sine"],
            class_types=["event", "segment"],
        )
    with npydir.open(out) as root:
        assert root.attrs["class_types"] == ["segment", "event", "segment"]


def test_progress_bar(recordings, tmp_path, capsys):
    pytest.importorskip("tqdm")
    make_dataset(recordings, tmp_path / "p.npy", progress=True)
    assert "make_dataset p.npy" in capsys.readouterr().err


# --- refusals ---------------------------------------------------------------------------------
def _copy(recs, folder: Path) -> list[tuple[Path, Path]]:
    folder.mkdir()
    out = []
    for audio, ann in recs:
        for p in (audio, ann, ann.with_name(ann.name.replace("_annotations", "_definitions"))):
            (folder / p.name).write_bytes(p.read_bytes())
        out.append((folder / audio.name, folder / ann.name))
    return out


def test_different_samplerates_are_refused(recordings, tmp_path):
    recs = _copy(recordings[:3], tmp_path / "r")
    audio, _ = load_audio(recs[2][0])
    save_audio(recs[2][0], audio, 20_000)
    with pytest.raises(
        DASFormatError,
        match=r"rec002\.npz: samplerate 20000.0 Hz differs from 10000.0 Hz of .*rec000\.npz",
    ):
        make_dataset(recs, tmp_path / "x.npy")
    assert not (tmp_path / "x.npy").exists()


def test_different_channel_counts_are_refused(recordings, tmp_path):
    recs = _copy(recordings[:3], tmp_path / "r")
    audio, _ = load_audio(recs[1][0])
    save_audio(recs[1][0], audio[:, :1], SR)
    with pytest.raises(
        DASFormatError, match=r"rec001\.npz: 1 channel\(s\), but .*rec000\.npz has 2"
    ):
        make_dataset(recs, tmp_path / "x.npy")


def test_definition_conflicts_are_refused(recordings, tmp_path):
    recs = _copy(recordings[:3], tmp_path / "r")
    write_definitions(
        recs[0][1].with_name("rec000_definitions.csv"), {"pulse": "segment", "sine": "segment"}
    )
    with pytest.raises(
        DASFormatError,
        match=r"(?s)rec000_annotations\.csv vs .*rec000_definitions\.csv"
        r".*'pulse' is defined as segment",
    ):
        make_dataset(recs, tmp_path / "x.npy")


def test_category_conflict_between_files(recordings, tmp_path):
    recs = _copy(recordings[:3], tmp_path / "r")
    for _, ann in recs:
        ann.with_name(ann.name.replace("_annotations", "_definitions")).unlink()
    write_annotations(recs[1][1], Annotations.from_rows([("pulse", 0.1, 0.2)]))
    with pytest.raises(
        DASFormatError,
        match=r"'pulse' is a event in .*rec000_annotations.csv but a segment in .*rec001",
    ):
        make_dataset(recs, tmp_path / "x.npy")


def test_split_arguments(recordings, tmp_path):
    with pytest.raises(ValueError, match="needs at least 3 recordings"):
        make_dataset(recordings[:2], tmp_path / "x.npy")
    with pytest.raises(ValueError, match="validation data is required"):
        make_dataset(recordings, tmp_path / "x.npy", val_fraction=0)
    with pytest.raises(ValueError, match="split must be"):
        make_dataset(recordings, tmp_path / "x.npy", split="random")
    assert not (tmp_path / "x.npy").exists()


def test_existing_output(recordings, tmp_path):
    out = make_dataset(recordings, tmp_path / "o.npy")
    with pytest.raises(AlreadyExistsError, match="overwrite=True"):
        make_dataset(recordings, out)
    make_dataset(recordings, out, overwrite=True, x_dtype="float32")
    assert np.load(out / "train" / "x.npy", mmap_mode="r").dtype == np.float32
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(AlreadyExistsError, match="not an npydir/DAS store"):
        make_dataset(recordings, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_failure_midway_leaves_nothing(recordings, tmp_path):
    recs = _copy(recordings, tmp_path / "r")
    audio, _ = load_audio(recs[4][0])
    audio[1234, 1] = np.nan
    save_audio(recs[4][0], audio, SR)
    with pytest.raises(
        DASFormatError, match=r"rec004\.npz: 1 NaN or infinite sample value\(s\) from sample 1234"
    ):
        make_dataset(recs, tmp_path / "x.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_float16_overflow_is_refused(tmp_path):
    recs = []
    for i in range(3):
        save_audio(
            tmp_path / f"r{i}.wav", np.full((1000, 1), 100_000 * (i == 1), dtype=np.int32), 1000
        )
        write_annotations(tmp_path / f"r{i}_annotations.csv", [("sine", 0.1, 0.2)])
        recs.append(
            Recording.from_files(tmp_path / f"r{i}.wav", tmp_path / f"r{i}_annotations.csv")
        )
    with pytest.raises(
        DASFormatError,
        match=r"r1\.wav: 600 sample value\(s\) in samples 0\.\.599 exceed the range of float16"
        r".*x_dtype='float32'",
    ):
        make_dataset(recs, tmp_path / "x.npy", split="fraction", audio_scaling="raw")
    make_dataset(recs, tmp_path / "x.npy", split="fraction", x_dtype="float32", audio_scaling="raw")
    # scaled as DAS reads it, 100_000 / 2**31 fits float16 easily
    make_dataset(recs, tmp_path / "x.npy", split="fraction", overwrite=True)


def test_folder_errors(tmp_path):
    with pytest.raises(DASFormatError, match="no \\*_annotations.csv"):
        find_recordings(tmp_path)
    write_annotations(tmp_path / "a_annotations.csv", [])
    with pytest.raises(
        DASFormatError, match=r"a_annotations\.csv: no audio file.*a\.npz or a\.wav"
    ):
        find_recordings(tmp_path)
    save_audio(tmp_path / "a.npz", np.zeros(10), 1000)
    save_audio(tmp_path / "a.wav", np.zeros(10), 1000)
    with pytest.raises(DASFormatError, match="ambiguous"):
        find_recordings(tmp_path)
    with pytest.raises(TypeError, match=r"recordings\[0\]"):
        make_dataset([tmp_path / "a.npz"], tmp_path / "x.npy")


def test_leftovers_of_a_killed_build_are_removed(recordings, tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now belongs to no process (reuse within this test is implausible)
    stale = tmp_path / f".s.npy.making-{dead.pid}"
    (stale / "train").mkdir(parents=True)
    alive = tmp_path / f".s.npy.making-{os.getppid()}"  # a live process: another build running
    alive.mkdir()
    make_dataset(recordings, tmp_path / "s.npy")
    assert not stale.exists() and alive.exists()


def test_overwrite_failure_keeps_the_old_store(recordings, tmp_path):
    out = make_dataset(recordings, tmp_path / "o.npy")
    before = (out / "train" / "x.npy").read_bytes()
    with pytest.raises(ValueError, match="validation data is required"):
        make_dataset(recordings, out, overwrite=True, val_fraction=0)
    recs = _copy(recordings, tmp_path / "r")
    audio, _ = load_audio(recs[3][0])
    audio[5, 0] = np.inf
    save_audio(recs[3][0], audio, SR)
    with pytest.raises(DASFormatError, match="rec003.npz"):
        make_dataset(recs, out, overwrite=True)
    assert (out / "train" / "x.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.npy", "r"]


def test_npydir_load_and_batches_train_on_it(store):
    data = npydir.load(store, y_suffix="sine")
    assert data["train"]["y"].shape[1] == 2
    assert list(data.attrs["class_names"]) == ["noise", "sine"]
    batches = npydir.Batches(
        data["train"]["x"], data["train"]["y"], window=256, batch_size=8, seed=0
    )
    x, y = batches[0]
    assert x.shape == (8, 256, 2) and y.shape == (8, 2)
    np.testing.assert_allclose(y.sum(axis=1), 1, atol=1e-6)


# --- audio as DAS reads it ----------------------------------------------------------------------


def _recording(folder, audio_name):
    stem = Path(audio_name).stem
    return Recording.from_files(folder / audio_name, folder / f"{stem}_annotations.csv")


def _wav_recordings(tmp_path, dtypes):
    rng = np.random.default_rng(5)
    recs, raw = [], []
    for i, dtype in enumerate(dtypes):
        info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
        if info is None:
            data = rng.uniform(-1, 1, (3000, 2)).astype(dtype)
        else:
            data = rng.integers(info.min, info.max, (3000, 2), endpoint=True).astype(dtype)
            data[:4, 0] = [info.min, info.max, (info.min + info.max + 1) // 2, 0]
        save_audio(tmp_path / f"r{i}.wav", data, SR)
        write_annotations(tmp_path / f"r{i}_annotations.csv", [("sine", 0.01, 0.02)])
        recs.append(_recording(tmp_path, f"r{i}.wav"))
        raw.append(data)
    return recs, raw


@pytest.mark.parametrize("x_dtype", ["float16", "float32", "float64"])
def test_integer_wav_is_scaled_as_das_reads_it_by_default(tmp_path, x_dtype):
    dtypes = ["int16", "uint8", "int32", "float32"]
    recs, raw = _wav_recordings(tmp_path, dtypes)
    out = make_dataset(recs, tmp_path / "d.npy", split="fraction", x_dtype=x_dtype)
    root = npydir.open(out)
    attrs = root.attrs
    assert attrs["audio_scaling"] == "das"
    pickled = np.load(out / "attrs.npy", allow_pickle=True)[()]  # what DAS's loader reads
    assert pickled["audio_scaling"] == "das"
    scale = {"int16": (0, 32768), "uint8": (128, 128), "int32": (0, 2**31), "float32": (0, 1)}
    for s in SPLITS:
        x = root[s]["x"][...]
        assert x.dtype == np.dtype(x_dtype)
        parts = zip(
            attrs[f"filename_{s}"],
            attrs[f"filename_startsample_{s}"],
            attrs[f"filename_endsample_{s}"],
            attrs[f"filename_recording_startsample_{s}"],
            attrs[f"filename_audio_offset_{s}"],
            attrs[f"filename_audio_divisor_{s}"],
        )
        for name, a, b, r0, offset, divisor in parts:
            i = int(Path(name).stem[1:])
            assert (offset, divisor) == scale[dtypes[i]]
            src = raw[i][r0 : r0 + b - a]
            # DAS reads float32 ((sample - offset) / divisor) and casts that to its float16
            work = np.float64 if x_dtype == "float64" else np.float32
            want = ((src.astype(np.float64) - offset) / divisor).astype(work).astype(x_dtype)
            np.testing.assert_array_equal(x[a:b], want)
            assert np.all(x[a:b] >= -1) and np.all(x[a:b] <= 1)
    first = root["train"]["x"][:4, 0]
    root.close()
    # r0 is int16 and first in train: -32768 -> -1, 32767 -> 32767/32768, 0 -> 0
    expected = np.array([-1, 32767 / 32768, 0, 0], np.float32).astype(x_dtype)
    assert first.tolist() == expected.tolist()


def test_raw_audio_scaling_keeps_the_samples(tmp_path):
    recs, raw = _wav_recordings(tmp_path, ["int16", "int16", "int16"])
    out = make_dataset(recs, tmp_path / "d.npy", split="fraction", x_dtype="int16",
                       audio_scaling="raw")
    with npydir.open(out) as root:
        assert root.attrs["audio_scaling"] == "raw"
        assert root.attrs["filename_audio_divisor_train"] == [1.0, 1.0, 1.0]
        assert root.attrs["filename_audio_offset_train"] == [0.0, 0.0, 0.0]
        np.testing.assert_array_equal(
            root["train"]["x"][: len(raw[0]) - 1200], raw[0][: len(raw[0]) - 1200]
        )
    out = make_dataset(recs, tmp_path / "f.npy", split="fraction", x_dtype="float32",
                       audio_scaling="raw")
    with npydir.open(out) as root:
        assert root["train"]["x"][:4, 0].tolist() == [-32768, 32767, 0, 0]


def test_npz_audio_is_not_scaled_as_das_takes_it(tmp_path):
    data = np.array([[1000], [-2000]] * 500, dtype=np.int16)
    recs = []
    for i in range(3):
        save_audio(tmp_path / f"r{i}.npz", data, SR)
        write_annotations(tmp_path / f"r{i}_annotations.csv", [("sine", 0.01, 0.02)])
        recs.append(_recording(tmp_path, f"r{i}.npz"))
    out = make_dataset(recs, tmp_path / "d.npy")
    with npydir.open(out) as root:
        assert root.attrs["filename_audio_divisor_train"] == [1.0]
        assert root["train"]["x"][:2, 0].tolist() == [1000, -2000]


def test_audio_scaling_arguments_are_checked(tmp_path):
    recs, _ = _wav_recordings(tmp_path, ["int16", "int16", "int16"])
    with pytest.raises(ValueError, match="audio_scaling must be one of"):
        make_dataset(recs, tmp_path / "d.npy", audio_scaling="librosa")
    with pytest.raises(ValueError, match="x_dtype=int16 cannot hold.*audio_scaling='raw'"):
        make_dataset(recs, tmp_path / "d.npy", x_dtype="int16")
    with pytest.raises(ValueError, match="event_kernel must be one of"):
        make_dataset(recs, tmp_path / "d.npy", event_kernel="box")
    assert not (tmp_path / "d.npy").exists()


def test_gaussian_targets_cross_split_and_block_edges(tmp_path):
    # y is made per block and per split part, but equals make_targets over the whole recording
    pulses = [(("pulse", t, t)) for t in np.arange(0.001, 0.3, 0.0123)]
    recs = []
    for i in range(3):
        save_audio(tmp_path / f"r{i}.npz", np.zeros((3000, 1), np.float32), SR)
        write_annotations(tmp_path / f"r{i}_annotations.csv", pulses)
        recs.append(_recording(tmp_path, f"r{i}.npz"))
    out = make_dataset(recs, tmp_path / "d.npy", split="fraction", block_samples=377,
                       event_std_seconds=0.0016, y_dtype="float64")
    ann = read_annotations(tmp_path / "r0_annotations.csv")
    whole = make_targets(ann, 3000, SR, ["noise", "pulse"], ["segment", "event"],
                         event_std_seconds=0.0016, dtype=np.float64)
    with npydir.open(out) as root:
        got = np.concatenate([root[s]["y"][:1800 if s == "train" else 600] for s in SPLITS])
        assert root.attrs["make_dataset"]["event_kernel"] == "das"
    np.testing.assert_array_equal(got, whole)
