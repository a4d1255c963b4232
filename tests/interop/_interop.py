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


def das_style_dataset(seed: int = 0, channels: int = 2, x_dtype: str = "float16") -> AttrsDict:
    """A small DAS training dataset with every kind of attribute DAS's own tools store.

    Attributes are what DAS's dataset maker writes (sample rates, class names/types, per-split
    file lists and start samples, suffixed classes): strings, floats, ints and lists of them,
    which every backend (npy pickle, zarr JSON, HDF5 attrs) keeps.
    """
    rng = np.random.default_rng(seed)
    data = AttrsDict()
    for split, n in (("train", 400), ("val", 120), ("test", 80)):
        data[split] = {
            "x": rng.standard_normal((n, channels)).astype(x_dtype),
            "y": onehot(n, 3, seed=seed + n),
            "y_pulse": onehot(n, 2, seed=seed + n + 1),
        }
    data.attrs = {
        "samplerate_x_Hz": 10_000.0,
        "samplerate_y_Hz": 10_000.0,
        "class_names": ["noise", "pulse", "sine"],
        "class_types": ["segment", "event", "segment"],
        "class_names_pulse": ["noise", "pulse"],
        "class_types_pulse": ["segment", "event"],
        "filename_train": ["rec000.wav", "rec001.wav"],
        "filename_startsample_train": [0, 250],
        "filename_endsample_train": [250, 400],
        "filename_val": ["rec002.wav"],
        "filename_startsample_val": [0],
        "filename_endsample_val": [120],
        "filename_test": ["rec003.wav"],
        "filename_startsample_test": [0],
        "filename_endsample_test": [80],
    }
    return data


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
