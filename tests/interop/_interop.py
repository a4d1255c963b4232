"""Helpers shared by the interop tests: DAS-style datasets and cross-backend comparisons."""

from __future__ import annotations

import numpy as np

# The DAS release this suite was written against (`make interop` installs it).
DAS_VERSION = "0.33.2"


class AttrsDict(dict):
    """A dict with ``.attrs``: the data structure DAS trains on and ``das.npy_dir.save`` takes."""

    def __init__(self, *args, attrs=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.attrs = dict(attrs or {})


def onehot(n: int, classes: int, seed: int = 0, dtype: str = "float32") -> np.ndarray:
    """``[n, classes]`` targets, one class per sample, as DAS's ``y``."""
    rng = np.random.default_rng(seed)
    return np.eye(classes, dtype=dtype)[rng.integers(0, classes, n)]


def das_style_dataset(seed: int = 0) -> AttrsDict:
    """A small DAS training dataset with every kind of attribute DAS's own tools store.

    The arrays and the class attributes are the conversion tests' (float16 ``x``, one-hot
    float32 ``y`` and ``y_pulse``); the per-split file lists are what DAS's dataset maker adds.
    Strings, numbers and lists of them: every backend (npy pickle, zarr JSON, HDF5) keeps them.
    """
    from _convert_fixtures import DAS_ATTRS, das_arrays

    data = AttrsDict(das_arrays(seed=seed, n=300, channels=2))
    attrs = dict(DAS_ATTRS)
    for split, x in ((s, data[s]["x"]) for s in data):
        half = len(x) // 2
        attrs[f"filename_{split}"] = [f"{split}0.wav", f"{split}1.wav"]
        attrs[f"filename_startsample_{split}"] = [0, half]
        attrs[f"filename_endsample_{split}"] = [half, len(x)]
    data.attrs = attrs
    return data


def ramp(n: int, channels: int | None, dtype: str = "float32") -> np.ndarray:
    """``x[s, c] = s * C + c``: every value names its sample (exact in float32 here).

    ``channels=None`` gives a one-dimensional ``[n]`` array.
    """
    c = 1 if channels is None else channels
    x = np.arange(n * c, dtype=np.int64).reshape(n, c).astype(dtype)
    return x[:, 0] if channels is None else x


# The argument sets DAS's own training uses (das.train: with_y_hist, data_padding from the
# model's receptive field, output_stride of a downsampling model) and the edges of the
# argument mapping, at test scale; in Batches' names.
DAS_TRAINING_SETTINGS = {
    "y_hist-padding": dict(window=64, batch_size=8, y_window=True, data_padding=8),
    "output_stride": dict(window=64, batch_size=8, y_window=True, data_padding=8,
                          output_stride=4),
    "class_weights": dict(window=64, batch_size=8, y_window=True, data_padding=8,
                          class_weights=[0.2, 1.0, 5.0]),
    "class_weights-no-padding": dict(window=33, batch_size=5, class_weights=[0.2, 1.0, 5.0]),
    "y_offset": dict(window=33, batch_size=5, stride=8, y_offset=0),
    "stride": dict(window=33, batch_size=5, stride=3),
    "first-last": dict(window=16, batch_size=7, stride=2, first=40, last=900),
    "window1": dict(window=1, batch_size=32),
}


def plain(value):
    """An attribute value as plain Python (lists, ints, floats, str) for cross-backend equality."""
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def assert_same_arrays(expected, actual, where: str = "") -> None:
    """Two nested mappings hold the same keys and, for each array, shape, dtype and values."""
    assert sorted(actual.keys()) == sorted(expected.keys()), where
    for key in expected:
        exp, act = expected[key], actual[key]
        if hasattr(exp, "keys"):
            assert hasattr(act, "keys"), f"{where}/{key}: expected a group"
            assert_same_arrays(exp, act, f"{where}/{key}")
            continue
        exp_arr, act_arr = np.asarray(exp[...]), np.asarray(act[...])
        assert act_arr.shape == exp_arr.shape, f"{where}/{key}"
        assert act_arr.dtype == exp_arr.dtype, f"{where}/{key}"
        np.testing.assert_array_equal(act_arr, exp_arr, err_msg=f"{where}/{key}")


def assert_same_attrs(expected, actual) -> None:
    """Attributes equal as plain values (backends differ in list vs array, int vs np.int64)."""
    assert sorted(actual) == sorted(expected)
    for key in expected:
        assert plain(actual[key]) == plain(expected[key]), key
