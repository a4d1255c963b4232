"""The conversion's name escaping and the store's name rules are one rule: every name the
store refuses is escaped, and every escaped name is one the store accepts."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import npydir
from npydir.conversion.values import escape_name
from npydir.errors import InvalidNameError
from npydir.store.names import validate_name

DEVICES = (["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
           + [f"{p}{i}" for p in ("COM", "LPT") for i in "123456789¹²³"])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("form", ["{}", "{}.txt", "{} .txt", "{}.tar.gz"])
def test_device_names_are_refused_by_the_store_and_escaped_by_conversions(device, form):
    for name in (form.format(device), form.format(device.lower())):
        with pytest.raises(InvalidNameError, match="device name"):
            validate_name(name)
        escaped = escape_name(name)
        assert escaped != name
        assert validate_name(escaped, array=True) == escaped


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=60))
@example("CONIN$")
@example("com¹ .x")
@example("Attrs")
def test_escaped_names_are_store_names(name):
    escaped = escape_name(name)
    validate_name(escaped, array=True)  # raises if the store would refuse it
    try:
        validate_name(name)
    except InvalidNameError:
        assert escaped != name, "a name the store refuses must be escaped"


def test_save_stores_a_device_named_member_under_an_escaped_name(tmp_path):
    """A mapping member named like a device converts into a store (escaped, original kept)."""
    import numpy as np

    out = tmp_path / "d.npy"
    npydir.save(out, {"CONIN$": np.arange(3)})
    back = npydir.load(out)
    (name,) = back.keys()
    assert name != "CONIN$"
    assert back[name].attrs["npydir_original_name"] == "CONIN$"
