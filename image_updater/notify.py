"""Notifications after a pass that changed something or failed: generic webhook, Slack, Teams, Discord.

An I/O edge (httpx). ``Notifier.submit(summary)`` schedules one background send per matching channel on the
running loop and returns at once: a slow or dead receiver never delays the next pass. Each send retries
5xx / 429 / timeouts / connection errors with exponential backoff (tenacity), within a total bound; the
result (``sent`` / ``failed``) goes to ``on_result`` (the daemon counts it in
``image_updater_notifications_total``). ``aclose(timeout)`` waits for in-flight sends up to ``timeout``
seconds, then drops them.

The URL (a chat webhook URL is itself a credential) and the HMAC secret come from environment variables;
neither appears in a payload, a log line or an exception: logs name only the channel type and the host.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from image_updater.envnames import shown_env_name
from image_updater.errors import ConfigError
from image_updater.errors import _RetryableNotification as _Retryable
from image_updater.plan import Change
from image_updater.settings import NotificationSettings, Settings

__all__ = [
    "Channel",
    "Notifier",
    "PassSummary",
    "channels_of",
    "discord_payload",
    "slack_payload",
    "teams_payload",
    "webhook_body",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Image-Updater-Signature"
EVENT_HEADER = "X-Image-Updater-Event"
TOTAL_TIMEOUT = 30.0  # seconds one notification may take, retries included
REQUEST_TIMEOUT = 10.0  # seconds per HTTP request
ATTEMPTS = 5
DISCORD_LIMIT = 2000
MAX_LINES = 20  # image lines in a chat message before "…and N more"


@dataclass(frozen=True, slots=True)
class PassSummary:
    """What a notification says about one source's pass (built by ``writeback.summary_of``)."""

    source: str
    commit: str | None
    pushed: bool
    changes: tuple[Change, ...]
    error_count: int
    pull_request_urls: tuple[str, ...] = ()
    report: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)  # the JSON report

    @property
    def events(self) -> frozenset[str]:
        """``update``: a commit pushed or a pull request opened; ``error``: an error reported."""
        events = set()
        if self.pushed or self.pull_request_urls:
            events.add("update")
        if self.error_count:
            events.add("error")
        return frozenset(events)


@dataclass(frozen=True, slots=True)
class Channel:
    """A configured channel with its resolved URL and secret (never printed: ``repr`` hides them)."""

    type: str
    events: frozenset[str]
    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "?"


def channels_of(settings: Settings, environ: Mapping[str, str] | None = None) -> tuple[Channel, ...]:
    """Resolve every ``notifications`` entry's URL and secret; ConfigError naming the setting otherwise."""
    environ = os.environ if environ is None else environ
    return tuple(_channel(i, n, environ) for i, n in enumerate(settings.notifications))


def _channel(index: int, entry: NotificationSettings, environ: Mapping[str, str]) -> Channel:
    where = f"notifications[{index}]"
    url = environ.get(entry.url_env, "").strip()
    if not url:
        raise ConfigError(
            f"{where}.url_env: environment variable {shown_env_name(entry.url_env)} is empty or unset"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}.url_env: {shown_env_name(entry.url_env)} does not hold an http(s) URL")
    secret = None
    if entry.secret_env is not None:
        secret = environ.get(entry.secret_env, "")
        if not secret:
            raise ConfigError(
                f"{where}.secret_env: environment variable {shown_env_name(entry.secret_env)} "
                "is empty or unset"
            )
    return Channel(type=entry.type, events=frozenset(entry.events), url=url, secret=secret)


# -- payloads ---------------------------------------------------------------------------------------------


def _change_line(change: Change) -> str:
    return f"{change.image}: {change.old_tag or change.old} -> {change.new_tag}"


def _headline(summary: PassSummary) -> str:
    if summary.pushed and summary.commit:
        return f"{summary.source}: pushed {summary.commit[:12]}"
    if summary.pull_request_urls:
        return f"{summary.source}: pull request opened"
    return f"{summary.source}: pass failed" if summary.error_count else f"{summary.source}: updated"


def _lines(summary: PassSummary, fmt: Callable[[str], str] = str) -> list[str]:
    lines = [fmt(_change_line(c)) for c in summary.changes]
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"…and {len(lines) - MAX_LINES} more"]
    return lines


def _errors_line(summary: PassSummary) -> str:
    return f"{summary.error_count} error{'s' if summary.error_count != 1 else ''}"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(summary: PassSummary) -> dict[str, Any]:
    """Slack incoming webhook: ``{"text": mrkdwn}``."""
    out = [f"*image-updater* {_slack_escape(_headline(summary))}"]
    out += [f"<{url}|pull request>" for url in summary.pull_request_urls]
    out += [f"• `{_slack_escape(line)}`" for line in _lines(summary)]
    if summary.error_count:
        out.append(f":warning: {_errors_line(summary)}")
    return {"text": "\n".join(out)}


def discord_payload(summary: PassSummary) -> dict[str, Any]:
    """Discord webhook: ``{"content": markdown}`` of at most 2000 characters."""
    head = [f"**image-updater** {_headline(summary)}", *summary.pull_request_urls]
    tail = [f"⚠ {_errors_line(summary)}"] if summary.error_count else []
    lines = [f"- `{_change_line(c)}`" for c in summary.changes]
    budget = DISCORD_LIMIT - len("\n".join(head + tail)) - 1
    kept: list[str] = []
    for i, line in enumerate(lines):
        rest = len(lines) - i - 1
        more = f"\n…and {rest} more" if rest else ""
        if len("\n".join([*kept, line])) + 1 + len(more) > budget:
            kept.append(f"…and {len(lines) - i} more")
            break
        kept.append(line)
    content = "\n".join(head + kept + tail)
    return {"content": content[:DISCORD_LIMIT]}


def teams_payload(summary: PassSummary) -> dict[str, Any]:
    """Microsoft Teams incoming webhook / Workflows: a message with one Adaptive Card."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": f"image-updater: {_headline(summary)}",
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        },
    ]
    if summary.changes:
        body.append(
            {
                "type": "FactSet",
                "facts": [
                    {"title": c.image, "value": f"{c.old_tag or c.old} -> {c.new_tag}"}
                    for c in summary.changes[:MAX_LINES]
                ],
            }
        )
        if len(summary.changes) > MAX_LINES:
            body.append({"type": "TextBlock", "text": f"…and {len(summary.changes) - MAX_LINES} more"})
    if summary.error_count:
        body.append({"type": "TextBlock", "text": _errors_line(summary), "color": "Attention", "wrap": True})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if summary.pull_request_urls:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Pull request", "url": url}
            for url in summary.pull_request_urls
        ]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }  # fmt: skip


def webhook_body(summary: PassSummary) -> dict[str, Any]:
    """The generic webhook's body: the pass's JSON report plus source, commit, pushed, pull requests."""
    return {
        "source": summary.source,
        "commit": summary.commit,
        "pushed": summary.pushed,
        "pull_requests": list(summary.pull_request_urls),
        "events": sorted(summary.events),
        **summary.report,
    }


_PAYLOADS: dict[str, Callable[[PassSummary], dict[str, Any]]] = {
    "webhook": webhook_body,
    "slack": slack_payload,
    "teams": teams_payload,
    "discord": discord_payload,
}


def request_for(channel: Channel, summary: PassSummary) -> tuple[bytes, dict[str, str]]:
    """The exact body and headers sent to ``channel`` for ``summary``."""
    body = json.dumps(_PAYLOADS[channel.type](summary), ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "image-updater"}
    if channel.type == "webhook":
        headers[EVENT_HEADER] = ",".join(sorted(summary.events))
        if channel.secret:
            digest = hmac.new(channel.secret.encode(), body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
    return body, headers


# -- sending ----------------------------------------------------------------------------------------------


class _HideUrls(logging.Filter):
    """httpx logs every request's full URL at INFO: a chat webhook URL is a credential, so hide it."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls and isinstance(record.args, tuple):
            args = tuple(self._hide(arg) for arg in record.args)
            if args != record.args:
                record.args = args
        return True

    def _hide(self, arg: object) -> object:
        text = str(arg)
        for url in self.urls:
            if url in text:
                return text.replace(url, _shown(url))
        return arg


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/***"


_hide_urls = _HideUrls()
logging.getLogger("httpx").addFilter(_hide_urls)


class Notifier:
    """Sends notifications in background tasks; see the module docstring."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        on_result: Callable[[str, str], None] | None = None,
        total_timeout: float = TOTAL_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
        attempts: int = ATTEMPTS,
        backoff: float = 0.5,
    ) -> None:
        self.channels = tuple(channels)
        _hide_urls.urls.update(channel.url for channel in self.channels)
        self._on_result = on_result
        self._total = total_timeout
        self._request_timeout = request_timeout
        self._attempts = attempts
        self._backoff = backoff
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, summary: PassSummary) -> int:
        """Schedule the sends for ``summary`` on the running loop; how many were scheduled."""
        events = summary.events
        scheduled = 0
        for channel in self.channels:
            if not events & channel.events:
                continue
            task = asyncio.get_running_loop().create_task(
                self._send(channel, summary), name=f"notify {channel.type} {summary.source}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            scheduled += 1
        return scheduled

    @property
    def in_flight(self) -> int:
        return sum(1 for task in self._tasks if not task.done())

    async def aclose(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for in-flight sends, drop the rest, close the HTTP client."""
        tasks = [task for task in self._tasks if not task.done()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("dropped %d notification(s) still being sent at shutdown", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._request_timeout, follow_redirects=False)
        return self._client

    async def _send(self, channel: Channel, summary: PassSummary) -> None:
        body, headers = request_for(channel, summary)
        result = "failed"
        reason = ""
        try:
            async with asyncio.timeout(self._total):
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self._attempts),
                    wait=wait_random_exponential(multiplier=self._backoff, max=8.0),
                    retry=retry_if_exception_type((_Retryable, httpx.TransportError)),
                    reraise=True,
                ):
                    with attempt:
                        response = await self._http().post(channel.url, content=body, headers=headers)
                        if response.status_code == 429 or response.status_code >= 500:
                            raise _Retryable(response.status_code)
                        if response.status_code >= 300:
                            reason = f"HTTP {response.status_code}"
                            break
                        result = "sent"
        except TimeoutError:
            reason = f"no answer within {self._total:g}s"
        except _Retryable as exc:
            reason = f"{exc} after {self._attempts} attempts"
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__} after {self._attempts} attempts"  # its text may hold the URL
        except asyncio.CancelledError:
            reason = "dropped at shutdown"
            self._count(channel, "failed")
            raise
        if result == "sent":
            log.debug(
                "notification sent to %s (%s)", channel.type, channel.host, extra={"source": summary.source}
            )
        else:
            log.warning(
                "notification to %s (%s) failed: %s",
                channel.type,
                channel.host,
                reason,
                extra={"source": summary.source},
            )
        self._count(channel, result)

    def _count(self, channel: Channel, result: str) -> None:
        if self._on_result is not None:
            self._on_result(channel.type, result)
