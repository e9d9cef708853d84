"""Golden trees: tests/golden/<case>/original is planned and applied with tags from <case>/tags.json (real
policy selection, no registry) and must then equal <case>/expected byte for byte, as a whole tree; the
applied Result must equal <case>/result.json (lines, old/new values, skips and errors).

Set UPDATE_GOLDEN_RESULTS=1 to rewrite the result.json files (review the diff before committing).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from image_updater.checkout import Planned, apply_result, discover_directory
from image_updater.plan import build_plan
from tests.planning_support import load_tags, stub_resolve

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_case(case: str, work: Path) -> dict[str, object]:
    shutil.copytree(GOLDEN / case / "original", work)
    discovery, texts = discover_directory(work)
    tags = load_tags(GOLDEN / case / "tags.json")
    result = build_plan(discovery, stub_resolve(discovery.resolve_keys, tags))
    applied = apply_result(work, Planned(work, discovery, result, texts))
    return applied.to_dict()


@pytest.mark.parametrize("case", CASES)
def test_golden_tree(case: str, tmp_path: Path) -> None:
    work = tmp_path / "tree"
    result = run_case(case, work)
    expected = tree(GOLDEN / case / "expected")
    actual = tree(work)
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert actual[name] == expected[name], f"{case}/{name} differs"
    result_file = GOLDEN / case / "result.json"
    rendered = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if os.environ.get("UPDATE_GOLDEN_RESULTS"):
        result_file.write_text(rendered, encoding="utf-8")
    assert rendered == result_file.read_text(encoding="utf-8")


def test_every_case_changes_or_reports_something(tmp_path: Path) -> None:
    # a case whose expected tree equals its original must at least report skips or errors
    for case in CASES:
        if tree(GOLDEN / case / "original") == tree(GOLDEN / case / "expected"):
            result = json.loads((GOLDEN / case / "result.json").read_text())
            assert result["skipped"] or result["errors"], case
