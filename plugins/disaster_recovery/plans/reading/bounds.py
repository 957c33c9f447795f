"""Limits on the shape of configuration data, checked before anything walks it recursively.

A YAML file of a few hundred bytes can describe a structure of billions of nodes (aliases of aliases,
merge keys of merge keys) or nest a thousand levels deep. Validators, the secret-key scan, fingerprints
and ``json.dumps`` all walk the expanded structure, so the shape is measured first, on the graph as it
is (shared parts counted once per use, each measured once), iteratively, in time linear in the graph.
The same walk measures composed YAML nodes and already-parsed data (a plan arriving as JSON).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

MAX_FILE_BYTES = 1 << 20
"""A plan or configuration file larger than 1 MiB is refused unread (the shipped plans are ~4 KiB)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (a plan needs about 8)."""
MAX_NODES = 200_000
"""Values in the structure once every alias is expanded (a plan has a few hundred)."""
MAX_TEXT = 8 << 20
"""Characters of text in the structure once every alias is expanded."""


class BoundsExceeded(ValueError):
    """The data is too deep, too large once expanded, or refers to itself; ``path`` says where."""

    def __init__(self, message: str, *, path: str = "") -> None:
        if len(path) > 120:  # a path 64 levels deep says no more than its first levels do
            path = path[:100] + "…"
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


@dataclass(frozen=True)
class _Shape:
    nodes: int
    text: int
    depth: int


def _yaml_children(node: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            label = key.value if isinstance(key, yaml.ScalarNode) else "?"
            yield f"key {label!r}", key
            yield str(label), value
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield f"[{index}]", item


def _yaml_text(node: Any) -> int:
    return len(node.value) if isinstance(node, yaml.ScalarNode) else 0


def _data_children(value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key), item
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            yield f"[{index}]", item


def _data_text(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes) else 0


def _is_container(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple | set | frozenset | yaml.MappingNode | yaml.SequenceNode)


def _join(path: str, label: str) -> str:
    if label.startswith("["):
        return path + label
    return f"{path}.{label}" if path else label


def _measure(
    root: Any,
    children: Callable[[Any], Iterable[tuple[str, Any]]],
    text: Callable[[Any], int],
) -> None:
    shapes: dict[int, _Shape] = {}
    on_path: set[int] = set()
    # Each frame: (value, path, its children still to visit, their shapes so far).
    stack: list[tuple[Any, str, list[tuple[str, Any]], list[_Shape]]] = []

    def push(value: Any, path: str) -> None:
        if len(stack) >= MAX_DEPTH:
            raise BoundsExceeded(f"nested more than {MAX_DEPTH} levels deep", path=path)
        on_path.add(id(value))
        stack.append((value, path, list(children(value))[::-1], []))

    push(root, "")
    while stack:
        value, path, todo, done = stack[-1]
        if todo:
            label, child = todo.pop()
            child_path = _join(path, label)
            if not _is_container(child):
                done.append(_Shape(1, text(child), 0))
            elif id(child) in on_path:
                raise BoundsExceeded("refers to itself (a recursive alias)", path=child_path)
            elif id(child) in shapes:
                done.append(shapes[id(child)])
            else:
                push(child, child_path)
            continue
        stack.pop()
        on_path.discard(id(value))
        shape = _Shape(
            1 + sum(s.nodes for s in done),
            text(value) + sum(s.text for s in done),
            1 + max((s.depth for s in done), default=0),
        )
        if shape.nodes > MAX_NODES:
            raise BoundsExceeded(
                f"expands to more than {MAX_NODES:,} values (aliases repeated inside aliases?)", path=path
            )
        if shape.text > MAX_TEXT:
            raise BoundsExceeded(f"expands to more than {MAX_TEXT:,} characters of text", path=path)
        shapes[id(value)] = shape
        if stack:
            stack[-1][3].append(shape)


def check_yaml_node(node: Any) -> None:
    """Raise BoundsExceeded when a composed YAML document is too deep or expands too far."""
    if node is not None:
        _measure(node, _yaml_children, _yaml_text)


def check_data(value: Any) -> None:
    """Raise BoundsExceeded when parsed data (dicts, lists, text) is too deep or too large."""
    _measure(value, _data_children, _data_text)
