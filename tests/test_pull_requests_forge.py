"""Pull-request mode through the real forge clients (issue 11): the pass's own ``image_updater.forges`` client
talks to the fake forge of tests/servers/forge.py over HTTP, for each dialect; the real registry and a bare
remote with the ref-logging ``update`` hook, as in tests/test_pull_requests.py."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from image_updater.forges import PR_MARKER
from image_updater.settings import load_settings
from image_updater.writeback import SourceOutcome, make_client, run_source
from tests.pr_support import ENVIRON, FORGE_TOKEN, ref_updates, write_config
from tests.servers.forge import FakeForge
from tests.test_pull_requests import SOURCE_BRANCH, remote, rev, seeded

__all__ = ["remote", "seeded"]  # fixtures shared with tests/test_pull_requests.py

REPOSITORY = {"github": "acme/gitops", "gitlab": "platform/team/gitops", "gitea": "acme/gitops"}


def forge_config(tmp_path: Path, registry_host: str, remote: Path, forge: FakeForge, dialect: str,
                 extra: str = "") -> Path:
    pull_request = (f"{{provider: {dialect}, api_url: '{forge.api_url(dialect)}', "
                    f"repository: {REPOSITORY[dialect]}, token_env: FORGE_TOKEN{extra}}}")
    return write_config(tmp_path, registry_host, str(remote), pull_request=pull_request)


def run_pass(config: Path) -> SourceOutcome:
    settings = load_settings(config)

    async def go() -> SourceOutcome:
        async with make_client(settings) as client:
            return await run_source(settings, settings.sources[0], client=client, environ=dict(ENVIRON))

    return asyncio.run(go())


@pytest.fixture
def forge() -> Any:
    with FakeForge(token=FORGE_TOKEN, page_size=2) as fake:
        yield fake


@pytest.mark.parametrize("dialect", ["github", "gitlab", "gitea"])
def test_a_pass_opens_the_pr_on_the_forge_and_an_idle_pass_only_lists(
    tmp_path: Path, seeded: Any, remote: Path, forge: FakeForge, dialect: str
) -> None:
    forge.add_repo(dialect, REPOSITORY[dialect], labels=("images",))
    config = forge_config(tmp_path, seeded.host, remote, forge, dialect,
                          ", labels: [images], reviewers: [alice]")
    main_before = rev(remote, "main")

    first = run_pass(config)
    assert first.ok, (first.error, first.result.errors)
    [pr] = forge.prs(dialect, REPOSITORY[dialect])
    assert (pr.head, pr.base, pr.state) == (SOURCE_BRANCH, "main", "open")
    assert (pr.labels, pr.reviewers) == (["images"], ["alice"])
    assert PR_MARKER in pr.body and "1.2.0" in pr.body and "2.1.0" in pr.body
    [link] = first.pull_requests
    assert (link.number, link.action, link.branch) == (1, "created", SOURCE_BRANCH)
    assert link.url.startswith(forge.url) and rev(remote, "main") == main_before

    pushes, requests = ref_updates(remote), len(forge.log)
    second = run_pass(config)
    assert second.ok and [link.action for link in second.pull_requests] == ["unchanged"]
    new = forge.log[requests:]
    assert [e.method for e in new] == ["GET"]  # one listing request (one page: a single open PR), no write
    assert ref_updates(remote) == pushes  # no push
    assert rev(remote, "main") == main_before


def test_a_forge_refusal_is_reported_with_its_message_the_branch_stays_and_the_next_pass_completes(
    tmp_path: Path, seeded: Any, remote: Path, forge: FakeForge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    forge.add_repo("github", REPOSITORY["github"])
    config = forge_config(tmp_path, seeded.host, remote, forge, "github")
    forge.fail_next(403, body={"message": "Resource not accessible by integration",
                               "documentation_url": "https://docs.github.com/rest"})

    first = run_pass(config)
    assert not first.ok and first.error is not None
    assert "github: 403 Forbidden: Resource not accessible by integration" in first.error
    assert rev(remote, SOURCE_BRANCH)  # pushed although the forge refused
    assert [link.action for link in first.pull_requests] in ([], ["pending"])
    assert forge.prs("github", REPOSITORY["github"]) == []

    second = run_pass(config)
    assert second.ok, second.error
    assert [link.action for link in second.pull_requests] == ["created"]
    assert len(forge.prs("github", REPOSITORY["github"])) == 1
    for text in (repr(first), repr(second), caplog.text):
        assert FORGE_TOKEN not in text


def test_a_newer_tag_updates_the_pr_in_place(
    tmp_path: Path, seeded: Any, remote: Path, forge: FakeForge, pusher: Any
) -> None:
    from datetime import UTC, datetime

    forge.add_repo("gitea", REPOSITORY["gitea"])
    config = forge_config(tmp_path, seeded.host, remote, forge, "gitea")
    assert run_pass(config).ok
    [pr] = forge.prs("gitea", REPOSITORY["gitea"])
    assert "1.2.0" in pr.body
    pusher.push("team/web", "1.3.0", created=datetime(2024, 2, 1, tzinfo=UTC))
    again = run_pass(config)
    assert again.ok and [link.action for link in again.pull_requests] == ["updated"]
    assert len(forge.prs("gitea", REPOSITORY["gitea"])) == 1 and "1.3.0" in pr.body and pr.state == "open"
