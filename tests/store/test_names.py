"""Name and key rules (docs/design.md, section 2)."""

from __future__ import annotations

import pytest

from npydir.errors import InvalidNameError, PathEscapeError
from npydir.store.names import check_sibling_case, split_key, validate_name


@pytest.mark.parametrize(
    "name", ["x", "train", "y_pulse", "a.b", "ünïcödé", "x" * 244, "CONSOLE", "a b"]
)
def test_valid_names(name):
    assert validate_name(name) == name
    assert validate_name(name, array=True) == name


@pytest.mark.parametrize(
    "name, rule",
    [
        ("", "empty"),
        (".", "'.' and '..'"),
        ("..", "'.' and '..'"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a\x7f", "control"),
        (".hidden", "starts with '.'"),
        ("x.npy", "'.npy' or '.json'"),
        ("x.NPY", "'.npy' or '.json'"),
        ("x.json", "'.npy' or '.json'"),
        ("attrs", "reserved"),
        ("x" * 256, "longer than 255"),
        ("é" * 128, "longer than 255"),
        ("\ud800", "UTF-8"),
    ],
)
def test_invalid_names_name_the_rule(name, rule):
    with pytest.raises(InvalidNameError, match="invalid name") as info:
        validate_name(name, portable=False)
    assert rule in str(info.value)


@pytest.mark.parametrize(
    "name",
    [
        "a<b",
        "a>b",
        "a:b",
        'a"b',
        "a|b",
        "a?b",
        "a*b",
        "CON",
        "nul",
        "com1",
        "LPT9.txt",
        "aux.x",
        "trailing.",
        "trailing ",
    ],
)
def test_portable_rules(name):
    with pytest.raises(InvalidNameError, match="portable=False"):
        validate_name(name)
    assert validate_name(name, portable=False) == name


def test_array_names_leave_room_for_the_attrs_file():
    validate_name("x" * 255)  # a group name may use all 255 bytes
    with pytest.raises(InvalidNameError, match="attrs file"):
        validate_name("x" * 245, array=True)


def test_non_str_names():
    with pytest.raises(InvalidNameError, match="str"):
        validate_name(3)


@pytest.mark.parametrize(
    "key, parts, absolute",
    [
        ("a", ("a",), False),
        ("a/b/c", ("a", "b", "c"), False),
        ("/a/b", ("a", "b"), True),
        ("a//b/", ("a", "b"), False),
        ("./a/./b", ("a", "b"), False),
        ("/", (), True),
        (b"a/b", ("a", "b"), False),
    ],
)
def test_split_key(key, parts, absolute):
    assert split_key(key) == (parts, absolute)


@pytest.mark.parametrize("key", ["..", "a/..", "a/../b", "../../etc/passwd", "/.."])
def test_dotdot_is_an_escape(key):
    with pytest.raises(PathEscapeError, match=r"'\.\.'"):
        split_key(key)


def test_split_key_refuses_non_str():
    with pytest.raises(InvalidNameError):
        split_key(1.5)


def test_sibling_case_clash(tmp_path):
    check_sibling_case(tmp_path, "Train", ["val", "Train"])
    with pytest.raises(InvalidNameError, match="differs only in case"):
        check_sibling_case(tmp_path, "Train", ["train", "val"])
    with pytest.raises(InvalidNameError, match="normalization"):
        check_sibling_case(tmp_path, "caf\u00e9", ["cafe\u0301"])  # precomposed vs decomposed


@pytest.mark.parametrize(
    "name",
    ["CON", "con", "Nul.txt", "aux.tar.gz", "COM1", "lpt9.dat", "CONIN$", "conout$.log",
     "COM¹", "LPT³.x", "PRN .txt", "NUL "],
)
def test_windows_device_names(name):
    """One rule for device names (store.names.is_device_name): the store refuses them with
    portable=True, and conversions escape what it refuses."""
    from npydir.store.names import is_device_name

    assert is_device_name(name)
    with pytest.raises(InvalidNameError):
        validate_name(name)
    assert validate_name(name, portable=False) == name


@pytest.mark.parametrize("name", ["CONSOLE", "COM10", "LPT0x", "com", "xCON", "CON_x", "NULL"])
def test_names_that_only_look_like_devices(name):
    from npydir.store.names import is_device_name

    assert not is_device_name(name)
    assert validate_name(name) == name


def test_device_names_are_the_union_of_both_former_lists():
    """The store's list and the conversion's former copy disagreed: the rule is their union."""
    from npydir.store.names import DEVICE_NAMES

    former_conversion = {"CON", "PRN", "AUX", "NUL"} | {
        f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)
    }
    assert former_conversion < DEVICE_NAMES
    assert {"CONIN$", "CONOUT$", "COM¹", "COM²", "COM³", "LPT¹", "LPT²", "LPT³"} < DEVICE_NAMES
