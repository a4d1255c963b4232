"""Special files (FIFO, socket, device) in place of a store file never hang or get read.

A FIFO where ``attrs.json``, ``y.npy``, ``attrs.npy``, a group's ``attrs.json`` or
``x.attrs.json`` should be used to block ``.attrs``, ``verify``, ``repair`` and ``load`` forever
(opening a FIFO waits for a writer).  Every open of a store file now uses ``O_NONBLOCK`` and
``fstat`` and refuses anything but a regular file with a one-line
:class:`~npydir.errors.FormatError` naming the file and what it is; ``verify`` reports it as
``special-file`` and ``repair`` leaves it (it is not data it can fix).

The operations run in a child (``_special_child.py``) under a per-operation alarm and an overall
timeout, so a regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import os

import _hostile
import pytest

pytestmark = pytest.mark.hostile

ATTRS_FILES = ("attrs.json", "attrs.npy", "g/attrs.json", "x.attrs.json")


def _must_fail(op: str, position: str) -> bool:
    """Whether ``op`` reads the planted file (so it must refuse it, naming it)."""
    if op in ("update", "convert", "repair"):
        return True  # they read every attrs file and array
    if op == "attrs":
        return position in ATTRS_FILES
    if op == "read":
        return position == "y.npy"
    if op == "load":  # group attrs and array data; DAS's load reads no array attrs
        return position != "x.attrs.json"
    return False  # verify reports instead


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
def test_special_files_are_refused_never_read(tmp_path, kind):
    if kind == "device" and os.geteuid() != 0:
        pytest.skip("creating a device node needs root (CAP_MKNOD)")
    results = _hostile.run_json(
        ["tests/hostile/_special_child.py", str(tmp_path), kind], timeout=300
    )
    what = {
        "fifo": "a FIFO (named pipe)",
        "socket": "a socket",
        "device": "a character device",
    }[kind]
    problems = []
    refused = 0
    for r in results:
        where = f"{r['op']} with {r['position']} as {kind}"
        if r["outcome"] == "hang":
            problems.append(f"{where}: hung")
            continue
        if r["op"] == "verify":
            if f"special-file: {r['file']}: is {what}" not in r.get("text", ""):
                problems.append(f"{where}: not reported as special-file: {r.get('text')}")
            continue
        if r["outcome"] == "ok":
            if _must_fail(r["op"], r["position"]):
                problems.append(f"{where}: succeeded, expected a refusal")
            continue
        msg = r["message"]
        if "NpydirError" not in r["mro"]:
            problems.append(f"{where}: {r['type']} is not an npydir error: {msg}")
        elif f"{r['file']}: is {what}; expected a regular file" not in msg:
            problems.append(f"{where}: message does not name the file and what it is: {msg}")
        elif r["type"] != "IntegrityError" and "\n" in msg:  # repair lists every problem
            problems.append(f"{where}: not one line: {msg!r}")
        else:
            refused += 1
    assert not problems, "\n".join(problems)
    _hostile.record("special files", f"{kind}: operations refused, none hung", refused)
