# `make demo` and `make test` each work on a fresh machine with only Python 3.10+ and a C compiler:
# they create .venv if it is missing, install npydir with its extras and test tools, build the
# Cython kernels, then run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.npydir-installed
BUILT  := $(VENV)/.npydir-built
PYTEST_ARGS ?=

.PHONY: setup build typecheck test demo bench limit hostile clean interop interop-run

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Build tools first, then the package without build isolation so the extension is compiled
# against the numpy that runs it. editable_mode=compat puts this directory on the path (a .pth
# entry), where type checkers find npydir and its py.typed; the default editable install hides
# the package behind an import hook that mypy and pyright cannot follow. torch, keras (tested
# on its torch backend), atheris (coverage-guided fuzzing in tests/hostile) and tensorstore
# (one row of `npydir bench`) are optional: where one cannot be installed, its tests are
# skipped with a reason. torch is the CPU wheel of 2.13.0 this machine kind ships.
$(STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=77" wheel "Cython>=3.0" "numpy>=1.24"
	$(BIN)/python -m pip install --quiet "torch==2.13.0" || echo "npydir: torch not installable here; torch tests will be skipped"
	$(BIN)/python -m pip install --quiet "keras>=3" || echo "npydir: keras not installable here; keras tests will be skipped"
	$(BIN)/python -m pip install --quiet "atheris>=2.3" || echo "npydir: atheris not installable here; its fuzz runs will be skipped"
	$(BIN)/python -m pip install --quiet "tensorstore>=0.1.60" || echo "npydir: tensorstore not installable here; its bench row will be skipped"
	$(BIN)/python -m pip install --quiet "obstore>=0.6" "moto[server]>=5" "s3fs" || echo "npydir: obstore/moto not installable here; remote tests will be skipped"
	$(BIN)/python -m pip install --quiet --no-build-isolation -e ".[all,test]" --config-settings editable_mode=compat
	touch $(STAMP)

# The kernels are rebuilt in place whenever a .pyx, .c or .h changed since the last build, without a
# full reinstall.
$(BUILT): $(STAMP) $(wildcard src_cython/*.pyx src_cython/c/*.h src_cython/c/*.c)
	$(BIN)/python setup.py --quiet build_ext --inplace
	touch $(BUILT)

# zarr-python 2.18, what an environment with DAS has, for a second run of the zarr tests
# (`-m zarr`, this directory first on the path; `-p no:zarr` drops zarr 3's pytest plugin;
# tests/_zarr.py fails the run if NPYDIR_TEST_ZARR is not the zarr it finds).
# --no-deps keeps the venv's numpy; the rest are zarr 2's own dependencies.
ZARR2 := .zarr2-site
$(ZARR2)/.installed: $(STAMP)
	rm -rf $(ZARR2)
	$(BIN)/python -m pip install --quiet --no-deps --target $(ZARR2) "zarr>=2.18,<3" \
		"numcodecs>=0.10,<0.16,!=0.14.0,!=0.14.1" asciitree fasteners deprecated wrapt
	touch $@

setup: $(BUILT)

build: $(BUILT)

# mypy over the package (settings in pyproject.toml), the compiled kernels against their .pyi
# stubs (stubtest), then the README's examples with npydir as installed above, as a user's mypy
# sees it (tests/test_readme_types.py).
typecheck: setup
	$(BIN)/python -m mypy
	$(BIN)/python -m mypy.stubtest --mypy-config-file pyproject.toml --ignore-missing-stub npydir.kernel._windows npydir.kernel._feistel \
		npydir.loader._buffers
	NPYDIR_TYPECHECK_INSTALLED=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_readme_types.py

test: setup typecheck $(ZARR2)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	NPYDIR_TEST_ZARR=2 PYTHONPATH=$(ZARR2):. $(BIN)/python -m pytest -p no:zarr -m zarr $(PYTEST_ARGS)

demo: setup
	$(BIN)/python -m npydir demo

bench: setup
	$(BIN)/python -m pytest benchmarks --benchmark-enable --benchmark-only

# The kernel against the plain-C gather of benchmarks/c/gather_limit.c, same run, ratio table.
limit: setup
	$(BIN)/python -m pytest benchmarks/bench_limit.py --benchmark-enable -s -p no:cacheprovider

hostile: setup
	$(BIN)/python -m pytest -m hostile -s

# `make interop` checks npydir against the real DAS package, which needs Python >= 3.12: it
# builds .venv-das with the first Python >= 3.12 that tests/interop/find-python finds (or
# INTEROP_PYTHON), installs das without its declared dependencies (torch with CUDA and the GUI
# stack) plus the data-side packages its modules import (tests/interop/requirements.txt), and
# runs tests/interop. Without such a Python it says so in one line and succeeds.
DAS_VERSION ?= 0.33.2
DAS_VENV    ?= .venv-das
DAS_BIN     := $(DAS_VENV)/bin
DAS_STAMP   := $(DAS_VENV)/.npydir-installed
DAS_BUILT   := $(DAS_VENV)/.npydir-built

interop:
	@py="$$(sh tests/interop/find-python)" || exit 1; \
	if [ -z "$$py" ]; then \
		echo "npydir: interop suite skipped: no Python >= 3.12 found (das $(DAS_VERSION) requires it; set INTEROP_PYTHON=/path/to/python3.12)"; \
	else \
		$(MAKE) --no-print-directory interop-run INTEROP_PYTHON="$$py"; \
	fi

$(DAS_BIN)/python:
	$(INTEROP_PYTHON) -m venv $(DAS_VENV)

$(DAS_STAMP): $(DAS_BIN)/python tests/interop/requirements.txt pyproject.toml setup.py
	$(DAS_BIN)/python -m pip install --quiet --upgrade pip "setuptools>=77" wheel
	$(DAS_BIN)/python -m pip install --quiet -r tests/interop/requirements.txt
	$(DAS_BIN)/python -m pip install --quiet --no-deps "das==$(DAS_VERSION)"
	rm -f src_cython/*.c
	$(DAS_BIN)/python -m pip install --quiet --no-build-isolation --no-deps -e .
	rm -f src_cython/*.c
	touch $(DAS_STAMP)

# The C that Cython generates from src_cython/*.pyx depends on the numpy it was generated with
# (numpy's .pxd), and this venv's numpy may differ from .venv's: each build here generates it
# afresh and removes it, so neither venv compiles the other's.
$(DAS_BUILT): $(DAS_STAMP) $(wildcard src_cython/*.pyx src_cython/c/*.h src_cython/c/*.c)
	rm -f src_cython/*.c
	$(DAS_BIN)/python setup.py --quiet build_ext --inplace
	rm -f src_cython/*.c
	touch $(DAS_BUILT)

interop-run: $(DAS_BUILT)
	KERAS_BACKEND=jax $(DAS_BIN)/python -m pytest tests/interop $(PYTEST_ARGS)

clean:
	rm -rf build *.egg-info npydir/kernel/*.so src_cython/*.c demo-output $(ZARR2)
