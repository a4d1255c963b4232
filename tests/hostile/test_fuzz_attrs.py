"""Fuzzing attrs.json: ``decode_attrs``, group and array attributes of a store, and verify.

Every case must end in success or :class:`npydir.errors.FormatError` naming the file; what
decodes must also encode again (a reader that updates one attribute writes the whole dict
back), and ``verify`` must call the file ``bad-attrs`` exactly when the decoder refuses it.
"""

from __future__ import annotations

import json

import _hostile
import numpy as np
import pytest

import npydir
from npydir.store.attrs import decode_attrs, encode_attrs
from npydir.errors import FormatError

pytestmark = pytest.mark.hostile


def test_hypothesis_fuzz_attrs_json():
    _hostile.check_hypothesis_fuzz("attrs", {"FormatError"})


def test_atheris_fuzz_attrs_json():
    _hostile.check_atheris_fuzz("attrs")


def _tagged(**kw):
    return json.dumps({"a": {"__npydir__": "ndarray", **kw}})


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # deeper than the JSON decoder's recursion
        '{"a":' + "[" * 5000 + "]" * 5000 + "}",
    ],
    ids=["deep-list", "deep-value"],
)
def test_deeply_nested_json_is_a_format_error(text):
    """RecursionError escaped decode_attrs (bug-log.md H2)."""
    with pytest.raises(FormatError, match="attrs.json"):
        decode_attrs(text, "attrs.json")


@pytest.mark.parametrize(
    "text",
    [
        _tagged(dtype="<i4", shape=[1], data=[1e400]),  # inf into an int array
        _tagged(dtype="<i4", shape=[1], data=[99999999999999999999999]),  # int out of range
        json.dumps({"a": {"__npydir__": "scalar", "dtype": "<u1", "value": -1}}),
    ],
    ids=["inf-to-int", "int-overflow", "scalar-out-of-range"],
)
def test_out_of_range_values_are_a_format_error(text):
    """OverflowError escaped decode_attrs (bug-log.md H3)."""
    with pytest.raises(FormatError, match="attrs.json"):
        decode_attrs(text, "attrs.json")


@pytest.mark.parametrize(
    "text",
    [
        _tagged(dtype="|O", shape=[2], data=[1, "x"]),
        json.dumps({"a": {"__npydir__": "scalar", "dtype": "|O", "value": [1]}}),
        json.dumps({"a": {"__npydir__": "dict", "items": [[1, 2]]}}),
        '{"a": "\\ud800"}',
    ],
    ids=["object-array", "object-scalar", "int-dict-key", "lone-surrogate"],
)
def test_what_decodes_can_be_written_back(tmp_path, text):
    """Values the encoder refuses must not come out of the decoder (bug-log.md H4).

    A store whose attrs.json decodes to such a value can never have its attributes updated:
    the whole dict is written back on every change and the write fails.
    """
    store = tmp_path / "s.npy"
    npydir.open(store, "w").close()
    (store / "attrs.json").write_text(text, encoding="utf-8")
    with npydir.open(store, "r+") as root:
        try:
            root.attrs.asdict()
        except FormatError as exc:  # refusing on read is fine ...
            assert "attrs.json" in str(exc)
            return
        root.attrs["b"] = 1  # ... accepting it means it can be written back
    assert npydir.verify(store).ok
    assert encode_attrs(npydir.open(store).attrs.asdict())


def test_attrs_update_never_leaves_a_partial_file(tmp_path):
    """An update that fails to encode leaves the old attrs.json byte for byte."""
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as root:
        root.attrs.update(a=1, b=np.arange(3))
        before = (store / "attrs.json").read_bytes()
        with pytest.raises(TypeError):
            root.attrs.update(c=object())
    assert (store / "attrs.json").read_bytes() == before
