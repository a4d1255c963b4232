"""The interop suite: npydir against the real DAS package (``das==0.33.2``).

It runs in the Python >= 3.12 environment ``make interop`` builds (``.venv-das``), where
``das`` is installed without its declared dependencies; tests/conftest.py keeps it out of
runs where ``das`` is not importable. Keras runs on the jax backend there (DAS itself
defaults to torch, which that environment does not install).
"""

from __future__ import annotations

import importlib.util
import os

import pytest

if importlib.util.find_spec("das") is None:
    # asked for explicitly in an environment without DAS: collect nothing and say why
    collect_ignore_glob = ["test_*.py"]

    def pytest_report_header(config):
        return "interop suite not run: the das package is not installed here; run `make interop`"

os.environ.setdefault("KERAS_BACKEND", "jax")

from _interop import DAS_VERSION  # noqa: E402


@pytest.fixture(scope="session")
def das():
    """The real DAS package, checked to be the version this suite was written against."""
    import das as das_pkg
    import das.annot
    import das.io
    import das.make_dataset
    import das.npy_dir

    assert das_pkg.__version__ == DAS_VERSION, (
        f"the interop suite checks das {DAS_VERSION}, found {das_pkg.__version__}; "
        f"install it with `make interop`"
    )
    return das_pkg
