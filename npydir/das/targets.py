"""Training targets ``y`` from annotations: one column per class, class 0 is "noise".

How annotations become samples (``sr`` = sample rate, times in seconds):

- A time ``t`` falls on sample ``floor(t * sr)`` (as DAS's ``int(t * sr)`` for t >= 0; a
  tolerance of 1e-6 samples absorbs float error, so ``t = k / sr`` lands on sample ``k``).
- A **segment** covers samples ``floor(start * sr)`` through ``floor(stop * sr)``, both
  included (DAS's ``make_annotation_matrix``).
- An **event** at sample ``c`` is a box of ``W = max(1, round(event_width_seconds * sr))``
  samples, ``c - W // 2`` up to ``c - W // 2 + W`` (exclusive) — or, if ``event_std_seconds``
  is given, a Gaussian ``exp(-0.5 * ((i - c) / (std * sr))**2)`` cut at 4 standard deviations,
  with peak 1 at ``c``. Overlapping events of one class take the maximum, never more than 1.
- With ``segment_gap_seconds > 0``, consecutive segments of the same class that are closer
  than ``G = round(segment_gap_seconds * sr)`` samples (touching or overlapping) get a gap of
  ``G`` samples of "noise" centred between them, so a network can learn where one ends.
- Rows sum to 1: ``noise = clip(1 - sum(others), 0, 1)``, then each row is divided by its
  sum (which only changes rows where classes overlap).

Everything works on a window ``[first_sample, first_sample + nb_samples)`` of the recording,
so long recordings are turned into targets block by block without building the whole ``y``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .annotations import Annotations

__all__ = [
    "DEFAULT_EVENT_WIDTH_SECONDS",
    "class_activations",
    "make_targets",
    "normalize_targets",
    "seconds_to_samples",
    "single_class_targets",
]

#: Default event box width: 6 ms, close to DAS's historical 61 samples at 10 kHz.
DEFAULT_EVENT_WIDTH_SECONDS = 0.006

_EPS_SAMPLES = 1e-6
_GAUSS_RADIUS_STD = 4.0


def seconds_to_samples(seconds: np.ndarray | float, samplerate: float) -> np.ndarray:
    """Sample index of each time: ``floor(t * samplerate)`` with a 1e-6-sample tolerance."""
    return np.floor(np.asarray(seconds, dtype=np.float64) * samplerate + _EPS_SAMPLES).astype(
        np.int64
    )


def _check_classes(class_names: Sequence[str], class_types: Sequence[str]) -> None:
    if len(class_names) != len(class_types):
        raise ValueError(
            f"class_names and class_types must have the same length, found {len(class_names)} "
            f"names {list(class_names)} and {len(class_types)} types {list(class_types)}"
        )
    if len(class_names) < 1:
        raise ValueError("class_names must hold at least the noise class at index 0")
    if len(set(class_names)) != len(class_names):
        dup = sorted({n for n in class_names if list(class_names).count(n) > 1})
        raise ValueError(f"class_names must be unique, found duplicates {dup}")
    bad = [t for t in class_types if t not in ("event", "segment")]
    if bad:
        raise ValueError(f"class_types must be 'event' or 'segment', found {bad}")


def _fill_box(col: np.ndarray, lo: np.ndarray, hi: np.ndarray, first: int) -> None:
    """Set col[lo-first : hi-first] = 1 for every box, clipped to the window."""
    n = len(col)
    lo = np.clip(lo - first, 0, n)
    hi = np.clip(hi - first, 0, n)
    keep = hi > lo
    if not np.any(keep):
        return
    # difference array: +1 at each start, -1 at each end; cumsum > 0 inside any box. O(n + boxes)
    diff = np.zeros(n + 1, dtype=np.int64)
    np.add.at(diff, lo[keep], 1)
    np.add.at(diff, hi[keep], -1)
    inside = np.cumsum(diff[:-1]) > 0
    col[inside] = 1.0


def class_activations(
    ann: Annotations,
    nb_samples: int,
    samplerate: float,
    class_names: Sequence[str],
    class_types: Sequence[str],
    *,
    event_width_seconds: float = DEFAULT_EVENT_WIDTH_SECONDS,
    event_std_seconds: float | None = None,
    segment_gap_seconds: float = 0.0,
    first_sample: int = 0,
) -> np.ndarray:
    """Per-class activation in [0, 1] for every sample, before normalisation.

    Parameters are those of :func:`make_targets`.

    Returns
    -------
    numpy.ndarray
        ``[nb_samples, len(class_names) - 1]`` float64, column ``k - 1`` for class ``k``
        (the noise class 0 is not included).
    """
    _check_classes(class_names, class_types)
    if samplerate <= 0 or not math.isfinite(samplerate):
        raise ValueError(f"samplerate must be a finite number > 0, found {samplerate!r}")
    if nb_samples < 0:
        raise ValueError(f"nb_samples must be >= 0, found {nb_samples}")
    if event_std_seconds is None and not event_width_seconds > 0:
        raise ValueError(f"event_width_seconds must be > 0, found {event_width_seconds!r}")
    if event_std_seconds is not None and not event_std_seconds > 0:
        raise ValueError(f"event_std_seconds must be > 0, found {event_std_seconds!r}")
    if segment_gap_seconds < 0:
        raise ValueError(f"segment_gap_seconds must be >= 0, found {segment_gap_seconds!r}")
    first = int(first_sample)
    last = first + int(nb_samples)
    out = np.zeros((int(nb_samples), len(class_names) - 1), dtype=np.float64)
    real = ~ann.special
    for k in range(1, len(class_names)):
        mask = real & ann.is_type(class_names[k])
        if not np.any(mask):
            continue
        col = out[:, k - 1]
        if class_types[k] == "segment":
            lo = seconds_to_samples(ann.start_seconds[mask], samplerate)
            hi = seconds_to_samples(ann.stop_seconds[mask], samplerate) + 1  # stop sample included
            _fill_box(col, lo, hi, first)
            if segment_gap_seconds > 0:
                _cut_gaps(col, lo, hi, round(segment_gap_seconds * samplerate), first)
        else:
            centres = seconds_to_samples(ann.start_seconds[mask], samplerate)
            if event_std_seconds is None:
                width = max(1, round(event_width_seconds * samplerate))
                lo = centres - width // 2
                _fill_box(col, lo, lo + width, first)
            else:
                _add_gaussians(col, centres, event_std_seconds * samplerate, first, last)
    return out


def _cut_gaps(col: np.ndarray, lo: np.ndarray, hi: np.ndarray, gap: int, first: int) -> None:
    if gap <= 0 or len(lo) < 2:
        return
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], hi[order]
    # running end of everything so far, so a segment nested inside a longer one is handled
    prev_end = np.maximum.accumulate(hi)[:-1]
    nxt = lo[1:]
    close = nxt - prev_end < gap
    mid = (prev_end[close] + nxt[close]) // 2
    start = mid - gap // 2
    n = len(col)
    for s in start:
        a, b = max(0, s - first), min(n, s + gap - first)
        if b > a:
            col[a:b] = 0.0


def _add_gaussians(col: np.ndarray, centres: np.ndarray, std: float, first: int, last: int) -> None:
    radius = int(math.ceil(_GAUSS_RADIUS_STD * std))
    near = (centres + radius >= first) & (centres - radius < last)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / std) ** 2)
    n = len(col)
    for c in centres[near]:
        a, b = c - radius - first, c + radius + 1 - first
        ka, kb = max(0, -a), len(kernel) - max(0, b - n)
        a, b = max(a, 0), min(b, n)
        np.maximum(col[a:b], kernel[ka:kb], out=col[a:b])


def normalize_targets(activations: np.ndarray, dtype: np.dtype | str = np.float32) -> np.ndarray:
    """Prepend the noise class and make every row sum to 1.

    ``noise = clip(1 - sum(activations), 0, 1)``; then each row is divided by its sum, which
    is 1 unless classes overlap (sum > 1).

    Parameters
    ----------
    activations : numpy.ndarray
        ``[samples, nb_classes - 1]`` values in [0, 1].
    dtype : dtype, default float32

    Returns
    -------
    numpy.ndarray
        ``[samples, nb_classes]``.
    """
    a = np.asarray(activations, dtype=np.float64)
    noise = np.clip(1.0 - a.sum(axis=1, keepdims=True), 0.0, 1.0)
    y = np.concatenate([noise, a], axis=1)
    y /= y.sum(axis=1, keepdims=True)
    return y.astype(dtype, copy=False)


def make_targets(
    ann: Annotations,
    nb_samples: int,
    samplerate: float,
    class_names: Sequence[str],
    class_types: Sequence[str],
    *,
    event_width_seconds: float = DEFAULT_EVENT_WIDTH_SECONDS,
    event_std_seconds: float | None = None,
    segment_gap_seconds: float = 0.0,
    first_sample: int = 0,
    dtype: np.dtype | str = np.float32,
) -> np.ndarray:
    """Build the training target ``y`` of one recording (or a window of it).

    Parameters
    ----------
    ann : Annotations
        Annotations of the recording. Rows whose type is not in ``class_names`` and special
        rows (types without annotations) add nothing.
    nb_samples : int
        Number of samples of ``y``.
    samplerate : float
        Sample rate of ``y`` in Hz.
    class_names : sequence of str
        Class of each column; index 0 is the noise class (its name is conventionally
        ``"noise"``; annotations of that name are ignored).
    class_types : sequence of str
        ``"event"`` or ``"segment"`` per class (the entry for noise is not used).
    event_width_seconds : float, default 0.006
        Width of the box drawn for each event.
    event_std_seconds : float, optional
        If given, events are Gaussians of this standard deviation instead of boxes.
    segment_gap_seconds : float, default 0
        Minimum noise gap between consecutive segments of the same class.
    first_sample : int, default 0
        ``y[0]`` is sample ``first_sample`` of the recording (for building ``y`` in blocks).
    dtype : dtype, default float32

    Returns
    -------
    numpy.ndarray
        ``[nb_samples, len(class_names)]``; rows sum to 1; column 0 is noise.

    Examples
    --------
    >>> ann = Annotations(["pulse", "sine"], [0.002, 0.005], [0.002, 0.008])
    >>> y = make_targets(ann, 10, 1000, ["noise", "pulse", "sine"], ["segment", "event", "segment"],
    ...                  event_width_seconds=0.001)
    >>> y.argmax(axis=1).tolist()
    [0, 0, 1, 0, 0, 2, 2, 2, 2, 0]
    """
    a = class_activations(
        ann,
        nb_samples,
        samplerate,
        class_names,
        class_types,
        event_width_seconds=event_width_seconds,
        event_std_seconds=event_std_seconds,
        segment_gap_seconds=segment_gap_seconds,
        first_sample=first_sample,
    )
    return normalize_targets(a, dtype)


def single_class_targets(
    activations: np.ndarray,
    class_names: Sequence[str],
    class_types: Sequence[str],
    *,
    classes: Sequence[str] | None = None,
    dtype: np.dtype | str = np.float32,
) -> dict[str, tuple[np.ndarray, list[str], list[str]]]:
    """Two-column targets (noise + one class) for training on a single song type.

    Parameters
    ----------
    activations : numpy.ndarray
        Output of :func:`class_activations`.
    class_names, class_types : sequence of str
        As for :func:`make_targets`.
    classes : sequence of str, optional
        Which classes get a target (default: all but noise).
    dtype : dtype, default float32

    Returns
    -------
    dict
        ``{suffix: (y, class_names_suffix, class_types_suffix)}`` where the suffix is the class
        name, ``y`` is ``[samples, 2]`` = ``[1 - a, a]``, and the names/types are
        ``[class_names[0], name]`` / ``[class_types[0], type]`` (stored as ``y_<suffix>``,
        ``class_names_<suffix>``, ``class_types_<suffix>``).
    """
    _check_classes(class_names, class_types)
    wanted = list(class_names[1:]) if classes is None else list(classes)
    out = {}
    for name in wanted:
        if name not in class_names[1:]:
            raise ValueError(
                f"single-class target {name!r} is not one of the classes {list(class_names[1:])}"
            )
        k = list(class_names).index(name)
        a = np.clip(np.asarray(activations[:, k - 1], dtype=np.float64), 0.0, 1.0)
        y = np.stack([1.0 - a, a], axis=1).astype(dtype, copy=False)
        out[name] = (y, [class_names[0], name], [class_types[0], class_types[k]])
    return out
