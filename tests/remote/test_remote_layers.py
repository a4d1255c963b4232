"""The store and the kernel know nothing above them: npydir.open sends URLs to remote, and
gather_windows asks an array that is not in memory to gather its own windows."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import npydir
from npydir.kernel.windows import gather_windows
from npydir.remote import RemoteArray, _open

PACKAGE = Path(npydir.__file__).parent
#: what each lower layer may import from npydir
ALLOWED = {
    "store": {"errors", "_optional", "store"},
    "kernel": {"errors", "_optional", "kernel"},
    "remote": {"errors", "_optional", "store", "kernel", "remote"},
}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(npydir subpackage imported, inside a function body?) of every import in ``path``."""
    tree = ast.parse(path.read_text())
    in_function = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for sub in ast.walk(node)
        if sub is not node
    }
    typing_only = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    layer = path.relative_to(PACKAGE).parts[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:  # "." is the own layer
            target = layer if node.level == 1 else (node.module or "").split(".")[0]
            out.append((target, id(node) in in_function))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("npydir"):
            out.append(((node.module.split(".") + [""])[1], id(node) in in_function))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("npydir"):
                    out.append(((alias.name.split(".") + [""])[1], id(node) in in_function))
    return out


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_lower_layers_import_nothing_above_them_and_nothing_in_functions(layer):
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for target, deferred in _imports(path):
            if target not in ALLOWED[layer] or deferred:
                bad.append(f"{path.relative_to(PACKAGE)}: {target}"
                           + (" (in a function)" if deferred else ""))
    assert not bad


def test_npydir_open_is_the_dispatcher_and_the_store_open_is_local():
    assert npydir.open is _open.open
    assert npydir.Group is npydir.store.group.Group and npydir.Array is npydir.store.array.Array


def test_gather_windows_asks_an_array_that_gathers_its_own_windows():
    calls = []

    class Elsewhere:
        def _npydir_gather_windows(self, starts, window, **options):
            calls.append((list(starts), window, options))
            return np.zeros((len(starts), window, 1), "f4")

    out = gather_windows(Elsewhere(), [0, 5], 3, step=2, dtype="f4", pad="reflect")
    assert out.shape == (2, 3, 1)
    (starts, window, options), = calls
    assert starts == [0, 5] and window == 3
    assert options == {"step": 2, "out": None, "dtype": "f4", "scale": None, "pad": "reflect",
                       "threads": None}
    assert hasattr(RemoteArray, "_npydir_gather_windows")

