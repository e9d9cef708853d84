"""The README's demo command: a real registry, a real bare repository, one pass, the commit shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_one_pass_and_shows_the_commit(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, "-m", "image_updater", "demo", "--workdir", str(work)],
        capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 updates in 3 files" in out.stdout
    assert "Update 4 images in 3 files" in out.stdout
    for line in (
        "+        image: quay.io/weaveworks/helloworld:develop-v1.2   # built by CI from the develop branch",
        '+        image: "nginx:1.25.4"',
        '+    newTag: 6.5.4 # {"$imagepolicy": "flux-system:podinfo:tag"}',
        "+  tag: 7.2.5-alpine   ## kept current by image-updater, see policies/redis.yaml",
    ):
        assert line in out.stdout
    log = subprocess.run(["git", "log", "--format=%s", "main"], cwd=work / "gitops.git",
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert log == ["Update 4 images in 3 files", "Example GitOps repository"]
    # the demo edits its own clone, never the example files of the source tree
    example = Path(__file__).parents[1] / "examples/gitops-repo/apps/helloworld/deployment.yaml"
    assert "develop-v1.0" in example.read_text()
