"""npydir.das annotations and song definitions: exact round trips, DAS conventions, clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npydir.das import (
    Annotations,
    DefinitionConflictError,
    check_definitions,
    read_annotations,
    read_definitions,
    write_annotations,
    write_definitions,
)
from npydir.errors import DASFormatError

# --- strategies ---------------------------------------------------------------------------------
names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
).filter(lambda s: s.strip() != "")
times = st.floats(
    allow_nan=False, allow_infinity=False
)  # the whole float64 range: subnormals, 1e308, -0.0


@st.composite
def rows(draw):
    name = draw(names)
    kind = draw(st.sampled_from(["event", "segment", "empty_event", "empty_segment"]))
    if kind == "event":
        t = draw(times)
        return name, t, t
    if kind == "segment":
        a, b = sorted([draw(times), draw(times)])
        return name, a, b
    if kind == "empty_event":
        return name, math.nan, math.nan
    return name, math.nan, draw(times)


def _bits(x: np.ndarray) -> np.ndarray:
    """float64 bit patterns with NaN normalised, so -0.0 and 0.0 differ but NaNs compare equal."""
    x = np.where(np.isnan(x), np.nan, x)
    return x.view(np.int64)


@given(st.lists(rows(), max_size=20))
def test_round_trip_is_exact(tmp_path_factory, rs):
    path = tmp_path_factory.mktemp("ann") / "x_annotations.csv"
    ann = Annotations.from_rows(rs)
    write_annotations(path, ann)
    back = read_annotations(path)
    assert back == ann
    assert list(back.names) == [r[0] for r in rs]
    np.testing.assert_array_equal(_bits(back.start_seconds), _bits(ann.start_seconds))
    np.testing.assert_array_equal(_bits(back.stop_seconds), _bits(ann.stop_seconds))
    # writing what was read gives the same bytes
    path2 = path.with_name("y_annotations.csv")
    write_annotations(path2, back)
    assert path2.read_bytes() == path.read_bytes()


def test_file_content_follows_das_conventions(tmp_path):
    ann = Annotations.from_rows(
        [
            ("pulse", 0.1, 0.1),
            ("sine", 0.25, 1.5),
            ("whip, loud", 2.0, 2.5),  # a comma in a name is quoted
            ("click", math.nan, math.nan),  # event type without annotations
            ("whop", math.nan, 0.0),  # segment type without annotations
        ]
    )
    write_annotations(tmp_path / "a_annotations.csv", ann)
    assert (tmp_path / "a_annotations.csv").read_text() == (
        "name,start_seconds,stop_seconds\n"
        "pulse,0.1,0.1\n"
        "sine,0.25,1.5\n"
        '"whip, loud",2.0,2.5\n'
        "click,,\n"
        "whop,,0.0\n"
    )


def test_reads_pandas_style_files(tmp_path):
    # what pandas.DataFrame.to_csv writes with its default index, nan spelled out, a BOM, CRLF
    text = (
        "\ufeff,name,start_seconds,stop_seconds\r\n"
        "0,pulse,0.5,0.5\r\n"
        "\r\n"
        "1,sine,1.0,2.0\r\n"
        "2,tick,NaN,nan\r\n"
        "3,whop,,0\r\n"
    )
    (tmp_path / "p_annotations.csv").write_bytes(text.encode("utf-8"))
    ann = read_annotations(tmp_path / "p_annotations.csv")
    assert list(ann.names) == ["pulse", "sine", "tick", "whop"]
    assert ann.categories() == {
        "pulse": "event",
        "sine": "segment",
        "tick": "event",
        "whop": "segment",
    }
    assert ann.special.tolist() == [False, False, True, True]


def test_columns_in_any_order(tmp_path):
    (tmp_path / "a.csv").write_text("stop_seconds,name,start_seconds\n2,sine,1\n")
    ann = read_annotations(tmp_path / "a.csv")
    assert ann.segments("sine").tolist() == [[1.0, 2.0]]


def test_header_only_file_is_empty(tmp_path):
    (tmp_path / "a.csv").write_text("name,start_seconds,stop_seconds\n")
    ann = read_annotations(tmp_path / "a.csv")
    assert len(ann) == 0 and ann.types == []


def test_helpers():
    ann = Annotations.from_rows(
        [
            ("sine", 1.0, 2.0),
            ("pulse", 0.5, 0.5),
            ("pulse", 0.7, 0.7),
            ("sine", 3.0, 3.5),
            ("tick", math.nan, math.nan),
        ]
    )
    assert ann.types == ["sine", "pulse", "tick"]
    assert ann.events("pulse").tolist() == [0.5, 0.7]
    assert ann.segments("sine").tolist() == [[1.0, 2.0], [3.0, 3.5]]
    assert ann.events("tick").tolist() == []  # special rows are not annotations
    assert ann.segments("nothing").shape == (0, 2)
    assert ann.select(["pulse", "tick"]).types == ["pulse", "tick"]
    assert ann.categories() == {"sine": "segment", "pulse": "event", "tick": "event"}
    more = ann.with_empty_type("whop", "segment")
    assert more.categories()["whop"] == "segment" and len(more) == len(ann) + 1
    assert list(ann)[0] == ("sine", 1.0, 2.0)


def test_first_real_row_decides_category_over_special_row():
    ann = Annotations.from_rows([("s", math.nan, math.nan), ("s", 1.0, 2.0)])
    assert ann.categories() == {"s": "segment"}


# --- errors name file, line and column ------------------------------------------------------
@pytest.mark.parametrize(
    "text, pattern",
    [
        ("", r"empty annotation file"),
        (
            "name,start,stop\npulse,1,1\n",
            r"line 1: header lacks column\(s\) \['start_seconds', 'stop_seconds'\]",
        ),
        (
            "name,start_seconds,stop_seconds\npulse,1,1\npulse,abc,1\n",
            r"line 3, column 'start_seconds'.*'abc'",
        ),
        ("name,start_seconds,stop_seconds\npulse,1,1_0\n", r"line 2, column 'stop_seconds'"),
        (
            "name,start_seconds,stop_seconds\nsine,2.0,1.0\n",
            r"line 2, column 'stop_seconds': stop 1.0 is before start 2.0",
        ),
        ("name,start_seconds,stop_seconds\nsine,1.0,2.0,7\n", r"line 2: expected 3 fields"),
        ("name,start_seconds,stop_seconds\nsine,1.0\n", r"line 2: expected 3 fields"),
        ("name,start_seconds,stop_seconds\n,1.0,2.0\n", r"line 2, column 'name'"),
        (
            "name,start_seconds,stop_seconds\nsine,inf,inf\n",
            r"line 2, column 'start_seconds': expected a finite",
        ),
        (
            "name,start_seconds,stop_seconds\nsine,1.0,\n",
            r"line 2, column 'stop_seconds': NaN stop",
        ),
        ('name,start_seconds,stop_seconds\n"sine,1.0,2.0\n', r"line \d+"),
    ],
)
def test_malformed_annotations(tmp_path, text, pattern):
    path = tmp_path / "bad_annotations.csv"
    path.write_text(text)
    with pytest.raises(DASFormatError, match=pattern) as err:
        read_annotations(path)
    assert "bad_annotations.csv" in str(err.value)


def test_not_utf8(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"name,start_seconds,stop_seconds\n\xff\xfe,1,1\n")
    with pytest.raises(DASFormatError, match="not UTF-8"):
        read_annotations(tmp_path / "a.csv")


def test_annotations_object_validates():
    with pytest.raises(ValueError, match="same length"):
        Annotations(["a"], [1.0, 2.0], [1.0])
    with pytest.raises(DASFormatError, match="row 0.*before start"):
        Annotations(["a"], [2.0], [1.0])


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_annotations(tmp_path / "nope_annotations.csv")


# --- song definitions --------------------------------------------------------------------------
@given(st.dictionaries(names, st.sampled_from(["event", "segment"]), max_size=8))
def test_definitions_round_trip(tmp_path_factory, defs):
    path = tmp_path_factory.mktemp("defs") / "x_definitions.csv"
    write_definitions(path, defs)
    back = read_definitions(path)
    assert back == defs and list(back) == list(defs)


def test_definitions_file_content_and_header(tmp_path):
    write_definitions(
        tmp_path / "d.csv", [("whip", "segment"), ("whop", "segment"), ("tick", "event")]
    )
    assert (tmp_path / "d.csv").read_text() == "whip,segment\nwhop,segment\ntick,event\n"
    (tmp_path / "h.csv").write_text("name,category\nwhip,segment\n\ntick,event\n")
    assert read_definitions(tmp_path / "h.csv") == {"whip": "segment", "tick": "event"}


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("whip,segment\ntick,evnt\n", r"line 2, column 2 \(category\) of 'tick'.*'evnt'"),
        ("whip\n", r"line 1: expected 2 fields"),
        ("whip,segment,extra\n", r"line 1: expected 2 fields"),
        (",event\n", r"line 1, column 1 \(name\)"),
        ("tick,event\ntick,segment\n", r"line 2: 'tick' is defined again as 'segment'"),
    ],
)
def test_malformed_definitions(tmp_path, text, pattern):
    path = tmp_path / "bad_definitions.csv"
    path.write_text(text)
    with pytest.raises(DASFormatError, match=pattern) as err:
        read_definitions(path)
    assert "bad_definitions.csv" in str(err.value)


def test_write_definitions_validates(tmp_path):
    with pytest.raises(DASFormatError, match="category"):
        write_definitions(tmp_path / "d.csv", {"a": "blob"})
    assert not (tmp_path / "d.csv").exists()


def test_check_definitions_agreement():
    ann = Annotations.from_rows(
        [("pulse", 1.0, 1.0), ("sine", 1.0, 2.0), ("tick", math.nan, math.nan)]
    )
    report = check_definitions(
        ann, {"pulse": "event", "sine": "segment", "tick": "event", "other": "segment"}
    )
    assert report.ok and bool(report)
    report.raise_if_conflicts()  # no error


def test_check_definitions_reports_every_conflict():
    ann = Annotations.from_rows(
        [
            ("pulse", 1.0, 1.0),
            ("pulse", 2.0, 2.5),  # event with start != stop
            ("sine", 3.0, 3.0),  # zero-length segment
            ("mystery", 4.0, 5.0),  # no definition
            ("tick", math.nan, 0.0),  # special row of a segment, but tick is an event
        ]
    )
    defs = {"pulse": "event", "sine": "segment", "tick": "event"}
    report = check_definitions(ann, defs, source="a_annotations.csv vs a_definitions.csv")
    assert not report.ok and len(report.problems) == 4
    text = str(report)
    assert "'mystery' is annotated but has no definition" in text
    assert "'pulse' is defined as event but start != stop: annotation row(s) 1" in text
    assert "'sine' is defined as segment but start == stop" in text
    assert "'tick' special row marks a segment type" in text
    with pytest.raises(
        DefinitionConflictError, match="a_annotations.csv vs a_definitions.csv: 4 conflict"
    ):
        report.raise_if_conflicts()


def test_check_definitions_limits_listed_rows():
    ann = Annotations.from_rows([("p", float(i), i + 0.5) for i in range(12)])
    report = check_definitions(ann, {"p": "event"}, max_problems_per_type=3)
    assert "row(s) 0, 1, 2 and 9 more" in report.problems[0]
