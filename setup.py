"""Build the Cython extensions: ``src_cython/<name>.pyx`` becomes ``npydir.kernel.<name>`` (the
window and permutation kernels) or, for the loader's batch-memory pool, ``npydir.loader.<name>``.

The window kernel's C lives in ``src_cython/c/``: headers of inline primitives (prefetch,
streaming stores, float16 conversion, the SIGBUS guard) and the helper-thread pool and
F16C converter as ``.c`` files compiled into ``npydir.kernel._windows``.  A compile failure fails
the install: there is no pure-Python fallback for a kernel, because a silently slow kernel is
worse than a loud error.  ``NPYDIR_ASAN=1`` builds with AddressSanitizer (the kernel safety
tests do).
"""

import os
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
C_DIR = HERE / "src_cython" / "c"
#: the C files compiled into each extension beside its .pyx
C_SOURCES = {"_windows": ["npydir_pool.c", "npydir_runner.c", "npydir_half.c"]}
#: the subpackage of each extension that is not the kernel's
PACKAGE = {"_buffers": "npydir.loader"}


def extensions() -> list:
    compile_args = ["-O3"]
    link_args = []
    if os.environ.get("NPYDIR_ASAN", "") not in ("", "0"):
        compile_args += ["-fsanitize=address", "-fno-omit-frame-pointer", "-O1", "-g"]
        link_args += ["-fsanitize=address"]
    headers = [str(h.relative_to(HERE)) for h in sorted(C_DIR.glob("*.h"))]
    exts = []
    for pyx in sorted(HERE.glob("src_cython/*.pyx")):
        c_files = [str((C_DIR / c).relative_to(HERE)) for c in C_SOURCES.get(pyx.stem, [])]
        exts.append(
            Extension(
                f"{PACKAGE.get(pyx.stem, 'npydir.kernel')}.{pyx.stem}",
                [str(pyx.relative_to(HERE)), *c_files],
                include_dirs=[np.get_include(), str(C_DIR)],
                depends=headers,
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                extra_compile_args=compile_args,
                extra_link_args=link_args,
            )
        )
    return cythonize(
        exts,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    )


setup(ext_modules=extensions())
