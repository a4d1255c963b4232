"""Build the Cython kernels: every ``src_cython/<name>.pyx`` becomes ``npydir.<name>``.

OpenMP is probed by compiling a tiny program with ``-fopenmp``; set ``NPYDIR_NO_OPENMP=1`` to
build without it.  A compile failure fails the install: there is no pure-Python fallback for a
kernel, because a silently slow kernel is worse than a loud error.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
PROBE = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"


def openmp_supported() -> bool:
    """Return True when the C compiler builds and links a program with ``-fopenmp``."""
    if os.environ.get("NPYDIR_NO_OPENMP", "") not in ("", "0"):
        print("npydir: NPYDIR_NO_OPENMP set, building without OpenMP", file=sys.stderr)
        return False
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        cc = "cc"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "probe.c")
        src.write_text(PROBE)
        try:
            result = subprocess.run(
                [cc, "-fopenmp", str(src), "-o", str(Path(tmp, "probe"))],
                capture_output=True,
                timeout=120,
            )
        except (OSError, subprocess.SubprocessError):
            return False
    ok = result.returncode == 0
    print(f"npydir: OpenMP {'found' if ok else 'not available'}", file=sys.stderr)
    return ok


def extensions() -> list:
    use_openmp = openmp_supported()
    compile_args = ["-O3"]
    link_args = []
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    if use_openmp:
        compile_args.append("-fopenmp")
        link_args.append("-fopenmp")
        macros.append(("NPYDIR_OPENMP", "1"))
    if os.environ.get("NPYDIR_ASAN", "") not in ("", "0"):
        # AddressSanitizer build for the kernel safety tests (issue 7).
        compile_args += ["-fsanitize=address", "-fno-omit-frame-pointer", "-O1", "-g"]
        link_args += ["-fsanitize=address"]
    exts = []
    for pyx in sorted(HERE.glob("src_cython/*.pyx")):
        exts.append(
            Extension(
                f"npydir.{pyx.stem}",
                [str(pyx.relative_to(HERE))],
                include_dirs=[np.get_include(), str(HERE / "src_cython")],
                depends=[str(h.relative_to(HERE)) for h in sorted(HERE.glob("src_cython/*.h"))],
                define_macros=macros,
                extra_compile_args=compile_args,
                extra_link_args=link_args,
            )
        )
    return cythonize(
        exts,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
        compile_time_env={"HAVE_OPENMP": use_openmp},
    )


setup(ext_modules=extensions())
