"""One pass over the configured sources: sync -> plan -> apply -> commit -> push, per source.

The pass is the same whether the daemon's scheduler, a webhook, ``run --once`` or ``apply --commit`` asks
for it. Registry work is async; git and file work run in worker threads so that the daemon's HTTP endpoints
stay responsive during a pass.

Safety rules (DESIGN "Git write-back"):
- the remote is the truth: every attempt starts from ``origin/<branch>`` (``GitRepo.sync``/``refresh``);
- one commit per source per pass, staging only the files the pass changed;
- a rejected push (someone else pushed) -> refresh, re-plan, re-apply, retry with jittered exponential backoff
  (tenacity, as the registry client retries), a bounded number of times; never a force-push of a branch
  someone else writes to. Only a configured ``push_branch`` (ours alone) is rebuilt from ``origin/<branch>``
  and pushed with ``--force-with-lease``;
- a stop request (SIGTERM) is honoured before the push: the local commit is discarded at the next sync.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from image_updater.errors import ConfigError, ImageUpdaterError, PushRejected, _Stopped
from image_updater.findings import ErrorEntry
from image_updater.plan import Result

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from image_updater.checkout import Planned
    from image_updater.gitrepo import GitRepo, WorkingCopyLock
    from image_updater.notify import PassSummary
    from image_updater.pullrequests import ForgeFactory, PullRequestLink
    from image_updater.registry import RegistryClient
    from image_updater.settings import Settings, SourceSettings

__all__ = [
    "DEFAULT_PUSH_ATTEMPTS",
    "SourceOutcome",
    "commit_and_push",
    "make_client",
    "run_once_cli",
    "run_pass",
    "run_source",
]

log = logging.getLogger(__name__)

DEFAULT_PUSH_ATTEMPTS = 5
_BACKOFF_BASE = 0.5  # seconds; the window before the n-th retry is base * 2**n (capped), with full jitter
_BACKOFF_CAP = 8.0


@dataclass(frozen=True, slots=True)
class SourceOutcome:
    """What one pass did for one source."""

    source: str
    result: Result  # updates (as committed, or as planned in a dry run), unchanged, skipped, errors
    commit: str | None  # the commit pushed (or made, in ``apply --commit`` without push); None when nothing
    pushed: bool
    error: str | None  # a source-level failure (git sync, commit or push); None when fine
    duration: float  # seconds
    images: frozenset[str]  # normalised image names this source tracks (webhooks map pushes to sources)
    # pull-request mode: each update branch's pull request (created, updated, unchanged, closed, pending)
    pull_requests: tuple[PullRequestLink, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None and not self.result.errors


def summary_of(outcome: SourceOutcome) -> PassSummary:
    """What a notification says about ``outcome`` (``notify.PassSummary``), with its JSON report."""
    from image_updater.notify import PassSummary

    result = outcome.result
    if outcome.error:
        result = replace(result, errors=(*result.errors, ErrorEntry(None, None, None, outcome.error)))
    return PassSummary(
        source=outcome.source,
        commit=outcome.commit,
        pushed=outcome.pushed,
        changes=outcome.result.updates if outcome.pushed else (),
        error_count=len(result.errors),
        pull_request_urls=tuple(link.url for link in outcome.pull_requests if link.url),
        report={**result.to_dict(), "pull_requests": [link.to_dict() for link in outcome.pull_requests]},
    )


NOTIFY_BOUND = 30.0  # seconds ``run --once`` waits for its notifications at the end


async def _pass_and_notify(settings: Settings, dry_run: bool) -> list[SourceOutcome]:
    from image_updater.notify import Notifier, channels_of

    notifier = Notifier(channels_of(settings)) if settings.notifications and not dry_run else None
    outcomes = await run_pass(settings, dry_run=dry_run)
    if notifier is not None:
        for out in outcomes:
            notifier.submit(summary_of(out))
        await notifier.aclose(NOTIFY_BOUND)
    return outcomes


@asynccontextmanager
async def make_client(
    settings: Settings, *, on_request: Callable[[str, int | str], None] | None = None,
    tags_max_age: float = 0.0,
) -> AsyncIterator[RegistryClient]:
    """The registry client for ``settings``: configured registries, persistent metadata cache in cache_dir.

    ``tags_max_age``: seconds a tag list is reused across sources and passes (the daemon: its interval)."""
    from image_updater.registry import MetadataCache, RegistryClient, options_from_settings

    with MetadataCache.in_dir(settings.cache_dir) as cache:
        options = options_from_settings(settings)
        async with RegistryClient(
            options, cache=cache, on_request=on_request, tags_max_age=tags_max_age
        ) as client:
            yield client


def _log_changes(source: str, result: Result, *, applied: bool) -> None:
    verb = "updated" if applied else "would update"
    for change in result.updates:
        log.info(
            "%s %s %s -> %s", verb, change.image, change.old_tag or change.old or "-", change.new_tag,
            extra={"source": source, "file": change.file, "line": change.line, "image": change.image},
        )
    for error in result.errors:
        log.error(
            "%s", error.message,
            extra={"source": source, "file": error.file, "line": error.line, "image": error.image},
        )


def _images(planned: Planned) -> frozenset[str]:
    return frozenset(target.image.name for target in planned.discovery.targets)


def commit_and_push(
    repo: GitRepo,
    result: Result,
    settings: Settings,
    *,
    source: str,
    push: bool,
    push_branch: str | None = None,
    stop: threading.Event | None = None,
) -> tuple[str | None, bool]:
    """Commit the files of ``result.updates`` (one commit) and optionally push.

    Returns the commit (None when nothing changed) and whether the remote changed: a push branch that
    already holds the identical update is not pushed again. Raises ``PushRejected`` when the remote moved
    on, ``GitError`` for other git failures.
    """
    from image_updater.commitmsg import render_commit_message
    from image_updater.signing import signer_for

    if not result.updates:
        return None, False
    commit_cfg = settings.commit
    message = render_commit_message(
        result, source=source, template=commit_cfg.message_template, skip_ci=commit_cfg.skip_ci
    )
    author = (commit_cfg.author_name, commit_cfg.author_email)
    committer = (commit_cfg.committer_name or author[0], commit_cfg.committer_email or author[1])
    files = sorted({change.file for change in result.updates})
    signer = signer_for(commit_cfg.signing, settings.cache_dir)  # prepared at start: cached
    sha = repo.commit(files, message, author=author, committer=committer, signer=signer)
    if sha is None or not push:
        return sha, False
    if stop is not None and stop.is_set():
        raise _Stopped
    if push_branch:
        return sha, repo.push(push_branch, force_with_lease=True)
    return sha, repo.push()


async def run_source(
    settings: Settings,
    source: SourceSettings,
    *,
    client: RegistryClient,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    now: datetime | None = None,
    push_attempts: int = DEFAULT_PUSH_ATTEMPTS,
    environ: dict[str, str] | None = None,
    images: Collection[str] | None = None,
    lock_timeout: float | None = None,
    forge_factory: ForgeFactory | None = None,
) -> SourceOutcome:
    """One pass for one source. Never raises for git, registry or file problems: they are in the outcome.

    ``images`` (normalised names) focuses the pass on those images' targets, e.g. after a push webhook.
    The source's working copy is locked for the whole pass (``gitrepo.WorkingCopyLock``): a working copy
    another process is using is waited for up to ``lock_timeout`` seconds (default
    ``gitrepo.LOCK_TIMEOUT``), then the pass fails as busy. An unusable cache dir fails the pass too.
    With ``pull_request`` configured the updates go to update branches and pull requests
    (``pullrequests``); ``forge_factory`` replaces the forge client (default: ``image_updater.forges``).
    """
    from image_updater.gitrepo import LOCK_TIMEOUT, WorkingCopyLock, check_cache_dir, workdir_for

    started = time.monotonic()
    wait = LOCK_TIMEOUT if lock_timeout is None else lock_timeout
    try:
        await asyncio.to_thread(check_cache_dir, settings.cache_dir)
        lock = await _acquire(WorkingCopyLock(workdir_for(settings.cache_dir, source.name), timeout=wait))
    except ImageUpdaterError as exc:
        return _outcome(source.name, started, error=f"source {source.name}: {exc}")
    try:
        return await _run_source_locked(
            settings, source, client=client, dry_run=dry_run, stop=stop, now=now,
            push_attempts=push_attempts, environ=environ, images=images, forge_factory=forge_factory,
        )
    finally:
        lock.release()


async def _acquire(lock: WorkingCopyLock) -> WorkingCopyLock:
    """``lock.acquire()`` in a worker thread. When the pass is cancelled while waiting, the thread still
    finishes; a lock it gets then is released at once instead of being held by nobody for good."""
    waiting = asyncio.ensure_future(asyncio.to_thread(lock.acquire))
    try:
        return await asyncio.shield(waiting)
    except asyncio.CancelledError:
        waiting.add_done_callback(
            lambda done: None if done.cancelled() or done.exception() else lock.release()
        )
        raise


async def _run_source_locked(
    settings: Settings,
    source: SourceSettings,
    *,
    client: RegistryClient,
    dry_run: bool,
    stop: threading.Event | None,
    now: datetime | None,
    push_attempts: int,
    environ: dict[str, str] | None,
    images: Collection[str] | None,
    forge_factory: ForgeFactory | None = None,
) -> SourceOutcome:
    from image_updater.gitrepo import GitRepo

    started = time.monotonic()
    try:
        repo = await asyncio.to_thread(GitRepo.for_source, source, settings.cache_dir, environ=environ)
    except ImageUpdaterError as exc:
        return _outcome(source.name, started, error=str(exc))
    source_pass = _SourcePass(
        settings, source, repo, client=client, dry_run=dry_run, stop=stop, now=now, images=images,
        started=started, environ=environ, forge_factory=forge_factory,
    )
    return await source_pass.run(push_attempts)


@dataclass(slots=True)
class _SourcePass:
    """One source's pass on its synced working copy: what it has found so far, and its steps.

    ``run`` repeats ``attempt`` (plan -> apply -> commit -> push) while the push is rejected; each step
    that fails ends the pass with an outcome naming the source, never an exception.
    """

    settings: Settings
    source: SourceSettings
    repo: GitRepo
    client: RegistryClient
    dry_run: bool
    stop: threading.Event | None
    now: datetime | None
    images: Collection[str] | None
    started: float
    environ: dict[str, str] | None = None
    forge_factory: ForgeFactory | None = None
    tracked: frozenset[str] = frozenset()
    result: Result = field(default_factory=Result)

    @property
    def name(self) -> str:
        return self.source.name

    def outcome(
        self, commit: str | None = None, pushed: bool = False, error: str | None = None,
        pull_requests: tuple[PullRequestLink, ...] = (),
    ) -> SourceOutcome:
        return _outcome(
            self.name, self.started, result=self.result, tracked=self.tracked, commit=commit, pushed=pushed,
            error=error, pull_requests=pull_requests,
        )

    def failed(self, message: str) -> SourceOutcome:
        """A source-level failure after planning: nothing reached the remote, so no update counts."""
        self.result = replace(self.result, updates=())
        return self.outcome(error=f"source {self.name}: {message}")

    async def run(self, push_attempts: int) -> SourceOutcome:
        """``attempt`` until its push is not rejected, at most ``push_attempts`` times, with jittered
        exponential backoff between them; every retry starts from the new remote head. Never a force-push."""
        # imported here: `plan` and `apply` take make_client from this module and never push
        from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
        from tenacity.wait import wait_random_exponential

        retrying = AsyncRetrying(
            stop=stop_after_attempt(push_attempts),
            # full jitter: uniform(0, min(cap, base * 2**n)) before the n-th retry
            wait=wait_random_exponential(multiplier=2 * _BACKOFF_BASE, max=_BACKOFF_CAP),
            retry=retry_if_exception_type(PushRejected),
            before_sleep=partial(_log_rejection, self.name, push_attempts),
            reraise=True,
            sleep=asyncio.sleep,
        )
        tries = 0
        try:
            async for attempt in retrying:
                with attempt:
                    tries = attempt.retry_state.attempt_number
                    if tries > 1:
                        try:
                            await asyncio.to_thread(self.repo.refresh)
                        except ImageUpdaterError as exc:
                            return self.failed(str(exc))
                    return await self.attempt()
        except PushRejected as exc:
            return self.failed(f"push rejected {tries} times, giving up this pass: {exc}")
        raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or raises

    async def attempt(self) -> SourceOutcome:
        """Plan on the current head, then (unless a dry run or nothing to do) write, commit and push.

        Raises ``PushRejected`` when the remote moved on; every other failure is the outcome's error.
        """
        try:
            planned = await self.plan()
        except ImageUpdaterError as exc:
            return self.outcome(error=f"source {self.name}: {exc}")
        self.tracked = _images(planned)
        self.result = planned.result
        if self.source.pull_request is not None and not self.dry_run:
            # every pass, updates or not: an open pull request the base has caught up with gets closed
            if self.stop is not None and self.stop.is_set():
                return self.outcome(error=f"source {self.name}: stopping; pass abandoned before writing")
            return await self.pull_requests(planned)
        if self.dry_run or not planned.result.updates:
            _log_changes(self.name, self.result, applied=False)
            return self.outcome()
        if self.stop is not None and self.stop.is_set():
            return self.outcome(error=f"source {self.name}: stopping; pass abandoned before writing")
        return await self.write(planned)

    async def plan(self) -> Planned:
        """The plan of the source's paths on the working copy (a push branch is rebuilt from ``branch``)."""
        from image_updater.checkout import plan_directory

        if self.source.push_branch and not self.dry_run:
            await asyncio.to_thread(self.repo.rebuild_branch, self.source.push_branch)
        return await plan_directory(
            self.repo.path, self.source.paths, client=self.client,
            policy_dirs=list(self.settings.policy_dirs), now=self.now, images=self.images,
            explain=True,  # the daemon's status page shows why each tag lost
            argocd_namespace=self.settings.migration.argocd_namespace,
            branch=self.source.branch,  # the base, what AIU's git-branch settings are compared with
        )

    async def pull_requests(self, planned: Planned) -> SourceOutcome:
        """Pull-request mode: update branches on the base and a pull request each; the base is not written."""
        from image_updater.pullrequests import forge_session, run_pull_requests

        environ = os.environ if self.environ is None else self.environ
        if self.forge_factory is not None:
            done = await run_pull_requests(
                self.repo, planned, self.settings, self.source, forge_factory=self.forge_factory,
                stop=self.stop,
            )
        else:
            import httpx

            async with httpx.AsyncClient(timeout=30.0, follow_redirects=False) as http:
                factory = forge_session(environ, http)
                done = await run_pull_requests(
                    self.repo, planned, self.settings, self.source, forge_factory=factory, stop=self.stop
                )
        self.result = done.result
        _log_changes(self.name, self.result, applied=True)
        error = "; ".join(done.errors) or None
        pushed = done.pushed
        if pushed:
            log.info("pushed %d update branch(es)", len(pushed), extra={"source": self.name})
        return self.outcome(
            commit=pushed[0] if pushed else None, pushed=bool(pushed), error=error, pull_requests=done.links
        )

    async def write(self, planned: Planned) -> SourceOutcome:
        """Apply ``planned`` to the files, commit and push; ``PushRejected`` when the remote moved on."""
        from image_updater.checkout import apply_result

        # a working copy of ours is disposable (the commit's objects and the push are what must last): its
        # files are overwritten in place once journalled (``GitRepo.prepare_in_place_writes``), or written
        # atomically with one directory fsync per pass; someone's own checkout keeps full durability
        files = sorted({change.file for change in planned.result.updates})
        in_place = await asyncio.to_thread(self.repo.prepare_in_place_writes, files)
        self.result = await asyncio.to_thread(apply_result, self.repo.path, planned,
                                              durable=not self.repo.managed, in_place=in_place)
        try:
            sha, pushed = await asyncio.to_thread(
                commit_and_push, self.repo, self.result, self.settings, source=self.name, push=True,
                push_branch=self.source.push_branch, stop=self.stop,
            )
        except _Stopped:
            return self.failed("stopping; commit abandoned before the push")
        except PushRejected:
            raise  # for ``run`` to retry on the new remote head
        except ImageUpdaterError as exc:  # git failures, the commit message template
            return self.failed(str(exc))
        if sha is None:  # no file could be written: the result's errors say why
            return self.outcome()
        if not pushed:  # the push branch already holds this very update: nothing new was written
            log.info("%s already holds these updates", self.source.push_branch or self.source.branch,
                     extra={"source": self.name})
            self.result = replace(self.result, updates=())
            return self.outcome()
        _log_changes(self.name, self.result, applied=True)
        log.info("pushed %s with %d update(s)", sha[:12], len(self.result.updates),
                 extra={"source": self.name})
        return self.outcome(commit=sha, pushed=True)


def _outcome(
    name: str,
    started: float,
    *,
    result: Result | None = None,
    tracked: frozenset[str] = frozenset(),
    commit: str | None = None,
    pushed: bool = False,
    error: str | None = None,
    pull_requests: tuple[PullRequestLink, ...] = (),
) -> SourceOutcome:
    """The outcome of a source's pass that began at ``started``; a source-level error is logged here."""
    if error:
        log.error("%s", error, extra={"source": name})
    return SourceOutcome(
        source=name, result=Result() if result is None else result, commit=commit, pushed=pushed, error=error,
        duration=time.monotonic() - started, images=tracked, pull_requests=pull_requests,
    )


def _log_rejection(source: str, push_attempts: int, retry_state: RetryCallState) -> None:
    log.warning(
        "push rejected (attempt %d of %d), re-planning on the new remote head in %.1fs",
        retry_state.attempt_number, push_attempts, retry_state.upcoming_sleep, extra={"source": source},
    )


async def run_pass(
    settings: Settings,
    *,
    sources: Sequence[str] | None = None,
    dry_run: bool = False,
    client: RegistryClient | None = None,
    stop: threading.Event | None = None,
) -> list[SourceOutcome]:
    """One pass over the configured sources (or the named ones), sources one after the other.

    One registry client serves every source within one pass scope, so each image's tags are fetched once
    per pass however many sources use it (and metadata comes from the persistent cache).
    """
    chosen = [s for s in settings.sources if sources is None or s.name in sources]

    async def each(registry: RegistryClient) -> list[SourceOutcome]:
        with registry.one_pass():
            return [
                await run_source(settings, source, client=registry, dry_run=dry_run, stop=stop)
                for source in chosen
            ]

    if client is None:
        async with make_client(settings) as own:
            return await each(own)
    return await each(client)


def run_once_cli(settings: Settings, dry_run: bool, fmt: str = "table") -> int:
    """``image-updater run --once``: one pass, a report per source on stdout; 1 when anything failed."""
    from image_updater.gitrepo import check_cache_dir
    from image_updater.report import render

    if not settings.sources:
        raise ConfigError("no sources configured: add at least one entry under 'sources'")
    check_cache_dir(settings.cache_dir)  # an unusable cache dir is a config error (exit 2)
    if not dry_run:
        from image_updater.signing import signer_for

        signer_for(settings.commit.signing, settings.cache_dir)  # a bad signing key: ConfigError (exit 2)
    if settings.notifications and not dry_run:
        from image_updater.notify import channels_of

        channels_of(settings)  # an unset url_env / secret_env: ConfigError (exit 2) before the pass
    outcomes = asyncio.run(_pass_and_notify(settings, dry_run))
    failed = False
    if fmt == "json":
        sys.stdout.write(json.dumps({"sources": [_outcome_json(o) for o in outcomes]}, indent=2) + "\n")
        sys.stdout.flush()
        return 1 if any(not o.ok for o in outcomes) else 0
    for out in outcomes:
        header = f"== {out.source}"
        if out.commit:
            header += f": pushed {out.commit[:12]}" if out.pushed else f": committed {out.commit[:12]}"
        elif dry_run:
            header += ": dry run, nothing written"
        sys.stdout.write(header + "\n")
        for link in out.pull_requests:
            shown = f"#{link.number} {link.url}" if link.number else "(not opened yet)"
            sys.stdout.write(f"   pull request {shown}: {link.action} ({link.branch})\n")
        result = out.result
        if out.error:
            result = replace(result, errors=(*result.errors, ErrorEntry(None, None, None, out.error)))
        text = render(result, fmt)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        failed = failed or not out.ok
    sys.stdout.flush()
    return 1 if failed else 0


def _outcome_json(out: SourceOutcome) -> dict[str, object]:
    """One source of ``run --once --format json``: the plan's JSON keys plus what was written."""
    result = out.result
    if out.error:
        result = replace(result, errors=(*result.errors, ErrorEntry(None, None, None, out.error)))
    return {
        "source": out.source, "commit": out.commit, "pushed": out.pushed, **result.to_dict(),
        "pull_requests": [link.to_dict() for link in out.pull_requests],
    }
