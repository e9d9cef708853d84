"""The Keel, Fleet and Compose golden trees (tests/golden/keel-workloads, fleet-imagescans, compose) against
the real registry fixture: the trees' ``registry.example`` images are pushed to a real distribution registry
with the tags of the case's tags.json (build times in list order), the tree is planned and applied with the
CLI, and must then equal <case>/expected byte for byte, with the registry's host and real digests in place
of the stub's."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from image_updater.cli import main
from tests.planning_support import fake_digest
from tests.servers import ImagePusher, RegistryServer

GOLDEN = Path(__file__).parent / "golden"
PLACEHOLDER = "registry.example"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
CASES = ["keel-workloads", "fleet-imagescans", "compose"]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGE_UPDATER_CONFIG", raising=False)
    monkeypatch.setenv("IMAGE_UPDATER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES)
def test_golden_tree_against_the_real_registry(
    case: str, registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tags: dict[str, list[str]] = json.loads((GOLDEN / case / "tags.json").read_text())
    swaps: dict[bytes, bytes] = {}
    with ImagePusher(registry.url) as pusher:
        for image, names in tags.items():
            repository = image.removeprefix(PLACEHOLDER + "/")
            timed = {tag: T0 + timedelta(hours=i) for i, tag in enumerate(names)}
            for tag, digest in pusher.push_many(repository, timed).items():
                swaps[fake_digest(image, tag).encode()] = digest.encode()
    root = tmp_path / "tree"
    shutil.copytree(GOLDEN / case / "original", root)
    for path in root.rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes().replace(PLACEHOLDER.encode(), registry.host.encode()))

    assert main(["plan", str(root), "--format", "json"]) in (0, 1)
    plan = json.loads(capsys.readouterr().out)
    assert plan["updates"], case
    assert {u["origin"] for u in plan["updates"]} <= {"keel", "fleet", "marker", "policy-file"}

    main(["apply", str(root)])
    capsys.readouterr()
    expected: dict[str, bytes] = {}
    for name, text in tree(GOLDEN / case / "expected").items():
        for fake, real in swaps.items():
            text = text.replace(fake, real)
        expected[name] = text.replace(PLACEHOLDER.encode(), registry.host.encode())
    actual = tree(root)
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert actual[name] == expected[name], f"{case}/{name} differs"
