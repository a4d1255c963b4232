"""Build a DAS training store from annotated recordings (``make_dataset``).

The store (docs/design.md, section 2)::

    dataset.npy/
      attrs.json, attrs.npy   samplerate_x_Hz, samplerate_y_Hz, class_names, class_types,
                              class_names_<suffix>, class_types_<suffix>,
                              filename_<split>, filename_startsample_<split>, ...
      train/x.npy             [samples, channels]  (float16 by default, as DAS; integer
                              PCM wav scaled to [-1, 1) as DAS reads it)
      train/y.npy             [samples, nb_classes], class 0 is "noise", rows sum to 1
      train/y_<suffix>.npy    [samples, 2] noise + one class (optional)
      val/...  test/...

Recordings are read one at a time and appended in blocks, so memory holds one recording's
audio (memory-mapped for wav) and one block of targets, never the dataset. The store is built
in a hidden temporary directory beside ``out`` and renamed into place at the end: a failed
or interrupted build never leaves a half-written dataset under ``out``.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from .._optional import require
from ..conversion.adapters.zarr_compat import check_format
from ..conversion.engine import write_das_zarr
from ..errors import AlreadyExistsError, DASFormatError
from ..store import group as _group
from ..store.fsutil import publish_directory
from ..store.layout import FORMAT_FILE, GROUP_ATTRS
from .annotations import Annotations, read_annotations
from .audio import AUDIO_SUFFIXES, load_audio, pcm_scale, scale_pcm
from .definitions import check_definitions, read_definitions
from .targets import (
    DEFAULT_EVENT_WIDTH_SECONDS,
    EVENT_KERNELS,
    class_activations,
    normalize_targets,
    single_class_targets,
)

__all__ = ["AUDIO_SCALINGS", "SPLITS", "Recording", "find_recordings", "make_dataset"]

#: The splits of a DAS training store, in the order they are written.
SPLITS = ("train", "val", "test")

#: How ``make_dataset`` turns audio samples into ``x``: as DAS reads them, or as stored.
AUDIO_SCALINGS = ("das", "raw")

_ANN_SUFFIX = "_annotations.csv"
_DEF_SUFFIX = "_definitions.csv"


@dataclass(frozen=True)
class Recording:
    """One annotated recording: audio file, annotation file, optional definitions file."""

    audio: Path
    annotations: Path
    definitions: Path | None = None

    @classmethod
    def from_files(
        cls,
        audio: str | os.PathLike,
        annotations: str | os.PathLike,
        definitions: str | os.PathLike | None = None,
    ) -> Recording:
        """Build from paths; uses ``<stem>_definitions.csv`` beside the annotations if present."""
        audio, annotations = Path(audio), Path(annotations)
        if definitions is None and annotations.name.endswith(_ANN_SUFFIX):
            candidate = annotations.with_name(annotations.name[: -len(_ANN_SUFFIX)] + _DEF_SUFFIX)
            definitions = candidate if candidate.is_file() else None
        return cls(audio, annotations, Path(definitions) if definitions is not None else None)


RecordingsLike = Union[str, os.PathLike, Iterable[Union[Recording, Sequence[Any]]]]  # noqa: UP007


def find_recordings(folder: str | os.PathLike) -> list[Recording]:
    """Find annotated recordings in a folder, as the DAS GUI exports them.

    Every ``<stem>_annotations.csv`` is paired with ``<stem>.npz`` or ``<stem>.wav`` and, if
    present, ``<stem>_definitions.csv``. Audio files without annotations are not used.

    Returns
    -------
    list of Recording
        Sorted by file name.

    Raises
    ------
    DASFormatError
        No annotation file in the folder, an annotation file without audio, or one with
        both a ``.npz`` and a ``.wav``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: recordings folder not found")
    out = []
    for ann in sorted(folder.glob(f"*{_ANN_SUFFIX}")):
        stem = ann.name[: -len(_ANN_SUFFIX)]
        audio = [folder / f"{stem}{s}" for s in AUDIO_SUFFIXES if (folder / f"{stem}{s}").is_file()]
        if not audio:
            raise DASFormatError(
                f"{ann}: no audio file for these annotations; "
                f"expected {stem}.npz or {stem}.wav in {folder}"
            )
        if len(audio) > 1:
            raise DASFormatError(
                f"{ann}: ambiguous audio, both {audio[0].name} and {audio[1].name} exist; keep one"
            )
        out.append(Recording.from_files(audio[0], ann))
    if not out:
        raise DASFormatError(
            f"{folder}: no *{_ANN_SUFFIX} files found; "
            f"expected <stem>.npz|wav with <stem>{_ANN_SUFFIX}"
        )
    return out


def _as_recordings(recordings: RecordingsLike) -> list[Recording]:
    if isinstance(recordings, (str, os.PathLike)):
        return find_recordings(recordings)
    out = []
    for i, item in enumerate(recordings):
        if isinstance(item, Recording):
            out.append(item)
        elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
            out.append(Recording.from_files(*item))
        else:
            raise TypeError(
                f"recordings[{i}]: expected (audio, annotations[, definitions]) "
                f"or a Recording, found {item!r}"
            )
    if not out:
        raise ValueError("make_dataset: no recordings given")
    return out


def _audio_info(path: Path) -> tuple[int, int, float]:
    """(samples, channels, samplerate) without reading the samples where the format allows."""
    if path.suffix.lower() == ".npz":
        try:
            with zipfile.ZipFile(path) as zf:
                if "data.npy" in zf.namelist() and "samplerate.npy" in zf.namelist():
                    with zf.open("data.npy") as f:
                        version = np.lib.format.read_magic(f)
                        if version == (1, 0):
                            shape, _, _ = np.lib.format.read_array_header_1_0(f)
                        else:
                            shape, _, _ = np.lib.format.read_array_header_2_0(f)
                    if len(shape) in (1, 2):
                        with np.load(path, allow_pickle=False) as npz:
                            rate = float(np.asarray(npz["samplerate"]).reshape(-1)[0])
                        if math.isfinite(rate) and rate > 0:
                            return int(shape[0]), int(shape[1]) if len(shape) == 2 else 1, rate
        except (zipfile.BadZipFile, ValueError, OSError, IndexError):
            pass  # fall through: load_audio produces the precise error
    data, rate = load_audio(path, mmap=True)
    return data.shape[0], data.shape[1], rate


def _cast_block(block: np.ndarray, dtype: np.dtype, path: Path, first: int) -> np.ndarray:
    """Cast audio to the store's x dtype; refuse values that the cast would destroy."""
    if block.dtype.kind == "f":
        bad = ~np.isfinite(block)
        if np.any(bad):
            raise DASFormatError(
                f"{path}: {int(bad.sum())} NaN or infinite sample value(s) from sample "
                f"{first + int(np.argwhere(bad)[0][0])} on; x must be finite to train on"
            )
    if dtype.kind == "f":
        with np.errstate(over="ignore"):  # overflow is detected and reported below
            out = block.astype(dtype)
        overflow = np.isinf(out)
        if np.any(overflow):
            raise DASFormatError(
                f"{path}: {int(overflow.sum())} sample value(s) in samples "
                f"{first}..{first + len(block) - 1} "
                f"exceed the range of {dtype} "
                f"(max {float(np.finfo(dtype).max)}, found {float(np.max(np.abs(block)))}); "
                f"use x_dtype='float32' or scale the audio"
            )
        return out
    if block.dtype.kind not in "biu":
        raise DASFormatError(
            f"{path}: float audio cannot be stored exactly as x_dtype={dtype}; use a float dtype"
        )
    info = np.iinfo(dtype)
    if block.size and (block.min() < info.min or block.max() > info.max):
        raise DASFormatError(
            f"{path}: sample values outside the range of x_dtype={dtype} [{info.min}, {info.max}]"
        )
    return block.astype(dtype)


def _audio_scale(path: Path, dtype: np.dtype, scaling: str) -> tuple[float, float]:
    """``(offset, divisor)`` of a recording's samples: ``x = (sample - offset) / divisor``.

    DAS reads wav with librosa (integer PCM scaled to [-1, 1)) and ``.npz`` data as it is.
    """
    if scaling == "das" and path.suffix.lower() == ".wav" and dtype.kind in "iu":
        return pcm_scale(dtype)
    return 0.0, 1.0


def _class_info(
    recs: list[Recording],
    anns: list[Annotations],
    defs: list[dict[str, str]],
    class_names: Sequence[str] | None,
    class_types: Sequence[str] | None,
) -> tuple[list[str], list[str]]:
    # category of every song type seen, and where it was first seen (for conflict messages)
    seen: dict[str, tuple[str, str]] = {}
    for rec, ann, d in zip(recs, anns, defs):
        cats = dict(ann.categories())
        cats.update(d)  # definitions say what a type is; annotations only suggest it
        for name, cat in cats.items():
            where = str(rec.definitions if name in d else rec.annotations)
            if name in seen and seen[name][0] != cat:
                raise DASFormatError(
                    f"song type {name!r} is a {seen[name][0]} in {seen[name][1]} "
                    f"but a {cat} in {where}; "
                    f"fix the definitions or pass class_names and class_types"
                )
            seen.setdefault(name, (cat, where))
    if class_names is None:
        if class_types is not None:
            raise ValueError("make_dataset: class_types needs class_names")
        names = ["noise", *sorted(n for n in seen if n != "noise")]
        return names, ["segment", *(seen[n][0] for n in names[1:])]
    names = list(class_names)
    types = list(class_types) if class_types is not None else None
    if not names or names[0] != "noise":
        names = ["noise", *names]
        if types is not None and len(types) == len(names) - 1:
            types = ["segment", *types]
    if types is None:
        unknown = [n for n in names[1:] if n not in seen]
        if unknown:
            raise ValueError(
                f"make_dataset: class(es) {unknown} appear in no annotations or definitions; "
                f"pass class_types"
            )
        types = ["segment", *(seen[n][0] for n in names[1:])]
    if len(types) != len(names):
        raise ValueError(
            f"make_dataset: {len(names)} class_names {names} but {len(types)} class_types {types}"
        )
    ignored = sorted(set(seen) - set(names))
    if ignored:
        warnings.warn(
            f"make_dataset: song type(s) {ignored} of the annotations or definitions "
            f"are not in class_names and are ignored",
            stacklevel=3,
        )
    return names, types


def _plan(
    lengths: list[int], split: str, val_fraction: float, test_fraction: float, seed: int | None
) -> list[list[tuple[str, int, int]]]:
    """For each recording, the (split, first, stop) sample ranges it contributes."""
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"make_dataset: need 0 < val_fraction, 0 <= test_fraction and "
            f"val_fraction + test_fraction < 1 (validation data is required); "
            f"found val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
    n = len(lengths)
    if split == "recording":
        n_val = max(1, round(n * val_fraction))
        n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
        if n - n_val - n_test < 1:
            raise ValueError(
                f"make_dataset: split='recording' needs at least {n_val + n_test + 1} recordings "
                f"(train, val{', test' if n_test else ''}) but {n} were given; use split='fraction'"
            )
        order = np.random.default_rng(seed).permutation(n)
        which = {int(i): "val" for i in order[:n_val]}
        which.update({int(i): "test" for i in order[n_val : n_val + n_test]})
        return [[(which.get(i, "train"), 0, lengths[i])] for i in range(n)]
    if split == "fraction":
        plan = []
        for length in lengths:
            n_val = int(round(length * val_fraction))
            n_test = int(round(length * test_fraction))
            n_train = length - n_val - n_test
            # contiguous blocks in time: train, then val, then test
            plan.append(
                [
                    (s, a, b)
                    for s, a, b in (
                        ("train", 0, n_train),
                        ("val", n_train, n_train + n_val),
                        ("test", n_train + n_val, length),
                    )
                    if b > a
                ]
            )
        return plan
    raise ValueError(f"make_dataset: split must be 'recording' or 'fraction', found {split!r}")


_BUILD_TAG = ".making-"
_OLD_TAG = ".replaced-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _remove_stale_builds(out: Path) -> None:
    """Delete hidden build/replace directories of ``out`` left by killed make_dataset runs."""
    for tag in (_BUILD_TAG, _OLD_TAG):
        for p in out.parent.glob(f".{out.name}{tag}*"):
            try:
                pid = int(p.name.rsplit("-", 1)[1])
            except ValueError:
                continue
            if pid == os.getpid() or not _pid_alive(pid):
                shutil.rmtree(p, ignore_errors=True)


def _safe_to_replace(out: Path) -> bool:
    return out.is_dir() and any((out / f).is_file() for f in (GROUP_ATTRS, FORMAT_FILE,
                                                               ".zgroup"))


def make_dataset(
    recordings: RecordingsLike,
    out: str | os.PathLike,
    *,
    split: str = "recording",
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int | None = 0,
    class_names: Sequence[str] | None = None,
    class_types: Sequence[str] | None = None,
    x_dtype: Any = "float16",
    y_dtype: Any = "float32",
    audio_scaling: str = "das",
    event_width_seconds: float = DEFAULT_EVENT_WIDTH_SECONDS,
    event_std_seconds: float | None = None,
    event_kernel: str = "das",
    segment_gap_seconds: float = 0.0,
    sample_tolerance: float = 0.0,
    suffixes: bool | Sequence[str] = False,
    block_samples: int = 1_000_000,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Make a DAS training store from annotated recordings.

    Parameters
    ----------
    recordings : folder or iterable
        A folder (see :func:`find_recordings`), or ``(audio, annotations)`` /
        ``(audio, annotations, definitions)`` pairs or :class:`Recording` objects. Without an
        explicit definitions file, ``<stem>_definitions.csv`` beside the annotations is used.
    out : str or path-like
        The store to create: by DAS convention a directory ending in ``.npy``, or ``.zarr``
        for zarr format 2 as DAS's own dataset maker writes it (what ``das.io.load`` reads;
        built as an npydir store first, then converted).
    split : {"recording", "fraction"}
        ``"recording"``: whole recordings go to train, val or test (drawn with ``seed``;
        at least one to val, and one to test if ``test_fraction > 0``). ``"fraction"``: every
        recording is cut into contiguous train | val | test parts of those fractions.
    val_fraction : float, default 0.2
        Fraction for validation; must be > 0 (DAS needs validation data).
    test_fraction : float, default 0.2
        Fraction for test; may be 0 (the test split then holds empty arrays).
    seed : int, optional
        Seeds the assignment of recordings for ``split="recording"``.
    class_names, class_types : sequence of str, optional
        Classes of ``y``; ``"noise"`` is put first if missing. By default: every song type of
        every definitions and annotations file, sorted by name; types from the definitions,
        else inferred from the annotations (start == stop: event).
    x_dtype : dtype, default "float16"
        dtype of ``x`` (DAS's dataset maker stores float16). Values that overflow it are an
        error.
    y_dtype : dtype, default "float32"
    audio_scaling : {"das", "raw"}, default "das"
        ``"das"``: integer PCM wav becomes float in [-1, 1) exactly as DAS reads wav for
        training and prediction (``int16 / 32768``, ``int32 / 2**31``, ``(uint8 - 128) /
        128``, see :func:`npydir.das.pcm_scale`); float wav and ``.npz`` data are stored as
        they are, as DAS's loader takes them. ``"raw"``: every recording's samples as stored,
        cast to ``x_dtype`` (needed for an integer ``x_dtype``). The root attributes
        ``audio_scaling`` and ``filename_audio_offset_<split>`` /
        ``filename_audio_divisor_<split>`` record it: ``x = (sample - offset) / divisor``.
    event_width_seconds, event_std_seconds, event_kernel, segment_gap_seconds, sample_tolerance
        How annotations become targets, see :func:`npydir.das.make_targets`; with
        ``event_std_seconds`` and the defaults ``y`` equals DAS's (DAS's dataset maker
        offers ``event_std_seconds=0.0016``).
    suffixes : bool or sequence of str, default False
        ``True``: also write ``y_<name>`` (noise + one class) for every class; a sequence:
        for those classes. Their names and types go to ``class_names_<name>`` and
        ``class_types_<name>``.
    block_samples : int, default 1_000_000
        Samples converted and appended per step (bounds memory).
    overwrite : bool, default False
        Replace an existing store at ``out`` (only if it is a store: a directory with
        ``attrs.json`` or ``.npydir.json``, or a zarr group).
    progress : bool, default False
        Show a tqdm progress bar over samples.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    DASFormatError
        A malformed or inconsistent input file (named in the message), recordings with
        different sample rates or channel counts, definitions that contradict annotations.
    ValueError
        Bad fractions, too few recordings for the split, bad classes.
    AlreadyExistsError
        ``out`` exists and ``overwrite`` is False.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise AlreadyExistsError(f"{out}: already exists; pass overwrite=True to replace it")
    if out.exists() and not _safe_to_replace(out):
        raise AlreadyExistsError(
            f"{out}: exists and is not an npydir/DAS store; refusing to replace it"
        )
    if block_samples < 1:
        raise ValueError(f"block_samples must be >= 1, found {block_samples}")
    as_zarr = out.name.lower().endswith(".zarr")
    if as_zarr:  # before the work: zarr is installed and writes format 2
        check_format(2, f"make_dataset({str(out)!r})")
    x_dtype = np.dtype(x_dtype)
    y_dtype = np.dtype(y_dtype)
    if x_dtype.kind not in "fiu":
        raise ValueError(f"x_dtype must be a numeric dtype, found {x_dtype}")
    if y_dtype.kind != "f":
        raise ValueError(
            f"y_dtype must be a float dtype (targets are probabilities), found {y_dtype}"
        )
    if audio_scaling not in AUDIO_SCALINGS:
        raise ValueError(
            f"make_dataset: audio_scaling must be one of {AUDIO_SCALINGS}, found {audio_scaling!r}"
        )
    if audio_scaling == "das" and x_dtype.kind != "f":
        raise ValueError(
            f"make_dataset: x_dtype={x_dtype} cannot hold audio scaled to [-1, 1); "
            f"pass audio_scaling='raw' to store the samples as they are"
        )
    if event_kernel not in EVENT_KERNELS:
        raise ValueError(
            f"make_dataset: event_kernel must be one of {EVENT_KERNELS}, found {event_kernel!r}"
        )

    recs = _as_recordings(recordings)

    # --- read and check everything cheap before writing anything --------------------------
    anns = [read_annotations(r.annotations) for r in recs]
    defs = [read_definitions(r.definitions) if r.definitions is not None else {} for r in recs]
    for r, ann, d in zip(recs, anns, defs):
        if d:
            check_definitions(
                ann, d, source=f"{r.annotations} vs {r.definitions}"
            ).raise_if_conflicts()
    infos = [_audio_info(r.audio) for r in recs]
    _, channels, samplerate = infos[0]
    for r, (_, c, sr) in zip(recs, infos):
        if sr != samplerate:
            raise DASFormatError(
                f"{r.audio}: samplerate {sr} Hz differs from {samplerate} Hz of {recs[0].audio}; "
                f"all recordings of a dataset need the same samplerate (resample them first)"
            )
        if c != channels:
            raise DASFormatError(
                f"{r.audio}: {c} channel(s), but {recs[0].audio} has {channels}; "
                f"all recordings of a dataset need the same number of channels"
            )
    names, types = _class_info(recs, anns, defs, class_names, class_types)
    if suffixes is True:
        suffix_classes = names[1:]
    elif suffixes is False or suffixes is None:
        suffix_classes = []
    else:
        suffix_classes = list(suffixes)
        unknown = [s for s in suffix_classes if s not in names[1:]]
        if unknown:
            raise ValueError(f"make_dataset: suffixes {unknown} are not classes {names[1:]}")
    plan = _plan([i[0] for i in infos], split, val_fraction, test_fraction, seed)
    totals = {s: sum(b - a for parts in plan for (sp, a, b) in parts if sp == s) for s in SPLITS}
    for s in ("train", "val"):
        if totals[s] == 0:
            raise ValueError(
                f"make_dataset: the {s} split would be empty; "
                f"use longer recordings or other fractions"
            )

    # --- write into a hidden sibling, rename at the end -------------------------------------
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(out)
    tmp = out.parent / f".{out.name}{_BUILD_TAG}{os.getpid()}"
    bar = None
    if progress:
        tqdm = require("tqdm.auto", "a progress bar").tqdm
        bar = tqdm(
            total=sum(totals.values()),
            unit="sample",
            unit_scale=True,
            desc=f"make_dataset {out.name}",
        )
    try:
        attrs: dict[str, Any] = {
            "samplerate_x_Hz": samplerate,
            "samplerate_y_Hz": samplerate,
            "class_names": names,
            "class_types": types,
            "audio_scaling": audio_scaling,
        }
        for s in suffix_classes:
            k = names.index(s)
            attrs[f"class_names_{s}"] = [names[0], s]
            attrs[f"class_types_{s}"] = [types[0], types[k]]
        files: dict[str, dict[str, list]] = {
            s: {
                "filename": [],
                "startsample": [],
                "endsample": [],
                "recording_startsample": [],
                "audio_offset": [],
                "audio_divisor": [],
            }
            for s in SPLITS
        }
        with _group.open(tmp, mode="w", das_compat=True) as root:
            arrays = {}
            for s in SPLITS:
                g = root.create_group(s)
                arrays[s, "x"] = g.create_dataset("x", shape=(0, channels), dtype=x_dtype)
                arrays[s, "y"] = g.create_dataset("y", shape=(0, len(names)), dtype=y_dtype)
                for cls in suffix_classes:
                    arrays[s, f"y_{cls}"] = g.create_dataset(
                        f"y_{cls}", shape=(0, 2), dtype=y_dtype
                    )
            for rec, ann, parts, info in zip(recs, anns, plan, infos):
                data, _ = load_audio(rec.audio, mmap=True)
                offset_divisor = _audio_scale(rec.audio, data.dtype, audio_scaling)
                scaled = offset_divisor != (0.0, 1.0)
                # float32 is what DAS reads; a wider x_dtype keeps the wider precision
                work = np.float64 if x_dtype.itemsize > 4 else np.float32
                for s, a, b in parts:
                    offset = len(arrays[s, "x"])
                    for i in range(a, b, block_samples):
                        j = min(b, i + block_samples)
                        # The store is built in a temp dir and renamed into place once closed;
                        # close() fsyncs every array, so per-append fsyncs would only cost time.
                        block = np.asarray(data[i:j])
                        if scaled:
                            block = scale_pcm(block, work)
                        arrays[s, "x"].append(
                            _cast_block(block, x_dtype, rec.audio, i), sync=False
                        )
                        act = class_activations(
                            ann,
                            j - i,
                            samplerate,
                            names,
                            types,
                            event_width_seconds=event_width_seconds,
                            event_std_seconds=event_std_seconds,
                            event_kernel=event_kernel,
                            segment_gap_seconds=segment_gap_seconds,
                            sample_tolerance=sample_tolerance,
                            first_sample=i,
                            recording_samples=info[0],
                        )
                        arrays[s, "y"].append(normalize_targets(act, y_dtype), sync=False)
                        if suffix_classes:
                            singles = single_class_targets(
                                act, names, types, classes=suffix_classes, dtype=y_dtype
                            )
                            for cls, (y1, _, _) in singles.items():
                                arrays[s, f"y_{cls}"].append(y1, sync=False)
                        if bar is not None:
                            bar.update(j - i)
                    files[s]["filename"].append(str(rec.audio))
                    files[s]["startsample"].append(offset)
                    files[s]["endsample"].append(offset + (b - a))
                    files[s]["recording_startsample"].append(a)
                    files[s]["audio_offset"].append(offset_divisor[0])
                    files[s]["audio_divisor"].append(offset_divisor[1])
                del data  # drop the mapping before the next recording
            for s in SPLITS:
                attrs[f"filename_{s}"] = files[s]["filename"]
                attrs[f"filename_startsample_{s}"] = files[s]["startsample"]
                attrs[f"filename_endsample_{s}"] = files[s]["endsample"]
                attrs[f"filename_recording_startsample_{s}"] = files[s]["recording_startsample"]
                attrs[f"filename_audio_offset_{s}"] = files[s]["audio_offset"]
                attrs[f"filename_audio_divisor_{s}"] = files[s]["audio_divisor"]
            # how the targets were made, for provenance (None values are left out: DAS's
            # attrs.npy readers and npydir's restricted unpickler expect plain data)
            settings = {
                "split": split,
                "val_fraction": float(val_fraction),
                "test_fraction": float(test_fraction),
                "seed": seed,
                "event_width_seconds": float(event_width_seconds),
                "event_std_seconds": event_std_seconds,
                "event_kernel": event_kernel if event_std_seconds is not None else None,
                "segment_gap_seconds": float(segment_gap_seconds),
                "sample_tolerance": float(sample_tolerance),
            }
            attrs["make_dataset"] = {k: v for k, v in settings.items() if v is not None}
            root.attrs.update(attrs)
        if as_zarr:
            write_das_zarr(tmp, out, overwrite=overwrite, progress=progress)
            shutil.rmtree(tmp, ignore_errors=True)
        else:  # an existing out was checked above: overwrite=True and out is a store
            publish_directory(tmp, out, overwrite=overwrite,
                              aside=out.parent / f".{out.name}{_OLD_TAG}{os.getpid()}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    return out
