"""Synthetic fly-song-like recordings with exact annotations, for tests, demos and benchmarks.

Each recording is background noise with bouts of the two song modes of *Drosophila*
courtship song:

- **pulse song**: trains of 4-12 short Gabor pulses (a 220-300 Hz carrier under a Gaussian of
  1.5 ms standard deviation) about 40 ms apart, annotated as events (start == stop) at the
  pulse centres;
- **sine song**: 140-160 Hz tones of 0.2-0.8 s with 10 ms cosine ramps, annotated as segments
  from their first to their last sample.

Bouts alternate between the modes with random pauses. Times in the annotations are exact
sample positions ``k / samplerate``. Everything is drawn from ``numpy.random.default_rng``
seeded with ``(seed, recording index)``, so the same arguments give the same files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .annotations import Annotations, write_annotations
from .audio import save_audio
from .definitions import write_definitions

__all__ = ["DEFINITIONS", "make_recording", "make_recordings"]

#: Song types of the synthetic recordings and their categories.
DEFINITIONS = {"pulse": "event", "sine": "segment"}

_NOISE_STD = 0.02
_PULSE_STD_SECONDS = 0.0015
_IPI_SECONDS = 0.040
_RAMP_SECONDS = 0.010


def make_recording(
    seconds: float = 10.0,
    samplerate: float = 10_000,
    channels: int = 1,
    seed: int | tuple[int, ...] = 0,
) -> tuple[np.ndarray, Annotations]:
    """Synthesise one recording in memory.

    Returns
    -------
    data : numpy.ndarray
        ``[samples, channels]`` float32, ``samples = round(seconds * samplerate)``.
    annotations : Annotations
        Pulse events and sine segments; a type without annotations (a very short recording)
        keeps a special row, as DAS writes it.
    """
    if seconds <= 0 or samplerate <= 0 or channels < 1:
        raise ValueError(
            f"need seconds > 0, samplerate > 0 and channels >= 1; "
            f"found {seconds}, {samplerate}, {channels}"
        )
    rng = np.random.default_rng(seed)
    n = int(round(seconds * samplerate))
    song = np.zeros(n, dtype=np.float64)
    rows: list[tuple[str, float, float]] = []
    # keep bouts away from the end so every pulse and sine fits completely
    margin = int(0.1 * samplerate)
    t = int(rng.uniform(0.05, 0.3) * samplerate)
    mode = "pulse" if rng.random() < 0.5 else "sine"
    while True:
        if mode == "pulse":
            t = _pulse_train(song, rows, rng, t, samplerate, n - margin)
        else:
            t = _sine_bout(song, rows, rng, t, samplerate, n - margin)
        if t < 0:
            break
        mode = "sine" if mode == "pulse" else "pulse"
        t += int(rng.uniform(0.15, 0.6) * samplerate)
    gains = rng.uniform(0.5, 1.0, size=channels)
    data = song[:, None] * gains[None, :] + rng.normal(0.0, _NOISE_STD, size=(n, channels))
    ann = Annotations.from_rows(rows)
    present = set(ann.types)
    for name, cat in DEFINITIONS.items():
        if name not in present:
            ann = ann.with_empty_type(name, cat)
    return data.astype(np.float32), ann


def _pulse_train(song, rows, rng, t: int, sr: float, end: int) -> int:
    std = _PULSE_STD_SECONDS * sr
    radius = int(math.ceil(4 * std))
    offsets = np.arange(-radius, radius + 1)
    c = t + radius
    n_pulses = int(rng.integers(4, 13))
    last = -1
    for _ in range(n_pulses):
        if c + radius >= end:
            break
        freq = rng.uniform(220, 300)
        amp = rng.uniform(0.3, 0.6) * (1 if rng.random() < 0.5 else -1)
        song[c - radius : c + radius + 1] += (
            amp * np.exp(-0.5 * (offsets / std) ** 2) * np.cos(2 * np.pi * freq * offsets / sr)
        )
        rows.append(("pulse", c / sr, c / sr))
        last = c
        c += int(round(rng.normal(_IPI_SECONDS, 0.002) * sr))
    return last + radius + 1 if last >= 0 else -1


def _sine_bout(song, rows, rng, t: int, sr: float, end: int) -> int:
    length = int(rng.uniform(0.2, 0.8) * sr)
    if t + length >= end:
        length = end - t - 1
        if length < int(0.05 * sr):
            return -1
    freq = rng.uniform(140, 160)
    amp = rng.uniform(0.1, 0.2)
    i = np.arange(length)
    ramp = max(1, int(_RAMP_SECONDS * sr))
    env = np.ones(length)
    r = min(ramp, length // 2)
    env[:r] = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
    env[length - r :] = env[:r][::-1]
    song[t : t + length] += (
        amp * env * np.sin(2 * np.pi * freq * i / sr + rng.uniform(0, 2 * np.pi))
    )
    rows.append(("sine", t / sr, (t + length - 1) / sr))
    return t + length


def make_recordings(
    folder: str | os.PathLike,
    n_recordings: int = 4,
    seconds: float = 10.0,
    samplerate: float = 10_000,
    channels: int = 1,
    seed: int = 0,
    *,
    audio_format: str = "npz",
) -> list[tuple[Path, Path]]:
    """Write synthetic annotated recordings, as DAS's GUI exports them.

    For ``i`` in ``range(n_recordings)`` writes ``rec{i:03d}.npz`` (or ``.wav``, float32),
    ``rec{i:03d}_annotations.csv`` and ``rec{i:03d}_definitions.csv`` into ``folder``
    (created if needed).

    Parameters
    ----------
    folder : str or path-like
    n_recordings : int, default 4
    seconds : float, default 10.0
        Duration of each recording.
    samplerate : float, default 10000
    channels : int, default 1
        The song is on every channel with a random gain, the noise independent per channel.
    seed : int, default 0
        Recording ``i`` is drawn from ``default_rng((seed, i))``.
    audio_format : {"npz", "wav"}

    Returns
    -------
    list of (pathlib.Path, pathlib.Path)
        ``(audio, annotations)`` per recording, ready for :func:`npydir.das.make_dataset`.
    """
    if audio_format not in ("npz", "wav"):
        raise ValueError(f"audio_format must be 'npz' or 'wav', found {audio_format!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(int(n_recordings)):
        data, ann = make_recording(seconds, samplerate, channels, seed=(int(seed), i))
        stem = folder / f"rec{i:03d}"
        audio = stem.with_name(stem.name + f".{audio_format}")
        save_audio(audio, data, samplerate)  # peaks stay well inside -1..1, so wav never clips
        annotations = write_annotations(stem.with_name(stem.name + "_annotations.csv"), ann)
        write_definitions(stem.with_name(stem.name + "_definitions.csv"), DEFINITIONS)
        out.append((audio, annotations))
    return out
