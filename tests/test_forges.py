"""The forge clients (image_updater.forges) against the fake forge of tests/servers/forge.py: every dialect's
listing (paged), create (labels, reviewers, draft), update only when changed, close with a comment, the
forges' errors with their own messages, rate limits honoured within the time budget, and the token kept out
of every message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from image_updater.errors import ConfigError, ForgeError
from image_updater.forges import (
    PR_MARKER,
    ForgeTarget,
    PullRequestDraft,
    default_api_url,
    ensure_pull_request,
    is_ours,
    make_forge,
    repository_from_url,
)
from tests.servers.forge import FakeForge

T = TypeVar("T")
DIALECTS = ["github", "gitlab", "gitea"]
REPO = {"github": "acme/gitops", "gitlab": "platform/team/gitops", "gitea": "acme/gitops"}


def run(make: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with httpx.AsyncClient() as client:
            return await make(client)

    return asyncio.run(go())


def target(forge: FakeForge, dialect: str, *, token: str | None = None) -> ForgeTarget:
    return ForgeTarget(provider=dialect, api_url=forge.api_url(dialect),  # type: ignore[arg-type]
                       repository=REPO[dialect], token=forge.token if token is None else token)


def draft(head: str = "image-updater/prod", **kw: Any) -> PullRequestDraft:
    fields: dict[str, Any] = {"head": head, "base": "main", "title": f"Update {head}",
                              "body": f"| file | image |\n{PR_MARKER}"}
    fields.update(kw)
    return PullRequestDraft(**fields)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_create_list_update_unchanged_close(fake_forge: FakeForge, dialect: str) -> None:
    fake_forge.add_repo(dialect, REPO[dialect], labels=("automation", "images"))

    async def go(client: httpx.AsyncClient) -> None:
        forge = make_forge(target(fake_forge, dialect), client)
        assert await forge.open_pull_requests("main") == {}
        pr, action = await ensure_pull_request(forge, draft(labels=["automation"], reviewers=["alice"]), None)
        assert action == "created" and pr.number == 1 and pr.head == "image-updater/prod" and is_ours(pr)
        assert pr.url.startswith(fake_forge.url) and str(pr.number) in pr.url
        [stored] = fake_forge.prs(dialect, REPO[dialect])
        assert stored.labels == ["automation"] and stored.reviewers == ["alice"]

        listed = await forge.open_pull_requests("main")
        assert list(listed) == ["image-updater/prod"]
        before = forge.requests
        same, action = await ensure_pull_request(forge, draft(), listed["image-updater/prod"])
        assert action == "unchanged" and same == listed["image-updater/prod"] and forge.requests == before

        changed, action = await ensure_pull_request(forge, draft(title="Update to 1.3"), same)
        assert action == "updated" and changed.title == "Update to 1.3" and stored.title == "Update to 1.3"

        await forge.close(changed, comment="main already has these changes")
        assert stored.state == "closed" and stored.comments == ["main already has these changes"]
        assert await forge.open_pull_requests("main") == {}

    run(go)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_listing_reads_every_page_and_only_this_base_and_repository(
    fake_forge: FakeForge, dialect: str
) -> None:
    fake_forge.add_repo(dialect, REPO[dialect])
    for i in range(7):  # page size 2: four pages
        fake_forge.add_pr(dialect, REPO[dialect], head=f"image-updater/{i}", base="main", title=f"t{i}",
                          body="")
    fake_forge.add_pr(dialect, REPO[dialect], head="feature", base="develop", title="other base", body="")
    fake_forge.add_pr(dialect, REPO[dialect], head="image-updater/fork", base="main", title="a fork's",
                      body="", head_repo="someone/gitops")
    found = run(lambda c: make_forge(target(fake_forge, dialect), c).open_pull_requests("main"))
    assert sorted(found) == [f"image-updater/{i}" for i in range(7)]
    gets = [e for e in fake_forge.requests() if e.method == "GET"]
    assert len(gets) >= 4  # paged


def test_gitlab_nested_group_is_one_encoded_segment_and_draft_is_the_title_prefix(
    fake_forge: FakeForge,
) -> None:
    fake_forge.add_repo("gitlab", REPO["gitlab"])

    async def go(client: httpx.AsyncClient) -> None:
        forge = make_forge(target(fake_forge, "gitlab"), client)
        pr, _ = await ensure_pull_request(forge, draft(draft=True, reviewers=["bob", "nobody"]), None)
        assert pr.draft and pr.title == "Update image-updater/prod"
        [stored] = fake_forge.prs("gitlab", REPO["gitlab"])
        assert stored.title == "Draft: Update image-updater/prod" and stored.reviewers == ["bob"]
        listed = (await forge.open_pull_requests("main"))["image-updater/prod"]
        assert listed.draft and listed.title == "Update image-updater/prod"
        _, action = await ensure_pull_request(forge, draft(draft=True), listed)
        assert action == "unchanged"

    run(go)
    assert any(e.path == "projects/platform/team/gitops/merge_requests" for e in fake_forge.log)


def test_github_draft_and_team_reviewers(fake_forge: FakeForge) -> None:
    fake_forge.add_repo("github", REPO["github"])
    pr, _ = run(lambda c: ensure_pull_request(make_forge(target(fake_forge, "github"), c),
                                              draft(draft=True, reviewers=["alice", "acme/platform"]), None))
    [stored] = fake_forge.prs("github", REPO["github"])
    assert pr.draft and stored.draft and stored.reviewers == ["alice", "team:platform"]


def test_gitea_labels_by_id_and_unknown_labels_skipped(
    fake_forge: FakeForge, caplog: pytest.LogCaptureFixture
) -> None:
    fake_forge.add_repo("gitea", REPO["gitea"], labels=("a", "b", "c"))
    run(lambda c: ensure_pull_request(make_forge(target(fake_forge, "gitea"), c), draft(labels=["c", "zzz"]),
                                      None))
    [stored] = fake_forge.prs("gitea", REPO["gitea"])
    assert stored.labels == ["c"] and "zzz" in caplog.text


@pytest.mark.parametrize(("dialect", "status", "words"), [
    ("github", 422, "Validation Failed: A pull request already exists for acme:image-updater/prod."),
    ("gitlab", 409, "Another open merge request already exists for this source branch"),
    ("gitea", 409, "pull request already exists for these targets"),
])
def test_a_duplicate_gives_the_forges_own_message(fake_forge: FakeForge, dialect: str, status: int,
                                                    words: str) -> None:
    fake_forge.add_repo(dialect, REPO[dialect])
    fake_forge.add_pr(dialect, REPO[dialect], head="image-updater/prod", base="main", title="x", body="")
    with pytest.raises(ForgeError) as caught:
        run(lambda c: make_forge(target(fake_forge, dialect), c).create(draft()))
    assert caught.value.status == status and words in str(caught.value)
    assert str(caught.value).startswith(f"{dialect}: {status} ")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_wrong_token_and_unknown_repository_are_permanent_and_token_free(
    fake_forge: FakeForge, dialect: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_forge.add_repo(dialect, REPO[dialect])
    secret = "ghp_wrong-secret-token-123"
    with pytest.raises(ForgeError) as caught:
        run(lambda c: make_forge(target(fake_forge, dialect, token=secret), c).open_pull_requests("main"))
    assert caught.value.status == 401 and len(fake_forge.log) == 1  # not retried
    wrong = ForgeTarget(provider=dialect, api_url=fake_forge.api_url(dialect),  # type: ignore[arg-type]
                        repository="acme/missing", token=secret)
    with pytest.raises(ForgeError) as missing:
        run(lambda c: make_forge(wrong, c).open_pull_requests("main"))
    assert missing.value.status in (401, 404)
    for text in (str(caught.value), repr(caught.value), str(missing.value), repr(wrong), caplog.text):
        assert secret not in text


@pytest.mark.parametrize("dialect", DIALECTS)
def test_5xx_is_retried_then_succeeds(fake_forge: FakeForge, dialect: str) -> None:
    fake_forge.add_repo(dialect, REPO[dialect])
    fake_forge.fail_next(502, count=2)
    found = run(lambda c: make_forge(target(fake_forge, dialect), c, time_budget=30)
                .open_pull_requests("main"))
    assert found == {} and [e.status for e in fake_forge.log] == [502, 502, 200]


@pytest.mark.parametrize(("status", "headers"), [
    (403, {"Retry-After": "1"}),  # GitHub's secondary rate limit
    (429, {"Retry-After": "1"}),
    (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0"}),  # primary limit, reset already past
])
def test_rate_limits_are_waited_for(fake_forge: FakeForge, status: int, headers: dict[str, str]) -> None:
    fake_forge.add_repo("github", REPO["github"])
    fake_forge.fail_next(status, headers=headers,
                         body={"message": "You have exceeded a secondary rate limit"})
    found = run(lambda c: make_forge(target(fake_forge, "github"), c, time_budget=30)
                .open_pull_requests("main"))
    assert found == {} and [e.status for e in fake_forge.log] == [status, 200]


def test_a_wait_past_the_budget_fails_at_once_with_the_forges_message(fake_forge: FakeForge) -> None:
    fake_forge.add_repo("github", REPO["github"])
    fake_forge.fail_next(403, headers={"Retry-After": "3600"},
                         body={"message": "You have exceeded a secondary rate limit"})
    with pytest.raises(ForgeError) as caught:
        run(lambda c: make_forge(target(fake_forge, "github"), c, time_budget=5).open_pull_requests("main"))
    assert "exceeded a secondary rate limit" in str(caught.value) and "3600 s" in str(caught.value)
    assert len(fake_forge.log) == 1


def test_a_plain_403_is_permanent(fake_forge: FakeForge) -> None:
    fake_forge.add_repo("github", REPO["github"])
    fake_forge.fail_next(403, body={"message": "Resource not accessible by integration"})
    with pytest.raises(ForgeError, match="403 Forbidden: Resource not accessible by integration"):
        run(lambda c: make_forge(target(fake_forge, "github"), c).open_pull_requests("main"))
    assert len(fake_forge.log) == 1


def test_a_hanging_forge_is_bounded_by_the_budget(fake_forge: FakeForge) -> None:
    fake_forge.add_repo("gitea", REPO["gitea"])
    fake_forge.hang_next(3.0, count=5)

    with pytest.raises(ForgeError, match="ReadTimeout"):
        run(lambda c: make_forge(target(fake_forge, "gitea"), c, time_budget=1.0).open_pull_requests("main"))
    assert len(fake_forge.log) <= 2  # the budget, not the retry count, ended it


def test_paging_never_leaves_the_api_origin() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        link = '<https://evil.example/steal?page=2>; rel="next"'
        return httpx.Response(200, json=[], headers={"Link": link})

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            forge = make_forge(ForgeTarget("github", "https://api.github.com", "acme/x", "s3cret"), client)
            await forge.open_pull_requests("main")

    with pytest.raises(ForgeError, match=r"refused to follow https://evil\.example/steal") as caught:
        asyncio.run(go())
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(("provider", "url", "api", "repo"), [
    ("github", "https://github.com/acme/gitops.git", "https://api.github.com", "acme/gitops"),
    ("github", "git@github.com:acme/gitops.git", "https://api.github.com", "acme/gitops"),
    ("github", "https://x-access-token:tok@ghe.corp/acme/gitops", "https://ghe.corp/api/v3", "acme/gitops"),
    ("gitlab", "ssh://git@gitlab.com/platform/team/gitops.git", "https://gitlab.com/api/v4",
     "platform/team/gitops"),
    ("gitea", "https://code.example/acme/gitops.git", "https://code.example/api/v1", "acme/gitops"),
])
def test_defaults_from_the_source_url(provider: str, url: str, api: str, repo: str) -> None:
    assert default_api_url(provider, url) == api
    assert repository_from_url(provider, url) == repo


def test_a_github_url_with_a_subgroup_asks_for_the_repository() -> None:
    with pytest.raises(ConfigError, match=r"set pull_request\.repository") as caught:
        repository_from_url("github", "https://tok@github.com/a/b/c.git")
    assert "tok" not in str(caught.value)
