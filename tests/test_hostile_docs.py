"""Hostile inputs of the docs/output part: control characters in file names, resource and container names,
policies and skip reasons are escaped in every human-readable output and kept real in JSON. The scenarios
live in tests/hostile/docs.py (shared with the bench scripts)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from image_updater.logs import JsonFormatter, TextFormatter
from image_updater.printable import printable
from tests.fixtures.registry import require_registry_binary
from tests.hostile.docs import RAW_CONTROL, control_characters_in_outputs


def test_control_characters_are_escaped_in_every_text_output(tmp_path: Path) -> None:
    require_registry_binary()
    figures = control_characters_in_outputs(tmp_path)
    assert figures["outputs"] >= 14
    assert figures["seconds"] < 120  # a generous bound: only a hang breaks it


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("apps/\x1b[31mred.yaml", "apps/\\x1b[31mred.yaml"),
        ("apps/a\nb.yaml", "apps/a\\nb.yaml"),
        ("tab\there\rcr", "tab\\there\\rcr"),
        ("nul\x00del\x7fnel\x85csi\x9b", "nul\\x00del\\x7fnel\\x85csi\\x9b"),
        ("rtl\u202eoverride\u2066isolate\u200fmark\u2028sep",
         "rtl\\u202eoverride\\u2066isolate\\u200fmark\\u2028sep"),
        ("café ümlaut 日本 back\\slash", "café ümlaut 日本 back\\slash"),  # printable text stays as it is
    ],
)
def test_printable_escapes_control_characters(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert RAW_CONTROL.search(printable(raw)) is None


def test_printable_can_keep_newlines() -> None:
    assert printable("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"


def test_text_log_lines_cannot_be_forged() -> None:
    formatter = TextFormatter(debug=False)

    def line(message: str, **extra: object) -> str:
        record = logging.LogRecord("image_updater", logging.ERROR, __file__, 1, "%s", (message,), None)
        record.__dict__.update(extra)
        return formatter.format(record)

    forged = line("cannot read apps/a\n2026-01-01T00:00:00Z info    all good", file="x\x1b[2J.yaml")
    assert "\n" not in forged
    assert forged.endswith("cannot read apps/a\\n2026-01-01T00:00:00Z info    all good file=x\\x1b[2J.yaml")
    # a message of several lines on purpose keeps them, indented (DESIGN: configuration errors list problems)
    listed = line("invalid configuration (c.yaml), 2 problems:\n  interval: bad\n  log.level: bad")
    assert listed.splitlines()[1:] == ["  interval: bad", "  log.level: bad"]
    json_line = JsonFormatter(debug=False).format(
        logging.LogRecord("image_updater", logging.ERROR, __file__, 1, "%s", ("a\x1bb",), None))
    assert json.loads(json_line)["message"] == "a\x1bb"  # JSON keeps the real value
