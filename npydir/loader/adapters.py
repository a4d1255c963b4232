"""What the framework adapters (:mod:`npydir.torch`, :mod:`npydir.keras`) share: building
their :class:`~npydir.Batches` from their own explicit parameters.

The adapters spell out Batches' parameters in their signatures (so IDEs and type checkers
show them) instead of taking ``**kwargs``; tests keep those signatures equal to Batches'.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from .batches import Batches

#: Batches' keyword parameters (window, batch_size, ...), in its order
BATCHES_KEYWORDS = tuple(
    name
    for name, p in inspect.signature(Batches).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
)


def _differs(value: Any, default: Any) -> bool:
    if value is default:
        return False
    if type(value) is type(default) and isinstance(value, (bool, int, float, str)):
        return value != default
    return True


def batches_for(owner: str, init: Any, x: Any, y: Any, arguments: Mapping[str, Any]) -> Batches:
    """``Batches(x, y, ...)`` from the Batches keywords in ``arguments`` (the adapter's
    ``locals()``), or ``x`` itself when it already is a Batches.

    Parameters
    ----------
    owner : str
        The adapter's name, for messages.
    init : callable
        The adapter's ``__init__``: its defaults tell which arguments were given when ``x``
        is a Batches (which takes no others).
    """
    names = [name for name in BATCHES_KEYWORDS if name in arguments]
    if isinstance(x, Batches):
        params = inspect.signature(init).parameters
        given = [name for name in names if _differs(arguments[name], params[name].default)]
        if y is not None:
            given.insert(0, "y")
        if given:
            raise TypeError(
                f"{owner}(batches) takes no other Batches arguments, got {', '.join(given)}"
            )
        return x
    if arguments.get("window") is None:
        raise TypeError(f"{owner}: window is required (or pass a ready npydir.Batches as x)")
    return Batches(x, y, **{name: arguments[name] for name in names})
