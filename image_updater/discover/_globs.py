"""Repo-relative path globs for policy files' ``spec.targets[].path``.

``*`` and ``?`` stay inside one path segment, ``**`` crosses segments (``**/`` also matches no directory at
all), ``[...]``/``[!...]`` are character classes. A glob that matches a directory covers every file below it,
so ``apps/podinfo`` and ``apps/podinfo/`` mean the same as ``apps/podinfo/**``.
"""

from __future__ import annotations

import re

__all__ = ["InvalidGlob", "compile_path_glob"]


class InvalidGlob(ValueError):
    pass


def compile_path_glob(glob: str) -> re.Pattern[str]:
    """Compile ``glob`` into a pattern for ``fullmatch`` against POSIX repo-relative paths."""
    if not glob or not glob.strip():
        raise InvalidGlob("empty path glob")
    text = glob.strip()
    while text.startswith("./"):
        text = text[2:]
    if text.startswith("/") or text == ".." or text.startswith("../") or "/../" in text:
        raise InvalidGlob(f"path glob {glob!r} must be relative to the repository root, without '..'")
    if text in ("", "."):
        text = "**"
    text = text.rstrip("/") or "**"
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "*":
            if text.startswith("**", i):
                j = i + 2
                if j < n and text[j] == "/":
                    out.append("(?:.*/)?")
                    i = j + 1
                else:
                    out.append(".*")
                    i = j
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = text.find("]", i + 2 if text.startswith(("[!", "[^"), i) else i + 1)
            if end < 0:
                raise InvalidGlob(f"path glob {glob!r} has an unclosed '['")
            body = text[i + 1 : end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + "(?:/.*)?")
