"""npydir.das audio: npz/wav round trips, no silent clipping, clear errors for bad files."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npydir.das import load_audio, pcm_scale, save_audio, scale_pcm, wav_range
from npydir.errors import DASFormatError

pytest.importorskip("scipy")

WAV_DTYPES = ["uint8", "int16", "int32", "int64", "float32", "float64"]


def _in_range_data(dtype: str, shape=(257, 3), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        d = rng.uniform(-1, 1, size=shape).astype(dt)
        d.flat[0], d.flat[1] = -1.0, 1.0  # the edges of the range are allowed
        return d
    info = np.iinfo(dt)
    d = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)
    d.flat[0], d.flat[1] = info.min, info.max
    return d


@pytest.mark.parametrize("dtype", WAV_DTYPES)
@pytest.mark.parametrize("channels", [1, 3])
def test_wav_round_trip_every_dtype(tmp_path, dtype, channels):
    data = _in_range_data(dtype, (301, channels))
    path = save_audio(tmp_path / "a.wav", data, 22050)
    back, rate = load_audio(path)
    assert rate == 22050.0 and isinstance(rate, float)
    assert back.dtype == np.dtype(dtype)
    assert back.shape == (301, channels)
    np.testing.assert_array_equal(back, data)


@pytest.mark.parametrize(
    "dtype", ["float16", "float32", "float64", "int16", "int32", "uint8", "bool"]
)
def test_npz_round_trip(tmp_path, dtype):
    data = (np.arange(40).reshape(20, 2) % 2).astype(dtype)
    path = save_audio(tmp_path / "a.npz", data, 10_000.5)
    back, rate = load_audio(path)
    assert rate == 10_000.5
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, data)
    with np.load(path) as npz:  # the DAS export layout
        assert sorted(npz.files) == ["data", "samplerate"]
        assert npz["samplerate"].shape == (1,)


def test_npz_dtype_argument_casts(tmp_path):
    save_audio(tmp_path / "a.npz", np.array([0.5, -0.25]), 100, dtype="float16")
    back, _ = load_audio(tmp_path / "a.npz")
    assert back.dtype == np.float16 and back.tolist() == [[0.5], [-0.25]]


@pytest.mark.parametrize("suffix", [".npz", ".wav"])
def test_mono_becomes_samples_by_one(tmp_path, suffix):
    save_audio(tmp_path / f"m{suffix}", np.array([1, -2, 3], dtype=np.int16), 8000)
    back, _ = load_audio(tmp_path / f"m{suffix}")
    assert back.shape == (3, 1)
    assert back[:, 0].tolist() == [1, -2, 3]


def test_npz_with_scalar_samplerate_and_1d_data(tmp_path):
    # other exporters write a 0-d samplerate and mono data as a vector
    np.savez(tmp_path / "s.npz", data=np.arange(5.0), samplerate=np.float64(44100))
    back, rate = load_audio(tmp_path / "s.npz")
    assert back.shape == (5, 1) and rate == 44100.0


def _write_pcm24(path: Path, samples: np.ndarray, rate: int) -> None:
    """A 24-bit PCM wav written by hand (scipy reads but does not write this width)."""
    n, ch = samples.shape
    raw = bytearray()
    for v in samples.reshape(-1):
        raw += int(v).to_bytes(3, "little", signed=True)
    fmt = struct.pack("<HHIIHH", 1, ch, rate, rate * ch * 3, ch * 3, 24)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(raw))
        + bytes(raw)
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.mark.parametrize("mmap", [False, True])
def test_wav_24_bit_is_read_as_int32(tmp_path, mmap):
    samples = np.array([[0, 1], [-1, 8388607], [-8388608, 12345]], dtype=np.int64)
    _write_pcm24(tmp_path / "p24.wav", samples, 48000)
    back, rate = load_audio(tmp_path / "p24.wav", mmap=mmap)
    assert rate == 48000.0 and back.dtype == np.int32
    # scipy left-justifies 24-bit samples in int32
    np.testing.assert_array_equal(back, samples.astype(np.int32) << 8)


def test_wav_mmap_returns_same_values(tmp_path):
    data = _in_range_data("int16", (100, 2))
    save_audio(tmp_path / "a.wav", data, 1000)
    back, _ = load_audio(tmp_path / "a.wav", mmap=True)
    np.testing.assert_array_equal(back, data)


# --- no silent clipping -----------------------------------------------------------------------
def test_wav_refuses_out_of_range_and_counts(tmp_path):
    data = np.zeros((10, 2), dtype=np.int32)
    data[0, 0], data[3, 1], data[9, 0] = 40000, -40000, 32768
    with pytest.raises(DASFormatError) as err:
        save_audio(tmp_path / "a.wav", data, 1000, dtype="int16")
    msg = str(err.value)
    assert "3 of 20" in msg and "[-32768, 32767]" in msg and "a.wav" in msg
    assert "clip=True" in msg
    assert not (tmp_path / "a.wav").exists()


def test_wav_float_out_of_range_is_refused(tmp_path):
    data = np.array([0.5, 1.5, -1.01, 1.0], dtype=np.float32)
    with pytest.raises(DASFormatError, match=r"2 of 4 .*\[-1\.0, 1\.0\]"):
        save_audio(tmp_path / "f.wav", data, 1000)


def test_wav_clip(tmp_path):
    data = np.array([0, 40000, -40000, 100], dtype=np.int32)
    save_audio(tmp_path / "c.wav", data, 1000, dtype="int16", clip=True)
    back, _ = load_audio(tmp_path / "c.wav")
    assert back[:, 0].tolist() == [0, 32767, -32768, 100]


def test_wav_rescale_puts_peak_at_edge(tmp_path):
    data = np.array([0.0, 2.0, -1.0, 0.5])
    save_audio(tmp_path / "r.wav", data, 1000, dtype="float32", rescale=True)
    back, _ = load_audio(tmp_path / "r.wav")
    np.testing.assert_allclose(back[:, 0], [0.0, 1.0, -0.5, 0.25])
    save_audio(
        tmp_path / "r16.wav", np.array([0, 65534, -65534]), 1000, dtype="int16", rescale=True
    )
    back, _ = load_audio(tmp_path / "r16.wav")
    assert back[:, 0].tolist() == [0, 32767, -32767]


def test_wav_rescale_leaves_in_range_data_alone(tmp_path):
    data = np.array([0.1, -0.2], dtype=np.float32)
    save_audio(tmp_path / "r.wav", data, 1000, rescale=True)
    np.testing.assert_array_equal(load_audio(tmp_path / "r.wav")[0][:, 0], data)


def test_wav_float_to_int_rounds_and_checks_rounded_value(tmp_path):
    save_audio(tmp_path / "i.wav", np.array([1.4, 1.6, -2.5, 32767.4]), 1000, dtype="int16")
    assert load_audio(tmp_path / "i.wav")[0][:, 0].tolist() == [1, 2, -2, 32767]
    with pytest.raises(DASFormatError, match="1 of 1"):
        save_audio(tmp_path / "j.wav", np.array([32767.6]), 1000, dtype="int16")


def test_wav_uint8_range_and_rescale(tmp_path):
    assert wav_range("uint8") == (0, 255)
    with pytest.raises(DASFormatError, match=r"1 of 3 .*\[0, 255\]"):
        save_audio(tmp_path / "u.wav", np.array([0, 255, -1]), 1000, dtype="uint8")
    save_audio(
        tmp_path / "u.wav", np.array([128, 128 + 254, 128 - 254]), 1000, dtype="uint8", rescale=True
    )
    assert load_audio(tmp_path / "u.wav")[0][:, 0].tolist() == [128, 255, 1]


def test_wav_nan_is_refused(tmp_path):
    with pytest.raises(DASFormatError, match="1 sample.*NaN"):
        save_audio(tmp_path / "n.wav", np.array([0.0, np.nan], dtype=np.float32), 1000)


def test_wav_needs_integer_samplerate_and_supported_dtype(tmp_path):
    with pytest.raises(DASFormatError, match="integer"):
        save_audio(tmp_path / "a.wav", np.zeros(3, np.int16), 1000.5)
    with pytest.raises(DASFormatError, match="float16"):
        save_audio(tmp_path / "a.wav", np.zeros(3, np.float16), 1000)
    with pytest.raises(ValueError, match="at most one"):
        save_audio(tmp_path / "a.wav", np.zeros(3, np.int16), 1000, clip=True, rescale=True)


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    import scipy.io.wavfile

    old = np.array([1, 2, 3], dtype=np.int16)
    save_audio(tmp_path / "a.wav", old, 1000)
    before = (tmp_path / "a.wav").read_bytes()

    def broken(fp, rate, data):
        fp.write(b"RIFF half")  # partial output, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(scipy.io.wavfile, "write", broken)
    with pytest.raises(OSError):
        save_audio(tmp_path / "a.wav", np.array([9, 9], dtype=np.int16), 1000)
    assert (tmp_path / "a.wav").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]


# --- bad files ----------------------------------------------------------------------------------
def test_npz_missing_key(tmp_path):
    np.savez(tmp_path / "a.npz", audio=np.zeros((3, 1)), samplerate=np.array([1.0]))
    with pytest.raises(DASFormatError) as err:
        load_audio(tmp_path / "a.npz")
    assert "a.npz" in str(err.value) and "'data'" in str(err.value) and "audio" in str(err.value)


def test_npz_wrong_ndim(tmp_path):
    np.savez(tmp_path / "a.npz", data=np.zeros((3, 1, 2)), samplerate=np.array([1.0]))
    with pytest.raises(DASFormatError, match=r"a\.npz.*\[samples, channels\].*3 dimensions"):
        load_audio(tmp_path / "a.npz")


@pytest.mark.parametrize("rate", [0.0, -5.0, np.nan, np.inf])
def test_npz_bad_samplerate(tmp_path, rate):
    np.savez(tmp_path / "a.npz", data=np.zeros((3, 1)), samplerate=np.array([rate]))
    with pytest.raises(DASFormatError, match=r"a\.npz: samplerate must be a finite number > 0"):
        load_audio(tmp_path / "a.npz")


def test_npz_samplerate_with_two_values(tmp_path):
    np.savez(tmp_path / "a.npz", data=np.zeros((3, 1)), samplerate=np.array([1.0, 2.0]))
    with pytest.raises(DASFormatError, match="single positive number"):
        load_audio(tmp_path / "a.npz")


def test_npz_object_data_is_refused_without_unpickling(tmp_path):
    np.savez(
        tmp_path / "a.npz", data=np.array([{"x": 1}], dtype=object), samplerate=np.array([1.0])
    )
    with pytest.raises(DASFormatError, match=r"a\.npz"):
        load_audio(tmp_path / "a.npz")


def test_not_a_zip(tmp_path):
    (tmp_path / "a.npz").write_bytes(b"hello, I am not a zip file")
    with pytest.raises(DASFormatError, match=r"a\.npz: not a readable npz"):
        load_audio(tmp_path / "a.npz")


def test_truncated_npz(tmp_path):
    save_audio(tmp_path / "a.npz", np.zeros((1000, 2)), 1000)
    raw = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "a.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DASFormatError, match=r"a\.npz"):
        load_audio(tmp_path / "a.npz")


def test_npy_renamed_to_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    with pytest.raises(DASFormatError, match="renamed"):
        load_audio(tmp_path / "a.npz")


@pytest.mark.parametrize(
    "content",
    [b"", b"RIFF", b"RIFF\x10\x00\x00\x00WAVEjunkjunk", b"not a wav file at all, just text"],
)
def test_unreadable_wav(tmp_path, content):
    (tmp_path / "b.wav").write_bytes(content)
    with pytest.raises(DASFormatError, match=r"b\.wav: unreadable wav file"):
        load_audio(tmp_path / "b.wav")


def test_truncated_wav_data(tmp_path):
    save_audio(tmp_path / "t.wav", np.zeros((1000, 2), np.int16), 1000)
    raw = (tmp_path / "t.wav").read_bytes()
    (tmp_path / "t.wav").write_bytes(raw[:60])
    with pytest.raises(DASFormatError, match=r"t\.wav"):
        load_audio(tmp_path / "t.wav")


def test_unsupported_suffix_and_missing_file(tmp_path):
    (tmp_path / "a.mp3").write_bytes(b"x")
    with pytest.raises(DASFormatError, match=r"'\.mp3'.*\.npz"):
        load_audio(tmp_path / "a.mp3")
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(DASFormatError, match="unsupported"):
        save_audio(tmp_path / "a.flac", np.zeros(3), 1000)


def test_zip_without_npy_members(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(DASFormatError, match="missing key"):
        load_audio(tmp_path / "z.npz")


# --- reading wav as DAS does: integer PCM scaled to [-1, 1) ------------------------------------

# (dtype, samples, DAS's float32 values) - DAS reads wav with librosa.load (libsndfile)
SCALED = [
    (
        "int16",
        [-32768, -1, 0, 1, 16384, 32767],
        [-1.0, -1 / 32768, 0.0, 1 / 32768, 0.5, 32767 / 32768],
    ),
    (
        "int32",
        [-(2**31), -1, 0, 1, 2**30, 2**24 + 1, 2**31 - 1],
        # float32 has 24 bits: 2**24 + 1 rounds to 2**24, 2**31 - 1 to 2**31 (then 1.0)
        [-1.0, -(2.0**-31), 0.0, 2.0**-31, 0.5, 2.0**-7, 1.0],
    ),
    ("uint8", [0, 1, 127, 128, 129, 255], [-1.0, -127 / 128, -1 / 128, 0.0, 1 / 128, 127 / 128]),
    ("int64", [-(2**63), 0, 2**62], [-1.0, 0.0, 0.5]),
    ("float32", [-1.5, -1.0, 0.0, 0.25, 1.0], [-1.5, -1.0, 0.0, 0.25, 1.0]),
]


@pytest.mark.parametrize("dtype, samples, expected", SCALED)
def test_scale_pcm_exact_values(dtype, samples, expected):
    out = scale_pcm(np.array(samples, dtype=dtype))
    assert out.dtype == np.float32
    assert out.tolist() == np.array(expected, dtype=np.float32).tolist()


@pytest.mark.parametrize("dtype, samples, expected", SCALED)
def test_load_audio_scale_true_reads_wav_as_das(tmp_path, dtype, samples, expected):
    path = tmp_path / f"{dtype}.wav"
    save_audio(path, np.array(samples, dtype=dtype), 8000, clip=dtype == "float32")
    data, rate = load_audio(path, scale=True)
    assert rate == 8000 and data.shape == (len(samples), 1) and data.dtype == np.float32
    # clip=True above only for float wav, whose -1..1 range clips -1.5 when writing
    want = np.clip(expected, -1, 1) if dtype == "float32" else expected
    assert data[:, 0].tolist() == np.array(want, dtype=np.float32).tolist()
    raw, _ = load_audio(path)  # the default: samples as stored
    assert raw.dtype == np.dtype(dtype)
    assert load_audio(path, mmap=True, scale=True)[0].tolist() == data.tolist()


def test_load_audio_scale_true_24_bit(tmp_path):
    samples = np.array([[-(2**23), 0], [-1, 1], [2**22, 2**23 - 1]], dtype=np.int32)
    _write_pcm24(tmp_path / "p24.wav", samples, 48000)
    data, _ = load_audio(tmp_path / "p24.wav", scale=True)
    np.testing.assert_array_equal(data, (samples / 2**23).astype(np.float32))


def test_npz_is_never_scaled(tmp_path):
    # DAS's .npz loader takes 'data' as it is, integers included
    data = np.array([[-32768], [32767]], dtype=np.int16)
    save_audio(tmp_path / "a.npz", data, 1000)
    for scale in (False, True):
        back, _ = load_audio(tmp_path / "a.npz", scale=scale)
        assert back.dtype == np.int16 and back.tolist() == data.tolist()


def test_pcm_scale_table_and_refusal():
    assert pcm_scale("int16") == (0.0, 32768.0)
    assert pcm_scale("int32") == (0.0, 2.0**31)
    assert pcm_scale("uint8") == (128.0, 128.0)
    assert pcm_scale("int64") == (0.0, 2.0**63)
    assert pcm_scale("float64") == (0.0, 1.0)
    for bad in ("int8", "uint16", "bool", "complex64"):
        with pytest.raises(ValueError, match="no wav sample scale"):
            pcm_scale(bad)
    with pytest.raises(ValueError, match="float dtype"):
        scale_pcm(np.zeros(3, np.int16), dtype=np.int32)


@given(hnp.arrays(st.sampled_from([np.int16, np.uint8, np.int32]), st.integers(0, 50)))
def test_scaled_pcm_lies_in_minus_one_to_one_and_round_trips(data):
    out = scale_pcm(data, np.float64)
    offset, divisor = pcm_scale(data.dtype)
    assert np.all(out >= -1) and np.all(out < 1)
    np.testing.assert_array_equal(out * divisor + offset, data)  # float64: exact
    if data.dtype != np.int32:  # 16 and 8 bit are exact in float32 too
        np.testing.assert_array_equal(scale_pcm(data).astype(np.float64), out)
