"""fsutil.publish_directory (the one way a finished directory is put in place) and
fsutil.remove (the one removal: descriptor-based, iterative, never following a link)."""

from __future__ import annotations

import os
import sys

import pytest

from npydir.store import fsutil


def _tree(path, text):
    path.mkdir()
    (path / "sub").mkdir()
    (path / "sub" / "f").write_text(text)


def _text(path):
    return (path / "sub" / "f").read_text()


@pytest.fixture(params=["swap", "no-swap"])
def swap(request, monkeypatch):
    """With renameat2 (names swapped in one step) and without it (the old one moved aside)."""
    if request.param == "no-swap":
        monkeypatch.setattr(fsutil, "_RENAMEAT2", None)
    elif fsutil._RENAMEAT2 is None:
        pytest.skip("no renameat2 on this system")
    return request.param


def test_a_new_destination_appears(tmp_path, swap):
    partial, dst = tmp_path / ".d.partial", tmp_path / "d"
    _tree(partial, "new")
    fsutil.publish_directory(partial, dst, overwrite=False, aside=tmp_path / ".d.replaced")
    assert _text(dst) == "new" and sorted(os.listdir(tmp_path)) == ["d"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_existing_destination_is_replaced_only_when_asked(tmp_path, swap, overwrite):
    partial, dst, aside = tmp_path / ".d.partial", tmp_path / "d", tmp_path / ".d.replaced"
    _tree(partial, "new")
    _tree(dst, "old")
    old_ino = os.lstat(dst).st_ino
    seen = []
    if not overwrite:
        with pytest.raises(FileExistsError) as err:
            fsutil.publish_directory(partial, dst, overwrite=False, aside=aside)
        assert err.value.filename == os.fspath(dst)
        assert _text(dst) == "old" and _text(partial) == "new"
        return
    fsutil.publish_directory(partial, dst, overwrite=True, aside=aside,
                             before_replace=lambda st: seen.append(st.st_ino))
    assert seen == [old_ino]  # told which directory is replaced, before anything moved
    assert _text(dst) == "new" and sorted(os.listdir(tmp_path)) == ["d"]


def test_a_file_replaces_a_file(tmp_path, swap):
    partial, dst = tmp_path / ".f.partial", tmp_path / "f.h5"
    partial.write_text("new")
    dst.write_text("old")
    fsutil.publish_directory(partial, dst, overwrite=True, aside=tmp_path / ".f.replaced")
    assert dst.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["f.h5"]


def test_something_planted_aside_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(fsutil, "_RENAMEAT2", None)
    partial, dst, aside = tmp_path / ".d.partial", tmp_path / "d", tmp_path / ".d.replaced"
    _tree(partial, "new")
    _tree(dst, "old")
    _tree(aside, "someone's")
    with pytest.raises(FileExistsError) as err:
        fsutil.publish_directory(partial, dst, overwrite=True, aside=aside)
    assert err.value.filename == os.fspath(aside)
    assert (_text(dst), _text(partial), _text(aside)) == ("old", "new", "someone's")


def test_a_link_swapped_in_is_not_followed_when_the_old_copy_is_removed(tmp_path, swap,
                                                                       monkeypatch):
    """The old destination is removed through descriptors: a directory inside it replaced by
    a link to the user's files meanwhile is unlinked, its target untouched."""
    partial, dst = tmp_path / ".d.partial", tmp_path / "d"
    _tree(partial, "new")
    _tree(dst, "old")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep").write_text("mine")
    real_fsync_dir = fsutil.fsync_dir
    done = []

    def plant(directory, **kw):  # runs between the swap (or the rename aside) and the removal
        for old in (tmp_path / ".d.partial", tmp_path / ".d.replaced"):
            if not done and (old / "sub" / "f").is_file() and _text(old) == "old" and not (
                old / "sub"
            ).is_symlink():
                (old / "sub" / "f").unlink()
                (old / "sub").rmdir()
                (old / "sub").symlink_to(precious)
                done.append(old)
        return real_fsync_dir(directory, **kw)

    monkeypatch.setattr(fsutil, "fsync_dir", plant)
    fsutil.publish_directory(partial, dst, overwrite=True, aside=tmp_path / ".d.replaced")
    assert done and _text(dst) == "new"
    assert (precious / "keep").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["d", "precious"]


def test_remove_takes_trees_links_files_and_nothing(tmp_path):
    _tree(tmp_path / "t", "x")
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_text("mine")
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "file").write_text("x")
    for name in ("t", "link", "file", "missing"):
        fsutil.remove(tmp_path / name)
    assert sorted(os.listdir(tmp_path)) == ["target"]
    assert (target / "keep").read_text() == "mine"


def test_remove_takes_a_tree_deeper_than_the_recursion_limit(tmp_path):
    """Deeper than Python's recursion limit (where a recursive walk such as shutil.rmtree's
    fails half-way): removed, one directory open at a time."""
    depth = sys.getrecursionlimit() + 200
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as fp:
            fp.write("bottom")
    finally:
        os.close(fd)
    fsutil.remove(tmp_path / "d")
    assert os.listdir(tmp_path) == []
