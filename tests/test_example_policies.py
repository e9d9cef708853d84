"""The example policy files in policies/ (one per policy kind) are valid, and each picks what its comment
says from a realistic tag list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import pytest

from image_updater.discover import discover_files
from image_updater.discover._policies import PolicyIndex
from image_updater.policies import PolicyKind, TagInfo
from image_updater.yamledit import parse_yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "policies"
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def definitions() -> dict[str, PolicyIndex]:
    out = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        index = PolicyIndex()
        for doc in parse_yaml(path.read_text(), filename=path.name).documents:
            assert index.add_document(path.name, doc)
        index.finish()
        out[path.name] = index
    return out


def test_every_example_is_valid_and_every_kind_has_one() -> None:
    found = definitions()
    kinds = set()
    for name, index in found.items():
        assert index.errors == [], name
        (definition,) = index.defs
        assert definition.policy is not None and definition.image is not None, name
        kinds.add(definition.policy.kind)
        assert name == f"{definition.policy.kind}.yaml"
    assert kinds == set(get_args(PolicyKind))


def test_examples_validate_through_discovery() -> None:
    files = {f"policies/{p.name}": p.read_text() for p in EXAMPLES.glob("*.yaml")}
    discovery = discover_files(files)
    assert discovery.errors == () and discovery.policies == len(files)


def tags(*names: str, days: dict[str, int] | None = None) -> list[TagInfo]:
    days = days or {}
    return [TagInfo(n, created=NOW - timedelta(days=days[n]) if n in days else None) for n in names]


@pytest.mark.parametrize(("example", "candidates", "current", "chosen"), [
    ("semver.yaml", tags("1.26.3", "1.27.0", "1.27.3", "1.27.4-alpine", "1.28.0-rc1", "2.0.0",
                         "1.27.5",
                         days={"1.26.3": 90, "1.27.0": 60, "1.27.3": 10, "1.27.4-alpine": 5, "1.28.0-rc1": 3,
                               "2.0.0": 2, "1.27.5": 0}), "1.27.0", "1.27.3"),
    ("glob.yaml", tags("develop-v41", "develop-v42", "main-v50", days={"develop-v41": 2, "develop-v42": 1,
                                                                        "main-v50": 0}), "develop-v41",
     "develop-v42"),
    ("regex.yaml", tags("3.0.0", "3.2.1", "3.3.0-amd64", "2.9.9", days={"3.0.0": 50, "3.2.1": 20,
                                                                          "3.3.0-amd64": 1, "2.9.9": 0}),
     "3.0.0", "3.2.1"),
    ("alphabetical.yaml", tags("main-20240430T090000Z", "main-20240501T120000Z", "pr-99", "zz-feature"),
     "main-20240430T090000Z", "main-20240501T120000Z"),
    ("numerical.yaml", tags("main-3f2a9c1-1187", "main-0000000-999", "main-1111111-1190", "pr-2000"),
     "main-3f2a9c1-1187", "main-1111111-1190"),
    ("newest.yaml", tags("a1", "b2-debug", "pr-7", "c3", days={"a1": 5, "b2-debug": 0, "pr-7": 0, "c3": 1}),
     "a1", "c3"),
    ("digest.yaml", tags("3.19", "3.20", "3.21"), "3.20", "3.20"),
])
def test_each_example_picks_what_its_comment_says(
    example: str, candidates: list[TagInfo], current: str, chosen: str
) -> None:
    (definition,) = definitions()[example].defs
    assert definition.policy is not None
    if definition.policy.platforms:  # regex.yaml: platform filtering needs the registry's answer
        candidates = [TagInfo(t.tag, t.created, t.digest, frozenset(definition.policy.platforms))
                      for t in candidates]
    picked = definition.policy.choose(candidates, current=current, now=NOW)
    assert picked is not None and picked.tag == chosen
