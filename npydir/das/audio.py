"""Audio files as DAS exports them: ``.npz`` (keys ``data`` and ``samplerate``) and ``.wav``.

``load_audio`` returns ``[samples, channels]`` plus the sample rate as a float. By default it
returns the samples as stored; ``scale=True`` reads integer PCM wav the way DAS does
(``librosa.load``, which ``das predict`` and DAS's dataset maker use): float32 in [-1, 1),
``int16 / 32768``, ``int32 / 2**31`` (24-bit PCM too), ``(uint8 - 128) / 128``. Float wav and
``.npz`` data are never scaled (DAS's ``.npz`` loader takes ``data`` as it is).

``save_audio`` writes both formats; for wav it refuses to clip silently: a value outside the
range of the target sample type is an error that counts the offending values, unless the
caller asks for ``clip=True`` or ``rescale=True``.

Ranges used for wav (scipy.io.wavfile's table): integer PCM types use their full integer range
(8-bit PCM is unsigned, 0..255); float types use the wav convention -1.0..+1.0. Writing never
scales implicitly: an int16 wav stores the numbers you give it, rounded to integers.
"""

from __future__ import annotations

import os
import struct
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..errors import DASFormatError
from ..store.npyfile import atomic_write

__all__ = ["AUDIO_SUFFIXES", "load_audio", "pcm_scale", "save_audio", "scale_pcm", "wav_range"]

#: File suffixes load_audio understands, in the order a folder search prefers them.
AUDIO_SUFFIXES = (".npz", ".wav")

# sample types a wav file can hold (what scipy.io.wavfile writes and reads back unchanged)
_WAV_DTYPES = tuple(np.dtype(t) for t in ("uint8", "int16", "int32", "int64", "float32", "float64"))


def _as_2d(data: np.ndarray, path: Path, what: str) -> np.ndarray:
    if data.ndim == 1:  # mono: DAS always works with [samples, channels]
        return data[:, np.newaxis]
    if data.ndim != 2:
        raise DASFormatError(
            f"{path}: {what} must be [samples, channels] (1 or 2 dimensions), "
            f"found {data.ndim} dimensions with shape {data.shape}"
        )
    return data


def _check_samplerate(samplerate: Any, path: Path) -> float:
    arr = np.asarray(samplerate)
    if arr.size != 1 or not (np.issubdtype(arr.dtype, np.number) and not np.iscomplexobj(arr)):
        raise DASFormatError(
            f"{path}: samplerate must be a single positive number, found {samplerate!r} "
            f"(dtype {arr.dtype}, shape {arr.shape})"
        )
    value = float(arr.reshape(()))
    if not np.isfinite(value) or value <= 0:
        raise DASFormatError(f"{path}: samplerate must be a finite number > 0, found {value!r}")
    return value


def pcm_scale(dtype: Any) -> tuple[float, float]:
    """``(offset, divisor)`` that turn wav samples of this dtype into DAS's float audio.

    ``float = (sample - offset) / divisor``, as DAS's wav loader (``librosa.load``, through
    libsndfile) computes it: int16 ``(0, 32768)``, int32 ``(0, 2**31)`` (scipy returns 24-bit
    PCM left-justified in int32, so it gets the same), uint8 ``(128, 128)`` (8-bit wav is
    unsigned, centred on 128), int64 ``(0, 2**63)`` (DAS cannot read 64-bit PCM at all);
    float ``(0, 1)``: float wav is read unchanged.

    Raises
    ------
    ValueError
        A dtype that a wav file cannot hold (int8, uint16, bool, complex, ...).
    """
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return 0.0, 1.0
    if dt == np.dtype("uint8"):
        return 128.0, 128.0
    if dt.kind == "i" and dt.itemsize in (2, 4, 8):
        return 0.0, float(2 ** (8 * dt.itemsize - 1))
    raise ValueError(
        f"no wav sample scale for dtype {dt}; wav samples are uint8, int16, int32, int64 "
        f"or float"
    )


def scale_pcm(data: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """wav samples as DAS's loader returns them: integer PCM to floats in [-1, 1).

    Parameters
    ----------
    data : numpy.ndarray
        Samples of a wav file (uint8, int16, int32, int64 or float); see :func:`pcm_scale`.
    dtype : dtype, default float32
        Float type of the result. float32 gives DAS's numbers exactly (it reads float32).
        Float input is only cast.

    Returns
    -------
    numpy.ndarray
        ``(data - offset) / divisor`` in ``dtype``. float32 rounds int32 values near full
        scale up to 1.0, as DAS's float32 audio does.
    """
    out_dtype = np.dtype(dtype)
    if out_dtype.kind != "f":
        raise ValueError(f"scale_pcm: dtype must be a float dtype, found {out_dtype}")
    offset, divisor = pcm_scale(data.dtype)
    if data.dtype.kind == "f":
        return np.asarray(data).astype(out_dtype, copy=False)
    # int16 and uint8 are exact in float32; for wider integers DAS rounds each sample to
    # float32 and then scales by a power of two, which float32 arithmetic here repeats
    work = np.float64 if out_dtype.itemsize > 4 else np.float32
    out = np.asarray(data).astype(work)
    if offset:
        out -= work(offset)
    out *= work(1.0 / divisor)  # a power of two: exact
    return out.astype(out_dtype, copy=False)


def load_audio(
    path: str | os.PathLike, *, mmap: bool = False, scale: bool = False
) -> tuple[np.ndarray, float]:
    """Read a DAS audio file.

    Parameters
    ----------
    path : str or path-like
        ``.npz`` with the keys ``data`` ([samples, channels] or [samples]) and ``samplerate``
        (a scalar or a one-element array), or ``.wav`` (any PCM width or float that
        scipy.io.wavfile reads; 24-bit PCM comes back as int32, as scipy returns it).
    mmap : bool, default False
        For wav files, memory-map the samples instead of reading them (scipy's ``mmap``;
        not possible for 24-bit PCM, which is then read normally). Ignored for ``.npz``
        and with ``scale=True`` (scaling makes a new array).
    scale : bool, default False
        ``False``: the samples as stored (int16 wav gives int16 values up to 32767).
        ``True``: integer PCM wav as DAS reads it, float32 in [-1, 1) (see
        :func:`pcm_scale`): what a DAS model sees at prediction time. Float wav and ``.npz``
        data are returned unchanged either way, as DAS reads them.

    Returns
    -------
    data : numpy.ndarray
        ``[samples, channels]``; mono files become ``[samples, 1]``. The file's own dtype,
        or float32 for integer wav with ``scale=True``.
    samplerate : float
        Sample rate in Hz.

    Raises
    ------
    DASFormatError
        The file is unreadable, lacks a key, has the wrong number of dimensions or a bad
        sample rate. The message names the file and what was expected.
    FileNotFoundError
        The file does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: audio file not found")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path)
    if suffix == ".wav":
        data, rate = _load_wav(path, mmap=mmap and not scale)
        if scale and data.dtype.kind != "f":
            data = scale_pcm(data)
        return data, rate
    raise DASFormatError(
        f"{path}: unsupported audio file type {path.suffix!r}; expected one of {AUDIO_SUFFIXES}"
    )


def _load_npz(path: Path) -> tuple[np.ndarray, float]:
    try:
        # allow_pickle=False: an audio export holds plain arrays, never objects
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DASFormatError(
                f"{path}: expected an npz archive with keys 'data' and 'samplerate', "
                f"found a single {type(loaded).__name__} (a .npy file renamed to .npz?)"
            )
        with loaded as npz:
            keys = set(npz.files)
            missing = [k for k in ("data", "samplerate") if k not in keys]
            if missing:
                raise DASFormatError(
                    f"{path}: missing key(s) {missing} in npz audio file; expected keys "
                    f"'data' [samples, channels] and 'samplerate', found {sorted(keys)}"
                )
            data = npz["data"]
            samplerate = npz["samplerate"]
    except DASFormatError:
        raise
    except (
        ValueError,
        OSError,
        EOFError,
        KeyError,
        zipfile.BadZipFile,
        SyntaxError,  # numpy's header parser on a broken member header ...
        tokenize.TokenError,  # ... raises these two as they come from Python's tokenizer
        NotImplementedError,  # zipfile: a newer zip version or an unknown compression method
        zlib.error,  # a corrupt deflated member (np.savez_compressed)
    ) as exc:
        # ValueError also covers an object array that would need pickle to load
        raise DASFormatError(f"{path}: not a readable npz audio file ({exc})") from exc
    if data.dtype.kind not in "biuf":
        raise DASFormatError(
            f"{path}: 'data' must hold numbers (int, uint, float or bool), found dtype {data.dtype}"
        )
    return _as_2d(data, path, "'data'"), _check_samplerate(samplerate, path)


def _load_wav(path: Path, *, mmap: bool) -> tuple[np.ndarray, float]:
    wavfile = require("scipy.io.wavfile", "reading wav audio")
    # Before scipy: it allocates what the data chunk declares, so a tiny file claiming
    # gigabytes would cost that much memory before failing.
    _check_wav_complete(path)
    try:
        with warnings.catch_warnings():
            # unknown chunks (LIST, ...) are common in wavs from recorders and harmless
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            try:
                samplerate, data = wavfile.read(path, mmap=mmap)
            except ValueError:
                if not mmap:
                    raise
                samplerate, data = wavfile.read(path, mmap=False)  # e.g. 24-bit cannot be mmapped
    except MemoryError:
        raise
    except Exception as exc:
        # scipy reports broken files as ValueError, struct.error, EOFError and even
        # UnboundLocalError (no fmt chunk); all of them mean the same to the caller
        raise DASFormatError(
            f"{path}: unreadable wav file ({exc}); expected RIFF/WAVE with PCM (8/16/24/32/64 bit) "
            f"or IEEE float samples"
        ) from exc
    return _as_2d(data, path, "wav data"), _check_samplerate(samplerate, path)


def _check_wav_complete(path: Path) -> None:
    """Raise if the data chunk, or any chunk before it, declares more bytes than the file holds.

    scipy silently returns the samples that are there when a wav is cut short (an interrupted
    copy or recording); a training set built from it would be missing data without notice.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return  # RF64 and friends: scipy has already validated what it could
        order = "<" if head[:4] == b"RIFF" else ">"
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack(order + "4sI", f.read(8))
            available = size - pos - 8
            if chunk_size > available:
                # scipy reads every chunk it knows (fmt, data, ...) with one read of the
                # declared size: refuse before it allocates that much
                what = "data" if chunk_id == b"data" else repr(chunk_id.decode("latin-1"))
                raise DASFormatError(
                    f"{path}: unreadable wav file (truncated or corrupt): the {what} chunk "
                    f"declares {chunk_size} bytes but the file holds {available} after its header"
                )
            if chunk_id == b"data":
                return
            pos += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes


def wav_range(dtype: Any) -> tuple[float, float]:
    """The range of values a wav file of sample type ``dtype`` holds without clipping.

    Integer PCM: the integer type's range (8-bit PCM is unsigned). Float: -1.0..+1.0, the wav
    convention (scipy writes larger floats, but players and converters clip them).
    """
    dt = np.dtype(dtype)
    if dt not in _WAV_DTYPES:
        raise DASFormatError(
            f"wav cannot hold samples of dtype {dt}; use one of {[str(t) for t in _WAV_DTYPES]}"
        )
    if dt.kind == "f":
        return -1.0, 1.0
    info = np.iinfo(dt)
    return int(info.min), int(info.max)


def _fit_to_wav(
    data: np.ndarray, target: np.dtype, path: Path, *, clip: bool, rescale: bool
) -> np.ndarray:
    lo, hi = wav_range(target)
    if data.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise DASFormatError(
                f"{path}: {bad} sample(s) are NaN or infinite; wav cannot store them"
            )
    values = data
    if target.kind in "iu" and data.dtype.kind == "f":
        values = np.rint(data)  # integers store the rounded value, so check the rounded value
    if data.size:
        vmin, vmax = values.min(), values.max()
    else:
        vmin = vmax = 0
    out_of_range = data.size and (vmin < lo or vmax > hi)
    if out_of_range:
        if rescale:
            # one factor for the whole recording, about the type's centre (128 for uint8)
            centre = (lo + hi + 1) // 2 if target.kind == "u" else 0.0
            half = min(hi - centre, centre - lo) if target.kind != "u" else hi - centre
            peak = float(np.max(np.abs(data.astype(np.float64) - centre)))
            scaled = centre + (data.astype(np.float64) - centre) * (half / peak)
            values = np.rint(scaled) if target.kind in "iu" else scaled
            values = np.clip(values, lo, hi)  # rounding may touch the edge by one unit
        elif clip:
            values = np.clip(values, lo, hi)
        else:
            n = int(np.count_nonzero((values < lo) | (values > hi)))
            raise DASFormatError(
                f"{path}: {n} of {data.size} sample value(s) lie outside the range "
                f"[{lo}, {hi}] of {target} wav samples (found min {vmin}, max {vmax}); "
                f"pass clip=True to clip them, rescale=True to scale the recording into range, "
                f"or choose another dtype"
            )
    return np.ascontiguousarray(values.astype(target, copy=False))


def save_audio(
    path: str | os.PathLike,
    data: Any,
    samplerate: float,
    *,
    clip: bool = False,
    rescale: bool = False,
    dtype: Any = None,
) -> Path:
    """Write audio as ``.npz`` (DAS export layout) or ``.wav``.

    Parameters
    ----------
    path : str or path-like
        Target file; the suffix (``.npz`` or ``.wav``) picks the format. Written atomically.
    data : array_like
        ``[samples, channels]`` or ``[samples]`` (mono).
    samplerate : float
        Sample rate in Hz; must be a positive integer for wav (the header stores an integer).
    clip : bool, default False
        wav only: clip values outside the target type's range instead of raising.
    rescale : bool, default False
        wav only: if any value is out of range, scale the whole recording by one factor so
        that its peak sits at the edge of the range (about 128 for unsigned 8-bit). Data that
        is already in range is written unchanged.
    dtype : dtype, optional
        Sample type to store. Default: the data's own dtype (for wav it must be one of
        uint8, int16, int32, int64, float32, float64).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    DASFormatError
        Values out of range for a wav (the message counts them and gives the range), NaN or
        infinite values in a wav, bad shape, bad sample rate or unsupported suffix.
    """
    path = Path(path)
    if clip and rescale:
        raise ValueError("save_audio: pass at most one of clip=True and rescale=True")
    arr = _as_2d(np.asarray(data), path, "data")
    if arr.dtype.kind not in "biuf":
        raise DASFormatError(f"{path}: audio data must be numeric, found dtype {arr.dtype}")
    rate = _check_samplerate(samplerate, path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        if dtype is not None:
            arr = arr.astype(dtype)

        # a file object (not a name) also stops numpy from appending ".npz"
        atomic_write(
            path, lambda fp: np.savez(fp, data=arr, samplerate=np.array([rate], dtype=np.float64))
        )
        return path
    if suffix == ".wav":
        wavfile = require("scipy.io.wavfile", "writing wav audio")
        if rate != int(rate):
            raise DASFormatError(
                f"{path}: wav stores the sample rate as an integer number of Hz; found {rate!r}"
            )
        target = np.dtype(dtype) if dtype is not None else arr.dtype
        if target == np.dtype(bool):
            target = np.dtype("uint8")
        values = _fit_to_wav(arr, target, path, clip=clip, rescale=rescale)
        atomic_write(path, lambda fp: wavfile.write(fp, int(rate), values))
        return path
    raise DASFormatError(
        f"{path}: unsupported audio file type {path.suffix!r}; expected one of {AUDIO_SUFFIXES}"
    )
