"""The three REST dialects: GitHub (and GitHub Enterprise), GitLab, Gitea/Forgejo.

Each lists the open pull requests into a base branch in one paged listing, creates one (labels, reviewers,
draft), updates title and body, and closes one with a comment first. Only pull requests whose head branch
lives in the repository itself count (a fork's branch of the same name is someone else's).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx

from image_updater.errors import ForgeError
from image_updater.forges._api import Api
from image_updater.forges._model import ForgeTarget, Provider, PullRequest, PullRequestDraft

__all__ = ["GitHub", "GitLab", "Gitea"]

log = logging.getLogger("image_updater.forges")

_GITLAB_DRAFT = "Draft: "
_GITEA_DRAFT = "WIP: "  # Gitea's and Forgejo's draft convention: a title prefix (Settings > WIP prefixes)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


class _Dialect:
    provider: Provider

    def __init__(self, target: ForgeTarget, client: httpx.AsyncClient, *, time_budget: float) -> None:
        self.target = target
        self.api = Api(target, client, self._headers(target.token), time_budget=time_budget)

    @property
    def requests(self) -> int:
        return self.api.requests

    def _headers(self, token: str | None) -> dict[str, str]:
        raise NotImplementedError

    def _repo(self) -> str:
        owner, _, name = self.target.repository.partition("/")
        return f"repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    def _bad(self, what: str) -> ForgeError:
        return ForgeError(self.provider, None, f"{self.target.repository}: unexpected answer to {what}")

    def _pr(self, item: Any) -> PullRequest | None:
        raise NotImplementedError

    def _by_head(self, items: list[Any], base: str) -> dict[str, PullRequest]:
        """The listed pull requests into ``base`` whose head is in the repository, by head branch."""
        found: dict[str, PullRequest] = {}
        for item in items:
            pr = self._pr(item)
            if pr is not None and pr.base == base:
                found.setdefault(pr.head, pr)
        return found


class _RepoPulls(_Dialect):
    """GitHub's and Gitea's shared shapes: ``/repos/{owner}/{repo}/pulls``, comments through the issues API,
    a draft as the ``draft`` flag or, where ``draft_prefix`` is set, as that title prefix."""

    draft_prefix = ""

    def _pr(self, item: Any) -> PullRequest | None:
        try:
            head, base = item["head"], item["base"]
            repo = (head.get("repo") or {}).get("full_name")
            if repo and repo.lower() != self.target.repository.lower():
                return None
            title = _text(item.get("title"))
            draft = bool(item.get("draft"))
            if self.draft_prefix and title.startswith(self.draft_prefix):
                title, draft = title[len(self.draft_prefix):], True
            return PullRequest(number=int(item["number"]), url=str(item["html_url"]), head=str(head["ref"]),
                               base=str(base["ref"]), title=title, body=_text(item.get("body")), draft=draft)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise self._bad("a pull request listing") from None

    async def close(self, pr: PullRequest, *, comment: str) -> None:
        await self.api.call("POST", f"{self._repo()}/issues/{pr.number}/comments", json={"body": comment})
        await self.api.call("PATCH", f"{self._repo()}/pulls/{pr.number}", json={"state": "closed"})


class GitHub(_RepoPulls):
    """``/repos/{owner}/{repo}/pulls``; labels and comments through the issues API."""

    provider: Provider = "github"

    def _headers(self, token: str | None) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def open_pull_requests(self, base: str) -> dict[str, PullRequest]:
        params = {"state": "open", "base": base, "per_page": 100}
        items = await self.api.pages(f"{self._repo()}/pulls", params)
        return self._by_head(items, base)

    async def create(self, draft: PullRequestDraft) -> PullRequest:
        response = await self.api.call("POST", f"{self._repo()}/pulls", json={
            "title": draft.title, "head": draft.head, "base": draft.base, "body": draft.body,
            "draft": draft.draft,
        })
        pr = self._pr(response.json())
        if pr is None:
            raise self._bad("creating a pull request")
        if draft.labels:
            await self.api.call("POST", f"{self._repo()}/issues/{pr.number}/labels",
                                json={"labels": list(draft.labels)})
        if draft.reviewers:
            users = [r for r in draft.reviewers if "/" not in r]
            teams = [r.split("/", 1)[1] for r in draft.reviewers if "/" in r]  # org/team -> team slug
            await self.api.call("POST", f"{self._repo()}/pulls/{pr.number}/requested_reviewers",
                                json={"reviewers": users, "team_reviewers": teams})
        return pr

    async def update(self, pr: PullRequest, *, title: str, body: str) -> PullRequest:
        response = await self.api.call("PATCH", f"{self._repo()}/pulls/{pr.number}",
                                       json={"title": title, "body": body})
        return self._pr(response.json()) or pr



class GitLab(_Dialect):
    """``/projects/{url-encoded path}/merge_requests``; a draft is the ``Draft: `` title prefix."""

    provider: Provider = "gitlab"

    def _headers(self, token: str | None) -> dict[str, str]:
        return {"PRIVATE-TOKEN": token} if token else {}

    def _project(self) -> str:
        return f"projects/{quote(self.target.repository, safe='')}"

    def _pr(self, item: Any) -> PullRequest | None:
        try:
            if item.get("source_project_id") != item.get("target_project_id"):
                return None
            title = _text(item.get("title"))
            draft = bool(item.get("draft") or item.get("work_in_progress"))
            if title.startswith(_GITLAB_DRAFT):
                title, draft = title[len(_GITLAB_DRAFT):], True
            return PullRequest(number=int(item["iid"]), url=str(item["web_url"]),
                               head=str(item["source_branch"]), base=str(item["target_branch"]),
                               title=title, body=_text(item.get("description")), draft=draft)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise self._bad("a merge request listing") from None

    async def open_pull_requests(self, base: str) -> dict[str, PullRequest]:
        items = await self.api.pages(f"{self._project()}/merge_requests",
                                     {"state": "opened", "target_branch": base, "per_page": 100})
        return self._by_head(items, base)

    async def _user_ids(self, names: list[str] | tuple[str, ...]) -> list[int]:
        ids = []
        for name in names:
            response = await self.api.call("GET", "users", params={"username": name})
            users = response.json()
            if isinstance(users, list) and users and isinstance(users[0], dict) and "id" in users[0]:
                ids.append(int(users[0]["id"]))
            else:
                log.warning("gitlab: reviewer %r is not a user of %s; the merge request is opened without "
                            "them", name, self.api.base)
        return ids

    async def create(self, draft: PullRequestDraft) -> PullRequest:
        payload: dict[str, Any] = {
            "source_branch": draft.head, "target_branch": draft.base,
            "title": (_GITLAB_DRAFT if draft.draft else "") + draft.title, "description": draft.body,
        }
        if draft.labels:
            payload["labels"] = ",".join(draft.labels)
        if draft.reviewers:
            payload["reviewer_ids"] = await self._user_ids(draft.reviewers)
        response = await self.api.call("POST", f"{self._project()}/merge_requests", json=payload)
        pr = self._pr(response.json())
        if pr is None:
            raise self._bad("creating a merge request")
        return pr

    async def update(self, pr: PullRequest, *, title: str, body: str) -> PullRequest:
        response = await self.api.call("PUT", f"{self._project()}/merge_requests/{pr.number}", json={
            "title": (_GITLAB_DRAFT if pr.draft else "") + title, "description": body,
        })
        return self._pr(response.json()) or pr

    async def close(self, pr: PullRequest, *, comment: str) -> None:
        await self.api.call("POST", f"{self._project()}/merge_requests/{pr.number}/notes",
                            json={"body": comment})
        await self.api.call("PUT", f"{self._project()}/merge_requests/{pr.number}",
                            json={"state_event": "close"})


class Gitea(_RepoPulls):
    """``/repos/{owner}/{repo}/pulls`` of Gitea and Forgejo; labels by id; a draft is the ``WIP: `` prefix."""

    provider: Provider = "gitea"
    draft_prefix = _GITEA_DRAFT

    def _headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"token {token}"} if token else {}

    async def open_pull_requests(self, base: str) -> dict[str, PullRequest]:
        items = await self.api.pages(f"{self._repo()}/pulls", {"state": "open", "limit": 50, "page": 1})
        return self._by_head(items, base)

    async def _label_ids(self, names: list[str] | tuple[str, ...]) -> list[int]:
        labels = await self.api.pages(f"{self._repo()}/labels", {"limit": 50, "page": 1})
        by_name = {str(label.get("name")): int(label["id"]) for label in labels
                   if isinstance(label, dict) and "id" in label}
        missing = [name for name in names if name not in by_name]
        if missing:
            log.warning("gitea: label(s) %s do not exist in %s; the pull request is opened without them",
                        ", ".join(missing), self.target.repository)
        return [by_name[name] for name in names if name in by_name]

    async def create(self, draft: PullRequestDraft) -> PullRequest:
        payload: dict[str, Any] = {"head": draft.head, "base": draft.base, "body": draft.body,
                                   "title": (_GITEA_DRAFT if draft.draft else "") + draft.title}
        if draft.labels:
            payload["labels"] = await self._label_ids(draft.labels)
        response = await self.api.call("POST", f"{self._repo()}/pulls", json=payload)
        pr = self._pr(response.json())
        if pr is None:
            raise self._bad("creating a pull request")
        if draft.reviewers:
            await self.api.call("POST", f"{self._repo()}/pulls/{pr.number}/requested_reviewers",
                                json={"reviewers": list(draft.reviewers)})
        return pr

    async def update(self, pr: PullRequest, *, title: str, body: str) -> PullRequest:
        response = await self.api.call("PATCH", f"{self._repo()}/pulls/{pr.number}", json={
            "title": (_GITEA_DRAFT if pr.draft else "") + title, "body": body,
        })
        return self._pr(response.json()) or pr

