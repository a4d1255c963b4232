"""Remote store URLs and ``storage_options`` (fsspec/s3fs vocabulary) -> an obstore store.

Accepted URLs: ``s3://bucket/path/ds.npy`` and ``http://`` / ``https://`` URLs of a server that
honours ``Range`` requests.  ``storage_options`` uses the names fsspec and s3fs use, so the same
dict works for zarr, s3fs and npydir:

==================  ============================================================
``key``             access key id (else the ``AWS_ACCESS_KEY_ID`` environment)
``secret``          secret access key (``AWS_SECRET_ACCESS_KEY``)
``token``           session token (``AWS_SESSION_TOKEN``)
``anon``            ``True``: unsigned requests (public buckets)
``endpoint_url``    S3-compatible endpoint (MinIO, Ceph, moto, ...); also accepted
                    inside ``client_kwargs``
``client_kwargs``   ``{"endpoint_url": ..., "region_name": ...}``
``region_name``     bucket region (else ``AWS_REGION``/``AWS_DEFAULT_REGION``, else us-east-1)
==================  ============================================================

and npydir's own settings for the transfer (all optional):

==================  ===================================================================
``timeout``         seconds one request may take, connection to last byte (default 30)
``connect_timeout`` seconds to open a connection (default 5)
``retries``         retries of a request failing with 5xx, a timeout or a cut-off body
                    (default 3), with exponential backoff from 0.1 s
``concurrency``     range requests in flight at once per call (default 64)
==================  ===================================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from .._optional import require

SCHEMES = ("s3", "http", "https")

_S3_KEYS = {"key", "secret", "token", "anon", "endpoint_url", "client_kwargs", "region_name"}
_OWN_KEYS = {"timeout", "connect_timeout", "retries", "concurrency"}


def is_remote_url(path: Any) -> bool:
    """True for a ``str`` of the form ``s3://...``, ``http://...`` or ``https://...``."""
    if not isinstance(path, str) or "://" not in path:
        return False
    return path.split("://", 1)[0].lower() in SCHEMES


@dataclass(frozen=True)
class Settings:
    """Transfer settings taken from ``storage_options``."""

    timeout: float = 30.0
    connect_timeout: float = 5.0
    retries: int = 3
    concurrency: int = 64

    @property
    def deadline(self) -> float:
        """Longest one call may wait for all its requests (every retry and its backoff)."""
        return (self.timeout + self.connect_timeout) * (self.retries + 1) + 2.0 * self.retries + 5


def _positive(options: dict, name: str, default: float, kind: type) -> Any:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"storage_options[{name!r}] must be a non-negative number, got {value!r}")
    if kind is int and int(value) != value:
        raise ValueError(f"storage_options[{name!r}] must be an integer, got {value!r}")
    return kind(value)


def settings_from(options: dict) -> Settings:
    s = Settings(
        timeout=_positive(options, "timeout", 30.0, float),
        connect_timeout=_positive(options, "connect_timeout", 5.0, float),
        retries=_positive(options, "retries", 3, int),
        concurrency=max(1, _positive(options, "concurrency", 64, int)),
    )
    if s.timeout == 0 or s.connect_timeout == 0:
        raise ValueError("storage_options: timeout and connect_timeout must be > 0")
    return s


def fsspec_options(storage_options: dict | None) -> dict:
    """``storage_options`` for fsspec (zarr's remote stores): npydir's own keys removed."""
    return {k: v for k, v in (storage_options or {}).items() if k not in _OWN_KEYS}


def split_url(url: str) -> tuple[str, str, str]:
    """``(scheme, authority, path)`` of a remote URL, the path without slashes at either end.

    For ``s3://bucket/a/b.npy``: ``("s3", "bucket", "a/b.npy")``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"{url!r}: unsupported URL scheme {scheme!r}; expected one of {SCHEMES}")
    if not parts.netloc:
        what = "a bucket" if scheme == "s3" else "a host"
        raise ValueError(f"{url!r}: the URL names no {what}")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: query strings and fragments are not supported")
    path = parts.path.strip("/")
    if any(p in (".", "..") for p in path.split("/")):
        raise ValueError(f"{url!r}: '.' and '..' are not allowed in a store URL")
    return scheme, parts.netloc, path


def _client_options(settings: Settings, allow_http: bool) -> dict:
    return {
        "timeout": timedelta(seconds=settings.timeout),
        "connect_timeout": timedelta(seconds=settings.connect_timeout),
        "allow_http": allow_http,
        "pool_max_idle_per_host": str(max(8, settings.concurrency)),
    }


def _retry_config(settings: Settings) -> dict:
    # the library's own retries cover connecting and 5xx answers; npydir retries cut-off
    # bodies on top (see _client), with the same count
    return {
        "max_retries": settings.retries,
        "backoff": {
            "init_backoff": timedelta(seconds=0.1),
            "max_backoff": timedelta(seconds=2),
            "base": 2,
        },
        "retry_timeout": timedelta(seconds=settings.deadline),
    }


def make_store(url: str, storage_options: dict | None) -> tuple[Any, Settings]:
    """An obstore store rooted at the store URL, and the transfer settings.

    Raises
    ------
    ValueError
        Unknown ``storage_options`` keys (the message lists the accepted ones), bad values.
    MissingDependencyError
        obstore is not installed (``pip install "npydir[remote]"``).
    """
    options = dict(storage_options or {})
    scheme, host, path = split_url(url)
    allowed = _OWN_KEYS | (_S3_KEYS if scheme == "s3" else {"client_kwargs"})
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"storage_options for {url!r}: unknown key(s) {unknown}; accepted: {sorted(allowed)}"
        )
    settings = settings_from(options)
    store_mod = require("obstore.store", "reading stores over s3:// and http(s)://")
    if scheme != "s3":
        if options.get("client_kwargs"):
            raise ValueError(f"storage_options for {url!r}: client_kwargs is for s3:// only")
        base = f"{scheme}://{host}/{path}".rstrip("/")
        store = store_mod.HTTPStore.from_url(
            base,
            client_options=_client_options(settings, allow_http=scheme == "http"),
            retry_config=_retry_config(settings),
        )
        return store, settings
    client_kwargs = dict(options.get("client_kwargs") or {})
    endpoint = options.get("endpoint_url") or client_kwargs.pop("endpoint_url", None)
    region = (
        options.get("region_name")
        or client_kwargs.pop("region_name", None)
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    config: dict[str, Any] = {"region": region}
    if options.get("anon"):
        config["skip_signature"] = True
    else:
        for ours, theirs, env in (
            ("key", "access_key_id", "AWS_ACCESS_KEY_ID"),
            ("secret", "secret_access_key", "AWS_SECRET_ACCESS_KEY"),
            ("token", "session_token", "AWS_SESSION_TOKEN"),
        ):
            value = options.get(ours) or os.environ.get(env)
            if value:
                config[theirs] = value
    if endpoint:
        config["endpoint"] = endpoint
        config["virtual_hosted_style_request"] = False
    store = store_mod.S3Store(
        host,
        prefix=path or None,
        config=config,
        client_options=_client_options(settings, allow_http=str(endpoint).startswith("http:")),
        retry_config=_retry_config(settings),
    )
    return store, settings
