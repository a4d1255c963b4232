"""npydir.das targets: small cases computed by hand, rows sum to 1, blocks equal the whole."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npydir.das import (
    Annotations,
    class_activations,
    make_targets,
    normalize_targets,
    seconds_to_samples,
    single_class_targets,
)

NAMES = ["noise", "pulse", "sine"]
TYPES = ["segment", "event", "segment"]


def test_boxes_by_hand():
    # sr 1000: pulse at 3 ms -> sample 3, width 3 samples -> 2,3,4; sine 6..8 ms -> samples 6,7,8
    ann = Annotations.from_rows([("pulse", 0.003, 0.003), ("sine", 0.006, 0.008)])
    y = make_targets(ann, 12, 1000, NAMES, TYPES, event_width_seconds=0.003)
    expected = np.zeros((12, 3), np.float32)
    expected[:, 0] = 1
    expected[[2, 3, 4]] = [0, 1, 0]
    expected[[6, 7, 8]] = [0, 0, 1]
    np.testing.assert_array_equal(y, expected)
    assert y.dtype == np.float32


def test_even_event_width_and_clipping_at_edges():
    # width 4 samples -> c-2 .. c+1; events near both ends are clipped to the window
    ann = Annotations.from_rows(
        [("pulse", 0.0, 0.0), ("pulse", 0.005, 0.005), ("pulse", 0.009, 0.009)]
    )
    y = make_targets(ann, 10, 1000, NAMES, TYPES, event_width_seconds=0.004)
    assert np.flatnonzero(y[:, 1]).tolist() == [0, 1, 3, 4, 5, 6, 7, 8, 9]


def test_overlap_is_shared_and_rows_sum_to_one():
    ann = Annotations.from_rows([("pulse", 0.005, 0.005), ("sine", 0.004, 0.006)])
    y = make_targets(ann, 10, 1000, NAMES, TYPES, event_width_seconds=0.001)
    np.testing.assert_array_equal(y[5], [0.0, 0.5, 0.5])
    np.testing.assert_array_equal(y[4], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=0, atol=1e-6)


def test_symmetric_gaussian_events():
    # std 2 ms at 1 kHz = 2 samples; cut at 4 std = 8 samples
    ann = Annotations.from_rows([("pulse", 0.020, 0.020)])
    y = make_targets(ann, 40, 1000, NAMES, TYPES, event_std_seconds=0.002, event_kernel="symmetric")
    k = np.arange(-8, 9)
    np.testing.assert_allclose(y[12:29, 1], np.exp(-0.5 * (k / 2.0) ** 2), rtol=1e-6)
    assert y[20, 1] == 1.0 and y[20, 0] == 0.0
    assert np.all(y[:12, 1] == 0) and np.all(y[29:, 1] == 0)
    np.testing.assert_allclose(y[:, 0] + y[:, 1], 1.0, rtol=1e-6)


def test_overlapping_symmetric_gaussians_take_the_maximum():
    ann = Annotations.from_rows([("pulse", 0.010, 0.010), ("pulse", 0.012, 0.012)])
    a = class_activations(
        ann, 30, 1000, NAMES, TYPES, event_std_seconds=0.002, event_kernel="symmetric"
    )
    assert a[:, 0].max() == 1.0
    assert a[11, 0] == pytest.approx(math.exp(-0.5 * 0.25))


def test_das_gaussian_even_taps_by_hand():
    # std 2 samples: int(8 * 2) = 16 taps, centre 7.5 taps in, tap 0 on sample c - 7:
    # the Gaussian peaks half a sample after the event, two taps of exp(-1/32), none of 1
    ann = Annotations.from_rows([("pulse", 0.020, 0.020)])
    a = class_activations(ann, 40, 1000, NAMES, TYPES, event_std_seconds=0.002)[:, 0]
    i = np.arange(40)
    expected = np.where((i >= 13) & (i <= 28), np.exp(-0.5 * ((i - 20.5) / 2.0) ** 2), 0.0)
    np.testing.assert_allclose(a, expected, rtol=1e-12, atol=0)
    assert a[20] == a[21] == pytest.approx(math.exp(-1 / 32))
    assert a.max() < 1


def test_das_gaussian_odd_taps_by_hand():
    # std 1.875 samples: int(15.0) = 15 taps, centre 7 taps in: peak exactly 1 on the event
    ann = Annotations.from_rows([("pulse", 0.010, 0.010)])
    a = class_activations(ann, 30, 1600, NAMES, TYPES, event_std_seconds=1.875 / 1600)[:, 0]
    c = 16  # floor(0.010 * 1600)
    i = np.arange(30)
    expected = np.where(np.abs(i - c) <= 7, np.exp(-0.5 * ((i - c) / 1.875) ** 2), 0.0)
    np.testing.assert_allclose(a, expected, rtol=1e-12, atol=0)
    assert a[c] == 1.0


def test_das_gaussians_of_one_class_add_and_rows_still_sum_to_one():
    ann = Annotations.from_rows([("pulse", 0.010, 0.010), ("pulse", 0.011, 0.011)])
    a = class_activations(ann, 30, 1000, NAMES, TYPES, event_std_seconds=0.002)[:, 0]
    one = class_activations(
        Annotations.from_rows([("pulse", 0.010, 0.010)]), 30, 1000, NAMES, TYPES,
        event_std_seconds=0.002,
    )[:, 0]
    np.testing.assert_allclose(a, one + np.roll(one, 1), rtol=1e-12)
    assert a.max() > 1
    y = make_targets(ann, 30, 1000, NAMES, TYPES, event_std_seconds=0.002)
    assert y.max() <= 1 and y[a > 1, 1].tolist() == [1.0] * int(np.sum(a > 1))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=0, atol=1e-6)


def test_das_gaussian_event_rows_with_a_duration_blur_the_whole_run():
    # an event annotated with start < stop: DAS blurs every sample from start to stop
    ann = Annotations.from_rows([("pulse", 0.010, 0.013)])
    a = class_activations(ann, 40, 1000, NAMES, TYPES, event_std_seconds=0.001)[:, 0]
    one = class_activations(
        Annotations.from_rows([("pulse", 0.010, 0.010)]), 40, 1000, NAMES, TYPES,
        event_std_seconds=0.001,
    )[:, 0]
    np.testing.assert_allclose(a, sum(np.roll(one, s) for s in range(4)), rtol=1e-12)


def test_too_few_taps_is_a_clear_error():
    ann = Annotations.from_rows([("pulse", 0.010, 0.010)])
    with pytest.raises(ValueError, match=r"int\(8 \* std\) taps.*event_kernel='symmetric'"):
        make_targets(ann, 30, 1000, NAMES, TYPES, event_std_seconds=0.0001)
    # the symmetric kernel still works there (a spike: 1 on the sample, e**-50 beside it)
    y = make_targets(
        ann, 30, 1000, NAMES, TYPES, event_std_seconds=0.0001, event_kernel="symmetric"
    )
    assert y[10, 1] == 1 and np.flatnonzero(y[:, 1] > 1e-20).tolist() == [10]


def test_events_outside_the_recording_add_nothing():
    ann = Annotations.from_rows([("pulse", -0.002, -0.002), ("pulse", 0.021, 0.021)])
    for kw in (dict(), dict(event_std_seconds=0.002),
               dict(event_std_seconds=0.002, event_kernel="symmetric")):
        y = make_targets(ann, 20, 1000, NAMES, TYPES, **kw)
        assert np.all(y[:, 0] == 1), kw
    # inside a longer recording the same window sees the tails of the event at sample 21
    y = make_targets(ann, 20, 1000, NAMES, TYPES, event_std_seconds=0.002, recording_samples=30)
    assert y[19, 1] > 0


def test_gap_between_touching_segments():
    # [0, 9] and [10, 19] touch; a 4-sample gap is centred between them: 8, 9, 10, 11
    ann = Annotations.from_rows(
        [("sine", 0.0, 0.009), ("sine", 0.010, 0.019), ("sine", 0.030, 0.035)]
    )
    y = make_targets(ann, 40, 1000, NAMES, TYPES, segment_gap_seconds=0.004)
    assert np.flatnonzero(y[:20, 2] == 0).tolist() == [8, 9, 10, 11]
    assert np.all(y[[8, 9, 10, 11], 0] == 1)
    # segments far enough apart are untouched
    assert np.flatnonzero(y[20:, 2]).tolist() == list(range(10, 16))
    # no gap requested: one long box
    y0 = make_targets(ann, 40, 1000, NAMES, TYPES)
    assert np.all(y0[0:20, 2] == 1)


def test_gap_widens_a_too_small_gap_and_handles_overlap():
    ann = Annotations.from_rows([("sine", 0.0, 0.009), ("sine", 0.012, 0.020)])  # 2 samples apart
    y = make_targets(ann, 25, 1000, NAMES, TYPES, segment_gap_seconds=0.004)
    assert np.flatnonzero(y[:, 2] == 0)[:4].tolist() == [9, 10, 11, 12]
    ann = Annotations.from_rows([("sine", 0.0, 0.012), ("sine", 0.010, 0.020)])  # overlapping
    y = make_targets(ann, 25, 1000, NAMES, TYPES, segment_gap_seconds=0.002)
    assert 0 < np.sum(y[:21, 2] == 0) <= 2


def test_gaps_only_between_same_class():
    ann = Annotations.from_rows([("sine", 0.0, 0.009), ("other", 0.010, 0.019)])
    names, types = ["noise", "sine", "other"], ["segment", "segment", "segment"]
    y = make_targets(ann, 20, 1000, names, types, segment_gap_seconds=0.004)
    assert np.all(y[:, 0] == 0)


def test_special_rows_and_unknown_names_add_nothing():
    ann = Annotations.from_rows(
        [("sine", math.nan, 0.0), ("pulse", math.nan, math.nan), ("whip", 0.001, 0.004)]
    )
    y = make_targets(ann, 10, 1000, NAMES, TYPES)
    assert np.all(y[:, 0] == 1)


def test_times_fall_on_samples_as_das_int_and_tolerance_snaps_them():
    sr = 10_000
    k = np.arange(0, 100_000, 7)
    t = k / sr
    das_int = np.array([int(x * sr) for x in t])
    np.testing.assert_array_equal(seconds_to_samples(t, sr), das_int)
    assert np.any(das_int != k)  # float rounding puts some k / sr on k - 1, as in DAS
    assert np.array_equal(seconds_to_samples(t, sr, tolerance=1e-6), k)
    # segment stop: one past the stop sample is int(t * sr + 1), as DAS computes it
    ann = Annotations.from_rows([("sine", 0.0, x) for x in t[:50]])
    for kw, last in ((dict(), das_int[:50]), (dict(sample_tolerance=1e-6), k[:50])):
        for x, stop in zip(t[:50], last):
            one = Annotations.from_rows([("sine", 0.0, x)])
            a = class_activations(one, 400, sr, NAMES, TYPES, **kw)[:, 1]
            assert np.flatnonzero(a).max() == stop
    assert len(ann) == 50


@st.composite
def annotated(draw):
    n = draw(st.integers(1, 300))
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.booleans()):
            t = draw(st.integers(-20, n + 20)) / 1000
            rows.append(("pulse", t, t))
        else:
            a = draw(st.integers(-20, n + 20))
            b = a + draw(st.integers(0, 60))
            rows.append(("sine", a / 1000, b / 1000))
    return n, Annotations.from_rows(rows)


@given(
    annotated(),
    st.lists(st.integers(1, 299), max_size=4),
    st.sampled_from([None, 0.003]),
    st.sampled_from(["das", "symmetric"]),
    st.sampled_from([0.0, 0.005]),
    st.sampled_from([0.0, 1e-6]),
)
def test_blocks_equal_the_whole_and_rows_sum_to_one(case, cuts, std, kernel, gap, tolerance):
    n, ann = case
    kw = dict(
        event_width_seconds=0.005,
        event_std_seconds=std,
        event_kernel=kernel,
        segment_gap_seconds=gap,
        sample_tolerance=tolerance,
    )
    whole = make_targets(ann, n, 1000, NAMES, TYPES, **kw)
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    assert whole.min() >= 0 and whole.max() <= 1
    edges = sorted({0, n, *(c for c in cuts if c < n)})
    parts = [
        make_targets(ann, b - a, 1000, NAMES, TYPES, first_sample=a, recording_samples=n, **kw)
        for a, b in zip(edges, edges[1:])
    ]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@given(
    annotated(),
    st.sampled_from([0.0011, 0.002, 0.0035]),
    st.integers(0, 50),
    st.integers(1, 400),
)
def test_das_gaussian_fft_path_equals_the_event_by_event_sum(case, std, a, length):
    # dense event runs switch to an FFT convolution; it must give the same numbers
    from npydir.das import targets

    n, ann = case
    first, nb = min(a, n), min(length, n - min(a, n))
    kw = dict(event_std_seconds=std, first_sample=first, recording_samples=n)
    sparse = class_activations(ann, nb, 1000, NAMES, TYPES, **kw)
    with mock.patch.object(targets, "_SPARSE_WORK_PER_SAMPLE", 0):
        dense = class_activations(ann, nb, 1000, NAMES, TYPES, **kw)
    np.testing.assert_allclose(dense, sparse, rtol=0, atol=1e-12)


def test_normalize_targets():
    y = normalize_targets(np.array([[0.0, 0.0], [0.25, 0.25], [1.0, 1.0], [0.5, 1.0]]))
    np.testing.assert_allclose(
        y, [[1, 0, 0], [0.5, 0.25, 0.25], [0, 0.5, 0.5], [0, 1 / 3, 2 / 3]], rtol=1e-6
    )


def test_single_class_targets():
    ann = Annotations.from_rows([("pulse", 0.005, 0.005), ("sine", 0.004, 0.006)])
    a = class_activations(ann, 10, 1000, NAMES, TYPES, event_width_seconds=0.001)
    singles = single_class_targets(a, NAMES, TYPES)
    assert list(singles) == ["pulse", "sine"]
    y, names, types = singles["sine"]
    assert names == ["noise", "sine"] and types == ["segment", "segment"]
    # the single-class target is not diluted by the overlapping pulse
    np.testing.assert_array_equal(y[4:7], [[0, 1], [0, 1], [0, 1]])
    assert singles["pulse"][0][:, 1].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="'whip' is not one of"):
        single_class_targets(a, NAMES, TYPES, classes=["whip"])


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(class_names=["noise", "a"], class_types=["segment"]), "same length"),
        (dict(class_names=["noise", "a", "a"], class_types=["segment"] * 3), "duplicates"),
        (dict(class_types=["segment", "blob", "segment"]), "'event' or 'segment'"),
        (dict(samplerate=0), "samplerate"),
        (dict(nb_samples=-1), "nb_samples"),
        (dict(event_width_seconds=0), "event_width_seconds"),
        (dict(event_std_seconds=-1.0), "event_std_seconds"),
        (dict(segment_gap_seconds=-1.0), "segment_gap_seconds"),
        (dict(event_std_seconds=0.002, event_kernel="box"), "event_kernel"),
        (dict(sample_tolerance=1.0), "sample_tolerance"),
        (dict(first_sample=5, recording_samples=12), "inside the recording"),
        (dict(first_sample=-1), "inside the recording"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    args = dict(
        ann=Annotations(), nb_samples=10, samplerate=1000, class_names=NAMES, class_types=TYPES
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        make_targets(**args)
