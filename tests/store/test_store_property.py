"""Property tests: random trees of random arrays and attrs survive close and reopen."""

from __future__ import annotations

import shutil

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_attrs import assert_same
from test_attrs import values as attr_values

import npydir

scalar_dtypes = st.one_of(
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.boolean_dtypes(),
    hnp.unicode_string_dtypes(max_len=5),
    hnp.byte_string_dtypes(max_len=5),
    hnp.datetime64_dtypes(),
)
struct_dtypes = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), scalar_dtypes),
    min_size=1,
    max_size=3,
    unique_by=lambda t: t[0],
).map(np.dtype)
any_dtype = st.one_of(scalar_dtypes, struct_dtypes)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
arrays = hnp.arrays(any_dtype, shapes)
names = st.text(alphabet="abcXYZ_-09é", min_size=1, max_size=6)
attr_dicts = st.dictionaries(st.text(max_size=6), attr_values, max_size=3)


def trees(depth=2):
    leaf = st.tuples(arrays, attr_dicts)
    if depth == 0:
        return st.dictionaries(names, leaf, max_size=3)
    return st.dictionaries(
        names, st.one_of(leaf, st.tuples(trees(depth - 1), attr_dicts)), max_size=3
    )


def _unique_casefold(tree):
    keys = [k.casefold() for k in tree]
    return len(keys) == len(set(keys)) and all(
        _unique_casefold(v[0]) for v in tree.values() if isinstance(v[0], dict)
    )


def write(group, tree):
    for name, (value, attrs) in tree.items():
        if isinstance(value, dict):
            sub = group.create_group(name)
            write(sub, value)
            obj = sub
        else:
            obj = group.create_dataset(name, data=value)
        obj.attrs.update(attrs)


def check(group, tree):
    assert list(group) == sorted(tree)
    for name, (value, attrs) in tree.items():
        obj = group[name]
        if isinstance(value, dict):
            assert isinstance(obj, npydir.Group)
            check(obj, value)
        else:
            assert isinstance(obj, npydir.Array)
            assert obj.shape == value.shape and obj.dtype == value.dtype
            got = obj[...]
            assert np.asarray(got).tobytes() == value.tobytes()
            assert np.load(obj.filename).tobytes() == value.tobytes()  # plain numpy reads it too
        assert_same(dict(attrs), dict(obj.attrs))


@settings(max_examples=30)
@given(trees().filter(_unique_casefold), attr_dicts)
def test_random_trees_roundtrip(tmp_path_factory, tree, root_attrs):
    path = tmp_path_factory.mktemp("prop") / "s.npy"
    with npydir.open(path, "w") as root:
        write(root, tree)
        root.attrs.update(root_attrs)
        check(root, tree)
    with npydir.open(path, "r") as root:
        check(root, tree)
        assert_same(dict(root_attrs), dict(root.attrs))
    assert npydir.verify(path).ok
    shutil.rmtree(path)


@settings(max_examples=30)
@given(
    hnp.arrays(
        st.one_of(hnp.integer_dtypes(), hnp.floating_dtypes(), hnp.complex_number_dtypes()),
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5),
    ),
    st.lists(st.integers(0, 4), max_size=4),
)
def test_appends_equal_concatenate(tmp_path_factory, first, blocks):
    path = tmp_path_factory.mktemp("app") / "s.npy"
    expect = [first]
    with npydir.open(path, "w") as root:
        x = root.create_dataset("x", data=first)
        for i, k in enumerate(blocks):
            block = np.full((k,) + first.shape[1:], i, dtype=first.dtype)
            x.append(block, sync=False)
            expect.append(block)
            assert x.shape == (sum(len(e) for e in expect),) + first.shape[1:]
    full = np.concatenate(expect).astype(first.dtype)  # concatenate may change the byte order
    got = npydir.open(path)["x"][...]
    assert got.dtype == first.dtype and got.shape == full.shape and got.tobytes() == full.tobytes()
    assert npydir.verify(path).ok
    shutil.rmtree(path)
