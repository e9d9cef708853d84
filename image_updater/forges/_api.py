"""One forge REST API over httpx: auth header, retries within a time budget, error messages, paging.

Retried (tenacity, jittered exponential backoff, or the forge's own wait): 5xx, 429, connection errors and
timeouts, and rate limits that answer 403 (GitHub's secondary limit) with ``Retry-After`` or
``X-RateLimit-Remaining: 0`` + ``X-RateLimit-Reset`` (GitLab: ``RateLimit-Remaining``/``RateLimit-Reset``).
Every wait counts against the time budget; a wait that would cross it fails now, saying when the limit
resets. Other 4xx are permanent. Errors carry the forge's own message, never the token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_random_exponential

from image_updater.errors import ForgeError, _ForgeRetry
from image_updater.forges._model import ForgeTarget, Provider
from image_updater.printable import printable

__all__ = ["Api"]

log = logging.getLogger(__name__)

_MAX_PAGES = 50  # 5,000 open pull requests at 100 a page; a forge that pages on forever is cut off here
_MAX_MESSAGE = 400
_REQUEST_TIMEOUT = 30.0
_backoff = wait_random_exponential(multiplier=0.5, max=8.0)


class Api:
    """Requests to one forge for one repository; counts them (``requests``)."""

    def __init__(
        self,
        target: ForgeTarget,
        client: httpx.AsyncClient,
        headers: Mapping[str, str],
        *,
        time_budget: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider: Provider = target.provider
        self.base = target.api_url.rstrip("/") + "/"
        self._origin = _origin(self.base)
        self._client = client
        self._headers = dict(headers)
        self._token = target.token or ""
        self._budget = time_budget
        self._sleep = sleep
        self._clock = clock
        self._deadline: float | None = None
        self.requests = 0

    # -- one call ------------------------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> httpx.Response:
        """``method path`` (relative to the API root, or an absolute URL on the same origin for paging)."""
        url = path if path.startswith(("http://", "https://")) else urljoin(self.base, path.lstrip("/"))
        if _origin(url) != self._origin:  # the token goes to the configured API only
            raise ForgeError(self.provider, None, f"refused to follow {printable(_no_query(url))}: not on "
                             f"{printable(self._origin)}")
        deadline = self._start()
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_ForgeRetry),
            wait=self._wait,
            stop=lambda state: self._stop(state, deadline),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    timeout = min(_REQUEST_TIMEOUT, max(1.0, deadline - self._clock()))
                    return await self._once(method, url, params=params, json=json, ok=ok, timeout=timeout)
        except _ForgeRetry as exc:
            raise exc.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _start(self) -> float:
        if self._deadline is None:  # the budget covers every request of this forge object (one pass)
            self._deadline = self._clock() + self._budget
        return self._deadline

    async def _once(
        self, method: str, url: str, *, params: Mapping[str, Any] | None, json: Any, ok: tuple[int, ...],
        timeout: float,
    ) -> httpx.Response:
        self.requests += 1
        try:
            response = await self._client.request(
                method, url, params=params, json=json, headers=self._headers, timeout=timeout
            )
        except httpx.TransportError as exc:
            error = ForgeError(self.provider, None, f"{method} {_no_query(url)}: {type(exc).__name__}"
                               f"{': ' + self._clean(str(exc)) if str(exc) else ''}")
            raise _ForgeRetry(error, None) from None
        if response.status_code in ok:
            return response
        error = ForgeError(self.provider, response.status_code, self._message(response))
        limited, after = self._rate_limit(response)
        if response.status_code >= 500 or limited:
            raise _ForgeRetry(error, after)
        raise error

    # -- retries -------------------------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _ForgeRetry) and exc.after is not None:
            return max(0.0, exc.after)
        return float(_backoff(state))

    def _stop(self, state: RetryCallState, deadline: float) -> bool:
        upcoming = state.upcoming_sleep or 0.0
        if self._clock() + upcoming <= deadline:
            return False
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _ForgeRetry) and exc.after is not None:
            exc.error = ForgeError(
                exc.error.provider, exc.error.status,
                f"{exc.error.message} (rate limited: the forge asks to wait {exc.after:.0f} s, more than the "
                "time left for this pass; the next pass tries again)",
            )
        return True

    def _rate_limit(self, response: httpx.Response) -> tuple[bool, float | None]:
        """``(is a rate limit, seconds to wait or None)``."""
        headers = response.headers
        status = response.status_code
        after = _retry_after(headers.get("retry-after"))
        remaining = headers.get("x-ratelimit-remaining") or headers.get("ratelimit-remaining")
        reset = headers.get("x-ratelimit-reset") or headers.get("ratelimit-reset")
        if after is None and remaining == "0" and reset and reset.strip().isdigit():
            after = max(0.0, int(reset) - time.time()) + 1.0
        if status == 429:
            return True, after
        if status == 403 and (after is not None or remaining == "0"):
            return True, after
        return False, None

    # -- messages ------------------------------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        if self._token:
            text = text.replace(self._token, "***")
        text = printable(" ".join(text.split()))
        return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"

    def _message(self, response: httpx.Response) -> str:
        """``<status> <reason>: <the forge's own words>`` from its JSON error body."""
        words = ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, Mapping):
            words = _words(body.get("message") or body.get("error") or body.get("error_description"))
            details = [_words(e.get("message") or e.get("code")) for e in body.get("errors") or []
                       if isinstance(e, Mapping)]
            details += [_words(e) for e in body.get("errors") or [] if isinstance(e, str)]
            details = [d for d in details if d]
            if details:
                words = f"{words}: {'; '.join(details)}" if words else "; ".join(details)
        elif response.text.strip() and len(response.text) < 500 and "<" not in response.text:
            words = response.text
        head = f"{response.status_code} {response.reason_phrase}".strip()
        return self._clean(f"{head}: {words}" if words else head)

    # -- paging --------------------------------------------------------------------------------------------

    async def pages(self, path: str, params: Mapping[str, Any]) -> list[Any]:
        """Every item of a listing: ``Link: rel="next"`` (GitHub, Gitea, GitLab) or GitLab's
        ``X-Next-Page``."""
        items: list[Any] = []
        url: str | None = path
        query: Mapping[str, Any] | None = params
        for _ in range(_MAX_PAGES):
            assert url is not None
            response = await self.call("GET", url, params=query)
            page = response.json()
            if not isinstance(page, list):
                raise ForgeError(self.provider, response.status_code,
                                 f"GET {_no_query(str(response.request.url))}: expected a JSON list")
            items.extend(page)
            nxt = response.links.get("next", {}).get("url")
            if nxt:
                url, query = urljoin(str(response.request.url), nxt), None
            elif response.headers.get("x-next-page", "").strip().isdigit() and page:
                url, query = path, {**params, "page": response.headers["x-next-page"].strip()}
            else:
                return items
        log.warning("%s: more than %d pages of %s; the rest is not read", self.provider, _MAX_PAGES, path)
        return items


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}".lower()


def _no_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"


def _words(value: object) -> str:
    """GitLab's ``message`` is a string, a list, or a dict of field -> list of strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(_words(v) for v in value if _words(v))
    if isinstance(value, Mapping):
        return "; ".join(f"{k} {_words(v)}" for k, v in value.items())
    return ""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
