"""Settings: the YAML config file, overridden by ``IMAGE_UPDATER_*`` environment variables.

Every key of the config file (DESIGN "CLI contract") is a field below, with its default and a one-line
description. ``load_settings`` reads the file (``-c FILE`` or ``IMAGE_UPDATER_CONFIG``) with ruamel.yaml's
safe loader, lays the environment over it and validates the result:

- ``IMAGE_UPDATER_INTERVAL=30s``, ``IMAGE_UPDATER_COMMIT__AUTHOR_NAME=bot`` (``__`` nests);
- lists and groups also take JSON: ``IMAGE_UPDATER_POLICY_DIRS='["/etc/policies"]'``; a JSON list
  replaces the file's list, while ``IMAGE_UPDATER_SOURCES__0__BRANCH=prod`` changes one field of the
  file's first source; text that is no JSON for a list or group is a problem naming the variable;
- the environment wins over the file; environment variables that name no setting are ignored (tokens are
  often kept in variables such as ``IMAGE_UPDATER_GIT_TOKEN``), but unknown keys inside a group are errors;
- durations are written ``90s``, ``5m``, ``1h30m``, ``500ms``, ``2d``, ``1w`` (``durations``; a unit is
  required);
- ``~`` is expanded in paths; relative paths are relative to the working directory.

An invalid configuration raises one ``ConfigError`` whose message lists every bad field by its path
(``sources[0].url``), never an input value that could be a secret.
"""

from __future__ import annotations

import json
import os
import re
import sys
import types
from collections import deque
from collections.abc import Mapping, Sequence, Set
from contextlib import suppress
from dataclasses import dataclass, is_dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, get_args, get_origin

# pydantic looks for plugins (the "pydantic" entry points of every installed distribution) when it builds its
# first validator: importing importlib.metadata and reading every dist-info cost a one-shot command ~12 ms,
# 5 % of a `plan`. image-updater's models take no plugins, so the loader is one that finds none, unless
# something loaded pydantic's own before (docs/design-notes.md, "Settings without pydantic-settings...").
if "pydantic.plugin._loader" not in sys.modules:
    _no_plugins = types.ModuleType("pydantic.plugin._loader")
    _no_plugins.get_plugins = tuple  # type: ignore[attr-defined]  # no plugins: ()
    sys.modules["pydantic.plugin._loader"] = _no_plugins

from pydantic import (  # after the plugin loader above
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from image_updater.durations import InvalidDuration, parse_duration
from image_updater.envnames import CONFIG_ENV, ENV_PREFIX, env_name_problem
from image_updater.errors import ConfigError

__all__ = [
    "AuthSettings",
    "CommitSettings",
    "ConcurrencySettings",
    "HttpSettings",
    "LogSettings",
    "PullRequestSettings",
    "RegistrySettings",
    "Settings",
    "ShardingSettings",
    "SourceSettings",
    "StatusAuthSettings",
    "Transport",
    "load_settings",
    "source_transport",
]

Transport = Literal["https", "http", "ssh", "git", "file", "local"]

# ---------------------------------------------------------------------------------------------------------
# value parsers


def _custom(kind: str, message: str) -> PydanticCustomError:
    # the message is data, not a template: braces in user input must not be interpreted
    return PydanticCustomError(kind, "{message}", {"message": message})


def _parse_duration(value: object) -> timedelta:
    """A duration in the project's one grammar (``durations``), with a unit: ``interval: 30`` is refused
    with a hint, as 30 minutes is as likely meant as 30 seconds."""
    if isinstance(value, timedelta):
        return value
    try:
        return parse_duration(value, unit_required=True)
    except InvalidDuration as exc:
        raise _custom("duration", str(exc)) from None


def _expand_path(value: object) -> object:
    if isinstance(value, str | os.PathLike):
        return Path(os.fspath(value)).expanduser()
    return value


def _is_env_name(value: str) -> str:
    problem = env_name_problem(value)  # never echoes the value: it may be the secret itself
    if problem is not None:
        raise _custom("env_name", problem)
    return value


def _no_items() -> list[Any]:
    """The ``default_factory`` of the list fields, rather than ``list``: pydantic inspects a factory's
    signature, and ``inspect.signature(list)`` parses the builtin's text signature with ``tokenize``
    (compiling its patterns: ~2.5 ms of every command that loads the settings, 0.15 ms a field after)."""
    return []


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]
ExpandedPath = Annotated[Path, BeforeValidator(_expand_path)]
EnvName = Annotated[str, AfterValidator(_is_env_name)]


def source_transport(url: str) -> Transport:
    """How git reaches ``url``: by a URL scheme, scp-like ``[user@]host:path`` (ssh), or a local path."""
    scheme, sep, _ = url.partition("://")
    if sep:
        lowered = scheme.lower()
        if lowered in ("ssh", "git+ssh", "ssh+git"):
            return "ssh"
        if lowered in ("https", "http", "git", "file"):
            return lowered  # type: ignore[return-value]
        raise ValueError(f"unsupported URL scheme {scheme!r} (use https, http, ssh, git, file or a path)")
    # git's own rule: a colon before the first slash makes it scp-like syntax for ssh
    colon, slash = url.find(":"), url.find("/")
    if colon > 0 and (slash < 0 or colon < slash):
        return "ssh"
    return "local"


_BRANCH_BAD = re.compile(r"(^[-/.])|(\.\.)|([\x00-\x20~^:?*\[\\\x7f])|(@\{)|(/\.)|(//)|(\.lock$)|([/.]$)")


def _check_branch(value: str) -> str:
    if not value or value == "@" or _BRANCH_BAD.search(value):
        raise _custom("branch", f"{value!r} is not a valid branch name")
    return value


BranchName = Annotated[str, AfterValidator(_check_branch)]


def _check_repo_path(raw: str) -> str:
    text = raw.replace("\\", "/")
    pure = PurePosixPath(text)
    if not text or pure.is_absolute() or text.startswith("~"):
        raise _custom("repo_path", f"{raw!r} must be relative to the repository root")
    if ".." in pure.parts:
        raise _custom("repo_path", f"{raw!r} must not leave the repository ('..')")
    if pure.parts and pure.parts[0] == ".git":
        raise _custom("repo_path", f"{raw!r} must not point into .git")
    return str(pure)


RepoPath = Annotated[str, AfterValidator(_check_repo_path)]


class _Strict(BaseModel):
    """A config group: unknown keys are errors, assignments re-validate. Each field is documented by the
    string under it (tests/test_settings.py checks that every field has one); pydantic is not asked to read
    them: ``use_attribute_docstrings`` parses this module's source at every start (~45 ms of each command)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _problems(*problems: tuple[str, str]) -> PydanticCustomError:
    """Several problems of one model, each with its own sub-path: expanded by the error formatter."""
    return PydanticCustomError(
        "field_problems",
        "{summary}",
        {"summary": "; ".join(f"{p}: {m}" for p, m in problems), "problems": [list(p) for p in problems]},
    )


# ---------------------------------------------------------------------------------------------------------
# groups


class AuthSettings(_Strict):
    """How git authenticates to a source. Secrets never appear in the config file itself."""

    token_env: EnvName | None = None
    """Environment variable holding an HTTPS token (or password); handed to git through GIT_ASKPASS."""

    username: str = "x-access-token"
    """User name sent with the HTTPS token; GitHub, GitLab and Gitea accept any name with a token."""

    ssh_key_file: ExpandedPath | None = None
    """Private key for SSH URLs (used with IdentitiesOnly); none = ssh-agent or ssh's default keys."""

    known_hosts: ExpandedPath | None = None
    """known_hosts file holding the SSH server's host key; required for SSH URLs (host keys are verified)."""

    insecure_skip_host_key_check: bool = False
    """Accept any SSH host key (man-in-the-middle risk); only for throwaway test setups."""

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not value or ":" in value or any(c.isspace() for c in value):
            raise ValueError("must be a non-empty name without ':' or whitespace")
        return value


class PullRequestSettings(_Strict):
    """Pull-request mode: updates go to update branches with one pull request each, never to ``branch``."""

    provider: Literal["github", "gitlab", "gitea"]
    """The forge: github, gitlab or gitea (gitea also serves Forgejo)."""

    api_url: str | None = None
    """The forge's API root; default: public GitHub or GitLab (self-hosted and Gitea: set it)."""

    repository: str | None = None
    """``owner/repo`` (GitLab: the full ``group/sub/project`` path); default: from the source's url."""

    token_env: EnvName | None = None
    """Environment variable holding the forge token; default: the source's ``auth.token_env``."""

    group_by: Literal["source", "image"] = "source"
    """One branch and pull request per source (all its images together) or one per image."""

    branch: str | None = None
    """Update branch template ({source}, {image}, {new_tag}); default image-updater/{source}[/{image}]."""

    title_template: str | None = None
    """Jinja2 template of the title (sandboxed: changes, summary, files, source, branch, image, report)."""

    body_template: str | None = None
    """Jinja2 template of the body; default: the Markdown report and a short how-to."""

    labels: list[str] = Field(default_factory=_no_items)
    """Labels to put on new pull requests."""

    reviewers: list[str] = Field(default_factory=_no_items)
    """Users asked to review new pull requests."""

    draft: bool = False
    """Open pull requests as drafts."""

    @property
    def branch_template(self) -> str:
        """The update-branch template in force (the configured one or the default for ``group_by``)."""
        from image_updater.prplan import default_branch

        return self.branch or default_branch(self.group_by)

    @field_validator("title_template", "body_template")
    @classmethod
    def _template(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            from image_updater.prplan import check_pr_template

            try:
                check_pr_template(value, str(info.field_name))
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _branch_template(self) -> PullRequestSettings:
        from image_updater.prplan import branch_template_problem

        problem = branch_template_problem(self.branch_template, self.group_by)
        if problem is not None:
            raise _problems(("branch", problem))
        return self


class SourceSettings(_Strict):
    """One git repository to keep up to date."""

    name: str
    """Unique name of the source: used in logs, metrics, commit messages and the cache directory."""

    url: str
    """Git URL (https://, ssh://, scp-like user@host:path, git://, file://) or a local path."""

    branch: BranchName = "main"
    """Branch to read and to push to."""

    push_branch: BranchName | None = None
    """Push to this branch instead; it is rebuilt from ``branch`` every pass and force-pushed with lease."""

    paths: list[RepoPath] = Field(default_factory=lambda: ["."])
    """Directories or files inside the repository to scan, relative to its root."""

    auth: AuthSettings = Field(default_factory=AuthSettings)
    """Credentials for git: an HTTPS token from the environment or an SSH key with known_hosts."""

    pull_request: PullRequestSettings | None = None
    """Open a pull request per pass (or per image) on update branches instead of pushing to ``branch``."""

    @property
    def pr_token_env(self) -> str | None:
        """Where the forge token is: ``pull_request.token_env``, else ``auth.token_env``."""
        if self.pull_request is None:
            return None
        return self.pull_request.token_env or self.auth.token_env

    @property
    def transport(self) -> Transport:
        """How git reaches ``url`` (``https``, ``http``, ``ssh``, ``git``, ``file`` or ``local``)."""
        return source_transport(self.url)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip() or value != value.strip() or any(ord(c) < 32 or c == "\x7f" for c in value):
            raise ValueError("must be a non-empty name without control characters or surrounding spaces")
        if len(value) > 100:
            raise ValueError("must be at most 100 characters long")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        transport = source_transport(value)  # ValueError for an unknown scheme
        if transport in ("https", "http", "ssh", "git"):
            rest = value.split("://", 1)[1] if "://" in value else value
            userinfo, at, _ = rest.partition("/")[0].rpartition("@")
            if at and ":" in userinfo:
                # the URL is stored in .git/config and shows up in logs: credentials never go there
                raise ValueError(
                    "credentials in the URL are not allowed; put the token in an environment variable "
                    "and name it in auth.token_env (or use auth.ssh_key_file)"
                )
            if at and transport in ("https", "http"):
                raise ValueError(
                    "a user name in an HTTPS URL is not allowed (it is often a token); use auth.username "
                    "and auth.token_env"
                )
        if transport == "local":
            return os.path.expanduser(value)
        return value

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one path (use '.' for the whole repository)")
        return value

    @model_validator(mode="after")
    def _auth_fits_url(self) -> SourceSettings:
        problems: list[tuple[str, str]] = []
        try:
            transport = self.transport
        except ValueError:
            return self  # the url validator has reported it
        auth = self.auth
        if auth.token_env and transport not in ("https", "http"):
            problems.append(("auth.token_env", f"a token is only used with https URLs, not {transport}"))
        if auth.ssh_key_file and transport != "ssh":
            problems.append(("auth.ssh_key_file", f"an SSH key is only used with SSH URLs, not {transport}"))
        if transport == "ssh" and auth.known_hosts is None and not auth.insecure_skip_host_key_check:
            problems.append(
                (
                    "auth.known_hosts",
                    "required for SSH URLs (host keys are verified); set "
                    "auth.insecure_skip_host_key_check: true only for a throwaway setup",
                )
            )
        if self.push_branch is not None and self.push_branch == self.branch:
            problems.append(
                ("push_branch", "must differ from branch (leave it unset to push to branch itself)")
            )
        if self.push_branch is not None and self.pull_request is not None:
            problems.append(
                ("push_branch", "cannot be combined with pull_request: pull-request mode pushes to its own "
                 "update branches (pull_request.branch); drop push_branch")
            )
        if self.pull_request is not None and self.pr_token_env is None:
            problems.append(
                ("pull_request.token_env", "required: name the variable holding the forge token (or set "
                 "auth.token_env when the same token pushes over HTTPS)")
            )
        if problems:
            raise _problems(*problems)
        return self


class SigningSettings(_Strict):
    """How update commits are signed: git's own OpenPGP or SSH signing, with a key in a private place."""

    format: Literal["openpgp", "ssh"]
    """``openpgp`` (gpg, in a private GNUPGHOME under the cache dir) or ``ssh`` (ssh-keygen -Y sign)."""

    key_file: ExpandedPath | None = None
    """File holding the (ASCII-armored OpenPGP or OpenSSH) private key; exactly one of key_file / key_env."""

    key_env: EnvName | None = None
    """Environment variable holding the private key itself; exactly one of key_file / key_env."""

    passphrase_env: EnvName | None = None
    """Environment variable holding the key's passphrase, if it has one."""

    @model_validator(mode="after")
    def _one_key(self) -> SigningSettings:
        if (self.key_file is None) == (self.key_env is None):
            raise _problems(("key_file", "exactly one of key_file and key_env must be set"))
        return self


NotifyEvent = Literal["update", "error"]


class NotificationSettings(_Strict):
    """One channel told about passes that changed something or failed."""

    type: Literal["webhook", "slack", "teams", "discord"]
    """``webhook`` (the pass's JSON report, HMAC-signed) or a chat's incoming webhook."""

    url_env: EnvName
    """Environment variable holding the URL to POST to (the URL itself is a secret for chat webhooks)."""

    events: list[NotifyEvent] = Field(default_factory=lambda: list(get_args(NotifyEvent)))
    """Which passes are sent: ``update`` (a commit pushed) and/or ``error`` (an error reported)."""

    secret_env: EnvName | None = None
    """Environment variable holding the HMAC-SHA256 key of ``X-Image-Updater-Signature`` (webhook only)."""

    @model_validator(mode="after")
    def _secret_only_webhook(self) -> NotificationSettings:
        if self.secret_env is not None and self.type != "webhook":
            raise _problems(("secret_env", "only the webhook type signs its body"))
        if not self.events:
            raise _problems(("events", "must name at least one of update, error"))
        return self


class CommitSettings(_Strict):
    """Identity and message of the commits image-updater makes."""

    author_name: str = "image-updater"
    """Author name of update commits."""

    author_email: str = "image-updater@localhost"
    """Author e-mail of update commits."""

    committer_name: str | None = None
    """Committer name; defaults to the author name."""

    committer_email: str | None = None
    """Committer e-mail; defaults to the author e-mail."""

    message_template: str | None = None
    """Jinja2 template of the commit message (sandboxed: changes, summary, files, source); none = built-in."""

    skip_ci: bool = False
    """Append ``[skip ci]`` to the commit subject."""

    signing: SigningSettings | None = None
    """Sign every update commit (OpenPGP or SSH); none = unsigned."""

    @property
    def author(self) -> tuple[str, str]:
        """``(name, email)`` of the author."""
        return (self.author_name, self.author_email)

    @property
    def committer(self) -> tuple[str, str]:
        """``(name, email)`` of the committer (the author unless set)."""
        return (self.committer_name or self.author_name, self.committer_email or self.author_email)

    @field_validator("author_name", "author_email", "committer_name", "committer_email")
    @classmethod
    def _identity(cls, value: str | None) -> str | None:
        # git rejects these characters in identities (and newlines would forge commit headers)
        if value is not None and (not value.strip() or any(c in value for c in "<>\n\r\x00")):
            raise ValueError("must be non-empty and must not contain <, > or a line break")
        return value

    @field_validator("message_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            from image_updater.commitmsg import check_template

            try:
                check_template(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        return value


_CREDENTIALS = re.compile(r"(env:[A-Za-z_][A-Za-z0-9_]*|file:.+|dockerconfig:.+)", re.DOTALL)


class RegistrySettings(_Strict):
    """Endpoint, TLS, credentials and limits for the registries under one prefix."""

    prefix: str
    """Registry host (and optional path) this entry applies to, e.g. ``ghcr.io/acme``; longest prefix wins."""

    api_url: str | None = None
    """Endpoint to talk to instead of the registry host (a mirror or a local port), e.g. ``http://127.0.0.1:5000``."""

    insecure: bool = False
    """Talk plain HTTP to this registry."""

    tls_verify: bool = True
    """Verify the registry's TLS certificate."""

    ca_file: ExpandedPath | None = None
    """PEM bundle of CA certificates to trust for this registry."""

    credentials: str | None = None
    """``env:VAR`` or ``file:PATH`` (holding ``user:password``) or ``dockerconfig:PATH``; none = defaults."""

    rate_limit: float | None = Field(default=None, gt=0)
    """Maximum requests per second to this registry; none = unlimited."""

    max_concurrency: int = Field(default=8, ge=1, le=1024)
    """Maximum requests in flight to this registry."""

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            raise ValueError("must not be empty")
        if "://" in value:
            raise ValueError("is a registry host, not a URL (put the endpoint in api_url)")
        if any(c.isspace() for c in value) or "@" in value:
            raise ValueError("must be a registry host with an optional path, e.g. ghcr.io/acme")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not re.fullmatch(r"https?://[^/\s@]+(/\S*)?", value):
            raise ValueError("must be an http:// or https:// URL without credentials")
        return value

    @field_validator("credentials")
    @classmethod
    def _credentials(cls, value: str | None) -> str | None:
        if value is not None and not _CREDENTIALS.fullmatch(value):
            # never echo the value: a user may have pasted the password itself here
            raise ValueError("must be env:VAR, file:PATH or dockerconfig:PATH")
        problem = env_name_problem(value[4:]) if value is not None and value.startswith("env:") else None
        if problem is not None:
            raise ValueError(f"env:VAR: the variable name {problem}")
        return value


class StatusAuthSettings(_Strict):
    """Protects the status page and status API (``/``, ``/api/v1/status``, ``/images/...``)."""

    token_env: EnvName
    """Environment variable holding the token: ``Authorization: Bearer <token>``, or HTTP basic with any user
    and the token as password. ``/healthz``, ``/readyz`` and ``/metrics`` stay open."""


class HttpSettings(_Strict):
    """The daemon's HTTP endpoint: health, readiness, metrics, the webhook and the status page."""

    listen: str = "127.0.0.1:8080"
    """Address to listen on, ``host:port`` (``[::1]:8080`` for IPv6, ``0.0.0.0:8080`` for all interfaces)."""

    webhook_secret_env: EnvName | None = None
    """Environment variable holding the shared secret for ``POST /webhook``; none = webhook disabled."""

    status_auth: StatusAuthSettings | None = None
    """Token for the status page and API; none = they are open to whoever reaches ``listen``."""

    @property
    def host(self) -> str:
        """The host part of ``listen`` (without IPv6 brackets)."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port part of ``listen``."""
        return int(self.listen.rpartition(":")[2])

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", value.strip())
        if not match or int(match.group(2)) > 65535:
            raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:8080)")
        return value.strip()


class ShardingSettings(_Strict):
    """Sources sharded over the replicas of a StatefulSet: each source belongs to exactly one replica."""

    replicas: int = Field(default=1, ge=1, le=1000)
    """How many replicas share the sources (rendezvous hashing of the source names over ordinals 0..N-1)."""

    ordinal: Literal["auto"] | int = "auto"
    """This replica's ordinal; ``auto``: ``IMAGE_UPDATER_SHARD_ORDINAL``, else the hostname's trailing
    ``-N``."""

    peers: list[str] = Field(default_factory=_no_items)
    """Base URL of every replica, ``peers[k]`` for ordinal k (e.g. the StatefulSet's headless Service
    names); a received webhook is forwarded once to every other peer. Empty: no forwarding."""

    @field_validator("ordinal")
    @classmethod
    def _ordinal(cls, value: Literal["auto"] | int) -> Literal["auto"] | int:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be auto or a number >= 0")
        return value

    @field_validator("peers")
    @classmethod
    def _peers(cls, value: list[str]) -> list[str]:
        cleaned = []
        for i, url in enumerate(value):
            url = url.strip().rstrip("/")
            if not re.fullmatch(r"https?://[^\s/@?#]+(/[^\s?#]*)?", url):
                raise ValueError(f"peers[{i}]: must be an http:// or https:// base URL without credentials")
            cleaned.append(url)
        return cleaned

    @model_validator(mode="after")
    def _consistent(self) -> ShardingSettings:
        if isinstance(self.ordinal, int) and self.ordinal >= self.replicas:
            raise ValueError(f"ordinal {self.ordinal} must be below replicas ({self.replicas})")
        if self.peers and len(self.peers) != self.replicas:
            raise ValueError(
                f"peers lists {len(self.peers)} URL(s) but replicas is {self.replicas}: give one per replica"
            )
        return self


class ConcurrencySettings(_Strict):
    """How much work one daemon process does at once."""

    passes: int = Field(default=4, ge=1, le=256)
    """Passes (git fetch/commit/push and the registry questions they ask) running at once in one replica;
    with more sources than this, scheduled passes are spread over the interval (a fixed offset per source)."""


class MigrationSettings(_Strict):
    """How repositories written for other tools are read (docs/migration.md)."""

    argocd_namespace: str = Field(default="argocd", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    """The namespace Argo CD runs in: an Application in another namespace gets Argo CD Image Updater's
    override file ``.argocd-source-<namespace>_<application>.yaml`` (AIU's rule)."""


class LogSettings(_Strict):
    """Log output on stderr."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level logged; tracebacks are shown only at debug."""

    format: Literal["text", "json"] = "text"
    """``text`` lines or one JSON object per line."""

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


def _duplicates(keys: Sequence[object], group: str, field: str, what: str) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    first: dict[object, int] = {}
    for i, key in enumerate(keys):
        if key is None:
            continue
        if key in first:
            problems.append((f"{group}[{i}].{field}", f"duplicate {what} (also {group}[{first[key]}])"))
        first.setdefault(key, i)
    return problems


def _raw_duplicates(data: Mapping[str, Any]) -> list[str]:
    """Duplicate names found before validation, so they are reported with every other problem."""

    def keys(group: str, field: str) -> list[object]:
        items = data.get(group)
        if not isinstance(items, list):
            return []
        values: list[object] = []
        for item in items:
            value = item.get(field) if isinstance(item, dict) else None
            if isinstance(value, str) and field == "prefix":
                value = value.strip().rstrip("/")
            values.append(value if isinstance(value, str) else None)
        return values

    problems = _duplicates(keys("sources", "name"), "sources", "name", "source name")
    problems += _duplicates(keys("registries", "prefix"), "registries", "prefix", "prefix")
    return [f"{path}: {message}" for path, message in problems]


class Settings(BaseModel):
    """The whole configuration of image-updater.

    A plain pydantic model validating exactly what it is given: ``load_settings`` merges file and
    environment itself (``_EnvSource``), with the names and rules of pydantic-settings (``IMAGE_UPDATER_``,
    ``__`` nests, JSON for lists and groups), without importing pydantic-settings at every start
    (docs/design-notes.md, "Settings without pydantic-settings at run time"). ``validate_default`` as
    pydantic-settings' ``BaseSettings`` has it: the defaults go through the same validators.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)

    interval: Duration = timedelta(minutes=5)
    """Time between two passes of the daemon (at least 1s; each run is jittered by up to 10%)."""

    cache_dir: ExpandedPath = Field(default_factory=lambda: Path("~/.cache/image-updater").expanduser())
    """Working copies of the sources and the registry metadata cache live here."""

    policy_dirs: list[ExpandedPath] = Field(default_factory=_no_items)
    """Extra directories of ImagePolicy files, besides those found in the scanned trees."""

    sources: list[SourceSettings] = Field(default_factory=_no_items)
    """Git repositories to update."""

    commit: CommitSettings = Field(default_factory=CommitSettings)
    """Identity and message of update commits."""

    registries: list[RegistrySettings] = Field(default_factory=_no_items)
    """Per-registry endpoint, TLS, credentials and limits (matched by prefix)."""

    http: HttpSettings = Field(default_factory=HttpSettings)
    """The daemon's HTTP endpoint."""

    log: LogSettings = Field(default_factory=LogSettings)
    """Log level and format."""

    migration: MigrationSettings = Field(default_factory=MigrationSettings)
    """Reading repositories written for Argo CD Image Updater, Keel or Fleet."""

    sharding: ShardingSettings = Field(default_factory=ShardingSettings)
    """Sources sharded over several replicas (a StatefulSet); one replica by default."""

    concurrency: ConcurrencySettings = Field(default_factory=ConcurrencySettings)
    """Bounds on the work done at once (passes in parallel)."""
    notifications: list[NotificationSettings] = Field(default_factory=_no_items)
    """Webhook / Slack / Teams / Discord messages after passes that changed something or failed."""

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise _custom("duration", "must be at least 1s")
        return value

    @model_validator(mode="after")
    def _unique(self) -> Settings:
        problems = _duplicates(
            [s.name for s in self.sources], "sources", "name", "source name"
        ) + _duplicates([r.prefix for r in self.registries], "registries", "prefix", "prefix")
        if problems:
            raise _problems(*problems)
        return self


# ---------------------------------------------------------------------------------------------------------
# loading


class _EnvSource:
    """``IMAGE_UPDATER_*`` variables of any mapping as nested settings data, shaped as pydantic-settings'
    source interface (``get_field_value``, ``prepare_field_value``, ``decode_complex_value``) and with its
    rules: a field is complex (JSON, plus ``__`` variables) as ``field_is_complex`` decides it.

    Names are case-insensitive; ``__`` nests (``COMMIT__AUTHOR_NAME`` -> ``{"commit": {"author_name": ...}}``,
    ``SOURCES__0__BRANCH`` -> ``{"sources": {"0": {"branch": ...}}}``, which ``_merge`` lays over the file's
    list); a list or group variable is JSON, and a JSON group takes its ``__`` variables over it. Variables
    that name no setting are left out. Values are not validated here: ``Settings`` does that.
    """

    def __init__(self, settings_cls: type[BaseModel], environ: Mapping[str, str]) -> None:
        self.settings_cls = settings_cls
        prefix = ENV_PREFIX.lower()
        self._vars = {
            name.lower().removeprefix(prefix): value
            for name, value in environ.items()
            if name.lower().startswith(prefix)
        }

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._vars.get(field_name), field_name, self.field_is_complex(field)

    @staticmethod
    def field_is_complex(field: FieldInfo) -> bool:
        """pydantic-settings' rule (its ``field_is_complex``): a model, mapping, sequence other than text,
        set, tuple or dataclass, looking through ``Annotated``; a union (``X | None``) is not."""
        return _annotation_is_complex(field.annotation)

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        if not value_is_complex:
            return value
        nested = self._nested(field_name)
        if value is None:
            return nested or None
        decoded = self.decode_complex_value(field_name, field, value)
        return _deep_update(decoded, nested) if isinstance(decoded, dict) else decoded

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        # a value that is no JSON is reported by _merge, which knows the variable's name; stopping here
        # would give json's bare "Expecting value: line 1 column 1 (char 0)" for the first one only
        try:
            return json.loads(value)
        except ValueError as exc:
            return _NotJson(str(exc))

    def _nested(self, field_name: str) -> dict[str, Any]:
        """The ``<FIELD>__...`` variables as a nested dict (keys lower-case, list indexes as digit keys)."""
        nested: dict[str, Any] = {}
        for name, value in self._vars.items():
            head, sep, rest = name.partition("__")
            if head != field_name or not sep:
                continue
            *parents, last = rest.split("__")
            node = nested
            for key in parents:
                child = node.setdefault(key, {})
                if not isinstance(child, dict):  # X__A=1 and X__A__B=2: the deeper name wins over the value
                    child = node[key] = {}
                node = child
            if not isinstance(node.get(last), dict):
                node[last] = value
        return nested

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, is_complex = self.get_field_value(field, field_name)
            value = self.prepare_field_value(field_name, field, value, is_complex)
            if isinstance(value, dict):
                value = _field_names(field.annotation, value)
            if value is not None:
                data[key] = value
        return data


_COMPLEX = (BaseModel, Mapping, Sequence, Set, tuple, deque)


def _annotation_is_complex(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _annotation_is_complex(get_args(annotation)[0])
    for candidate in (annotation, origin):
        if not isinstance(candidate, type) or issubclass(candidate, (str, bytes)):
            continue
        if issubclass(candidate, _COMPLEX) or is_dataclass(candidate):
            return True
    return hasattr(origin, "__pydantic_core_schema__") or hasattr(origin, "__get_pydantic_core_schema__")


def _field_names(annotation: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The keys of a group's JSON matched to its field names case-insensitively, as variable names are."""
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return values
    names = {name.lower(): name for name in annotation.model_fields}
    matched: dict[str, Any] = {}
    for key, value in values.items():
        name = names.get(str(key).lower(), key)
        field = annotation.model_fields.get(name)
        matched[name] = _field_names(field.annotation, value) if field and isinstance(value, dict) else value
    return matched


def _deep_update(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        merged[key] = _deep_update(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return merged


@dataclass(frozen=True)
class _NotJson:
    """An environment value for a list or group that does not parse as JSON (the parser's message only)."""

    reason: str


def _read_yaml(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise ConfigError(f"config file {where}: {exc.problem or exc.context}") from None
    except YAMLError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of settings")
    return data


def _env_var(path: Sequence[str | int]) -> str:
    return ENV_PREFIX + "__".join(str(p).upper() for p in path)


_REPORTED: Any = object()  # _merge's answer for a value it reported as a problem: the file's value stays


def _merge(base: Any, override: Any, path: tuple[str, ...], problems: list[str]) -> Any:
    """Lay ``override`` (from the environment) over ``base`` (from the file); bad JSON goes to problems."""
    if isinstance(override, dict) and isinstance(base, dict):
        merged = dict(base)
        for key, value in override.items():
            result = _merge(base.get(key), value, (*path, key), problems)
            if result is not _REPORTED or key in base:
                merged[key] = base.get(key) if result is _REPORTED else result
        return merged
    if isinstance(override, dict) and override and all(str(k).isdigit() for k in override):
        # IMAGE_UPDATER_SOURCES__0__BRANCH: one field of one entry of a list from the file
        items = list(base) if isinstance(base, list) else []
        for key, value in override.items():
            index = int(key)
            if index >= len(items):
                problems.append(
                    f"{_format_loc([*path, index])}: no such entry to override from {_env_var((*path, key))} "
                    f"(the list has {len(items)})"
                )
                continue
            result = _merge(items[index], value, (*path, key), problems)
            if result is not _REPORTED:
                items[index] = result
        return items
    expected = _expected_json(path)
    if isinstance(override, str) and expected is not None:
        # a list or group takes JSON, also where the file has no value for it
        try:
            return json.loads(override)
        except ValueError as exc:
            override = _NotJson(str(exc))
    if isinstance(override, _NotJson):
        what = expected or "list or object"
        problems.append(
            f"{_format_loc(_loc(path))}: expected a JSON {what}, e.g. {_JSON_EXAMPLE.get(what, '[...]')} "
            f"(the value is not JSON: {override.reason}) (from {_env_var(path)})"
        )
        return _REPORTED
    if isinstance(override, str) and override.strip()[:1] in ("[", "{"):
        # JSON for a key the model does not know (reported as unknown); a string setting that looks like
        # JSON (a template "{{ summary }}", a listen address "[::1]:8080") is not parsed
        with suppress(ValueError):
            parsed = json.loads(override)
            if isinstance(parsed, list | dict) and (base is None or isinstance(base, list | dict)):
                return parsed
    return override


_JSON_EXAMPLE = {"list": """'["a", "b"]'""", "object": """'{"key": "value"}'"""}


def _loc(path: Sequence[str]) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path]


def _expected_json(path: Sequence[str]) -> Literal["list", "object"] | None:
    """Whether the setting at ``path`` (``("sources", "0", "paths")``) is a list or a group, else None."""
    annotation: Any = Settings
    for part in path:
        if get_origin(annotation) is list:
            if not part.isdigit():
                return None
            (annotation,) = get_args(annotation)
            continue
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        field = annotation.model_fields.get(part.lower())
        if field is None:
            return None
        annotation = field.annotation
    if path and get_origin(annotation) is list:
        return "list"
    if path and isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return None


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The config group a validation error location points into (for did-you-mean hints)."""
    model: type[BaseModel] | None = Settings
    for part in loc:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation: Any = field.annotation
        while getattr(annotation, "__args__", None) and not (
            isinstance(annotation, type) and issubclass(annotation, BaseModel)
        ):
            annotation = next(
                (a for a in annotation.__args__ if isinstance(a, type) and issubclass(a, BaseModel)), None
            )
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def _format_loc(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _env_name(loc: Sequence[str | int], env_data: Mapping[str, Any]) -> str | None:
    """The environment variable that supplied the value at ``loc``, if one did."""
    node: Any = env_data
    for depth, part in enumerate(loc):
        key = str(part).lower()
        if not (isinstance(node, dict) and key in node):
            return None
        node = node[key]
        if not isinstance(node, dict):
            return _env_var(loc[: depth + 1])
    return _env_var(loc) if loc else None


def _messages(exc: ValidationError, env_data: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [p for p in error["loc"] if isinstance(p, str | int)]
        ctx = error.get("ctx") or {}
        if error["type"] == "field_problems":
            for sub, message in ctx["problems"]:
                base = _format_loc(loc)
                lines.append(f"{base}.{sub}: {message}" if base else f"{sub}: {message}")
            continue
        message = str(error["msg"])
        message = message.removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
            model = _model_at(loc[:-1])
            if model is not None:
                import difflib  # here: only an unknown key needs it

                close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
                if close:
                    message += f" (did you mean {close[0]!r}?)"
                else:
                    message += f" (known keys: {', '.join(model.model_fields)})"
        elif error["type"] == "missing":
            message = "required"
        env = _env_name(loc, env_data)
        if env:
            message += f" (from {env})"
        lines.append(f"{_format_loc(loc) or '(top level)'}: {message}")
    return lines


def load_settings(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> Settings:
    """Load the config file ``path`` (else ``$IMAGE_UPDATER_CONFIG``, else none) with the environment over it.

    ``env`` defaults to ``os.environ``. Raises ``ConfigError`` listing every invalid field.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if path is None:
        path = environ.get(CONFIG_ENV) or None
    file = Path(path).expanduser() if path is not None else None
    data = _read_yaml(file) if file is not None else {}
    origin = f"{file}" if file is not None else "defaults"
    env_data = _EnvSource(Settings, environ)()
    problems: list[str] = []
    merged = _merge(data, env_data, (), problems)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        for line in [*_messages(exc, env_data), *_raw_duplicates(merged)]:
            if line not in problems:
                problems.append(line)
    else:
        if not problems:
            return settings
    if env_data:
        origin += " + environment"
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    raise ConfigError(f"invalid configuration ({origin}), {count}:\n" + "\n".join(f"  {p}" for p in problems))
