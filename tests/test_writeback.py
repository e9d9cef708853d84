"""One pass end to end (issue 5): real registry, real bare repositories, the `run --once` command.

Covers: one commit with exactly the expected changes and a readable message; a second pass makes no commit;
a human commit racing our push survives (our commit is rebuilt on top, nothing force-pushed); persistent
rejection is bounded; a stop before the push leaves the remote untouched and the next pass completes;
a pass killed with SIGKILL leaves the remote either untouched or complete and the next pass recovers;
`push_branch` mode; HTTPS token pushes; canary secrets never leak into output, commits or .git/config.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from image_updater.gitrepo import GitRepo, workdir_for
from image_updater.settings import load_settings
from image_updater.writeback import make_client, run_source
from tests.servers.gitserver import commit_to_bare

T0 = datetime(2024, 1, 1, tzinfo=UTC)

DEPLOYMENT = """\
# the web tier
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: prod
  annotations:
    image-updater.io/policy.web: "semver:^1.0"   # stay on 1.x
spec:
  template:
    spec:
      containers:
        - name: web
          image: {host}/team/web:1.0.0   # keep this comment
          ports:
            - containerPort: 8080
        - name: sidecar
          image: {host}/team/sidecar:2.0
"""

KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [deployment.yaml]
images:
  - name: {host}/team/api
    newTag: "0.9"  # {{"$imagepolicy": "apps:api:tag"}}
"""

POLICY = """\
apiVersion: image-updater.io/v1alpha1
kind: ImagePolicy
metadata:
  name: api
  namespace: apps
spec:
  image: {host}/team/api
  policy: "numerical"
"""


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def show(bare: Path, path: str, rev: str = "main") -> str:
    return git("show", f"{rev}:{path}", cwd=bare)


def log_subjects(bare: Path, rev: str = "main") -> list[str]:
    return git("log", "--format=%s", rev, cwd=bare).splitlines()


@pytest.fixture
def seeded(registry: Any, pusher: Any) -> Any:
    for tag, days in [("1.0.0", 1), ("1.1.0", 2), ("1.2.0", 3), ("2.0.0", 4)]:
        pusher.push("team/web", tag, created=T0 + timedelta(days=days))
    for tag in ["0.9", "0.10", "1", "9", "10"]:
        pusher.push("team/api", tag, created=T0)
    return registry


@pytest.fixture
def repo_files(seeded: Any) -> dict[str, str]:
    host = seeded.host
    return {
        "apps/deployment.yaml": DEPLOYMENT.format(host=host),
        "apps/kustomization.yaml": KUSTOMIZATION.format(host=host),
        "policies/api.yaml": POLICY.format(host=host),
        "README.md": "docs\n",
    }


def write_config(tmp_path: Path, registry: Any, url: str, **extra: Any) -> Path:
    lines = [
        f"cache_dir: {tmp_path / 'cache'}",
        "sources:",
        "  - name: demo",
        f"    url: {url}",
        "    branch: main",
    ]
    for key, value in extra.get("source", {}).items():
        lines.append(f"    {key}: {value}")
    lines += [
        "commit:",
        "  author_name: Image Bot",
        "  author_email: bot@example.com",
        "registries:",
        f"  - prefix: {registry.host}",
        "    insecure: true",
    ]
    lines += extra.get("tail", [])
    config = tmp_path / "config.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "image_updater", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


EXPECTED_DEPLOYMENT_LINE = "          image: {host}/team/web:1.2.0   # keep this comment\n"


def test_run_once_commits_exactly_the_expected_changes_then_nothing(
    tmp_path: Path, seeded: Any, bare_repo: Any, repo_files: dict[str, str]
) -> None:
    bare = bare_repo(repo_files)
    config = write_config(tmp_path, seeded, str(bare))

    first = run_cli("run", "--once", "-c", str(config))
    assert first.returncode == 0, first.stdout + first.stderr
    subjects = log_subjects(bare)
    assert len(subjects) == 2
    assert subjects[0].startswith("Update ")

    expected_deploy = repo_files["apps/deployment.yaml"].replace(
        "team/web:1.0.0", "team/web:1.2.0"
    )
    assert show(bare, "apps/deployment.yaml") == expected_deploy
    expected_kust = repo_files["apps/kustomization.yaml"].replace('newTag: "0.9"', 'newTag: "10"')
    assert show(bare, "apps/kustomization.yaml") == expected_kust
    assert show(bare, "policies/api.yaml") == repo_files["policies/api.yaml"]
    stat = git("show", "--stat", "--format=", "main", cwd=bare)
    assert "2 files changed, 2 insertions(+), 2 deletions(-)" in stat

    body = git("log", "-1", "--format=%B", "main", cwd=bare)
    assert "apps/deployment.yaml" in body and "1.0.0 -> 1.2.0" in body
    assert "0.9 -> 10" in body
    author = git("log", "-1", "--format=%an <%ae>|%cn <%ce>", "main", cwd=bare).strip()
    assert author == "Image Bot <bot@example.com>|Image Bot <bot@example.com>"
    assert "pushed" in first.stdout

    second = run_cli("run", "--once", "-c", str(config))
    assert second.returncode == 0, second.stdout + second.stderr
    assert len(log_subjects(bare)) == 2


def test_dry_run_reports_and_writes_nothing(
    tmp_path: Path, seeded: Any, bare_repo: Any, repo_files: dict[str, str]
) -> None:
    bare = bare_repo(repo_files)
    config = write_config(tmp_path, seeded, str(bare))
    before = git("rev-parse", "main", cwd=bare)
    out = run_cli("run", "--once", "--dry-run", "-c", str(config))
    assert out.returncode == 0, out.stderr
    assert "1.2.0" in out.stdout and "dry run" in out.stdout
    assert git("rev-parse", "main", cwd=bare) == before


def run_pass_in_process(config: Path, **kwargs: Any) -> Any:
    settings = load_settings(config)

    async def go() -> Any:
        async with make_client(settings) as client:
            return await run_source(settings, settings.sources[0], client=client, **kwargs)

    return asyncio.run(go())


def test_a_racing_human_commit_is_preserved_and_ours_rebuilt_on_top(
    tmp_path: Path, seeded: Any, bare_repo: Any, repo_files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = bare_repo(repo_files)
    config = write_config(tmp_path, seeded, str(bare))
    original_push = GitRepo.push
    human: list[str] = []

    def racing_push(self: GitRepo, *args: Any, **kwargs: Any) -> bool:
        if not human:  # a human pushes between our fetch and our push, touching a line we also plan to edit
            text = repo_files["apps/deployment.yaml"].replace("containerPort: 8080", "containerPort: 9090")
            human.append(commit_to_bare(bare, {"apps/deployment.yaml": text, "NOTES.md": "human\n"}))
        return original_push(self, *args, **kwargs)

    monkeypatch.setattr(GitRepo, "push", racing_push)
    outcome = run_pass_in_process(config)
    assert outcome.error is None, outcome.error
    assert outcome.pushed
    # our commit sits on top of the human one; the human commit is an ancestor, nothing was overwritten
    assert subprocess.run(["git", "merge-base", "--is-ancestor", human[0], "main"], cwd=bare).returncode == 0
    assert git("rev-parse", "main^", cwd=bare).strip() == human[0]
    deployment = show(bare, "apps/deployment.yaml")
    assert "containerPort: 9090" in deployment and "team/web:1.2.0" in deployment
    assert show(bare, "NOTES.md") == "human\n"


def test_persistent_rejection_is_bounded_and_never_forced(
    tmp_path: Path,
    seeded: Any,
    bare_repo: Any,
    repo_files: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bare = bare_repo(repo_files)
    config = write_config(tmp_path, seeded, str(bare))
    original_push = GitRepo.push
    humans: list[str] = []

    def always_racing(self: GitRepo, *args: Any, **kwargs: Any) -> bool:
        assert not kwargs.get("force_with_lease")
        humans.append(commit_to_bare(bare, {f"human-{len(humans)}.txt": "x\n"}))
        return original_push(self, *args, **kwargs)

    monkeypatch.setattr(GitRepo, "push", always_racing)
    monkeypatch.setattr("image_updater.writeback._BACKOFF_BASE", 0.01)
    with caplog.at_level(logging.WARNING, logger="image_updater.writeback"):
        outcome = run_pass_in_process(config, push_attempts=3)
    assert not outcome.pushed
    assert outcome.error and "push rejected 3 times" in outcome.error
    assert git("rev-parse", "main", cwd=bare).strip() == humans[-1]
    assert len(humans) == 3
    # one warning per retry, each with its (jittered, capped) delay; none after the last attempt
    warnings = [r.getMessage() for r in caplog.records if r.name == "image_updater.writeback"]
    assert [w.split(" in ")[0] for w in warnings if w.startswith("push rejected (attempt")] == [
        "push rejected (attempt 1 of 3), re-planning on the new remote head",
        "push rejected (attempt 2 of 3), re-planning on the new remote head",
    ]
    delays = [float(w.rsplit(" in ", 1)[1].removesuffix("s")) for w in warnings if "(attempt" in w]
    assert all(0 <= delay <= 0.04 for delay in delays), delays  # base 0.01: windows of 0.02 and 0.04 s


def test_stop_before_push_leaves_remote_untouched_and_next_pass_completes(
    tmp_path: Path, seeded: Any, bare_repo: Any, repo_files: dict[str, str]
) -> None:
    bare = bare_repo(repo_files)
    config = write_config(tmp_path, seeded, str(bare))
    before = git("rev-parse", "main", cwd=bare)
    stop = threading.Event()
    stop.set()
    outcome = run_pass_in_process(config, stop=stop)
    assert not outcome.pushed and outcome.error and "stopping" in outcome.error
    assert git("rev-parse", "main", cwd=bare) == before

    outcome = run_pass_in_process(config)
    assert outcome.pushed and outcome.error is None
    assert "team/web:1.2.0" in show(bare, "apps/deployment.yaml")
    # the working copy in the cache holds exactly the pushed commit, nothing left over
    work = workdir_for(load_settings(config).cache_dir, "demo")
    assert git("status", "--porcelain", cwd=work) == ""


def _wait_for_output(proc: subprocess.Popen[bytes], text: str, timeout: float) -> bool:
    """Read the child's stderr until ``text`` appears (True) or it ends (False); bounded by ``timeout``."""
    import select

    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            tail = seen.decode(errors="replace")[-3000:]
            raise AssertionError(f"no {text!r} within {timeout:.0f} s:\n{tail}")
        chunk = os.read(fd, 65536)
        if not chunk:
            return False
        seen += chunk
    return True


def test_a_pass_killed_mid_way_never_half_pushes_and_the_next_pass_recovers(
    tmp_path: Path, seeded: Any, bare_repo: Any, repo_files: dict[str, str]
) -> None:
    bare = bare_repo(repo_files)
    config = write_config(tmp_path, seeded, str(bare))
    before = git("rev-parse", "main", cwd=bare).strip()
    # kill at different points of the pass: once synced, once the files are written (committing), while
    # pushing; each point is the debug line of the git command that starts it
    for point in ("git checkout", "git commit", "git push"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "image_updater", "run", "--once", "-c", str(config),
             "--log-level", "debug", "--log-format", "text"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            reached = _wait_for_output(proc, point, timeout=60)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.stderr is not None
            proc.stderr.close()
        assert reached, f"the pass ended before {point!r}"
        head = git("rev-parse", "main", cwd=bare).strip()
        if head != before:  # the push completed before the kill: it must be the whole commit
            assert "team/web:1.2.0" in show(bare, "apps/deployment.yaml")
            assert 'newTag: "10"' in show(bare, "apps/kustomization.yaml")
            break
    out = run_cli("run", "--once", "-c", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "team/web:1.2.0" in show(bare, "apps/deployment.yaml")
    assert len(log_subjects(bare)) == 2
    assert git("fsck", "--no-progress", cwd=bare).strip() == ""


def test_push_branch_is_rebuilt_from_branch_and_main_is_untouched(
    tmp_path: Path, seeded: Any, bare_repo: Any, repo_files: dict[str, str]
) -> None:
    bare = bare_repo(repo_files)
    config = write_config(tmp_path, seeded, str(bare), source={"push_branch": "image-updates"})
    main_before = git("rev-parse", "main", cwd=bare)
    assert run_cli("run", "--once", "-c", str(config)).returncode == 0
    assert git("rev-parse", "main", cwd=bare) == main_before
    assert "team/web:1.2.0" in show(bare, "apps/deployment.yaml", "image-updates")
    first = git("rev-parse", "image-updates", cwd=bare)
    # main moves on (a human commit): the update branch is rebuilt on top of it
    human = commit_to_bare(bare, {"NOTES.md": "human\n"})
    assert run_cli("run", "--once", "-c", str(config)).returncode == 0
    assert git("rev-parse", "image-updates^", cwd=bare).strip() == human
    assert git("rev-parse", "image-updates", cwd=bare) != first
    # nothing new upstream: the identical update is not pushed again
    second = git("rev-parse", "image-updates", cwd=bare)
    third = run_cli("run", "--once", "-c", str(config))
    assert third.returncode == 0
    assert git("rev-parse", "image-updates", cwd=bare) == second
    assert "pushed" not in third.stdout


def test_https_token_push_and_canary_secrets_never_leak(
    tmp_path: Path, registry_factory: Any, bare_repo: Any, git_http_server: Any
) -> None:
    from tests.fixtures.gitserver import GIT_HTTP_TOKEN
    from tests.servers.push import ImagePusher

    canary = "Canary-Pw-7f3a9c1d"
    reg = registry_factory(htpasswd={"ci": canary})
    with ImagePusher(reg.url, username="ci", password=canary) as push:
        for tag in ["1.0.0", "1.2.0"]:
            push.push("team/web", tag, created=T0)
    files = {"apps/deployment.yaml": DEPLOYMENT.format(host=reg.host).replace(
        f"        - name: sidecar\n          image: {reg.host}/team/sidecar:2.0\n", "")}
    bare = bare_repo(files, parent=git_http_server.root)
    creds = tmp_path / "registry-creds"
    creds.write_text(f"ci:{canary}\n")
    config = write_config(
        tmp_path, reg, git_http_server.url_for(bare),
        source={"auth": "{token_env: GIT_TOKEN}"},
        tail=[f"    credentials: file:{creds}"],
    )
    env = {"GIT_TOKEN": GIT_HTTP_TOKEN, "REG_PW": canary}
    out = run_cli("run", "--once", "-c", str(config), "--log-level", "debug", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "team/web:1.2.0" in show(bare, "apps/deployment.yaml")
    cache = tmp_path / "cache"
    git_configs = "".join(p.read_text() for p in cache.rglob("config") if p.parent.name == ".git")
    message = git("log", "-1", "--format=%B", "main", cwd=bare)
    for secret in (canary, GIT_HTTP_TOKEN):
        assert secret not in out.stdout and secret not in out.stderr
        assert secret not in message
        assert secret not in git_configs

    # a wrong token fails clearly, without the token in the message
    commit_to_bare(bare, {"apps/deployment.yaml": files["apps/deployment.yaml"]})
    wrong = "Wrong-Token-0d9e8f"
    out = run_cli("run", "--once", "-c", str(config), "--log-level", "debug", env={"GIT_TOKEN": wrong})
    assert out.returncode == 1
    assert wrong not in out.stdout and wrong not in out.stderr
    assert "demo" in out.stdout + out.stderr


def test_a_focused_pass_resolves_and_updates_only_the_named_images(
    tmp_path: Path, seeded: Any, bare_repo: Any, repo_files: dict[str, str]
) -> None:
    bare = bare_repo(repo_files)
    config = write_config(tmp_path, seeded, str(bare))
    web = f"{seeded.host}/team/web"
    outcome = run_pass_in_process(config, images={web})
    assert outcome.pushed and outcome.error is None
    assert outcome.images == frozenset({web})
    assert [c.image for c in outcome.result.updates] == [web]
    assert "team/web:1.2.0" in show(bare, "apps/deployment.yaml")
    assert show(bare, "apps/kustomization.yaml") == repo_files["apps/kustomization.yaml"]


def test_a_pass_over_several_sources_asks_for_each_image_once(
    tmp_path: Path, seeded: Any, bare_repo: Any, repo_files: dict[str, str]
) -> None:
    from image_updater.writeback import run_pass

    first = bare_repo(repo_files, name="one.git")
    second = bare_repo(repo_files, name="two.git")
    requests: list[tuple[str, int | str]] = []

    def count(*sources: Path) -> int:
        lines = [f"cache_dir: {tmp_path / 'cache'}", "sources:"]
        lines += [f"  - {{name: s{i}, url: '{url}'}}" for i, url in enumerate(sources)]
        lines += [f"registries: [{{prefix: '{seeded.host}', insecure: true}}]"]
        config = tmp_path / "multi.yaml"
        config.write_text("\n".join(lines) + "\n")
        settings = load_settings(config, env={})
        requests.clear()

        async def go() -> list[Any]:
            async with make_client(settings, on_request=lambda r, s: requests.append((r, s))) as client:
                return await run_pass(settings, client=client, dry_run=True)

        outcomes = asyncio.run(go())
        assert all(o.error is None and len(o.result.updates) == 2 for o in outcomes)
        return len(requests)

    one = count(first)
    assert count(first, second) == one  # the second source's images cost no request
