"""Children of test_concurrency_attrs.py: a writer rewriting attributes, readers checking them.

``python _attrs_race.py writer <store> <seconds>``: generation ``g`` sets the root's and the
array ``x``'s attributes to ``gen=g, a=g, b=[g, g], k<g>=g`` with one ``update`` and then
deletes ``k<g-1>`` (so keys come and go, which a torn read shows as a KeyError).  Every state
a write leaves satisfies :func:`consistent`; a mix of two states does not.  Writes are not fsynced
(``sync=False``) so that they come as fast as they can.  Prints ``{"writes": n}``.

``python _attrs_race.py reader <store> <seconds>``: until the deadline, reads both attrs every
way -- ``dict(attrs)``, ``{**attrs}``, ``dict(attrs.items())``, ``attrs.values()``,
``attrs.keys()``, ``asdict()``, iteration, ``len``, ``in``, ``get`` -- through a long-lived
handle and a fresh one, and checks each result alone.  Prints
``{"reads": n, "problems": [...]}``.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

warnings.simplefilter("ignore")

import npydir  # noqa: E402


def consistent(d: dict) -> str | None:
    """None if ``d`` is one state the writer leaves, else what is wrong with it."""
    try:
        g = d["gen"]
        if d["a"] != g or d["b"] != [g, g]:
            return f"values of mixed generations {d}"
        ks = {k for k in d if k.startswith("k")}
        if f"k{g}" not in ks or not ks <= {f"k{g - 1}", f"k{g}"}:
            return f"keys of mixed generations {sorted(d)} for gen {g}"
        if any(d[k] != int(k[1:]) for k in ks):
            return f"k-values of mixed generations {d}"
        if set(d) - ks != {"gen", "a", "b"}:
            return f"unexpected keys {sorted(d)}"
    except KeyError as exc:
        return f"missing key {exc} in {d}"
    return None


def writer(store: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    writes = 0
    with npydir.open(store, "a", sync=False) as root:
        x = root["x"]
        g = root.attrs["gen"]
        while time.monotonic() < deadline:
            g += 1
            for attrs in (root.attrs, x.attrs):
                attrs.update({"gen": g, "a": g, "b": [g, g], f"k{g}": g})
                del attrs[f"k{g - 1}"]
                writes += 2
    print(json.dumps({"writes": writes}))


def _reads(attrs) -> dict[str, object]:
    """One read of ``attrs`` per way; each value is checked on its own."""
    out: dict[str, object] = {}
    out["dict"] = dict(attrs)
    out["unpack"] = {**attrs}
    out["items"] = dict(attrs.items())
    out["asdict"] = attrs.asdict()
    values = list(attrs.values())  # insertion order: gen, a, b, then the k keys
    out["values"] = {"gen": values[0], "a": values[1], "b": values[2],
                     **{f"k{v}": v for v in values[3:]}}
    keys = list(attrs.keys())
    out["keys"] = {k: 0 for k in keys}
    out["iter"] = {k: 0 for k in attrs}
    n = len(attrs)
    out["len"] = n
    out["contains"] = "gen" in attrs and "a" in attrs
    out["get"] = attrs.get("gen")
    return out


def _check_keys_only(keys: dict) -> str | None:
    ks = sorted(k for k in keys if k.startswith("k"))
    if set(keys) - set(ks) != {"gen", "a", "b"} or not 1 <= len(ks) <= 2:
        return f"key set {sorted(keys)}"
    nums = sorted(int(k[1:]) for k in ks)
    if len(nums) == 2 and nums[1] != nums[0] + 1:
        return f"key set {sorted(keys)}"
    return None


def reader(store: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    problems: list[str] = []
    reads = 0
    with npydir.open(store, "r") as root:
        kept = [root.attrs, root["x"].attrs]
        while time.monotonic() < deadline and len(problems) < 50:
            for attrs in kept + [root.attrs, root["x"].attrs]:
                try:
                    got = _reads(attrs)
                except Exception as exc:  # noqa: BLE001 - a KeyError here is the bug
                    problems.append(f"{type(exc).__name__}: {exc}")
                    continue
                reads += len(got)
                for way in ("dict", "unpack", "items", "asdict", "values"):
                    bad = consistent(got[way])
                    if bad:
                        problems.append(f"{way}: {bad}")
                for way in ("keys", "iter"):
                    bad = _check_keys_only(got[way])
                    if bad:
                        problems.append(f"{way}: {bad}")
                if got["len"] not in (4, 5) or not got["contains"] or type(got["get"]) is not int:
                    problems.append(f"len/in/get: {got['len']} {got['contains']} {got['get']}")
    print(json.dumps({"reads": reads, "problems": problems}))


if __name__ == "__main__":
    role, path, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
    {"writer": writer, "reader": reader}[role](path, secs)
