"""convert(client=...) spreads block copies over Dask worker processes, byte for byte."""

from __future__ import annotations

import os
import sys
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
    with distributed.get_task_stream(client) as stream:
        report = npydir.convert(src, tmp_path / "dask.npy", progress=False,
                                memory_budget=40_000, client=client, verify=True)
    assert report.blocks_written > 4
    # every block ran as a task in a worker process, none in this one
    ran_on = [t["worker"] for t in stream.data if "_dask_copy" in str(t["key"])]
    assert len(ran_on) == report.blocks_written
    pids = client.run(os.getpid)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    assert set(ran_on) <= set(pids)
    # and the sources the workers opened were closed when the conversion ended
    assert client.run(lambda: len(sys.modules["npydir.conversion.engine"]._WORKER_SOURCES)) == {
        w: 0 for w in pids
    }
    assert_same_tree(tree_of(tmp_path / "local.npy"), tree_of(tmp_path / "dask.npy"))
    for name in ("x", "y"):
        a = (tmp_path / "local.npy" / "train" / f"{name}.npy").read_bytes()
        b = (tmp_path / "dask.npy" / "train" / f"{name}.npy").read_bytes()
        assert a == b


def test_dask_conversion_resumes_from_journal(tmp_path, client, monkeypatch):
    src = tmp_path / "d.zarr"
    make_zarr(src, chunk_rows=250)
    import sys

    C = sys.modules["npydir.conversion.engine"]
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


def test_a_rewritten_source_is_read_anew(tmp_path, client):
    """Workers must not keep a conversion's sources open: a second conversion of a file
    rewritten at the same path would read the old file through the stale handle."""
    import h5py

    src = tmp_path / "d.h5"
    for run, scale in enumerate((1, -1)):
        x = scale * np.arange(3000 * 3, dtype=np.float32).reshape(3000, 3)
        tmp = tmp_path / "new.h5"
        with h5py.File(tmp, "w") as f:
            f.create_dataset("x", data=x, chunks=(250, 3))
        os.replace(tmp, src)  # a new file (inode) at the same path
        dst = tmp_path / f"out{run}.npy"
        npydir.convert(src, dst, progress=False, memory_budget=40_000, client=client)
        np.testing.assert_array_equal(np.load(dst / "x.npy"), x)


def test_in_process_workers_leave_no_open_sources(tmp_path):
    """With an in-process cluster (the CLI's ``--scheduler`` tests use one) the workers'
    source cache is this process's: a finished conversion must leave it empty (it used to
    keep every source open for good)."""
    src = tmp_path / "d.h5"
    make_hdf5(src, chunk_rows=250)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                      dashboard_address=None, silence_logs=40) as cluster, \
                distributed.Client(cluster) as c:
            report = npydir.convert(src, tmp_path / "out.npy", progress=False,
                                    memory_budget=40_000, client=c, verify=True)
    assert report.blocks_written > 4
    assert not sys.modules["npydir.conversion.engine"]._WORKER_SOURCES
