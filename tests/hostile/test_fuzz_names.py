"""Fuzzing member names and keys: ``npydir.store.names.validate_name``, ``create_group``,
``create_dataset``, lookup and delete, in portable and non-portable stores.

Every case ends in success (the member is created inside the store and reads back under its
key) or ``InvalidNameError`` / ``PathEscapeError`` / ``AlreadyExistsError``; a store holds a
symbolic link ``escape`` to a directory outside, and nothing may ever appear there.
"""

from __future__ import annotations

import _hostile
import numpy as np
import pytest

import npydir
from npydir.store.names import MAX_NAME_BYTES, validate_name

pytestmark = pytest.mark.hostile


def test_hypothesis_fuzz_names():
    _hostile.check_hypothesis_fuzz(
        "names", {"InvalidNameError", "PathEscapeError", "AlreadyExistsError"}
    )


def test_atheris_fuzz_names():
    _hostile.check_atheris_fuzz("names")


@pytest.mark.parametrize("nbytes", [200, 230, 240, MAX_NAME_BYTES - len(".attrs.json")])
def test_every_valid_array_name_can_be_created(tmp_path, nbytes):
    """Array names that validate_name accepts must be creatable (bug-log.md H5).

    The temp file of the atomic write is ``.<name>.npy.<8 hex>.npydir-tmp``, 24 bytes longer
    than the name plus ``.npy``; for long names it exceeded NAME_MAX and the create failed
    with a raw OSError ENAMETOOLONG.
    """
    name = "a" * nbytes
    validate_name(name, array=True)
    with npydir.open(tmp_path / "s.npy", "w") as root:
        root.create_dataset(name, data=np.arange(3))
        root[name].attrs["k"] = 1
        root[name].append(np.arange(2))
        np.testing.assert_array_equal(root[name][:], [0, 1, 2, 0, 1])
    assert npydir.verify(tmp_path / "s.npy").ok


def test_repair_never_writes_through_a_symlink_out_of_the_store(tmp_path):
    """``x.npy`` in a store is a symbolic link to a file outside it, with bytes past its data.
    ``verify`` read the outside file and called it a torn append; ``repair`` then truncated
    the file *outside the store* (bug-log.md H13).  Nothing may ever resolve outside the store.
    """
    outside = tmp_path / "outside.npy"
    np.save(outside, np.arange(10))
    with open(outside, "ab") as f:
        f.write(b"bytes that belong to someone else")
    before = outside.read_bytes()
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as root:
        root["ok"] = np.arange(3)
    (store / "x.npy").symlink_to(outside)
    report = npydir.verify(store)
    assert "torn-append" not in report.kinds(), f"verify read through the link: {report}"
    try:
        npydir.repair(store)
    except npydir.errors.IntegrityError:
        pass  # refusing to touch the link is fine
    assert outside.read_bytes() == before, "repair truncated a file outside the store"
    with npydir.open(store) as root:
        np.testing.assert_array_equal(root["ok"][:], np.arange(3))
