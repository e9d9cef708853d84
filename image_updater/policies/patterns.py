"""Tag patterns: globs (the ``glob:`` kind and ``exclude``) and ``extract`` templates.

Globs are translated into regexes that match in linear time (``_glob_to_regex``); user regexes themselves
(``regex:``, ``filter``, Flux ``exclusionList``) are RE2, in ``image_updater/regexes.py``. An ``extract``
template expands a ``filter`` match the way Go's ``Regexp.Expand`` does (``_compile_template``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from image_updater.errors import InvalidPolicy
from image_updater.regexes import Spans, UserRegex

__all__ = ["MAX_EXCLUDE_CHARS", "MAX_GLOB"]

#: Longest glob accepted (characters): a tag has at most 128, and compiling costs time in the glob's length.
MAX_GLOB = 1024
#: All of one policy's exclude globs together, for the same reason.
MAX_EXCLUDE_CHARS = 4096


def _glob_to_regex(glob: str, what: str, group: str = "g") -> str:
    """Translate a glob (``*`` ``?`` ``[...]`` ``[!...]`` ``\\x``) into a regex body for a full match.

    ``group`` prefixes the names of the groups the body defines: distinct per glob joined into one regex.
    """
    if len(glob) > MAX_GLOB:
        raise InvalidPolicy(f"invalid {what} {glob[:40]!r}...: {len(glob)} characters (limit {MAX_GLOB})")
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1
            negate = j < n and glob[j] in "!^"
            if negate:
                j += 1
            start = j
            if j < n and glob[j] == "]":  # a leading ] is literal
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                raise InvalidPolicy(f"invalid {what} {glob!r}: unclosed '['")
            body = "".join(ch if ch == "-" else re.escape(ch) for ch in glob[start:j])
            out.append(f"[{'^' if negate else ''}{body}]")
            i = j
        elif c == "\\":
            if i + 1 >= n:
                raise InvalidPolicy(f"invalid {what} {glob!r}: trailing backslash")
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(c))
        i += 1
    # Tags come from the registry: with plain `.*` a tag of 128 `a` against `*a*a*a*a*a*b` backtracks for
    # minutes. Each fixed-width part between stars is matched at its leftmost place and never revisited,
    # which is exact for globs and linear: the construction of fnmatch.translate, a lookahead captured and
    # matched again by reference (an atomic group that also works on Python 3.11's first releases, whose
    # `(?>...)` misbehaves).
    parts: list[list[str]] = [[]]
    for piece in out:
        if piece == ".*":
            parts.append([])
        else:
            parts[-1].append(piece)
    if len(parts) == 1:
        return "".join(parts[0])
    head, *middle, tail = ("".join(part) for part in parts)
    atomic = "".join(f"(?=(?P<{group}{k}>.*?{part}))(?P={group}{k})" for k, part in enumerate(middle))
    return head + atomic + ".*" + tail


def _compile_glob(glob: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(f"(?:{_glob_to_regex(glob, what)})\\Z", re.DOTALL)
    except re.error as exc:
        raise InvalidPolicy(f"invalid {what} {glob!r}: {exc}") from exc



_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_]+")


def _compile_template(template: str, regex: UserRegex) -> Callable[[str, Spans], str]:
    """Go's ``Regexp.Expand`` (Flux ``extract``): ``$1``, ``$name``, ``${name}``, ``$$``; anything else,
    ``\\1`` included, is literal text. The result expands a tag and its filter spans (``UserRegex.spans``).

    Go silently expands a reference to a group that does not exist to ""; we refuse it, because an extract
    that is always empty would make every tag rank the same.
    """
    pieces: list[str | int] = []  # literal text, or a group's index
    literal: list[str] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c != "$":
            literal.append(c)
            i += 1
            continue
        if template.startswith("$$", i):
            literal.append("$")
            i += 2
            continue
        name: str | None = None
        if template.startswith("${", i):
            close = template.find("}", i + 2)
            if close != -1 and _TEMPLATE_NAME.fullmatch(template, i + 2, close):
                name, i = template[i + 2 : close], close + 1
        else:
            m = _TEMPLATE_NAME.match(template, i + 1)
            if m is not None:
                name, i = m.group(), m.end()
        if name is None:  # malformed: Go writes the $ as it is
            literal.append("$")
            i += 1
            continue
        if name.isdigit():
            index = int(name)
            if index > regex.groups:
                raise InvalidPolicy(f"invalid extract {template!r}: filter has no group {name}")
        else:
            if name not in regex.groupindex:
                raise InvalidPolicy(f"invalid extract {template!r}: filter has no group named {name!r}")
            index = regex.groupindex[name]
        if literal:
            pieces.append("".join(literal))
            literal = []
        pieces.append(index)
    if literal:
        pieces.append("".join(literal))
    frozen = tuple(pieces)
    # a group that did not take part has the span (-1, -1), which slices to "" as Go expands it
    if len(frozen) == 1 and isinstance(frozen[0], int):  # "$version": the common case, once per tag
        only = frozen[0]

        def expand_one(text: str, spans: Spans) -> str:
            start, end = spans[only]
            return text[start:end]

        return expand_one

    def expand(text: str, spans: Spans) -> str:
        return "".join([p if isinstance(p, str) else text[spans[p][0] : spans[p][1]] for p in frozen])

    return expand



def _compile_excludes(
    globs: tuple[str, ...],
) -> tuple[re.Pattern[str] | None, tuple[tuple[str, re.Pattern[str]], ...]]:
    """``exclude``: all globs joined into one pattern (one match per tag), and each on its own, to name the
    glob that matched."""
    for glob in globs:
        if not isinstance(glob, str) or not glob:
            raise InvalidPolicy(f"invalid exclude {glob!r}: expected a non-empty glob")
    if sum(len(glob) for glob in globs) > MAX_EXCLUDE_CHARS:
        raise InvalidPolicy(f"invalid exclude: the globs together are over {MAX_EXCLUDE_CHARS} characters")
    each = tuple((glob, _compile_glob(glob, "exclude glob")) for glob in globs)
    if not globs:
        return None, each
    # each glob's inner stars become named groups: a prefix per glob keeps the names apart
    body = "|".join(f"(?:{_glob_to_regex(g, 'exclude glob', f'x{i}_')})" for i, g in enumerate(globs))
    return re.compile(f"(?:{body})\\Z", re.DOTALL), each
