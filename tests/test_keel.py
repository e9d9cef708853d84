"""Keel's settings translated onto our policies (cases from Keel's internal/policy tests) and their place in
discovery: annotations before labels, init containers, the Helm ``keel:`` block, precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from image_updater.cli import main
from image_updater.discover import discover_files
from image_updater.discover._keel import KeelSettings, translate
from image_updater.errors import InvalidPolicy
from image_updater.policies import TagInfo


def choose(policy: str, current: str, tags: list[str], *, match_tag: bool = False,
           prerelease: bool = True) -> str | None:
    translated = translate(KeelSettings(policy, match_tag, prerelease, 1), current)
    assert translated is not None
    chosen = translated.choose([TagInfo(tag=t) for t in tags], current=current)
    return chosen.tag if chosen is not None else None


# Keel's shouldUpdate table (internal/policy/semver_test.go): (policy, current, new, update?)
KEEL_CASES = [
    ("major", "1.4.5", "2.4.5", True),
    ("major", "1.4.5", "1.4.5", False),
    ("major", "1.4.5", "1.4.6", True),
    ("minor", "1.4.5", "2.4.5", False),
    ("minor", "1.4.5", "1.5.0", True),
    ("patch", "1.4.5", "1.5.0", False),
    ("patch", "1.4.5", "1.4.6", True),
    ("all", "1.4.5", "1.4.6-rc1", True),
    ("major", "1.4.5", "1.4.6-rc1", False),
    ("major", "1.4.5-rc1", "1.4.6-rc1", True),
    ("major", "1.4.5-rc1", "1.4.6-rc2", False),
    ("patch", "1.4.5-alpha", "1.4.6-alpha", True),
    ("patch", "1.4.5-alpha", "1.5.0-alpha", False),
    ("major", "1.4.5", "0.9.0", False),
    ("major", "v1.4.5", "v2.0.0", True),
]


@pytest.mark.parametrize(("policy", "current", "new", "update"), KEEL_CASES)
def test_semver_policies_follow_keel(policy: str, current: str, new: str, update: bool) -> None:
    chosen = choose(policy, current, [current, new])
    assert (chosen == new and new != current) is update


def test_match_prerelease_false_lets_prereleases_in() -> None:
    assert choose("patch", "1.4.5", ["1.4.5", "1.4.6-rc1"], prerelease=False) == "1.4.6-rc1"
    assert choose("patch", "1.4.5", ["1.4.5", "1.4.6-rc1"]) == "1.4.5"


def test_latest_moves_to_any_version() -> None:
    assert choose("minor", "latest", ["1.0.0", "3.1.0"]) == "3.1.0"


def test_glob_orders_by_name_not_by_number() -> None:
    assert choose("glob:build-*", "build-100", ["build-100", "build-99", "build-20", "other"]) == "build-99"


def test_regexp_orders_by_name_or_compare_group() -> None:
    releases = ["release-1", "release-3", "release-20"]
    assert choose("regexp:^release-[0-9]+$", "release-1", releases) == "release-3"
    tags = ["a-2-b", "z-1-b", "m-3-b"]
    assert choose("regexp:^[a-z]-(?P<compare>[0-9])-b$", "a-2-b", tags) == "m-3-b"


def test_force_with_match_tag_tracks_the_digest_of_the_same_tag() -> None:
    policy = translate(KeelSettings("force", True, True, 1), "stable")
    assert policy is not None and str(policy) == "digest:stable"


def test_force_without_match_tag_never_downgrades() -> None:
    assert choose("force", "1.2.0", ["1.2.0", "1.1.0", "1.3.0-rc1"]) == "1.3.0-rc1"
    policy = translate(KeelSettings("force", False, True, 1), "latest")
    assert policy is not None and policy.kind == "digest"


def test_never_and_unknown_policies() -> None:
    assert translate(KeelSettings("never", False, True, 1), "1.0.0") is None
    with pytest.raises(InvalidPolicy, match="unknown Keel policy 'sometimes'"):
        translate(KeelSettings("sometimes", False, True, 1), "1.0.0")
    with pytest.raises(InvalidPolicy, match="not a semantic version"):
        translate(KeelSettings("minor", False, True, 1), "main")


def workload(meta: str, image: str = "registry.example/app:1.0.0") -> str:
    return (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n" + meta
        + "spec:\n  template:\n    spec:\n      containers:\n        - name: app\n"
        f"          image: {image}\n"
    )


def test_annotation_wins_over_label_and_carries_its_own_options() -> None:
    text = workload(
        "  labels:\n    keel.sh/policy: force\n    keel.sh/matchTag: \"true\"\n"
        "  annotations:\n    keel.sh/policy: minor\n"
    )
    found = discover_files({"app.yaml": text})
    assert [(t.origin, str(t.policy), t.policy_source) for t in found.targets] == [
        ("keel", "semver:>=1.0.0 <2.0.0", "app.yaml:9"),
    ]


def test_bad_keel_policy_is_an_error_naming_file_line_and_image() -> None:
    found = discover_files({"app.yaml": workload("  annotations:\n    keel.sh/policy: sometimes\n")})
    assert not found.targets
    assert [(e.file, e.line, e.image) for e in found.errors] == [("app.yaml", 6, "registry.example/app")]


POLICY_FILE = """apiVersion: image-updater.io/v1alpha1
kind: ImagePolicy
metadata:
  name: app
spec:
  image: registry.example/app
  policy: semver:~1.0
  targets:
    - path: "*.yaml"
"""


def test_a_policy_file_wins_over_keel() -> None:
    text = workload("  annotations:\n    keel.sh/policy: major\n")
    found = discover_files({"app.yaml": text, "policies/app.yaml": POLICY_FILE})
    assert [(t.origin, str(t.policy)) for t in found.targets] == [("policy-file", "semver:~1.0")]


def test_a_marker_wins_over_keel() -> None:
    text = workload("  annotations:\n    keel.sh/policy: major\n",
                    'registry.example/app:1.0.0 # {"$imagepolicy": "app"}')
    policy = POLICY_FILE.replace('  targets:\n    - path: "*.yaml"\n', "")
    found = discover_files({"app.yaml": text, "policies/app.yaml": policy})
    assert [(t.origin, str(t.policy)) for t in found.targets] == [("marker", "semver:~1.0")]


def test_helm_values_block_with_a_missing_path_is_reported() -> None:
    values = "image:\n  repository: registry.example/app\nkeel:\n  policy: patch\n  images:\n" \
             "    - repository: image.repository\n      tag: image.tag\n"
    found = discover_files({"values.yaml": values})
    assert not found.targets
    assert [(e.file, e.line, e.message) for e in found.errors] == [
        ("values.yaml", 6, "keel.images: image.tag is not a string in this file")
    ]


def test_validate_names_the_origin_and_shows_the_translated_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "app.yaml").write_text(workload("  annotations:\n    keel.sh/policy: \"glob:build-*\"\n",
                                                "registry.example/app:build-1"))
    assert main(["validate", "-v", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "alphabetical:asc [filter=^build\\-.*$, flavour=any] (keel at app.yaml:6; Deployment/app" in out
    assert main(["validate", "--format", "json", str(tmp_path)]) == 0
    found = json.loads(capsys.readouterr().out)
    targets = [e for e in found["found"] if e.get("origin") == "keel"]
    assert [(t["policy"], t["translated"]) for t in targets] == [
        ("alphabetical:asc", "alphabetical:asc [filter=^build\\-.*$, flavour=any]")]


def test_keel_block_in_a_flux_helm_release_values() -> None:
    release = """apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: web
spec:
  values:
    image:
      repository: registry.example/app
      tag: 1.0.0
    keel:
      policy: patch
      images:
        - repository: image.repository
          tag: image.tag
"""
    found = discover_files({"release.yaml": release})
    assert [(t.line, t.part, t.origin, str(t.policy), t.resource) for t in found.targets] == [
        (9, "tag", "keel", "semver:>=1.0.0 <1.1.0", "HelmRelease/web")]
