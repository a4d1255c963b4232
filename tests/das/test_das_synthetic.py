"""npydir.das.synthetic: deterministic fly-song-like recordings matching their annotations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npydir.das import check_definitions, load_audio, read_annotations, read_definitions
from npydir.das.synthetic import (
    DEFINITIONS,
    make_recording,
    make_recordings,
    recording_blocks,
)


def test_files_and_determinism(tmp_path):
    a = make_recordings(tmp_path / "a", n_recordings=2, seconds=1.5, seed=7)
    b = make_recordings(tmp_path / "b", n_recordings=2, seconds=1.5, seed=7)
    c = make_recordings(tmp_path / "c", n_recordings=2, seconds=1.5, seed=8)
    assert [p.name for pair in a for p in pair] == [
        "rec000.npz",
        "rec000_annotations.csv",
        "rec001.npz",
        "rec001_annotations.csv",
    ]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        [f"rec00{i}{s}" for i in range(2) for s in (".npz", "_annotations.csv", "_definitions.csv")]
    )
    for (pa, qa), (pb, qb), (pc, _) in zip(a, b, c):
        np.testing.assert_array_equal(load_audio(pa)[0], load_audio(pb)[0])
        assert qa.read_bytes() == qb.read_bytes()
        assert not np.array_equal(load_audio(pa)[0], load_audio(pc)[0])
    # recordings differ from each other
    assert not np.array_equal(load_audio(a[0][0])[0], load_audio(a[1][0])[0])


@pytest.mark.parametrize("channels", [1, 3])
def test_shape_rate_and_definitions(tmp_path, channels):
    ((audio, ann_path),) = make_recordings(
        tmp_path, 1, seconds=2.0, samplerate=8000, channels=channels
    )
    data, sr = load_audio(audio)
    assert data.shape == (16000, channels) and data.dtype == np.float32 and sr == 8000.0
    ann = read_annotations(ann_path)
    defs = read_definitions(ann_path.with_name("rec000_definitions.csv"))
    assert defs == DEFINITIONS
    assert check_definitions(ann, defs).ok
    assert ann.categories() == {"pulse": "event", "sine": "segment"}


def test_annotations_match_the_song():
    sr = 10_000
    data, ann = make_recording(seconds=10.0, samplerate=sr, channels=1, seed=(0, 0))
    x = data[:, 0].astype(np.float64)
    pulses = ann.events("pulse")
    sines = ann.segments("sine")
    assert len(pulses) >= 10 and len(sines) >= 2
    song = np.zeros(len(x), bool)
    # every annotated pulse sits on a loud, short transient
    for t in pulses:
        c = round(t * sr)
        # pulse peak >= 0.3 * gain 0.5; six noise standard deviations below that
        assert np.max(np.abs(x[c - 5 : c + 6])) > 0.12
        song[c - 30 : c + 31] = True
    # inter-pulse intervals within trains are about 40 ms
    ipi = np.diff(pulses)
    assert 0.035 < np.median(ipi[ipi < 0.06]) < 0.045
    # sine song: a 140-160 Hz tone between the annotated start and stop
    for t0, t1 in sines:
        i0, i1 = round(t0 * sr), round(t1 * sr)
        seg = x[i0 : i1 + 1]
        spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
        peak = np.fft.rfftfreq(len(seg), 1 / sr)[np.argmax(spec)]
        assert 135 <= peak <= 165
        assert np.std(seg) > 3 * 0.02
        song[i0 : i1 + 1] = True
    # outside the annotated song there is only the background noise
    assert np.std(x[~song]) == pytest.approx(0.02, rel=0.1)


def test_short_recording_keeps_both_types():
    _, ann = make_recording(seconds=0.3, samplerate=10_000, seed=1)
    assert set(ann.types) == {"pulse", "sine"}
    assert ann.categories() == {"pulse": "event", "sine": "segment"}


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="channels"):
        make_recording(channels=0)
    with pytest.raises(ValueError, match="audio_format"):
        make_recordings(tmp_path, 1, audio_format="mp3")


@settings(max_examples=25, deadline=None)
@given(
    seconds=st.floats(0.01, 3.0),
    channels=st.integers(1, 3),
    seed=st.integers(0, 2**32),
    block=st.integers(1, 40_000),
)
def test_blocks_are_the_recording(seconds, channels, seed, block):
    data, _ = make_recording(seconds, 10_000, channels, seed=seed)
    blocks = list(recording_blocks(len(data), 10_000, channels, seed, block_samples=block))
    assert all(len(b) == block for b in blocks[:-1]) and 0 < len(blocks[-1]) <= block
    # bit for bit, whichever block a pulse or sine bout straddles
    np.testing.assert_array_equal(np.concatenate(blocks), data)


def test_blocks_bad_arguments():
    for kwargs in ({"samples": 0}, {"samples": 10, "block_samples": 0},
                   {"samples": 10, "channels": 0}, {"samples": 10, "samplerate": 0}):
        with pytest.raises(ValueError, match="need samples >= 1"):
            recording_blocks(**kwargs)
