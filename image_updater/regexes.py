"""Regular expressions that users write (``regex:`` policies, ``filter``), matched on RE2 in linear time.

A pattern comes from an annotation, a policy file or the command line, and the text it meets comes from a
registry: both are untrusted. Python's ``re`` backtracks, so ``^(a+)+$`` against 40 ``a`` and a ``b``
would hold the daemon for hours. RE2 never backtracks: matching costs time linear in the text, whatever
the pattern, and a pattern whose program would not fit RE2's memory budget is refused when compiled.

RE2's syntax is also what Flux (``regex:``, ``filterTags.pattern``), Flux v1 and Argo CD Image Updater
(``allow-tags: regexp:``) use, through Go's ``regexp``: a pattern that works there means the same here.
What Python's ``re`` accepted and RE2 does not (backreferences, lookaround, atomic groups, possessive
quantifiers, ``\\Z``, ``(?x)``, ``(?#...)``) is refused with RE2's message and a hint; docs/policies.md
lists every difference.

``compile_user_regex`` is the one way in: every user pattern matched against tags goes through it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from image_updater.errors import InvalidPolicy

__all__ = ["Spans", "UserMatch", "UserRegex", "compile_user_regex", "literal_prefix"]

Spans = list[tuple[int, int]]

# RE2's message -> what to do instead, for the constructs users bring from Python, PCRE or Perl
_HINTS: tuple[tuple[str, str], ...] = (
    ("invalid perl operator: (?=", "lookahead is not supported"),
    ("invalid perl operator: (?!", "lookahead is not supported"),
    ("invalid perl operator: (?<=", "lookbehind is not supported"),
    ("invalid perl operator: (?<!", "lookbehind is not supported"),
    ("invalid perl operator: (?P", "backreferences (?P=name) are not supported"),
    ("invalid perl operator: (?>", "atomic groups are not needed: RE2 never backtracks"),
    ("invalid perl operator: (?(", "conditionals are not supported"),
    ("invalid perl operator: (?#", "comments are not supported"),
    ("invalid perl operator: (?x", "verbose mode (?x) is not supported"),
    ("bad repetition operator: ++", "possessive quantifiers are not needed: RE2 never backtracks"),
    ("bad repetition operator: *+", "possessive quantifiers are not needed: RE2 never backtracks"),
    ("bad repetition operator: ?+", "possessive quantifiers are not needed: RE2 never backtracks"),
    ("invalid escape sequence: \\Z", "write \\z or $ for the end of the tag"),
    ("invalid repetition size", "a count may be at most 1000"),
    ("pattern too large", "the compiled pattern exceeds RE2's memory budget"),
)
_BACKREFERENCE_HINT = "backreferences are not supported"


@functools.cache
def _engine() -> Any:
    """The ``re2`` module, imported on first use: ``select`` with a semver policy never pays for it."""
    import re2

    return re2


class UserMatch:
    """A successful search: the text and the character span of every group (``(-1, -1)``: not taking part)."""

    __slots__ = ("_groupindex", "_spans", "_text")

    def __init__(self, text: str, spans: Spans, groupindex: Mapping[str, int]) -> None:
        self._text = text
        self._spans = spans
        self._groupindex = groupindex

    def group(self, ref: int | str = 0) -> str | None:
        """Group ``ref`` (a number, or a name) as matched; ``None`` for a group that did not take part."""
        index = ref if isinstance(ref, int) else self._groupindex[ref]
        start, end = self._spans[index]
        return None if start < 0 else self._text[start:end]

    def span(self, ref: int | str = 0) -> tuple[int, int]:
        """Character offsets of group ``ref``; ``(-1, -1)`` for a group that did not take part."""
        return self._spans[ref if isinstance(ref, int) else self._groupindex[ref]]


class UserRegex:
    """A compiled user pattern. ``search`` finds it anywhere (unanchored, as Go's ``FindStringSubmatch``),
    ``spans`` does without the match object, ``found_in`` only says whether it matches; all take time
    linear in the text."""

    __slots__ = ("found_in", "groupindex", "groups", "pattern", "spans")

    spans: Callable[[str], Spans | None]
    """``search`` without the match object, for hot loops: the character span of every group (index 0:
    the whole match; ``(-1, -1)``, which slices to "", for a group that did not take part)."""
    found_in: Callable[[str], bool]
    """True when the pattern matches somewhere in the text."""

    def __init__(self, pattern: str, compiled: Any) -> None:
        self.pattern = pattern
        self.groups: int = compiled.groups
        self.groupindex: Mapping[str, int] = MappingProxyType(dict(compiled.groupindex))
        # google-re2's wrapper re-encodes the text and builds a generator for every call, which triples the
        # cost of a search over a short tag; its program object matches UTF-8 bytes directly
        program = getattr(compiled, "_regexp", None)
        anchor = getattr(getattr(_engine(), "_Anchor", None), "UNANCHORED", None)
        if program is not None and anchor is not None and hasattr(program, "Match"):
            self.spans, self.found_in = _searchers(program.Match, anchor, literal_prefix(pattern))
        else:  # a google-re2 without that internal object: the public API, slower but the same answers
            self.spans, self.found_in = _public_searchers(compiled, literal_prefix(pattern))

    def __repr__(self) -> str:
        return f"UserRegex({self.pattern!r})"

    def search(self, text: str) -> UserMatch | None:
        """The leftmost match in ``text`` (leftmost-first, as Perl and Go choose among alternatives)."""
        spans = self.spans(text)
        return None if spans is None else UserMatch(text, spans, self.groupindex)


def _searchers(
    match: Callable[[Any, bytes, int, int], Spans], anchor: Any, prefix: str
) -> tuple[Callable[[str], Spans | None], Callable[[str], bool]]:
    """``spans`` and ``found_in`` as closures over local names: these run once per tag of a repository."""

    def unicode_spans(text: str) -> Spans | None:
        try:
            encoded = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates (from a registry's JSON): no text a pattern can meet
            return None
        spans = match(anchor, encoded, 0, len(encoded))
        if spans[0][0] < 0:
            return None
        # RE2 matches whole UTF-8 sequences of valid text, so every offset falls between characters
        return [
            (len(encoded[:start].decode("utf-8")), len(encoded[:end].decode("utf-8"))) if start >= 0
            else (-1, -1)
            for start, end in spans
        ]

    # a call into RE2 costs four times a call into re: most tags of a repository fail a pattern such as
    # ^main- on their first characters, which a string comparison tells ("" is a prefix of every text)
    def spans(text: str) -> Spans | None:
        if not text.startswith(prefix):
            return None
        if text.isascii():  # every valid tag: bytes and characters are the same offsets
            found = match(anchor, text.encode("ascii"), 0, len(text))
            return found if found[0][0] >= 0 else None
        return unicode_spans(text)

    def found_in(text: str) -> bool:
        if not text.startswith(prefix):
            return False
        if text.isascii():
            return bool(match(anchor, text.encode("ascii"), 0, len(text))[0][0] >= 0)
        return unicode_spans(text) is not None

    return spans, found_in


def _public_searchers(
    compiled: Any, prefix: str
) -> tuple[Callable[[str], Spans | None], Callable[[str], bool]]:
    """``spans`` and ``found_in`` through google-re2's public ``search`` (character offsets already)."""
    count = compiled.groups + 1

    def spans(text: str) -> Spans | None:
        if not text.startswith(prefix):
            return None
        try:
            found = compiled.search(text)
        except UnicodeEncodeError:  # lone surrogates: no text a pattern can meet
            return None
        return None if found is None else [found.span(i) for i in range(count)]

    def found_in(text: str) -> bool:
        return spans(text) is not None

    return spans, found_in


_META = frozenset("\\.+*?()|[]{}^$")


def literal_prefix(pattern: str) -> str:
    """Text every match must start the subject with: the literal characters after a leading ``^``.

    Conservative: "" (no prefilter) unless the pattern starts with ``^`` and has no ``|`` at all; the run
    stops at the first metacharacter, and loses its last character when a quantifier follows it
    (``^ab?`` -> ``a``). Flags can only come after the run, so they cannot change its meaning.
    """
    if not pattern.startswith("^") or "|" in pattern:
        return ""
    end = 1
    while end < len(pattern) and pattern[end] not in _META:
        end += 1
    if end < len(pattern) and pattern[end] in "*+?{":
        end -= 1
    return pattern[1:end] if end > 1 else ""


def _hint(message: str) -> str:
    for needle, hint in _HINTS:
        if needle in message:
            return hint
    if message.startswith("invalid escape sequence: \\") and message[-1:].isdigit():
        return _BACKREFERENCE_HINT
    return ""


def _check_go_syntax(pattern: str, what: str) -> None:
    """Refuse what C++ RE2 accepts but Go's regexp does not: ``\\C`` (one byte, which can split a
    character)."""
    i = pattern.find("\\")
    while i != -1:
        if pattern[i + 1 : i + 2] == "C":
            raise InvalidPolicy(
                f"invalid {what} {pattern!r}: \\C (any byte) is not supported; use . for any character"
            )
        i = pattern.find("\\", i + 2)


@functools.lru_cache(maxsize=1024)
def compile_user_regex(pattern: str, what: str = "regex") -> UserRegex:
    """Compile a user's pattern (RE2 syntax, as Go's ``regexp``); ``InvalidPolicy`` naming ``what``, the
    pattern and RE2's reason when it does not compile. ``what`` says where it came from: ``regex``,
    ``filter``, ``allow-tags``."""
    if not isinstance(pattern, str):
        raise InvalidPolicy(f"invalid {what} {pattern!r}: expected a string")
    _check_go_syntax(pattern, what)
    re2 = _engine()
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern on stderr
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else str(exc)
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        hint = _hint(reason)
        detail = f"{reason} ({hint}; patterns use RE2 syntax, as in Flux)" if hint else reason
        raise InvalidPolicy(f"invalid {what} {pattern!r}: {detail}") from exc
    except (UnicodeEncodeError, TypeError) as exc:  # a lone surrogate in the pattern
        raise InvalidPolicy(f"invalid {what} {pattern!r}: not valid text ({exc})") from exc
    return UserRegex(pattern, compiled)
