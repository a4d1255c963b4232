"""Seeds, mutations and hypothesis strategies for the fuzz targets (child processes only).

Inputs come in three flavours per target: mutations of valid files (bytes flipped, inserted,
deleted, truncated), files generated from the format's grammar with hostile values in every
field, and raw bytes.  The pickle inputs also include programs built from pickle opcodes that
name dangerous callables, and ``__reduce__`` gadgets that would create a sentinel file if
anything ever ran them.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from numpy.lib import format as npformat

from npydir import attrs as nattrs
from npydir import npyfile

# ============================================================================ mutations

MUTATION = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=8)),
    min_size=1,
    max_size=6,
)


def random_mutant(data: bytes, rnd) -> bytes:
    """A cheap byte-level mutant of ``data`` drawn with ``rnd`` (a seeded random.Random)."""
    ops = [
        (
            rnd.randrange(6),
            rnd.randrange(1 << 20),
            bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8))),
        )
        for _ in range(rnd.randint(1, 4))
    ]
    return mutate(data, ops)


def random_name_mutant(key: str, rnd) -> str:
    """A mutant of a key: characters replaced, inserted or deleted, separators and dots added."""
    chars = list(key)
    for _ in range(rnd.randint(1, 3)):
        i = rnd.randint(0, len(chars))
        c = rnd.choice(
            [
                "/",
                ".",
                "..",
                "\\",
                ":",
                " ",
                "\x00",
                "é",
                "K",
                "\u212a",
                "\ud800",
                "a",
                "escape/",
                chr(rnd.randrange(0x20, 0x3000)),
            ]
        )
        k = rnd.randrange(3)
        if k == 0 and chars:
            chars[min(i, len(chars) - 1)] = c
        elif k == 1:
            chars.insert(i, c)
        elif chars:
            del chars[min(i, len(chars) - 1)]
    return "".join(chars)


def mutate(seed: bytes, ops) -> bytes:
    b = bytearray(seed)
    for kind, pos, blob in ops:
        n = len(b)
        i = pos % (n + 1)
        if kind == 0 and n:  # overwrite
            b[i % n : i % n + len(blob)] = blob
        elif kind == 1:  # insert
            b[i:i] = blob
        elif kind == 2:  # delete
            del b[i : i + len(blob)]
        elif kind == 3:  # truncate
            del b[i:]
        elif kind == 4 and n:  # flip one bit
            b[i % n] ^= 1 << (blob[0] % 8)
        elif kind == 5 and n:  # interesting value (lengths, counts, signs)
            v = [0, 0xFF, 0x7F, 0x80, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF][blob[0] % 7]
            b[i % n : i % n + 4] = struct.pack("<I", v)
    return bytes(b)


# ============================================================================ .npy


def _npy_bytes(arr: np.ndarray, *, own: bool = True, version=None) -> bytes:
    if own:
        header = npyfile.build_header(
            arr.shape,
            arr.dtype,
            arr.flags.f_contiguous and not arr.flags.c_contiguous,
            version=version,
        )
        order = "F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"
        return header + arr.tobytes(order=order)
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def npy_seeds() -> list[bytes]:
    arrs = [
        np.arange(12, dtype="<f4").reshape(4, 3),
        np.arange(5, dtype=">i8"),
        np.zeros((0, 3), "<i2"),
        np.array(3.5),
        np.asfortranarray(np.arange(6, dtype="u1").reshape(2, 3)),
        np.array([b"ab", b"c"], "S2"),
        np.array(["x", "yz"], "<U2"),
        np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8", (2,))]),
        np.zeros(3, dtype="V0"),
        np.array(["2020-01-01"], "M8[D]"),
        np.zeros((2, 2), "<c16"),
        np.zeros(3, "?"),
    ]
    seeds = [_npy_bytes(a) for a in arrs] + [_npy_bytes(a, own=False) for a in arrs[:6]]
    seeds.append(_npy_bytes(np.arange(4, dtype="<i4"), version=(2, 0)))
    seeds.append(_npy_bytes(np.zeros(2, dtype=[("é", "<i4")])))  # format 3.0 (utf8 names)
    return seeds


DESCRS = [
    "<f4",
    ">f8",
    "|u1",
    "<i8",
    "|b1",
    "<U3",
    "|S0",
    "|V0",
    "|O",
    "<M8[ns]",
    "<m8",
    "<c8",
    "<f2",
    "<i4",
    "|V8",
    "<U0",
    "<f16",
    "xx",
    "",
    "<q",
    "(2,)<i4",
    "V100000000000",
    [("a", "<i4")],
    [("a", "|O")],
    [("", "<i4")],
    [("a", "<i4", (2, 3))],
    [("a", "<i4"), ("a", "<f8")],
    [("a",)],
    [["a", "<i4"]],
    5,
    None,
    {"a": 1},
    [("a", [("b", "<i8")])],
    [(("t", "a"), "<i4")],
]
DIMS = st.one_of(
    st.integers(0, 6), st.integers(-3, 10**20), st.sampled_from([0, 1, 2**31, 2**63, 2**64 + 1])
)
SHAPES = st.one_of(
    st.lists(DIMS, max_size=4).map(tuple),
    st.sampled_from(["()", "(3)", "[2, 2]", "(True,)", "(1.5,)", "'x'", "(-1,)"]),
)


@st.composite
def npy_generated(draw) -> bytes:
    descr = draw(st.one_of(st.sampled_from(DESCRS), st.text(max_size=12)))
    fortran = draw(st.sampled_from([False, True, 0, 1, "x", None]))
    shape = draw(SHAPES)
    keys = ["descr", "fortran_order", "shape"]
    if draw(st.booleans()):
        keys = draw(st.permutations(keys + ["extra"]))[: draw(st.integers(1, 4))]
    vals = {
        "descr": repr(descr),
        "fortran_order": repr(fortran),
        "shape": shape if isinstance(shape, str) else repr(shape),
        "extra": "1",
    }
    text = "{" + ", ".join(f"'{k}': {vals[k]}" for k in keys) + ", }"
    if draw(st.booleans()):
        text = draw(
            st.sampled_from(
                [
                    "",
                    "{",
                    "[1, 2]",
                    "{'descr': '<f4'",
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}#",
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\x00",
                    "{'descr': '<f4', 'fortran_order': False, 'shape': "
                    + "(" * 300
                    + ")" * 300
                    + "}",
                    "__import__('os').system('true')",
                    "{1: 2}",
                ]
            )
        )
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (0, 0), (4, 1), (1, 255)]))
    body = text.encode("utf8", "surrogatepass")
    body += b" " * draw(st.integers(0, 80)) + draw(st.sampled_from([b"\n", b"", b"\r\n", b"\x00"]))
    hlen = len(body) + draw(st.sampled_from([0, 0, 0, -1, 1, 5, -5, 1 << 20, 1 << 16]))
    hlen = max(0, hlen)
    if version == (1, 0):
        prefix = npformat.magic(1, 0) + struct.pack("<H", hlen & 0xFFFF)
    else:
        prefix = bytes([0x93]) + b"NUMPY" + bytes(version) + struct.pack("<I", hlen & 0xFFFFFFFF)
    data = draw(
        st.one_of(
            st.binary(max_size=64),
            st.integers(0, 4096).map(lambda n: bytes(n % 251 for n in range(n))),
        )
    )
    return prefix + body + data


def npy_strategy():
    seeds = npy_seeds()
    return st.one_of(
        st.tuples(st.sampled_from(seeds), MUTATION).map(lambda t: mutate(*t)),
        npy_generated(),
        st.binary(max_size=300).map(lambda b: b"\x93NUMPY" + b),
        st.binary(max_size=64),
    )


# ============================================================================ attrs.json

TAGS = ["float", "complex", "bytes", "dict", "ndarray", "scalar", "other", 5, None]
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from(["nan", "inf", "-inf", "\ud800", "<f8", "O", "|V0", "<U2000000000"]),
)
JSON_ANY = st.recursive(
    JSON_LEAF,
    lambda c: st.one_of(
        st.lists(c, max_size=4), st.dictionaries(st.text(max_size=6), c, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def tagged(draw):
    tag = draw(st.sampled_from(TAGS))
    obj = {nattrs.TAG: tag}
    for k in draw(
        st.lists(
            st.sampled_from(["value", "real", "imag", "base64", "items", "dtype", "shape", "data"]),
            max_size=5,
            unique=True,
        )
    ):
        if k == "dtype":
            obj[k] = draw(
                st.one_of(st.sampled_from([d for d in DESCRS if not isinstance(d, dict)]), JSON_ANY)
            )
        elif k == "shape":
            obj[k] = draw(st.one_of(st.lists(st.integers(-2, 5), max_size=3), JSON_ANY))
        elif k == "base64":
            obj[k] = draw(
                st.one_of(st.sampled_from(["", "AAAA", "AAA=", "!!", "AAAAAAAAAAAAAAAA"]), JSON_ANY)
            )
        else:
            obj[k] = draw(JSON_ANY)
    return obj


ATTR_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**64), 2**64),
        st.floats(),
        st.text(max_size=8),
        st.binary(max_size=8),
        st.complex_numbers(),
        st.sampled_from(
            [
                np.float32(1.5),
                np.int16(-3),
                np.arange(6).reshape(2, 3),
                np.array(["a", "bc"]),
                np.zeros(2, dtype=[("a", "<i4")]),
                np.array([np.nan, np.inf]),
                np.bytes_(b"x"),
                np.array([1 + 2j]),
                np.datetime64("2020-01-01"),
            ]
        ),
    ),
    lambda c: st.one_of(
        st.lists(c, max_size=3), st.dictionaries(st.text(max_size=5), c, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def attrs_generated(draw) -> bytes:
    d = draw(st.dictionaries(st.text(max_size=6), st.one_of(JSON_ANY, tagged()), max_size=4))
    return json.dumps(d, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


@st.composite
def attrs_encoded(draw) -> bytes:
    try:
        text = nattrs.encode_attrs(
            draw(st.dictionaries(st.text(max_size=6), ATTR_VALUES, max_size=4))
        )
    except Exception:
        text = "{}"
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = mutate(data, draw(MUTATION))
    return data


def attrs_strategy():
    return st.one_of(
        attrs_encoded(),
        attrs_generated(),
        st.sampled_from(
            [
                b"[" * 100_000,
                b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}",
                b"NaN",
                b'{"a": NaN}',
                b'{"a": Infinity}',
                b"\xef\xbb\xbf{}",
                b"{}" * 2,
                b'{"a":1,"a":2}',
            ]
        ),
        st.binary(max_size=200),
        st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


# ============================================================================ attrs.npy pickles


class Gadget:
    """Pickles to ``callable(*args)``: what a malicious attrs.npy holds."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _wrap_object(payload_pickle: bytes) -> bytes:
    """An .npy file of a 0-d object array whose pickle is ``payload_pickle`` (as np.save writes)."""
    return npyfile.build_header((), np.dtype(object)) + payload_pickle


def das_attrs_pickles() -> list[bytes]:
    """Valid DAS attrs.npy files, as DAS's np.save writes them, several pickle protocols."""
    attrs = {
        "samplerate_x_Hz": 10000,
        "samplerate_y_Hz": 10000.0,
        "class_names": ["noise", "pulse", "sine"],
        "class_types": ["segment", "event", "segment"],
        "filename_train": np.array(["a.wav", "b.wav"]),
        "filename_startsample_train": np.array([0, 1000]),
        "nested": {"x": [1, 2.5, (3, "s")]},
        "c": 1 + 2j,
        "b": b"bytes",
        "none": None,
        "f32": np.float32(0.5),
        "odict_keys": "z",
    }
    out = []
    for proto in (2, 3, 4):  # what np.save has used across numpy versions (5 is not DAS's)
        payload = np.empty((), dtype=object)
        payload[()] = attrs
        out.append(_wrap_object(pickle.dumps(payload, protocol=proto)))
    buf = io.BytesIO()
    payload = np.empty((), dtype=object)
    payload[()] = {"a": 1}
    np.save(buf, payload, allow_pickle=True)
    out.append(buf.getvalue())
    return out


def malicious_pickles(sentinel_dir: Path) -> list[tuple[str, bytes]]:
    """(label, attrs.npy bytes) whose unpickling would create a file in ``sentinel_dir``."""
    import builtins
    import os
    import subprocess

    s = str(sentinel_dir)
    gadgets = {
        "os.system": Gadget(os.system, (f"touch {s}/os_system",)),
        "subprocess.call": Gadget(subprocess.call, (["touch", f"{s}/subprocess_call"],)),
        "subprocess.Popen": Gadget(subprocess.Popen, (["touch", f"{s}/popen"],)),
        "subprocess.check_output": Gadget(
            subprocess.check_output, (["touch", f"{s}/check_output"],)
        ),
        "builtins.eval": Gadget(builtins.eval, (f"open({s + '/eval'!r}, 'w')",)),
        "builtins.exec": Gadget(builtins.exec, (f"open({s + '/exec'!r}, 'w').write('x')",)),
        "builtins.open": Gadget(builtins.open, (f"{s}/open", "w")),
        "builtins.__import__": Gadget(builtins.__import__, ("antigravity",)),
        "os.mkdir": Gadget(os.mkdir, (f"{s}/mkdir",)),
        "numpy.save": Gadget(np.save, (f"{s}/np_save.npy", np.zeros(1))),
        "numpy.savetxt": Gadget(np.savetxt, (f"{s}/np_savetxt.txt", np.zeros(1))),
        "numpy.memmap": Gadget(np.memmap, (f"{s}/np_memmap", "u1", "w+", 0, (1,))),
        "numpy.fromfile": Gadget(np.fromfile, ("/etc/passwd", "u1")),
        "numpy.lib.format.open_memmap": Gadget(
            npformat.open_memmap, (f"{s}/open_memmap.npy", "w+", "u1", (1,))
        ),
        "numpy.ctypeslib.load_library": Gadget(
            np.ctypeslib.load_library, ("libc", "/lib/x86_64-linux-gnu")
        ),
        "numpy.testing.runstring": Gadget(
            np.testing._private.utils.runstring, (f"open({s + '/runstring'!r}, 'w')", {})
        ),
    }
    out = []
    for label, g in gadgets.items():
        for proto in (0, 2, 4, 5):
            try:
                inner = pickle.dumps({"samplerate_x_Hz": 1, "evil": g}, protocol=proto)
                whole = pickle.dumps(_obj_array({"evil": g}), protocol=proto)
            except Exception:  # pragma: no cover - unpicklable on this platform
                continue
            out.append((f"{label} (dict, protocol {proto})", _wrap_object(inner)))
            out.append((f"{label} (np.save layout, protocol {proto})", _wrap_object(whole)))
    # nested gadgets: the evil call as an argument of an allowed one
    nested = Gadget(np.ndarray, ((1,), Gadget(os.system, (f"touch {s}/nested",))))
    out.append(
        (
            "os.system as an argument of numpy.ndarray",
            _wrap_object(pickle.dumps({"a": nested}, protocol=2)),
        )
    )
    # object arrays holding gadgets
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = 1, Gadget(os.system, (f"touch {s}/objarray",))
    out.append(
        ("gadget inside an object array", _wrap_object(pickle.dumps({"a": arr}, protocol=2)))
    )
    return out


def _obj_array(d):
    payload = np.empty((), dtype=object)
    payload[()] = d
    return payload


DANGEROUS_GLOBALS = [
    ("os", "system"),
    ("posix", "system"),
    ("subprocess", "Popen"),
    ("subprocess", "call"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    ("builtins", "open"),
    ("__builtin__", "eval"),
    ("io", "open"),
    ("pickle", "loads"),
    ("numpy", "load"),
    ("numpy", "memmap"),
    ("numpy.testing._private.utils", "runstring"),
    ("ctypes", "CDLL"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
    ("numpy.dtypes", "ObjectDType"),
    ("numpy.dtypes", "StringDType"),
    ("numpy", "frombuffer"),
]
ALLOWED_GLOBALS = [
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "complex"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
    ("numpy.dtypes", "Float64DType"),
]


def _str_op(s: str) -> bytes:
    b = s.encode("utf-8")
    return b"\x8c" + bytes([len(b)]) + b  # SHORT_BINUNICODE


@st.composite
def pickle_program(draw, sentinel: str) -> bytes:
    """A random protocol-4 opcode sequence naming dangerous and allowed globals."""
    ops = [b"\x80\x04"]
    strings = [
        f"touch {sentinel}/program",
        f"open({sentinel + '/prog'!r}, 'w')",
        "O",
        "<f8",
        "|O",
        "b",
        "i4",
        "samplerate_x_Hz",
        "",
    ]
    for _ in range(draw(st.integers(1, 30))):
        k = draw(st.integers(0, 21))
        if k == 0:
            mod, name = draw(st.sampled_from(DANGEROUS_GLOBALS + ALLOWED_GLOBALS))
            ops.append(b"c" + mod.encode() + b"\n" + name.encode() + b"\n")  # GLOBAL
        elif k == 1:
            mod, name = draw(st.sampled_from(DANGEROUS_GLOBALS + ALLOWED_GLOBALS))
            ops.append(_str_op(mod) + _str_op(name) + b"\x93")  # STACK_GLOBAL
        elif k == 2:
            ops.append(_str_op(draw(st.sampled_from(strings))))
        elif k == 3:
            ops.append(b"J" + struct.pack("<i", draw(st.integers(-(2**31), 2**31 - 1))))  # BININT
        elif k == 4:
            ops.append(b"G" + struct.pack(">d", draw(st.floats())))
        elif k == 5:
            ops.append(
                b"C"
                + bytes([n := draw(st.integers(0, 16))])
                + draw(st.binary(min_size=n, max_size=n))
            )
        else:
            ops.append(
                draw(
                    st.sampled_from(
                        [
                            b"(",
                            b"t",
                            b")",
                            b"\x85",
                            b"\x86",
                            b"\x87",
                            b"]",
                            b"}",
                            b"a",
                            b"e",
                            b"s",
                            b"u",
                            b"R",
                            b"b",
                            b"\x81",
                            b"\x92",
                            b"2",
                            b"0",
                            b"\x94",
                            b"N",
                            b"\x88",
                            b"h\x00",
                            b"h\x01",
                            b"\x82\x01",
                            b"Q",
                            b"P1\n",
                            b"i__main__\nX\n",
                            b"o",
                            b"\x95" + struct.pack("<Q", 1 << 40),
                            b"B\xff\xff\xff\x7f",
                        ]
                    )
                )
            )
    if draw(st.booleans()):
        ops.append(b"\x85")  # tuple it and wrap as DAS would: dict
    ops.append(b".")
    return _wrap_object(b"".join(ops))


def pickle_strategy(sentinel_dir: Path):
    seeds = das_attrs_pickles()
    evil = [b for _, b in malicious_pickles(sentinel_dir)]
    return st.one_of(
        st.tuples(st.sampled_from(seeds + evil), MUTATION).map(lambda t: mutate(*t)),
        st.sampled_from(seeds + evil),
        pickle_program(str(sentinel_dir)),
        st.binary(max_size=200).map(lambda b: _wrap_object(b"\x80\x02" + b)),
        st.binary(max_size=100),
    )


# ============================================================================ annotation CSVs

CELL = st.one_of(
    st.sampled_from(
        [
            "",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "1e308",
            "1e309",
            "-0.0",
            "0x10",
            "1_000",
            "1.5",
            "2",
            "  3 ",
            "+.5",
            "nan(1)",
            "∞",
            "١٢",
            "1e-400",
            "pulse",
            "sine",
            " ",
            '"',
            "\x00",
            "\r",
            "a,b",
        ]
    ),
    st.floats().map(repr),
    st.text(max_size=8),
)


@st.composite
def csv_generated(draw) -> bytes:
    header = ["name", "start_seconds", "stop_seconds"]
    if draw(st.booleans()):
        header = draw(
            st.permutations(header + draw(st.sampled_from([[], ["Unnamed: 0"], [""], ["name"]])))
        )
    if draw(st.integers(0, 9)) == 0:
        header = header[: draw(st.integers(0, len(header)))]
    rows = [header]
    for _ in range(draw(st.integers(0, 8))):
        n = len(header) + draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
        rows.append([draw(CELL) for _ in range(max(0, n))])
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    quote_all = draw(st.booleans())

    def field(c: str) -> str:
        if quote_all or any(ch in c for ch in ',"\r\n'):
            return '"' + c.replace('"', '""') + '"'
        return c

    text = eol.join(",".join(field(c) for c in r) for r in rows) + draw(st.sampled_from(["", eol]))
    enc = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    return text.encode(enc, "replace")


def annotation_seed() -> bytes:
    return (
        b"name,start_seconds,stop_seconds\npulse,0.1,0.1\nsine,0.5,1.25\npulse,1.5,1.5\n"
        b"sine_type,,0\npulse_type,,\n"
    )


def annotations_strategy():
    seed = annotation_seed()
    return st.one_of(
        csv_generated(),
        st.tuples(st.just(seed), MUTATION).map(lambda t: mutate(*t)),
        st.binary(max_size=200),
        st.sampled_from(
            [
                b"",
                b"\xef\xbb\xbf",
                b"name,start_seconds,stop_seconds\n" + b"x" * 200_000 + b",1,2\n",
                b'name,start_seconds,stop_seconds\n"unterminated,1,2\n',
                b"\x00" * 10,
            ]
        ),
    )


# ============================================================================ DAS audio


def audio_seeds() -> list[tuple[str, bytes]]:
    import tempfile
    from pathlib import Path

    from npydir.das import save_audio

    rng = np.random.default_rng(0)
    out = []
    with tempfile.TemporaryDirectory() as d:
        for suffix, dtype in (("npz", "f4"), ("npz", "i2"), ("wav", "f4"), ("wav", "i2")):
            x = rng.standard_normal((200, 2)) * 0.1
            x = (x * 30000).astype(dtype) if dtype == "i2" else x.astype(dtype)
            p = Path(d) / f"a.{suffix}"
            save_audio(p, x, 10_000)
            out.append((suffix, p.read_bytes()))
    return out


def audio_strategy():
    seeds = audio_seeds()
    return st.one_of(
        st.tuples(st.sampled_from(seeds), MUTATION).map(lambda t: (t[0][0], mutate(t[0][1], t[1]))),
        st.tuples(st.sampled_from(["npz", "wav"]), st.binary(max_size=200)),
    )


# ============================================================================ names

NAME_CHARS = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(list('/\\.:<>"|?*\x00\x01\x7f é\u0130\u212a\ufeff\u200b')),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
)
SPECIAL_KEYS = [
    "",
    ".",
    "..",
    "/",
    "//",
    "a/..",
    "../x",
    "/../x",
    "a/./b",
    "attrs",
    "x.npy",
    "x.json",
    "X.NPY",
    "CON",
    "con.txt",
    "COM1",
    "LPT¹",
    "nul ",
    "a.",
    "a ",
    ".hidden",
    "escape",
    "escape/x",
    "escape/../x",
    "x",
    "X",
    "x/y",
    "a" * 255,
    "a" * 256,
    "é" * 128,
    "a" * 244,
    "a" * 245,
    "\ud800",
    "a\x00b",
    "/".join(["d"] * 300),
    "/".join(["n" * 200] * 25),
    "\u212a",
    "K",
    "\u0130",
]


def names_strategy():
    key = st.one_of(
        st.sampled_from(SPECIAL_KEYS),
        st.text(NAME_CHARS, max_size=20),
        st.lists(
            st.one_of(
                st.text(NAME_CHARS, max_size=6), st.sampled_from(["..", ".", "", "escape", "x"])
            ),
            min_size=1,
            max_size=5,
        ).map("/".join),
        st.tuples(
            st.sampled_from(["", "/", "escape/", "a/../", "./"]),
            st.text(NAME_CHARS, min_size=1, max_size=8),
        ).map("".join),
    )
    return st.tuples(key, st.booleans())
