"""Fuzzing the store's own ``.npydir.json``: ``npydir.open`` (every mode) and ``verify``.

A store's format file is read by every ``open``; a broken one must give ``FormatError`` naming
it (``open``) or a ``bad-format-file`` problem (``verify``), never another exception, and
``open`` and ``verify`` must agree on what is broken.  The parser is plain ``json``, so this
runs in-process (a hang or crash here would be CPython's) with a modest example count.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import npydir
from npydir.errors import FormatError

import _fuzz_inputs
import _hostile

pytestmark = pytest.mark.hostile

EXAMPLES = max(200, _hostile.FUZZ_EXAMPLES // 10)

VALUES = st.one_of(
    st.sampled_from([1, 0, -5, 2, True, None, "1", 1.0, 1e400, [1], {"v": 1}]), st.integers()
)
FORMAT_TEXT = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"format": st.sampled_from(["npydir", "zarr", "", 1]), "version": VALUES}
    ).map(lambda d: json.dumps(d).encode()),
    st.tuples(st.just(b'{"format": "npydir", "version": 1}\n'), _fuzz_inputs.MUTATION).map(
        lambda t: _fuzz_inputs.mutate(*t)
    ),
    st.sampled_from([b"[" * 2000, b'{"a":' + b"[" * 2000, b"", b"\xff\xfe", b"NaN"]),
    st.binary(max_size=60),
)


_COUNT = [0]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("fmt") / "s.npy"
    npydir.open(path, "w").close()
    yield path
    _hostile.record("fuzz/.npydir.json", "hypothesis cases", _COUNT[0])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(FORMAT_TEXT)
def test_format_file_is_read_or_refused(store, data):
    (store / ".npydir.json").write_bytes(data)
    outcomes = []
    for mode in ("r", "r+", "a"):
        try:
            npydir.open(store, mode).close()
            outcomes.append("ok")
        except FormatError as exc:
            assert ".npydir.json" in str(exc) or str(store) in str(exc)
            outcomes.append("FormatError")
        # a refused write open must not have replaced the file
        if outcomes[-1] == "FormatError":
            assert (store / ".npydir.json").read_bytes() == data
    assert len(set(outcomes)) == 1, outcomes
    report = npydir.verify(store)
    assert ("bad-format-file" in report.kinds()) == (outcomes[0] == "FormatError"), (
        outcomes,
        report.kinds(),
    )
    _COUNT[0] += 1


@pytest.mark.parametrize(
    "data", [b"[" * 100_000, b'{"format": "npydir", "version": ' + b"[" * 100_000 + b"}"]
)
def test_deeply_nested_format_file_is_a_format_error(store, data):
    """RecursionError escaped npydir.open and npydir.verify (bug-log.md H12)."""
    (store / ".npydir.json").write_bytes(data)
    with pytest.raises(FormatError, match="npydir.json"):
        npydir.open(store, "r")
    assert npydir.verify(store).kinds() == ["bad-format-file"]
