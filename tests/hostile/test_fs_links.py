"""Links planted in a store, or swapped in after a lookup, never lead a write or walk outside.

Three classes:

* store-owned files as links: every file the store writes (``x.npy`` on create, append, resize
  and overwrite, ``attrs.json``, ``x.attrs.json``, ``attrs.npy``, temp files) is opened
  ``O_NOFOLLOW`` / created ``O_EXCL`` or replaced by a rename, so a link in its place is refused
  or replaced, never written through;
* escapes after lookup: a handle (Array, Group) taken first, its file or directory then swapped
  for a link out of the store -- append, resize, writes through the map, attrs updates, creating
  members, ``del`` and mode ``"w"`` (including a swap in the middle of the delete) write and
  delete nothing outside;
* walks: ``members``, ``visit``/``visititems``, ``tree``, ``keys`` do not list or walk into a
  link that leaves the store.

Every test snapshots the outside directory and requires it unchanged, byte for byte.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import _hostile
import numpy as np
import pytest

import npydir
from npydir.errors import FormatError, MemberNotFoundError, NpydirError, PathEscapeError

pytestmark = pytest.mark.hostile

#: what a refused write may raise: a one-line npydir error naming the file
REFUSALS = (FormatError, PathEscapeError, MemberNotFoundError)


@pytest.fixture
def env(tmp_path):
    """A store and, beside it, an ``outside`` directory that looks like a copy of its group g."""
    store = tmp_path / "s.npy"
    with npydir.open(store, "w", das_compat=True) as r:
        r.attrs["root"] = 1
        r["x"] = np.arange(6, dtype="i4").reshape(3, 2)
        r["x"].attrs["unit"] = "V"
        r["g/y"] = np.arange(4, dtype="f4")
        r["g/y"].attrs["unit"] = "s"
        r["g"].attrs["k"] = "v"
        r["g/h/z"] = np.zeros(2)
    outside = tmp_path / "outside"
    shutil.copytree(store / "g", outside)
    np.save(outside / "victim.npy", np.arange(6, dtype="i4").reshape(3, 2))
    (outside / "victim.json").write_text('{"secret": 1}\n')
    return store, outside


def _snap(outside: Path) -> dict:
    return _hostile.snapshot(outside)


def _unchanged(outside: Path, before: dict) -> None:
    assert _hostile.diff_snapshots(before, _snap(outside)) == []


def _swap_dir(d: Path, target: Path, stash: Path) -> None:
    """Move directory ``d`` away (to ``stash``) and put a link to ``target`` in its place."""
    os.rename(d, stash)
    os.symlink(target, d)


def _one_line(exc: BaseException, *names: str) -> None:
    msg = str(exc)
    assert "\n" not in msg and any(n in msg for n in names), msg


# ----------------------------------------------------------------------------- owned files


@pytest.mark.parametrize("what", ["append", "resize", "setitem", "flush"])
def test_array_file_swapped_for_a_link_is_not_written(env, what):
    store, outside = env
    with npydir.open(store, "a") as r:
        x = r["x"]
        assert x.shape == (3, 2)  # the handle has read its header
        os.unlink(store / "x.npy")
        os.symlink(outside / "victim.npy", store / "x.npy")
        before = _snap(outside)
        with pytest.raises(REFUSALS) as info:
            if what == "append":
                x.append(np.ones((1, 2), "i4"))
            elif what == "resize":
                x.resize(10)
            elif what == "setitem":
                x[0] = 99
            else:
                x.append(np.ones((1, 2), "i4"), sync=False)
        _one_line(info.value, "x.npy", "x'")
        _unchanged(outside, before)


@pytest.mark.parametrize("name", ["x.attrs.json", "attrs.json", "attrs.npy", "g/attrs.json"])
def test_attrs_file_as_a_link_is_replaced_not_written_through(env, name):
    store, outside = env
    link = store / name
    os.unlink(link)
    os.symlink(outside / "victim.json", link)
    before = _snap(outside)
    with npydir.open(store, "a", das_compat=True) as r:
        owner = {"x.attrs.json": "x", "attrs.json": "/", "attrs.npy": "/", "g/attrs.json": "g"}
        obj = r[owner[name]]
        try:  # reading through the link: refused (it leaves the store) or the stale copy
            dict(obj.attrs)
        except REFUSALS as exc:
            _one_line(exc, name.split("/")[-1])
        obj.attrs.clear()
        obj.attrs["new"] = 2  # a rename replaces the link
    _unchanged(outside, before)
    assert not link.is_symlink()
    with npydir.open(store, "r") as r:
        assert r[owner[name]].attrs["new"] == 2


def test_create_over_a_planted_link_replaces_it(env):
    store, outside = env
    os.symlink(outside / "victim.npy", store / "new.npy")
    before = _snap(outside)
    with npydir.open(store, "a") as r:
        with pytest.raises(NpydirError):  # the planted name leaves the store: refused
            r["new"] = np.ones(3)
    _unchanged(outside, before)


def test_temp_file_names_are_created_exclusively(env, monkeypatch):
    """A link planted at the temp name an atomic write is about to use is never followed."""
    from npydir import npyfile

    store, outside = env
    planted = store / ".x.attrs.json.deadbeef.npydir-tmp"
    os.symlink(outside / "victim.json", planted)
    monkeypatch.setattr(npyfile, "temp_path", lambda p: Path(p).with_name(planted.name))
    before = _snap(outside)
    with npydir.open(store, "a") as r:
        with pytest.raises(FileExistsError):
            r["x"].attrs["u"] = 1
    _unchanged(outside, before)


# ----------------------------------------------------------------------------- escapes after lookup


@pytest.mark.parametrize("what", ["append", "resize", "setitem", "attrs", "read"])
def test_array_directory_swapped_after_lookup(env, what):
    store, outside = env
    with npydir.open(store, "a") as r:
        y = r["g/y"]
        assert y.shape == (4,)
        _swap_dir(store / "g", outside, store.parent / "stash")
        before = _snap(outside)
        with pytest.raises(PathEscapeError) as info:
            if what == "append":
                y.append(np.ones(2, "f4"))
            elif what == "resize":
                y.resize(8)
            elif what == "setitem":
                y[0] = 5
            elif what == "attrs":
                y.attrs["unit"] = "ms"
            else:
                y[:]
        _one_line(info.value, "outside the store")
        _unchanged(outside, before)


@pytest.mark.parametrize("what", ["attrs", "create_dataset", "create_group", "delitem"])
def test_group_directory_swapped_after_lookup(env, what):
    store, outside = env
    with npydir.open(store, "a") as r:
        g = r["g"]
        _swap_dir(store / "g", outside, store.parent / "stash")
        before = _snap(outside)
        with pytest.raises(PathEscapeError):
            if what == "attrs":
                g.attrs["k"] = "changed"
            elif what == "create_dataset":
                g.create_dataset("w", data=np.ones(2))
            elif what == "create_group":
                g.create_group("new")
            else:
                del g["y"]
        _unchanged(outside, before)


@pytest.mark.parametrize("where", ["create_dataset", "create_group", "move"])
def test_parent_swapped_between_check_and_write(env, monkeypatch, where):
    """The race inside one call: the parent passes the checks, then becomes a link."""
    from npydir.store.group import Group

    store, outside = env
    real = Group._kind
    fired = []

    def kind_then_swap(self, parts, key=""):
        out = real(self, parts, key)
        if not fired and parts and parts[0] == "g" and len(parts) >= 2:
            fired.append(1)
            _swap_dir(store / "g", outside, store.parent / "stash")
        return out

    monkeypatch.setattr(Group, "_kind", kind_then_swap)
    before = _snap(outside)
    with npydir.open(store, "a") as r:
        try:
            if where == "create_dataset":
                r.create_dataset("g/new", data=np.ones(3))
            elif where == "create_group":
                r.create_group("g/newg")
            else:
                r.move("x", "g/moved")
        except PathEscapeError:
            pass
    assert fired
    _unchanged(outside, before)


def test_delete_group_swapped_for_a_link_before_the_rmtree(env, monkeypatch):
    """``del r["g"]``: g becomes a link after the lookup; only the link may go."""
    store, outside = env
    real_scandir = os.scandir
    fired = []

    def swap_then_scandir(p=None, *a):
        if not fired:
            fired.append(1)
            _swap_dir(store / "g", outside, store.parent / "stash")
        return real_scandir(p, *a) if p is not None else real_scandir()

    before = _snap(outside)
    with npydir.open(store, "a") as r:
        monkeypatch.setattr(os, "scandir", swap_then_scandir)
        try:
            del r["g"]
        except (PathEscapeError, FileNotFoundError, NotADirectoryError):
            pass
        monkeypatch.setattr(os, "scandir", real_scandir)
    assert fired
    _unchanged(outside, before)


@pytest.mark.parametrize("op", ["delitem", "mode-w"])
def test_subdirectory_swapped_during_the_delete(env, monkeypatch, op):
    """A level below is swapped for a link while the delete walks the tree."""
    store, outside = env
    real_scandir = os.scandir
    calls = []

    def scandir(p=None, *a):
        calls.append(p)
        # the delete is about to list its next level (mode "w" first lists the store twice:
        # to see it is not empty, then to empty it)
        if len(calls) == (2 if op == "delitem" else 3):
            target = store / "g" / "h" if op == "delitem" else store / "g"
            if target.is_dir() and not target.is_symlink():
                _swap_dir(target, outside, store.parent / f"stash{len(calls)}")
        return real_scandir(p, *a) if p is not None else real_scandir()

    before = _snap(outside)
    if op == "delitem":
        with npydir.open(store, "a") as r:
            monkeypatch.setattr(os, "scandir", scandir)
            try:
                del r["g"]
            except (PathEscapeError, OSError):
                pass
            monkeypatch.setattr(os, "scandir", real_scandir)
    else:
        monkeypatch.setattr(os, "scandir", scandir)
        try:
            npydir.open(store, "w").close()
        except (PathEscapeError, OSError):
            pass
        monkeypatch.setattr(os, "scandir", real_scandir)
    assert len(calls) >= (2 if op == "delitem" else 3)
    _unchanged(outside, before)


def test_mode_w_with_a_planted_directory_link(env):
    store, outside = env
    os.symlink(outside, store / "planted")
    before = _snap(outside)
    npydir.open(store, "w").close()
    _unchanged(outside, before)
    assert not os.path.lexists(store / "planted")


# ----------------------------------------------------------------------------- walks


def test_walks_do_not_enter_links_leaving_the_store(env):
    store, outside = env
    os.symlink(outside, store / "ext")
    os.symlink(outside / "victim.npy", store / "extfile.npy")
    os.symlink(store / "g", store / "alias")  # a link inside the store is a member
    before = _snap(outside)
    with npydir.open(store, "a") as r:
        names = [n for n, _ in r.members()]
        visited = []
        r.visit(visited.append)
        items = []
        r.visititems(lambda n, o: items.append((n, o)))
        tree = r.tree()
        for listing in (names, visited, [n for n, _ in items], list(r), r.keys()):
            assert not any(n.split("/")[0] in ("ext", "extfile") for n in listing), listing
        assert "alias/y" in names and "ext" not in tree and "extfile" not in tree
        for _, obj in items:  # every handed-out object stays inside: writing them is safe
            if isinstance(obj, npydir.Array):
                assert str(obj.filename).startswith(str(store))
        assert "ext" not in r and "extfile" not in r
        with pytest.raises(PathEscapeError):
            r["ext"]
        # every object the walk handed out can be written without touching the outside
        for _, obj in items:
            obj.attrs["touched"] = True
            if isinstance(obj, npydir.Array) and obj.ndim:
                obj.append(np.asarray(obj[:1]))
        loaded = npydir.load(store)
        assert "ext" not in loaded and "extfile" not in loaded
    _unchanged(outside, before)
    _hostile.record("links", "walks checked (members/visit/visititems/tree/keys/load)", 6)
