"""Child process: coverage-guided fuzzing of one target with atheris (libFuzzer).

Usage: ``python _atheris_worker.py <target> <workdir> -runs=N -timeout=S ...`` (libFuzzer flags).

npydir's modules are instrumented for coverage; each input goes through the same
``_fuzz_targets.case_*`` function as the hypothesis runs.  An input that ends in anything but
success or the documented exception is an uncaught exception, which atheris reports (with
the input saved as ``crash-*``) before exiting non-zero; libFuzzer's ``-timeout`` turns hangs
into failures too.  The parent reads ``Done N runs`` from stderr.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

warnings.simplefilter("ignore")

import atheris  # noqa: E402

with atheris.instrument_imports(include=["npydir"]):
    import npydir
    import npydir.das  # noqa: F401

import _fuzz_inputs as inputs  # noqa: E402
import _fuzz_targets as targets  # noqa: E402


def main() -> None:
    target, work = sys.argv[1], Path(sys.argv[2])
    ctx = targets.Context(work / "ctx")
    targets.cap_memory()
    corpus = work / "corpus"
    corpus.mkdir(exist_ok=True)
    if target == "npy":
        seeds = inputs.npy_seeds()
        run = lambda data: targets.case_npy(data, ctx)  # noqa: E731
    elif target == "attrs":
        seeds = [
            b'{"a": 1, "b": {"__npydir__": "ndarray", "dtype": "<f4", "shape": [2], '
            b'"data": [1.0, "nan"]}}',
            b'{"c": {"__npydir__": "complex", "real": 1, "imag": "inf"}, '
            b'"d": {"__npydir__": "bytes", '
            b'"base64": "AAA="}}',
        ]
        run = lambda data: targets.case_attrs(data, ctx)  # noqa: E731
    elif target == "pickle":
        seeds = (
            inputs.das_attrs_pickles()
            + [b for _, b in inputs.malicious_pickles(ctx.sentinels)][:20]
        )
        run = lambda data: targets.case_pickle(data, ctx)  # noqa: E731
    elif target == "annotations":
        seeds = [inputs.annotation_seed()]
        run = lambda data: targets.case_annotations(data, ctx)  # noqa: E731
    elif target == "audio":
        seeds = [
            (b"n" if suffix == "npz" else b"w") + data for suffix, data in inputs.audio_seeds()
        ]

        def run(data: bytes) -> str:
            return targets.case_audio(data[1:], "npz" if data[:1] == b"n" else "wav", ctx)

    elif target == "names":
        seeds = [k.encode("utf-8", "surrogatepass") for k in inputs.SPECIAL_KEYS[:20]]

        def run(data: bytes) -> str:
            portable = bool(data[:1]) and data[0] & 1
            return targets.case_names(
                data[1:].decode("utf-8", "surrogateescape"), bool(portable), ctx
            )
    else:
        raise SystemExit(f"unknown target {target}")
    for i, s in enumerate(seeds):
        (corpus / f"seed-{i}").write_bytes(s)

    def test_one_input(data: bytes) -> None:
        run(data)

    atheris.Setup([sys.argv[0], str(corpus), *sys.argv[3:]], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
