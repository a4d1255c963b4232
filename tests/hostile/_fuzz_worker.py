"""Child process: run one fuzz target for N hypothesis examples, print a JSON summary.

Usage::

    python -X faulthandler _fuzz_worker.py <target> <examples> <seed> <workdir> <case_timeout>


Every case runs under an interval timer: a case that takes longer than ``case_timeout``
seconds is recorded as a hang.  Failures (anything but success or the documented exception)
are collected, not raised, so one run reports every kind of failure with a reproducer
(the input, ``repr``-ed and cut to 300 characters; the full input of the first failure of
each kind is saved under ``<workdir>/failures``).  A crash kills this process; the parent
then reports the signal and faulthandler's stack.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

warnings.simplefilter("ignore")

import _fuzz_inputs as inputs  # noqa: E402
import _fuzz_targets as targets  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: cheap byte-level mutants run after each hypothesis example (see docs/hostile.md)
MUTANTS = 3


class CaseTimeout(BaseException):
    """Raised by the interval timer inside a case that runs too long (a hang)."""


def _alarm(signum, frame):
    raise CaseTimeout()


def main() -> None:
    target, n, rnd_seed, work, case_timeout = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        Path(sys.argv[4]),
        float(sys.argv[5]),
    )
    ctx = targets.Context(work / "ctx")
    targets.cap_memory()
    (work / "failures").mkdir(exist_ok=True)
    outcomes: Counter[str] = Counter()
    failures: dict[str, dict] = {}
    signal.signal(signal.SIGALRM, _alarm)

    if target == "npy":
        strategy, run = inputs.npy_strategy(), lambda x: targets.case_npy(x, ctx)
    elif target == "attrs":
        strategy, run = inputs.attrs_strategy(), lambda x: targets.case_attrs(x, ctx)
    elif target == "pickle":
        strategy, run = inputs.pickle_strategy(ctx.sentinels), lambda x: targets.case_pickle(x, ctx)
    elif target == "annotations":
        strategy, run = inputs.annotations_strategy(), lambda x: targets.case_annotations(x, ctx)
    elif target == "audio":
        strategy, run = inputs.audio_strategy(), lambda x: targets.case_audio(x[1], x[0], ctx)
    elif target == "names":
        strategy, run = inputs.names_strategy(), lambda x: targets.case_names(x[0], x[1], ctx)
    else:
        raise SystemExit(f"unknown target {target}")

    def one(drawn) -> None:
        base, rnd = drawn
        for i in range(1 + MUTANTS):
            if i == 0:
                x = base
            elif target == "names":
                x = (inputs.random_name_mutant(base[0], rnd), base[1])
            elif target == "audio":
                x = (base[0], inputs.random_mutant(base[1], rnd))
            else:
                x = inputs.random_mutant(base, rnd)
            run_case(x)

    def run_case(x) -> None:
        signal.setitimer(signal.ITIMER_REAL, case_timeout)
        try:
            outcome = run(x)
        except CaseTimeout:
            outcome, kind = "FAIL", "hang (case timeout)"
        except RecursionError as exc:
            outcome, kind = "FAIL", f"RecursionError: {str(exc)[:60]}"
        except targets.Violation as exc:
            outcome, kind = "FAIL", f"violation: {str(exc)[:90]}"
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)
            where = next(
                (
                    f"{Path(f.filename).name}:{f.lineno}"
                    for f in reversed(tb)
                    if "npydir" in f.filename
                ),
                "?",
            )
            outcome, kind = "FAIL", f"{type(exc).__name__} at {where}: {str(exc)[:80]}"
        else:
            kind = None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        outcomes[outcome] += 1
        if kind is not None:
            # group by the message without its variable parts
            key = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", kind)[:70]
            if key not in failures:
                blob = x if isinstance(x, bytes) else repr(x).encode("utf-8", "surrogatepass")
                saved = work / "failures" / f"{target}-{len(failures)}.bin"
                saved.write_bytes(blob)
                failures[key] = {
                    "kind": kind,
                    "input": repr(x)[:300],
                    "saved": str(saved),
                    "count": 0,
                }
            failures[key]["count"] += 1
        if any(ctx.sentinels.iterdir()):
            # stop at once: a pickle ran code
            print(
                json.dumps(
                    {
                        "target": target,
                        "cases": sum(outcomes.values()),
                        "outcomes": outcomes,
                        "failures": list(failures.values()),
                        "ran_code": {
                            "input": repr(x)[:300],
                            "files": sorted(os.listdir(ctx.sentinels)),
                        },
                    }
                )
            )
            sys.exit(0)

    examples = -(-n // (1 + MUTANTS))
    test = settings(
        max_examples=examples,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )(given(st.tuples(strategy, st.randoms(use_true_random=False)))(one))
    test = seed(rnd_seed)(test)
    t0 = time.perf_counter()
    test()
    print(
        json.dumps(
            {
                "target": target,
                "cases": sum(outcomes.values()),
                "outcomes": outcomes,
                "examples": examples,
                "mutants_per_example": MUTANTS,
                "failures": list(failures.values()),
                "seconds": round(time.perf_counter() - t0, 2),
                "ran_code": None,
            }
        )
    )


if __name__ == "__main__":
    main()
