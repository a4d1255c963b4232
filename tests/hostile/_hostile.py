"""Shared helpers of the hostile suite: counts, subprocess runners, snapshots.

Counts are configurable by environment variable so the suite fits the 5-minute budget of
``make test`` on 2 cores while ``make hostile`` can be run with more:

=========================  ========  ==========================================================
variable                   default   meaning
=========================  ========  ==========================================================
NPYDIR_FUZZ_EXAMPLES       10000     cases per fuzz target (hypothesis examples)
NPYDIR_ATHERIS_RUNS        5000      atheris (libFuzzer) runs per target, 0 disables
NPYDIR_CRASH_TRIALS        50        SIGKILL trials per write operation
NPYDIR_DISK_TRIALS         20        write attempts per full-disk / file-size-limit test
NPYDIR_CONCURRENCY_SECONDS 3         how long readers race a writer
NPYDIR_HOSTILE_ASAN        1         0 skips the AddressSanitizer build of the kernel
NPYDIR_FUZZ_CASE_TIMEOUT   5         seconds one fuzz case may take before it counts as a hang
=========================  ========  ==========================================================

Every test records what it actually ran with :func:`record`; ``conftest.py`` prints the table
at the end of the run (pytest's terminal summary).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

#: (area, what) -> count, printed by conftest.pytest_terminal_summary
COUNTS: dict[tuple[str, str], object] = {}
_lock = threading.Lock()


def env_int(name: str, default: int) -> int:
    """An integer setting from the environment (see the module table)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


FUZZ_EXAMPLES = env_int("NPYDIR_FUZZ_EXAMPLES", 10_000)
ATHERIS_RUNS = env_int("NPYDIR_ATHERIS_RUNS", 5_000)
CRASH_TRIALS = env_int("NPYDIR_CRASH_TRIALS", 50)
DISK_TRIALS = env_int("NPYDIR_DISK_TRIALS", 20)
CONCURRENCY_SECONDS = env_float("NPYDIR_CONCURRENCY_SECONDS", 3.0)
CASE_TIMEOUT = env_float("NPYDIR_FUZZ_CASE_TIMEOUT", 5.0)


def record(area: str, what: str, count: object) -> None:
    """Remember a count for the end-of-run summary (and print it, visible with ``-s``)."""
    with _lock:
        COUNTS[(area, what)] = count
    print(f"[hostile] {area}: {what} = {count}")


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child Python: this interpreter's sys.path, no inherited test hooks."""
    paths = [str(REPO), str(HERE)] + [p for p in sys.path if p]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
        "PYTHONFAULTHANDLER": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra)
    return env


def run_json(args: list[str], *, timeout: float, env: dict | None = None) -> Any:
    """Run ``python -X faulthandler <args>`` and parse its last JSON line (object or list).

    A crash (signal), a hang (timeout) or a non-zero exit is an AssertionError carrying the
    child's stderr (faulthandler prints the Python stack of a segfault there).
    """
    return run_json_parallel([args], timeout=timeout, env=env)[0]


def run_json_parallel(
    arg_lists: list[list[str]], *, timeout: float, env: dict | None = None
) -> list[Any]:
    """Run several children as :func:`run_json` does, all at once (racing each other); return
    their JSON results in order.  ``timeout`` is for all of them together."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-X", "faulthandler", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env or child_env(),
            cwd=str(REPO),
        )
        for args in arg_lists
    ]
    deadline = time.monotonic() + timeout
    results = []
    try:
        for args, proc in zip(arg_lists, procs):
            try:
                out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                raise AssertionError(
                    f"child hung for more than {timeout} s: {' '.join(args)}\n"
                    + err.decode(errors="replace")[-4000:]
                ) from None
            results.append(_json_result(args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def _json_result(args: list[str], returncode: int, out_b: bytes, err_b: bytes) -> Any:
    out = out_b.decode(errors="replace")
    err = err_b.decode(errors="replace")
    if returncode != 0:
        how = f"killed by signal {-returncode}" if returncode < 0 else f"exit {returncode}"
        raise AssertionError(
            f"child {how}: {' '.join(args)}\nstdout:\n{out[-2000:]}\nstderr:\n{err[-6000:]}"
        )
    lines = [ln for ln in out.splitlines() if ln.startswith(("{", "["))]
    if not lines:
        raise AssertionError(
            f"child printed no JSON result\nstdout:\n{out[-2000:]}\nstderr:\n{err[-4000:]}"
        )
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------- snapshots


def snapshot(root: str | os.PathLike) -> dict[str, tuple]:
    """Every entry below ``root`` (root included): bytes, mode, mtime_ns, inode, size.

    Used to prove that read-only operations write nothing: not a byte, not an mtime, no new
    file (lock files and temp files included, since hidden entries are listed too).
    """
    root = Path(root)
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [""] + sorted(filenames) + dirnames:
            p = Path(dirpath) / name if name else Path(dirpath)
            if name == "" and p != root and str(p.relative_to(root)) in out:
                continue
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            data = p.read_bytes() if p.is_file() and not p.is_symlink() else None
            out[rel] = (data, st.st_mode, st.st_mtime_ns, st.st_ino, st.st_size)
    return out


def diff_snapshots(before: dict, after: dict) -> list[str]:
    """Human-readable differences between two :func:`snapshot` results."""
    problems = []
    for k in sorted(set(before) | set(after)):
        if k not in after:
            problems.append(f"{k}: removed")
        elif k not in before:
            problems.append(f"{k}: created")
        elif before[k] != after[k]:
            b, a = before[k], after[k]
            what = [
                n for n, x, y in zip(("bytes", "mode", "mtime", "inode", "size"), b, a) if x != y
            ]
            # a directory's mtime changes when an entry is created and removed again
            problems.append(f"{k}: changed ({', '.join(what)})")
    return problems


# ----------------------------------------------------------------------------- background fuzzers

#: target -> (Popen, workdir, kind); started once per session by conftest so that the CPU-bound
#: fuzzers overlap with the crash and concurrency tests, which mostly wait.
_BACKGROUND: dict[tuple[str, str], tuple] = {}
FUZZ_TARGETS = ("npy", "attrs", "pickle", "annotations", "names", "audio")


def scratch_root() -> Path:
    """A fast scratch directory for fuzz work (tmpfs /dev/shm when there is one)."""
    base = (
        Path("/dev/shm") if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    )
    import tempfile

    return Path(tempfile.mkdtemp(prefix="npydir-hostile-", dir=base))


_SCRATCH: list[Path] = []


def _scratch() -> Path:
    if not _SCRATCH:
        _SCRATCH.append(scratch_root())
    return _SCRATCH[0]


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except Exception:
        return False
    return True


def start_fuzzer(kind: str, target: str) -> None:
    """Start the hypothesis (``kind="hypothesis"``) or atheris fuzzer of ``target`` in a child."""
    key = (kind, target)
    if key in _BACKGROUND:
        return
    work = _scratch() / f"{kind}-{target}"
    work.mkdir(parents=True, exist_ok=True)
    if kind == "hypothesis":
        args = [
            str(HERE / "_fuzz_worker.py"),
            target,
            str(FUZZ_EXAMPLES),
            "20261124",
            str(work),
            str(CASE_TIMEOUT),
        ]
    else:
        if ATHERIS_RUNS <= 0 or not atheris_available():
            return
        args = [
            str(HERE / "_atheris_worker.py"),
            target,
            str(work),
            f"-runs={ATHERIS_RUNS}",
            f"-timeout={int(max(CASE_TIMEOUT, 1) * 2)}",
            "-rss_limit_mb=4096",
            f"-artifact_prefix={work}/",
            "-seed=20261124",
            "-print_final_stats=1",
        ]
    out = open(work / "stdout", "wb")
    err = open(work / "stderr", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", *args],
        stdout=out,
        stderr=err,
        env=child_env(),
        cwd=str(work),
    )
    _BACKGROUND[key] = (proc, work, out, err)


def fuzzer_result(kind: str, target: str, timeout: float = 480) -> tuple[int, str, str, Path]:
    """Wait for a background fuzzer: (returncode, stdout, stderr, workdir); starts it if needed."""
    start_fuzzer(kind, target)
    proc, work, out, err = _BACKGROUND[(kind, target)]
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(
            f"{kind} fuzzer of {target} hung for more than {timeout} s "
            f"(stderr: {(work / 'stderr').read_text(errors='replace')[-3000:]})"
        ) from None
    out.close()
    err.close()
    return (
        proc.returncode,
        (work / "stdout").read_text(errors="replace"),
        (work / "stderr").read_text(errors="replace"),
        work,
    )


#: set when a fuzz check failed: the scratch space (failing inputs) is kept for the bug report
KEEP_SCRATCH: list[bool] = []


def stop_background() -> None:
    """Kill fuzzers still running (an interrupted session); remove the scratch space unless a
    fuzz check failed (then its failing inputs are kept and the path is printed)."""
    import shutil

    for proc, work, out, err in _BACKGROUND.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
        err.close()
    _BACKGROUND.clear()
    for d in _SCRATCH:
        if KEEP_SCRATCH:
            print(f"\n[hostile] failing fuzz inputs kept in {d}")
            continue
        shutil.rmtree(d, ignore_errors=True)
    _SCRATCH.clear()


def check_hypothesis_fuzz(target: str, documented: set[str]) -> dict:
    """Assert the hypothesis fuzz run of ``target`` met the bar; return its summary.

    The bar: at least ``FUZZ_EXAMPLES`` cases, every one ending in success or one of the
    ``documented`` exception names, no case ran code, both successes and refusals were seen
    (so the inputs reached past the first check), no crash (the child would have died).
    """
    rc, out, err, work = fuzzer_result("hypothesis", target)
    KEEP_SCRATCH.append(True)  # removed again below when the run passes
    if rc != 0:
        how = f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"
        raise AssertionError(
            f"fuzz worker for {target} {how} (a crash in a parser?)\n{err[-6000:]}"
        )
    lines = [ln for ln in out.splitlines() if ln.startswith(("{", "["))]
    assert lines, f"fuzz worker printed no result\n{out[-2000:]}\n{err[-3000:]}"
    res = json.loads(lines[-1])
    record(f"fuzz/{target}", "hypothesis cases", res["cases"])
    assert res["ran_code"] is None, f"an attrs.npy pickle RAN CODE: {res['ran_code']}"
    if res["failures"]:
        lines = [
            f"{f['count']:5d} x {f['kind']}\n        input: {f['input']}"
            f"\n        saved: {f['saved']}"
            for f in res["failures"]
        ]
        raise AssertionError(
            f"{target}: {sum(f['count'] for f in res['failures'])} of {res['cases']} cases ended "
            f"in neither success nor the documented exception:\n" + "\n".join(lines)
        )
    outcomes = res["outcomes"]
    assert res["cases"] >= FUZZ_EXAMPLES, res
    undocumented = set(outcomes) - documented - {"ok"}
    assert not undocumented, f"outcomes {undocumented} are not documented for {target}"
    if res["cases"] >= 1000:  # too few cases may not hit a valid input by chance
        assert outcomes.get("ok", 0) > 0, (
            f"no input was accepted: the fuzzer never got past the checks {outcomes}"
        )
        assert sum(v for k, v in outcomes.items() if k != "ok") > 0, (
            f"nothing was refused: {outcomes}"
        )
    record(f"fuzz/{target}", "outcomes", dict(sorted(outcomes.items())))
    KEEP_SCRATCH.pop()
    return res


ARTIFACTS = ("crash", "timeout", "oom", "leak", "slow")


def check_atheris_fuzz(target: str) -> int:
    """Assert the atheris run of ``target`` finished its runs without a failure; return runs."""
    import pytest

    if ATHERIS_RUNS <= 0:
        pytest.skip("NPYDIR_ATHERIS_RUNS=0")
    if not atheris_available():
        pytest.skip("atheris is not installed in this environment (pip install atheris)")
    rc, out, err, work = fuzzer_result("atheris", target)
    import re

    m = re.search(r"Done (\d+) runs", err)
    if rc != 0 or not m:
        KEEP_SCRATCH.append(True)
        raise AssertionError(
            f"atheris found a failing input for {target} (exit {rc}); inputs saved as "
            f"{sorted(str(p) for p in work.glob('*-*') if p.name.split('-')[0] in ARTIFACTS)}:\n"
            f"{err[-5000:]}"
        )
    runs = int(m.group(1))
    record(f"fuzz/{target}", "atheris runs", runs)
    assert runs >= ATHERIS_RUNS
    return runs


# ----------------------------------------------------------------------------- fork server


class Zygote:
    """Client of ``_zygote.py``: fork a warm writer, kill it, reap it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", str(HERE / "_zygote.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
            cwd=str(REPO),
            text=True,
            bufsize=1,
        )

    def _ask(self, msg: dict) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"zygote died (exit {self.proc.poll()})")
        return json.loads(line)

    def run(self, op: str, stderr: str | None = None, **args) -> int:
        return self._ask({"cmd": "run", "op": op, "args": args, "stderr": stderr})["pid"]

    def reap(self, pid: int) -> int:
        return self._ask({"cmd": "reap", "pid": pid})["status"]

    def kill_after(self, op: str, delay: float, stderr: str | None = None, **args) -> int:
        """Fork a writer, SIGKILL it ``delay`` seconds later; return its exit status."""
        import signal
        import time

        pid = self.run(op, stderr, **args)
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # pragma: no cover - already reaped is impossible here
            pass
        return self.reap(pid)

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
