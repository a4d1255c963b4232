"""Training targets ``y`` from annotations: one column per class, class 0 is "noise".

How annotations become samples (``sr`` = sample rate, times in seconds). By default every rule
is the one of DAS's dataset maker (``make_annotation_matrix``, then ``blur_events`` on the
event classes, then ``normalize_probabilities``); the interop tests compare the two.

- A time ``t`` falls on sample ``floor(t * sr)`` (DAS's ``int(t * sr)``). With
  ``sample_tolerance=1e-6`` a time up to 1e-6 samples short of a sample lands on it, so that
  ``t = k / sr`` is sample ``k`` despite float rounding (DAS puts some of those on ``k - 1``).
- A **segment** covers samples ``floor(start * sr)`` up to ``floor(stop * sr + 1)``
  (exclusive): start and stop sample both included, as ``make_annotation_matrix``.
- An **event** is, by default, a box of ``W = max(1, round(event_width_seconds * sr))``
  samples, ``c - W // 2`` up to ``c - W // 2 + W`` (exclusive), ``c`` its start sample.
- With ``event_std_seconds`` an event is a Gaussian of that standard deviation ``s`` (in
  samples ``s = event_std_seconds * sr``). ``event_kernel="das"`` (default) is DAS's
  ``blur_events``: the event's samples (start to stop, as a segment) convolved with a
  Gaussian window of ``M = int(8 * s)`` taps centred ``(M - 1) / 2`` taps in, so for even
  ``M`` it peaks half a sample after the event (two taps of ``exp(-1 / (8 s**2))`` instead of
  one of 1); overlapping events add. ``event_kernel="symmetric"``: ``exp(-0.5 * ((i - c) /
  s)**2)`` around the start sample ``c``, cut at 4 standard deviations, peak exactly 1 at
  ``c``; overlapping events of one class take the maximum.
- Events outside the recording (sample < 0 or >= ``recording_samples``) add nothing.
- With ``segment_gap_seconds > 0``, consecutive segments of the same class that are closer
  than ``G = round(segment_gap_seconds * sr)`` samples (touching or overlapping) get a gap of
  ``G`` samples of "noise" centred between them, so a network can learn where one ends.
- Rows sum to 1: ``noise = clip(1 - sum(others), 0, 1)``, then each row is divided by its
  sum, which changes only rows whose classes add up to more than 1 (the same numbers as
  DAS's ``normalize_probabilities``).

Everything works on a window ``[first_sample, first_sample + nb_samples)`` of the recording,
so long recordings are turned into targets block by block without building the whole ``y``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .annotations import Annotations

__all__ = [
    "DEFAULT_EVENT_WIDTH_SECONDS",
    "EVENT_KERNELS",
    "class_activations",
    "das_event_taps",
    "make_targets",
    "normalize_targets",
    "seconds_to_samples",
    "single_class_targets",
]

#: Default event box width: 6 ms, close to DAS's historical 61 samples at 10 kHz.
DEFAULT_EVENT_WIDTH_SECONDS = 0.006

#: Gaussian event kernels: DAS's ``blur_events`` window, or one centred on the event sample.
EVENT_KERNELS = ("das", "symmetric")

_GAUSS_RADIUS_STD = 4.0
# Events whose taps touch a block are added one by one while that costs less than this many
# multiply-adds per block sample; denser blocks (event rows with long durations) use an FFT.
_SPARSE_WORK_PER_SAMPLE = 64


def seconds_to_samples(
    seconds: np.ndarray | float, samplerate: float, *, tolerance: float = 0.0
) -> np.ndarray:
    """Sample index of each time: ``floor(t * samplerate + tolerance)``.

    ``tolerance=0`` is DAS's ``int(t * samplerate)`` for ``t >= 0``. A small tolerance such
    as 1e-6 makes ``t = k / samplerate`` land on ``k`` even where float rounding gives
    ``k - 1e-13`` (at 10 kHz that is about 6 % of such times).
    """
    return np.floor(np.asarray(seconds, dtype=np.float64) * samplerate + tolerance).astype(
        np.int64
    )


def _stop_samples(seconds: np.ndarray, samplerate: float, tolerance: float) -> np.ndarray:
    # one past the stop sample, computed as DAS does (int(t * sr + 1)), not floor(t * sr) + 1:
    # the two differ where adding 1 rounds t * sr up to the next integer
    return np.floor(np.asarray(seconds, dtype=np.float64) * samplerate + 1 + tolerance).astype(
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


def _box_mask(n: int, lo: np.ndarray, hi: np.ndarray, first: int) -> np.ndarray:
    """Boolean ``[n]``: True inside any box ``[lo, hi)`` shifted by ``-first``, clipped."""
    lo = np.clip(lo - first, 0, n)
    hi = np.clip(hi - first, 0, n)
    keep = hi > lo
    if not np.any(keep):
        return np.zeros(n, dtype=bool)
    # difference array: +1 at each start, -1 at each end; cumsum > 0 inside any box. O(n + boxes)
    diff = np.zeros(n + 1, dtype=np.int64)
    np.add.at(diff, lo[keep], 1)
    np.add.at(diff, hi[keep], -1)
    return np.cumsum(diff[:-1]) > 0


def _fill_box(col: np.ndarray, lo: np.ndarray, hi: np.ndarray, first: int) -> None:
    """Set col[lo-first : hi-first] = 1 for every box, clipped to the window."""
    col[_box_mask(len(col), lo, hi, first)] = 1.0


def das_event_taps(event_std_seconds: float, samplerate: float) -> tuple[np.ndarray, int]:
    """The Gaussian window DAS's ``blur_events`` convolves event samples with.

    Returns
    -------
    taps : numpy.ndarray
        ``M = int(event_std_seconds * samplerate * 8)`` float64 taps,
        ``exp(-0.5 * ((m - (M - 1) / 2) / s) ** 2)`` for ``m = 0 .. M - 1``.
    left : int
        ``(M - 1) // 2``: tap ``m`` lands on sample ``c - left + m`` for an event sample ``c``
        (convolution "same"), so for even ``M`` the peak is half a sample after ``c``.

    Raises
    ------
    ValueError
        Fewer than one tap (``event_std_seconds * samplerate < 1 / 8``), where DAS's own
        ``blur_events`` fails with "v cannot be empty".
    """
    std = event_std_seconds * samplerate
    m = int(std * 8)
    if m < 1:
        raise ValueError(
            f"event_std_seconds={event_std_seconds!r} is {std!r} samples at {samplerate} Hz; "
            f"DAS's Gaussian has int(8 * std) taps, none for std < 1/8 sample; use "
            f"event_std_seconds >= {1 / (8 * samplerate)!r} or event_kernel='symmetric'"
        )
    centre = (m - 1) / 2.0
    taps = np.exp(-0.5 * ((np.arange(m) - centre) / std) ** 2)
    return taps, (m - 1) // 2


def _add_das_gaussians(
    col: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    taps: np.ndarray,
    left: int,
    first: int,
    total: int,
) -> None:
    """Add, to ``col`` (samples ``first ..``), the event samples ``[lo, hi)`` convolved with taps.

    Only event samples inside the recording ``[0, total)`` count, as in DAS, where the
    convolution runs over the recording's own annotation matrix.
    """
    n = len(col)
    right = len(taps) - 1 - left
    # event samples whose taps reach the window: [first - right, first + n + left)
    a = max(0, first - right)
    b = min(total, first + n + left)
    if b <= a:
        return
    mask = _box_mask(b - a, lo, hi, a)
    hits = np.flatnonzero(mask)
    if not len(hits):
        return
    if len(hits) * len(taps) <= _SPARSE_WORK_PER_SAMPLE * (b - a):
        # event by event, in sample order: every block of a recording adds the same
        # contributions in the same order, so blocks concatenate to exactly the whole
        for h in hits:
            start = a + int(h) - left - first  # where tap 0 lands in col
            ta, tb = max(0, -start), min(len(taps), n - start)
            if tb > ta:
                col[start + ta : start + tb] += taps[ta:tb]
        return
    full_len = (b - a) + len(taps) - 1
    size = 1 << (full_len - 1).bit_length()
    full = np.fft.irfft(
        np.fft.rfft(mask.astype(np.float64), size) * np.fft.rfft(taps, size), size
    )[:full_len]
    # full[k] belongs to sample a + k - left
    k0 = first - a + left
    col += np.clip(full[k0 : k0 + n], 0.0, None)  # FFT round-off can dip below zero


def _add_symmetric_gaussians(
    col: np.ndarray, centres: np.ndarray, std: float, first: int, last: int
) -> None:
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


def class_activations(
    ann: Annotations,
    nb_samples: int,
    samplerate: float,
    class_names: Sequence[str],
    class_types: Sequence[str],
    *,
    event_width_seconds: float = DEFAULT_EVENT_WIDTH_SECONDS,
    event_std_seconds: float | None = None,
    event_kernel: str = "das",
    segment_gap_seconds: float = 0.0,
    sample_tolerance: float = 0.0,
    first_sample: int = 0,
    recording_samples: int | None = None,
) -> np.ndarray:
    """Per-class activation for every sample, before normalisation.

    Parameters are those of :func:`make_targets`.

    Returns
    -------
    numpy.ndarray
        ``[nb_samples, len(class_names) - 1]`` float64, column ``k - 1`` for class ``k``
        (the noise class 0 is not included). Values are >= 0 and at most 1, except where
        events of one class overlap with ``event_kernel="das"``, which adds them as DAS does.
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
    if event_kernel not in EVENT_KERNELS:
        raise ValueError(f"event_kernel must be one of {EVENT_KERNELS}, found {event_kernel!r}")
    if segment_gap_seconds < 0:
        raise ValueError(f"segment_gap_seconds must be >= 0, found {segment_gap_seconds!r}")
    if not 0 <= sample_tolerance < 1:
        raise ValueError(f"sample_tolerance must be in [0, 1), found {sample_tolerance!r}")
    first = int(first_sample)
    last = first + int(nb_samples)
    total = last if recording_samples is None else int(recording_samples)
    if first < 0 or total < last:
        raise ValueError(
            f"the window [first_sample, first_sample + nb_samples) = [{first}, {last}) must lie "
            f"inside the recording [0, recording_samples) = [0, {total})"
        )
    taps: np.ndarray | None = None
    left = 0  # used only with taps
    if event_std_seconds is not None and event_kernel == "das" and "event" in class_types[1:]:
        taps, left = das_event_taps(event_std_seconds, samplerate)
    out = np.zeros((int(nb_samples), len(class_names) - 1), dtype=np.float64)
    real = ~ann.special
    tol = sample_tolerance
    for k in range(1, len(class_names)):
        mask = real & ann.is_type(class_names[k])
        if not np.any(mask):
            continue
        col = out[:, k - 1]
        start = seconds_to_samples(ann.start_seconds[mask], samplerate, tolerance=tol)
        if class_types[k] == "segment":
            hi = _stop_samples(ann.stop_seconds[mask], samplerate, tol)
            _fill_box(col, start, hi, first)
            if segment_gap_seconds > 0:
                _cut_gaps(col, start, hi, round(segment_gap_seconds * samplerate), first)
        elif taps is not None:
            # DAS blurs the event's column of the annotation matrix: start to stop samples
            hi = _stop_samples(ann.stop_seconds[mask], samplerate, tol)
            _add_das_gaussians(col, start, hi, taps, left, first, total)
        else:
            centres = start[(start >= 0) & (start < total)]
            if event_std_seconds is None:
                width = max(1, round(event_width_seconds * samplerate))
                lo = centres - width // 2
                _fill_box(col, lo, lo + width, first)
            else:
                _add_symmetric_gaussians(
                    col, centres, event_std_seconds * samplerate, first, last
                )
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


def normalize_targets(activations: np.ndarray, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """Prepend the noise class and make every row sum to 1.

    ``noise = clip(1 - sum(activations), 0, 1)``; then each row is divided by its sum, which
    is 1 unless the classes add up to more than 1. These are the numbers of DAS's
    ``normalize_probabilities`` (which divides such rows' classes by their sum and sets
    ``noise = 1 - sum``).

    Parameters
    ----------
    activations : numpy.ndarray
        ``[samples, nb_classes - 1]`` values >= 0.
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
    event_kernel: str = "das",
    segment_gap_seconds: float = 0.0,
    sample_tolerance: float = 0.0,
    first_sample: int = 0,
    recording_samples: int | None = None,
    dtype: npt.DTypeLike = np.float32,
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
        If given, events are Gaussians of this standard deviation instead of boxes (DAS's
        dataset maker offers 0.0016).
    event_kernel : {"das", "symmetric"}, default "das"
        Gaussian events only. ``"das"``: DAS's ``blur_events`` (``int(8 * std * sr)`` taps,
        half a sample late for an even count; overlapping events add). ``"symmetric"``: peak
        1 on the event sample, cut at 4 standard deviations; overlapping events take the
        maximum.
    segment_gap_seconds : float, default 0
        Minimum noise gap between consecutive segments of the same class.
    sample_tolerance : float, default 0
        A time ``t`` falls on sample ``floor(t * sr + sample_tolerance)``. 0 is DAS's
        ``int(t * sr)``; 1e-6 puts ``k / sr`` on ``k`` despite float rounding.
    first_sample : int, default 0
        ``y[0]`` is sample ``first_sample`` of the recording (for building ``y`` in blocks).
    recording_samples : int, optional
        Length of the whole recording (default: ``first_sample + nb_samples``, the window
        ends the recording). Events outside it add nothing, and a Gaussian's taps from
        events just outside the window do, so blocks concatenate to the whole.
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
        event_kernel=event_kernel,
        segment_gap_seconds=segment_gap_seconds,
        sample_tolerance=sample_tolerance,
        first_sample=first_sample,
        recording_samples=recording_samples,
    )
    return normalize_targets(a, dtype)


def single_class_targets(
    activations: np.ndarray,
    class_names: Sequence[str],
    class_types: Sequence[str],
    *,
    classes: Sequence[str] | None = None,
    dtype: npt.DTypeLike = np.float32,
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
