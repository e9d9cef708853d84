"""Hostile users' regexes: catastrophic patterns (nested and overlapping quantifiers) against tags crafted to
make a backtracking engine take hours, through ``select`` and through ``plan`` against a real registry.
The scenarios live in tests/hostile/regex.py (a bench script records their figures); here they run with
generous bounds that only a hang or a leak can break."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.registry import require_registry_binary
from tests.hostile import regex as scenarios


def test_catastrophic_patterns_in_regex_policies_and_filters_finish_in_linear_time(tmp_path: Path) -> None:
    figures = scenarios.catastrophic_patterns_in_select(tmp_path)
    assert figures["runs"] == 3 * len(scenarios.CATASTROPHIC)
    assert figures["seconds"] < 60, figures  # one select; each pattern would take hours on Python's re
    assert figures["peak_rss_mib"] < 512, figures


def test_catastrophic_patterns_in_annotations_cannot_hang_a_plan(tmp_path: Path) -> None:
    require_registry_binary()
    figures = scenarios.catastrophic_patterns_in_plan(tmp_path)
    assert figures["seconds"] < 90, figures
    assert figures["peak_rss_mib"] < 512, figures
