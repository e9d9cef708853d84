"""``printable``: the one escaping of text that reaches a terminal, a log line or a pull-request comment.

File names, image names, tags and messages come from repositories and registries that may be hostile. A
raw ESC (``\\x1b[31m``, ``\\x1b]8;;``), a carriage return, a newline inside a file name or a bidi override
could recolour a terminal, hide text, forge a log line or make a report show something it does not say.
Every human-readable output (the table, Markdown and diff reports, text logs, CLI error lines,
``validate``'s text) passes its untrusted parts through ``printable``; JSON output keeps the real values
(``json.dumps`` escapes what JSON must).

Escaped: C0 controls (``\\n``, ``\\r``, ``\\t`` by name, the others as ``\\xNN``), DEL, C1 controls
(``\\x80``-``\\x9f``, including NEL), the bidi embeddings, overrides and isolates (U+202A-U+202E,
U+2066-U+2069), the bidi marks (U+200E, U+200F, U+061C) and the Unicode line and paragraph separators
(U+2028, U+2029), as ``\\uNNNN``. Everything else, backslashes included, is left as it is.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

_OTHERS = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f{_OTHERS}]")
_UNSAFE_KEEP_NEWLINES = re.compile(f"[\x00-\x09\x0b-\x1f{_OTHERS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\n``, ``\\u202e``).

    ``keep_newlines`` leaves ``\\n`` alone, for a message made of several lines on purpose; the caller
    must then make sure that no continuation line can pass for a line of its own.
    """
    pattern = _UNSAFE_KEEP_NEWLINES if keep_newlines else _UNSAFE
    return pattern.sub(_escape, text) if pattern.search(text) else text
