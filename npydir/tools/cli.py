"""The ``npydir`` command (also ``python -m npydir``).

Subcommands: ``info``, ``tree``, ``verify``, ``repair``, ``convert``, ``make-dataset``,
``bench``, ``demo``; ``npydir <command> --help`` shows each with an example.

Exit status: 0 success, 1 failure (including ``verify`` finding problems), 2 bad usage.
An error is one line on stderr, ``npydir: error: ...``; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .. import __version__, das
from .._optional import require
from ..conversion.adapters.zarr_compat import nbytes_stored
from ..conversion.backends import load
from ..conversion.engine import convert
from ..errors import (
    DASFormatError,
    FormatError,
    IntegrityError,
    MemberNotFoundError,
    NpydirError,
    StoreNotFoundError,
)
from ..store.group import open as open_store
from ..store.integrity import Report, repair, verify
from ..store.tree import draw
from . import bench, demo

__all__ = ["main", "build_parser"]

PROG = "npydir"


class UsageError(Exception):
    """Bad command-line usage found after parsing (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``npydir: error: <command>: <what>``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        where = self.prog[len(PROG):].strip()
        prefix = f"{where}: " if where else ""
        hint = f" (see '{self.prog} --help')"
        self.exit(2, f"{PROG}: error: {prefix}{message}{hint}\n")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _example(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


# --------------------------------------------------------------------------------------
# argument types (raise ArgumentTypeError -> exit status 2)


def _size(text: str) -> int:
    try:
        return bench.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _backends(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n != "all" and n not in bench.ALL_BACKENDS:
            raise argparse.ArgumentTypeError(
                f"unknown backend {n!r}; choose from {', '.join(bench.ALL_BACKENDS)}")
    return names


def _chunks(text: str) -> int | tuple[int, ...]:
    try:
        parts = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"chunks must be ROWS or ROWS,COLS..., got {text!r}") from None
    if not parts or any(p < 1 for p in parts):
        raise argparse.ArgumentTypeError(f"chunks must be positive, got {text!r}")
    return parts[0] if len(parts) == 1 else parts


# --------------------------------------------------------------------------------------
# the parser


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``npydir`` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    prog = argparse.ArgumentParser(add_help=False)
    prog.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="show progress bars (default: when stderr is a terminal)")
    prog.add_argument("--no-progress", dest="progress", action="store_false",
                      help="never show progress bars")

    parser = _Parser(
        prog=PROG, formatter_class=_formatter,
        description="npydir: training data for sequence models as a directory of "
                    "memory-mapped .npy files.",
        epilog=_example("npydir info dataset.npy", "npydir convert dataset.zarr dataset.npy "
                        "--verify", "npydir bench dataset.npy --cold --plot bench.png",
                        "npydir demo"))
    parser.add_argument("--version", action="version", version=f"npydir {__version__}")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_: str, epilog: str, parents=(common,)) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=textwrap.fill(help_ + ".", 79),
                              epilog=epilog,
                              parents=list(parents), formatter_class=_formatter)

    p = add("info", "show a dataset's tree with shapes, dtypes, sizes on disk and attributes",
            _example("npydir info dataset.npy", "npydir info dataset.zarr --key train"))
    p.add_argument("path", help="npydir store (.npy directory), .zarr or .h5")
    p.add_argument("--key", default="", help="only this group or array (default: the root)")
    p.add_argument("--depth", type=_positive_int, default=None, help="levels to show")
    p.add_argument("--no-attrs", dest="attrs", action="store_false", help="hide attributes")
    p.add_argument("--full", action="store_true", help="do not shorten long attribute values")
    p.set_defaults(func=_cmd_info)

    p = add("tree", "show a dataset's groups and arrays with shapes and dtypes",
            _example("npydir tree dataset.npy"))
    p.add_argument("path", help="npydir store (.npy directory), .zarr or .h5")
    p.add_argument("--depth", type=_positive_int, default=None, help="levels to show")
    p.set_defaults(func=_cmd_tree)

    p = add("verify", "check that every array file agrees with its header and every attrs "
            "file parses (exit status 1 if not)",
            _example("npydir verify dataset.npy && echo intact"))
    p.add_argument("path", help="npydir store")
    p.set_defaults(func=_cmd_verify)

    p = add("repair", "fix what verify reports: trim bytes left by an interrupted append, "
            "remove stale temp files",
            _example("npydir repair dataset.npy"))
    p.add_argument("path", help="npydir store")
    p.set_defaults(func=_cmd_repair)

    p = add("convert", "convert a dataset between zarr (v2/v3), HDF5 and npydir, streaming",
            _example("npydir convert dataset.zarr dataset.npy --verify",
                     "npydir convert dataset.npy dataset.zarr --zarr-format 2 --chunks 1000000 "
                     "--compression blosc"), parents=(common, prog))
    p.add_argument("src", help="source dataset (.npy directory, .zarr or .h5)")
    p.add_argument("dst", help="destination; its extension picks the format")
    p.add_argument("--verify", action="store_true",
                   help="compare every array of the result with the source afterwards")
    p.add_argument("--zarr-format", type=int, choices=(2, 3), default=None,
                   help="zarr format of a .zarr destination (default 2, which every zarr and "
                        "DAS read; 3 needs zarr-python 3)")
    p.add_argument("--chunks", type=_chunks, default=None,
                   help="chunk rows (or ROWS,COLS) of a zarr/HDF5 destination")
    p.add_argument("--compression", default=None,
                   help="compression of a zarr/HDF5 destination (e.g. zstd, blosc, gzip, none)")
    p.add_argument("--budget", type=_size, default=None,
                   help="memory for the blocks in flight, e.g. 512MB (default 256MiB)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="reader threads (default: CPUs, at most 4)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="dask.distributed scheduler (e.g. tcp://host:8786) to spread the "
                        "block copies over (npydir destinations)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing destination once the new one is complete")
    p.add_argument("--das", "--das-compat", dest="das_compat", action="store_true",
                   help="write for DAS: an npydir destination also gets DAS's pickled "
                        "attrs.npy, a zarr destination is zarr format 2 as DAS's make_dataset "
                        "writes it")
    p.add_argument("--allow-external", action="store_true",
                   help="also copy arrays whose data lies outside the source (zarr chunk "
                        "files that are links, HDF5 external storage and virtual datasets); "
                        "refused by default")
    p.set_defaults(func=_cmd_convert)

    p = add("make-dataset", "build a DAS training store from recordings (audio + "
            "*_annotations.csv)",
            _example("npydir make-dataset recordings/ dataset.npy",
                     "npydir make-dataset rec1.npz rec2.npz rec3.wav dataset.npy "
                     "--split fraction --val-fraction 0.2"), parents=(common, prog))
    p.add_argument("inputs", nargs="+", metavar="RECORDING",
                   help="audio files (.npz/.wav) with *_annotations.csv beside them, or "
                        "folders of them; the last argument is the output store")
    p.add_argument("--split", choices=("recording", "fraction"), default=None,
                   help="whole recordings to train/val/test (default; needs 3 recordings) "
                        "or every recording cut by the fractions")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="fraction for validation (default 0.2)")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="fraction for testing (default 0.2; 0 for none)")
    p.add_argument("--seed", type=int, default=None, help="seed of the split (0)")
    p.add_argument("--class-names", default=None, metavar="A,B,...",
                   help="classes of y, comma-separated ('noise' is put first)")
    p.add_argument("--x-dtype", default=None, help="dtype of x (default float16, as DAS)")
    p.add_argument("--y-dtype", default=None, help="dtype of y (default float32)")
    p.add_argument("--suffixes", action="store_true",
                   help="also write y_<class> (noise + that class) for every class")
    p.add_argument("--raw-audio", action="store_true",
                   help="keep integer PCM wav samples as stored (default: scale them to "
                        "[-1, 1) as DAS reads wav; needed for an integer --x-dtype)")
    p.add_argument("--event-width-seconds", type=_positive_float, default=None,
                   help="width of the box drawn for each event (default 0.006)")
    p.add_argument("--event-std-seconds", type=_positive_float, default=None,
                   help="draw events as Gaussians of this standard deviation instead of "
                        "boxes (DAS's GUI default is 0.0016)")
    p.add_argument("--event-kernel", choices=("das", "symmetric"), default=None,
                   help="with --event-std-seconds: DAS's window (default; an even number of "
                        "taps, half a sample late) or a symmetric Gaussian")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.set_defaults(func=_cmd_make_dataset)

    p = add("bench", "measure random-window batch throughput of npydir, a DAS-style loop, "
            "zarr, HDF5 and the memcpy limit",
            _example("npydir bench                              # synthetic 256 MB",
                     "npydir bench --size 2GB --cold --plot bench.png --json bench.json",
                     "npydir bench dataset.npy --backends npydir,das-loop,zarr-das")
            + "\n\nbackends: " + ", ".join(bench.ALL_BACKENDS) + "\n"
            "memcpy and npydir are always measured: the ratios refer to them.",
            parents=(common, prog))
    _add_bench_args(p)
    p.set_defaults(func=_cmd_bench)

    p = add("demo", "generate fly-song-like recordings, build a DAS training store, convert "
            "it to zarr and HDF5, and benchmark the three",
            _example("npydir demo", "npydir demo --out /tmp/demo --seconds 20"),
            parents=(common, prog))
    p.add_argument("--out", default="demo-output",
                   help="output directory (replaced if it holds an earlier demo)")
    D = demo.DEFAULTS
    p.add_argument("--recordings", type=_positive_int, default=None,
                   help=f"recordings to make ({D['recordings']})")
    p.add_argument("--seconds", type=_positive_float, default=None,
                   help=f"seconds each ({D['seconds']:g})")
    p.add_argument("--channels", type=_positive_int, default=None,
                   help=f"audio channels ({D['channels']})")
    p.add_argument("--batch", type=_positive_int, default=None,
                   help=f"windows per batch ({D['batch']})")
    p.add_argument("--window", type=_positive_int, default=None,
                   help=f"samples per window ({D['window']})")
    p.add_argument("--repeats", type=_positive_int, default=None,
                   help=f"benchmark repeats ({D['repeats']})")
    p.add_argument("--no-cold", dest="cold", action="store_false",
                   help="skip the cold-cache measurement")
    p.set_defaults(func=_cmd_demo)
    parser.set_defaults(all_commands=list(sub.choices))
    return parser


def _add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", default=None,
                   help="dataset npydir.load opens (.npy store, .zarr, .h5); default: a "
                        "synthetic DAS-like one")
    p.add_argument("--key", default="train/x", help="array to read (default train/x)")
    p.add_argument("--backends", type=_backends, action="extend", default=None,
                   help="comma-separated backends (default all)")
    p.add_argument("--batch", type=_positive_int, default=32, help="windows per batch (32)")
    p.add_argument("--window", type=_positive_int, default=4096,
                   help="samples per window (4096)")
    p.add_argument("--cold", action="store_true",
                   help="also measure with a cold page cache (fadvise DONTNEED before each "
                        "batch)")
    p.add_argument("--size", type=_size, default=None,
                   help="size of the synthetic dataset, e.g. 2GB (default 256MB)")
    p.add_argument("--channels", type=_positive_int, default=9,
                   help="channels of the synthetic dataset (9)")
    p.add_argument("--repeats", type=_positive_int, default=5, help="repeats (5); medians")
    p.add_argument("--batches", type=_positive_int, default=8,
                   help="batches per repeat and backend (8)")
    p.add_argument("--time-limit", type=_positive_float, default=2.0,
                   help="seconds per backend and repeat after which fewer batches count (2)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads of the npydir backend (default: the kernel's choice, "
                        "up to all cores)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random starts and of the synthetic dataset (0)")
    p.add_argument("--stored", action="append", default=[], metavar="PATH",
                   help="a .zarr or .h5 copy of the dataset to measure as stored (repeatable)")
    p.add_argument("--workdir", default=None,
                   help="where converted copies go (kept); default a temporary directory")
    p.add_argument("--json", dest="json_path", metavar="FILE", default=None,
                   help="write the results as JSON")
    p.add_argument("--plot", metavar="FILE", default=None, help="draw a PNG bar chart")


# --------------------------------------------------------------------------------------
# helpers


def _progress(args: argparse.Namespace) -> bool:
    flag = getattr(args, "progress", None)
    if flag is None:
        return sys.stderr.isatty()
    return bool(flag)


def _human(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _short(value: Any, full: bool, limit: int = 72) -> str:
    import numpy as np

    if isinstance(value, np.ndarray):
        text = np.array2string(value, threshold=20 if not full else sys.maxsize,
                               separator=", ")
    else:
        text = repr(value)
    text = " ".join(text.split())
    if not full and len(text) > limit:
        text = text[:limit - 3] + "..."
    return text


def _require_exists(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise StoreNotFoundError(f"{p}: no such file or directory")
    return p


class _Opened:
    """A dataset opened read-only for inspection: an npydir store through
    :func:`npydir.open`, zarr and HDF5 through :func:`npydir.load` (same extensions)."""

    def __init__(self, path: Path):
        self.path = path
        self.kind = bench._kind(path)
        if self.kind == "npydir":
            if not path.is_dir():
                raise FormatError(f"{path}: not an npydir store (a directory), .zarr or .h5")
            self.root: Any = open_store(path, mode="r")  # a Group, or load()'s Dataset
        else:
            self.root = load(path)
        self._close = self.root.close

    def __enter__(self) -> "_Opened":
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    def get(self, key: str):
        if not key or key == "/":
            return self.root
        node: Any = self.root  # groups and arrays of any backend
        for part in [p for p in key.split("/") if p]:
            try:
                node = node[part]
            except (KeyError, TypeError):
                raise MemberNotFoundError(f"{self.path}: no member {key!r}") from None
        return node


def _is_group(obj: Any) -> bool:
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        return False
    return hasattr(obj, "keys") and hasattr(obj, "__getitem__")


def _children(group: Any) -> list[tuple[str, Any]]:
    return [(k, group[k]) for k in sorted(group.keys())]


def _disk_bytes(kind: str, obj: Any, root_path: Path) -> int | None:
    """Bytes the array takes on disk (allocated blocks, so sparse files count what they use)."""
    try:
        if kind == "npydir":
            st = Path(obj.filename).stat()
            return st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
        if kind == "h5":
            return int(obj.id.get_storage_size())
        if kind == "zarr":
            return nbytes_stored(obj)
    except (OSError, AttributeError, TypeError):
        return None
    return None


def _attrs(obj: Any) -> dict:
    attrs = getattr(obj, "attrs", None)
    if attrs is None:
        return {}
    try:
        return {k: attrs[k] for k in sorted(attrs.keys())}
    except Exception:  # an attribute h5py cannot decode must not stop the listing
        return {}


def _render(opened: _Opened, node: Any, *, sizes: bool, attrs: bool, full: bool,
            depth: int | None) -> tuple[list[str], dict]:
    lines: list[str] = []
    totals = {"groups": 0, "arrays": 0, "nbytes": 0, "disk": 0}

    def attr_lines(obj: Any) -> list[str]:
        if not attrs:
            return []
        return [f"@{k} = {_short(v, full)}" for k, v in _attrs(obj).items()]

    def array_line(name: str, arr: Any) -> str:
        import numpy as np

        shape = "(" + ", ".join(str(s) for s in arr.shape) + ("," if len(arr.shape) == 1 else "")\
            + ")"
        text = f"{name}  {shape} {np.dtype(arr.dtype)}"
        totals["arrays"] += 1
        nbytes = int(np.prod(arr.shape, dtype=np.int64)) * np.dtype(arr.dtype).itemsize
        totals["nbytes"] += nbytes
        if sizes:
            disk = _disk_bytes(opened.kind, arr, opened.path)
            if disk is not None:
                totals["disk"] += disk
            text += f"  {_human(nbytes)}, {_human(disk)} on disk"
        return text

    def children(group: Any) -> list[tuple[str, Any, bool]]:
        return [(name, obj, _is_group(obj)) for name, obj in _children(group)]

    def label(name: str, obj: Any, is_group: bool) -> str:
        if is_group:
            totals["groups"] += 1
            return f"{name}/"
        return array_line(name, obj)

    if _is_group(node):
        lines.append(f"{opened.path}" + (f" [{getattr(node, 'name', '')}]"
                                         if getattr(node, "name", "/") not in ("/", "", None)
                                         else "") + f"  ({opened.kind})")
        lines.extend(attr_lines(node))
        # --depth N opens N levels: the top's members (depth 0 of draw) open when N > 1
        lines.extend(draw(node, children, label, notes=attr_lines,
                          max_depth=None if depth is None else depth - 1))
    else:
        lines.append(f"{opened.path}  ({opened.kind})")
        lines.append(array_line(str(getattr(node, "name", "")).strip("/") or "array", node))
        lines.extend("  " + line for line in attr_lines(node))
    return lines, totals


# --------------------------------------------------------------------------------------
# commands


def _cmd_info(args: argparse.Namespace) -> int:
    path = _require_exists(args.path)
    with _Opened(path) as opened:
        node = opened.get(args.key)
        lines, totals = _render(opened, node, sizes=True, attrs=args.attrs, full=args.full,
                                depth=args.depth)
    lines.append(f"{totals['groups']} groups, {totals['arrays']} arrays, "
                 f"{_human(totals['nbytes'])} of data, {_human(totals['disk'])} on disk")
    print("\n".join(lines))
    return 0


def _cmd_tree(args: argparse.Namespace) -> int:
    path = _require_exists(args.path)
    with _Opened(path) as opened:
        lines, _ = _render(opened, opened.root, sizes=False, attrs=False, full=False,
                           depth=args.depth)
    print("\n".join(lines))
    return 0


def _report_ok(report: Any) -> bool:
    for attr in ("ok", "clean", "is_ok"):
        if hasattr(report, attr):
            value = getattr(report, attr)
            return bool(value() if callable(value) else value)
    if hasattr(report, "problems"):
        return not report.problems
    return bool(report)


def _cmd_verify(args: argparse.Namespace) -> int:
    path = _require_exists(args.path)
    report = verify(path)
    print(report)
    if _report_ok(report):
        return 0
    raise IntegrityError(f"{path}: {len(report.problems)} problem(s), listed above; "
                         f"'npydir repair {path}' fixes torn appends and stray temp files")


def _cmd_repair(args: argparse.Namespace) -> int:
    path = _require_exists(args.path)
    try:
        report: Report | None = repair(path)
    except IntegrityError as exc:
        report = getattr(exc, "report", None)
        if report is None:
            raise
        print(report)  # what was repaired and what is left, one line each
        raise IntegrityError(
            f"repair of {path} left {len(report.problems)} problem(s) it will not guess at "
            f"(listed above): restore those files from a copy, or delete the affected "
            f"arrays") from None
    print(report)
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    src = _require_exists(args.src)
    kwargs: dict[str, Any] = {"progress": _progress(args)}
    for name, kw in (("verify", "verify"), ("zarr_format", "zarr_format"), ("chunks", "chunks"),
                     ("compression", "compression"), ("budget", "memory_budget"),
                     ("threads", "threads"), ("overwrite", "overwrite"),
                     ("das_compat", "das_compat"), ("allow_external", "allow_external")):
        value = getattr(args, name)
        if value not in (None, False):
            kwargs[kw] = value
    client = None
    if args.scheduler:
        distributed = require("dask.distributed", "--scheduler")
        client = distributed.Client(args.scheduler)
        kwargs["client"] = client
    try:
        report = convert(src, args.dst, **kwargs)
    finally:
        if client is not None:
            client.close()
    text = str(report) if report is not None else ""
    print(text if text and not isinstance(report, (str, os.PathLike))
          else f"converted {src} -> {args.dst}")
    return 0


def _cmd_make_dataset(args: argparse.Namespace) -> int:
    if len(args.inputs) < 2:
        raise UsageError("make-dataset needs at least one recording and the output store")
    *inputs, out = args.inputs
    recordings = _find_recordings([Path(p) for p in inputs])
    kwargs: dict[str, Any] = {"progress": _progress(args)}
    for name in ("split", "val_fraction", "test_fraction", "seed", "x_dtype", "y_dtype",
                 "event_width_seconds", "event_std_seconds", "event_kernel"):
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    if args.class_names:
        kwargs["class_names"] = [c.strip() for c in args.class_names.split(",") if c.strip()]
    if args.suffixes:
        kwargs["suffixes"] = True
    if args.raw_audio:
        kwargs["audio_scaling"] = "raw"
    if args.overwrite:
        kwargs["overwrite"] = True
    result = das.make_dataset(recordings, out, **kwargs)
    print(f"wrote {result if result is not None else out} from {len(recordings)} recordings")
    return 0


def _find_recordings(inputs: Sequence[Path]) -> list:
    """Recordings from folders (as the DAS GUI exports them) and audio files (with
    ``<stem>_annotations.csv`` beside them)."""
    found: list = []
    for p in inputs:
        if p.is_dir():
            found.extend(das.find_recordings(p))
        elif p.exists():
            ann = p.with_name(p.stem + "_annotations.csv")
            if not ann.exists():
                raise DASFormatError(f"{p}: no annotations file {ann.name} beside it")
            found.append((p, ann))
        else:
            raise StoreNotFoundError(f"{p}: no such recording")
    return found


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.path is not None and args.size is not None:
        raise UsageError("--size is for the synthetic dataset; drop it or the PATH")
    result = bench.run_bench(
        args.path, key=args.key, backends=args.backends, batch=args.batch, window=args.window,
        cold=args.cold, size=args.size or "256MB", channels=args.channels,
        repeats=args.repeats, batches=args.batches, time_limit=args.time_limit,
        seed=args.seed, stored=args.stored, workdir=args.workdir, threads=args.threads,
        progress=_progress(args))
    print(bench.format_table(result))
    if args.json_path:
        print(f"results: {bench.write_json(result, args.json_path)}")
    if args.plot:
        print(f"chart: {bench.plot_results(result, args.plot)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    kwargs = {k: getattr(args, k) for k in ("recordings", "seconds", "channels", "batch",
                                            "window", "repeats") if getattr(args, k) is not None}
    demo.run_demo(args.out, cold=args.cold, progress=_progress(args), **kwargs)
    return 0


# --------------------------------------------------------------------------------------
# entry point


def _one_line(exc: BaseException) -> str:
    """The error as one line: npydir's own errors, OS errors and ValueErrors speak for
    themselves; anything else is prefixed with its type, which is then part of the news."""
    if isinstance(exc, KeyError) and not isinstance(exc, NpydirError) and exc.args:
        text = str(exc.args[0])
    else:
        text = str(exc)
    text = " ".join(text.split())
    if isinstance(exc, (NpydirError, OSError)) or type(exc) is ValueError:
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``npydir`` command with ``argv`` (default ``sys.argv[1:]``); return the exit
    status: 0 success, 1 failure, 2 bad usage."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        commands = ", ".join(args.all_commands)
        print(f"{PROG}: error: a command is required: {commands} (see '{PROG} --help')",
              file=sys.stderr)
        return 2
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        print(f"{PROG}: error: {args.command}: {exc} (see '{PROG} {args.command} --help')",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # `npydir info x | head`
        return 1
    except Exception as exc:  # noqa: BLE001 - the command line reports, it does not crash
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
