"""The on-disk spec (npydir.store.layout): the names it lists are the names a store holds.

``fixtures/store_v1.npy`` was written by npydir 0.1.0 before the layout module existed (a
group, two arrays, one appended to, attrs on each, ``das_compat``); it must keep opening,
verifying clean and reading the same, and a store written now must hold the same names.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import npydir
from npydir.store import layout, npyfile

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.npy"
PACKAGE = Path(npydir.__file__).parent


def _files(root: Path) -> list[str]:
    """Every file and directory below ``root``, as sorted relative POSIX paths."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        out += [(rel / n).as_posix() + "/" for n in dirnames]
        out += [(rel / n).as_posix() for n in filenames]
    return sorted(out)


def _write(root: Path) -> None:
    """The fixture's store, written by this npydir."""
    with npydir.open(root, "w", das_compat=True) as r:
        r.attrs["samplerate_x_Hz"] = 10000
        r.attrs["class_names"] = ["noise", "song"]
        g = r.create_group("train")
        g.attrs["note"] = "train split"
        x = r.create_dataset("train/x", data=np.arange(12, dtype="f4").reshape(6, 2))
        x.attrs["unit"] = "V"
        x.append(np.ones((2, 2), "f4"))
        r.create_dataset("train/y", data=np.eye(3, dtype="u1"))


def _spec_name(rel: str) -> str:
    """Which entry of the spec the store path ``rel`` is (raises if none)."""
    name = rel.rstrip("/").rsplit("/", 1)[-1]
    top = "/" not in rel.rstrip("/")
    if rel.endswith("/"):
        return "group"
    if top and name == layout.FORMAT_FILE:
        return "FORMAT_FILE"
    if top and name == layout.LOCK_NAME:
        return "LOCK_NAME"
    if top and name == layout.LEGACY_ATTRS:
        return "LEGACY_ATTRS"
    if name == layout.GROUP_ATTRS:
        return "GROUP_ATTRS"
    if name.endswith(layout.ATTRS_SUFFIX):
        return "ATTRS_SUFFIX"
    if name.endswith(layout.ARRAY_SUFFIX):
        return "ARRAY_SUFFIX"
    raise AssertionError(f"{rel}: not a name of the store layout")


def test_a_fresh_store_holds_the_names_of_the_spec(tmp_path):
    root = tmp_path / "s.npy"
    _write(root)
    kinds = {rel: _spec_name(rel) for rel in _files(root)}
    assert set(kinds.values()) == {
        "group", "FORMAT_FILE", "LOCK_NAME", "LEGACY_ATTRS", "GROUP_ATTRS", "ATTRS_SUFFIX",
        "ARRAY_SUFFIX",
    }
    marker = json.loads((root / layout.FORMAT_FILE).read_text())
    assert marker == {"format": layout.FORMAT_NAME, "version": layout.FORMAT_VERSION}
    assert root.name.endswith(layout.STORE_SUFFIX)


def test_a_store_written_before_the_spec_module_has_the_same_names(tmp_path):
    root = tmp_path / "s.npy"
    _write(root)
    assert _files(root) == _files(FIXTURE)
    for rel in _files(FIXTURE):
        if rel != layout.LOCK_NAME and not rel.endswith("/"):  # the lock records pid and time
            assert (FIXTURE / rel).read_bytes() == (root / rel).read_bytes(), rel


@pytest.mark.parametrize("mode", ["r", "r+"])
def test_a_store_written_before_the_spec_module_opens(tmp_path, mode):
    root = tmp_path / FIXTURE.name
    shutil.copytree(FIXTURE, root)
    assert npydir.verify(root).ok
    with npydir.open(root, mode) as r:
        assert r.attrs.asdict() == {"samplerate_x_Hz": 10000, "class_names": ["noise", "song"]}
        assert r["train"].attrs["note"] == "train split"
        x = r["train/x"]
        assert x.attrs["unit"] == "V"
        expected = np.concatenate([np.arange(12, dtype="f4").reshape(6, 2), np.ones((2, 2))])
        np.testing.assert_array_equal(x[:], expected)
        np.testing.assert_array_equal(r["train/y"][:], np.eye(3, dtype="u1"))
        if mode == "r+":
            x.append(np.zeros((1, 2), "f4"))
            r.attrs["more"] = 1
    assert npydir.verify(root).ok


def test_temp_names_follow_the_spec(tmp_path):
    for name in ["x.npy", layout.GROUP_ATTRS, "é" * 120 + layout.ATTRS_SUFFIX]:
        tmp = npyfile.temp_path(tmp_path / name)
        assert layout.is_temp_name(tmp.name)
        assert re.fullmatch(r"\..*\.[0-9a-f]{8}" + re.escape(layout.TEMP_SUFFIX), tmp.name)
        assert len(os.fsencode(tmp.name)) <= 255
    assert not layout.is_temp_name("x" + layout.TEMP_SUFFIX)  # temp files are hidden


def test_the_docstring_names_every_name():
    """The module docstring is the spec: each on-disk name in the module appears in it."""
    for name in layout.__all__:
        value = getattr(layout, name)
        if isinstance(value, str):
            assert value in layout.__doc__, name
    assert "is_temp_name" in layout.__doc__


#: names only the spec module may spell (everything else imports them from it)
_OWN_NAMES = {
    layout.FORMAT_FILE, layout.LOCK_NAME, layout.GROUP_ATTRS, layout.LEGACY_ATTRS,
    layout.ATTRS_SUFFIX, layout.TEMP_SUFFIX, layout.MANIFEST, layout.MANIFEST_FORMAT,
    layout.PARTIAL_SUFFIX, layout.JOURNAL_SUFFIX, layout.REPLACED_SUFFIX,
}


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """String constants of ``path`` outside docstrings (f-string parts included)."""
    tree = ast.parse(path.read_text())
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def test_no_other_module_spells_an_on_disk_name():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == Path(layout.__file__):
            continue
        for line, value in _code_strings(path):
            if value in _OWN_NAMES:
                found.append(f"{path.relative_to(PACKAGE)}:{line}: {value!r}")
    assert not found, "import these from npydir.store.layout:\n" + "\n".join(found)
