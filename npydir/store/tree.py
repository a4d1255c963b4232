"""Text trees (``├── ``/``└── ``) of groups and their members: the one drawing of a tree.

:meth:`npydir.Group.tree`, the remote groups' ``tree`` and the ``npydir tree``/``info`` commands
draw with :func:`draw`; what they walk (a store, an HDF5 file, a zarr group) and how they label
a member is theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["draw"]

N = TypeVar("N")

BRANCH, LAST = "├── ", "└── "
#: what the lines below a member start with: a bar while siblings follow, else blanks
PIPE, BLANK = "│   ", "    "


def draw(
    top: N,
    children: Callable[[N], Sequence[tuple[str, Any, bool]]],  # a child is an N when is_group
    label: Callable[[str, Any, bool], str],
    *,
    max_depth: int | None = None,
    notes: Callable[[N], Sequence[str]] | None = None,
) -> list[str]:
    """The lines of the tree below ``top`` (``top`` itself gets no line; the caller heads it).

    Parameters
    ----------
    top
        The group whose members are drawn.
    children : callable
        ``children(group)`` -> ``(name, member, is_group)`` in the order drawn; called only for
        ``top`` and the groups opened.
    label : callable
        ``label(name, member, is_group)`` -> the text of the member's line after its branch.
    max_depth : int or None
        Groups this deep (``top``'s members are depth 0) are drawn but not opened; ``None``
        opens every group.
    notes : callable, optional
        ``notes(member)`` -> lines drawn right under the member's line, indented as its own
        members are (the CLI's ``@attr = value`` lines).
    """
    lines: list[str] = []

    def walk(group: N, prefix: str, depth: int) -> None:
        entries = children(group)
        for i, (name, member, is_group) in enumerate(entries):
            last = i == len(entries) - 1
            lines.append(prefix + (LAST if last else BRANCH) + label(name, member, is_group))
            inner = prefix + (BLANK if last else PIPE)
            if notes is not None:
                lines.extend(inner + note for note in notes(member))
            if is_group and (max_depth is None or depth < max_depth):
                walk(member, inner, depth + 1)

    walk(top, "", 0)
    return lines
