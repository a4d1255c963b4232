"""Every conversion adapter keeps the contract of npydir.conversion.protocol, as behaviour.

Sources: npydir stores, zarr formats 2 and 3, HDF5 (contiguous, and chunked with gzip so the
direct reader decodes it) and in-memory mappings.  Destinations: npydir stores, zarr formats 2
and 3, HDF5.  Each case drives the adapter through the protocol only, as the engine does.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import npydir
from npydir.conversion.adapters.mapping import MappingSource
from npydir.conversion.backends import Dataset
from npydir.conversion.protocol import ConcurrentDestination, Destination, Node, Source
from npydir.conversion.registry import backend_of, open_destination, open_source
from npydir.conversion.values import apply_transform, same_value
from npydir.errors import ConversionError, MemberNotFoundError

try:
    import zarr

    ZARR_MAJOR = int(zarr.__version__.split(".")[0])
except ImportError:  # zarr is an optional extra
    ZARR_MAJOR = 0
try:
    import h5py  # noqa: F401

    HAVE_H5PY = True
except ImportError:
    HAVE_H5PY = False

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

no_zarr = pytest.mark.skipif(not ZARR_MAJOR, reason="zarr is not installed")
needs_zarr3 = pytest.mark.skipif(ZARR_MAJOR < 3, reason="zarr format 3 needs zarr-python 3")
no_h5py = pytest.mark.skipif(not HAVE_H5PY, reason="h5py is not installed")

#: (backend, zarr format) of every destination adapter
DESTS = [
    pytest.param(("npydir", None), id="npydir"),
    pytest.param(("zarr", 2), marks=[pytest.mark.zarr, no_zarr], id="zarr2"),
    pytest.param(("zarr", 3), marks=[pytest.mark.zarr, no_zarr, needs_zarr3], id="zarr3"),
    pytest.param(("hdf5", None), marks=no_h5py, id="hdf5"),
]
#: every source adapter; "hdf5-gzip" is chunked and compressed (the direct reader decodes it)
SOURCES = [
    pytest.param("npydir", id="npydir"),
    pytest.param("zarr2", marks=[pytest.mark.zarr, no_zarr], id="zarr2"),
    pytest.param("zarr3", marks=[pytest.mark.zarr, no_zarr, needs_zarr3], id="zarr3"),
    pytest.param("hdf5", marks=no_h5py, id="hdf5"),
    pytest.param("hdf5-gzip", marks=no_h5py, id="hdf5-gzip"),
    pytest.param("mapping", id="mapping"),
]
SUFFIX = {"npydir": ".npy", "zarr": ".zarr", "hdf5": ".h5"}

ATTRS = {"int": 3, "float": 1.5, "nan": float("nan"), "str": "äb", "bool": True, "none": None,
         "list": [1, "a", None], "dict": {"k": [1.0, 2.0]}, "array": np.arange(3, dtype="<i4"),
         "f32": np.float32(0.25)}


def arrays() -> dict:
    """Path -> value of every array of the test tree: dtypes, shapes, empty and 0-d."""
    return {
        "f4": np.arange(12, dtype="<f4").reshape(4, 3),
        "i8be": np.arange(9, dtype=">i8") - 4,
        "u1": np.arange(7, dtype="u1"),
        "bool": np.array([True, False, True]),
        "c16": np.array([1 + 2j, 3 - 4j]),
        "f2": np.arange(3, dtype="<f2"),
        "bytes": np.array([b"ab", b"c"], dtype="S2"),
        "text": np.array(["ä", "bc", ""], dtype="<U2"),
        "record": np.array([(1, 2.5), (-3, 0.0)], dtype=[("a", "<i2"), ("b", "<f4")]),
        "scalar": np.array(2.5),
        "empty_rows": np.zeros((0, 4), "<f4"),
        "empty_cols": np.zeros((3, 0), "<i4"),
        "g/x": np.ones((2, 2, 2), "<f8"),
        "g/h/deep": np.arange(2, dtype="<i2"),
    }


GROUPS = ["", "g", "g/h", "g/empty"]


def tree() -> Dataset:
    """The test tree as the nested Dataset ``save`` takes, attrs on every group."""
    root = Dataset(attrs=dict(ATTRS))
    for group in GROUPS[1:]:
        parent = root
        for part in group.split("/"):
            parent = parent.setdefault(part, Dataset(attrs={"group": group, **ATTRS}))
    for path, value in arrays().items():
        parent = root
        *groups, name = path.split("/")
        for part in groups:
            parent = parent[part]
        parent[name] = value
    return root


def array_attrs(path: str) -> dict:
    return {"array": path, **ATTRS}


def same_attrs(got: dict, want: dict) -> bool:
    return got.keys() == want.keys() and all(same_value(got[k], want[k]) for k in want)


def check_order(nodes: list[Node]) -> None:
    """Root first, every group before its members, the members of a group sorted."""
    assert nodes[0].path == "" and nodes[0].kind == "group"
    seen = {""}
    children: dict[str, list[str]] = {}
    for node in nodes[1:]:
        parent, _, name = node.path.rpartition("/")
        assert parent in seen, f"/{node.path} listed before its group"
        children.setdefault(parent, []).append(name)
        seen.add(node.path)
    for parent, names in children.items():
        assert names == sorted(names), f"members of /{parent} not sorted: {names}"


# --------------------------------------------------------------------------- destinations


def new_dest(backend: tuple, tmp_path: Path, name: str = "d") -> tuple[Destination, Path]:
    kind, fmt = backend
    path = tmp_path / (name + SUFFIX[kind])
    if kind != "hdf5":
        path.mkdir()
    options = {"zarr_format": fmt or 2, "chunks": 2, "compression": None}
    return open_destination(kind, path, options=options, create=True), path


def reopen_dest(backend: tuple, path: Path) -> Destination:
    kind, fmt = backend
    options = {"zarr_format": fmt or 2, "chunks": 2, "compression": None}
    return open_destination(kind, path, options=options, create=False)


def planned(source: Source) -> list[Node]:
    nodes = list(source.nodes())
    for node in nodes:
        node.attrs = array_attrs(node.path) if node.kind == "array" else node.attrs
    return nodes


def write_tree(source: Source, nodes: list[Node], dest: Destination,
               rows: slice = slice(None)) -> dict[str, Node]:
    """Create every group and every array ``dest`` accepts, and write rows ``rows`` of each
    in blocks of whole destination chunks, as the engine does.  Returns the arrays written."""
    written = {}
    for node in nodes:
        dropped: dict = {}
        if node.kind == "group":
            dest.group(node.path, node.attrs, dropped)
        elif node.kind == "array" and dest.check(node) is None:
            dest.array(node.path, node, node.attrs, dropped)
            written[node.path] = node
        assert not dropped, dropped
    for path, node in written.items():
        first, last, _ = rows.indices(node.rows)
        step = max(1, dest.chunk_rows(path))
        for start in range(first, last, step):
            stop = min(start + step, last)
            dest.write(path, start, stop,
                       apply_transform(node.transform, source.read(path, start, stop)))
    return written


def assert_reads_back(backend: tuple, path: Path, written: dict[str, Node]) -> None:
    want = arrays()
    with open_source((backend[0], str(path))) as back:
        nodes = list(back.nodes())
        check_order(nodes)
        got = {n.path: n for n in nodes}
        assert {p for p, n in got.items() if n.kind == "group"} == set(GROUPS)
        assert {p for p, n in got.items() if n.kind == "array"} == set(written)
        for group in GROUPS:
            assert same_attrs(got[group].attrs, {"group": group, **ATTRS} if group else ATTRS)
        for p in written:
            b = got[p]
            assert b.shape == want[p].shape and b.dtype == want[p].dtype, (p, b.dtype)
            value = apply_transform(b.transform, back.read(p, 0, b.rows))
            assert value.dtype == want[p].dtype
            np.testing.assert_array_equal(value, want[p], err_msg=p)
            assert same_attrs(b.attrs, array_attrs(p)), (p, b.attrs)


@pytest.mark.parametrize("backend", DESTS)
def test_destination_round_trips_dtypes_shapes_attrs_groups(backend, tmp_path):
    source = MappingSource(tree())
    dest, path = new_dest(backend, tmp_path)
    assert isinstance(dest, Destination) and dest.kind == backend[0]
    assert dest.concurrent_writes == isinstance(dest, ConcurrentDestination)
    written = write_tree(source, planned(source), dest)
    dest.flush(True)
    dest.close()
    dest.close()  # closing twice does nothing
    # every destination keeps the plain numeric types, strings, empty and 0-d arrays
    assert set(arrays()) - {"record", "text", "bytes"} <= set(written)
    assert_reads_back(backend, path, written)


@pytest.mark.parametrize("backend", DESTS)
def test_destination_check_refuses_objects_without_side_effects(backend, tmp_path):
    dest, path = new_dest(backend, tmp_path)
    try:
        before = sorted(os.listdir(path)) if path.is_dir() else path.stat().st_size
        for dtype in (np.dtype(object), np.dtypes.StringDType()):
            node = Node(path="o", kind="array", shape=(2,), dtype=dtype)
            reason = dest.check(node)
            assert isinstance(reason, str) and reason
        assert dest.check(Node(path="f", kind="array", shape=(2,), dtype=np.dtype("<f4"))) \
            is None
        after = sorted(os.listdir(path)) if path.is_dir() else path.stat().st_size
        assert after == before
    finally:
        dest.close()


@pytest.mark.parametrize("backend", DESTS)
def test_destination_resumes_what_an_earlier_run_wrote(backend, tmp_path):
    """Reopened, a destination keeps the rows of arrays of the same shape and dtype; an array
    of another shape at the same path is replaced."""
    source = MappingSource(tree())
    nodes = planned(source)
    dest, path = new_dest(backend, tmp_path)
    write_tree(source, nodes, dest, slice(0, 2))  # the first rows, then "killed"
    dest.flush(True)
    dest.close()

    class NoFirstRows(MappingSource):  # the resumed run must not need the first rows again
        def read(self, p, start, stop):
            assert start >= 2 or not nodes_by_path[p].shape, (p, start)
            return super().read(p, start, stop)

    nodes_by_path = {n.path: n for n in nodes}
    resumed = NoFirstRows(tree())
    again = planned(resumed)
    dest = reopen_dest(backend, path)
    written = write_tree(resumed, again, dest, slice(2, None))
    dest.flush(True)
    dest.close()
    assert_reads_back(backend, path, written)

    # another shape at a path: the array is replaced, not written into
    dest = reopen_dest(backend, path)
    node = Node(path="f4", kind="array", shape=(5,), dtype=np.dtype("<f4"))
    dest.array("f4", node, {})
    dest.write("f4", 0, 5, np.full(5, 7, "<f4"))
    dest.flush(True)
    dest.close()
    with open_source((backend[0], str(path))) as back:
        list(back.nodes())
        np.testing.assert_array_equal(back.read("f4", 0, 5), np.full(5, 7, "<f4"))


@pytest.mark.parametrize("backend", DESTS)
def test_concurrent_destination_takes_disjoint_rows_from_threads(backend, tmp_path):
    dest, path = new_dest(backend, tmp_path)
    if not dest.concurrent_writes:
        dest.close()
        pytest.skip(f"{backend[0]} destinations are written from one thread")
    value = np.arange(64 * 5, dtype="<f8").reshape(64, 5)
    dest.group("", {})
    dest.array("a", Node(path="a", kind="array", shape=value.shape, dtype=value.dtype), {})
    barrier = threading.Barrier(4)

    def part(i: int) -> None:
        barrier.wait()
        for start in range(i * 2, 64, 8):
            dest.write("a", start, start + 2, value[start:start + 2])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(part, range(4)))
    assert Path(dest.filename("a")).is_file()
    dest.flush(True)
    dest.close()
    with open_source((backend[0], str(path))) as back:
        np.testing.assert_array_equal(back.read("a", 0, 64), value)


# --------------------------------------------------------------------------- sources


def fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def source_path(request, tmp_path):
    """The test tree written by ``save`` (through each backend's real library) for a file
    source; None for the mapping source."""
    kind = request.param
    if kind == "mapping":
        return None
    data = tree()
    if kind.startswith("zarr"):
        path = tmp_path / "s.zarr"
        npydir.save(path, data, zarr_format=int(kind[-1]), chunks=2)
    elif kind == "hdf5-gzip":
        path = tmp_path / "s.h5"
        npydir.save(path, data, chunks=2, compression="gzip")
    else:
        path = tmp_path / ("s" + SUFFIX[kind])
        npydir.save(path, data)
    return path


def open_test_source(path: Path | None) -> Source:
    if path is None:
        return MappingSource(tree(), "<test tree>")
    return open_source((backend_of(path), str(path)))


source_cases = pytest.mark.parametrize("source_path", SOURCES, indirect=True)


@source_cases
def test_source_lists_the_tree_in_order_and_again(source_path):
    with open_test_source(source_path) as source:
        assert isinstance(source, Source)
        first = [(n.path, n.kind, n.shape, n.dtype) for n in source.nodes()]
        nodes = list(source.nodes())
        assert [(n.path, n.kind, n.shape, n.dtype) for n in nodes] == first
        check_order(nodes)
        got = {n.path: n for n in nodes}
        assert {p for p, n in got.items() if n.kind == "group"} >= set(GROUPS) - {"g/empty"}
        assert {p for p, n in got.items() if n.kind == "array"} == set(arrays())
        assert same_attrs(got[""].attrs, ATTRS)


@source_cases
def test_source_reads_rows(source_path):
    want = arrays()
    with open_test_source(source_path) as source:
        nodes = {n.path: n for n in source.nodes() if n.kind == "array"}
        for p, value in want.items():
            node = nodes[p]
            whole = apply_transform(node.transform, source.read(p, 0, node.rows))
            np.testing.assert_array_equal(whole, value, err_msg=p)
            assert whole.dtype == value.dtype
            if value.ndim and len(value) > 2:
                part = apply_transform(node.transform, source.read(p, 1, 3))
                np.testing.assert_array_equal(part, value[1:3], err_msg=p)


@source_cases
def test_source_read_into_and_copy_rows_agree_with_read_from_threads(source_path, tmp_path):
    """read_into fills ``out`` exactly as read gives the rows (or declines), copy_rows_to
    copies exactly the stored row bytes (or declines), from several threads at once."""
    with open_test_source(source_path) as source:
        nodes = [n for n in source.nodes()
                 if n.kind == "array" and n.shape and n.transform is None and n.nbytes]

        def one(node: Node, start: int, stop: int) -> None:
            want = np.ascontiguousarray(source.read(node.path, start, stop), node.dtype)
            out = np.empty((stop - start,) + node.shape[1:], node.dtype)
            if source.read_into(node.path, start, stop, out):
                np.testing.assert_array_equal(out, want, err_msg=node.path)
            target = tmp_path / f"{node.path.replace('/', '_')}.{start}.bin"
            fd = os.open(target, os.O_RDWR | os.O_CREAT)
            try:
                os.ftruncate(fd, 8 + want.nbytes)
                if source.copy_rows_to(node.path, start, stop, fd, 8):
                    assert os.pread(fd, want.nbytes, 8) == want.tobytes(), node.path
            finally:
                os.close(fd)

        jobs = [(n, s, min(s + 2, n.rows)) for n in nodes for s in range(0, n.rows, 2)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda job: one(*job), jobs * 3))


@source_cases
def test_source_refuses_a_path_that_is_not_an_array(source_path):
    with open_test_source(source_path) as source:
        list(source.nodes())
        name = str(source_path) if source_path is not None else "<test tree>"
        out = np.empty(2, "<f4")
        for path, found in (("nope", "nothing"), ("g/nope", "nothing"), ("g", "group")):
            with pytest.raises(MemberNotFoundError) as err:
                source.read(path, 0, 1)
            text = str(err.value)
            assert "\n" not in text and name in text and f"/{path}" in text, text
            assert found in text.lower(), text
            # the fast paths raise the same, or decline and leave it to read()
            for call in (lambda p=path: source.read_into(p, 0, 1, out),
                         lambda p=path: source.copy_rows_to(p, 0, 1, -1, 0)):
                try:
                    assert call() is False
                except MemberNotFoundError as exc:
                    assert str(exc) == text


@source_cases
def test_source_reopens_from_its_spec(source_path):
    """A file source's spec opens an equivalent source that reads without listing first
    (a Dask worker); an in-memory source's spec names it but cannot be reopened."""
    with open_test_source(source_path) as source:
        nodes = {n.path: n for n in source.nodes() if n.kind == "array"}
        if source_path is None:
            assert source.spec[0] == "mapping"
            with pytest.raises(ConversionError):
                open_source(source.spec)
            return
        assert source.spec[0] == source.kind
        with open_source(source.spec) as twin:
            for p, node in nodes.items():
                np.testing.assert_array_equal(twin.read(p, 0, node.rows),
                                              source.read(p, 0, node.rows), err_msg=p)


@source_cases
def test_source_close_releases_its_files_and_is_idempotent(source_path):
    before = fds()
    source = open_test_source(source_path)
    for node in source.nodes():
        if node.kind == "array":
            source.read(node.path, 0, node.rows)
    source.close()
    source.close()
    assert fds() <= before
    with open_test_source(source_path) as source:
        list(source.nodes())
    assert fds() <= before


def test_registry_refuses_unknown_kinds(tmp_path):
    for opener in (lambda: open_source(("tape", "x")),
                   lambda: open_destination("tape", tmp_path, options={})):
        with pytest.raises(ConversionError, match="'tape'"):
            opener()
