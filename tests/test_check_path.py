"""``check IMAGE --path DIR``: the policy of IMAGE's targets under DIR (a migrated tool's settings
included), said where it comes from and what it was translated to, against the real registry."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from image_updater.cli import main
from tests.servers import ImagePusher, RegistryServer

ORIGIN = "https://git.example.com/acme/deploy.git"
APP = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: web
  annotations:
    argocd-image-updater.argoproj.io/image-list: web={host}/acme/web:1.x
    argocd-image-updater.argoproj.io/web.allow-tags: regexp:^1\\.[0-9]+\\.[0-9]+$
    argocd-image-updater.argoproj.io/write-back-method: git
    argocd-image-updater.argoproj.io/write-back-target: kustomization
spec:
  source:
    repoURL: {origin}
    path: apps/web
"""
KUSTOMIZATION = "images:\n- name: {host}/acme/web\n  newTag: 1.0.0\n"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGE_UPDATER_CONFIG", raising=False)
    monkeypatch.setenv("IMAGE_UPDATER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def tree(root: Path, host: str, more: dict[str, str] | None = None) -> Path:
    files = {"argo/app.yaml": APP.format(host=host, origin=ORIGIN),
             "apps/web/kustomization.yaml": KUSTOMIZATION.format(host=host), **(more or {})}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["remote", "add", "origin", ORIGIN]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return root


def config(tmp_path: Path, host: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"registries:\n  - prefix: {host}\n    insecure: true\n")
    return str(path)


def test_check_with_path_uses_and_shows_the_translated_policy_of_a_migrated_application(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ImagePusher(registry.url) as pusher:
        pusher.push_many("acme/web", ["1.0.0", "1.2.0", "1.3.0-rc1", "1.4.0-debug", "2.0.0"])
    root = tree(tmp_path / "repo", registry.host)
    image = f"{registry.host}/acme/web"
    cfg = config(tmp_path, registry.host)

    assert main(["check", image, "--path", str(root), "--explain", "-c", cfg]) == 0
    out = capsys.readouterr().out
    lines = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in out.splitlines()[:6]
             if "  " in line}
    setting = rf"image-list web={image}:1.x, allow-tags regexp:^1\.[0-9]+\.[0-9]+$"
    assert lines["policy"] == (r"semver:1.x [filter=^1\.[0-9]+\.[0-9]+$]  (from aiu-annotation "
                               f"argo/app.yaml:1: {setting}; 1 target)")
    assert lines["current"] == "1.0.0"  # what the kustomization holds: IMAGE names no tag
    assert lines["chosen"] == "1.2.0"
    assert "2.0.0" in out and "1.4.0-debug" in out

    assert main(["check", image, "--path", str(root), "--format", "json", "-c", cfg]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["policy"] == "semver:1.x" and data["chosen"]["tag"] == "1.2.0"
    assert data["from"] == {"origin": "aiu-annotation", "policy_source": "argo/app.yaml:1",
                            "setting": setting,
                            "translated": r"semver:1.x [filter=^1\.[0-9]+\.[0-9]+$]",
                            "targets": ["apps/web/kustomization.yaml:3"]}
    # --policy still decides when given
    assert main(["check", f"{image}:1.0.0", "--path", str(root), "--policy", "semver:*", "-c", cfg,
                 "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["chosen"]["tag"] == "2.0.0" and "from" not in data


def test_check_with_path_refuses_an_image_with_several_policies_or_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = "registry.invalid:5000"
    marker = (f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n"
              f"    image-updater.io/policy: newest\nspec:\n  template:\n    spec:\n      containers:\n"
              f"      - name: web\n        image: {host}/acme/web:1.0.0\n")
    root = tree(tmp_path / "repo", host, {"other/deploy.yaml": marker})
    assert main(["check", f"{host}/acme/web", "--path", str(root)]) == 2
    err = capsys.readouterr().err
    assert "follow 2 different policies" in err and "choose one with --policy" in err
    assert "newest (annotation" in err and "semver:1.x (aiu-annotation argo/app.yaml:1)" in err
    assert main(["check", f"{host}/acme/other", "--path", str(root)]) == 2
    assert "no field under the directory follows a policy for" in capsys.readouterr().err
    assert main(["check", f"{host}/acme/web", "--path", str(root), "--filter", "x"]) == 2
    assert "modifier flags need --policy" in capsys.readouterr().err


def test_an_image_updaters_settings_are_what_its_policy_was_translated_from() -> None:
    from image_updater.commands.check import policy_from_tree
    from image_updater.discover import discover_files
    from image_updater.references import parse_reference

    updater = """apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: shop
  namespace: argocd
spec:
  commonUpdateSettings:
    ignoreTags: ["*-rc*"]
  writeBackConfig:
    method: git
    gitConfig:
      writeBackTarget: kustomization
  applicationRefs:
    - namePattern: web
      images:
        - alias: web
          imageName: r.example/acme/web:~1.0
          commonUpdateSettings:
            updateStrategy: semver
"""
    app = APP.format(host="r.example", origin=ORIGIN).split("  annotations:")[0] + (
        "  namespace: argocd\nspec:\n  source:\n    repoURL: " + ORIGIN + "\n    path: apps/web\n")
    found = discover_files({"argo/updater.yaml": updater, "argo/app.yaml": app,
                            "apps/web/kustomization.yaml": KUSTOMIZATION.format(host="r.example")},
                           repo_url=ORIGIN)
    policy = policy_from_tree(parse_reference("r.example/acme/web"), found.targets, found.translations)
    assert (policy.origin, policy.source, str(policy.policy)) == (
        "aiu-imageupdater", "argo/updater.yaml:1", "semver:~1.0")
    assert policy.setting == "imageName r.example/acme/web:~1.0, updateStrategy semver, ignoreTags *-rc*"
    assert policy.note == "  (from aiu-imageupdater argo/updater.yaml:1: " + policy.setting + "; 1 target)"
