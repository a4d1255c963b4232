"""A file truncated under a live map: the kernel's copy survives the SIGBUS and says which file.

Each scenario runs in a child interpreter, because the failure this guards against kills the
process: without the guard the child dies with SIGBUS and the test fails on its exit status
instead of taking pytest down with it.  The truncation is done by another process, as it would
be by a user's ``truncate``/``rsync``/editor.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _hostile import child_env, record

pytestmark = pytest.mark.hostile

# Prelude of every child: a 64 MB float32 [N, 4] file, mapped, and a helper that truncates it
# from another process.
PRELUDE = """
import json, os, subprocess, sys, threading
import numpy as np
import npydir

path = sys.argv[1]
N = 4_000_000
if not os.path.exists(path):
    np.save(path, np.arange(N * 4, dtype=np.float32).reshape(N, 4))

def truncate_elsewhere(size=4096):
    subprocess.run([sys.executable, "-c", f"import os; os.truncate({path!r}, {size})"],
                   check=True)

starts = np.arange(0, N - 2048, 9973, dtype=np.int64)
"""


def run_child(
    tmp_path: Path, body: str, *, faulthandler: bool = False
) -> subprocess.CompletedProcess:
    script = PRELUDE + textwrap.dedent(body)
    env = child_env()
    if not faulthandler:
        env.pop("PYTHONFAULTHANDLER", None)
    return subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "x.npy")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def result_of(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, (
        f"child exited with {proc.returncode} "
        f"({'SIGBUS: the copy was not guarded' if proc.returncode == -signal.SIGBUS else ''})\n"
        f"{proc.stderr[-3000:]}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threads": 1},
        {"threads": 2},
        {"threads": 1, "nontemporal": True},
        {"threads": 2, "dtype": "float64", "scale": 0.5},  # the casting kernel
        {"threads": 1, "dtype": "float32", "scale": 2.0},  # casting with its staging buffer
        {"threads": 1, "pad": "edge"},
    ],
    ids=["plain-1", "plain-2", "stream", "cast-2", "cast-staged", "pad"],
)
@pytest.mark.parametrize("window", [16, 4096])
def test_gather_on_truncated_file_raises_oserror_naming_it(tmp_path, kwargs, window):
    proc = run_child(
        tmp_path,
        f"""
        x = np.load(path, mmap_mode="r")
        kwargs = {kwargs!r}
        good = npydir.gather_windows(x, starts, {window}, **kwargs)  # before: a batch
        truncate_elsewhere()
        errors = []
        for _ in range(3):  # and it stays an error, call after call
            try:
                npydir.gather_windows(x, starts, {window}, **kwargs)
            except OSError as e:
                errors.append(str(e))
        print(json.dumps({{"errors": errors, "shape": list(good.shape)}}))
        """,
    )
    out = result_of(proc)
    assert len(out["errors"]) == 3
    for message in out["errors"]:
        assert str(tmp_path / "x.npy") in message
        assert "shrank" in message and "\n" not in message


def test_threads_copying_while_another_process_truncates(tmp_path):
    """Six Python threads gather in a loop while the file is cut: every call either returns
    the right batch or raises OSError naming the file; the process survives."""
    proc = run_child(
        tmp_path,
        """
        x = np.load(path, mmap_mode="r")
        from npydir.kernel.windows import gather_windows_reference
        want = {w: gather_windows_reference(x, starts, w) for w in (16, 256)}
        outcomes = {"ok": 0, "oserror": 0, "wrong": 0, "other": []}
        lock = threading.Lock()
        go = threading.Event()

        def work(k):
            w = (16, 256)[k % 2]
            for i in range(400):
                try:
                    got = npydir.gather_windows(x, starts, w, threads=1 + k % 2)
                    kind = "ok" if np.array_equal(got, want[w]) else "wrong"
                except OSError as e:
                    kind = "oserror" if path in str(e) else "other"
                    if kind == "other":
                        outcomes["other"].append(repr(e))
                with lock:
                    if kind != "other":
                        outcomes[kind] += 1
                if i == 20:
                    go.set()
                if kind == "oserror":
                    break

        threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        go.wait(60)
        truncate_elsewhere()
        for t in threads:
            t.join()
        print(json.dumps(outcomes))
        """,
    )
    out = result_of(proc)
    record("kernel SIGBUS", "threads cut mid-copy", out["oserror"])
    assert out["wrong"] == 0 and out["other"] == []
    assert out["oserror"] >= 1 and out["ok"] >= 1


@pytest.mark.parametrize("prefetch", [0, 2, 4])
def test_batches_on_a_truncated_store_array(tmp_path, prefetch):
    """Batches (and its copier threads) raise the OSError at a batch, naming the store's file."""
    proc = run_child(
        tmp_path,
        f"""
        store = os.path.join(os.path.dirname(path), "s")
        with npydir.open(store, "w") as root:
            root["x"] = np.arange(2_000_000 * 4, dtype=np.float32).reshape(-1, 4)
        xfile = os.path.join(store, "x.npy")
        x = npydir.open(store, "r")["x"]
        it = iter(npydir.Batches(x, window=256, batch_size=64, prefetch={prefetch}, seed=1))
        next(it)
        subprocess.run([sys.executable, "-c", f"import os; os.truncate({{xfile!r}}, 4096)"],
                       check=True)
        errors = []
        try:
            for _ in it:
                pass
        except OSError as e:
            errors.append(str(e))
        print(json.dumps({{"errors": errors, "file": xfile}}))
        """,
    )
    out = result_of(proc)
    assert len(out["errors"]) == 1
    assert out["file"] in out["errors"][0] and "shrank" in out["errors"][0]


def test_fault_outside_the_copy_still_kills(tmp_path):
    """The guard catches only the kernel's own faults: numpy reading the same truncated map
    dies with SIGBUS exactly as without npydir (it cannot be protected)."""
    proc = run_child(
        tmp_path,
        """
        x = np.load(path, mmap_mode="r")
        npydir.gather_windows(x, starts, 64)  # installs the handler
        truncate_elsewhere()
        try:
            npydir.gather_windows(x, starts, 64)
        except OSError:
            pass
        print(float(x[N - 1, 0]), flush=True)
        """,
    )
    assert proc.returncode == -signal.SIGBUS, proc.stderr[-2000:]


def test_sigbus_sent_by_kill_is_not_swallowed(tmp_path):
    proc = run_child(
        tmp_path,
        """
        x = np.load(path, mmap_mode="r")
        npydir.gather_windows(x, starts, 64)
        os.kill(os.getpid(), 7)
        print("survived", flush=True)
        """,
    )
    assert proc.returncode == -signal.SIGBUS
    assert "survived" not in proc.stdout


def test_handler_installed_later_is_chained(tmp_path):
    """faulthandler enabled after npydir's first copy: the copy is still guarded, and an
    unguarded fault still reaches faulthandler (which prints its traceback and dies)."""
    proc = run_child(
        tmp_path,
        """
        import faulthandler
        x = np.load(path, mmap_mode="r")
        npydir.gather_windows(x, starts, 64)
        faulthandler.enable()
        truncate_elsewhere()
        try:
            npydir.gather_windows(x, starts, 64, threads=2)
            print("no error", flush=True)
        except OSError:
            print("guarded", flush=True)
        print(float(x[N - 1, 0]), flush=True)
        """,
    )
    assert proc.stdout.splitlines()[0] == "guarded"
    assert proc.returncode == -signal.SIGBUS
    assert "Bus error" in proc.stderr  # faulthandler's report
