"""Fuzzing DAS annotation CSVs: ``npydir.das.read_annotations`` and a write/read round trip.

Every case must end in success or :class:`npydir.errors.DASFormatError` naming the file.
Accepted files must satisfy the format's invariants (finite times or NaN, stop >= start,
non-empty names) and survive ``write_annotations`` + ``read_annotations`` unchanged.
"""

from __future__ import annotations

import _hostile
import pytest

from npydir.das import read_annotations
from npydir.errors import DASFormatError

pytestmark = pytest.mark.hostile


def test_hypothesis_fuzz_annotation_csv():
    _hostile.check_hypothesis_fuzz("annotations", {"DASFormatError"})


def test_atheris_fuzz_annotation_csv():
    _hostile.check_atheris_fuzz("annotations")


@pytest.mark.parametrize(
    "data",
    [
        b"name,start_seconds,stop_seconds\n"
        + b"x" * 200_000
        + b",1,2\n",  # field larger than csv's limit
        b'name,start_seconds,stop_seconds\n"unterminated,1,2\n',
        b"\x00" * 10,
        b"\xff\xfe" + "name,start_seconds,stop_seconds\n".encode("utf-16-le"),
        b"name,start_seconds,stop_seconds\npulse,1e309,1e309\n",
        b"name,start_seconds,stop_seconds\npulse,2,1\n",
    ],
    ids=["huge-field", "unterminated-quote", "nul", "utf16", "inf", "stop-before-start"],
)
def test_hostile_csv_is_a_clear_error(tmp_path, data):
    path = tmp_path / "rec_annotations.csv"
    path.write_bytes(data)
    with pytest.raises(DASFormatError, match="rec_annotations.csv"):
        read_annotations(path)
