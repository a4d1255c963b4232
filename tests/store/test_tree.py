"""store.tree.draw: the one drawing of a tree (Group.tree, RemoteGroup.tree, the CLI)."""

from __future__ import annotations

import numpy as np

import npydir
from npydir.remote import RemoteGroup
from npydir.store.tree import draw

TREE = {"a": {"x": 1, "b": {"y": 2}}, "c": {}, "z": 3}


def _children(node):
    return [(k, v, isinstance(v, dict)) for k, v in node.items()]


def _label(name, node, is_group):
    return f"{name}/" if is_group else f"{name} = {node}"


def test_draw():
    assert draw(TREE, _children, _label) == [
        "├── a/",
        "│   ├── x = 1",
        "│   └── b/",
        "│       └── y = 2",
        "├── c/",
        "└── z = 3",
    ]


def test_max_depth_draws_a_group_but_does_not_open_it():
    assert draw(TREE, _children, _label, max_depth=0) == ["├── a/", "├── c/", "└── z = 3"]
    assert "│       └── y = 2" not in draw(TREE, _children, _label, max_depth=1)


def test_notes_go_under_their_member_indented_as_its_members():
    lines = draw(TREE, _children, _label,
                 notes=lambda n: [] if isinstance(n, dict) else ["@n"])
    assert lines == [
        "├── a/",
        "│   ├── x = 1",
        "│   │   @n",
        "│   └── b/",
        "│       └── y = 2",
        "│           @n",
        "├── c/",
        "└── z = 3",
        "    @n",
    ]


def test_children_are_asked_only_for_the_groups_opened():
    asked = []

    def children(node):
        asked.append(node)
        return _children(node)

    draw(TREE, children, _label, max_depth=0)
    assert asked == [TREE]


def test_group_tree_draws_with_it(tmp_path):
    with npydir.open(tmp_path / "s.npy", "w") as r:
        r.create_dataset("g/x", data=np.zeros((2, 3), "f4"))
        r.create_group("g/h/i")
        r.create_dataset("y", data=np.arange(4, dtype="i2"))
        assert r.tree() == "\n".join([
            "/",
            "├── g",
            "│   ├── h",
            "│   │   └── i",
            "│   └── x (2, 3) float32",
            "└── y (4,) int16",
        ])
        assert r["g"].tree(max_depth=0) == "g\n├── h\n└── x (2, 3) float32"
    assert RemoteGroup.tree is npydir.Group.tree  # remote groups draw the same tree
