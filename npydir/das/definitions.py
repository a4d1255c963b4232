"""DAS song definitions (``*_definitions.csv``) and their consistency with annotations.

Format: one song type per line, ``name,category`` with category ``event`` or ``segment``, no
header (as the DAS GUI writes it)::

    whip,segment
    whop,segment
    tick,event

A first line ``name,category`` is accepted as a header and skipped on reading.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DASFormatError
from ._files import atomic_write_text, csv_line
from .annotations import Annotations

__all__ = [
    "CATEGORIES",
    "DefinitionConflictError",
    "DefinitionsReport",
    "check_definitions",
    "read_definitions",
    "write_definitions",
]

#: The two song type categories of DAS.
CATEGORIES = ("event", "segment")


class DefinitionConflictError(DASFormatError):
    """Song definitions and annotations disagree (see :class:`DefinitionsReport`)."""


def _as_dict(defs: Mapping[str, str] | Iterable[tuple[str, str]], source: str) -> dict[str, str]:
    items = defs.items() if isinstance(defs, Mapping) else defs
    out: dict[str, str] = {}
    for i, item in enumerate(items):
        name, category = item
        where = f"{source} entry {i}"
        if not isinstance(name, str) or not name.strip():
            raise DASFormatError(f"{where}: expected a non-empty song type name, found {name!r}")
        if category not in CATEGORIES:
            raise DASFormatError(
                f"{where} ({name!r}): category must be 'event' or 'segment', found {category!r}"
            )
        if out.get(name, category) != category:
            raise DASFormatError(
                f"{where}: {name!r} is defined twice, as {out[name]!r} and {category!r}"
            )
        out[name] = category
    return out


def read_definitions(path: str | os.PathLike) -> dict[str, str]:
    """Read a song definitions file.

    Parameters
    ----------
    path : str or path-like
        ``*_definitions.csv``: ``name,category`` per line, category ``event`` or ``segment``.

    Returns
    -------
    dict
        ``{name: category}`` in file order.

    Raises
    ------
    DASFormatError
        A line without exactly two fields, an unknown category, a name defined twice with
        different categories, an empty name. The message names the file, line and column.
    """
    path = Path(path)
    try:
        # newline="": keep CR/LF inside quoted fields as they are; the csv module splits lines
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise DASFormatError(f"{path}: definitions file is not UTF-8 text ({exc})") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    out: dict[str, str] = {}
    first = True
    try:
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if first and [c.strip().lower() for c in row] == ["name", "category"]:
                first = False
                continue  # optional header
            first = False
            if len(row) != 2:
                raise DASFormatError(
                    f"{where}: expected 2 fields 'name,category', found {len(row)}: {row!r}"
                )
            name, category = row[0], row[1].strip()
            if not name.strip():
                raise DASFormatError(f"{where}, column 1 (name): empty song type name")
            if category not in CATEGORIES:
                raise DASFormatError(
                    f"{where}, column 2 (category) of {name!r}: expected 'event' or 'segment', "
                    f"found {row[1]!r}"
                )
            if out.get(name, category) != category:
                raise DASFormatError(
                    f"{where}: {name!r} is defined again as {category!r}, earlier as {out[name]!r}"
                )
            out[name] = category
    except csv.Error as exc:
        raise DASFormatError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from exc
    return out


def write_definitions(
    path: str | os.PathLike, definitions: Mapping[str, str] | Iterable[tuple[str, str]]
) -> Path:
    """Write song definitions (``name,category`` per line, no header), atomically.

    Parameters
    ----------
    path : str or path-like
        Target file; DAS expects the name to end in ``_definitions.csv``.
    definitions : mapping or iterable of (name, category)
        Category ``"event"`` or ``"segment"`` for every song type.
    """
    path = Path(path)
    defs = _as_dict(definitions, str(path))
    atomic_write_text(path, "".join(csv_line([n, c]) for n, c in defs.items()))
    return path


@dataclass
class DefinitionsReport:
    """Conflicts between song definitions and annotations.

    Attributes
    ----------
    problems : list of str
        One sentence per conflict, naming the type, the row and what disagrees.
    source : str
        What was checked (file names), used in messages.
    """

    problems: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def ok(self) -> bool:
        """True if definitions and annotations agree."""
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return f"{self.source}: definitions and annotations agree"
        lines = [
            f"{self.source}: {len(self.problems)} conflict(s) between definitions and annotations:"
        ]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)

    def raise_if_conflicts(self) -> None:
        """Raise :class:`DefinitionConflictError` listing every conflict, if there is one."""
        if not self.ok:
            raise DefinitionConflictError(str(self))


def check_definitions(
    annotations: Annotations,
    definitions: Mapping[str, str],
    *,
    source: str = "annotations",
    max_problems_per_type: int = 5,
) -> DefinitionsReport:
    """Compare annotations with song definitions.

    Reported conflicts:

    - an annotated type without a definition;
    - a row of an ``event`` type whose start differs from its stop;
    - a row of a ``segment`` type whose start equals its stop (zero length: an event);
    - a special row whose NaN pattern says the other category (event: both NaN; segment:
      start NaN, stop a number).

    Types that are defined but not annotated are fine (a recording may lack a song type).

    Parameters
    ----------
    annotations : Annotations
    definitions : mapping
        ``{name: "event" | "segment"}``, e.g. from :func:`read_definitions`.
    source : str
        Names the files in the report.
    max_problems_per_type : int
        Rows listed per type and kind of conflict before the rest are counted.

    Returns
    -------
    DefinitionsReport
        ``report.ok`` is True when they agree; ``report.raise_if_conflicts()`` raises.
    """
    problems: list[str] = []
    undefined = [t for t in annotations.types if t not in definitions]
    for t in undefined:
        problems.append(
            f"type {t!r} is annotated but has no definition (defined: {sorted(definitions)})"
        )
    bad: dict[tuple[str, str], list[int]] = {}
    for i, (name, start, stop) in enumerate(annotations.rows()):
        cat = definitions.get(name)
        if cat is None:
            continue
        if math.isnan(start):
            row_cat = "event" if math.isnan(stop) else "segment"
            if row_cat != cat:
                bad.setdefault(
                    (name, f"special row marks a {row_cat} type but it is defined as {cat}"), []
                ).append(i)
        elif cat == "event" and start != stop:
            bad.setdefault((name, "is defined as event but start != stop"), []).append(i)
        elif cat == "segment" and start == stop:
            bad.setdefault(
                (name, "is defined as segment but start == stop (zero length)"), []
            ).append(i)
    for (name, what), rows in bad.items():
        shown = ", ".join(str(r) for r in rows[:max_problems_per_type])
        more = (
            f" and {len(rows) - max_problems_per_type} more"
            if len(rows) > max_problems_per_type
            else ""
        )
        problems.append(
            f"type {name!r} {what}: annotation row(s) {shown}{more} (0-based, header excluded)"
        )
    return DefinitionsReport(problems, source)
