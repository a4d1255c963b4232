"""Every legacy ``attrs.npy`` DAS really writes reads exactly as numpy's own unpickler reads it.

The fixtures (``tests/store/fixtures/legacy_attrs``, made by ``make_fixtures.py`` there) were written by
the real DAS (``das.io.npy_dir.NpyDir.save``, das 0.33.2 with numpy 2.5), by ``np.save`` under
numpy 1.26 and 2.5, and with pickle protocols 0, 2 and 3.  ``read_legacy_attrs`` interprets the
pickle itself; the reference is ``np.load(allow_pickle=True)`` (safe here: our own files).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_attrs import values as attr_values

import npydir
from npydir.store.attrs import read_legacy_attrs

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_attrs"
FILES = sorted(FIXTURES.glob("*.npy"))


def assert_identical(a, b, where="attrs"):
    """Same types, dtypes, shapes, memory order and bytes (NaN included)."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.dtype.str == b.dtype.str, (where, a.dtype, b.dtype)
        assert a.shape == b.shape, where
        assert a.flags.c_contiguous == b.flags.c_contiguous, where
        assert a.flags.f_contiguous == b.flags.f_contiguous, where
        assert a.tobytes(order="A") == b.tobytes(order="A"), where
        assert b.flags.writeable and b.flags.owndata or b.base is not None, where
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype, where
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, (float, complex)):
        assert np.array_equal(a, b, equal_nan=True) and repr(a) == repr(b), where
    else:
        assert a == b, where


def test_the_fixtures_cover_das_numpy_1_and_2_and_old_protocols():
    names = {p.name for p in FILES}
    assert "das-np2.5.npy" in names  # the real DAS writer
    assert {"save-np1.26.npy", "save-np2.5.npy"} <= names
    assert {f"proto{p}-np{v}.npy" for p in (0, 2, 3) for v in ("1.26", "2.5")} <= names
    # numpy 1.x pickles name numpy.core, numpy 2.x numpy._core
    assert b"numpy.core.multiarray" in (FIXTURES / "save-np1.26.npy").read_bytes()
    assert b"numpy._core.multiarray" in (FIXTURES / "save-np2.5.npy").read_bytes()


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_fixture_reads_as_numpy_reads_it(path):
    expected = np.load(path, allow_pickle=True)[()]
    got = read_legacy_attrs(path)
    assert_identical(expected, got)
    assert got["class_names"] == ["noise", "pulse", "sine"]
    assert got["f4_fortran"].flags.f_contiguous
    assert got["i2_big_endian"].dtype == np.dtype("=i2")  # numpy reads it in native order


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_a_das_store_with_the_fixture_opens_and_converts(tmp_path, path):
    """As a store's root attrs: .attrs, verify, and a das_compat update that writes attrs.json
    (and a new attrs.npy DAS reads back) from them."""
    store = tmp_path / "s.npy"
    (store / "train").mkdir(parents=True)
    np.save(store / "train" / "x.npy", np.zeros((4, 1), dtype="f4"))
    (store / "attrs.npy").write_bytes(path.read_bytes())
    expected = np.load(path, allow_pickle=True)[()]
    with npydir.open(store, "r") as root:
        assert_identical(expected, dict(root.attrs))
    assert npydir.verify(store).ok
    with npydir.open(store, "a", das_compat=True) as root:
        root.attrs["added"] = 1
    das_view = np.load(store / "attrs.npy", allow_pickle=True)[()]
    assert das_view["added"] == 1 and das_view["class_names"] == expected["class_names"]
    assert npydir.verify(store).ok


# ------------------------------------------------------------------ any attrs dict, any protocol

extra_arrays = st.sampled_from(
    [
        np.array([(1, 2.0)], dtype=[("a", "<i2"), ("b", ">f8")]),
        np.zeros(2, dtype=[("xy", "<f4", (2,)), ("t", "M8[s]")]),
        np.array(["2024-01-01", "NaT"], dtype="M8[D]"),
        np.array([3], dtype="m8[10ms]"),
        np.zeros(3, dtype="V2"),
        np.asfortranarray(np.arange(12, dtype=">f4").reshape(3, 4)),
        np.arange(6, dtype="<u2").reshape(2, 3)[:, ::2],  # not contiguous: pickled as a copy
        np.longdouble(1) / 3,
        np.datetime64("2024-05-06T07:08", "m"),
        np.array([b"ab", b""], dtype="S2")[1],
    ]
)
legacy_values = st.recursive(
    st.one_of(attr_values, extra_arrays),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=5), children, max_size=3),
    ),
    max_leaves=6,
)


def _pickled(payload, protocol: int) -> bytes:
    buf = io.BytesIO()
    if protocol == 4:
        np.save(buf, payload, allow_pickle=True)  # what np.save (and so DAS) writes today
    else:
        np.lib.format.write_array_header_1_0(
            buf, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        buf.write(pickle.dumps(payload, protocol=protocol))
    return buf.getvalue()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=8), legacy_values, max_size=5), st.integers(0, 4))
def test_any_attrs_dict_reads_as_numpy_reads_it(tmp_path_factory, attrs, protocol):
    payload = np.empty((), dtype=object)
    payload[()] = attrs
    path = tmp_path_factory.mktemp("legacy") / "attrs.npy"
    path.write_bytes(_pickled(payload, protocol))
    expected = np.load(path, allow_pickle=True)[()]
    assert_identical(expected, read_legacy_attrs(path))
