"""npydir's audio against how DAS 0.33.2 reads it.

``das predict`` reads wav with ``librosa.load(path, sr=None, mono=False)`` (transposed to
``[samples, channels]``), and DAS's dataset maker reads wav the same way and ``.npz`` with
``np.load``; its store holds x as float16. npydir's ``load_audio(scale=True)`` and
``make_dataset``'s default must give the same numbers.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

if importlib.util.find_spec("das") is None:  # before touching the environment
    pytest.skip("das (0.33.2) is not installed", allow_module_level=True)
# das imports keras, whose default backend here would be torch; the interop suite runs jax
os.environ.setdefault("KERAS_BACKEND", "jax")
das = pytest.importorskip("das")
librosa = pytest.importorskip("librosa", reason="DAS reads wav with librosa (das.predict)")
soundfile = pytest.importorskip("soundfile")
das_predict = pytest.importorskip("das.predict")

from npydir.das import Recording, load_audio, make_dataset, save_audio  # noqa: E402
from npydir.das import write_annotations  # noqa: E402

SR = 8000


def das_reads_wav(path) -> np.ndarray:
    """wav as ``das predict`` reads it: float32 ``[samples, channels]``."""
    x, rate = das_predict.librosa.load(path, sr=None, mono=False)
    x = x.T
    if x.ndim == 1:
        x = x[:, np.newaxis]
    assert rate == SR
    return x


def test_das_predict_reads_wav_with_librosa():
    assert das_predict.librosa is librosa


def _samples(dtype, channels, n=5000, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        data = rng.uniform(-1, 1, (n, channels)).astype(dtype)
        data[:3, 0] = [-1.0, 0.0, 1.0]
        return data
    info = np.iinfo(dtype)
    data = rng.integers(info.min, info.max, (n, channels), endpoint=True).astype(dtype)
    data[:5, 0] = [info.min, info.max, info.min + 1, info.max - 1, (info.min + info.max + 1) // 2]
    return data


@pytest.mark.parametrize("dtype", ["int16", "int32", "uint8", "float32"])
@pytest.mark.parametrize("channels", [1, 2, 5])
def test_load_audio_scaled_equals_das(tmp_path, dtype, channels):
    path = tmp_path / "a.wav"
    save_audio(path, _samples(dtype, channels), SR)
    expected = das_reads_wav(path)
    got, rate = load_audio(path, scale=True)
    assert rate == SR and got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_load_audio_scaled_24_bit_equals_das(tmp_path):
    path = tmp_path / "a.wav"
    data = _samples("int32", 2) // 256  # 24-bit values
    soundfile.write(path, data * 256, SR, subtype="PCM_24")
    got, _ = load_audio(path, scale=True)
    np.testing.assert_array_equal(got, das_reads_wav(path))
    np.testing.assert_array_equal(got, (data / 2**23).astype(np.float32))


def test_64_bit_pcm_is_beyond_das(tmp_path):
    # documented: libsndfile (DAS's reader) cannot read 64-bit PCM; npydir scales it by 2**63
    path = tmp_path / "a.wav"
    save_audio(path, np.array([-(2**63), 0, 2**62], dtype=np.int64), SR)
    with pytest.raises(Exception):  # noqa: B017 - libsndfile's own error type
        soundfile.read(path)
    assert load_audio(path, scale=True)[0][:, 0].tolist() == [-1.0, 0.0, 0.5]


def _make_both(tmp_path, dtype, suffix, x_dtype):
    recs, das_x = [], []
    for i in range(3):
        audio = tmp_path / f"r{i}{suffix}"
        save_audio(audio, _samples(dtype, 2, seed=i), SR)
        write_annotations(tmp_path / f"r{i}_annotations.csv", [("sine", 0.1, 0.2)])
        recs.append(Recording.from_files(audio, tmp_path / f"r{i}_annotations.csv"))
        if suffix == ".wav":
            x = das_reads_wav(audio)
        else:  # DAS's dataset maker: np.load(path)["data"], as it is
            x = np.load(audio)["data"]
        das_x.append(x.astype(x_dtype))  # the store's dtype (DAS's zarr store: float16)
    out = make_dataset(recs, tmp_path / "d.npy", split="recording", seed=0, x_dtype=x_dtype)
    return out, das_x


@pytest.mark.parametrize("dtype", ["int16", "int32", "uint8", "float32"])
@pytest.mark.parametrize("x_dtype", ["float16", "float32"])
def test_make_dataset_x_equals_what_das_stores(tmp_path, dtype, x_dtype):
    out, das_x = _make_both(tmp_path, dtype, ".wav", x_dtype)
    # DAS's own loader on npydir's store, the way it trains on it
    data = das.npy_dir.load(str(out))
    assert data.attrs["audio_scaling"] == "das"
    for split in ("train", "val", "test"):
        x = np.asarray(data[split]["x"])
        for name, a, b in zip(
            data.attrs[f"filename_{split}"],
            data.attrs[f"filename_startsample_{split}"],
            data.attrs[f"filename_endsample_{split}"],
        ):
            i = int(os.path.basename(name)[1])
            np.testing.assert_array_equal(x[a:b], das_x[i])


def test_make_dataset_npz_equals_what_das_stores(tmp_path):
    out, das_x = _make_both(tmp_path, "float32", ".npz", "float16")
    data = das.npy_dir.load(str(out))
    x = np.asarray(data["train"]["x"])
    name = data.attrs["filename_train"][0]
    np.testing.assert_array_equal(x[: len(das_x[0])], das_x[int(os.path.basename(name)[1])])
