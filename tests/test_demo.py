"""The README's demo command: a real registry, a real bare repository, one pass, the commit shown; with
``--keep`` the registry storage survives in the kept directory and the printed commands serve and query it."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from image_updater.commands.demo import DEMO_CHECK, DEMO_IMAGES


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_demo_keep_keeps_the_registry_storage_and_says_how_to_use_it(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "image_updater", "demo", "--keep"],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    match = re.search(r"^kept: (.+)$", out.stdout, re.MULTILINE)
    assert match, out.stdout
    kept = Path(match[1])
    assert kept.parent == tmp_path and kept.name.startswith("image-updater-demo-")
    assert (kept / "registry" / "storage" / "docker").is_dir()
    lines = out.stdout.splitlines()
    serve = next(shlex.split(line) for line in lines if line.split()[1:2] == ["serve"])
    check = shlex.split(next(line for line in lines if "image-updater check" in line).split("#")[0])
    image, policy, tag = DEMO_CHECK
    assert serve[1:] == ["serve", str(kept / "registry" / "config.yml")]
    assert check == ["image-updater", "check", "-c", str(kept / "config.yaml"), image, "--policy", policy]
    # The printed commands would serve on the demo's port again; another process may hold it by now, so the
    # registry moves to a free port (REGISTRY_HTTP_ADDR overrides its config), and a copy of config.yaml too.
    old = json.loads((kept / "registry" / "config.yml").read_text())["http"]["addr"]
    new = f"127.0.0.1:{_free_port()}"
    assert old in (kept / "config.yaml").read_text()
    config = tmp_path / "config.yaml"
    config.write_text((kept / "config.yaml").read_text().replace(old, new))
    registry_env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    log = (tmp_path / "registry.log").open("wb")
    server = subprocess.Popen(serve, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                              env={**registry_env, "REGISTRY_HTTP_ADDR": new})
    try:
        with httpx.Client(base_url=f"http://{new}", timeout=5, trust_env=False) as client:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, (tmp_path / "registry.log").read_text()
                try:
                    if client.get("/v2/").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the kept registry did not answer within 60 s"
                time.sleep(0.05)  # bounded polling: the deadline above ends it
            for repository, tags in DEMO_IMAGES.items():
                listed = client.get(f"/v2/{repository}/tags/list").json()["tags"]
                assert sorted(listed) == sorted(tags), repository
        answer = subprocess.run(
            [sys.executable, "-m", "image_updater", *check[1:3], str(config), *check[4:], "--format", "json"],
            capture_output=True, text=True, timeout=120, env=env,
        )
        assert answer.returncode == 0, answer.stdout + answer.stderr
        assert json.loads(answer.stdout)["chosen"]["tag"] == tag
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
