"""Rendering a ``Result``: a terminal table, JSON (DESIGN's ``plan --format json`` schema), Markdown for a
pull-request comment, a unified diff, and a self-contained HTML page (``image_updater.status``'s templates).
Pure: texts in, text out.

File names, images, tags and messages may hold control characters (a hostile repository or registry): the
table and Markdown show them escaped (``printable``), the diff quotes such file names as git does and escapes
them in its lines, and JSON keeps the real values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence

from image_updater.plan import Change, ErrorEntry, Result, Skipped
from image_updater.printable import printable

__all__ = [
    "FORMATS",
    "counts",
    "render",
    "render_diff",
    "render_json",
    "render_markdown",
    "render_table",
    "short",
    "summary",
]

FORMATS = ("table", "json", "markdown", "diff", "html")
_DIGEST = re.compile(r"(sha256:[0-9a-f]{12})[0-9a-f]{52}")
_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(result: Result) -> str:
    """One line about the updates: ``3 updates in 2 files``, ``1 update in 1 file``, ``no updates``."""
    if not result.updates:
        return "no updates"
    files = len({c.file for c in result.updates})
    return f"{_plural(len(result.updates), 'update')} in {_plural(files, 'file')}"


def counts(result: Result) -> str:
    """The full tally: ``3 updates in 2 files, 4 unchanged, 1 skipped, 2 errors``."""
    parts = [summary(result)]
    if result.unchanged:
        parts.append(f"{len(result.unchanged)} unchanged")
    if result.skipped:
        parts.append(f"{len(result.skipped)} skipped")
    if result.errors:
        parts.append(_plural(len(result.errors), "error"))
    return ", ".join(parts)


def short(value: str) -> str:
    """A value with its digests cut to 12 hex digits, for tables."""
    return _DIGEST.sub(r"\1…", value)


def _old(change: Change) -> str:
    """The OLD column: the value, or ``-`` for an inserted value and ``(new file)`` for a created file."""
    if change.insert is None:
        return short(change.old)
    return "(new file)" if change.created else "-"


def _where(file: str | None, line: int | None) -> str:
    if file is None:
        return "-"
    return f"{file}:{line}" if line is not None else file


def _columns(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def render_table(result: Result) -> str:
    """Aligned plain-text columns for a terminal; unchanged targets are counted, not listed."""
    lines: list[str] = []
    if result.updates:
        rows = [("FILE:LINE", "RESOURCE", "CONTAINER", "OLD", "NEW", "POLICY")]
        rows += [(
            _where(c.file, c.line), c.resource or "-", c.container or "-", _old(c), short(c.new),
            f"{c.policy} ({c.origin})",
        ) for c in result.updates]
        lines += _columns(rows)
    if result.skipped:
        lines += ["", "Skipped:"]
        lines += _columns([(_where(s.file, s.line), s.image or "-", s.reason) for s in result.skipped], "  ")
    if result.errors:
        lines += ["", "Errors:"]
        lines += [printable(f"  {_where(e.file, e.line)}: {e.image + ': ' if e.image else ''}{e.message}")
                  for e in result.errors]
    if lines:
        lines.append("")
    lines.append(counts(result))
    return "\n".join(lines) + "\n"


def render_json(result: Result) -> str:
    """Exactly DESIGN's ``plan --format json`` object: updates, unchanged, skipped, errors."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _md(text: str | None) -> str:
    if text is None:
        return "-"
    return printable(text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " "))


def _code(text: str | None) -> str:
    if not text:
        return "-"
    text = printable(text)
    fence = "``" if "`" in text else "`"
    return f"{fence}{text.replace('|', '¦')}{fence}"


def _change_row(c: Change) -> str:
    return (f"| {_code(_where(c.file, c.line))} | {_md(c.resource)} | {_md(c.container)} | {_code(c.image)} "
            f"| {_code(_old(c)) if c.insert is None else _old(c)} | {_code(short(c.new))} "
            f"| {_code(c.policy)} | {c.origin} |")


def _skip_row(s: Skipped) -> str:
    return f"| {_code(_where(s.file, s.line))} | {_code(s.image)} | {_md(s.reason)} |"


def _error_row(e: ErrorEntry) -> str:
    return f"| {_code(_where(e.file, e.line))} | {_code(e.image)} | {_md(e.message)} |"


def render_markdown(result: Result, *, title: str = "image-updater") -> str:
    """A pull-request comment: heading with the summary, a table of updates, errors and skips below."""
    lines = [f"### {title}: {summary(result)}", ""]
    if result.updates:
        lines += ["| File | Resource | Container | Image | Old | New | Policy | Origin |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [_change_row(c) for c in result.updates]
        lines.append("")
    if result.errors:
        lines += [f"**{_plural(len(result.errors), 'error')}**", "", "| Where | Image | Message |",
                  "|---|---|---|"]
        lines += [_error_row(e) for e in result.errors]
        lines.append("")
    if result.skipped:
        lines += [f"<details><summary>{len(result.skipped)} skipped</summary>", "",
                  "| Where | Image | Reason |", "|---|---|---|"]
        lines += [_skip_row(s) for s in result.skipped]
        lines += ["", "</details>", ""]
    if result.unchanged:
        lines += [f"{len(result.unchanged)} already at the tag their policy picks.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _split(text: str) -> list[str]:
    # only "\n" ends a line here, as for git: splitlines() would also split at \x85, \u2028 and the like,
    # which YAML strings may hold
    return _LINE.findall(text)


_GIT_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 34: '\\"',
                92: "\\\\"}


def _git_path(path: str) -> str:
    """A diff header path as git writes it: C-quoted, octal UTF-8 bytes, when it holds anything unusual."""
    data = path.encode("utf-8", "surrogateescape")
    if all(0x20 <= b < 0x7F and b not in (34, 92) for b in data):
        return path
    return '"' + "".join(
        _GIT_ESCAPES.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}") for b in data
    ) + '"'


def _diff_line(line: str) -> str:
    # escape what would drive a terminal; keep tabs and a CRLF line ending, which a patch must carry as is
    end = "\r\n" if line.endswith("\r\n") else ("\n" if line.endswith("\n") else "")
    body = line[: len(line) - len(end)]
    return "\t".join(printable(part) for part in body.split("\t")) + end


def render_diff(
    texts: Mapping[str, tuple[str, str]], *, context: int = 3, created: Collection[str] = ()
) -> str:
    """A unified diff (``a/``, ``b/`` prefixes, as ``git diff``) of ``file -> (before, after)``; the files in
    ``created`` do not exist yet (``--- /dev/null``, as ``git diff`` shows a new file)."""
    import difflib  # here: only --format diff needs it

    out: list[str] = []
    for file in sorted(texts):
        before, after = texts[file]
        if before == after:
            continue
        for line in difflib.unified_diff(
            _split(before), _split(after), tofile=_git_path(f"b/{file}"),
            fromfile="/dev/null" if file in created else _git_path(f"a/{file}"),
            n=context,
        ):
            line = _diff_line(line)
            if line.endswith("\n"):
                out.append(line)
            else:
                out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


def render(result: Result, fmt: str, *, texts: Mapping[str, tuple[str, str]] | None = None) -> str:
    """Render ``result`` in one of ``FORMATS``; ``diff`` needs ``texts`` (file -> (before, after))."""
    if fmt == "table":
        return render_table(result)
    if fmt == "json":
        return render_json(result)
    if fmt == "markdown":
        return render_markdown(result)
    if fmt == "diff":
        return render_diff(texts or {}, created={c.file for c in result.updates if c.created})
    if fmt == "html":
        from image_updater.status import render_plan_html  # Jinja2 and the templates only when asked for

        return render_plan_html(result)
    raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
