"""npydir's training targets against DAS 0.33.2's own functions.

DAS's dataset maker builds ``y`` as ``make_annotation_matrix``, then ``blur_events`` on every
event class when ``event_std_seconds > 0``, then ``normalize_probabilities``; npydir's
defaults must give the same numbers, and the documented differences must have the size
docs/das.md gives them.
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
pd = pytest.importorskip("pandas")
dsm = pytest.importorskip("das.make_dataset")

from npydir.das import (  # noqa: E402
    Annotations,
    class_activations,
    make_targets,
    single_class_targets,
)

NAMES = ["noise", "pulse", "sine", "click"]
TYPES = ["segment", "event", "segment", "event"]
ATOL = 1e-6


def das_targets(rows, nb_samples, samplerate, names, types, event_std_seconds):
    """``y`` as DAS's dataset maker composes DAS's functions (float64, before its float16 store)."""
    df = pd.DataFrame(rows, columns=["name", "start_seconds", "stop_seconds"]).dropna()
    y = dsm.make_annotation_matrix(df, nb_samples, samplerate, list(names))
    if event_std_seconds:
        for k, kind in enumerate(types):
            if kind == "event":
                y[:, k] = dsm.blur_events(y[:, k], event_std_seconds, samplerate)
    return dsm.normalize_probabilities(y)


def assert_default_equals_das(rows, nb_samples, samplerate, event_std_seconds):
    expected = das_targets(rows, nb_samples, samplerate, NAMES, TYPES, event_std_seconds)
    got = make_targets(
        Annotations.from_rows(rows), nb_samples, samplerate, NAMES, TYPES,
        event_std_seconds=event_std_seconds, dtype=np.float64,
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def recording(seed, samplerate, seconds, n_events=40, n_segments=6, on_samples=False):
    rng = np.random.default_rng(seed)
    n = int(round(seconds * samplerate))
    rows = []
    for name in ("pulse", "click"):
        if on_samples:  # k / sr, the times DAS itself writes for predicted events
            t = rng.integers(0, n, n_events) / samplerate
        else:
            t = rng.uniform(0, seconds, n_events)
        rows += [(name, float(x), float(x)) for x in t]
    starts = rng.uniform(0, seconds * 0.9, n_segments)
    rows += [("sine", float(a), float(a + rng.uniform(0.001, 0.1))) for a in starts]
    return n, rows


@pytest.mark.parametrize("samplerate", [1000, 8000, 10_000, 22_050, 44_100, 250_000])
@pytest.mark.parametrize("event_std_seconds", [0.0005, 0.0016, 0.0023, 0.01])
@pytest.mark.parametrize("on_samples", [False, True])
def test_default_targets_equal_das(samplerate, event_std_seconds, on_samples):
    if event_std_seconds * samplerate * 8 < 1:
        pytest.skip("DAS's blur_events has no taps here (it raises); npydir refuses too")
    seconds = min(1.0, 200_000 / samplerate)
    n, rows = recording(samplerate, samplerate, seconds, on_samples=on_samples)
    assert_default_equals_das(rows, n, samplerate, event_std_seconds)


def test_taps_below_one_are_refused_like_das():
    # int(8 * 0.1) = 0 taps: DAS fails inside numpy, npydir says why
    rows = [("pulse", 0.005, 0.005)]
    with pytest.raises(ValueError):
        das_targets(rows, 20, 1000, ["noise", "pulse"], ["segment", "event"], 0.0001)
    with pytest.raises(ValueError, match="taps"):
        make_targets(
            Annotations.from_rows(rows), 20, 1000, ["noise", "pulse"], ["segment", "event"],
            event_std_seconds=0.0001,
        )


@pytest.mark.parametrize("event_std_seconds", [0.0005, 0.0016])
@pytest.mark.parametrize("samplerate", [10_000, 44_100])
def test_events_at_the_edges_and_outside_the_recording(event_std_seconds, samplerate):
    n = 2000
    edge = [0, 1, 2, 5, n // 2, n - 3, n - 2, n - 1, n, n + 1, n + 40]
    rows = [("pulse", k / samplerate, k / samplerate) for k in edge]
    rows += [("sine", 0.0, 3 / samplerate), ("sine", (n - 5) / samplerate, (n + 10) / samplerate)]
    assert_default_equals_das(rows, n, samplerate, event_std_seconds)


@pytest.mark.parametrize("event_std_seconds", [0.0005, 0.0016])
def test_event_rows_with_a_duration_are_blurred_over_it_like_das(event_std_seconds):
    # an "event" class annotated with start < stop: DAS blurs the whole start..stop run
    sr = 10_000
    rows = [("pulse", 0.01, 0.03), ("pulse", 0.05, 0.05), ("click", 0.02, 0.021)]
    rows += [("click", t, t + 0.004) for t in np.arange(0.06, 0.9, 0.005)]  # dense: FFT path
    n = 10_000
    assert_default_equals_das(rows, n, sr, event_std_seconds)


@pytest.mark.parametrize("event_std_seconds", [0.0005, 0.0016])
@pytest.mark.parametrize("cuts", [(1,), (137, 5000), (4999, 5000, 5001, 9000)])
def test_blocks_of_a_recording_equal_das_on_the_whole(event_std_seconds, cuts):
    # make_dataset's block-by-block y (and its train | val | test split points) against DAS's
    # y of the whole recording, cut afterwards as DAS's dataset maker cuts it
    sr = 10_000
    n, rows = recording(7, sr, 1.0, on_samples=True)
    expected = das_targets(rows, n, sr, NAMES, TYPES, event_std_seconds)
    edges = [0, *cuts, n]
    ann = Annotations.from_rows(rows)
    parts = [
        make_targets(
            ann, b - a, sr, NAMES, TYPES, event_std_seconds=event_std_seconds,
            first_sample=a, recording_samples=n, dtype=np.float64,
        )
        for a, b in zip(edges, edges[1:])
    ]
    np.testing.assert_allclose(np.concatenate(parts), expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("samplerate", [8000, 10_000, 44_100])
def test_segments_and_single_samples_without_blur_equal_das(samplerate):
    # DAS without blurring (event_std_seconds=0): every event is its one sample; in npydir a
    # one-sample box; segments include start and stop sample in both
    n, rows = recording(3, samplerate, 1.0, on_samples=True)
    expected = das_targets(rows, n, samplerate, NAMES, TYPES, 0)
    got = make_targets(
        Annotations.from_rows(rows), n, samplerate, NAMES, TYPES,
        event_width_seconds=1 / samplerate, dtype=np.float64,
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_single_class_targets_equal_das_where_classes_do_not_overlap():
    # DAS normalises y in place first, then y[:, [0, k]] again: a class's y_<name> is diluted
    # where other classes overlap it. npydir's is not; without overlap they are equal.
    sr = 10_000
    rows = [("pulse", t, t) for t in (0.01, 0.02, 0.0205)] + [("sine", 0.05, 0.08)]
    names, types = NAMES[:3], TYPES[:3]
    y = das_targets(rows, 1000, sr, names, types, 0.0016)
    a = class_activations(Annotations.from_rows(rows), 1000, sr, names, types,
                          event_std_seconds=0.0016)
    singles = single_class_targets(a, names, types, dtype=np.float64)
    for k, name in enumerate(names[1:], start=1):
        expected = dsm.normalize_probabilities(y[:, [0, k]])
        np.testing.assert_allclose(singles[name][0], expected, rtol=0, atol=ATOL)


# --- the documented differences, with the size docs/das.md quotes ---------------------------


def _isolated_pulses(sr, std):
    spacing = int(16 * std * sr) + 10  # far enough apart that no two Gaussians touch
    times = [(k * spacing + 7) / sr for k in range(1, 40)]
    return (40 + 1) * spacing, [("pulse", t, t) for t in times]


@pytest.mark.parametrize(
    "samplerate, event_std_seconds, bound",
    [(10_000, 0.0005, 0.062), (10_000, 0.0016, 0.020), (44_100, 0.0016, 0.0045)],
)
def test_symmetric_kernel_differs_by_the_documented_amount(samplerate, event_std_seconds, bound):
    # even tap count: DAS's peak sits half a sample late; the symmetric kernel peaks on the sample
    n, rows = _isolated_pulses(samplerate, event_std_seconds)
    names, types = NAMES[:2], TYPES[:2]
    expected = das_targets(rows, n, samplerate, names, types, event_std_seconds)
    got = make_targets(
        Annotations.from_rows(rows), n, samplerate, names, types,
        event_std_seconds=event_std_seconds, event_kernel="symmetric", dtype=np.float64,
    )
    diff = np.abs(got - expected).max()
    assert 0.5 * bound < diff <= bound


def test_sample_tolerance_moves_some_times_by_one_sample():
    # k / sr lands on k - 1 in DAS (int(t * sr)) for about 6 % of k at 10 kHz; the default
    # does the same, sample_tolerance=1e-6 puts them on k: one-sample segments one sample apart
    sr = 10_000
    ks = np.arange(1, 30_000, 3)
    rows = [("sine", k / sr, k / sr) for k in ks]
    n = 30_001
    df = pd.DataFrame(rows, columns=["name", "start_seconds", "stop_seconds"])
    expected = dsm.make_annotation_matrix(df, n, sr, ["noise", "sine"])[:, 1]
    names, types = ["noise", "sine"], ["segment", "segment"]
    ann = Annotations.from_rows(rows)
    np.testing.assert_array_equal(class_activations(ann, n, sr, names, types)[:, 0], expected)
    tolerant = class_activations(ann, n, sr, names, types, sample_tolerance=1e-6)[:, 0]
    assert np.flatnonzero(tolerant).tolist() == ks.tolist()
    shifted = np.count_nonzero(tolerant != expected) // 2
    assert 0.03 < shifted / len(ks) < 0.1


def test_single_class_targets_are_not_diluted_where_das_dilutes_them():
    # a pulse at the centre of a sine segment: DAS's y_sine there is 1 / (1 + pulse) ~ 0.5
    sr = 10_000
    rows = [("pulse", 0.05, 0.05), ("sine", 0.04, 0.06)]
    names, types = NAMES[:3], TYPES[:3]
    y = das_targets(rows, 1000, sr, names, types, 0.0016)
    a = class_activations(Annotations.from_rows(rows), 1000, sr, names, types,
                          event_std_seconds=0.0016)
    singles = single_class_targets(a, names, types, dtype=np.float64)
    diff = max(
        np.abs(singles[name][0] - dsm.normalize_probabilities(y[:, [0, k]])).max()
        for k, name in enumerate(names[1:], start=1)
    )
    assert 0.49 < diff <= 0.5
    assert np.all(singles["sine"][0][400:601, 1] == 1)


def test_das_store_holds_y_as_float16():
    zarr = pytest.importorskip("zarr")
    root = dsm.init_store(
        nb_channels=1, nb_classes=2, store=zarr.MemoryStore(), samplerate=10_000.0,
        class_names=["noise", "pulse"], class_types=["segment", "event"],
    )
    assert root["train"]["y"].dtype == np.float16 and root["train"]["x"].dtype == np.float16
    # the size of that rounding on DAS's own targets at the 1.6 ms default
    n, rows = recording(1, 10_000, 1.0)
    y = das_targets(rows, n, 10_000, NAMES, TYPES, 0.0016)
    assert np.abs(y.astype(np.float16).astype(np.float64) - y).max() <= 2.5e-4


def test_negative_times_wrap_in_das_and_are_dropped_by_npydir():
    # DAS indexes its matrix with int(t * sr): a time before -1 sample lands at the end
    sr = 1000
    rows = [("sine", -0.010, -0.005), ("pulse", -0.003, -0.003)]
    names, types = NAMES[:3], TYPES[:3]
    y = das_targets(rows, 100, sr, names, types, 0)
    assert y[90:96, 2].tolist() == [1.0] * 6 and y[97, 1] == 1.0
    ours = make_targets(Annotations.from_rows(rows), 100, sr, names, types,
                        event_width_seconds=1 / sr, dtype=np.float64)
    assert np.all(ours[:, 0] == 1)


def test_segment_gaps_differ_from_das_only_near_segment_boundaries():
    # DAS's make_gaps (as its dataset maker calls it) also cuts between different classes and
    # places gaps differently; npydir's gaps separate segments of one class only
    sr, gap = 1000, 0.004
    rows = [("sine", 0.010, 0.019), ("sine", 0.020, 0.030), ("sine", 0.040, 0.050),
            ("other", 0.051, 0.060), ("sine", 0.070, 0.090)]
    names, types = ["noise", "sine", "other"], ["segment"] * 3
    df = pd.DataFrame(rows, columns=["name", "start_seconds", "stop_seconds"])
    y = dsm.make_annotation_matrix(df, 120, sr, names)
    y[:, :] = dsm.make_gaps(y, gap_seconds=gap, samplerate=sr,
                            start_seconds=df["start_seconds"], stop_seconds=df["start_seconds"])
    y = dsm.normalize_probabilities(y)
    ours = make_targets(Annotations.from_rows(rows), 120, sr, names, types,
                        segment_gap_seconds=gap, dtype=np.float64)
    differ = np.flatnonzero(np.abs(ours - y).max(axis=1) > 0)
    assert len(differ)
    bounds = np.array([int(t * sr) for _, a, b in rows for t in (a, b)])
    assert np.abs(differ[:, None] - bounds[None, :]).min(axis=1).max() <= 2 * gap * sr
