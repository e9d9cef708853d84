"""Rancher Fleet ``imageScans`` in fleet.yaml and ``$imagescan`` markers: translation, scope, errors."""

from __future__ import annotations

from image_updater.discover import discover_files

FLEET = """imageScans:
  - tagName: web
    image: registry.example/web
    policy:
      semver:
        range: "^1.0.0"
  - tagName: ui
    image: registry.example/ui
    policy:
      alphabetical: {}
"""
DEPLOY = """apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
    - name: web
      image: registry.example/web:1.0.0 # {"$imagescan": "web"}
    - name: ui
      image: registry.example/ui:a # {"$imagescan": "ui"}
    - name: pinned
      image: registry.example/web:1.0.0 # {"$imagescan": "web:digest"}
"""


def test_scans_become_policies_bound_by_markers() -> None:
    found = discover_files({"app/fleet.yaml": FLEET, "app/pod.yaml": DEPLOY})
    assert found.errors == ()
    rows = [(t.line, t.origin, str(t.policy), t.policy.pin_digest, t.policy_source) for t in found.targets]
    assert rows == [
        (8, "fleet", "semver:^1.0.0", False, "app/fleet.yaml:2"),
        (10, "fleet", "alphabetical:asc", False, "app/fleet.yaml:7"),
        (12, "fleet", "semver:^1.0.0", True, "app/fleet.yaml:2"),
    ]


def test_scans_do_not_reach_outside_their_bundle() -> None:
    found = discover_files({"app/fleet.yaml": FLEET, "other/pod.yaml": DEPLOY})
    assert found.targets == ()
    assert {e.file for e in found.errors} == {"other/pod.yaml"}


def test_bad_entries_are_errors_naming_the_fleet_yaml_line() -> None:
    fleet = """imageScans:
  - image: registry.example/web
    policy: {semver: {range: "^1"}}
  - tagName: web
    image: registry.example/web
    policy: {semver: {range: "not a range"}}
  - tagName: ui
    image: registry.example/ui
    policy: {}
  - tagName: ignored-without-image
"""
    found = discover_files({"fleet.yaml": fleet})
    where = [(e.file, e.line) for e in found.errors]
    assert where == [("fleet.yaml", 2), ("fleet.yaml", 4), ("fleet.yaml", 7)]
    messages = [e.message for e in found.errors]
    assert "tagName is required" in messages[0]
    assert messages[1].startswith("imageScans web: invalid policy")
    assert "policy needs semver.range or alphabetical" in messages[2]


def test_a_marker_with_an_unknown_scan_is_reported() -> None:
    found = discover_files({"fleet.yaml": FLEET, "pod.yaml": DEPLOY.replace('"web"}', '"nope"}')})
    assert [(e.file, e.line, e.message) for e in found.errors] == [
        ("pod.yaml", 8, "setter marker: no image scan nope in fleet.yaml"),
    ]
