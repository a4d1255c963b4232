"""``npydir.Batches`` against the real ``das.io.AudioSequence`` over a grid of arguments.

The mapping (docs/batches.md): ``nb_hist`` -> ``window``, ``with_y_hist`` -> ``y_window``,
``first_sample``/``last_sample`` -> ``first``/``last``, the rest by name; DAS's ``len()``
counts whole batches only (``drop_last=True``). das 0.33.2 returns float32 x, y and weights,
so ``Batches(dtype="float32")`` is compared and y is compared by value.
"""

from __future__ import annotations

import numpy as np
import pytest
from _interop import DAS_TRAINING_SETTINGS, onehot, ramp
from hypothesis import given, settings
from hypothesis import strategies as st

import npydir


def pair(das, x, y, *, window, batch_size, stride=1, y_offset=None, y_window=False,
         output_stride=1, data_padding=0, class_weights=None, first=0, last=None,
         shuffle=False, unpack_channels=False, seed=0):
    """The same loader twice: DAS's AudioSequence and npydir's Batches with mapped arguments."""
    theirs = das.io.AudioSequence(
        x, y, batch_size=batch_size, shuffle=shuffle, nb_hist=window, y_offset=y_offset,
        stride=stride, with_y_hist=y_window, data_padding=data_padding, first_sample=first,
        last_sample=last, output_stride=output_stride, class_weights=class_weights,
        unpack_channels=unpack_channels,
    )
    ours = npydir.Batches(
        x, y, window=window, batch_size=batch_size, stride=stride, y_offset=y_offset,
        y_window=y_window, output_stride=output_stride, data_padding=data_padding,
        class_weights=class_weights, first=first, last=last, shuffle=shuffle, seed=seed,
        drop_last=True, prefetch=0, dtype="float32",
    )
    return theirs, ours


def assert_batch_equal(ours: tuple, theirs: list, *, weights_expected: bool) -> None:
    theirs = list(theirs)
    if not weights_expected and len(ours) == 3:
        # DAS computes class weights but returns them only when data_padding > 0
        ours = ours[:2]
    assert len(ours) == len(theirs)
    for k, (a, t) in enumerate(zip(ours, theirs)):
        assert t.dtype == np.float32, f"output {k}: das 0.33.2 returns float32"
        assert a.shape == t.shape, f"output {k}"
        np.testing.assert_array_equal(a.astype(np.float32), t, err_msg=f"output {k}")
    assert ours[0].dtype == np.float32  # x, cast by Batches(dtype="float32")
    if len(ours) == 3:
        assert ours[2].dtype == np.float32  # weights


@given(
    n=st.integers(40, 400),
    channels=st.sampled_from([None, 1, 3]),
    x_dtype=st.sampled_from(["float32", "float16", "int16"]),
    y_dtype=st.sampled_from(["float32", "float16"]),
    window=st.integers(1, 48),
    batch_size=st.integers(1, 9),
    stride=st.integers(1, 7),
    first_windows=st.integers(0, 5),
    tail=st.integers(0, 20),
    y_window=st.booleans(),
    output_stride=st.sampled_from([1, 2, 4]),
    padding=st.integers(0, 8),
    y_offset=st.one_of(st.none(), st.integers(0, 47)),
    weighted=st.booleans(),
    with_y=st.booleans(),
)
@settings(max_examples=60)
def test_batches_match_audiosequence_unshuffled(
    das, n, channels, x_dtype, y_dtype, window, batch_size, stride, first_windows, tail,
    y_window, output_stride, padding, y_offset, weighted, with_y,
):
    if y_window:
        window = max(output_stride, window - window % output_stride)
        padding = min(padding, (window - 1) // 2)
    else:
        padding = 0 if not with_y else padding
    if y_offset is not None:
        y_offset = min(y_offset, window - 1)
    first = first_windows * stride  # DAS starts window k at k * stride (docs/batches.md)
    last = n - tail
    if first + window > last:
        return
    if x_dtype == "float16" and n * (channels or 1) > 2048:
        x_dtype = "float32"  # keep the ramp exact
    x = ramp(n, channels, x_dtype)
    y = onehot(n, 3, seed=n, dtype=y_dtype) if with_y else None
    cw = [0.5, 2.0, 3.0] if weighted and with_y else None
    theirs, ours = pair(
        das, x, y, window=window, batch_size=batch_size, stride=stride, y_offset=y_offset,
        y_window=y_window, output_stride=output_stride, data_padding=padding,
        class_weights=cw, first=first, last=last,
    )
    assert len(ours) == len(theirs)
    for i in range(len(ours)):
        assert_batch_equal(ours[i], theirs[i], weights_expected=padding > 0 and with_y)


@pytest.mark.parametrize("kwargs", DAS_TRAINING_SETTINGS.values(), ids=DAS_TRAINING_SETTINGS)
def test_batches_match_audiosequence_das_training_settings(das, kwargs):
    x = ramp(1000, 2, "float16")
    y = onehot(1000, 3, seed=3)
    theirs, ours = pair(das, x, y, **kwargs)
    assert len(ours) == len(theirs) > 0
    expect_w = kwargs.get("data_padding", 0) > 0  # DAS returns weights only then
    for i in range(len(ours)):
        assert_batch_equal(ours[i], theirs[i], weights_expected=expect_w)


@pytest.mark.parametrize("y_window", [False, True])
@pytest.mark.parametrize("stride", [1, 3])
def test_shuffled_audiosequence_draws_windows_batches_also_gives(das, y_window, stride):
    """Shuffled orders differ by design; every window DAS draws is one of ours, identical."""
    n, channels = 600, 2
    x = ramp(n, channels)
    y = onehot(n, 3, seed=5)
    kwargs = dict(window=20, batch_size=6, stride=stride, y_window=y_window,
                  data_padding=2 if y_window else 0)
    np.random.seed(0)  # DAS draws its windows from numpy's global generator
    theirs, ours = pair(das, x, y, shuffle=True, **kwargs)
    by_start = {}
    for i in range(len(ours)):
        batch = ours[i]
        for row, start in enumerate(ours.starts(i)):
            by_start[int(start)] = tuple(part[row] for part in batch)
    assert len(by_start) == len(ours) * ours.batch_size  # no window twice in an epoch
    drawn = set()
    for i in range(len(theirs)):
        batch = theirs[i]
        for row in range(batch[0].shape[0]):
            start = int(batch[0][row, 0, 0]) // channels
            drawn.add(start)
            if start not in by_start:
                # DAS may draw a window npydir's drop_last left out this epoch: check it
                # is a whole window of the data, then compare with the array itself
                assert start % stride == 0 and start + 20 <= n
                np.testing.assert_array_equal(batch[0][row], x[start:start + 20])
                continue
            for part_ours, part_theirs in zip(by_start[start], batch):
                np.testing.assert_array_equal(part_ours.astype(np.float32), part_theirs[row])
    assert len(drawn) > len(theirs)  # DAS shuffled, not a single repeated window


def test_unpack_channels_is_a_split_of_batches_x(das):
    """``unpack_channels`` (not a Batches argument) is ``x[..., c:c+1]`` for each channel.

    das 0.33.2 cannot return the unpacked list (its final ``astype`` meets a list, see
    test_das_known_bugs.py); DAS's own ``batch_processor`` hook receives it just before, so
    the list DAS builds is captured there and compared with a split of Batches' x.
    """
    x = ramp(300, 3)
    y = onehot(300, 3)
    captured = []

    def capture(batch_x):
        captured.append(batch_x)
        return np.concatenate(batch_x, axis=-1)

    theirs = das.io.AudioSequence(x, y, batch_size=4, nb_hist=10, shuffle=False,
                                  unpack_channels=True, batch_processor=capture)
    _, ours = pair(das, x, y, window=10, batch_size=4)
    assert len(ours) == len(theirs)
    for i in range(len(ours)):
        theirs[i]
        unpacked = captured[-1]
        assert isinstance(unpacked, list) and len(unpacked) == 3
        xs = ours[i][0]
        for c, channel in enumerate(unpacked):
            assert channel.shape == (4, 10, 1)
            np.testing.assert_array_equal(xs[..., c:c + 1], channel)


def test_das_class_weights_without_padding_are_dropped_ours_returned(das):
    """The documented difference: DAS computes class weights and drops them without padding."""
    x, y = ramp(200, 1), onehot(200, 3)
    cw = [0.5, 2.0, 3.0]
    theirs, ours = pair(das, x, y, window=10, batch_size=4, class_weights=cw)
    assert len(theirs[0]) == 2
    xb, yb, wb = ours[0]
    np.testing.assert_array_equal(wb, np.asarray(cw, np.float32)[np.argmax(yb, axis=-1)])


def test_batches_over_a_store_das_loads(das, tmp_path):
    """The same store through both stacks: das.io.load + AudioSequence, npydir.open + Batches."""
    data = {"train": {"x": ramp(500, 2, "float16"), "y": onehot(500, 3, dtype="float16")}}
    path = tmp_path / "ds.npy"
    npydir.save(path, data, das_compat=True)
    d = das.io.load(str(path))
    theirs = das.io.AudioSequence(d["train"]["x"], d["train"]["y"], batch_size=8, nb_hist=32,
                                  shuffle=False, with_y_hist=True, data_padding=4)
    with npydir.open(path) as root:
        ours = npydir.Batches(root["train/x"], root["train/y"], window=32, batch_size=8,
                              y_window=True, data_padding=4, shuffle=False, drop_last=True,
                              prefetch=0, dtype="float32")
        assert len(ours) == len(theirs)
        for i in range(len(ours)):
            assert_batch_equal(ours[i], theirs[i], weights_expected=True)


def test_das_casts_every_output_to_float32_batches_keeps_dtypes_unless_asked(das):
    """das 0.33.2 ends ``__getitem__`` with ``astype(np.float32)`` for x, y and weights;
    ``Batches`` keeps x's and y's dtypes unless ``dtype=`` is given (weights are float32)."""
    x = ramp(200, 2, "int16")
    y = onehot(200, 3, dtype="uint8")
    theirs = das.io.AudioSequence(x, y, batch_size=4, nb_hist=16, shuffle=False,
                                  with_y_hist=True, data_padding=2)
    assert [a.dtype for a in theirs[0]] == [np.float32] * 3
    ours = npydir.Batches(x, y, window=16, batch_size=4, y_window=True, data_padding=2,
                          shuffle=False, prefetch=0)
    assert [a.dtype for a in ours[0]] == [np.int16, np.uint8, np.float32]
    for a, t in zip(ours[0], theirs[0]):
        np.testing.assert_array_equal(a.astype(np.float32), t)
