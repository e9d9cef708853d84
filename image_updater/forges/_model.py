"""The values the forge clients take and give, and the forge-independent parts (URLs, the marker)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import urlsplit

from image_updater.errors import ConfigError

__all__ = [
    "PROVIDERS",
    "PR_MARKER",
    "Forge",
    "ForgeTarget",
    "Provider",
    "PullRequest",
    "PullRequestDraft",
    "default_api_url",
    "is_ours",
    "repository_from_url",
]

Provider = Literal["github", "gitlab", "gitea"]
PROVIDERS: tuple[Provider, ...] = ("github", "gitlab", "gitea")

# Appended to every body image-updater writes: how a pass tells its own pull requests from a person's on the
# same head branch (an HTML comment: the forges render it as nothing).
PR_MARKER = "<!-- image-updater -->"


@dataclass(frozen=True, slots=True)
class ForgeTarget:
    """One repository on one forge, and the token that may open pull requests there."""

    provider: Provider
    api_url: str  # https://api.github.com, https://gitlab.com/api/v4, https://gitea.example/api/v1
    repository: str  # owner/repo; GitLab: group/sub/project (URL-encoded in paths by the client)
    token: str | None = field(default=None, repr=False)  # a secret: never in repr, logs or error text


@dataclass(frozen=True, slots=True)
class PullRequestDraft:
    """The pull request one update branch should have."""

    head: str
    base: str
    title: str
    body: str
    labels: tuple[str, ...] | list[str] = ()
    reviewers: tuple[str, ...] | list[str] = ()
    draft: bool = False


@dataclass(frozen=True, slots=True)
class PullRequest:
    """An open pull request (GitLab: merge request) as the forge reports it."""

    number: int  # GitHub/Gitea number; GitLab iid
    url: str  # the page a person opens
    head: str
    base: str
    title: str
    body: str
    draft: bool = False


class Forge(Protocol):
    """What a pass asks of a forge; ``make_forge`` returns one per provider."""

    provider: Provider

    @property
    def requests(self) -> int: ...

    async def open_pull_requests(self, base: str) -> dict[str, PullRequest]: ...

    async def create(self, draft: PullRequestDraft) -> PullRequest: ...

    async def update(self, pr: PullRequest, *, title: str, body: str) -> PullRequest: ...

    async def close(self, pr: PullRequest, *, comment: str) -> None: ...


def is_ours(pr: PullRequest) -> bool:
    """Whether image-updater wrote this pull request's body."""
    return PR_MARKER in pr.body


_SCP = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$")  # git@host:owner/repo.git


def _host_and_path(source_url: str) -> tuple[str, str]:
    url = source_url.strip()
    scp = _SCP.match(url)
    if scp and "://" not in url:
        host, path = scp.group(1), scp.group(2)
    else:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ConfigError(f"cannot tell the forge repository from the source url {_shown(url)}")
        host, path = parts.hostname, parts.path
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    if not host or "/" not in path:
        raise ConfigError(f"cannot tell the forge repository from the source url {_shown(url)}")
    return host.lower(), path


def _shown(url: str) -> str:
    """A URL with any user information dropped (it may hold a token)."""
    if "://" in url:
        parts = urlsplit(url)
        if parts.hostname:
            netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
            return f"{parts.scheme}://{netloc}{parts.path}"
    return url.split("@", 1)[-1]


def repository_from_url(provider: str, source_url: str) -> str:
    """``owner/repo`` (GitLab: the whole ``group/sub/project`` path) of an HTTPS, SSH or scp-like git URL."""
    _, path = _host_and_path(source_url)
    if provider != "gitlab":
        owner, _, rest = path.partition("/")
        if "/" in rest:
            raise ConfigError(
                f"{provider}: the source url {_shown(source_url)} names {path!r}, not owner/repo: "
                "set pull_request.repository"
            )
        return f"{owner}/{rest}"
    return path


def default_api_url(provider: str, source_url: str) -> str:
    """The REST API root for a source on ``provider``: public GitHub and GitLab, else the source's host
    (GitHub Enterprise ``/api/v3``, GitLab ``/api/v4``, Gitea/Forgejo ``/api/v1``)."""
    host, _ = _host_and_path(source_url)
    if provider == "github":
        return "https://api.github.com" if host in ("github.com", "www.github.com") else f"https://{host}/api/v3"
    if provider == "gitlab":
        return f"https://{host}/api/v4"
    if provider == "gitea":
        return f"https://{host}/api/v1"
    raise ConfigError(f"unknown pull_request.provider {provider!r} (github, gitlab or gitea)")
