"""Faults of a remote store: a killed server, slow and stalled answers, cut-off bodies, an
object replaced between reading its header and its data.  Each ends in an error (or the
right data), never a hang or wrong data."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import npydir
from npydir.errors import RemoteChangedError, RemotePermissionError, RemoteUnavailableError

from _servers import Nginx, nginx_binary

FAST_FAIL = {"timeout": 2, "connect_timeout": 1, "retries": 1}


def test_slow_server_gives_the_right_windows(proxy, local_store):
    proxy.delay = 0.05
    r = npydir.open(f"{proxy.url}/data/ds.npy", storage_options={"timeout": 10})
    starts = np.random.default_rng(0).integers(0, 40_000, 64)
    np.testing.assert_array_equal(
        npydir.gather_windows(r["train/x"], starts, 32),
        npydir.gather_windows(npydir.open(local_store)["train/x"], starts, 32),
    )


def test_stalled_server_errors_instead_of_hanging(proxy):
    r = npydir.open(f"{proxy.url}/data/ds.npy", storage_options=FAST_FAIL)
    x = r["train/x"]
    x.shape
    proxy.stall = True
    with pytest.raises(RemoteUnavailableError, match="train/x.npy"):
        npydir.gather_windows(x, [0, 100, 5000], 16)


def test_cut_off_bodies_are_an_error_not_short_data(proxy):
    r = npydir.open(f"{proxy.url}/data/ds.npy", storage_options=FAST_FAIL)
    x = r["train/x"]
    x.shape
    proxy.truncate = 300  # the status line and headers pass, the body does not
    with pytest.raises(RemoteUnavailableError, match="train/x.npy"):
        x[0:10_000]


def test_server_killed_mid_epoch(tmp_path, local_store):
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    www = tmp_path / "www"
    shutil.copytree(local_store, www / "ds.npy")
    server = Nginx(www, tmp_path / "nginx")
    try:
        r = npydir.open(f"{server.url}/ds.npy", storage_options=FAST_FAIL)
        batches = npydir.Batches(r["train/x"], r["train/y"], window=64, batch_size=32, seed=0)
        it = iter(batches)
        first = next(it)
        assert first[0].shape == (32, 64, 3)
        server.proc.kill()
        server.proc.wait()
        with pytest.raises(RemoteUnavailableError):
            for _ in it:
                pass
    finally:
        server.stop()


def test_replaced_object_is_an_error_http(nginx, web_root, local_store):
    target = web_root / "mutable" / "ds.npy"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(local_store, target)
    r = npydir.open(f"{nginx.url}/mutable/ds.npy", storage_options={"retries": 0})
    x = r["train/x"]
    x.shape  # header, size and ETag read now
    path = target / "train" / "x.npy"
    data = np.load(path)
    data[:] = 7  # same size, other content
    np.save(path.with_suffix(".tmp.npy"), data)
    os.replace(path.with_suffix(".tmp.npy"), path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))  # nginx's ETag: mtime-size
    with pytest.raises(RemoteChangedError, match="changed on the server"):
        npydir.gather_windows(x, [0, 1000], 16)
    # a fresh store reads the new version
    fresh = npydir.open(f"{nginx.url}/mutable/ds.npy")
    assert (fresh["train/x"][:3] == 7).all()


def test_replaced_object_is_an_error_s3(moto_server, s3_store, local_store):
    s3 = moto_server.client()
    moto_server.upload_dir(local_store, "npydir-mutable", "ds.npy")
    _, options = s3_store
    r = npydir.open("s3://npydir-mutable/ds.npy", storage_options=options)
    x = r["train/x"]
    x.shape
    arr = np.load(local_store / "train" / "x.npy")
    arr[:] = 7
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    s3.put_object(Bucket="npydir-mutable", Key="ds.npy/train/x.npy", Body=buf.getvalue())
    with pytest.raises(RemoteChangedError):
        npydir.gather_windows(x, [0, 1000], 16)


def test_dead_endpoint_errors_within_bounded_time():
    from _servers import free_port

    url = f"http://127.0.0.1:{free_port()}/ds.npy"  # nothing listens there
    with pytest.raises((RemoteUnavailableError, FileNotFoundError)):
        npydir.open(url, storage_options=FAST_FAIL)


def test_5xx_answers_are_retried(proxy, local_store):
    r = npydir.open(f"{proxy.url}/data/ds.npy", storage_options={"timeout": 10, "retries": 3})
    x = r["train/x"]
    x.shape
    proxy.fail_next = 2
    r2 = npydir.open(f"{proxy.url}/data/ds.npy", storage_options={"timeout": 10, "retries": 3})
    got = r2["train/x"][100:200]  # new store: new connections, the first two get a 503
    np.testing.assert_array_equal(got, npydir.open(local_store)["train/x"][100:200])
    assert proxy.failed == 2


def test_5xx_beyond_the_retries_is_an_error(proxy):
    proxy.fail_next = 100
    with pytest.raises(RemoteUnavailableError, match="ds.npy"):
        npydir.open(f"{proxy.url}/data/ds.npy", storage_options={"timeout": 5, "retries": 1})


@pytest.mark.parametrize("status", [b"403 Forbidden", b"401 Unauthorized"])
def test_denied_is_a_permission_error_naming_the_file(proxy, status):
    proxy.fail_status = status
    proxy.fail_next = 100
    with pytest.raises(RemotePermissionError, match=r"ds\.npy.*check the credentials"):
        npydir.open(f"{proxy.url}/data/ds.npy", storage_options={"timeout": 5, "retries": 1})


def test_5xx_is_unavailable_whatever_digits_the_address_holds(proxy):
    """The status decides, not a '403' in the port, the path or a timing of the message."""
    proxy.fail_next = 100
    with pytest.raises(RemoteUnavailableError, match="ds403.npy"):
        npydir.open(f"{proxy.url}/data403/ds403.npy", storage_options={"timeout": 5, "retries": 1})
