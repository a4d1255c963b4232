"""Differential test: the same operations on h5py and on npydir give the same tree and data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npydir

h5py = pytest.importorskip("h5py")

NAMES = ["a", "b", "c"]
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
dtypes = st.sampled_from(["i4", "f8", "u1", "i8"])


@st.composite
def arrays(draw):
    dtype = draw(dtypes)
    shape = draw(st.sampled_from([(3,), (2, 2), (0, 2), (4, 1)]))
    return (np.arange(int(np.prod(shape))).reshape(shape) * draw(st.integers(1, 5))).astype(dtype)


ops = st.one_of(
    st.tuples(st.just("group"), paths),
    st.tuples(st.just("dataset"), paths, arrays()),
    st.tuples(
        st.just("attr"),
        st.one_of(st.just(""), paths),
        st.sampled_from(["k1", "k2"]),
        st.one_of(
            st.integers(-5, 5),
            st.text(alphabet="xyz", max_size=3),
            st.floats(-1, 1),
            st.lists(st.integers(0, 9), min_size=1, max_size=3),
        ),
    ),
    st.tuples(st.just("write"), paths, st.integers(0, 3), st.integers(0, 9)),
    st.tuples(st.just("delete"), paths),
    st.tuples(st.just("append"), paths, st.integers(1, 3)),
    st.tuples(st.just("move"), paths, paths),
)


def apply(op, f, is_h5):
    kind = op[0]
    if kind == "group":
        f.create_group(op[1])
    elif kind == "dataset":
        data = op[2]
        if is_h5:
            f.create_dataset(op[1], data=data, maxshape=(None,) + data.shape[1:])
        else:
            f.create_dataset(op[1], data=data)
    elif kind == "attr":
        target = f[op[1]] if op[1] else f
        target.attrs[op[2]] = op[3]
    elif kind == "write":
        ds = f[op[1]]
        if not hasattr(ds, "shape"):
            raise TypeError("not a dataset")
        ds[op[2]] = op[3]  # IndexError past the end, on both
    elif kind == "delete":
        del f[op[1]]
    elif kind == "append":
        ds = f[op[1]]
        if not hasattr(ds, "shape"):
            raise TypeError("not a dataset")
        block = np.full((op[2],) + ds.shape[1:], 7, dtype=ds.dtype)
        if is_h5:
            n = ds.shape[0]
            ds.resize(n + op[2], axis=0)
            ds[n:] = block
        else:
            ds.append(block)
    elif kind == "move":
        src, dst = op[1], op[2]
        if (dst + "/").startswith(src + "/"):
            raise ValueError(
                "into itself"
            )  # HDF5 silently makes the group unreachable; npydir refuses
        f.move(src, dst)


def snapshot(f):
    """Everything observable: names, kinds, shapes, dtypes, values, attrs."""
    out = {"/": {k: np.asarray(v).tolist() for k, v in f.attrs.items()}}

    def visit(name, obj):
        attrs = {k: np.asarray(v).tolist() for k, v in obj.attrs.items()}
        if hasattr(obj, "shape"):
            out[name] = (
                "array",
                tuple(obj.shape),
                np.dtype(obj.dtype).str,
                np.asarray(obj[...]).tolist(),
                attrs,
            )
        else:
            out[name] = ("group", attrs)

    f.visititems(lambda n, o: visit(n, o))
    return out


@settings(max_examples=40)
@given(st.lists(ops, min_size=1, max_size=25))
def test_same_as_h5py(tmp_path_factory, sequence):
    d = tmp_path_factory.mktemp("diff")
    with h5py.File(d / "ref.h5", "w") as h5, npydir.open(d / "s.npy", "w") as nd:
        for op in sequence:
            outcome = []
            for f, is_h5 in ((h5, True), (nd, False)):
                try:
                    apply(op, f, is_h5)
                    outcome.append("ok")
                except (KeyError, ValueError, TypeError, IndexError, OSError) as exc:
                    outcome.append(f"error {type(exc).__name__}")
            assert (outcome[0] == "ok") == (outcome[1] == "ok"), (op, outcome)
        expect = snapshot(h5)
        assert snapshot(nd) == expect
        assert list(nd) == list(h5)  # h5py lists in name order too
    with npydir.open(d / "s.npy") as nd:  # and after reopening
        assert snapshot(nd) == expect


def test_fixed_sequence_against_h5py(tmp_path):
    seq = [
        ("group", "a/b"),
        ("dataset", "a/x", np.arange(6.0).reshape(3, 2)),
        ("attr", "", "k1", [1, 2]),
        ("attr", "a/x", "k2", "xy"),
        ("write", "a/x", 1, 9),
        ("append", "a/x", 2),
        ("dataset", "c", np.arange(3)),
        ("move", "c", "a/b/c"),
        ("delete", "a/b/c"),
        ("attr", "a", "k1", 0.5),
    ]
    with h5py.File(tmp_path / "r.h5", "w") as h5, npydir.open(tmp_path / "s.npy", "w") as nd:
        for op in seq:
            apply(op, h5, True)
            apply(op, nd, False)
        assert snapshot(nd) == snapshot(h5)
        assert snapshot(nd)["a/x"][3] == [[0, 1], [9, 9], [4, 5], [7, 7], [7, 7]]
