"""Property: npydir -> zarr -> npydir and npydir -> HDF5 -> npydir keep arrays and attrs."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import npydir

from _convert_fixtures import assert_same_tree, tree_of

pytest.importorskip("zarr")
pytest.importorskip("h5py")
from _zarr import needs_zarr3  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

DTYPES = st.sampled_from(["<f2", "<f4", ">f8", "<i1", "<u2", ">i4", "<i8", "?", "<c8",
                          ">c16", "S3", "<U2"]) | st.just([("a", "<i2"), ("b", "<f4")])
NAMES = st.text(alphabet="abcxyz_", min_size=1, max_size=6).filter(lambda s: s != "attrs")
SCALARS = (st.integers(-2**40, 2**40) | st.floats(allow_nan=True) | st.text(max_size=5)
           | st.booleans() | st.none())
ATTR_VALUES = (
    SCALARS
    | st.lists(SCALARS, max_size=3)
    | st.dictionaries(st.text(max_size=4), SCALARS, max_size=3)
    | hnp.arrays(st.sampled_from(["<i4", "<f8", "?"]), hnp.array_shapes(max_dims=2, max_side=3))
    | st.sampled_from([np.float32(1.5), np.int16(-3), b"\x00raw"])
)
ATTRS = st.dictionaries(NAMES, ATTR_VALUES, max_size=3)


@st.composite
def arrays(draw):
    dtype = np.dtype(draw(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    return draw(hnp.arrays(dtype, shape))


@st.composite
def trees(draw, depth=0):
    members = draw(st.dictionaries(NAMES, st.booleans() if depth < 2 else st.just(False),
                                   max_size=3))
    out = {"__attrs__": draw(ATTRS)}
    for name, is_group in members.items():
        out[name] = draw(trees(depth + 1)) if is_group else (draw(arrays()), draw(ATTRS))
    return out


def _write(group, tree):
    group.attrs.update(tree["__attrs__"])
    for name, value in tree.items():
        if name == "__attrs__":
            continue
        if isinstance(value, dict):
            _write(group.create_group(name), value)
        else:
            arr, attrs = value
            a = group.create_dataset(name, data=arr)
            a.attrs.update(attrs)


# zarr skips chunks equal to the fill value and compares complex values with ==, so a chunk
# of negative-zero complex parts was once dropped and read back as +0j (0-d and shaped alike)
NEGATIVE_ZEROS = {
    "__attrs__": {},
    "z": (np.array(complex(0.0, -0.0), dtype="<c8"), {}),
    "zz": (np.array(complex(-0.0, 0.0), dtype=">c16"), {}),
    "v": (np.full((3, 2), complex(-0.0, -0.0), dtype="<c8"), {}),
    "f": (np.full((2,), -0.0, dtype="<f2"), {}),
}


@pytest.mark.parametrize("via", [pytest.param("b.zarr", marks=[pytest.mark.zarr, needs_zarr3]),
                                 pytest.param("b2.zarr", marks=pytest.mark.zarr), "b.h5"])
@settings(max_examples=15)
@given(tree=trees())
@example(tree=NEGATIVE_ZEROS)
def test_round_trip(via, tree):
    tmp = Path(tempfile.mkdtemp())
    try:
        with npydir.open(tmp / "a.npy", "w") as root:
            _write(root, tree)
        npydir.convert(tmp / "a.npy", tmp / via, progress=False,
                       zarr_format=2 if via == "b2.zarr" else 3, chunks=2)
        npydir.convert(tmp / via, tmp / "c.npy", progress=False, verify=True)
        assert_same_tree(tree_of(tmp / "a.npy"), tree_of(tmp / "c.npy"))
    finally:
        shutil.rmtree(tmp)
