"""Argo CD Image Updater's git-branch setting and write-back method (issue 12).

``git-branch: base[:target]`` (0.x) / ``gitConfig.branch`` (1.x): an Application whose base is not the branch
written here is skipped with that reason (AIU would commit elsewhere); a target branch is noted beside its
updates. ``write-back-method: argocd`` (AIU's default) is written to Git, and ``validate`` says where.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from image_updater.cli import main
from image_updater.discover import discover_files
from tests.servers import ImagePusher, RegistryServer
from tests.test_aiu import APP, GIT_TARGET, KUSTOMIZATION, ORIGIN, isolated, run_once

__all__ = ["isolated"]  # the autouse fixture of test_aiu: no config, cache or docker config of the user

BRANCH = "    argocd-image-updater.argoproj.io/git-branch: {}\n"


def files(extra: str) -> dict[str, str]:
    return {"argo/app.yaml": APP.format(namespace="argocd", extra=GIT_TARGET + extra),
            "apps/web/kustomization.yaml": KUSTOMIZATION.format(marker="")}


def test_a_base_branch_other_than_the_one_written_skips_the_application_with_the_reason() -> None:
    found = discover_files(files(BRANCH.format("release")), repo_url=ORIGIN, branch="main")
    assert found.targets == ()
    reason = ("Application argocd/web: git-branch 'release': AIU commits to branch release, but this source "
              "writes branch main; not updated here (a source for branch release updates its images)")
    assert [(s.file, s.line, s.image, s.reason) for s in found.skipped] == [
        ("argo/app.yaml", 10, None, reason)]
    assert [w.reason for w in found.warnings] == [reason]
    # the same setting on the branch written: planned, nothing to say
    same = discover_files(files(BRANCH.format("release")), repo_url=ORIGIN, branch="release")
    assert [t.file for t in same.targets] == ["apps/web/kustomization.yaml"]
    assert same.skipped == () and same.warnings == ()


@pytest.mark.parametrize("setting", [":image-updater-{{.SHA256}}", "main:image-updater-{{.SHA256}}"])
def test_a_target_branch_is_noted_and_the_images_are_planned_on_the_branch_written(setting: str) -> None:
    found = discover_files(files(BRANCH.format(f"'{setting}'")), repo_url=ORIGIN, branch="main")
    assert [t.file for t in found.targets] == ["apps/web/kustomization.yaml"]
    note = (f"Application argocd/web: git-branch {setting!r}: AIU would push its commit to branch "
            "'image-updater-{{.SHA256}}'; image-updater commits to main itself (a source's pull_requests: "
            "setting keeps updates on their own branches)")
    assert [(s.line, s.reason) for s in found.skipped] == [(10, note)]
    assert [w.reason for w in found.warnings] == [note]


def test_an_unknown_branch_plans_the_application_and_says_so() -> None:
    found = discover_files(files(BRANCH.format("release")), repo_url=ORIGIN)
    assert [t.file for t in found.targets] == ["apps/web/kustomization.yaml"]
    assert [w.reason for w in found.warnings] == [
        "Application argocd/web: git-branch 'release': AIU commits to branch release; the branch written "
        "here is not known (a detached HEAD?)"]


def test_a_git_branch_with_two_colons_is_not_a_branch_setting() -> None:
    found = discover_files(files(BRANCH.format("'a:b:c'")), repo_url=ORIGIN, branch="main")
    assert found.targets == ()
    assert [s.reason for s in found.skipped] == [
        "Application argocd/web: git-branch 'a:b:c' is not base[:target]; its images are not updated"]


def with_revision(revision: str, extra: str = "") -> dict[str, str]:
    tree = files(extra)
    tree["argo/app.yaml"] += f"    targetRevision: {revision}\n"
    return tree


def test_without_git_branch_the_tracking_branch_decides_as_aiu_commits_to_target_revision() -> None:
    other = discover_files(with_revision("release"), repo_url=ORIGIN, branch="main")
    assert other.targets == ()
    reason = ("Application argocd/web: targetRevision release: AIU commits to the Application's tracking "
              "branch, but this source writes branch main; not updated here (a source for that branch "
              "updates its images, or set git-branch)")
    assert [(s.file, s.line, s.reason) for s in other.skipped] == [("argo/app.yaml", 1, reason)]
    # the branch written, HEAD or no revision (the default branch): planned, nothing to say
    for revision in ("main", "HEAD", "''"):
        found = discover_files(with_revision(revision), repo_url=ORIGIN, branch="main")
        assert [t.file for t in found.targets] == ["apps/web/kustomization.yaml"], revision
        assert found.skipped == () and found.warnings == (), revision
    # an unknown branch written (plan DIR on a detached HEAD): planned
    unknown = discover_files(with_revision("release"), repo_url=ORIGIN)
    assert [t.file for t in unknown.targets] == ["apps/web/kustomization.yaml"]
    # git-branch, when set, is what AIU follows: the revision is not looked at
    set_ = discover_files(with_revision("v1.2.0", BRANCH.format("main")), repo_url=ORIGIN, branch="main")
    assert [t.file for t in set_.targets] == ["apps/web/kustomization.yaml"] and set_.skipped == ()


IMAGE_UPDATER = """apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: web
  namespace: argocd
spec:
  writeBackConfig:
    method: git
    gitConfig:
      writeBackTarget: kustomization
      branch: {branch}
  applicationRefs:
    - namePattern: web
      images:
        - alias: web
          imageName: r.example/acme/web:1.x
"""
PLAIN_APP = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: web
  namespace: argocd
spec:
  source:
    repoURL: https://git.example.com/acme/deploy.git
    path: apps/web
"""


def test_an_image_updaters_git_config_branch_is_read_and_reported_where_it_is_set() -> None:
    tree = {"argo/updater.yaml": IMAGE_UPDATER.format(branch="release"), "argo/app.yaml": PLAIN_APP,
            "apps/web/kustomization.yaml": KUSTOMIZATION.format(marker="")}
    found = discover_files(tree, repo_url=ORIGIN, branch="main")
    assert found.targets == ()
    assert [(s.file, s.line, s.reason) for s in found.skipped] == [(
        "argo/updater.yaml", 11,
        "Application argocd/web: gitConfig.branch 'release': AIU commits to branch release, but this source "
        "writes branch main; not updated here (a source for branch release updates its images)")]
    tree["argo/updater.yaml"] = IMAGE_UPDATER.format(branch="main")
    assert [t.origin for t in discover_files(tree, repo_url=ORIGIN, branch="main").targets] == [
        "aiu-imageupdater"]


ARGOCD_APPS = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: web
  annotations:
    argocd-image-updater.argoproj.io/image-list: web=r.example/acme/web:1.x
spec:
  source:
    repoURL: https://git.example.com/acme/deploy.git
    path: apps/web
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: api
  namespace: team-a
  annotations:
    argocd-image-updater.argoproj.io/image-list: api=r.example/acme/api
    argocd-image-updater.argoproj.io/write-back-method: argocd
    argocd-image-updater.argoproj.io/write-back-target: kustomization
spec:
  source:
    repoURL: https://git.example.com/acme/deploy.git
    path: apps/api
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: rel
  annotations:
    argocd-image-updater.argoproj.io/image-list: web=r.example/acme/web:1.x
    argocd-image-updater.argoproj.io/write-back-method: git
    argocd-image-updater.argoproj.io/git-branch: release
spec:
  source:
    repoURL: https://git.example.com/acme/deploy.git
    path: apps/web
"""


def checkout(root: Path) -> Path:
    (root / "argo").mkdir(parents=True)
    (root / "argo" / "apps.yaml").write_text(ARGOCD_APPS)
    for app in ("web", "api"):
        (root / "apps" / app).mkdir(parents=True)
        (root / "apps" / app / "kustomization.yaml").write_text("resources: []\n")
    for args in (["init", "-q", "-b", "main"], ["remote", "add", "origin", ORIGIN]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return root


def test_validate_says_where_argocd_write_backs_go_and_which_applications_another_branch_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = checkout(tmp_path / "repo")
    assert main(["validate", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        "argo/apps.yaml:1: warning: Application web: no write-back-method (AIU's default, argocd): AIU "
        "writes to the Application in the cluster; image-updater writes Git instead, to "
        "apps/web/.argocd-source-web.yaml",
        "argo/apps.yaml:12: warning: Application team-a/api: write-back-method argocd: AIU writes to the "
        "Application in the cluster; image-updater writes Git instead, to "
        "apps/api/.argocd-source-team-a_api.yaml",
        "argo/apps.yaml:33: warning: Application rel: git-branch 'release': AIU commits to branch release, "
        "but this source writes branch main; not updated here (a source for branch release updates its "
        "images)",
    ]
    assert lines[3].endswith(": ok") and len(lines) == 4
    assert main(["validate", "--format", "json", str(root)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(w["file"], w["line"], w["image"]) for w in data["warnings"]] == [
        ("argo/apps.yaml", 1, None), ("argo/apps.yaml", 12, None), ("argo/apps.yaml", 33, None)]
    assert [(f["file"], f["origin"], f["action"]) for f in data["found"]] == [
        ("apps/api/.argocd-source-team-a_api.yaml", "aiu-annotation", "create"),
        ("apps/web/.argocd-source-web.yaml", "aiu-annotation", "create")]
    assert [s["reason"] for s in data["skipped_fields"]] == [data["warnings"][2]["reason"]]
    # on the release branch the third Application is planned, and the other two are still written to Git
    subprocess.run(["git", "checkout", "-q", "-b", "release"], cwd=root, check=True)
    assert main(["validate", "--format", "json", str(root)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["warnings"]) == 2 and data["skipped_fields"] == []
    assert sorted(f["file"] for f in data["found"]) == [
        "apps/api/.argocd-source-team-a_api.yaml", "apps/web/.argocd-source-rel.yaml",
        "apps/web/.argocd-source-web.yaml"]


def test_run_once_writes_the_sources_branch_only_for_applications_whose_base_it_is(
    registry: RegistryServer, tmp_path: Path, bare_repo: Any
) -> None:
    with ImagePusher(registry.url) as pusher:
        pusher.push_many("acme/web", ["1.0.0", "1.2.0", "2.0.0"])
    url = str(tmp_path / "remote" / "repo.git")
    apps = "---\n".join(
        APP.format(namespace="argocd", extra=GIT_TARGET + BRANCH.format(branch))
        .replace("name: web\n", f"name: {name}\n", 1).replace("path: apps/web", f"path: apps/{name}")
        .replace("r.example", registry.host).replace(ORIGIN, url)
        for name, branch in (("rel", "release"), ("auto", "':auto-{{.SHA256}}'"), ("base", "main")))
    kustomization = f"images:\n- name: {registry.host}/acme/web\n  newTag: 1.0.0\n"
    bare = bare_repo({"argo/apps.yaml": apps, **{f"apps/{name}/kustomization.yaml": kustomization
                                                 for name in ("rel", "auto", "base")}},
                     parent=tmp_path / "remote")
    run_once(tmp_path, url, registry)

    def show(name: str) -> str:
        return subprocess.run(["git", "show", f"main:apps/{name}/kustomization.yaml"], cwd=bare, check=True,
                              capture_output=True, text=True).stdout

    assert show("rel") == kustomization  # AIU commits to release: not this source's branch
    assert show("auto") == show("base") == kustomization.replace("1.0.0", "1.2.0")
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)"], cwd=bare, check=True,
                          capture_output=True, text=True).stdout.split()
    assert refs == ["refs/heads/main"]  # no AIU-style target branch is pushed
