"""Pull-request mode end to end (issue 11): the real registry, real bare remotes whose ``update`` hook logs
every ref update and refuses a non-fast-forward update of ``main``, real git for every branch operation.

Every test checks that ``main`` was never written by image-updater: its only ref updates are the humans'.
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from image_updater.gitrepo import GitRepo
from image_updater.settings import load_settings
from image_updater.writeback import SourceOutcome
from tests.pr_support import (
    ENVIRON,
    FORGE_TOKEN,
    MARKER,
    ZERO,
    MemoryForge,
    git,
    install_update_hook,
    is_ancestor,
    ref_updates,
    run_pass,
    write_config,
)
from tests.servers.gitserver import commit_to_bare

T0 = datetime(2024, 1, 1, tzinfo=UTC)

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    image-updater.io/policy.web: "semver:^1.0"
    image-updater.io/policy.api: "semver:^2.0"
spec:
  template:
    spec:
      containers:
        - name: web
          image: {host}/team/web:1.0.0   # keep this comment
        - name: api
          image: {host}/team/api:2.0.0
"""

SOURCE_BRANCH = "image-updater/demo"


@pytest.fixture
def seeded(registry: Any, pusher: Any) -> Any:
    for tag, days in [("1.0.0", 1), ("1.1.0", 2), ("1.2.0", 3), ("2.5.0", 4)]:
        pusher.push("team/web", tag, created=T0 + timedelta(days=days))
    for tag in ["2.0.0", "2.1.0"]:
        pusher.push("team/api", tag, created=T0)
    return registry


@pytest.fixture
def remote(seeded: Any, bare_repo: Any) -> Path:
    bare: Path = bare_repo({"apps/deployment.yaml": DEPLOYMENT.format(host=seeded.host), "README.md": "x\n"})
    install_update_hook(bare)
    return bare


def rev(bare: Path, ref: str) -> str:
    return git("rev-parse", ref, cwd=bare).strip()


def show(bare: Path, path: str, ref: str) -> str:
    return git("show", f"{ref}:{path}", cwd=bare)


def main_updates(bare: Path) -> list[tuple[str, str, str]]:
    return [row for row in ref_updates(bare) if row[0] == "refs/heads/main"]


def branch_updates(bare: Path, branch: str) -> list[tuple[str, str, str]]:
    return [row for row in ref_updates(bare) if row[0] == f"refs/heads/{branch}"]


def test_group_by_source_opens_one_pr_then_nothing_when_nothing_changed(
    tmp_path: Path, seeded: Any, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, seeded.host, str(remote))
    main_before = rev(remote, "main")
    forge = MemoryForge()

    first = run_pass(config, forge)
    assert first.ok, (first.error, first.result.errors)
    assert rev(remote, "main") == main_before and main_updates(remote) == []
    assert rev(remote, f"{SOURCE_BRANCH}^") == main_before  # one commit on top of the base
    text = show(remote, "apps/deployment.yaml", SOURCE_BRANCH)
    assert text == DEPLOYMENT.format(host=seeded.host).replace("web:1.0.0", "web:1.2.0").replace(
        "api:2.0.0", "api:2.1.0")
    message = git("log", "-1", "--format=%B", SOURCE_BRANCH, cwd=remote)
    assert message.rstrip().endswith("Image-Updater-Source: demo")
    [pr] = forge.open()
    assert pr.head == SOURCE_BRANCH and pr.base == "main" and MARKER in pr.body
    assert "1.0.0" in pr.body and "1.2.0" in pr.body and "| File |" in pr.body
    assert [(link.number, link.action, link.branch) for link in first.pull_requests] == [
        (1, "created", SOURCE_BRANCH)]
    assert first.pushed and first.commit == rev(remote, SOURCE_BRANCH)
    assert FORGE_TOKEN not in repr(first) and forge.tokens == [FORGE_TOKEN]

    updates_before, writes_before, requests_before = ref_updates(remote), forge.writes, forge.requests

    def no_rebuild(self: GitRepo, branch: str) -> str:
        raise AssertionError(f"{branch} is current: the quick check must see it without a checkout")

    monkeypatch.setattr(GitRepo, "start_update_branch", no_rebuild)
    second = run_pass(config, forge)
    assert second.ok
    assert ref_updates(remote) == updates_before  # zero pushes
    assert forge.writes == writes_before and forge.requests == requests_before + 1  # one listing, no write
    assert [link.action for link in second.pull_requests] == ["unchanged"]
    assert not second.pushed


def test_base_moves_on_the_branch_is_rebuilt_with_a_lease_on_its_exact_old_head(
    tmp_path: Path, seeded: Any, remote: Path
) -> None:
    config = write_config(tmp_path, seeded.host, str(remote))
    forge = MemoryForge()
    assert run_pass(config, forge).ok
    old = rev(remote, SOURCE_BRANCH)
    human = commit_to_bare(remote, {"NOTES.md": "human\n"})

    again = run_pass(config, forge)
    assert again.ok
    new = rev(remote, SOURCE_BRANCH)
    assert rev(remote, f"{SOURCE_BRANCH}^") == human
    assert branch_updates(remote, SOURCE_BRANCH)[-1] == (f"refs/heads/{SOURCE_BRANCH}", old, new)
    assert not is_ancestor(remote, old, new)  # rewritten (ours alone), not merged
    assert [row[2] for row in main_updates(remote)] == [human]
    assert [link.action for link in again.pull_requests] == ["unchanged"]  # same report, same PR
    assert len(forge.prs) == 1


def test_group_by_image_one_pr_per_image_and_a_newer_tag_updates_it_in_place(
    tmp_path: Path, seeded: Any, remote: Path, pusher: Any
) -> None:
    config = write_config(tmp_path, seeded.host, str(remote),
                          pull_request="{provider: gitea, token_env: FORGE_TOKEN, group_by: image}")
    forge = MemoryForge()
    first = run_pass(config, forge)
    assert first.ok, (first.error, first.result.errors)
    host = seeded.host.replace(":", "-")
    web, api = f"image-updater/demo/{host}/team/web", f"image-updater/demo/{host}/team/api"
    assert sorted(link.branch for link in first.pull_requests) == sorted([web, api])
    assert "web:1.2.0" in show(remote, "apps/deployment.yaml", web)
    assert "api:2.0.0" in show(remote, "apps/deployment.yaml", web)  # only its own image
    assert "api:2.1.0" in show(remote, "apps/deployment.yaml", api)
    titles = {p.head: p.title for p in forge.open()}
    assert titles[web] == f"Update {seeded.host}/team/web to 1.2.0"

    pusher.push("team/web", "1.3.0", created=T0 + timedelta(days=9))
    web_before, api_before = rev(remote, web), rev(remote, api)
    second = run_pass(config, forge)
    assert second.ok
    actions = {link.branch: (link.number, link.action) for link in second.pull_requests}
    assert actions[web] == (first_number(first, web), "updated")
    assert actions[api][1] == "unchanged"
    assert rev(remote, api) == api_before  # untouched
    assert branch_updates(remote, web)[-1] == (f"refs/heads/{web}", web_before, rev(remote, web))
    assert "web:1.3.0" in show(remote, "apps/deployment.yaml", web)
    assert {p.head: p.title for p in forge.open()}[web] == f"Update {seeded.host}/team/web to 1.3.0"
    assert len(forge.prs) == 2 and main_updates(remote) == []


def first_number(outcome: SourceOutcome, branch: str) -> int:
    return next(link.number for link in outcome.pull_requests if link.branch == branch)


def test_a_persons_commit_on_the_update_branch_is_left_alone_and_said_so(
    tmp_path: Path, seeded: Any, remote: Path, pusher: Any
) -> None:
    config = write_config(tmp_path, seeded.host, str(remote))
    forge = MemoryForge()
    assert run_pass(config, forge).ok
    person = commit_to_bare(remote, {"apps/extra.txt": "reviewer fix\n"}, branch=SOURCE_BRANCH,
                            message="fix up the rollout")
    pusher.push("team/web", "1.3.0", created=T0 + timedelta(days=9))
    commit_to_bare(remote, {"NOTES.md": "base moves\n"})

    again = run_pass(config, forge)
    assert again.ok, (again.error, again.result.errors)
    assert rev(remote, SOURCE_BRANCH) == person  # neither rewritten nor lost
    [note] = [s.reason for s in again.result.skipped if "someone else" in s.reason]
    assert note.startswith(f"update branch {SOURCE_BRANCH} has commits by someone else ({person[:12]} ")
    assert note.endswith(": left as it is")
    assert [link.action for link in again.pull_requests] == ["unchanged"]
    assert again.result.updates == () and not again.pushed


def test_base_already_has_the_changes_the_pr_is_closed_with_a_comment(
    tmp_path: Path, seeded: Any, remote: Path
) -> None:
    config = write_config(tmp_path, seeded.host, str(remote))
    forge = MemoryForge()
    assert run_pass(config, forge).ok
    branch_head = rev(remote, SOURCE_BRANCH)
    # a reviewer merges the pull request (fast-forward of main to the update branch)
    git("update-ref", "refs/heads/main", branch_head, cwd=remote)

    after = run_pass(config, forge)
    assert after.ok
    [pr] = forge.prs.values()
    assert pr.state == "closed" and "already has these updates" in pr.comments[0]
    assert [(link.number, link.action) for link in after.pull_requests] == [(1, "closed")]
    assert rev(remote, SOURCE_BRANCH) == branch_head  # the branch is left in place
    third = run_pass(config, forge)
    assert third.pull_requests == () and third.ok


def test_forge_5xx_branch_stays_pushed_error_names_the_forge_message_next_pass_completes(
    tmp_path: Path, seeded: Any, remote: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, seeded.host, str(remote))
    forge = MemoryForge()
    forge.fail_with = "github: HTTP 502 Bad Gateway: server is down for maintenance"
    failed = run_pass(config, forge)
    assert not failed.ok
    assert failed.error is not None and "HTTP 502 Bad Gateway: server is down for maintenance" in failed.error
    assert "next pass completes the pull request" in failed.error
    head = rev(remote, SOURCE_BRANCH)  # pushed all the same
    assert [(link.action, link.number) for link in failed.pull_requests] == [("pending", 0)]

    forge.fail_with = None
    updates_before = ref_updates(remote)
    done = run_pass(config, forge)
    assert done.ok
    assert [link.action for link in done.pull_requests] == ["created"]
    assert ref_updates(remote) == updates_before and rev(remote, SOURCE_BRANCH) == head  # no second push
    assert FORGE_TOKEN not in caplog.text


def test_two_passes_racing_on_one_update_branch_lose_nothing(
    tmp_path: Path, seeded: Any, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pass A reads the branch (absent), then pass B (another working copy) pushes it before A does: A's
    lease fails, A re-reads the branch, finds B's identical commit and leaves it."""
    config_a = write_config(tmp_path, seeded.host, str(remote), cache="cache-a")
    # B words its commit differently: two commits, never one hash by chance (same second, same content)
    config_b = write_config(tmp_path, seeded.host, str(remote), cache="cache-b",
                            commit=('  message_template: "{{ summary }} (pass B)"',))
    forge = MemoryForge()
    original = GitRepo.push_update_branch
    raced = threading.Event()

    def racing(self: GitRepo, branch: str, expected: str | None) -> bool:
        if not raced.is_set():
            raced.set()
            other = run_pass(config_b, forge)  # in this worker thread: its own event loop
            assert other.ok and other.pushed
        return original(self, branch, expected)

    monkeypatch.setattr(GitRepo, "push_update_branch", racing)
    a = run_pass(config_a, forge)
    assert raced.is_set()
    assert a.ok, (a.error, a.result.errors)
    rows = branch_updates(remote, SOURCE_BRANCH)
    assert len(rows) == 1 and rows[0][1] == ZERO  # B's push only; A's lease failed and A pushed nothing
    assert rev(remote, SOURCE_BRANCH) == rows[0][2]
    assert "(pass B)" in git("log", "-1", "--format=%s", SOURCE_BRANCH, cwd=remote)  # B's commit kept
    assert not a.pushed and [link.action for link in a.pull_requests] == ["unchanged"]
    assert len(forge.prs) == 1 and main_updates(remote) == []


def test_a_racing_person_wins_and_the_pass_leaves_the_branch(
    tmp_path: Path, seeded: Any, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, seeded.host, str(remote))
    forge = MemoryForge()
    assert run_pass(config, forge).ok
    commit_to_bare(remote, {"NOTES.md": "base moves\n"})  # so the next pass wants to rewrite the branch
    original = GitRepo.push_update_branch
    person: list[str] = []

    def racing(self: GitRepo, branch: str, expected: str | None) -> bool:
        if not person:
            person.append(commit_to_bare(remote, {"fix.txt": "mine\n"}, branch=branch, message="mine"))
        return original(self, branch, expected)

    monkeypatch.setattr(GitRepo, "push_update_branch", racing)
    out = run_pass(config, forge)
    assert out.ok
    assert rev(remote, SOURCE_BRANCH) == person[0]
    assert any("someone else" in s.reason for s in out.result.skipped)


def test_the_base_branch_is_never_pushed_in_pull_request_mode(tmp_path: Path, remote: Path) -> None:
    from image_updater.errors import GitError

    repo = GitRepo.sync(str(remote), "main", tmp_path / "wc")
    repo.protect_base()
    (repo.path / "README.md").write_text("changed\n")
    repo.commit(["README.md"], "change", author=("a", "a@example.com"))
    with pytest.raises(GitError, match="never writes to the base branch"):
        repo.push()
    with pytest.raises(GitError, match="refusing to push to 'main'"):
        repo.push_update_branch("main", None)
    with pytest.raises(GitError, match="refusing to push to 'main'"):
        repo.push("main", force_with_lease=True)
    assert main_updates(remote) == []


def test_run_once_format_json_reports_pull_requests(
    tmp_path: Path, seeded: Any, remote: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import image_updater.pullrequests as pullrequests
    from image_updater.writeback import run_once_cli

    forge = MemoryForge()
    monkeypatch.setattr(pullrequests, "forge_session", lambda environ, http: forge.factory())
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(write_config(tmp_path, seeded.host, str(remote)))
    assert run_once_cli(settings, False, "json") == 0
    out = json.loads(capsys.readouterr().out)
    [source] = out["sources"]
    assert source["pull_requests"] == [{"number": 1, "url": "https://forge.example/acme/repo/pull/1",
                                        "branch": SOURCE_BRANCH, "action": "created"}]
    assert source["pushed"] is True and len(source["updates"]) == 2
    assert run_once_cli(settings, False, "table") == 0
    table = capsys.readouterr().out
    assert "pull request #1 https://forge.example/acme/repo/pull/1: unchanged (image-updater/demo)" in table
    assert FORGE_TOKEN not in table


def test_dry_run_in_pull_request_mode_writes_nothing(tmp_path: Path, seeded: Any, remote: Path) -> None:
    forge = MemoryForge()
    out = run_pass(write_config(tmp_path, seeded.host, str(remote)), forge, dry_run=True)
    assert out.ok and len(out.result.updates) == 2
    assert ref_updates(remote) == [] and forge.requests == 0


def test_an_unset_forge_token_fails_the_source_before_any_push(
    tmp_path: Path, seeded: Any, remote: Path
) -> None:
    settings = load_settings(write_config(tmp_path, seeded.host, str(remote)))
    from image_updater.writeback import make_client, run_source

    forge = MemoryForge()

    async def go() -> Any:
        async with make_client(settings) as client:
            async def factory(source: Any, base: str) -> MemoryForge:
                from image_updater.pullrequests import forge_target_parts

                forge_target_parts(source, {})
                return forge

            return await run_source(settings, settings.sources[0], client=client, forge_factory=factory)

    out = asyncio.run(go())
    assert out.error is not None and "FORGE_TOKEN" in out.error and "unset" in out.error
    assert ref_updates(remote) == [] and out.pull_requests == ()


def test_the_status_board_shows_the_pull_requests_of_a_pass() -> None:
    from image_updater.plan import Result
    from image_updater.pullrequests import PullRequestLink
    from image_updater.status import SourceInfo, StatusBoard, render_status_html

    url = "https://forge.example/acme/repo/pull/7"
    links = (PullRequestLink(7, url, "image-updater/demo/web", "created"),
             PullRequestLink(0, "", "image-updater/demo/api", "pending"))
    outcome = SourceOutcome(source="demo", result=Result(), commit="a" * 40, pushed=True, error=None,
                            duration=0.5, images=frozenset(), pull_requests=links)
    board = StatusBoard([SourceInfo("demo", "https://git.example/acme/repo.git", "main")])
    board.record(outcome, datetime(2024, 1, 2, tzinfo=UTC))
    snap = board.snapshot()
    last = snap["sources"][0]["last_pass"]
    assert last["pull_request"] == {"number": 7, "url": "https://forge.example/acme/repo/pull/7",
                                    "branch": "image-updater/demo/web", "action": "created"}
    assert [p["action"] for p in last["pull_requests"]] == ["created", "pending"]
    html = render_status_html(snap)
    assert '<a href="https://forge.example/acme/repo/pull/7">PR #7</a> created' in html
    assert "PR pending (<code>image-updater/demo/api</code>)" in html


def test_over_https_one_token_pushes_the_branch_and_reaches_the_forge_never_the_output(
    tmp_path: Path, seeded: Any, bare_repo: Any, git_http_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from image_updater.pullrequests import forge_target_parts
    from image_updater.writeback import make_client, run_source
    from tests.fixtures.gitserver import GIT_HTTP_TOKEN

    caplog.set_level("DEBUG")
    files = {"apps/deployment.yaml": DEPLOYMENT.format(host=seeded.host)}
    bare = bare_repo(files, parent=git_http_server.root)
    install_update_hook(bare)
    config = tmp_path / "https.yaml"
    config.write_text(
        f"cache_dir: {tmp_path / 'cache'}\n"
        f"sources: [{{name: demo, url: '{git_http_server.url_for(bare)}', auth: {{token_env: GIT_TOKEN}}, "
        "pull_request: {provider: gitlab}}]\n"
        f"registries: [{{prefix: '{seeded.host}', insecure: true}}]\n"
    )
    settings = load_settings(config, env={})
    environ = {"GIT_TOKEN": GIT_HTTP_TOKEN}
    forge = MemoryForge()
    seen: list[str] = []

    async def factory(source: Any, base: str) -> MemoryForge:
        seen.append(forge_target_parts(source, environ)[3])
        return forge

    async def go() -> Any:
        async with make_client(settings) as client:
            return await run_source(settings, settings.sources[0], client=client, forge_factory=factory,
                                    environ=environ)

    out = asyncio.run(go())
    assert out.ok, (out.error, out.result.errors)
    assert seen == [GIT_HTTP_TOKEN]  # the source's auth.token_env is the forge token by default
    assert "web:1.2.0" in show(bare, "apps/deployment.yaml", SOURCE_BRANCH)
    assert main_updates(bare) == []
    [pr] = forge.open()
    for text in (caplog.text, repr(out), pr.body, pr.title,
                 git("log", "--format=%B", SOURCE_BRANCH, cwd=bare)):
        assert GIT_HTTP_TOKEN not in text


def test_a_failing_write_leaves_every_branch_pushed_and_pending_with_the_forge_message(
    tmp_path: Path, seeded: Any, remote: Path
) -> None:
    config = write_config(tmp_path, seeded.host, str(remote),
                          pull_request="{provider: github, token_env: FORGE_TOKEN, group_by: image}")
    forge = MemoryForge()
    forge.fail_writes = "github: HTTP 422 Validation Failed: reviewers must be collaborators"
    out = run_pass(config, forge)
    assert out.error is not None
    assert "HTTP 422 Validation Failed: reviewers must be collaborators" in out.error
    assert [link.action for link in out.pull_requests] == ["pending", "pending"]
    assert forge.writes == 0 and forge.requests == 2  # one listing, then the first write failed: no more
    assert len([r for r in ref_updates(remote) if r[0].startswith("refs/heads/image-updater/")]) == 2
    forge.fail_writes = None
    again = run_pass(config, forge)
    assert again.ok and [link.action for link in again.pull_requests] == ["created", "created"]
