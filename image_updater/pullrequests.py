"""Pull-request mode for one source's pass: update branches rebuilt on the base, one pull request each.

DESIGN "Review workflow: update branches and pull requests". ``writeback`` plans the source on its base
branch (``branch``) as usual; with ``pull_request`` set it hands the plan to ``run_pull_requests`` instead
of committing to the base:

1. the updates are grouped (``prplan.group_updates``: one group per source, or one per image), each group
   naming its update branch;
2. one ``ls-remote`` reads the heads of those branches (``GitRepo.remote_heads``);
3. per group, the branch is checked out afresh at the current base head, only the group's edits are
   written and committed (with the ``Image-Updater-Source`` trailer), and then:
   - the branch does not exist: pushed with ``--force-with-lease=refs/heads/<b>:`` (must still not exist);
   - it exists and every commit on it beyond the base is ours (trailer and committer): nothing is pushed
     when it already holds exactly this change on this base; otherwise it is replaced with
     ``--force-with-lease=refs/heads/<b>:<the exact old head>``;
   - someone else committed to it: it is left as it is and a note says so (the pull request is still
     made sure of, so the person's work is reviewed);
   - a lease that fails (another pass or a person pushed in between) re-reads that branch and tries again,
     a bounded number of times with jittered backoff;
4. the forge: one listing of the open pull requests into the base, then per branch
   ``ensure_pull_request`` (created, updated, or unchanged with no write), and a pull request of ours
   whose branch no longer has a group (the base already has those changes, or newer ones) closed with a
   comment; its branch is left in place (the forge shows the pull request as closed, and a reopened
   pull request still has its commits).

The base branch is never pushed: ``GitRepo.protect_base`` makes every push to it fail, and update
branches are pushed through ``GitRepo.push_update_branch``, which refuses the base whatever it is given.
Forge failures are reported for the source with the forge's own message; the branches stay pushed and
the pull request is ``pending`` until a later pass completes it. The token goes to the forge client and
nowhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

import httpx

from image_updater.errors import ConfigError, ImageUpdaterError, PushRejected
from image_updater.findings import ErrorEntry, Skipped
from image_updater.forges import (
    PR_MARKER,
    Forge,
    ForgeTarget,
    PullRequest,
    PullRequestDraft,
    default_api_url,
    ensure_pull_request,
    make_forge,
    repository_from_url,
)
from image_updater.plan import Change, Result

if TYPE_CHECKING:
    from image_updater.checkout import Planned
    from image_updater.gitrepo import GitRepo
    from image_updater.prplan import UpdateGroup
    from image_updater.settings import PullRequestSettings, Settings, SourceSettings

__all__ = [
    "BRANCH_ATTEMPTS",
    "BranchResult",
    "ForgeSession",
    "PullRequestLink",
    "PullRequestOutcome",
    "PullRequestSpec",
    "PullRequestView",
    "forge_session",
    "run_pull_requests",
]

log = logging.getLogger(__name__)

BRANCH_ATTEMPTS = 5  # pushes of one update branch per pass when leases keep failing
_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 4.0

Action = Literal["created", "updated", "unchanged", "closed", "pending"]


@dataclass(frozen=True, slots=True)
class PullRequestLink:
    """A pull request a pass created, updated, checked, closed, or could not reach (``pending``)."""

    number: int  # 0 while pending (the branch is pushed, the forge failed)
    url: str  # "" while pending
    branch: str
    action: str  # created | updated | unchanged | closed | pending

    def to_dict(self) -> dict[str, object]:
        return {"number": self.number, "url": self.url, "branch": self.branch, "action": self.action}


class PullRequestView(Protocol):
    """What this module reads of a forge's pull request (``image_updater.forges.PullRequest``)."""

    @property
    def number(self) -> int: ...
    @property
    def url(self) -> str: ...
    @property
    def head(self) -> str: ...
    @property
    def body(self) -> str: ...


@dataclass(frozen=True, slots=True)
class PullRequestSpec:
    """The pull request one update branch should have (``image_updater.forges.PullRequestDraft``)."""

    head: str
    base: str
    title: str
    body: str
    labels: tuple[str, ...] = ()
    reviewers: tuple[str, ...] = ()
    draft: bool = False


class ForgeSession(Protocol):
    """One pass's conversation with the forge; ``forge_session`` adapts ``image_updater.forges``."""

    @property
    def requests(self) -> int: ...
    @property
    def marker(self) -> str: ...
    async def open_pull_requests(self, base: str) -> Mapping[str, PullRequestView]: ...
    async def ensure(
        self, spec: PullRequestSpec, existing: PullRequestView | None
    ) -> tuple[PullRequestView, str]: ...
    async def close(self, pr: PullRequestView, comment: str) -> None: ...


ForgeFactory = Callable[["SourceSettings", str], Awaitable["ForgeSession"]]


@dataclass(frozen=True, slots=True)
class BranchResult:
    """What the git side did with one group's update branch."""

    group: UpdateGroup
    state: Literal["pushed", "unchanged", "foreign", "failed"]
    sha: str | None  # the branch head afterwards (None: nothing on the remote)
    note: str | None = None  # why it was left alone, or why it failed
    applied: Result | None = None  # the group's updates as written (drops and errors included)


@dataclass(frozen=True, slots=True)
class PullRequestOutcome:
    """What pull-request mode did for one source in one pass."""

    result: Result  # the updates on update branches that were pushed or already current; errors; notes
    branches: tuple[BranchResult, ...]
    links: tuple[PullRequestLink, ...]
    errors: tuple[str, ...]  # source-level failures (forge, git) with the forge's or git's message
    forge_requests: int = 0

    @property
    def pushed(self) -> tuple[str, ...]:
        return tuple(b.sha for b in self.branches if b.state == "pushed" and b.sha)


# -- the forge ------------------------------------------------------------------------------------------


class _ForgesAdapter:
    """``ForgeSession`` over ``image_updater.forges`` (the REST clients)."""

    def __init__(self, forge: Forge) -> None:
        self._forge = forge

    @property
    def requests(self) -> int:
        return self._forge.requests

    @property
    def marker(self) -> str:
        return PR_MARKER

    async def open_pull_requests(self, base: str) -> Mapping[str, PullRequestView]:
        return await self._forge.open_pull_requests(base)

    async def ensure(
        self, spec: PullRequestSpec, existing: PullRequestView | None
    ) -> tuple[PullRequestView, str]:
        draft = PullRequestDraft(
            head=spec.head, base=spec.base, title=spec.title, body=spec.body, labels=spec.labels,
            reviewers=spec.reviewers, draft=spec.draft,
        )
        known = existing if isinstance(existing, PullRequest) else None
        pr, action = await ensure_pull_request(self._forge, draft, known)
        return pr, action

    async def close(self, pr: PullRequestView, comment: str) -> None:
        if not isinstance(pr, PullRequest):
            raise TypeError("close takes a pull request the forge listed")
        await self._forge.close(pr, comment=comment)


def forge_target_parts(source: SourceSettings, environ: Mapping[str, str]) -> tuple[str, str, str, str]:
    """``(provider, api_url or "", repository or "", token)``; ``ConfigError`` when the token is unset."""
    from image_updater.envnames import shown_env_name

    pr = _settings(source)
    name = source.pr_token_env or ""
    token = environ.get(name, "")
    if not token:
        raise ConfigError(
            f"source {source.name}: environment variable {shown_env_name(name)} (pull_request.token_env) "
            "is empty or unset"
        )
    return pr.provider, pr.api_url or "", pr.repository or "", token


def forge_session(environ: Mapping[str, str], http: httpx.AsyncClient, *,
                  time_budget: float = 60.0) -> ForgeFactory:
    """The production factory: ``image_updater.forges.make_forge`` on ``http``; ``time_budget`` bounds
    each source's forge requests (retries and rate-limit waits included) in one pass."""

    async def make(source: SourceSettings, base: str) -> ForgeSession:
        provider, api_url, repository, token = forge_target_parts(source, environ)
        api_url = api_url or default_api_url(provider, source.url)
        repository = repository or repository_from_url(provider, source.url)
        target = ForgeTarget(provider=provider,  # type: ignore[arg-type]  # settings validated it
                             api_url=api_url, repository=repository, token=token)
        return _ForgesAdapter(make_forge(target, http, time_budget=time_budget))

    return make


# -- one pass ---------------------------------------------------------------------------------------------


def _settings(source: SourceSettings) -> PullRequestSettings:
    if source.pull_request is None:
        raise ConfigError(f"source {source.name}: pull_request is not configured")
    return source.pull_request


def _build_branch(
    repo: GitRepo, planned: Planned, group: UpdateGroup, settings: Settings, source: SourceSettings,
    remote: str | None,
) -> BranchResult:
    """The git side of one group (in a worker thread): commit on the base head, push with the lease."""
    from image_updater.checkout import apply_result
    from image_updater.commitmsg import render_commit_message
    from image_updater.prplan import commit_message_with_trailer, is_ours

    commit_cfg = settings.commit
    if remote is not None:
        foreign = [
            c for c in repo.commits_beyond_base(remote)
            if not is_ours(c.message, c.committer, source=source.name, identity=commit_cfg.committer)
        ]  # fmt: skip
        if foreign:
            newest = foreign[0]
            note = (f"update branch {group.branch} has commits by someone else ({newest.sha[:12]} "
                    f"{newest.author}): left as it is")
            return BranchResult(group, "foreign", remote, note=note)
    repo.start_update_branch(group.branch)
    applied = apply_result(repo.path, replace(planned, result=Result(updates=group.updates)))
    if not applied.updates:
        why = applied.errors[0].message if applied.errors else "no file could be written"
        return BranchResult(group, "failed", remote, note=why, applied=applied)
    message = commit_message_with_trailer(
        render_commit_message(
            applied, source=source.name, template=commit_cfg.message_template, skip_ci=commit_cfg.skip_ci
        ),
        source.name,
    )
    sha = repo.commit(
        sorted({c.file for c in applied.updates}), message, author=commit_cfg.author,
        committer=commit_cfg.committer,
    )
    if sha is None:
        return BranchResult(group, "failed", remote, note="the edits changed no file", applied=applied)
    if remote is not None and repo.holds_same_change(remote, sha):
        return BranchResult(group, "unchanged", remote, applied=applied)
    if not repo.push_update_branch(group.branch, remote):  # PushRejected when the lease fails
        return BranchResult(group, "unchanged", sha, applied=applied)
    return BranchResult(group, "pushed", sha, applied=applied)


def _blob_id(content: bytes, length: int) -> str:
    """Git's object id of a blob holding ``content`` (SHA-1, or SHA-256 for 64-digit ids)."""
    digest = hashlib.sha256 if length == 64 else hashlib.sha1
    return digest(b"blob %d\0" % len(content) + content).hexdigest()


def _expected_texts(planned: Planned, group: UpdateGroup) -> dict[str, bytes] | None:
    """The group's files as its commit should hold them (None: cannot tell without writing them)."""
    from image_updater.errors import YamlEditError
    from image_updater.yamledit import Edit, apply_edits

    by_file: dict[str, list[Change]] = {}
    for change in group.updates:
        by_file.setdefault(change.file, []).append(change)
    texts: dict[str, bytes] = {}
    for file, changes in by_file.items():
        text = planned.texts.get(file)
        if text is None:
            return None
        edits = [Edit(c.start, c.end, c.new, original=text[c.start : c.end]) for c in changes]
        try:
            texts[file] = apply_edits(text, edits, filename=file).encode("utf-8")
        except (YamlEditError, ValueError):
            return None
    return texts


def current_branches(
    repo: GitRepo,
    planned: Planned,
    groups: Sequence[UpdateGroup],
    settings: Settings,
    source: SourceSettings,
    heads: Mapping[str, str],
    base: str,
) -> set[str]:
    """The groups' branches that already hold exactly their change on ``base``, found without a checkout:
    one commit of ours on the base head whose changed files are, blob for blob, what the group writes.

    Two git processes for all the branches (``describe_commits``, ``changed_blobs``), so that a pass with
    nothing new costs little however many branches there are. Anything
    uncertain (a file not planned, an edit that cannot be computed) leaves the branch to the full path.
    """
    from image_updater.prplan import is_ours

    candidates = [g for g in groups if g.branch in heads]
    shas = [heads[g.branch] for g in candidates]
    described = repo.describe_commits(shas)
    identity = settings.commit.committer
    on_base = []
    for group in candidates:
        parents, info = described.get(heads[group.branch], ((), None))
        if parents == (base,) and info is not None and is_ours(
            info.message, info.committer, source=source.name, identity=identity
        ):
            on_base.append(group)
    blobs = repo.changed_blobs([heads[g.branch] for g in on_base])
    current: set[str] = set()
    for group in on_base:
        sha = heads[group.branch]
        expected = _expected_texts(planned, group)
        if expected is None or set(blobs.get(sha, {})) != set(expected):
            continue
        if all(blobs[sha][f] == _blob_id(content, len(sha)) for f, content in expected.items()):
            current.add(group.branch)
    return current


async def _sync_branch(
    repo: GitRepo, planned: Planned, group: UpdateGroup, settings: Settings, source: SourceSettings,
    remote: str | None, attempts: int,
) -> BranchResult:
    """``_build_branch`` until its lease holds, at most ``attempts`` times; each retry re-reads the branch."""
    for attempt in range(1, attempts + 1):
        try:
            return await asyncio.to_thread(_build_branch, repo, planned, group, settings, source, remote)
        except PushRejected as exc:
            if attempt == attempts:
                return BranchResult(group, "failed", None,
                                    note=f"push rejected {attempts} times, giving up this pass: {exc}")
            delay = random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt))
            log.warning("update branch %s moved while we pushed (attempt %d of %d); re-reading it in %.1fs",
                        group.branch, attempt, attempts, delay, extra={"source": source.name})
            await asyncio.sleep(delay)
            heads = await asyncio.to_thread(repo.remote_heads, [group.branch])
            remote = heads.get(group.branch)
    raise AssertionError("unreachable")  # pragma: no cover


async def run_pull_requests(
    repo: GitRepo,
    planned: Planned,
    settings: Settings,
    source: SourceSettings,
    *,
    forge_factory: ForgeFactory,
    attempts: int = BRANCH_ATTEMPTS,
    stop: threading.Event | None = None,
) -> PullRequestOutcome:
    """Pull-request mode for ``source`` on its synced working copy, with ``planned`` made on the base.

    Never raises for git or forge failures: they are the outcome's errors. ``ConfigError`` for a bad
    title or body template is an error too (the branch is pushed, the pull request pending).
    """
    from image_updater.prplan import group_updates

    pr = _settings(source)
    repo.protect_base()
    result = planned.result
    groups = group_updates(result, source=source.name, group_by=pr.group_by, template=pr.branch_template)
    errors: list[str] = []
    try:
        forge = await forge_factory(source, source.branch)
    except ImageUpdaterError as exc:
        return PullRequestOutcome(replace(result, updates=()), (), (), (f"source {source.name}: {exc}",))
    try:
        heads = await asyncio.to_thread(repo.remote_heads, [g.branch for g in groups])
    except ImageUpdaterError as exc:
        return PullRequestOutcome(replace(result, updates=()), (), (), (f"source {source.name}: {exc}",))
    try:
        base = await asyncio.to_thread(lambda: repo.base_head)
        current = await asyncio.to_thread(
            current_branches, repo, planned, groups, settings, source, heads, base
        )
    except ImageUpdaterError as exc:
        log.debug("the quick check of the update branches failed, building each: %s", exc,
                  extra={"source": source.name})
        current = set()
    branches: list[BranchResult] = []
    for group in groups:
        if group.branch in current:
            branches.append(BranchResult(group, "unchanged", heads[group.branch],
                                         applied=Result(updates=group.updates)))
            continue
        if stop is not None and stop.is_set():
            errors.append(f"source {source.name}: stopping; {group.branch} and the branches after it "
                          "were not written this pass")
            break
        try:
            branches.append(
                await _sync_branch(repo, planned, group, settings, source, heads.get(group.branch), attempts)
            )
        except ImageUpdaterError as exc:
            branches.append(BranchResult(group, "failed", None, note=str(exc)))
    links, forge_errors = await _forge_side(forge, branches, source, pr, result)
    errors.extend(forge_errors)
    return PullRequestOutcome(
        _combined(result, branches), tuple(branches), tuple(links), tuple(errors), forge.requests
    )


def _combined(result: Result, branches: Sequence[BranchResult]) -> Result:
    """The pass's Result: updates now on an update branch, file errors of the edits, notes as skips."""
    updates: list[Change] = []
    errors = list(result.errors)
    skipped = list(result.skipped)
    for branch in branches:
        applied = branch.applied
        if applied is not None:
            errors.extend(e for e in applied.errors if e not in errors)
        if branch.state in ("pushed", "unchanged") and applied is not None:
            updates.extend(applied.updates)
        elif branch.state == "foreign" and branch.note:
            first = branch.group.updates[0]
            skipped.append(Skipped(file=first.file, line=None, image=branch.group.image, reason=branch.note))
        elif branch.state == "failed" and branch.note:
            errors.append(ErrorEntry(None, None, branch.group.image, f"{branch.group.branch}: {branch.note}"))
    return replace(result, updates=tuple(updates), errors=tuple(errors), skipped=tuple(skipped))


async def _forge_side(
    forge: ForgeSession, branches: Sequence[BranchResult], source: SourceSettings, pr: PullRequestSettings,
    result: Result,
) -> tuple[list[PullRequestLink], list[str]]:
    """One listing, then ensure per branch on the remote, then close ours that are obsolete."""
    from image_updater.prplan import branch_pattern, render_body, render_title

    links: list[PullRequestLink] = []
    ready = [b for b in branches if b.state in ("pushed", "unchanged", "foreign") and b.sha]
    try:
        existing = dict(await forge.open_pull_requests(source.branch))
    except ImageUpdaterError as exc:
        links = [PullRequestLink(0, "", b.group.branch, "pending") for b in ready]
        return links, [_forge_error(source, "listing the open pull requests", exc, bool(ready))]
    errors: list[str] = []
    for index, branch in enumerate(ready):
        group = branch.group
        mine = existing.get(group.branch)
        if branch.state == "foreign" and mine is not None:
            # a person works on that branch: its pull request is theirs to word now
            links.append(PullRequestLink(mine.number, mine.url, group.branch, "unchanged"))
            continue
        try:
            spec = PullRequestSpec(
                head=group.branch, base=source.branch,
                title=render_title(group, source=source.name, template=pr.title_template),
                body=render_body(group, source=source.name, template=pr.body_template, marker=forge.marker),
                labels=tuple(pr.labels), reviewers=tuple(pr.reviewers), draft=pr.draft,
            )  # fmt: skip
            found, action = await forge.ensure(spec, mine)
        except ConfigError as exc:
            links.append(PullRequestLink(0, "", group.branch, "pending"))
            errors.append(f"source {source.name}: pull request for {group.branch}: {exc}")
            continue
        except ImageUpdaterError as exc:
            # the forge is failing: the remaining branches stay pushed and wait for the next pass
            links.extend(PullRequestLink(0, "", b.group.branch, "pending") for b in ready[index:])
            errors.append(_forge_error(source, f"pull request for {group.branch}", exc, True))
            return links, errors
        links.append(PullRequestLink(found.number, found.url, group.branch, action))
        log.info("pull request #%d %s: %s", found.number, action, found.url,
                 extra={"source": source.name, "branch": group.branch})
    if result.errors:
        return links, errors  # an image that failed to resolve is not "already in the base": close nothing
    current = {b.group.branch for b in branches}
    pattern = branch_pattern(pr.branch_template, source=source.name)
    for head, open_pr in sorted(existing.items()):
        if head in current or not pattern.fullmatch(head) or forge.marker not in (open_pr.body or ""):
            continue
        comment = (f"image-updater: the base branch `{source.branch}` already has these updates (or newer "
                   "ones), so this pull request is no longer needed. The branch is left in place.")
        try:
            await forge.close(open_pr, comment)
        except ImageUpdaterError as exc:
            errors.append(_forge_error(source, f"closing pull request #{open_pr.number}", exc, False))
            continue
        links.append(PullRequestLink(open_pr.number, open_pr.url, head, "closed"))
        log.info("pull request #%d closed: the base has its updates", open_pr.number,
                 extra={"source": source.name, "branch": head})
    return links, errors


def _forge_error(source: SourceSettings, what: str, exc: ImageUpdaterError, pushed: bool) -> str:
    tail = "; the branch stays pushed and the next pass completes the pull request" if pushed else ""
    return f"source {source.name}: {what}: {exc}{tail}"
