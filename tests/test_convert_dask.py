"""convert(client=...) spreads block copies over Dask worker processes, byte for byte."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import npydir

from _convert_fixtures import assert_same_tree, make_hdf5, make_zarr, tree_of

distributed = pytest.importorskip("dask.distributed")
pytest.importorskip("zarr")
pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                           dashboard_address=None, silence_logs=40)
        c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.mark.parametrize("kind", ["zarr", "hdf5"])
def test_dask_conversion_matches_single_process(tmp_path, client, kind):
    src = tmp_path / ("d.zarr" if kind == "zarr" else "d.h5")
    (make_zarr if kind == "zarr" else make_hdf5)(src, chunk_rows=250)
    npydir.convert(src, tmp_path / "local.npy", progress=False, memory_budget=40_000)
    report = npydir.convert(src, tmp_path / "dask.npy", progress=False, memory_budget=40_000,
                            client=client, verify=True)
    assert report.blocks_written > 4
    # the work really ran in both worker processes, not in this one
    worker_pids = set(client.run(lambda: __import__("os").getpid()).values())
    assert len(worker_pids) == 2
    opened = client.run(lambda: len(__import__("sys").modules["npydir.convert"]._WORKER_SOURCES))
    assert sum(opened.values()) >= 1
    assert not __import__("sys").modules["npydir.convert"]._WORKER_SOURCES  # not done here
    assert_same_tree(tree_of(tmp_path / "local.npy"), tree_of(tmp_path / "dask.npy"))
    for name in ("x", "y"):
        a = (tmp_path / "local.npy" / "train" / f"{name}.npy").read_bytes()
        b = (tmp_path / "dask.npy" / "train" / f"{name}.npy").read_bytes()
        assert a == b


def test_dask_conversion_resumes_from_journal(tmp_path, client, monkeypatch):
    src = tmp_path / "d.zarr"
    make_zarr(src, chunk_rows=250)
    import sys

    C = sys.modules["npydir.convert"]
    # a first run that "dies" after some blocks: keep only the first half of the todo list
    real = C._run_dask

    def half(client_, source, dest, mapping, todo, journal, bar, report, *rest):
        real(client_, source, dest, mapping, todo[: len(todo) // 2], journal, bar, report,
             *rest)
        raise KeyboardInterrupt

    monkeypatch.setattr(C, "_run_dask", half)
    with pytest.raises(KeyboardInterrupt):
        npydir.convert(src, tmp_path / "out.npy", progress=False, memory_budget=40_000,
                       client=client)
    monkeypatch.setattr(C, "_run_dask", real)
    report = npydir.convert(src, tmp_path / "out.npy", progress=False, memory_budget=40_000,
                            client=client, verify=True)
    assert report.resumed and report.blocks_skipped > 0 and report.blocks_written > 0
    x = np.load(tmp_path / "out.npy" / "train" / "x.npy")
    assert x.shape == (3000, 3)
