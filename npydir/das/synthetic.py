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
:func:`recording_blocks` renders one recording block by block, for sizes that do not fit in
memory (the benchmark's synthetic dataset); its blocks are exactly :func:`make_recording`'s
samples.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path

import numpy as np

from .annotations import Annotations, write_annotations
from .audio import save_audio
from .definitions import write_definitions

__all__ = ["DEFINITIONS", "make_recording", "make_recordings", "recording_blocks"]

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
    song = _Song(int(round(seconds * samplerate)), samplerate, channels, seed)
    blocks = list(song.blocks(max(1, song.samples)))
    data = blocks[0] if blocks else np.zeros((0, channels), dtype=np.float32)
    return data, song.annotations()


def recording_blocks(
    samples: int,
    samplerate: float = 10_000,
    channels: int = 1,
    seed: int | tuple[int, ...] = 0,
    *,
    block_samples: int = 1 << 20,
) -> Iterator[np.ndarray]:
    """The samples of a synthetic recording block by block, for recordings too large to hold.

    Concatenated, the blocks are exactly the data :func:`make_recording` returns for the same
    ``samplerate``, ``channels`` and ``seed`` and ``seconds = samples / samplerate``, whatever
    ``block_samples`` is; one block at a time is in memory.

    Parameters
    ----------
    samples : int
        Rows of the recording.
    samplerate, channels, seed
        As for :func:`make_recording`.
    block_samples : int, default 1048576
        Rows per block; the last block holds the rest.

    Yields
    ------
    numpy.ndarray
        ``[rows, channels]`` float32 blocks, in order.
    """
    if samples < 1 or samplerate <= 0 or channels < 1 or block_samples < 1:
        raise ValueError(
            f"need samples >= 1, samplerate > 0, channels >= 1 and block_samples >= 1; "
            f"found {samples}, {samplerate}, {channels}, {block_samples}"
        )
    return _Song(int(samples), samplerate, channels, seed).blocks(int(block_samples))


class _Song:
    """One recording's plan: where each pulse and sine bout lies, the channel gains, and the
    generator the noise comes from after them.  The samples are rendered from the plan block
    by block, so a recording of any length needs one block of memory."""

    def __init__(self, samples: int, samplerate: float, channels: int, seed) -> None:
        rng = np.random.default_rng(seed)
        self.samples, self.samplerate = samples, samplerate
        self.radius = int(math.ceil(4 * _PULSE_STD_SECONDS * samplerate))  # 4 std each side
        # (first sample, length, kind, amplitude, frequency, phase), in time order
        self.events: list[tuple[int, int, str, float, float, float]] = []
        self.rows: list[tuple[str, float, float]] = []
        # keep bouts away from the end so every pulse and sine fits completely
        end = samples - int(0.1 * samplerate)
        t = int(rng.uniform(0.05, 0.3) * samplerate)
        mode = "pulse" if rng.random() < 0.5 else "sine"
        while True:
            if mode == "pulse":
                t = self._pulse_train(rng, t, end)
            else:
                t = self._sine_bout(rng, t, end)
            if t < 0:
                break
            mode = "sine" if mode == "pulse" else "pulse"
            t += int(rng.uniform(0.15, 0.6) * samplerate)
        self.gains = rng.uniform(0.5, 1.0, size=channels)
        self.noise = rng  # the rest of the stream, drawn in sample order by blocks()
        self.starts = [ev[0] for ev in self.events]
        # running maximum of the ends: every event before the first one past a block's
        # start ends before the block
        self.ends = list(accumulate((ev[0] + ev[1] for ev in self.events), max))

    def _pulse_train(self, rng: np.random.Generator, t: int, end: int) -> int:
        sr, radius = self.samplerate, self.radius
        c = t + radius
        n_pulses = int(rng.integers(4, 13))
        last = -1
        for _ in range(n_pulses):
            if c + radius >= end:
                break
            freq = rng.uniform(220, 300)
            amp = rng.uniform(0.3, 0.6) * (1 if rng.random() < 0.5 else -1)
            self.events.append((c - radius, 2 * radius + 1, "pulse", amp, freq, 0.0))
            self.rows.append(("pulse", c / sr, c / sr))
            last = c
            c += int(round(rng.normal(_IPI_SECONDS, 0.002) * sr))
        return last + radius + 1 if last >= 0 else -1

    def _sine_bout(self, rng: np.random.Generator, t: int, end: int) -> int:
        sr = self.samplerate
        length = int(rng.uniform(0.2, 0.8) * sr)
        if t + length >= end:
            length = end - t - 1
            if length < int(0.05 * sr):
                return -1
        freq = rng.uniform(140, 160)
        amp = rng.uniform(0.1, 0.2)
        phase = rng.uniform(0, 2 * np.pi)
        self.events.append((t, length, "sine", amp, freq, phase))
        self.rows.append(("sine", t / sr, (t + length - 1) / sr))
        return t + length

    def _wave(self, event: tuple[int, int, str, float, float, float]) -> np.ndarray:
        """An event's samples from its first one: a Gabor pulse or a ramped sine."""
        _, length, kind, amp, freq, phase = event
        sr = self.samplerate
        if kind == "pulse":
            std = _PULSE_STD_SECONDS * sr
            offsets = np.arange(-self.radius, self.radius + 1)
            return amp * np.exp(-0.5 * (offsets / std) ** 2) * np.cos(2 * np.pi * freq * offsets / sr)
        i = np.arange(length)
        ramp = max(1, int(_RAMP_SECONDS * sr))
        env = np.ones(length)
        r = min(ramp, length // 2)
        env[:r] = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
        env[length - r :] = env[:r][::-1]
        return amp * env * np.sin(2 * np.pi * freq * i / sr + phase)

    def annotations(self) -> Annotations:
        ann = Annotations.from_rows(self.rows)
        present = set(ann.types)
        for name, cat in DEFINITIONS.items():
            if name not in present:
                ann = ann.with_empty_type(name, cat)
        return ann

    def blocks(self, block_samples: int) -> Iterator[np.ndarray]:
        """Render the samples block by block (once: the noise generator is used up)."""
        for i0 in range(0, self.samples, block_samples):
            i1 = min(self.samples, i0 + block_samples)
            song = np.zeros(i1 - i0, dtype=np.float64)
            for k in range(bisect.bisect_right(self.ends, i0),
                           bisect.bisect_left(self.starts, i1)):
                a = self.starts[k]
                wave = self._wave(self.events[k])
                lo, hi = max(a, i0), min(a + len(wave), i1)
                if lo < hi:
                    song[lo - i0 : hi - i0] += wave[lo - a : hi - a]
            noise = self.noise.normal(0.0, _NOISE_STD, size=(i1 - i0, len(self.gains)))
            yield (song[:, None] * self.gains[None, :] + noise).astype(np.float32)


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
