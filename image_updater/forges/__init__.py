"""Pull and merge requests on GitHub (and GitHub Enterprise), GitLab and Gitea/Forgejo, over their REST APIs.

An edge, like the registry client: httpx and tenacity, no forge SDK (the three APIs a pass needs are six
endpoints each; an SDK per forge would triple the dependencies for that). DESIGN "Review workflow":

- ``open_pull_requests(base)``: one paged listing of the open pull requests into ``base``, by head branch;
- ``ensure_pull_request``: creates the missing one, updates title and body when they differ, and makes no
  request at all when nothing changed;
- ``close``: a comment saying why, then closed.

Errors are ``ForgeError`` with the forge's own message (never the token); 5xx, 429, connection failures
and rate limits are retried within ``time_budget`` seconds (see ``_api``).
"""

from __future__ import annotations

from typing import Literal

import httpx

from image_updater.errors import ConfigError, ForgeError
from image_updater.forges._dialects import Gitea, GitHub, GitLab
from image_updater.forges._model import (
    PR_MARKER,
    PROVIDERS,
    Forge,
    ForgeTarget,
    Provider,
    PullRequest,
    PullRequestDraft,
    default_api_url,
    is_ours,
    repository_from_url,
)

__all__ = [
    "PROVIDERS",
    "PR_MARKER",
    "Forge",
    "ForgeError",
    "ForgeTarget",
    "Provider",
    "PullRequest",
    "PullRequestDraft",
    "default_api_url",
    "ensure_pull_request",
    "is_ours",
    "make_forge",
    "repository_from_url",
]

Action = Literal["created", "updated", "unchanged"]


def make_forge(target: ForgeTarget, client: httpx.AsyncClient, *, time_budget: float = 60.0) -> Forge:
    """The client of ``target.provider``; ``time_budget`` bounds every wait and retry of its requests."""
    if target.provider == "github":
        return GitHub(target, client, time_budget=time_budget)
    if target.provider == "gitlab":
        return GitLab(target, client, time_budget=time_budget)
    if target.provider == "gitea":
        return Gitea(target, client, time_budget=time_budget)
    raise ConfigError(f"unknown pull_request.provider {target.provider!r} (github, gitlab or gitea)")


def _same(a: str, b: str) -> bool:
    """Equal as a forge stores them (some normalise line ends and trailing space)."""
    return a.replace("\r\n", "\n").rstrip() == b.replace("\r\n", "\n").rstrip()


async def ensure_pull_request(
    forge: Forge, draft: PullRequestDraft, existing: PullRequest | None
) -> tuple[PullRequest, Action]:
    """The one open pull request of ``draft.head``: ``existing`` (what the listing found) untouched when
    title and body are already right, updated when either differs, created when there is none."""
    if existing is None:
        return await forge.create(draft), "created"
    if _same(existing.title, draft.title) and _same(existing.body, draft.body):
        return existing, "unchanged"
    return await forge.update(existing, title=draft.title, body=draft.body), "updated"
