"""Conversions against planted files: names beside the destination, sources reaching outside.

A conversion into ``DST`` owns ``.DST.partial``, ``.DST.partial.journal`` and (while replacing
``DST`` where names cannot be swapped) ``.DST.replaced``.  Whatever someone planted under
those names -- a symbolic link to a file of the user's, a hard link, a FIFO, a directory of
their own, a copy of a real partial result with altered data -- is never written through,
trusted or deleted: the conversion refuses with one line naming it, and nothing outside
changes.  An empty directory or file holds nothing and is simply replaced.

Sources that reach outside themselves -- zarr chunk files or array directories that are
links, HDF5 external storage and virtual datasets -- would copy any local file the user can
read into the output: such arrays are refused by default (per array, the rest converted), on
the fast and the fallback read paths, and copied only with ``allow_external=True``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import _hostile
import numpy as np
import pytest

import npydir
from npydir.errors import ConversionError

pytestmark = pytest.mark.hostile

zarr = pytest.importorskip("zarr")
h5py = pytest.importorskip("h5py")

DATA = np.arange(600 * 4, dtype="<f4").reshape(600, 4)
SECRET = np.full((100, 4), 7777.0, dtype="<f4")  # what must never reach the output
KINDS = ["out.npy", "out.zarr", "out.h5"]


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as f:
        f.attrs["rate"] = 10_000
        f.create_dataset("train/x", data=DATA, chunks=(100, 4))
    return src


def _read_x(dst: Path) -> np.ndarray:
    with npydir.load(dst) as data:
        return np.asarray(data["train"]["x"][...])


def _convert(src, dst, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return npydir.convert(src, dst, progress=False, **kw)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


def _names(tmp_path: Path) -> set[str]:
    return set(os.listdir(tmp_path))


# ------------------------------------------------------------------ names beside the destination


def _journal_to_victim(tmp_path: Path, name: str, make_link) -> tuple[Path, Path, Path]:
    """A source, a user's file, and the journal's name made a link to it by ``make_link``."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    journal = tmp_path / f".{name}.partial.journal"
    make_link(victim, journal)
    return _source(tmp_path), victim, journal


@pytest.mark.parametrize("name", KINDS)
def test_journal_link_to_a_user_file_is_refused(tmp_path, name):
    src, victim, journal = _journal_to_victim(tmp_path, name, os.symlink)
    with pytest.raises(ConversionError) as err:
        _convert(src, tmp_path / name)
    assert str(journal) in _one_line(err.value) and "symbolic link" in str(err.value)
    assert victim.read_text() == "precious"
    assert os.path.islink(journal) and not (tmp_path / name).exists()
    assert not os.path.lexists(tmp_path / f".{name}.partial")
    _hostile.record("convert/planted", f"journal link refused ({name})", "yes")


@pytest.mark.parametrize("name", KINDS)
def test_journal_hard_link_or_fifo_is_refused(tmp_path, name):
    src, victim, journal = _journal_to_victim(tmp_path, name, os.link)
    with pytest.raises(ConversionError, match="hard links") as err:
        _convert(src, tmp_path / name)
    assert str(journal) in _one_line(err.value)
    assert victim.read_text() == "precious"
    os.unlink(journal)
    os.mkfifo(journal)
    # in a child: reading a FIFO that only the reader holds open would hang for ever
    code = (f"import npydir, warnings; warnings.simplefilter('ignore')\n"
            f"try:\n    npydir.convert({str(src)!r}, {str(tmp_path / name)!r}, progress=False)\n"
            f"except Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=_hostile.child_env())
    assert out.stdout.startswith("ConversionError") and "FIFO" in out.stdout, out
    assert str(journal) in out.stdout


@pytest.mark.parametrize("name", KINDS)
def test_partial_link_is_refused_and_never_followed(tmp_path, name):
    src = _source(tmp_path)
    victim = tmp_path / "victim"
    if name.endswith(".h5"):
        victim.write_bytes(b"precious")
    else:
        victim.mkdir()
        (victim / "keep.txt").write_text("precious")
    partial = tmp_path / f".{name}.partial"
    os.symlink(victim, partial)
    with pytest.raises(ConversionError) as err:
        _convert(src, tmp_path / name)
    assert str(partial) in _one_line(err.value) and "symbolic link" in str(err.value)
    if victim.is_dir():
        assert os.listdir(victim) == ["keep.txt"]
    else:
        assert victim.read_bytes() == b"precious"
    assert os.path.islink(partial) and not (tmp_path / name).exists()


@pytest.mark.parametrize("name", KINDS)
def test_foreign_partial_is_kept_and_refused(tmp_path, name):
    """No journal records it: it is not ours to fill, publish or delete."""
    src = _source(tmp_path)
    partial = tmp_path / f".{name}.partial"
    if name.endswith(".h5"):
        partial.write_bytes(b"someone's file")
    else:
        partial.mkdir()
        (partial / "notes.txt").write_text("someone's file")
    with pytest.raises(ConversionError, match="not the partial result") as err:
        _convert(src, tmp_path / name)
    assert str(partial) in _one_line(err.value)
    if partial.is_dir():
        assert (partial / "notes.txt").read_text() == "someone's file"
    else:
        assert partial.read_bytes() == b"someone's file"
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("name", KINDS)
def test_empty_planted_partial_is_replaced(tmp_path, name):
    src = _source(tmp_path)
    partial = tmp_path / f".{name}.partial"
    partial.write_bytes(b"") if name.endswith(".h5") else partial.mkdir()
    _convert(src, tmp_path / name)
    np.testing.assert_array_equal(_read_x(tmp_path / name), DATA)
    assert _names(tmp_path) == {"src.h5", name}


def _interrupted(tmp_path: Path, src: Path, name: str, monkeypatch) -> None:
    """A genuine conversion into ``name`` stopped after some blocks (journal + partial)."""
    from npydir.conversion.adapters.hdf5 import Hdf5Source

    real = Hdf5Source.read
    calls = {"n": 0}

    def read(self, *args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(Hdf5Source, "read", read)
    monkeypatch.setattr(Hdf5Source, "read_into", lambda self, *a: False)
    monkeypatch.setattr(Hdf5Source, "copy_rows_to", lambda self, *a: False)
    with pytest.raises(KeyboardInterrupt):
        _convert(src, tmp_path / name, memory_budget=100 * 16 * 4, threads=1,
                 journal_interval=0, chunks=100)
    monkeypatch.undo()


@pytest.mark.parametrize("name", KINDS)
def test_copied_partial_with_altered_data_is_not_trusted(tmp_path, name, monkeypatch):
    """A journal and a partial result carried in from elsewhere (a tarball, a copy): the
    journal claims blocks done, the partial's data was altered.  Resuming would publish the
    altered rows; the copy is a different file, so it is refused."""
    src = _source(tmp_path)
    _interrupted(tmp_path, src, name, monkeypatch)
    partial = tmp_path / f".{name}.partial"
    journal = tmp_path / f".{name}.partial.journal"
    assert journal.read_text().count('"a":') >= 3
    planted = tmp_path / "planted"
    if partial.is_dir():
        shutil.copytree(partial, planted)
        shutil.rmtree(partial)
    else:
        shutil.copy2(partial, planted)
        partial.unlink()
    os.rename(planted, partial)  # same content, a different file
    with pytest.raises(ConversionError, match="not the partial result") as err:
        _convert(src, tmp_path / name, memory_budget=100 * 16 * 4, threads=1, chunks=100)
    assert str(partial) in _one_line(err.value)
    assert not (tmp_path / name).exists() and partial.exists()
    # the user removes it, as the message says; the rerun converts from scratch
    shutil.rmtree(partial) if partial.is_dir() else partial.unlink()
    report = _convert(src, tmp_path / name, memory_budget=100 * 16 * 4, threads=1, chunks=100)
    assert not report.resumed
    np.testing.assert_array_equal(_read_x(tmp_path / name), DATA)


def test_foreign_journal_content_is_not_truncated(tmp_path):
    src = _source(tmp_path)
    journal = tmp_path / ".out.npy.partial.journal"
    journal.write_text("my own notes\n")
    with pytest.raises(ConversionError, match="not a conversion journal") as err:
        _convert(src, tmp_path / "out.npy")
    assert str(journal) in _one_line(err.value)
    assert journal.read_text() == "my own notes\n"


@pytest.mark.parametrize("name", ["out.npy", "out.zarr"])
def test_planted_replaced_directory_is_kept(tmp_path, name, monkeypatch):
    """Without an atomic swap of two names the old destination is moved to .DST.replaced:
    something already there is someone's, not removed; the old destination stays."""
    from npydir.store import fsutil

    monkeypatch.setattr(fsutil, "_RENAMEAT2", None)  # no renameat2 on this system
    src = _source(tmp_path)
    dst = tmp_path / name
    _convert(src, dst)
    replaced = tmp_path / f".{name}.replaced"
    replaced.mkdir()
    (replaced / "notes.txt").write_text("someone's file")
    with pytest.raises(ConversionError) as err:
        _convert(src, dst, overwrite=True)
    assert str(replaced) in _one_line(err.value)
    assert (replaced / "notes.txt").read_text() == "someone's file"
    np.testing.assert_array_equal(_read_x(dst), DATA)
    shutil.rmtree(replaced)
    _convert(src, dst, overwrite=True)  # and the same conversion goes through afterwards
    assert _names(tmp_path) == {"src.h5", name}


# ------------------------------------------------------------------ sources reaching outside


def _secret_chunk(tmp_path: Path, zarr_format: int) -> Path:
    """A file outside the source that decodes as a chunk of the victim array: SECRET rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(str(tmp_path / "secret.zarr"), mode="w", zarr_format=zarr_format)
        a = g.create_array("s", shape=SECRET.shape, dtype=SECRET.dtype, chunks=(100, 4))
        a[:] = SECRET
    return tmp_path / "secret.zarr" / "s" / ("0.0" if zarr_format == 2 else "c/0/0")


def _zarr_source(tmp_path: Path, zarr_format: int, link: str) -> Path:
    src = tmp_path / "src.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(str(src), mode="w", zarr_format=zarr_format)
        g.attrs["rate"] = 10_000
        t = g.create_group("train")
        for name in ("x", "y"):
            a = t.create_array(name, shape=DATA.shape, dtype=DATA.dtype, chunks=(100, 4))
            a[:] = DATA
    secret = _secret_chunk(tmp_path, zarr_format)
    x = src / "train" / "x"
    if link == "chunk":  # one chunk file replaced by a link to the secret
        chunk = x / ("1.0" if zarr_format == 2 else "c/1/0")
        chunk.unlink()
        os.symlink(secret, chunk)
    else:  # the whole array directory is a link to a copy outside
        outside = tmp_path / "outside_x"
        shutil.copytree(x, outside)
        os.unlink(outside / ("1.0" if zarr_format == 2 else "c/1/0"))
        shutil.copy(secret, outside / ("1.0" if zarr_format == 2 else "c/1/0"))
        shutil.rmtree(x)
        os.symlink(outside, x)
    return src


def _no_fast_paths(monkeypatch) -> None:
    from npydir.conversion.adapters.hdf5 import Hdf5Source
    from npydir.conversion.adapters.zarr_store import ZarrSource

    for cls in (ZarrSource, Hdf5Source):
        monkeypatch.setattr(cls, "read_into", lambda self, *a: False)
    monkeypatch.setattr(Hdf5Source, "copy_rows_to", lambda self, *a: False)


def _check_refused(tmp_path: Path, src: Path, dst_name: str, reason: str) -> None:
    dst = tmp_path / dst_name
    with pytest.warns(UserWarning, match="not converted") as warned:
        report = npydir.convert(src, dst, progress=False, memory_budget=100 * 16 * 4, threads=1)
    assert list(report.refused) == ["train/x"], report.refused
    assert reason in report.refused["train/x"] and "allow_external" in report.refused["train/x"]
    assert "\n" not in report.refused["train/x"]
    assert any("train/x" in str(w.message) for w in warned)
    with npydir.load(dst) as data:
        assert "x" not in data["train"]
        np.testing.assert_array_equal(np.asarray(data["train"]["y"][...]), DATA)
        assert data["train"].attrs["npydir_refused"]["x"] == report.refused["train/x"]


def _check_allowed(tmp_path: Path, src: Path, dst_name: str) -> None:
    dst = tmp_path / ("allowed-" + dst_name)
    report = _convert(src, dst, allow_external=True, verify=True, memory_budget=100 * 16 * 4,
                      threads=1)
    assert not report.refused
    x = _read_x(dst)
    np.testing.assert_array_equal(x[100:200], SECRET)  # the user asked for it explicitly


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "fallback"])
@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("link", ["chunk", "array-dir"])
def test_zarr_links_out_of_the_store_are_refused(tmp_path, monkeypatch, fast, zarr_format,
                                                 link):
    src = _zarr_source(tmp_path, zarr_format, link)
    if not fast:
        _no_fast_paths(monkeypatch)
    _check_refused(tmp_path, src, "out.npy", "symbolic link")
    _check_allowed(tmp_path, src, "out.npy")
    _hostile.record("convert/outside", f"zarr {zarr_format} {link} link refused", "yes")


def test_zarr_fifo_chunk_is_refused_not_hung(tmp_path):
    src = _zarr_source(tmp_path, 2, "chunk")
    chunk = src / "train" / "x" / "1.0"
    chunk.unlink()
    os.mkfifo(chunk)
    _check_refused(tmp_path, src, "out.npy", "not a regular file")


def test_zarr_chunk_linked_after_planning_is_refused_by_the_fast_path(tmp_path, monkeypatch):
    """The check at planning time cannot see a link made later; the fast path opens every
    chunk file with O_NOFOLLOW."""
    from npydir.conversion.adapters.zarr_store import ZarrSource

    src = _zarr_source(tmp_path, 2, "chunk")
    chunk = src / "train" / "x" / "1.0"
    secret = Path(os.readlink(chunk))
    os.unlink(chunk)
    shutil.copy(secret, chunk)  # a plain file while the store is planned
    real = ZarrSource.nodes

    def nodes(self):
        yield from real(self)
        os.unlink(chunk)
        os.symlink(secret, chunk)

    monkeypatch.setattr(ZarrSource, "nodes", nodes)
    with pytest.raises(ConversionError, match="symbolic link") as err:
        _convert(src, tmp_path / "out.npy", memory_budget=100 * 16 * 4, threads=1)
    assert str(chunk) in _one_line(err.value)


def _hdf5_external(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET.tobytes())
    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("train/y", data=DATA)
        x = f.create_dataset("train/x", shape=DATA.shape, dtype=DATA.dtype,
                             external=[(str(tmp_path / "x.raw"), 0, h5py.h5f.UNLIMITED)])
        x[...] = DATA
    raw = bytearray((tmp_path / "x.raw").read_bytes())  # rows 100:200 now come from outside
    raw[100 * 16:200 * 16] = secret.read_bytes()
    (tmp_path / "x.raw").write_bytes(bytes(raw))
    return src


def _hdf5_virtual(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f.create_dataset("s", data=SECRET)
    src = tmp_path / "src.h5"
    layout = h5py.VirtualLayout(shape=DATA.shape, dtype=DATA.dtype)
    with h5py.File(src, "w") as f:
        f.create_dataset("train/y", data=DATA)
        f.create_dataset("train/plain", data=DATA)
        layout[:100] = h5py.VirtualSource(".", "train/plain", shape=DATA.shape)[:100]
        layout[100:200] = h5py.VirtualSource(str(secret), "s", shape=SECRET.shape)
        layout[200:] = h5py.VirtualSource(".", "train/plain", shape=DATA.shape)[200:]
        f.create_virtual_dataset("train/x", layout, fillvalue=0)
    return src


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "fallback"])
@pytest.mark.parametrize("kind", ["external", "virtual"])
def test_hdf5_data_outside_the_file_is_refused(tmp_path, monkeypatch, fast, kind):
    src = _hdf5_external(tmp_path) if kind == "external" else _hdf5_virtual(tmp_path)
    if not fast:
        _no_fast_paths(monkeypatch)
    _check_refused(tmp_path, src, "out.npy",
                   "external storage" if kind == "external" else "virtual dataset")
    _check_allowed(tmp_path, src, "out.npy")
    _hostile.record("convert/outside", f"HDF5 {kind} refused", "yes")


def test_hdf5_virtual_dataset_inside_its_own_file_is_converted(tmp_path):
    src = tmp_path / "src.h5"
    layout = h5py.VirtualLayout(shape=DATA.shape, dtype=DATA.dtype)
    with h5py.File(src, "w") as f:
        f.create_dataset("plain", data=DATA)
        layout[:] = h5py.VirtualSource(".", "plain", shape=DATA.shape)
        f.create_virtual_dataset("train/x", layout, fillvalue=0)
    report = _convert(src, tmp_path / "out.npy", verify=True)
    assert not report.refused
    np.testing.assert_array_equal(_read_x(tmp_path / "out.npy"), DATA)


@pytest.mark.parametrize("dst_name", ["out.zarr", "out.h5"])
def test_outside_data_is_refused_for_every_destination(tmp_path, dst_name):
    _check_refused(tmp_path, _hdf5_external(tmp_path), dst_name, "external storage")


def test_cli_refuses_and_allow_external_copies(tmp_path):
    src = _hdf5_external(tmp_path)
    run = [sys.executable, "-m", "npydir", "convert", str(src)]
    out = subprocess.run(run + [str(tmp_path / "a.npy"), "--no-progress"],
                         capture_output=True, text=True, env=_hostile.child_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused: train/x" in out.stdout and "external storage" in out.stdout
    out = subprocess.run(run + [str(tmp_path / "b.npy"), "--no-progress", "--allow-external"],
                         capture_output=True, text=True, env=_hostile.child_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy" / "train" / "x.npy")[100:200],
                                  SECRET)
