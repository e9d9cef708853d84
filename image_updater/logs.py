"""Logging: stdlib ``logging`` to stderr, as text or one JSON object per line.

Errors are one line each; tracebacks appear only at debug level. Extra fields passed with
``log.info(..., extra={"source": ..., "file": ..., "image": ...})`` are shown in both formats.

Text lines escape control characters (``printable``): a file name or tag holding ``\x1b[...`` or a newline
cannot recolour the terminal or forge a log line. A message of several lines on purpose (a configuration
error listing its problems, each line indented) keeps its line breaks, so only a real record starts a line
with a timestamp. JSON lines keep the real values.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from image_updater.printable import printable

__all__ = ["EXTRA_FIELDS", "configure_logging"]

EXTRA_FIELDS = ("source", "file", "line", "image", "registry", "old", "new", "policy", "kind", "duration")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: getattr(record, k) for k in EXTRA_FIELDS if getattr(record, k, None) is not None}


class TextFormatter(logging.Formatter):
    def __init__(self, debug: bool) -> None:
        super().__init__()
        self._debug = debug

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = f"{ts} {record.levelname.lower():7} {_lines(record.getMessage())}"
        extras = _extras(record)
        if extras:
            text += " " + " ".join(f"{k}={printable(str(v))}" for k, v in extras.items())
        if self._debug and record.exc_info:
            text += "\n" + _lines(self.formatException(record.exc_info), first=True)
        return text


def _lines(text: str, *, first: bool = False) -> str:
    """``text`` escaped for one record. A line break followed by an indented line is a message of several
    lines on purpose (a configuration error listing its problems) and stays; any other one (a file name
    holding a newline) is shown as ``\\n``. ``first``: a traceback, every line of it indented."""
    escaped = printable(text, keep_newlines=True)
    if first:
        return "\n".join(line if line.startswith("  ") else "  " + line for line in escaped.split("\n"))
    return _LONE_NEWLINE.sub(r"\\n", escaped)


_LONE_NEWLINE = re.compile(r"\n(?!  )")


class JsonFormatter(logging.Formatter):
    def __init__(self, debug: bool) -> None:
        super().__init__()
        self._debug = debug

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry[key] = value if isinstance(value, int | float | bool) else str(value)
        if self._debug and record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Send the package's logs to stderr at ``level`` in ``fmt`` (``text`` or ``json``)."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    debug = numeric <= logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(debug) if fmt == "json" else TextFormatter(debug))
    root = logging.getLogger("image_updater")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    root.propagate = False
