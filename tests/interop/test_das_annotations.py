"""Annotation and song-definition CSVs: npydir.das against ``das.annot.Events``, both ways.

DAS writes annotations with ``Events.to_df().to_csv(path)`` (as ``das predict`` does, index
column included) and reads them with ``Events.from_df(pd.read_csv(path))``. Song definitions
have no reader in the das package; DAS's tools keep them as ``Events.categories`` and the
files are ``name,category`` lines, which pandas reads with ``header=None``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npydir import das as npydas

NAMES = ["pulse", "sine", "whip", "whop", "tick", "song type", "na,me", 'q"uote']
_times = st.floats(0, 1e5, allow_nan=False, allow_infinity=False)


@st.composite
def annotated_types(draw):
    """{name: (category, [[start, stop], ...])}: events have start == stop, segments start < stop.

    Some types have no annotations: DAS keeps those as special rows.
    """
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    out = {}
    for name in names:
        category = draw(st.sampled_from(["event", "segment"]))
        starts = draw(st.lists(_times, max_size=6))
        rows = []
        for start in starts:
            if category == "event":
                rows.append([start, start])
            else:
                stop = draw(_times.filter(lambda t, s=start: t > s) | st.just(start + 1.0))
                rows.append([start, stop])
        out[name] = (category, rows)
    return out


def das_events(das, types) -> "das.annot.Events":
    events = das.annot.Events()
    for name, (category, rows) in types.items():
        events.add_name(name, category=category, times=np.asarray(rows, float).reshape(-1, 2))
    return events


def assert_same_annotations(events, ann) -> None:
    """DAS's Events and npydir's Annotations hold the same types, categories and times."""
    assert sorted(ann.types) == sorted(events.names)
    assert ann.categories() == dict(events.categories)
    for name in events.names:
        expected = np.asarray(events[name], float).reshape(-1, 2)
        got = ann.segments(name)
        # bit for bit: both sides write floats with repr and read them back exactly
        assert got.tobytes() == expected.tobytes(), name
        if events.categories[name] == "event":
            assert ann.events(name).tobytes() == expected[:, 0].tobytes(), name


@given(types=annotated_types(), index=st.booleans())
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_npydir_reads_annotations_das_writes(das, tmp_path_factory, types, index):
    path = tmp_path_factory.mktemp("ann") / "rec_annotations.csv"
    events = das_events(das, types)
    events.to_df().to_csv(path, index=index)
    assert_same_annotations(events, npydas.read_annotations(path))


@given(types=annotated_types())
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_das_reads_annotations_npydir_writes(das, tmp_path_factory, types):
    path = tmp_path_factory.mktemp("ann") / "rec_annotations.csv"
    ann = npydas.Annotations.from_rows(
        (name, start, stop) for name, (_, rows) in types.items() for start, stop in rows
    )
    for name, (category, rows) in types.items():
        if not rows:
            ann = ann.with_empty_type(name, category)
    npydas.write_annotations(path, ann)
    events = das.annot.Events.from_df(pd.read_csv(path))
    assert_same_annotations(events, ann)
    # and DAS writes back what it read: npydir reads the same rows again
    events.to_df().to_csv(path)
    assert_same_annotations(events, npydas.read_annotations(path))


def test_special_rows_follow_das_convention(das, tmp_path):
    """Types without annotations: DAS writes ``(nan, nan)`` for events, ``(nan, 0)`` for
    segments; npydir's ``with_empty_type`` writes the same rows and reads DAS's back."""
    events = das.annot.Events()
    events.add_name("tick", category="event")
    events.add_name("whop", category="segment")
    path = tmp_path / "rec_annotations.csv"
    events.to_df().to_csv(path, index=False)
    ann = npydas.read_annotations(path)
    assert ann.types == ["tick", "whop"]
    assert ann.categories() == {"tick": "event", "whop": "segment"}
    assert ann.special.all()

    ours = npydas.Annotations().with_empty_type("tick", "event").with_empty_type("whop", "segment")
    ours_path = tmp_path / "ours_annotations.csv"
    npydas.write_annotations(ours_path, ours)
    df_ours, df_das = pd.read_csv(ours_path), events.to_df()
    columns = ["name", "start_seconds", "stop_seconds"]
    assert list(df_ours.columns) == list(df_das.columns) == columns
    pd.testing.assert_frame_equal(df_ours, df_das.astype({"name": object}), check_dtype=False)


def test_categories_of_npydir_definitions_in_das_events(das, tmp_path):
    defs = {"pulse": "event", "sine": "segment", "na,me": "segment", "tick": "event"}
    path = tmp_path / "rec_definitions.csv"
    npydas.write_definitions(path, defs)
    read_back = pd.read_csv(path, header=None, names=["name", "category"], dtype=str)
    assert dict(zip(read_back["name"], read_back["category"])) == defs
    # DAS takes them as the categories of its Events, names without annotations included
    events = das.annot.Events({"pulse": [[1.0, 1.0]]}, categories=npydas.read_definitions(path))
    assert dict(events.categories) == defs


@pytest.mark.parametrize("header", [False, True])
def test_npydir_reads_definitions_from_das_categories(das, tmp_path, header):
    events = das.annot.Events({"pulse": [[1.0, 1.0]], "sine": [[2.0, 3.5]]})
    events.add_name("whop", category="segment")
    frame = pd.DataFrame(list(events.categories.items()), columns=["name", "category"])
    path = tmp_path / "rec_definitions.csv"
    frame.to_csv(path, header=header, index=False)
    assert npydas.read_definitions(path) == dict(events.categories)
    # and they agree with the annotations DAS writes for the same Events
    ann_path = tmp_path / "rec_annotations.csv"
    events.to_df().to_csv(ann_path)
    ann = npydas.read_annotations(ann_path)
    report = npydas.check_definitions(ann, npydas.read_definitions(path), source="rec")
    assert report.ok, report.problems
