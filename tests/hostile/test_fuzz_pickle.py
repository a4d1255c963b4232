"""Fuzzing DAS's pickled ``attrs.npy``: random and mutated pickles, and malicious ones.

npydir reads ``attrs.npy`` with a restricted unpickler.  Every case must end in success (a
dict of plain values) or :class:`npydir.errors.FormatError` / ``UnsafePickleError``, and no
pickle may ever run anything: every malicious input would create a file in a sentinel
directory if it ran, and the directory must stay empty.  A control test proves the gadgets do
run under a plain ``np.load(allow_pickle=True)``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import _fuzz_inputs
import _hostile
import numpy as np
import pytest

import npydir
from npydir.store.attrs import read_legacy_attrs
from npydir.errors import UnsafePickleError

pytestmark = pytest.mark.hostile


def test_hypothesis_fuzz_attrs_npy_pickles():
    _hostile.check_hypothesis_fuzz("pickle", {"FormatError", "UnsafePickleError"})


def test_atheris_fuzz_attrs_npy_pickles():
    _hostile.check_atheris_fuzz("pickle")


def _gadgets(tmp_path):
    sentinels = tmp_path / "sentinels"
    sentinels.mkdir()
    return sentinels, _fuzz_inputs.malicious_pickles(sentinels)


def test_gadgets_would_run_under_plain_np_load(tmp_path):
    """Control: the sentinel works -- np.load(allow_pickle=True) runs the os.system gadget."""
    sentinels, gadgets = _gadgets(tmp_path)
    label, data = next((lab, d) for lab, d in gadgets if lab.startswith("os.system (np.save"))
    path = tmp_path / "attrs.npy"
    path.write_bytes(data)
    code = f"import numpy as np; np.load({str(path)!r}, allow_pickle=True)"
    subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, env=_hostile.child_env()
    )
    assert os.listdir(sentinels) == ["os_system"]


def test_malicious_pickles_are_refused_without_running_anything(tmp_path):
    sentinels, gadgets = _gadgets(tmp_path)
    store = tmp_path / "s.npy"
    with npydir.open(store, "w") as root:
        root["x"] = np.arange(3)
    refused = 0
    for label, data in gadgets:
        (store / "attrs.npy").write_bytes(data)
        with pytest.raises(UnsafePickleError, match="attrs.npy") as info:
            read_legacy_attrs(store / "attrs.npy")
        assert "refusing" in str(info.value) or "not allowed" in str(info.value), label
        with npydir.open(store) as root:
            with pytest.raises(UnsafePickleError):
                root.attrs.asdict()
            np.testing.assert_array_equal(root["x"][:], np.arange(3))  # the rest still reads
        assert npydir.verify(store).kinds() == ["bad-attrs"], label
        assert os.listdir(sentinels) == [], f"{label} RAN CODE"
        refused += 1
    _hostile.record("fuzz/pickle", "malicious gadgets refused", refused)
    assert refused >= 40


def test_shared_references_do_not_hang_the_reader(tmp_path):
    """A 500-byte attrs.npy whose lists share references (a DAG) took 2**40 steps (bug-log.md H6).

    ``[c, c]`` nested 40 times pickles to a few hundred bytes thanks to the memo; walking it
    as a tree without remembering visited objects never ends.
    """
    path = tmp_path / "attrs.npy"
    code = textwrap.dedent(f"""
        import numpy as np
        cur = [1]
        for _ in range(40):
            cur = [cur, cur]
        payload = np.empty((), dtype=object)
        payload[()] = {{"a": cur}}
        np.save({str(path)!r}, payload, allow_pickle=True)
        from npydir.store.attrs import read_legacy_attrs
        from npydir.errors import FormatError
        try:
            read_legacy_attrs({str(path)!r})
            print("ok")
        except FormatError as exc:
            print("refused", type(exc).__name__)
    """)
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, timeout=30, env=_hostile.child_env()
        )
    except subprocess.TimeoutExpired:
        pytest.fail("read_legacy_attrs did not finish within 30 s on a 500-byte attrs.npy")
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split()[0] in ("ok", "refused")
    assert path.stat().st_size < 1000


def test_valid_das_attrs_still_read(tmp_path):
    """The allowlist is not so tight that DAS's own attrs.npy (any protocol) is refused."""
    for i, data in enumerate(_fuzz_inputs.das_attrs_pickles()):
        path = tmp_path / f"attrs{i}.npy"
        path.write_bytes(data)
        got = read_legacy_attrs(path)
        assert isinstance(got, dict) and got, i
        if "class_names" in got:
            assert list(got["class_names"]) == ["noise", "pulse", "sine"]
            np.testing.assert_array_equal(got["filename_startsample_train"], [0, 1000])


def test_huge_memo_index_is_refused_without_a_huge_allocation(tmp_path):
    """Found by atheris: a 533-byte attrs.npy whose pickle stores into memo slot ~1e9 made the C
    unpickler grow its memo table to 2 * 1e9 pointers (~16 GB, zeroed): minutes of work and an
    out-of-memory kill instead of an error (bug-log.md H10).

    The child caps its address space at 1 GiB above what it uses after importing npydir, so an
    attempt to allocate the table fails fast with MemoryError instead of exhausting the machine;
    the test then requires that npydir refused the pickle without trying (no MemoryError).
    """
    path = tmp_path / "attrs.npy"
    payload = b"\x80\x04" + b"\x8c\x01a" + b"r" + (1_000_000_000).to_bytes(4, "little") + b"."
    path.write_bytes(_fuzz_inputs._wrap_object(payload))
    code = textwrap.dedent(f"""
        import resource, re
        import npydir
        from npydir.store.attrs import read_legacy_attrs
        from npydir.errors import FormatError
        status = open("/proc/self/status").read()
        vm = int(re.search(r"VmSize:\\s+(\\d+) kB", status).group(1)) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
        try:
            print("ok", read_legacy_attrs({str(path)!r}))
        except FormatError as exc:
            print("refused", exc)
        except MemoryError as exc:
            print("MemoryError", exc)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, env=_hostile.child_env()
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    text = out.stdout.decode()
    assert "MemoryError" not in text, (
        f"npydir tried a multi-GB allocation for a {path.stat().st_size}-byte file: {text}"
    )
    assert text.startswith("refused"), text
