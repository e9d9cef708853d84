"""``validate``'s listing: ``-v`` in text and ``--format json`` list every automation source found (policy
files and Flux ImagePolicy objects, fields kept current by annotations, markers and policy files: workload
containers, kustomize ``images:`` entries, Helm values) with file, line, image, policy and origin, besides
every problem; the plain text output stays problems and counts only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from image_updater.cli import main

ROOT = Path(__file__).resolve().parent.parent
LAYOUT = ROOT / "tests" / "data" / "gitops"
EXAMPLE = ROOT / "examples" / "gitops-repo"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IMAGE_UPDATER_CONFIG", "IMAGE_UPDATER_POLICY_DIRS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMAGE_UPDATER_CACHE_DIR", str(tmp_path / "cache"))


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["validate", *args])
    return code, capsys.readouterr().out


def test_json_lists_every_source_found(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = validate(capsys, str(LAYOUT), "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert (report["files"], report["policies"], report["targets"], report["skipped"]) == (14, 4, 9, 1)
    assert report["errors"] == []
    found = {(e["file"], e["line"]): e for e in report["found"]}
    assert [(e["file"], e["line"]) for e in report["found"]] == sorted(found)  # file and line order
    assert sum(e["kind"] in ("policy", "flux-policy") for e in found.values()) == 4
    assert sum(e["kind"] not in ("policy", "flux-policy") for e in found.values()) == 9
    host = "registry.invalid:5000/acme"
    assert found["policies/nginx.yaml", 2] == {
        "file": "policies/nginx.yaml", "line": 2, "kind": "policy", "name": "production:nginx",
        "image": f"{host}/nginx", "policy": "semver:~1.25", "origin": "policy-file",
        "targets": ["apps/production/kustomization.yaml"], "valid": True,
    }
    assert found["clusters/production/image-automation.yaml", 12]["kind"] == "flux-policy"
    assert found["apps/production/kustomization.yaml", 15] == {
        "file": "apps/production/kustomization.yaml", "line": 15, "kind": "kustomize",
        "resource": "Kustomization", "container": None, "image": f"{host}/nginx", "value": "1.25.1",
        "policy": "semver:~1.25", "origin": "policy-file", "policy_source": "policies/nginx.yaml:2",
    }
    marker = found["apps/production/kustomization.yaml", 11]
    assert (marker["kind"], marker["origin"], marker["value"]) == ("marker", "marker", "6.5.0")
    values = found["charts/cache/values.yaml", 5]
    assert (values["kind"], values["origin"]) == ("helm-values", "policy-file")
    assert values["image"] == f"{host}/redis"
    flux_v1 = found["legacy/flux-v1/helloworld.yaml", 24]
    assert (flux_v1["kind"], flux_v1["origin"], flux_v1["container"], flux_v1["policy"]) == (
        "container", "annotation", "flask", "glob:develop-v*")
    release = found["legacy/flux-v1/worker-release.yaml", 17]
    assert (release["kind"], release["origin"]) == ("helm-values", "annotation")
    assert report["skipped_fields"] == [{
        "file": "legacy/flux-v1/locked.yaml", "line": 16, "image": f"{host}/locked",
        "reason": "locked (fluxcd.io/locked): waiting for the database migration",
    }]


def test_verbose_text_lists_them_too(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = validate(capsys, "-v", str(EXAMPLE))
    assert code == 0
    assert out.splitlines() == [
        "apps/helloworld/deployment.yaml:25: container quay.io/weaveworks/helloworld:develop-v1.0, "
        "glob:develop-v* (annotation at apps/helloworld/deployment.yaml:11; Deployment/demo/helloworld, "
        "container flask)",
        "apps/helloworld/deployment.yaml:29: container nginx:1.25.3, semver:~1.25 (annotation at "
        "apps/helloworld/deployment.yaml:12; Deployment/demo/helloworld, container nginx)",
        "apps/podinfo/kustomization.yaml:9: marker ghcr.io/stefanprodan/podinfo 6.5.0, semver:6.5.x "
        "(marker at clusters/production/image-automation.yaml:11; Kustomization)",
        "apps/redis/values.yaml:7: helm-values docker.io/redis 7.2.4-alpine, semver:~7.2 (policy-file at "
        "policies/redis.yaml:3; container image)",
        "clusters/production/image-automation.yaml:11: Flux ImagePolicy flux-system:podinfo: "
        "ghcr.io/stefanprodan/podinfo semver:6.5.x",
        "policies/redis.yaml:3: policy apps:redis: docker.io/library/redis semver:~7.2 "
        "(targets: apps/redis/values.yaml)",
        "6 files, 2 policies, 4 targets, 0 skipped: ok",
    ]
    code, quiet = validate(capsys, str(EXAMPLE))
    assert quiet == "6 files, 2 policies, 4 targets, 0 skipped: ok\n"  # without -v: problems and counts


def test_listing_and_problems_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "repo"
    shutil.copytree(LAYOUT, root)
    (root / "policies" / "broken.yaml").write_text(
        "apiVersion: image-updater.io/v1alpha1\nkind: ImagePolicy\nmetadata: {name: broken}\n"
        "spec:\n  image: acme/app\n  policy: semver:~>1.x.garbage\n"
    )
    code, out = validate(capsys, "--verbose", str(root))
    assert code == 1
    lines = out.splitlines()
    assert "policies/broken.yaml:1: policy broken: invalid (see below)" in lines
    problem = next(i for i, line in enumerate(lines) if line.startswith("policies/broken.yaml:6: "))
    assert problem > lines.index("policies/broken.yaml:1: policy broken: invalid (see below)")
    assert lines[-1] == "15 files, 5 policies, 9 targets, 1 skipped: 1 problem"
    code, out = validate(capsys, "--format", "json", str(root))
    report = json.loads(out)
    broken = next(e for e in report["found"] if e["file"] == "policies/broken.yaml")
    assert (broken["valid"], broken["policy"]) == (False, None)
    assert [e["line"] for e in report["errors"]] == [6]
