"""Real servers for the remote tests and benchmark, each in its own process on 127.0.0.1.

* :class:`MotoServer` -- moto's S3 server mode (``python -m moto.server``);
* :class:`Nginx` -- Debian's nginx serving a directory (Range, ETag, If-Match built in),
  with its own ``nginx.conf`` in a temporary directory;
* :class:`LatencyProxy` -- a TCP proxy adding a fixed delay before forwarding each chunk the
  client sends (one request = one delay), that can also stall, cut replies short or die.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server for {url} did not come up within {timeout} s")


class MotoServer:
    """moto's S3 endpoint in a subprocess; ``endpoint`` is its URL."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        _wait_http(self.endpoint + "/moto-api/", self.proc)

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
            aws_secret_access_key="testing", region_name="us-east-1",
        )  # fmt: skip

    def upload_dir(self, local: Path, bucket: str, prefix: str) -> None:
        """Upload a directory tree as ``aws s3 sync`` would (every file, dot files too)."""
        s3 = self.client()
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        for path in sorted(Path(local).rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(local).as_posix()}".lstrip("/")
                s3.upload_file(str(path), bucket, key)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 512; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
        location /forbidden/ {{ deny all; }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
    )


class Nginx:
    """nginx serving ``root`` on a free port of 127.0.0.1; ``url`` is its base URL."""

    def __init__(self, root: Path, tmp: Path) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed")
        self.root = Path(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tmp.mkdir(parents=True, exist_ok=True)
        conf = tmp / "nginx.conf"
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=self.port, root=self.root, user=user))
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_http(self.url + "/", self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class LatencyProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target_port``.

    ``delay``: seconds slept before forwarding each chunk a client sends (each HTTP request
    pays it once).  ``truncate``: when set, replies are cut after that many bytes and the
    connection closed.  ``stall``: replies are not forwarded at all (a server that hangs).
    ``kill()`` closes the listener and every connection (a dead server).
    """

    def __init__(self, target_port: int, delay: float = 0.0) -> None:
        self.target = target_port
        self.delay = delay
        self.truncate: int | None = None
        self.stall = False
        #: answer this many of the next connections with ``fail_status``
        self.fail_next = 0
        self.fail_status = b"503 Service Unavailable"
        self.failed = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.bytes_down = 0
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._dead = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._dead:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                fail = self.fail_next > 0
                if fail:
                    self.fail_next -= 1
                    self.failed += 1
            if fail:
                threading.Thread(target=self._unavailable, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks.update((client, upstream))
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    def _unavailable(self, client: socket.socket) -> None:
        try:
            client.recv(65536)
            client.sendall(b"HTTP/1.1 " + self.fail_status + b"\r\nContent-Length: 0\r\n"
                           b"Connection: close\r\n\r\n")
        except OSError:
            pass
        finally:
            client.close()

    def _up(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close(src, dst)

    def _down(self, src: socket.socket, dst: socket.socket) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                while self.stall and not self._dead:
                    time.sleep(0.05)
                if self.truncate is not None:
                    data = data[: max(0, self.truncate - sent)]
                    if not data:
                        break
                dst.sendall(data)
                sent += len(data)
                with self._lock:
                    self.bytes_down += len(data)
                if self.truncate is not None and sent >= self.truncate:
                    break
        except OSError:
            pass
        finally:
            self._close(src, dst)

    def _close(self, *socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
            with self._lock:
                self._socks.discard(s)

    def kill(self) -> None:
        self._dead = True
        self.listener.close()
        with self._lock:
            socks = list(self._socks)
        self._close(*socks)
