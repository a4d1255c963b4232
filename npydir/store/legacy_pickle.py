"""Read DAS's pickled ``attrs.npy`` without unpickling: a small interpreter of pickle opcodes.

A pickle is a program.  ``pickle.Unpickler`` runs it, and even with an allowlist of globals the
programs numpy's own restore functions accept are too many: ``ndarray.__setstate__`` fed a void
dtype flagged for list pickling hands out uninitialised memory (or crashes), a ``dtype`` restored
from a crafted state tuple crashes numpy.  So nothing here calls numpy's (or any) restore
function.  The opcodes are walked with :func:`pickletools.genops` (which only parses them) and
executed on a stack of plain values; the few globals a numpy pickle names are markers, and
arrays, scalars and dtypes are built from their parts once those parts are checked: a dtype of an
allowed kind (:mod:`npydir.store.attrs_dtype`), a shape, and data bytes whose length is exactly what
that dtype and shape take.  Pickles written by numpy 1.x and 2.x with protocols 0 to 4 (and
Python 2's) read exactly as ``np.load(allow_pickle=True)`` reads them.
"""

from __future__ import annotations

import io
import math
import pickletools
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from .attrs_dtype import DTypeRefused, check_dtype, nbytes, simple_dtype
from ..errors import FormatError, UnsafePickleError

__all__ = ["ObjectArray", "Pending", "load_plain"]


class _Global:
    """A global a numpy pickle names: a marker, never the real object."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<global {self.name}>"


_RECONSTRUCT = _Global("_reconstruct")
_SCALAR = _Global("scalar")
_NDARRAY = _Global("ndarray")
_DTYPE = _Global("dtype")
_COMPLEX = _Global("complex")
_ORDERED_DICT = _Global("OrderedDict")
_ENCODE = _Global("_codecs.encode")
_BYTES = _Global("bytes")

_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTYPE,
    ("builtins", "complex"): _COMPLEX,
    ("__builtin__", "complex"): _COMPLEX,
    ("collections", "OrderedDict"): _ORDERED_DICT,
    ("_codecs", "encode"): _ENCODE,  # how protocols 0-2 spell bytes
    ("builtins", "bytes"): _BYTES,  # ... and the empty bytes
    ("__builtin__", "bytes"): _BYTES,
}


class Pending:
    """An array or dtype announced by ``REDUCE`` whose state ``BUILD`` has not given yet."""

    def __init__(self, kind: str, arg: Any) -> None:
        self.kind = kind  # "array" or "dtype"
        self.arg = arg
        self.value: Any = None


class ObjectArray:
    """An object-dtype array: only the 0-d one around the whole dict (``np.save``) is used."""

    def __init__(self, shape: tuple[int, ...], items: list) -> None:
        self.shape = shape
        self.items = items


class _ObjectDType:
    pass


_OBJECT_DTYPE = _ObjectDType()
#: most elements of an array whose dtype takes 0 bytes (``"U0"``, ``"V0"``)
MAX_ZERO_WIDTH_ELEMENTS = 1 << 20
_LITTLE = sys.byteorder == "little"
_SWAPPED = ">" if _LITTLE else "<"


def _bad(name: str, what: str) -> FormatError:
    return FormatError(f"{name}: attrs.npy pickle is malformed: {what}")


def _data_bytes(value: Any, name: str, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # Python 2's str, read as latin-1 text
        try:
            return value.encode("latin1")
        except UnicodeEncodeError:
            raise _bad(name, f"{what} holds characters beyond latin-1") from None
    raise _bad(name, f"{what} must be bytes, found {type(value).__name__}")


def _int(value: Any, name: str, what: str) -> int:
    if type(value) is not int:
        raise _bad(name, f"{what} must be an int, found {value!r:.60}")
    return value


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > 64:
        raise _bad(name, f"an array shape must be a tuple of at most 64 sizes, found {value!r:.80}")
    for n in value:
        if type(n) is not int or n < 0:
            raise _bad(name, f"an array shape must hold sizes >= 0, found {value!r:.80}")
    return value


def _dtype_of(value: Any, name: str, *, allow_object: bool = False) -> Any:
    """The validated dtype a pickled ``numpy.dtype`` stands for."""
    if not isinstance(value, Pending) or value.kind != "dtype":
        raise _bad(name, f"expected a numpy dtype, found {type(value).__name__}")
    if value.value is None:  # REDUCE without BUILD: numpy's default state
        value.value = _build_dtype(value.arg, None, name)
    if value.value is _OBJECT_DTYPE and not allow_object:
        raise UnsafePickleError(f"{name}: object dtype is only allowed around the attrs dict")
    return value.value


def _build_dtype(arg: Any, state: Any, name: str) -> Any:
    """A dtype from ``numpy.dtype(arg, ...)`` and the tuple numpy pickles as its state."""
    if not isinstance(arg, str) or not arg or len(arg) > 32:
        raise _bad(name, f"dtype name must be a short string, found {arg!r:.60}")
    kind = arg[0]
    if kind == "O":
        return _OBJECT_DTYPE
    if state is None:
        state = (3, "|" if kind in "SVb" else "=", None, None, None, -1, -1, 0)
    if not isinstance(state, tuple) or len(state) not in (8, 9):
        raise _bad(name, f"dtype state must be a tuple of 8 or 9 items, found {state!r:.80}")
    _version, endian, subarray, names, fields, elsize, _alignment, flags = state[:8]
    if endian not in ("<", ">", "|", "="):
        raise _bad(name, f"dtype byte order {endian!r:.20}")
    elsize = _int(elsize, name, "dtype size")
    _int(flags, name, "dtype flags")
    try:
        if subarray is not None:
            if (
                not isinstance(subarray, tuple)
                or len(subarray) != 2
                or not isinstance(subarray[1], tuple)
            ):
                raise _bad(name, f"subarray must be (dtype, shape), found {subarray!r:.80}")
            base = _dtype_of(subarray[0], name)
            shape = _shape(subarray[1], name)
            if len(shape) > 32:
                raise _bad(name, "subarray of more than 32 dimensions")
            return check_dtype(np.dtype((base, shape)))
        if names is not None:
            return _build_struct(names, fields, elsize, name)
        if fields is not None:
            raise _bad(name, "dtype has fields but no names")
        if kind in "USV":
            if elsize < 0 or (kind == "U" and elsize % 4):
                raise _bad(name, f"dtype {arg!r} of {elsize} bytes")
            size = elsize // 4 if kind == "U" else elsize
            text = f"{endian if kind == 'U' else '|'}{kind}{size}"
        else:
            text = endian + arg
            if kind in "Mm" and len(state) == 9:
                text += _datetime_unit(state[8], name)
        return simple_dtype(text)
    except DTypeRefused as exc:
        raise _bad(name, str(exc)) from None


def _datetime_unit(meta: Any, name: str) -> str:
    """``"[10ms]"`` from the ``(metadata, (unit, num, 1, 1))`` numpy pickles for datetimes."""
    try:
        _metadata, (unit, num, _den, _events) = meta
    except (TypeError, ValueError):
        raise _bad(name, f"datetime state must be (metadata, (unit, n, 1, 1)), "
                         f"found {meta!r:.80}") from None
    unit = unit.decode("ascii", "replace") if isinstance(unit, bytes) else unit
    num = _int(num, name, "datetime unit count")
    if not isinstance(unit, str) or not unit.isalpha() or len(unit) > 3 or not 0 < num < 2**31:
        raise _bad(name, f"datetime unit {unit!r:.20} x {num}")
    return f"[{num if num != 1 else ''}{unit}]" if unit != "generic" else ""


def _build_struct(names: Any, fields: Any, elsize: int, name: str) -> np.dtype:
    if not isinstance(names, tuple) or not isinstance(fields, dict) or len(names) > len(fields):
        raise _bad(name, "structured dtype: names and fields do not match")
    spec: dict[str, Any] = {"names": [], "formats": [], "offsets": [], "titles": []}
    for field in names:
        if not isinstance(field, str) or field not in fields:
            raise _bad(name, f"structured dtype: field {field!r:.60} has no type")
        entry = fields[field]
        if not isinstance(entry, tuple) or len(entry) not in (2, 3):
            raise _bad(name, f"structured dtype: field {field!r:.60} is {entry!r:.80}")
        sub = _dtype_of(entry[0], name)
        offset = _int(entry[1], name, "field offset")
        if offset < 0 or offset + sub.itemsize > elsize:
            raise _bad(name, f"structured dtype: field {field!r:.60} at {offset} "
                             f"outside {elsize} bytes")
        title = entry[2] if len(entry) == 3 else None
        if title is not None and not isinstance(title, str):
            raise _bad(name, f"structured dtype: title {title!r:.60}")
        spec["names"].append(field)
        spec["formats"].append(sub)
        spec["offsets"].append(offset)
        spec["titles"].append(title)
    spec["itemsize"] = elsize
    try:
        # numpy's stubs take a TypedDict of the fields, which cannot be built up key by key
        return check_dtype(np.dtype(spec))  # type: ignore[call-overload]
    except DTypeRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - overlapping fields, duplicate titles, ...
        raise _bad(name, f"structured dtype does not build ({type(exc).__name__}: {exc})") from None


def _array(dtype: np.dtype, shape: tuple[int, ...], fortran: bool, data: bytes,
           name: str) -> np.ndarray:
    expected = nbytes(dtype, shape)
    if len(data) != expected:
        raise _bad(name, f"array {dtype.str} {shape} needs exactly {expected} data bytes, "
                         f"found {len(data)}")
    if dtype.itemsize == 0:
        # no data bytes bound the element count of a zero-width type: bound it here
        if math.prod(shape) > MAX_ZERO_WIDTH_ELEMENTS:
            raise _bad(name, f"array {dtype.str} {shape} of more than "
                             f"{MAX_ZERO_WIDTH_ELEMENTS} zero-width elements")
        out = np.zeros(shape, dtype=dtype)
    else:
        flat = np.frombuffer(data, dtype=dtype)
        out = flat.reshape(shape, order="F" if fortran else "C").copy(order="K")
    if dtype.byteorder == _SWAPPED:  # numpy swaps a plain non-native array to native on load
        out = out.astype(dtype.newbyteorder("="), order="K")
    return out


def _build_array(pending: Pending, state: Any, name: str) -> Any:
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise _bad(name, f"array state must be a tuple of 4 or 5 items, found {state!r:.80}")
    if len(state) == 5:
        _int(state[0], name, "array state version")
        state = state[1:]
    shape, dtype, fortran, data = state
    shape = _shape(shape, name)
    dtype = _dtype_of(dtype, name, allow_object=True)
    if type(fortran) not in (bool, int):
        raise _bad(name, f"array order flag {fortran!r:.40}")
    if dtype is _OBJECT_DTYPE:
        if not isinstance(data, list) or len(data) != math.prod(shape):
            raise _bad(name, f"object array {shape} with data {type(data).__name__}")
        return ObjectArray(shape, data)
    return _array(dtype, shape, bool(fortran), _data_bytes(data, name, "array data"), name)


def _reduce(func: Any, args: Any, name: str) -> Any:
    if not isinstance(args, tuple):
        raise _bad(name, f"call arguments must be a tuple, found {type(args).__name__}")
    if func is _RECONSTRUCT:
        if len(args) != 3 or args[0] is not _NDARRAY:
            raise _bad(name, "_reconstruct must rebuild numpy.ndarray")
        return Pending("array", None)
    if func is _DTYPE:
        if not 1 <= len(args) <= 3:
            raise _bad(name, "numpy.dtype takes (name, align, copy)")
        return Pending("dtype", args[0])
    if func is _SCALAR:
        if len(args) != 2:
            raise _bad(name, "numpy scalar takes (dtype, data)")
        dtype = _dtype_of(args[0], name)
        data = _data_bytes(args[1], name, "scalar data")
        if len(data) != dtype.itemsize:
            raise _bad(name, f"scalar {dtype.str} needs exactly {dtype.itemsize} bytes, "
                             f"found {len(data)}")
        if dtype.itemsize == 0:
            return dtype.type()
        return np.frombuffer(data, dtype=dtype).copy()[0]
    if func is _COMPLEX:
        if len(args) > 2 or not all(type(a) in (int, float) for a in args):
            raise _bad(name, f"complex of {args!r:.80}")
        return complex(*args)
    if func is _ORDERED_DICT:
        if args:
            raise _bad(name, "OrderedDict with arguments")
        return {}
    if func is _ENCODE:
        if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
            raise _bad(name, f"_codecs.encode of {args!r:.80}")
        return _data_bytes(args[0], name, "bytes")
    if func is _BYTES:
        if args:
            raise _bad(name, "bytes with arguments")
        return b""
    raise _bad(name, f"cannot call {func!r:.80}")


_PUSH_ARG = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
    "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING",
    "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
}  # fmt: skip
_NOT_ALLOWED = {
    "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID",
    "NEXT_BUFFER", "READONLY_BUFFER",
}  # fmt: skip


def _global(module: Any, qualname: Any, name: str) -> _Global:
    try:
        return _GLOBALS[(module, qualname)]
    except (KeyError, TypeError):
        raise UnsafePickleError(
            f"{name}: refusing to unpickle global {module}.{qualname}: legacy attrs.npy may only "
            "hold dicts, lists, tuples, strings, numbers and numeric/str numpy arrays"
        ) from None


def load_plain(data: bytes, name: str) -> Any:
    """Execute the pickle in ``data`` on plain values; return what its ``STOP`` leaves.

    Raises
    ------
    UnsafePickleError
        A global outside the allowlist, an opcode that constructs objects, a set.
    FormatError
        Anything malformed: the message says what was expected.
    """
    stack: list[Any] = []
    marks: list[list[Any]] = []
    memo: dict[int, Any] = {}
    announced: dict[int, list[int]] = {}  # id of a Pending array -> memo slots holding it

    def put(slot: int) -> None:
        if not stack:
            raise _bad(name, "stack underflow")
        memo[slot] = stack[-1]
        if isinstance(stack[-1], Pending):
            announced.setdefault(id(stack[-1]), []).append(slot)

    def pop_mark() -> list[Any]:
        nonlocal stack
        if not marks:
            raise _bad(name, "MARK missing")
        items, stack = stack, marks.pop()
        return items

    def pop() -> Any:
        if not stack:
            raise _bad(name, "stack underflow")
        return stack.pop()

    attrs: dict | None = None  # the first dict made: the attributes (to name them in errors)
    arg: Any  # its type depends on the opcode: an int for PUT/GET, a str for GLOBAL, ...
    try:
        for opcode, arg, pos in pickletools.genops(io.BytesIO(data)):
            op = opcode.name
            if op in _PUSH_ARG:
                stack.append(arg)
            elif op in ("PROTO", "FRAME"):
                pass
            elif op == "STOP":
                if len(stack) != 1 or marks:
                    raise _bad(name, "STOP with a stack that does not hold exactly one value")
                return stack[0]
            elif op == "MARK":
                marks.append(stack)
                stack = []
            elif op == "POP":
                pop()
            elif op == "POP_MARK":
                pop_mark()
            elif op == "DUP":
                stack.append(stack[-1] if stack else pop())
            elif op == "NONE":
                stack.append(None)
            elif op == "NEWTRUE":
                stack.append(True)
            elif op == "NEWFALSE":
                stack.append(False)
            elif op == "EMPTY_LIST":
                stack.append([])
            elif op == "EMPTY_DICT":
                stack.append({})
            elif op == "EMPTY_TUPLE":
                stack.append(())
            elif op in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(op[-1])
                if len(stack) < n:
                    raise _bad(name, "stack underflow")
                items: Sequence[Any] = tuple(stack[-n:])
                del stack[-n:]
                stack.append(items)
            elif op in ("TUPLE", "LIST"):
                items = pop_mark()  # first: it rebinds ``stack``
                stack.append(tuple(items) if op == "TUPLE" else items)
            elif op == "DICT":
                items = pop_mark()
                stack.append(_setitems({}, items, name))
            elif op == "APPEND":
                value = pop()
                _target(stack, list, name).append(value)
            elif op == "APPENDS":
                items = pop_mark()
                _target(stack, list, name).extend(items)
            elif op == "SETITEM":
                value, key = pop(), pop()
                _setitems(_target(stack, dict, name), [key, value], name)
            elif op == "SETITEMS":
                items = pop_mark()
                _setitems(_target(stack, dict, name), items, name)
            elif op in ("PUT", "BINPUT", "LONG_BINPUT"):
                put(arg)
            elif op == "MEMOIZE":
                put(len(memo))
            elif op in ("GET", "BINGET", "LONG_BINGET"):
                try:
                    stack.append(memo[arg])
                except KeyError:
                    raise _bad(name, f"memo slot {arg} read before it was stored") from None
            elif op == "GLOBAL":
                module, _, qualname = arg.partition(" ")
                stack.append(_global(module, qualname, name))
            elif op == "STACK_GLOBAL":
                qualname, module = pop(), pop()
                stack.append(_global(module, qualname, name))
            elif op == "REDUCE":
                args, func = pop(), pop()
                stack.append(_reduce(func, args, name))
            elif op == "BUILD":
                state = pop()
                target = _target(stack, Pending, name)
                if target.value is not None:
                    raise _bad(name, "BUILD applied twice")
                if target.kind == "dtype":
                    target.value = _build_dtype(target.arg, state, name)
                else:
                    target.value = _build_array(target, state, name)
                    stack[-1] = target.value  # the array replaces its announcement
                    for slot in announced.pop(id(target), ()):  # memoised right after REDUCE
                        if memo[slot] is target:
                            memo[slot] = target.value
            elif op in ("EMPTY_SET", "FROZENSET", "ADDITEMS"):
                raise UnsafePickleError(
                    f"{name}: a set in attrs.npy is not allowed (attributes hold dicts, lists, "
                    "tuples, strings, numbers and numpy arrays)"
                )
            elif op in _NOT_ALLOWED:
                if op in ("PERSID", "BINPERSID"):
                    raise UnsafePickleError(f"{name}: persistent ids are not allowed in attrs.npy")
                raise UnsafePickleError(
                    f"{name}: pickle opcode {op} (constructing objects) is not allowed in attrs.npy"
                )
            else:
                raise _bad(name, f"opcode {op} at byte {pos} is not allowed in attrs.npy")
            if attrs is None and stack and type(stack[-1]) is dict:
                attrs = stack[-1]
    except FormatError as exc:  # UnsafePickleError too
        key = _key_in_progress(attrs, [*marks, stack])
        prefix = f"{name}: "
        text = str(exc)
        if key is None or not text.startswith(prefix):
            raise
        raise type(exc)(f"{prefix}attribute {key[:100]!r}: {text[len(prefix):]}") from None
    raise _bad(name, "no STOP opcode")


def _key_in_progress(attrs: dict | None, levels: list[list[Any]]) -> str | None:
    """The attribute whose value was being built when the pickle was refused, if one shows.

    A dict's items follow it as key, value, key, ... -- on its own stack level (``SETITEM``) or
    on the level a ``MARK`` opened right after it (``SETITEMS``) -- and whatever builds the
    value in progress comes after its key, so the key is the last str at an even position.
    """
    if attrs is None:
        return None
    for i, level in enumerate(levels):
        for p in range(len(level) - 1, -1, -1):
            if level[p] is attrs:
                rest = level[p + 1 :] or (levels[i + 1] if i + 1 < len(levels) else [])
                for j in range(len(rest) - 1 - (len(rest) - 1) % 2, -1, -2):
                    if isinstance(rest[j], str):
                        return rest[j]
                return None
    return None


def _target(stack: list, kind: type, name: str) -> Any:
    if not stack or not isinstance(stack[-1], kind):
        found = type(stack[-1]).__name__ if stack else "nothing"
        what = "numpy array or dtype awaiting its state" if kind is Pending else kind.__name__
        raise _bad(name, f"expected a {what} on the stack, found {found}")
    return stack[-1]


def _setitems(target: dict, items: Sequence[Any], name: str) -> dict:
    if len(items) % 2:
        raise _bad(name, "odd number of dict items")
    for i in range(0, len(items), 2):
        try:
            target[items[i]] = items[i + 1]
        except TypeError:
            what = type(items[i]).__name__
            raise _bad(name, f"dict key of type {what} is not hashable") from None
    return target
