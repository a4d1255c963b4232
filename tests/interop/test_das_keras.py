"""``npydir.keras.WindowDataset`` against das 0.33.2's ``AudioSequence``, and DAS's own model
trained from it.

``WindowDataset`` takes ``Batches``' arguments and returns what ``AudioSequence`` returns:
float32 x, y and weights, weights exactly when DAS returns them (``y`` and
``data_padding > 0``; class weights without padding are dropped, with a warning, as DAS
drops them). Keras runs on the jax backend here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _interop import DAS_TRAINING_SETTINGS, onehot, ramp
from hypothesis import given, settings
from hypothesis import strategies as st

npkeras = pytest.importorskip("npydir.keras", reason="npydir.keras (the Keras adapter) is absent")


def das_and_keras(das, x, y, *, window, batch_size, stride=1, y_offset=None, y_window=False,
                  output_stride=1, data_padding=0, class_weights=None, first=0, last=None):
    theirs = das.io.AudioSequence(
        x, y, batch_size=batch_size, shuffle=False, nb_hist=window, y_offset=y_offset,
        stride=stride, with_y_hist=y_window, data_padding=data_padding, first_sample=first,
        last_sample=last, output_stride=output_stride, class_weights=class_weights,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = npkeras.WindowDataset(
            x, y, window=window, batch_size=batch_size, stride=stride, y_offset=y_offset,
            y_window=y_window, output_stride=output_stride, data_padding=data_padding,
            class_weights=class_weights, first=first, last=last, shuffle=False,
            drop_last=True,
        )
    dropped = class_weights is not None and data_padding == 0 and y is not None
    assert any("class_weights" in str(w.message) for w in caught) == dropped
    return theirs, ours


def assert_same_batches(theirs, ours) -> None:
    assert len(ours) == len(theirs)
    for i in range(len(ours)):
        t, o = list(theirs[i]), ours[i]
        assert len(o) == len(t), f"batch {i}: {len(o)} arrays, DAS returns {len(t)}"
        for k, (a, b) in enumerate(zip(o, t)):
            assert a.dtype == b.dtype == np.float32, (i, k)
            assert a.shape == b.shape, (i, k)
            np.testing.assert_array_equal(a, b, err_msg=f"batch {i} output {k}")


@given(
    n=st.integers(60, 300),
    channels=st.integers(1, 3),
    x_dtype=st.sampled_from(["float16", "float32", "int16"]),
    y_dtype=st.sampled_from(["float16", "float32", "uint8"]),
    window=st.integers(1, 40),
    batch_size=st.integers(1, 8),
    stride=st.integers(1, 5),
    y_window=st.booleans(),
    output_stride=st.sampled_from([1, 2, 4]),
    padding=st.integers(0, 6),
    weighted=st.booleans(),
    with_y=st.booleans(),
)
@settings(max_examples=40)
def test_window_dataset_matches_audiosequence(
    das, n, channels, x_dtype, y_dtype, window, batch_size, stride, y_window, output_stride,
    padding, weighted, with_y,
):
    if y_window:
        window = max(output_stride, window - window % output_stride)
        padding = min(padding, (window - 1) // 2)
    if window > n:
        return
    x = ramp(n, channels, "float32" if x_dtype == "float16" and n * channels > 2048 else x_dtype)
    y = onehot(n, 3, seed=n, dtype=y_dtype) if with_y else None
    cw = [0.5, 2.0, 3.0] if weighted and with_y else None
    theirs, ours = das_and_keras(
        das, x, y, window=window, batch_size=batch_size, stride=stride, y_window=y_window,
        output_stride=output_stride, data_padding=padding, class_weights=cw,
    )
    assert_same_batches(theirs, ours)


@pytest.mark.parametrize("kwargs", DAS_TRAINING_SETTINGS.values(), ids=DAS_TRAINING_SETTINGS)
def test_window_dataset_matches_audiosequence_das_training_settings(das, kwargs):
    x = ramp(1000, 2, "float16")
    y = onehot(1000, 3, seed=3, dtype="float16")
    theirs, ours = das_and_keras(das, x, y, **kwargs)
    assert_same_batches(theirs, ours)


def test_das_model_trains_on_window_dataset(das, tmp_path):
    """DAS's own TCN, built by ``das.models``, trains and validates on WindowDatasets over a
    store npydir made for DAS, and predicts the same from DAS's AudioSequence."""
    import keras

    import npydir

    keras.utils.set_random_seed(0)
    npydir.das.make_recordings(tmp_path / "recs", n_recordings=3, seconds=1.0)
    store = npydir.das.make_dataset(tmp_path / "recs", tmp_path / "ds.npy", test_fraction=0)
    nb_hist, padding = 64, 8
    with npydir.open(store) as root:
        nb_classes = root["train/y"].shape[1]
        kwargs = dict(window=nb_hist, batch_size=8, y_window=True, data_padding=padding)
        train = npkeras.WindowDataset(root["train/x"], root["train/y"], seed=0, **kwargs)
        val = npkeras.WindowDataset(root["val/x"], root["val/y"], shuffle=False, **kwargs)
        model = das.models.model_dict["tcn"](
            nb_freq=root["train/x"].shape[1], nb_classes=nb_classes, nb_hist=nb_hist,
            nb_filters=4, kernel_size=3, nb_conv=1, dilations=[1, 2], learning_rate=1e-3,
            sample_weight_mode="temporal",
        )
        history = model.fit(train, validation_data=val, epochs=2, steps_per_epoch=4,
                            validation_steps=2, verbose=0)
        assert len(history.history["loss"]) == 2
        assert np.all(np.isfinite(history.history["loss"] + history.history["val_loss"]))
        assert train.epoch >= 2  # on_epoch_end moved to a new order after each epoch

        d = das.io.load(str(store))
        seq = das.io.AudioSequence(d["val"]["x"], d["val"]["y"], batch_size=8, nb_hist=nb_hist,
                                   shuffle=False, with_y_hist=True, data_padding=padding)
        ours = npkeras.WindowDataset(root["val/x"], root["val/y"], shuffle=False,
                                     drop_last=True, **kwargs)
        for i in range(2):
            np.testing.assert_array_equal(model.predict(ours[i][0], verbose=0),
                                          model.predict(seq[i][0], verbose=0))
