"""`apply PATH --commit [--push]`: the CI-job pattern of editing, committing and pushing its own checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.servers.gitserver import commit_to_bare
from tests.test_writeback import T0, git, log_subjects, run_cli, show

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    image-updater.io/policy: "semver:~1.0"
spec:
  template:
    spec:
      containers:
        - name: web
          image: {host}/team/web:1.0.0
"""


def setup(tmp_path: Path, registry: Any, pusher: Any, bare_repo: Any) -> tuple[Path, Path, Path]:
    for tag in ["1.0.0", "1.0.7", "1.1.0"]:
        pusher.push("team/web", tag, created=T0)
    files = {"deploy/web/deployment.yaml": DEPLOYMENT.format(host=registry.host), "README.md": "x\n"}
    bare = bare_repo(files)
    clone = tmp_path / "checkout"
    subprocess.run(["git", "clone", "--quiet", str(bare), str(clone)], check=True)
    config = tmp_path / "ci.yaml"
    config.write_text(
        f"cache_dir: {tmp_path / 'cache'}\n"
        "commit: {author_name: CI Bot, author_email: ci@example.com, skip_ci: true}\n"
        f"registries: [{{prefix: '{registry.host}', insecure: true}}]\n"
    )
    return bare, clone, config


def test_apply_commit_push_from_a_subdirectory(
    tmp_path: Path, registry: Any, pusher: Any, bare_repo: Any
) -> None:
    bare, clone, config = setup(tmp_path, registry, pusher, bare_repo)
    (clone / "scratch.txt").write_text("a CI job's own file, never committed\n")
    out = run_cli("apply", str(clone / "deploy"), "--push", "-c", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "team/web:1.0.7" in show(bare, "deploy/web/deployment.yaml")
    subject = log_subjects(bare)[0]
    assert subject.endswith("[skip ci]")
    assert git("log", "-1", "--format=%an", "main", cwd=bare).strip() == "CI Bot"
    files = git("show", "--name-only", "--format=", "main", cwd=bare).split()
    assert files == ["deploy/web/deployment.yaml"]
    assert (clone / "scratch.txt").exists()  # the checkout is never cleaned


def test_apply_commit_without_push_leaves_the_remote_alone(
    tmp_path: Path, registry: Any, pusher: Any, bare_repo: Any
) -> None:
    bare, clone, config = setup(tmp_path, registry, pusher, bare_repo)
    before = git("rev-parse", "main", cwd=bare)
    out = run_cli("apply", str(clone), "--commit", "-c", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    assert git("rev-parse", "main", cwd=bare) == before
    assert git("log", "-1", "--format=%s", cwd=clone).startswith("Update 1 image")
    assert git("status", "--porcelain", cwd=clone) == ""


def test_a_rejected_push_is_reported_and_never_forced(
    tmp_path: Path, registry: Any, pusher: Any, bare_repo: Any
) -> None:
    bare, clone, config = setup(tmp_path, registry, pusher, bare_repo)
    human = commit_to_bare(bare, {"NOTES.md": "human\n"})
    out = run_cli("apply", str(clone), "--push", "-c", str(config))
    assert out.returncode == 1
    assert "rejected" in out.stderr or "moved on" in out.stderr
    assert git("rev-parse", "main", cwd=bare).strip() == human
