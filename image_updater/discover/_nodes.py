"""Small helpers over ruamel.yaml's composed node graph (what ``yamledit.parse_yaml`` returns).

Discovery never constructs Python objects from YAML: it walks the composed nodes, because only nodes carry the
positions that the byte-exact edit needs, and because a node graph shows aliases (one node object reachable
along two paths), which a constructed document hides.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterator
from typing import Any

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "LineIndex",
    "MappingNode",
    "Node",
    "ScalarNode",
    "SequenceNode",
    "get",
    "get_key",
    "get_path",
    "items",
    "node_line",
    "scalar",
    "string_list",
]

_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_WORDS = frozenset({"", "~", "null", "Null", "NULL"})
_BREAK = re.compile(r"\r\n|\r|\n")
_LONE_CR = re.compile(r"\r(?!\n)")


def scalar(node: Node | None) -> str | None:
    """The string value of a scalar node; ``None`` for anything else and for a null (``~``, empty) scalar.

    ``yamledit`` composes without implicit tag resolution (speed), so a null is recognised by its spelling.
    A plain scalar's style is ``None`` from the pure parser but ``""`` from libyaml: both are plain (an
    empty plain scalar, ``tag:``, has an empty span, into which no edit can write).
    """
    if node.__class__ is not ScalarNode:
        return None
    value: Any = node.value
    if not node.style and value in _NULL_WORDS:
        return None
    return value if isinstance(value, str) else str(value)


def _is_merge(key: Node) -> bool:
    if not isinstance(key, ScalarNode):
        return False
    return bool(key.tag == _MERGE_TAG or (key.value == "<<" and key.style is None))


def items(node: Node | None) -> Iterator[tuple[str, Node, Node]]:
    """``(key, key_node, value_node)`` of a mapping, including keys brought in by ``<<`` merges.

    Direct keys come first and win over merged ones, as in YAML 1.1 merge semantics. Merged keys always come
    through an alias (or an inline map), which ``behind_alias`` reports separately.
    """
    if not isinstance(node, MappingNode):
        return
    seen: set[str] = set()
    merges: list[Node] = []
    for key_node, value_node in node.value:
        if _is_merge(key_node):
            merges.append(value_node)
            continue
        key = scalar(key_node)
        if key is None or key in seen:
            continue
        seen.add(key)
        yield key, key_node, value_node
    for merged in merges:
        sources = merged.value if isinstance(merged, SequenceNode) else [merged]
        for source in sources:
            for key, key_node, value_node in items(source):
                if key not in seen:
                    seen.add(key)
                    yield key, key_node, value_node


def get(node: Node | None, key: str) -> Node | None:
    """The value node under ``key`` in a mapping node, or ``None``."""
    if node.__class__ is not MappingNode:
        return None
    merged = False
    for key_node, value_node in node.value:
        if key_node.__class__ is ScalarNode and key_node.value == key:
            return value_node  # type: ignore[no-any-return]
        if not merged and key_node.__class__ is ScalarNode and key_node.value == "<<":
            merged = True
    if merged:  # the slow path, only for mappings with a << merge key
        for name, _key_node, value in items(node):
            if name == key:
                return value
    return None


def get_key(node: Node | None, key: str) -> Node | None:
    """The key node of ``key`` in a mapping node (to point at a key whose value is empty), or ``None``."""
    for name, key_node, _value in items(node):
        if name == key:
            return key_node
    return None


def get_path(node: Node | None, *keys: str) -> Node | None:
    for key in keys:
        node = get(node, key)
        if node is None:
            return None
    return node


def string_list(node: Node | None) -> list[tuple[str, Node]] | None:
    """A sequence of strings (or one string) as ``[(value, node)]``; ``None`` if it is neither."""
    text = scalar(node)
    if text is not None and node is not None:
        return [(text, node)]
    if isinstance(node, SequenceNode):
        out: list[tuple[str, Node]] = []
        for item in node.value:
            value = scalar(item)
            if value is None:
                return None
            out.append((value, item))
        return out
    return None


def node_line(node: Node) -> int:
    """1-based line where a node starts (for messages; targets use ``LineIndex`` on the exact span)."""
    return int(node.start_mark.line) + 1


class LineIndex:
    """Maps character offsets of one text to 1-based line numbers (``\n``, ``\r\n`` and lone ``\r``).

    Built on first use: most files never need a line number.
    """

    __slots__ = ("_starts", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._starts: list[int] | None = None

    def _build(self) -> list[int]:
        text = self._text
        if "\r" in text and _LONE_CR.search(text):
            return [0] + [m.end() for m in _BREAK.finditer(text)]
        starts = [0, *itertools.accumulate(len(line) + 1 for line in text.split("\n"))]
        starts.pop()
        return starts

    def line(self, offset: int) -> int:
        if self._starts is None:
            self._starts = self._build()
        return bisect.bisect_right(self._starts, offset)
