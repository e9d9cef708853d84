"""The daemon: one APScheduler job per source, webhook-triggered passes, graceful shutdown.

This is the only module that imports apscheduler. Every source gets an interval job (first run at start-up,
then every ``interval`` plus a random delay of at most 10 % of it). Passes of one source never overlap:

* a scheduled tick that finds the source's pass running is coalesced into it;
* a webhook that finds it running marks it to run once more right after (however many webhooks arrive);
* webhook-triggered passes of one source start at most once every ``webhook_min_interval`` seconds, so a
  burst of pushes costs a bounded number of passes, and none is lost.

A pass that raises is logged and counted; the next tick runs it again. Passes run in tasks the daemon owns,
not in the scheduler's job coroutines, because shutting down an ``AsyncIOScheduler`` cancels those.

Shutdown (``request_stop``, wired to SIGTERM/SIGINT by ``serve``): the scheduler stops, the stop event tells
running passes to give up before they push, and they get ``grace_period`` seconds to return; whatever still
runs then is cancelled. ``serve`` also arms a last-resort timer that ends the process should a worker thread
(a hung git subprocess) keep the interpreter from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from image_updater.envnames import shown_env_name
from image_updater.errors import ConfigError, ImageUpdaterError, redact
from image_updater.httpserver import HttpServer, Limits, Throttle
from image_updater.metrics import Metrics, PassOutcomeLabel
from image_updater.sharding import first_pass_offset, owned, parse_ordinal
from image_updater.status import PassRecord, SourceInfo, StatusBoard, make_page_handler
from image_updater.webhooks import PushEvent

if TYPE_CHECKING:
    from image_updater.settings import Settings

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_WEBHOOK_MIN_INTERVAL",
    "Daemon",
    "ExitTimer",
    "PassFunction",
    "PassOutcome",
    "WorkerThreads",
    "release_free_memory",
    "resolve_shard",
    "run_until_stopped",
    "serve",
    "status_board_for",
    "status_token",
    "tune_allocator",
    "webhook_secret",
]

log = logging.getLogger("image_updater.daemon")

DEFAULT_GRACE_PERIOD = 30.0
DEFAULT_WEBHOOK_MIN_INTERVAL = 5.0
# After the grace period, how long the process may still take to exit before the last-resort timer ends it.
EXIT_TIMEOUT_MARGIN = 15.0
NOTIFY_DRAIN = 5.0  # seconds a stopping daemon waits for in-flight notifications, then drops them
JITTER_FRACTION = 0.1
SHARD_ORDINAL_ENV = "IMAGE_UPDATER_SHARD_ORDINAL"


class PassOutcome(PassRecord, Protocol):
    """What a pass reports: what the status board records, and the images the source tracks;
    ``image_updater.writeback.SourceOutcome`` has exactly these fields."""

    @property
    def images(self) -> frozenset[str]: ...


# (source name, stop event) -> outcome. The stop event is set on shutdown; the pass must not push after it.
# (source, stop event, images): ``images`` None runs a full pass; a set limits the pass to the targets of
# those normalised image names (a webhook-triggered pass resolves only what was pushed)
PassFunction = Callable[[str, threading.Event, frozenset[str] | None], Awaitable[PassOutcome]]


@dataclass(slots=True)
class _SourceState:
    name: str
    task: asyncio.Task[None] | None = None  # the loop running (or about to run) this source's passes
    running: bool = False  # a pass is executing right now (not merely waiting for its slot)
    rerun: bool = False  # a webhook arrived during the running pass: run once more right after it
    images: frozenset[str] | None = None  # from the last pass that synced; None: not known yet
    last_webhook_start: float = -math.inf  # monotonic time the last webhook-triggered pass started
    last_full_start: float = -math.inf  # monotonic time the last full pass started
    last_outcome: PassOutcome | None = None
    want_full: bool = False  # the next webhook-triggered pass must look at every image
    want_images: set[str] = field(default_factory=set)  # ...or only at these (pushed) images

    def request(self, focus: frozenset[str] | None) -> None:
        if focus is None:
            self.want_full = True
        else:
            self.want_images |= focus

    def take_focus(self) -> frozenset[str] | None:
        """What the pass starting now covers (None: everything), resetting the requests it answers."""
        focus = None if self.want_full or not self.want_images else frozenset(self.want_images)
        self.want_full = False
        self.want_images.clear()
        return focus

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()


class Daemon:
    """Schedules passes over named sources; knows which source tracks which image.

    ``pass_fn`` runs one pass; the daemon never calls it twice at once for the same source.
    """

    def __init__(
        self,
        sources: Sequence[str],
        *,
        interval: timedelta,
        pass_fn: PassFunction,
        metrics: Metrics | None = None,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        webhook_min_interval: float = DEFAULT_WEBHOOK_MIN_INTERVAL,
        dry_run: bool = False,
        status_board: StatusBoard | None = None,
        shard: tuple[int, int] | None = None,
        concurrency: int = 0,
        release_memory: Callable[[], object] | None = None,
    ) -> None:
        # a shard may own no source (more replicas than sources, or an unlucky draw): it is then idle and
        # ready, and still forwards webhooks
        if not sources and shard is None:
            raise ConfigError("no sources configured: the daemon has nothing to do")
        if len(set(sources)) != len(sources):
            raise ConfigError("source names must be unique")
        if interval.total_seconds() <= 0:
            raise ConfigError("interval must be positive")
        self.metrics = metrics or Metrics()
        self.interval = interval
        self.grace_period = grace_period
        self.webhook_min_interval = webhook_min_interval
        self.dry_run = dry_run
        self._pass_fn = pass_fn
        self._states = {name: _SourceState(name) for name in sources}
        for name in sources:
            self.metrics.add_source(name)
        self.stop_event = threading.Event()  # read by passes (in worker threads too)
        self._stopping: asyncio.Event | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._passes_finished = 0
        # what the status page and /api/v1/status show: every pass outcome is recorded here
        self.status_board = status_board or StatusBoard(SourceInfo(name, "", "") for name in sources)
        self.shard = shard
        if shard is not None:
            self.status_board.set_shard(shard[0], shard[1], sources)
            self.metrics.set_shard(shard[0], shard[1], len(sources))
        # at most this many passes at once (git and registry work); 0: no bound
        self._slots = asyncio.Semaphore(concurrency) if concurrency > 0 else None
        self.concurrency = concurrency
        self._spread = False  # scheduled ticks spread over the interval (set by run)
        self._startup: list[asyncio.Task[None]] = []
        # called after every pass: hands the allocator's free memory back (see release_free_memory)
        self._release_memory = release_memory or release_free_memory
        self._workers: WorkerThreads | None = None  # set by run

    # -- state seen by the HTTP endpoints ------------------------------------------------------------

    @property
    def sources(self) -> list[str]:
        return list(self._states)

    def alive(self) -> bool:
        """The scheduler runs and no shutdown was requested."""
        return self._scheduler is not None and self._scheduler.running and not self.stop_event.is_set()

    def ready(self) -> bool:
        """At least one pass has finished (whatever its outcome) and the daemon is not shutting down; a
        shard that owns no source is ready as soon as it runs."""
        if not self._states:
            return self.alive()
        return self._passes_finished > 0 and not self.stop_event.is_set()

    @property
    def passes_finished(self) -> int:
        return self._passes_finished

    def last_outcome(self, source: str) -> PassOutcome | None:
        return self._states[source].last_outcome

    def sources_for(self, events: Iterable[PushEvent]) -> list[str]:
        """The sources a push concerns, in config order.

        A source is concerned when its last pass looked at the pushed repository, or when it has not
        completed a pass yet (its images are unknown). A push whose registry host matches no tracked image
        (the sender may know the registry under another name than the one written in the YAML, or not say
        at all) falls back to matching the repository path alone: an extra pass costs little, a missed one
        costs the very latency the webhook is for.
        """
        known = {s.name: s.images for s in self._states.values() if s.images is not None}
        paths = {name: {_path_of(image) for image in images} for name, images in known.items()}
        chosen = {name for name in self._states if name not in known}
        for event in events:
            matches = [name for name, images in known.items() if event.registry and event.name in images]
            if not matches:
                matches = [name for name in known if event.repository in paths[name]]
            chosen.update(matches)
        return [name for name in self._states if name in chosen]

    # -- triggering ----------------------------------------------------------------------------------

    def _focus(self, state: _SourceState, events: Sequence[PushEvent]) -> frozenset[str] | None:
        """The images of ``state`` a push concerns; None (a full pass) when that cannot be told."""
        if not events or state.images is None:
            return None
        exact = {e.name for e in events if e.registry}
        focus = {image for image in state.images if image in exact}
        if not focus:  # matched on the repository path alone (see sources_for)
            paths = {e.repository for e in events}
            focus = {image for image in state.images if _path_of(image) in paths}
        return frozenset(focus) or None

    def trigger(
        self, sources: Iterable[str], *, reason: str = "webhook", events: Sequence[PushEvent] = ()
    ) -> list[str]:
        """Start (or queue) a pass of each source now; returns the sources that will run because of it.

        With ``events`` (a webhook's pushes), a source whose images are known runs a pass focused on the
        pushed images only: the registry is asked about those, which keeps webhook-to-commit latency low
        however many images the source tracks. Scheduled passes stay full passes.
        """
        if self.stop_event.is_set():
            return []
        triggered = []
        for name in sources:
            state = self._states[name]
            state.request(self._focus(state, events))
            if state.running:
                state.rerun = True
                log.info("pass running; another one queued right after it (%s)", reason,
                         extra={"source": name})
            elif state.busy:
                log.debug("pass about to start; %s coalesced into it", reason, extra={"source": name})
            else:
                state.task = asyncio.get_running_loop().create_task(
                    self._source_loop(state, webhook=True), name=f"pass:{name}"
                )
                log.info("pass triggered by %s", reason, extra={"source": name})
            triggered.append(name)
        return triggered

    async def _scheduled(self, name: str) -> None:
        """The APScheduler job: run the source's pass unless one is already running or queued."""
        state = self._states[name]
        if self.stop_event.is_set():
            return
        if state.busy:
            log.debug("pass still running; scheduled tick coalesced", extra={"source": name})
            return
        if self._spread and time.monotonic() - state.last_full_start < self.interval.total_seconds() / 2:
            # the first tick at the source's spread offset, soon after its start-up pass: nothing is due yet
            log.debug("full pass ran %.0fs ago; tick skipped", time.monotonic() - state.last_full_start,
                      extra={"source": name})
            return
        state.want_full = True  # a scheduled pass is a full pass
        state.task = asyncio.get_running_loop().create_task(
            self._source_loop(state, webhook=False), name=f"pass:{name}"
        )
        # shield: the scheduler cancels its job coroutines on shutdown; the pass must see the stop event
        # and finish or give up on its own instead, within the grace period run() gives it
        try:
            await asyncio.shield(state.task)
        except asyncio.CancelledError:
            if not self.stop_event.is_set():
                raise

    async def _source_loop(self, state: _SourceState, *, webhook: bool) -> None:
        while not self.stop_event.is_set():
            if webhook:
                wait = state.last_webhook_start + self.webhook_min_interval - time.monotonic()
                if wait > 0:
                    log.info("webhook rate limit: pass starts in %.1fs", wait, extra={"source": state.name})
                    await self._sleep_unless_stopping(wait)
                    if self.stop_event.is_set():
                        return
                state.last_webhook_start = time.monotonic()
            await self._one_pass(state)
            if not state.rerun:
                return
            state.rerun = False
            webhook = True

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _one_pass(self, state: _SourceState) -> None:
        # waiting for a slot is not part of the pass: not "in progress", not in its duration, and what
        # webhooks ask for meanwhile joins it (the focus is taken once the slot is ours)
        if self._slots is None:
            await self._one_pass_now(state)
        else:
            async with self._slots:
                if not self.stop_event.is_set():  # shutdown began while this pass waited: it never starts
                    await self._one_pass_now(state)

    async def _one_pass_now(self, state: _SourceState) -> None:
        name = state.name
        focus = state.take_focus()
        if focus is None:
            state.last_full_start = time.monotonic()
        state.running = True
        self.metrics.passes_running.labels(source=name).set(1)
        started = time.monotonic()
        started_at = datetime.now(UTC)
        try:
            outcome = await self._pass_fn(name, self.stop_event, focus)
        except asyncio.CancelledError:
            log.warning("pass abandoned at shutdown", extra={"source": name})
            self.metrics.pass_finished(name, "abandoned", time.monotonic() - started)
            raise
        except Exception as exc:
            # a bug or an unexpected failure in one pass must not end the daemon: log, count, retry next tick
            log.error(
                "pass failed: %s", redact(f"{type(exc).__name__}: {exc}"), extra={"source": name},
                exc_info=log.isEnabledFor(logging.DEBUG) or None,
            )
            self.metrics.error("pass")
            self.metrics.pass_finished(name, "failed", time.monotonic() - started)
        else:
            self._record(state, outcome, time.monotonic() - started, focus)
            self.status_board.record(outcome, started_at, focused=focus is not None)
            elapsed = time.monotonic() - started
            if elapsed > self.interval.total_seconds():
                log.info(
                    "the pass took %.1fs, longer than the interval (%s): ticks due meanwhile were skipped",
                    elapsed, _human(self.interval), extra={"source": name},
                )
        finally:
            state.running = False
            self.metrics.passes_running.labels(source=name).set(0)
            self._passes_finished += 1
            self._note_next_pass(name)
            if self._workers is not None:
                self._workers.renew()
            self._release_memory()

    def _note_next_pass(self, name: str) -> None:
        job = self._scheduler.get_job(name) if self._scheduler is not None else None
        self.status_board.set_next_pass(name, getattr(job, "next_run_time", None))

    def _record(
        self, state: _SourceState, outcome: PassOutcome, elapsed: float, focus: frozenset[str] | None = None
    ) -> None:
        # The pass itself logs one line per change and per error (with source, file and image), as it does
        # for ``run --once``; the daemon adds the summary line and the metrics.
        name = state.name
        state.last_outcome = outcome
        result = outcome.result
        if focus is not None:  # a focused pass saw only the pushed images: keep knowing the others
            state.images = (state.images or frozenset()) | outcome.images
        elif outcome.error is None or outcome.images:
            state.images = outcome.images  # a failed sync reports no images: keep the last known ones
        image_errors = sum(1 for e in result.errors if e.image is not None)
        self.metrics.error("image", image_errors)
        self.metrics.error("file", len(result.errors) - image_errors)
        label: PassOutcomeLabel
        if outcome.error is not None:
            label = "abandoned" if self.stop_event.is_set() and not outcome.pushed else "failed"
            if label == "failed":
                self.metrics.error("source")
        else:
            label = "errors" if result.errors else "success"
        duration = outcome.duration or elapsed
        log.info(
            "pass %s: %d %s, %d unchanged, %d skipped, %d errors%s", label, len(result.updates),
            "updated" if outcome.pushed else ("planned" if self.dry_run else "updates"),
            len(result.unchanged), len(result.skipped), len(result.errors),
            f", commit {outcome.commit[:12]}" if outcome.commit else "",
            extra={"source": name, "duration": round(duration, 3)},
        )
        self.metrics.pass_finished(
            name, label, duration, updates_committed=len(result.updates) if outcome.pushed else 0,
            images=len(state.images) if state.images is not None else None,
            success_at=time.time() if outcome.error is None else None,
        )

    # -- lifecycle -----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful shutdown (idempotent; safe from a signal handler on the loop)."""
        if not self.stop_event.is_set():
            log.info("stopping: running passes get %.0fs to finish or give up before pushing",
                     self.grace_period)
        self.stop_event.set()
        if self._stopping is not None:
            self._stopping.set()

    async def run(self) -> None:
        """Run until ``request_stop``; the first pass of every source starts at once."""
        self._stopping = asyncio.Event()
        if self.stop_event.is_set():
            self._stopping.set()
        self._workers = WorkerThreads(asyncio.get_running_loop())
        _route_apscheduler_logs()
        interval = self.interval.total_seconds()
        scheduler = AsyncIOScheduler(timezone=UTC)
        now = datetime.now(UTC)
        spread = self._spread = self.concurrency > 0 and len(self._states) > self.concurrency
        for name in self._states:
            # spread: every source ticks at its own fixed offset within the interval (hashed from its name),
            # so hundreds of sources do not all come due in the same second of every interval; the start-up
            # passes still run at once below, queued behind the concurrency bound
            first = now + timedelta(seconds=first_pass_offset(name, interval)) if spread else now
            scheduler.add_job(
                self._scheduled, "interval", args=[name], id=name, name=f"pass {name}",
                seconds=interval, jitter=interval * JITTER_FRACTION,
                max_instances=1, coalesce=True, misfire_grace_time=None, next_run_time=first,
            )
        self._scheduler = scheduler
        scheduler.start()
        if spread:
            loop = asyncio.get_running_loop()
            self._startup = [loop.create_task(self._scheduled(name)) for name in self._states]
        for name in self._states:
            self._note_next_pass(name)
        log.info(
            "daemon started: %d source(s), interval %s%s%s", len(self._states), _human(self.interval),
            f", shard {self.shard[0]} of {self.shard[1]}" if self.shard is not None else "",
            " (dry run: nothing is committed)" if self.dry_run else "",
        )
        if spread:
            log.info("at most %d passes at once; scheduled passes spread over the interval", self.concurrency)
        try:
            await self._stopping.wait()
        finally:
            self.stop_event.set()
            scheduler.shutdown(wait=False)
            await self._drain()
            log.info("daemon stopped")

    async def _drain(self) -> None:
        tasks = [s.task for s in self._states.values() if s.task is not None and not s.task.done()]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.grace_period)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("%d pass(es) did not finish within the grace period; abandoned", len(pending))
            await asyncio.wait(pending, timeout=5.0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None
    return trim


class WorkerThreads:
    """The event loop's default executor (``asyncio.to_thread``'s: file reads and writes, git, DNS), renewed
    after every pass: the next work starts on fresh threads and the old executor's threads finish what was
    handed to them, then exit. glibc gives each thread a cache of freed blocks (tcache) that only goes back
    to the heap when the thread ends; with long-lived workers those caches kept the daemon's RSS rising
    slowly over hundreds of passes (docs/benchmarks.md, issue 16: bytes in use flat once the workers are
    renewed, or with ``glibc.malloc.tcache_count=0``). A pass running meanwhile loses nothing: what it
    already handed over runs on the old threads, what it hands over next on the new ones."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._current: ThreadPoolExecutor | None = None
        self.renewed = 0
        self.renew()

    @property
    def current(self) -> ThreadPoolExecutor | None:
        return self._current

    def renew(self) -> None:
        fresh = ThreadPoolExecutor(thread_name_prefix="image-updater-worker")
        self._loop.set_default_executor(fresh)
        old, self._current = self._current, fresh
        if old is not None:
            old.shutdown(wait=False)  # queued work still runs; idle threads exit
            self.renewed += 1


def release_free_memory() -> bool:
    """Return the C allocator's free pages to the kernel (glibc's ``malloc_trim(0)``); False without glibc.

    A pass reads and parses the whole tree in worker threads: its file contents and buffers (larger than
    pymalloc's 512-byte objects) come from glibc's heaps, and what is freed between long-lived blocks stays
    resident. The daemon's RSS drifted up by 0.2-1.1 % per 100 passes while its Python objects and pymalloc
    arenas stayed flat (docs/benchmarks.md, issue 16; on a loaded machine, the drift with this call was not
    told apart from that without it). Costs 1-2 ms per pass.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


# mallopt(3) parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's default starting value of both; fixing them turns off its dynamic adjustment
ALLOCATOR_THRESHOLD = 128 * 1024
# a user's own setting of either (glibc's environment variables, or its tunables) is left alone
_THRESHOLD_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_THRESHOLD_TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold")


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    try:
        mallopt: Callable[[int, int], int] = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    return mallopt


def tune_allocator(environ: Mapping[str, str] | None = None) -> bool:
    """Fix glibc's mmap and trim thresholds at 128 KiB (called once, at daemon start); False if not done.

    glibc raises its mmap threshold whenever an mmapped block is freed (up to 32 MiB), so once a pass has
    freed a big buffer, later ones of that size are carved from the heaps, where what is freed between
    blocks that live on stays resident; the trim threshold follows it up. Setting both fixes them, and
    turns the adjustment off: blocks of 128 KiB and more are always mmapped and given back when freed.
    Not done where the C library is not glibc (musl's mallopt does nothing and says so), nor when the
    environment already sets either threshold (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or
    in ``GLIBC_TUNABLES``).
    """
    env = os.environ if environ is None else environ
    tunables = env.get("GLIBC_TUNABLES", "")
    if any(name in env for name in _THRESHOLD_ENV) or any(name in tunables for name in _THRESHOLD_TUNABLES):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, ALLOCATOR_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, ALLOCATOR_THRESHOLD)
    )


def _path_of(image: str) -> str:
    """``registry/repo/path`` -> ``repo/path`` (normalised names always carry the registry)."""
    return image.split("/", 1)[1] if "/" in image else image


def _human(interval: timedelta) -> str:
    seconds = interval.total_seconds()
    return f"{seconds:g}s" if seconds < 120 else f"{seconds / 60:g}m"


class _SkippedTickFilter(logging.Filter):
    """Drop APScheduler's warning for each tick skipped while a pass runs (one per second with ``1s``).

    That is coalescing working as intended; the daemon logs one line per pass that outlasts the interval.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith('Execution of job "%s" skipped: maximum number of running')


def _route_apscheduler_logs() -> None:
    """Send APScheduler's warnings through our handlers, in our format."""
    ours = logging.getLogger("image_updater")
    aps = logging.getLogger("apscheduler")
    aps.handlers = list(ours.handlers)
    aps.propagate = not ours.handlers
    aps.setLevel(max(logging.WARNING, ours.getEffectiveLevel()))
    # a logger's filters see only its own records, not those propagating from children
    emitter = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _SkippedTickFilter) for f in emitter.filters):
        emitter.addFilter(_SkippedTickFilter())


# -- the process entry point ---------------------------------------------------------------------------


def resolve_shard(
    settings: Settings, environ: Mapping[str, str] | None = None, hostname: str | None = None
) -> tuple[int, int]:
    """(ordinal, replicas) of this replica: ``sharding.ordinal`` when a number, else the
    ``IMAGE_UPDATER_SHARD_ORDINAL`` variable, else the hostname's trailing ``-N`` (a StatefulSet's pod name).
    """
    sharding = settings.sharding
    replicas = sharding.replicas
    env = os.environ if environ is None else environ
    if isinstance(sharding.ordinal, int):
        ordinal, origin = sharding.ordinal, "sharding.ordinal"
    elif (text := env.get(SHARD_ORDINAL_ENV, "").strip()):
        if not text.isdigit():
            raise ConfigError(f"{SHARD_ORDINAL_ENV} must be a number >= 0, not {text[:40]!r}")
        ordinal, origin = int(text), SHARD_ORDINAL_ENV
    else:
        host = socket.gethostname() if hostname is None else hostname
        found = parse_ordinal(host)
        if found is None:
            if replicas == 1:
                return 0, 1
            raise ConfigError(
                f"sharding.replicas is {replicas} but this replica's ordinal is unknown: set "
                f"sharding.ordinal or {SHARD_ORDINAL_ENV}, or run as a StatefulSet pod (hostname ending "
                f"in -N; "
                f"this one is {host[:80]!r})"
            )
        ordinal, origin = found, f"hostname {host[:80]!r}"
    if ordinal >= replicas:
        raise ConfigError(
            f"shard ordinal {ordinal} (from {origin}) must be below sharding.replicas ({replicas})"
        )
    return ordinal, replicas


def status_token(settings: Settings) -> str | None:
    """The status page's token, or None when ``http.status_auth`` is not configured (the page is open)."""
    auth = settings.http.status_auth
    if auth is None:
        return None
    token = os.environ.get(auth.token_env, "")
    if not token.strip():
        raise ConfigError(
            f"http.status_auth.token_env names {shown_env_name(auth.token_env)}, which is not set or empty; "
            "set it or remove the setting"
        )
    return token


def status_board_for(settings: Settings, *secrets: str | None) -> StatusBoard:
    """A board with the configured sources (URLs shown without credentials) and the secrets never to show."""
    tokens = [os.environ.get(s.auth.token_env, "") for s in settings.sources if s.auth.token_env]
    return StatusBoard(
        (SourceInfo(s.name, s.url, s.branch) for s in settings.sources),
        secrets=[secret for secret in (*secrets, *tokens) if secret],
    )


def webhook_secret(settings: Settings) -> str | None:
    """The shared webhook secret, or None when ``http.webhook_secret_env`` is not configured."""
    env = settings.http.webhook_secret_env
    if not env:
        return None
    secret = os.environ.get(env, "")
    if not secret.strip():
        raise ConfigError(
            f"http.webhook_secret_env names {shown_env_name(env)}, which is not set or empty; "
            "set it or remove the setting"
        )
    if len(secret) < 16:
        log.warning(
            "the webhook secret in %s is shorter than 16 characters; use a long random value",
            shown_env_name(env),
        )
    return secret


class ExitTimer:
    """The last resort: end the process if it has not exited ``timeout`` seconds after the stop signal.

    Interpreter shutdown joins worker threads, so a git subprocess that hangs after its pass was abandoned
    would otherwise keep the process alive forever. A second stop signal exits at once.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is not None:
            log.error("second stop signal: exiting now")
            _hard_exit()
        self._timer = threading.Timer(self.timeout, self._expired)
        self._timer.daemon = True
        self._timer.start()

    def _expired(self) -> None:
        log.error("did not exit within %.0fs of the stop signal (a git or registry call hangs); exiting",
                  self.timeout)
        _hard_exit()


def _hard_exit() -> None:
    logging.shutdown()
    os._exit(1)


async def run_until_stopped(
    daemon: Daemon, server: HttpServer, *, exit_timer: ExitTimer | None = None
) -> None:
    """Serve HTTP and run the daemon until SIGTERM or SIGINT (or ``daemon.request_stop()``)."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if exit_timer is not None:
            exit_timer.arm()
        daemon.request_stop()

    try:
        await server.start()
    except OSError as exc:
        raise ImageUpdaterError(f"cannot listen on {server.listen}: {exc.strerror or exc}") from exc
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await daemon.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.close()


def serve(
    settings: Settings, *, dry_run: bool = False, grace_period: float = DEFAULT_GRACE_PERIOD,
    webhook_min_interval: float = DEFAULT_WEBHOOK_MIN_INTERVAL,
) -> int:
    """Run the daemon with its HTTP server until SIGTERM or SIGINT; returns the exit code (0)."""
    secret = webhook_secret(settings)
    shard = resolve_shard(settings)
    if not dry_run:
        from image_updater.signing import signer_for

        signer_for(settings.commit.signing, settings.cache_dir)  # a bad signing key: ConfigError at start
    from image_updater.notify import channels_of

    channels_of(settings)  # an unset notification url_env / secret_env: ConfigError at start
    exit_timer = ExitTimer(grace_period + EXIT_TIMEOUT_MARGIN)
    tune_allocator()
    asyncio.run(_serve(settings, secret, dry_run, grace_period, webhook_min_interval, exit_timer, shard))
    # The exit timer stays armed on purpose until the interpreter is gone (see ExitTimer).
    return 0


async def _serve(
    settings: Settings, secret: str | None, dry_run: bool, grace_period: float, webhook_min_interval: float,
    exit_timer: ExitTimer, shard: tuple[int, int] = (0, 1),
) -> None:
    from image_updater.notify import Notifier, channels_of
    from image_updater.peers import Forwarder
    from image_updater.writeback import make_client, run_source, summary_of

    metrics = Metrics()
    ordinal, replicas = shard
    by_name = {source.name: source for source in settings.sources}
    mine = owned(by_name, ordinal, replicas)
    if replicas > 1:
        log.info("shard %d of %d: %d of %d source(s) are this replica's", ordinal, replicas, len(mine),
                 len(by_name))
    notifier = Notifier(channels_of(settings), on_result=metrics.notification)
    for channel in notifier.channels:
        metrics.add_notification_type(channel.type)
    # One tag list per image per interval across every source of this replica: scheduled passes reuse a
    # list asked for less than an interval ago (by any source); webhook-triggered passes ask afresh.
    tags_max_age = settings.interval.total_seconds() * (1 - JITTER_FRACTION)
    async with make_client(
        settings, on_request=metrics.registry_request, tags_max_age=tags_max_age
    ) as client:

        async def one_pass(name: str, stop: threading.Event, images: frozenset[str] | None) -> PassOutcome:
            with client.fresh_tags() if images is not None else contextlib.nullcontext():
                outcome = await run_source(
                    settings, by_name[name], client=client, dry_run=dry_run, stop=stop, images=images
                )
            if not dry_run:
                notifier.submit(summary_of(outcome))  # background sends: the next pass never waits
            passed: PassOutcome = outcome
            return passed

        board = status_board_for(settings, secret)
        daemon = Daemon(
            mine, interval=settings.interval, pass_fn=one_pass, metrics=metrics,
            grace_period=grace_period, webhook_min_interval=webhook_min_interval, dry_run=dry_run,
            status_board=board, shard=shard if replicas > 1 else None,
            concurrency=settings.concurrency.passes,
        )
        peers = [url for k, url in enumerate(settings.sharding.peers) if k != ordinal]
        forwarder = None
        if peers and secret:
            forwarder = Forwarder(
                peers, secret, on_result=lambda result: metrics.webhook_forwards.labels(result=result).inc()
            )
        server = HttpServer(
            daemon, metrics=metrics, listen=settings.http.listen, webhook_secret=secret,
            limits=Limits(throttle=Throttle()),  # 10 webhooks per client address per 10 s
            # GET / (the status page), /api/v1/status and /images/<repository>
            pages=make_page_handler(board, status_token(settings)),
            forward=forwarder.forward if forwarder is not None else None,
        )
        try:
            await run_until_stopped(daemon, server, exit_timer=exit_timer)
        finally:
            if forwarder is not None:
                await forwarder.aclose()
            await notifier.aclose(NOTIFY_DRAIN)
