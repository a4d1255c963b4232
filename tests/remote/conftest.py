"""Session-scoped real servers for the remote tests: moto's S3 server and nginx, each in its
own process on 127.0.0.1, serving the same local store (``local_store``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _servers import LatencyProxy, MotoServer, Nginx, nginx_binary  # noqa: E402

import npydir  # noqa: E402
import npydir.remote  # noqa: E402

BUCKET = "npydir-test"
S3_OPTIONS_BASE = {"key": "testing", "secret": "testing", "timeout": 20, "retries": 2}


def make_store(path: Path) -> Path:
    """The store every remote test reads: groups, arrays of several dtypes, attrs."""
    rng = np.random.default_rng(0)
    with npydir.open(path, "w") as root:
        root.attrs.update(samplerate_x_Hz=10_000, class_names=["noise", "song"], note="é ok")
        root.create_dataset("train/x", data=rng.standard_normal((50_000, 3)).astype("f4"))
        root.create_dataset("train/y", data=np.eye(2, dtype="f4")[rng.integers(0, 2, 50_000)])
        root.create_dataset("train/i16", data=rng.integers(-30000, 30000, (20_000, 2), dtype="i2"))
        root.create_dataset("val/x", data=np.arange(1000, dtype="f8"))
        root.create_dataset("val/cube", data=rng.standard_normal((100, 4, 3)).astype("f4"))
        root["train/x"].attrs["unit"] = "V"
        root.create_group("empty")
        root["empty"].attrs["why"] = "a group without arrays"
    npydir.remote.write_manifest(path)
    return path


@pytest.fixture(scope="session")
def local_store(tmp_path_factory) -> Path:
    pytest.importorskip("obstore", reason="the remote extra (obstore) is not installed")
    return make_store(tmp_path_factory.mktemp("remote") / "ds.npy")


@pytest.fixture(scope="session")
def moto_server():
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    pytest.importorskip("boto3", reason="moto[server] is not installed")
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_store(moto_server, local_store):
    """``(url, storage_options)`` of the store uploaded to moto."""
    moto_server.upload_dir(local_store, BUCKET, "data/ds.npy")
    return f"s3://{BUCKET}/data/ds.npy", dict(S3_OPTIONS_BASE, endpoint_url=moto_server.endpoint)


@pytest.fixture(scope="session")
def web_root(tmp_path_factory, local_store) -> Path:
    """nginx's document root: the store at /data/ds.npy and a forbidden copy."""
    import shutil

    root = tmp_path_factory.mktemp("www")
    shutil.copytree(local_store, root / "data" / "ds.npy")
    shutil.copytree(local_store, root / "forbidden" / "ds.npy")
    return root


@pytest.fixture(scope="session")
def nginx(tmp_path_factory, web_root):
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx); http(s):// tests skipped")
    server = Nginx(web_root, tmp_path_factory.mktemp("nginx"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def http_store(nginx):
    return f"{nginx.url}/data/ds.npy", {"timeout": 20, "retries": 2}


@pytest.fixture(params=["s3", "http"])
def remote(request, local_store):
    """``(url, storage_options)`` of the same store on each server."""
    return request.getfixturevalue("s3_store" if request.param == "s3" else "http_store")


@pytest.fixture
def proxy(nginx):
    p = LatencyProxy(nginx.port)
    yield p
    p.kill()
