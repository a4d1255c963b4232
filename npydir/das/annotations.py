"""DAS annotation files (``*_annotations.csv``).

Format: a CSV file with a header naming the columns ``name``, ``start_seconds`` and
``stop_seconds`` (other columns, such as a pandas index column, are ignored on reading), one
annotation per row:

- a **segment** (sine song, a syllable) has ``start_seconds < stop_seconds``;
- an **event** (a song pulse) has ``start_seconds == stop_seconds``;
- special rows keep song types that have no annotations in this file: a segment type is a row
  with ``start_seconds`` NaN and an arbitrary ``stop_seconds`` (DAS writes 0); an event type
  is a row with both NaN.

NaN is written as an empty field (what pandas, and therefore the DAS GUI, writes); on reading,
an empty field, ``nan`` and ``NaN`` all mean NaN. Finite floats are written with ``repr``,
which round-trips every float64 exactly.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import DASFormatError
from ._files import atomic_write_text, csv_line

__all__ = ["COLUMNS", "Annotations", "read_annotations", "write_annotations"]

#: The columns of an annotation file, in the order they are written.
COLUMNS = ("name", "start_seconds", "stop_seconds")


def _check_row(name: Any, start: float, stop: float, where: str) -> None:
    """Raise DASFormatError if one annotation row is inconsistent; ``where`` locates it."""
    if not isinstance(name, str) or not name.strip():
        raise DASFormatError(
            f"{where}, column 'name': expected a non-empty song type name, found {name!r}"
        )
    if "\x00" in name:
        raise DASFormatError(f"{where}, column 'name': names cannot contain NUL characters")
    for col, v in (("start_seconds", start), ("stop_seconds", stop)):
        if math.isinf(v):
            raise DASFormatError(
                f"{where}, column '{col}': expected a finite time or NaN, found {v!r}"
            )
    if math.isnan(start):
        return  # special row: a type without annotations; stop is arbitrary
    if math.isnan(stop):
        raise DASFormatError(
            f"{where}, column 'stop_seconds': NaN stop with a start of {start!r}; "
            f"only special rows "
            f"(start NaN) may have a NaN stop"
        )
    if stop < start:
        raise DASFormatError(
            f"{where}, column 'stop_seconds': stop {stop!r} is before start {start!r} "
            f"(events have start == stop, segments start < stop)"
        )


@dataclass(eq=False)
class Annotations:
    """The rows of an annotation file as three aligned arrays.

    Parameters
    ----------
    names : array_like of str
        Song type of each row.
    start_seconds, stop_seconds : array_like of float
        Times in seconds. NaN start marks a special row (a type without annotations).

    Notes
    -----
    Rows keep their file order, so a read/write round trip reproduces the file's rows.
    Use :meth:`events`, :meth:`segments` and :meth:`categories` to work per song type.
    """

    names: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    start_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stop_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))

    if TYPE_CHECKING:
        # The generated __init__ takes array_like (converted by __post_init__); this tells
        # type checkers so, while the fields stay arrays.
        def __init__(
            self,
            names: npt.ArrayLike = ...,
            start_seconds: npt.ArrayLike = ...,
            stop_seconds: npt.ArrayLike = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        names = np.empty(len(self.names), dtype=object)
        names[:] = [str(n) if isinstance(n, (str, np.str_)) else n for n in self.names]
        self.names = names
        self.start_seconds = np.asarray(self.start_seconds, dtype=np.float64).reshape(-1)
        self.stop_seconds = np.asarray(self.stop_seconds, dtype=np.float64).reshape(-1)
        n = len(self.names)
        if len(self.start_seconds) != n or len(self.stop_seconds) != n:
            raise ValueError(
                f"Annotations: names, start_seconds and stop_seconds must have the same length, "
                f"found {n}, {len(self.start_seconds)}, {len(self.stop_seconds)}"
            )
        for i, (nm, a, b) in enumerate(zip(self.names, self.start_seconds, self.stop_seconds)):
            _check_row(nm, float(a), float(b), f"Annotations row {i}")

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, float, float]]) -> Annotations:
        """Build from ``(name, start_seconds, stop_seconds)`` tuples."""
        rows = list(rows)
        if not rows:
            return cls()
        names, starts, stops = zip(*rows)
        return cls(list(names), list(starts), list(stops))

    def with_empty_type(self, name: str, category: str) -> Annotations:
        """Return a copy with a special row keeping ``name`` (a type without annotations)."""
        if category not in ("event", "segment"):
            raise ValueError(f"category must be 'event' or 'segment', found {category!r}")
        stop = math.nan if category == "event" else 0.0  # the DAS convention
        return Annotations.from_rows([*self.rows(), (name, math.nan, stop)])

    # --- container protocol -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def rows(self) -> Iterator[tuple[str, float, float]]:
        """Iterate over ``(name, start_seconds, stop_seconds)`` in file order."""
        for nm, a, b in zip(self.names, self.start_seconds, self.stop_seconds):
            yield str(nm), float(a), float(b)

    __iter__ = rows

    def __eq__(self, other: object) -> bool:
        """Equal if names and times are identical (NaN equals NaN, as in a round trip)."""
        if not isinstance(other, Annotations):
            return NotImplemented
        return (
            len(self) == len(other)
            and all(a == b for a, b in zip(self.names, other.names))
            and np.array_equal(self.start_seconds, other.start_seconds, equal_nan=True)
            and np.array_equal(self.stop_seconds, other.stop_seconds, equal_nan=True)
        )

    def __repr__(self) -> str:
        return f"Annotations({len(self)} rows, types={self.types})"

    # --- per song type ------------------------------------------------------------------
    @property
    def special(self) -> np.ndarray:
        """Boolean mask of the special rows (start NaN: a type without annotations)."""
        return np.isnan(self.start_seconds)

    @property
    def types(self) -> list[str]:
        """Song types present (including those kept only by special rows), in file order."""
        return list(dict.fromkeys(str(n) for n in self.names))

    def is_type(self, name: str) -> np.ndarray:
        """Boolean mask of the rows of type ``name`` (special rows included)."""
        if len(self) == 0:
            return np.zeros(0, dtype=bool)
        # elementwise comparison of the object array runs in C
        return np.asarray(self.names == name, dtype=bool)

    def _mask(self, name: str) -> np.ndarray:
        return self.is_type(name) & ~self.special

    def categories(self) -> dict[str, str]:
        """Category of every type as DAS infers it from the rows.

        The first real row of a type decides: start == stop is an ``"event"``, otherwise a
        ``"segment"``. A type with only a special row is an event if its stop is NaN too,
        else a segment.
        """
        cats: dict[str, str] = {}
        special: dict[str, str] = {}
        for nm, a, b in self.rows():
            if math.isnan(a):
                special.setdefault(nm, "event" if math.isnan(b) else "segment")
            elif nm not in cats:
                cats[nm] = "event" if a == b else "segment"
        return {nm: cats.get(nm, special.get(nm, "segment")) for nm in self.types}

    def events(self, name: str) -> np.ndarray:
        """Times (seconds) of the annotations of type ``name``, using their start times."""
        return self.start_seconds[self._mask(name)].copy()

    def segments(self, name: str) -> np.ndarray:
        """``[n, 2]`` array of (start, stop) seconds of the annotations of type ``name``."""
        m = self._mask(name)
        return np.stack([self.start_seconds[m], self.stop_seconds[m]], axis=1)

    def select(self, names: Iterable[str]) -> Annotations:
        """Rows whose type is in ``names`` (special rows included), in file order."""
        keep = set(names)
        return Annotations.from_rows(r for r in self.rows() if r[0] in keep)


# --- CSV ----------------------------------------------------------------------------------
def _parse_time(text: str, where: str, column: str) -> float:
    s = text.strip()
    if s == "" or s.lower() == "nan":
        return math.nan
    try:
        if "_" in s:  # Python's float() accepts 1_000, CSV readers elsewhere do not
            raise ValueError(s)
        return float(s)
    except ValueError:
        raise DASFormatError(
            f"{where}, column '{column}': expected a number in seconds (or empty for NaN), "
            f"found {text!r}"
        ) from None


def read_annotations(path: str | os.PathLike) -> Annotations:
    """Read a DAS annotation file.

    Parameters
    ----------
    path : str or path-like
        CSV file with a header containing ``name``, ``start_seconds`` and ``stop_seconds``.

    Returns
    -------
    Annotations
        The rows in file order; blank lines are skipped.

    Raises
    ------
    DASFormatError
        Missing header or column, a row with the wrong number of fields, a non-numeric time,
        ``stop < start``, an infinite time, an empty name. The message names the file, the
        line and the column.
    FileNotFoundError
        The file does not exist.
    """
    path = Path(path)
    try:
        # utf-8-sig: files saved by spreadsheet programs often start with a byte-order mark
        # newline="": keep CR/LF inside quoted fields as they are; the csv module splits lines
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise DASFormatError(f"{path}: annotation file is not UTF-8 text ({exc})") from exc
    return _parse_annotations(text, str(path))


def _parse_annotations(text: str, source: str) -> Annotations:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = None
        for row in reader:
            if any(cell.strip() for cell in row):
                header = [cell.strip() for cell in row]
                break
        if header is None:
            raise DASFormatError(
                f"{source}: empty annotation file; expected a header line "
                f"'name,start_seconds,stop_seconds'"
            )
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DASFormatError(
                f"{source}, line {reader.line_num}: header lacks column(s) {missing}; expected "
                f"'name,start_seconds,stop_seconds', found {','.join(header)!r}"
            )
        idx = {c: header.index(c) for c in COLUMNS}
        names: list[str] = []
        starts: list[float] = []
        stops: list[float] = []
        for row in reader:
            where = f"{source}, line {reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DASFormatError(
                    f"{where}: expected {len(header)} fields like the header, "
                    f"found {len(row)}: {row!r}"
                )
            name = row[idx["name"]]
            start = _parse_time(row[idx["start_seconds"]], where, "start_seconds")
            stop = _parse_time(row[idx["stop_seconds"]], where, "stop_seconds")
            _check_row(name, start, stop, where)
            names.append(name)
            starts.append(start)
            stops.append(stop)
    except csv.Error as exc:
        raise DASFormatError(f"{source}, line {reader.line_num}: malformed CSV ({exc})") from exc
    return Annotations(names, starts, stops)


def _format_time(v: float) -> str:
    return "" if math.isnan(v) else repr(float(v))


def write_annotations(
    path: str | os.PathLike, ann: Annotations | Iterable[tuple[str, float, float]]
) -> Path:
    """Write annotations as a DAS ``*_annotations.csv`` file (atomically).

    Parameters
    ----------
    path : str or path-like
        Target file. DAS expects the name to end in ``_annotations.csv``.
    ann : Annotations or iterable of (name, start_seconds, stop_seconds)
        Rows to write, in order. NaN is written as an empty field, floats with ``repr``.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    if not isinstance(ann, Annotations):
        ann = Annotations.from_rows(ann)
    lines = [csv_line(list(COLUMNS))]
    for name, start, stop in ann.rows():
        lines.append(csv_line([name, _format_time(start), _format_time(stop)]))
    atomic_write_text(path, "".join(lines))
    return path
