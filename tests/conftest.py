"""Shared pytest fixtures and settings."""

from __future__ import annotations

import importlib.util
import os

from hypothesis import HealthCheck, settings

# CI runs on 2 shared cores: keep property tests bounded and free of wall-clock deadlines.
settings.register_profile(
    "ci",
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev",
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# tests/interop checks npydir against the real DAS package, which needs Python >= 3.12 and its
# own environment: `make interop` builds that and runs it. Elsewhere it is not collected.
# (tests/das, the tests of npydir.das, would pass for a namespace package named das: the real
# one is a regular package, with an origin.)
_das = importlib.util.find_spec("das")
if _das is None or _das.origin is None:
    collect_ignore = ["interop"]
