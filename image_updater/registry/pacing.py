"""Pacing of registry requests: how long one logical request may take (``Budget``), how it is retried
(``RetryPolicy``), and how requests to one registry are spaced (``Throttle``: concurrency, rate limit, the
registry-wide pause after a 429, pull-budget spacing), with the parsers of the headers that steer them
(``Retry-After``, ``RateLimit-Remaining``/``-Limit``). Every wait a registry can ask for is capped at
``MAX_WAIT``, so that no answer can silence a registry for longer than that. ``transport`` sends; this
module decides when.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from image_updater.errors import TransientRegistryError
from image_updater.registry.wire import Headers

__all__ = ["MAX_WAIT", "Budget", "RetryPolicy", "Sleep", "Throttle", "parse_rate_header", "parse_retry_after"]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

# Docker Hub counts pulls in a sliding window; when fewer than this share of the limit is left we spread the
# remaining requests over the window instead of spending them and meeting a 429.
_RESERVE_SHARE = 0.1
_RESERVE_MIN = 2
# The longest a registry may make us wait (Retry-After, a registry-wide pause after a 429, pull spacing):
# one answer saying "come back in 30 years" must not silence a registry until the daemon restarts.
MAX_WAIT = 300.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of one logical request: ``attempts`` in all, jittered exponential backoff between them.

    The wait after failed attempt *n* (1 = the first) is ``initial * 2**(n-1)`` plus a random share of
    ``initial``, at most ``maximum`` (``backoff``); a 429's ``Retry-After`` (at most ``MAX_WAIT``) replaces
    it. Retrying stops early when the next wait would cross the registry's ``timeout``.
    """

    attempts: int = 4
    initial: float = 0.5
    maximum: float = 8.0
    max_wait: float = MAX_WAIT  # longest wait a registry may ask for (Retry-After, 429 pause, pull spacing)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1 = the first)."""
        try:
            wait = self.initial * 2.0 ** (attempt - 1) + random.uniform(0.0, self.initial)
        except OverflowError:
            wait = self.maximum
        return max(0.0, min(wait, self.maximum))


@dataclass(slots=True)
class Budget:
    """The time one logical request may take, retries included, counted from its first slot (time spent
    queueing behind the registry's ``max_concurrency`` is not the request's fault)."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = self.clock()

    def elapsed(self) -> float:
        return 0.0 if self.started is None else self.clock() - self.started

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    @property
    def grace(self) -> float:
        """The least time an exchange gets even when the budget is spent (a retry must be able to
        succeed against a healthy registry), and by which the hard deadline exceeds ``seconds``."""
        return min(self.seconds, 2.0)

    def limit(self) -> float:
        """Seconds the next exchange may take: what is left of the budget but at least ``grace``, and
        never past the hard deadline ``seconds + grace`` after the start."""
        remaining = self.remaining()
        return min(max(remaining, self.grace), remaining + self.grace)


def parse_retry_after(
    value: str | None, now: float | None = None, *, maximum: float = MAX_WAIT
) -> float | None:
    """``Retry-After`` as seconds from now, at most ``maximum``: delta-seconds or an HTTP date; None when
    absent or garbage."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        import email.utils  # an HTTP-date is rare: email costs a one-shot command ~2 ms to import

        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        current = datetime.now(UTC).timestamp() if now is None else now
        return min(maximum, max(0.0, when.timestamp() - current))
    if seconds != seconds:  # NaN is garbage too
        return None
    return min(maximum, max(0.0, seconds))


def parse_rate_header(value: str | None) -> tuple[int, float | None] | None:
    """``76;w=21600`` -> ``(76, 21600.0)``; ``76`` -> ``(76, None)``; garbage -> None."""
    if not value:
        return None
    head, *params = value.split(";")
    try:
        count = int(head.strip())
    except ValueError:
        return None
    window: float | None = None
    for param in params:
        name, _, raw = param.strip().partition("=")
        if name.strip() == "w":
            try:
                window = float(raw)
            except ValueError:
                window = None
    return count, window


class Throttle:
    """Per-registry pacing: at most ``max_concurrency`` requests in flight, ``rate_limit`` per second, a
    registry-wide pause after a 429, and slower pulls when the registry says its pull budget runs low."""

    def __init__(
        self,
        max_concurrency: int,
        rate_limit: float | None,
        *,
        max_wait: float = MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.max_wait = max_wait
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._interval = 1.0 / rate_limit if rate_limit else 0.0
        self._pull_interval = 0.0
        self._next_slot = 0.0
        self._next_pull = 0.0
        self._paused_until = 0.0
        self.remaining: int | None = None
        self._clock = clock
        self._sleep = sleep

    def slot(self, *, pull: bool, budget: Budget, context: str) -> _Slot:
        """``async with throttle.slot(...)``: the request's turn (a concurrency slot, its rate-limit spacing);
        a plain object rather than an ``asynccontextmanager``, whose generator costs more than the rest."""
        return _Slot(self, pull, budget, context)

    async def _enter(self, pull: bool, budget: Budget, context: str) -> None:
        await self._semaphore.acquire()
        try:
            budget.start()
            now = self._clock()
            start = max(now, self._next_slot, self._paused_until)
            if pull and self._pull_interval:
                start = max(start, self._next_pull)
            wait = start - now
            if wait > budget.remaining():
                reason = "is rate limited" if self._paused_until > now else "is close to its pull rate limit"
                raise TransientRegistryError(
                    f"{context}: the registry {reason}; not waiting {wait:.0f} s for it in this pass",
                    retry_after=wait,
                )
            self._next_slot = start + self._interval
            if pull and self._pull_interval:
                self._next_pull = start + self._pull_interval
            if wait > 0:
                await self._sleep(wait)
        except BaseException:
            self._semaphore.release()
            raise

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + min(seconds, self.max_wait))

    def note_headers(self, headers: Headers) -> None:
        remaining = parse_rate_header(headers.get("ratelimit-remaining"))
        if remaining is None:
            return
        count, window = remaining
        self.remaining = count
        limit = parse_rate_header(headers.get("ratelimit-limit"))
        reserve = max(_RESERVE_MIN, int((limit[0] if limit else 0) * _RESERVE_SHARE))
        if count <= reserve and window:
            self._pull_interval = min(window / max(count, 1), self.max_wait)
            # the pulls left are spread over the window, starting now rather than after one more pull
            self._next_pull = max(self._next_pull, self._clock() + self._pull_interval)
            log.warning(
                "registry pull budget low (%d left in %.0f s); spacing pulls %.0f s apart",
                count, window, self._pull_interval,
            )
        else:
            self._pull_interval = 0.0


class _Slot:
    """One turn of a ``Throttle``: entered, it holds a concurrency slot until the block ends."""

    __slots__ = ("_budget", "_context", "_pull", "_throttle")

    def __init__(self, throttle: Throttle, pull: bool, budget: Budget, context: str) -> None:
        self._throttle, self._pull, self._budget, self._context = throttle, pull, budget, context

    async def __aenter__(self) -> None:
        await self._throttle._enter(self._pull, self._budget, self._context)

    async def __aexit__(self, *exc_info: object) -> None:
        self._throttle._semaphore.release()
