"""Read-only stores are never written.

Two proofs, because the tests run as root (for whom ``chmod`` stops nothing):

1. *Snapshot*: every file and directory of a store -- bytes, mode, mtime, inode, size, hidden
   entries included -- is recorded, then every read API runs on it (``open`` in mode "r",
   iteration, members/tree/visit, reading every array, attributes, legacy ``attrs.npy``,
   pickled arrays, ``load``, ``Batches``, ``gather_windows``/``advise_windows``, ``verify``,
   ``convert`` *from* it, the CLI's read commands), and the snapshot must be unchanged: no
   byte, no mtime, no lock or temp file created (even briefly: directory mtimes would change).
2. *Read-only mount* (root only, else skipped with the reason): the same reads on a store on a
   tmpfs remounted ``ro``, where any write attempt fails with EROFS.

Write attempts in mode "r" raise ``ReadOnlyError`` and change nothing.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import _hostile
import _mounts
import numpy as np
import pytest

import npydir
from npydir.errors import ReadOnlyError

pytestmark = pytest.mark.hostile


def _make_store(path: Path) -> None:
    rng = np.random.default_rng(0)
    with npydir.open(path, "w", das_compat=True) as root:
        root.attrs.update(
            samplerate_x_Hz=10_000,
            samplerate_y_Hz=10_000,
            class_names=["noise", "pulse"],
            class_types=["segment", "event"],
        )
        for split, n in (("train", 4000), ("val", 1000)):
            root[f"{split}/x"] = rng.standard_normal((n, 3)).astype("f4")
            y = np.zeros((n, 2), "f4")
            y[:, 0] = 1
            root[f"{split}/y"] = y
        root["train/x"].attrs["unit"] = "V"
        root["misc/structured"] = np.zeros(3, dtype=[("a", "<i4"), ("b", "S3")])
        root["misc/empty"] = np.zeros((0, 4), "i2")
        root["misc/scalar"] = np.float64(2.5)
    # a torn append: verify reports it, but read-only operations must not "fix" it
    with open(path / "val" / "y.npy", "ab") as f:
        f.write(b"\0" * 8)


def _read_everything(path: Path, tmp: Path) -> list[str]:
    """Every read API once; returns what ran (so the test can show it ran them all)."""
    ran = []
    with npydir.open(path, "r") as root:
        assert root.readonly
        for name, obj in root.members():
            if isinstance(obj, npydir.Array):
                obj.shape, obj.dtype, obj.nbytes, obj.attrs.asdict()
                np.asarray(obj).copy()
                obj[...]
                if obj.ndim:
                    list(iter(obj))[:2]
            else:
                obj.attrs.asdict()
                list(obj), len(obj), obj.group_keys(), obj.array_keys()
        root.tree()
        root.visititems(lambda n, o: None)
        root.visit(lambda n: None)
        "train/x" in root, root.get("nope"), root.attrs.asdict(), dict(root.attrs)
        x = root["train/x"]
        clone = pickle.loads(pickle.dumps(x))
        np.testing.assert_array_equal(clone[:10], x[:10])
        starts = np.arange(0, 3000, 97)
        npydir.gather_windows(x, starts, 64)
        npydir.gather_windows(np.asarray(x), starts, 64, dtype="f8", scale=2.0, threads=2)
        from npydir.kernel.windows import advise_windows

        advise_windows(np.asarray(x), starts, 64)
        batches = npydir.Batches(x, root["train/y"], window=32, batch_size=8, seed=1, prefetch=2)
        for i, b in enumerate(batches):
            if i == 5:
                break
        ran += [
            "open/members/arrays/attrs/tree/visit/pickle",
            "gather_windows/advise_windows",
            "Batches",
        ]
    data = npydir.load(path)
    np.asarray(data["train"]["x"][:5])
    ran.append("load")
    report = npydir.verify(path)
    assert report.kinds() == ["torn-append"]
    ran.append("verify")
    out = tmp / f"conv-{uuid.uuid4().hex[:6]}"
    out.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        npydir.convert(path, out / "copy.npy", progress=False, verify=True)
        try:
            import zarr  # noqa: F401

            npydir.convert(path, out / "copy.zarr", progress=False)
        except ImportError:  # pragma: no cover
            pass
    ran.append("convert from it (npydir, zarr)")
    for cmd, status in (
        (["info", str(path)], 0),
        (["tree", str(path)], 0),
        (["verify", str(path)], 1),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "npydir", *cmd],
            capture_output=True,
            timeout=120,
            env=_hostile.child_env(),
        )
        # verify exits 1: the store has a torn append (reported, not repaired)
        assert out.returncode == status, (cmd, out.returncode, out.stderr.decode()[-2000:])
    ran.append("CLI info/tree/verify")
    return ran


def _try_writes(path: Path) -> int:
    refused = 0
    with npydir.open(path, "r") as root:
        x = root["train/x"]
        attempts = [
            lambda: root.create_dataset("new", data=[1]),
            lambda: root.create_group("g"),
            lambda: root.require_group("g2"),
            lambda: root.__setitem__("k", [1]),
            lambda: root.__delitem__("val"),
            lambda: root.move("val", "val2"),
            lambda: root.attrs.__setitem__("a", 1),
            lambda: root.attrs.__delitem__("samplerate_x_Hz"),
            lambda: root.attrs.update(b=2),
            lambda: x.attrs.__setitem__("unit", "mV"),
            lambda: x.append(np.zeros((1, 3), "f4")),
            lambda: x.__setitem__(0, 1.0),
            lambda: x.resize(10),
        ]
        for attempt in attempts:
            with pytest.raises((ReadOnlyError, ValueError)):
                attempt()
            refused += 1
        with pytest.raises((ValueError, TypeError)):  # the mapping itself is read-only
            np.asarray(x)[0] = 1
    return refused


def test_read_only_operations_write_nothing(tmp_path):
    store = tmp_path / "s.npy"
    _make_store(store)
    before = _hostile.snapshot(store)
    ran = _read_everything(store, tmp_path)
    refused = _try_writes(store)
    diff = _hostile.diff_snapshots(before, _hostile.snapshot(store))
    assert not diff, "read-only operations changed the store:\n" + "\n".join(diff)
    _hostile.record("read-only", "files+dirs snapshotted (bytes, mtime, inode)", len(before))
    _hostile.record("read-only", "read APIs run", "; ".join(ran))
    _hostile.record("read-only", "write attempts in mode 'r' refused", refused)


@pytest.fixture
def ro_mount(tmp_path):
    with _mounts.tmpfs(tmp_path / "ro", "64m") as mnt:
        _make_store(mnt / "s.npy")
        _mounts.remount_read_only(mnt)
        yield mnt / "s.npy"


def test_store_on_a_read_only_mount(ro_mount, tmp_path):
    store = ro_mount
    with pytest.raises(OSError):  # really read-only, even for root
        (store / "probe").write_bytes(b"x")
    before = _hostile.snapshot(store)
    _read_everything(store, tmp_path)
    _try_writes(store)
    assert not _hostile.diff_snapshots(before, _hostile.snapshot(store))
    # a write mode fails clearly (cannot take the lock / write), never half-opens
    with pytest.raises(OSError):
        npydir.open(store, "a")
    with pytest.raises(OSError):
        npydir.repair(store)
    _hostile.record(
        "read-only", "read-only tmpfs mount", "all read APIs ran; writes fail with OSError"
    )
