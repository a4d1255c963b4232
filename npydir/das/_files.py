"""Small file helpers shared by the DAS format modules."""

from __future__ import annotations

from pathlib import Path

from ..store.npyfile import atomic_write


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically (no newline translation)."""
    atomic_write(path, lambda fp: fp.write(text.encode("utf-8")))


def csv_line(fields: list[str]) -> str:
    """One CSV line ending in ``\\n``, quoting fields that hold ``,``, ``"``, CR or LF.

    (``csv.writer`` with ``lineterminator="\\n"`` leaves a lone CR unquoted, which a reader
    then takes for a line break.)
    """
    out = []
    for s in fields:
        if any(c in s for c in ',"\r\n'):
            s = '"' + s.replace('"', '""') + '"'
        out.append(s)
    return ",".join(out) + "\n"
