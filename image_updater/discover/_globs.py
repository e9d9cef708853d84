"""Repo-relative path globs for policy files' ``spec.targets[].path``.

``*`` and ``?`` stay inside one path segment, ``**`` crosses segments (``**/`` also matches no directory at
all), ``[...]``/``[!...]`` are character classes (``[^...]`` too; a ``]`` right after ``[`` or ``[!`` is a
member, ``a-z`` is a range, a reversed range is an error). A glob that matches a directory covers every file
below it, so ``apps/podinfo`` and ``apps/podinfo/`` mean the same as ``apps/podinfo/**``.

Matching takes time linear in the path: the glob is compiled into a small NFA (one state per glob token) that
is simulated over the path, never backtracking, so ``apps/*a*a*a*a*a*a*b.yaml`` or ``**/**/**/**/x.yaml``
cost no more than any other glob (a backtracking regex takes exponential time on them). The state sets met
are cached as a DFA (one dictionary lookup per character on the common path), within a fixed budget of
states; beyond it the simulation goes on without caching, O(len(path) x len(glob)) in the worst case.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from image_updater.errors import InvalidGlob

__all__ = ["MAX_PATH_GLOB", "InvalidGlob", "PathGlob", "compile_path_glob"]

#: Longest path glob accepted (characters): far above any real one, and it bounds the worst-case step cost.
MAX_PATH_GLOB = 1024
# DFA cache budget per glob: real globs need a few dozen transitions; a hostile one that would need
# exponentially many states falls back to uncached simulation instead of growing the cache.
_MAX_TRANSITIONS = 20_000

_CHAR, _STAR, _SPLIT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Class:
    """A set of characters: ``chars`` and inclusive ``ranges``, complemented when ``negate``."""

    negate: bool
    chars: frozenset[str] = frozenset()
    ranges: tuple[tuple[str, str], ...] = ()

    def __contains__(self, c: str) -> bool:
        inside = c in self.chars or any(lo <= c <= hi for lo, hi in self.ranges)
        return inside != self.negate


_ANY = _Class(negate=True)
_NOT_SLASH = _Class(negate=True, chars=frozenset("/"))
_SLASH = _Class(negate=False, chars=frozenset("/"))

# One NFA node: (_CHAR, class, 0) consumes one character of the class and moves on; (_STAR, class, 0)
# consumes any number of them (it may also move on without consuming); (_SPLIT, None, target) moves on or
# jumps to ``target`` without consuming.
_Node = tuple[int, "_Class | None", int]


def _parse_class(text: str, i: int, glob: str) -> tuple[_Class, int]:
    """The class starting at ``text[i] == '['``; returns it and the index after its ``]``."""
    j = i + 1
    negate = j < len(text) and text[j] in "!^"
    if negate:
        j += 1
    chars: set[str] = set()
    ranges: list[tuple[str, str]] = []
    first = True
    n = len(text)
    while True:
        if j >= n:
            raise InvalidGlob(f"path glob {glob!r} has an unclosed '['")
        c = text[j]
        if c == "]" and not first:
            return _Class(negate, frozenset(chars), tuple(ranges)), j + 1
        first = False
        # a range a-z, unless the '-' is the last character of the class
        if j + 2 < n and text[j + 1] == "-" and text[j + 2] != "]":
            hi = text[j + 2]
            if hi < c:
                raise InvalidGlob(f"path glob {glob!r} has a reversed range {c}-{hi} in '[...]'")
            ranges.append((c, hi))
            j += 3
        else:
            chars.add(c)
            j += 1


def _nodes(text: str, glob: str) -> list[_Node]:
    nodes: list[_Node] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "*":
            if text.startswith("**", i):
                if i + 2 < n and text[i + 2] == "/":
                    # (?:.*/)? : skip, or anything ending in '/'
                    nodes.append((_SPLIT, None, len(nodes) + 3))
                    nodes.append((_STAR, _ANY, 0))
                    nodes.append((_CHAR, _SLASH, 0))
                    i += 3
                else:
                    nodes.append((_STAR, _ANY, 0))
                    i += 2
                continue
            nodes.append((_STAR, _NOT_SLASH, 0))
            i += 1
        elif c == "?":
            nodes.append((_CHAR, _NOT_SLASH, 0))
            i += 1
        elif c == "[":
            cls, i = _parse_class(text, i, glob)
            nodes.append((_CHAR, cls, 0))
        else:
            nodes.append((_CHAR, _Class(False, frozenset(c)), 0))
            i += 1
    # (?:/.*)? : a glob matching a directory covers everything below it
    nodes.append((_SPLIT, None, len(nodes) + 3))
    nodes.append((_CHAR, _SLASH, 0))
    nodes.append((_STAR, _ANY, 0))
    return nodes


def _literal(node: _Node) -> str | None:
    op, cls, _ = node
    if op != _CHAR or cls is None or cls.negate or cls.ranges or len(cls.chars) != 1:
        return None
    return next(iter(cls.chars))


def _literal_tail(nodes: list[_Node]) -> str:
    """The literal characters every match ends with (before the ``(?:/.*)?`` of directory globs).

    They are mandatory when no ``**/`` jumps into them (or past them): a match is then ``X + tail`` or
    ``X + tail + "/" + Y``, which most paths can be told not to be without running the NFA."""
    last = len(nodes) - 3  # the directory suffix's split
    targets = [target for op, _, target in nodes[:last] if op == _SPLIT]
    chars: list[str] = []
    k = last - 1
    while k >= 0:
        c = _literal(nodes[k])
        if c is None or any(k < t <= last for t in targets):
            break
        chars.append(c)
        k -= 1
    return "".join(reversed(chars))


class PathGlob:
    """A compiled path glob; ``matches(path)`` is a full match against a POSIX repo-relative path."""

    __slots__ = (
        "_accepting", "_done", "_ids", "_lock", "_nodes", "_prefix", "_sets", "_size", "_start", "_suffix",
        "_trans", "glob",
    )

    def __init__(self, glob: str, text: str) -> None:
        self.glob = glob
        nodes = _nodes(text, glob)
        self._nodes = nodes
        # the literal characters the glob starts with: most paths are told apart by them alone
        prefix = []
        for op, cls, _ in nodes:
            if op != _CHAR or cls is None or cls.negate or cls.ranges or len(cls.chars) != 1:
                break
            prefix.append(next(iter(cls.chars)))
        self._prefix = "".join(prefix)
        self._suffix = _literal_tail(nodes)
        self._lock = threading.Lock()
        self._sets: list[frozenset[int]] = []
        self._ids: dict[frozenset[int], int] = {}
        self._trans: list[dict[str, int]] = []
        self._accepting: list[bool] = []
        self._done: list[bool] = []  # states that accept whatever follows (inside ``**`` at the end)
        self._size = 0
        self._state(frozenset())  # 0: dead
        start = self._state(self._closure((0,)))
        for c in self._prefix:  # the state after the prefix, where matching starts
            start = self._state(self._step(self._sets[start], c))
        self._start = start

    def __repr__(self) -> str:
        return f"PathGlob({self.glob!r})"

    def _closure(self, states: tuple[int, ...] | set[int]) -> frozenset[int]:
        nodes, end = self._nodes, len(self._nodes)
        out: set[int] = set()
        stack = list(states)
        while stack:
            k = stack.pop()
            if k in out:
                continue
            out.add(k)
            if k == end:
                continue
            op, _cls, target = nodes[k]
            if op == _STAR:
                stack.append(k + 1)
            elif op == _SPLIT:
                stack.append(k + 1)
                stack.append(target)
        return frozenset(out)

    def _step(self, states: frozenset[int], c: str) -> frozenset[int]:
        nodes, end = self._nodes, len(self._nodes)
        moved: set[int] = set()
        for k in states:
            if k == end:
                continue
            op, cls, _ = nodes[k]
            if op == _SPLIT or cls is None or c not in cls:
                continue
            moved.add(k + 1 if op == _CHAR else k)
        return self._closure(moved) if moved else frozenset()

    def _state(self, states: frozenset[int]) -> int:
        sid = self._ids.get(states)
        if sid is None:
            sid = len(self._sets)
            self._sets.append(states)
            self._trans.append({})
            end = len(self._nodes)
            self._accepting.append(end in states)
            self._done.append(any(
                k != end and self._nodes[k][0] == _STAR and self._nodes[k][1] is _ANY
                and end in self._closure((k + 1,))
                for k in states
            ))
            self._ids[states] = sid
        return sid

    def matches(self, path: str) -> bool:
        """True when the glob matches ``path`` or a directory above it."""
        if not path.startswith(self._prefix):
            return False
        suffix = self._suffix
        if suffix and not path.endswith(suffix) and suffix + "/" not in path:
            return False
        trans, done = self._trans, self._done
        sid = self._start
        rest = path[len(self._prefix):]
        for index, c in enumerate(rest):
            if done[sid]:
                return True
            nxt = trans[sid].get(c)
            if nxt is None:
                with self._lock:
                    full = self._size >= _MAX_TRANSITIONS
                    if not full:
                        nxt = self._state(self._step(self._sets[sid], c))
                        trans[sid][c] = nxt
                        self._size += 1
                if nxt is None:
                    return self._simulate(self._sets[sid], rest, index)
            if nxt == 0:
                return False
            sid = nxt
        return self._accepting[sid]

    def _simulate(self, states: frozenset[int], path: str, index: int) -> bool:
        """The rest of ``path`` from ``index`` on, without the cache: O(len(glob)) per character."""
        for c in path[index:]:
            states = self._step(states, c)
            if not states:
                return False
        return len(self._nodes) in states


def compile_path_glob(glob: str) -> PathGlob:
    """Compile ``glob`` for ``PathGlob.matches`` against POSIX repo-relative paths; ``InvalidGlob`` if bad."""
    if not glob or not glob.strip():
        raise InvalidGlob("empty path glob")
    if len(glob) > MAX_PATH_GLOB:
        raise InvalidGlob(f"path glob {glob[:40]!r}... has {len(glob)} characters (limit {MAX_PATH_GLOB})")
    text = glob.strip()
    while text.startswith("./"):
        text = text[2:]
    if text.startswith("/") or text == ".." or text.startswith("../") or "/../" in text:
        raise InvalidGlob(f"path glob {glob!r} must be relative to the repository root, without '..'")
    if text in ("", "."):
        text = "**"
    text = text.rstrip("/") or "**"
    return PathGlob(glob, text)
