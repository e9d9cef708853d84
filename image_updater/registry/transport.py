"""One HTTP exchange with a registry: redirects, size caps, deadlines and the classification of failures
(when to send, and how often to retry, is ``pacing``; its names are re-exported here).

Everything that decides whether a failure is worth retrying lives here: 5xx, 429, timeouts, resets,
connections closed early and truncated bodies become ``TransientRegistryError`` (``Session.call`` retries
them); TLS verification failures, oversized answers and redirect loops are permanent. The answer of a
successful exchange is fully read (bounded by ``max_bytes``), so no connection outlives its exchange.

Requests go straight to our HTTP/1.1 pools (``wire.Wire``, ``http11``), not through httpx's client, whose
layer cost a quarter of a tag list's CPU (docs/design-notes.md). ``send`` follows redirects itself and checks
each answer of the chain against the exchange's ``Chain``: the header cap, the metrics observer, the pull
budget, 429/5xx, and redirects (at most ``MAX_REDIRECTS``, only to HTTP(S), no HTTPS to plain HTTP unless the
target may be spoken to in plain HTTP anyway, no request body to another origin; a redirect's body is never
read; ``Authorization`` is dropped on the way to another origin, except for the same host upgraded from HTTP
to HTTPS, as httpx does). The token dance (``auth.RegistryAuth``) wraps ``send``: each of its rounds is one
chain.

The pools' timeouts bound each read, not the exchange: a registry that drips one byte a second never trips
them. So every exchange (connect, redirects, token request, headers and body) also runs under one
``asyncio`` deadline taken from its logical request's ``Budget``: a logical request, retries and token
requests included, ends within ``timeout + min(timeout, 2 s)`` of its first slot however slowly the bytes
come. Waits a registry asks for (``Retry-After``, pull-budget spacing) are capped at
``RetryPolicy.max_wait`` (``MAX_WAIT``, 300 s), so that no answer can silence a registry for longer than that.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from image_updater import __version__
from image_updater.errors import RegistryError, TransientRegistryError, Unreachable
from image_updater.registry import netio
from image_updater.registry.options import RegistryOptions, is_loopback
from image_updater.registry.pacing import (
    MAX_WAIT,
    Budget,
    RetryPolicy,
    Throttle,
    parse_rate_header,
    parse_retry_after,
)
from image_updater.registry.wire import (
    Headers,
    InvalidUrl,
    RawResponse,
    Url,
    Wire,
    body_decoder,
    reason_phrase,
)

__all__ = [
    "MAX_REDIRECTS",
    "MAX_WAIT",
    "Answer",
    "Authenticator",
    "BodyLimits",
    "Budget",
    "Chain",
    "Endpoint",
    "Observer",
    "RetryPolicy",
    "Throttle",
    "Unreachable",
    "exchange",
    "parse_rate_header",
    "parse_retry_after",
    "send",
]

log = logging.getLogger(__name__)

Observer = Callable[[str, int | str], None]

MAX_REDIRECTS = 5  # per exchange
_MAX_HEADER_BYTES = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = f"image-updater/{__version__}".encode("ascii")
_ACCEPT_ANY = b"*/*"
_ACCEPT_ENCODING = b"gzip, deflate"


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Largest answers we read, in bytes; a registry sending more gets an error, not our memory."""

    tags: int = 16 * 1024 * 1024
    manifest: int = 4 * 1024 * 1024  # the OCI distribution spec's own recommendation
    config: int = 8 * 1024 * 1024
    token: int = 1024 * 1024
    hub: int = 8 * 1024 * 1024
    headers: int = _MAX_HEADER_BYTES  # all response header lines together (names, values, separators)
    # one repository's tag list over all its Link pages: the page cap alone lets a thousand pages through
    tags_total: int = 64 * 1024 * 1024
    tag_count: int = 1_000_000


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Headers
    body: bytes
    url: Url


@dataclass(slots=True)
class Endpoint:
    """Everything per registry (per matching ``registries[]`` entry): where, how, how fast."""

    key: str  # token-cache and endpoint identity: the host, plus the prefix when it is narrower
    name: str  # the registry host, as used in messages and metrics
    options: RegistryOptions
    base: Url  # scheme://host[:port] (target "/")
    wire: Wire
    throttle: Throttle
    https_fallback: bool = False  # a loopback registry without an entry: try https, fall back to http
    down_until: float = 0.0
    down_reason: str = ""

    def url(self, target: str) -> Url:
        """``target`` (a path on this registry, or an absolute URL) as a ``Url``."""
        if not target.startswith("/"):
            return Url.parse(target)
        prefix = self.base.target.rstrip("/")
        return Url(self.base.scheme, self.base.host, self.base.port, _quote_target(prefix + target))

    def may_fall_back(self, url: Url) -> bool:
        """True when ``url`` is this loopback endpoint's and it may be (or already is) spoken to in HTTP."""
        base = self.base
        fallen_back = base.scheme == "http" and self.options.api_url is None and not self.options.insecure
        return (self.https_fallback or fallen_back) and (url.host, url.port) == (base.host, base.port)

    def allows_plain(self, url: Url) -> bool:
        """True when plain HTTP to ``url`` weakens nothing the configuration asked for: the registry is
        ``insecure``, or ``url`` is a loopback address (Docker's default ``insecure-registries``)."""
        return self.options.insecure or is_loopback(url.host)

    def same_origin(self, url: Url) -> bool:
        return url.origin == self.base.origin


def _quote_target(target: str) -> str:
    # our own targets are ASCII already (validated names and references): quote only what needs it
    if target.isascii() and " " not in target and "#" not in target:
        return target
    return Url.parse("http://x" + target).target


class Authenticator(Protocol):
    """The token dance around ``send`` (``auth.RegistryAuth``): its rounds, each one chain."""

    def send(
        self, chain: Chain, method: str, url: Url, *, headers: Mapping[str, str], content: bytes | None
    ) -> Awaitable[Answer]: ...


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _where(url: Url) -> str:
    return url.netloc


def _cause(exc: BaseException) -> str:
    """The OS-level reason of a connection failure ("Connection refused"), without URLs or headers."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        current = current.__cause__ or current.__context__
    return type(exc).__name__


@dataclass(slots=True)
class Chain:
    """What one exchange's requests are checked against: the request, the redirects followed for it and the
    auth flow's rounds of it all share one ``Chain``. The auth flow's token request gets its own
    (``derive``)."""

    endpoint: Endpoint
    context: str
    what: str
    max_bytes: int
    max_header_bytes: int
    observe: Observer
    seconds: float  # the exchange's deadline, also the pools' timeout of each operation
    redirects: int = 0

    def derive(self, *, what: str, max_bytes: int) -> Chain:
        return Chain(
            self.endpoint, self.context, what, max_bytes, self.max_header_bytes, self.observe, self.seconds
        )


def _check_response(chain: Chain, status: int, headers: Headers, url: Url) -> None:
    """Every answer of a chain: count it, cap its headers, note the pull budget, and turn 429 and 5xx into
    ``TransientRegistryError``."""
    endpoint = chain.endpoint
    chain.observe(endpoint.name, status)
    header_bytes = headers.size()
    if header_bytes > chain.max_header_bytes:
        raise RegistryError(
            f"{chain.context}: {chain.what} answer headers from {_where(url)} are "
            f"{header_bytes} bytes, more than the {chain.max_header_bytes} we accept"
        )
    endpoint.throttle.note_headers(headers)
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(headers.get("retry-after"), maximum=endpoint.throttle.max_wait)
        if status == 429:
            endpoint.throttle.pause(retry_after if retry_after is not None else 1.0)
        reason = f"{status} {reason_phrase(status)}".strip()
        raise TransientRegistryError(
            f"{chain.context}: {chain.what} answered {reason}", retry_after=retry_after
        )


def _check_redirect(chain: Chain, status: int, method: str, source: Url, location: str) -> Url:
    """Count a redirect and refuse one that would weaken the request: to a scheme other than HTTP(S), from
    HTTPS to plain HTTP (unless ``Endpoint.allows_plain``), or of a request body to another origin; return
    where it leads."""
    prefix = f"{chain.context}: {chain.what}"
    chain.redirects += 1
    if chain.redirects > MAX_REDIRECTS:
        chain.observe(chain.endpoint.name, "redirect_loop")
        raise RegistryError(f"{prefix} redirected more than {MAX_REDIRECTS} times")
    try:
        target = source.join(location)
    except InvalidUrl:
        scheme = _scheme_of(location)
        if scheme not in ("", "http", "https"):
            raise RegistryError(f"{prefix} redirected to a {scheme[:20]!r} URL; not following") from None
        raise RegistryError(f"{prefix} redirected to an invalid URL") from None
    if target.scheme not in ("http", "https"):
        raise RegistryError(f"{prefix} redirected to a {target.scheme[:20]!r} URL; not following")
    if source.scheme == "https" and target.scheme == "http" and not chain.endpoint.allows_plain(target):
        raise RegistryError(f"{prefix} redirected from HTTPS to plain HTTP ({target.host}); not following")
    keeps_body = status in (307, 308) and method not in ("GET", "HEAD")
    if keeps_body and target.origin != source.origin:
        # the request body (a token request's refresh token) would go to the other origin
        raise RegistryError(
            f"{prefix} redirected its request body to another origin ({target.host}); not following"
        )
    return target


def _scheme_of(location: str) -> str:
    head, colon, _ = location.strip().partition(":")
    plain = head.replace("+", "").replace(".", "").replace("-", "")
    return head.lower() if colon and head.isascii() and plain.isalnum() else ""


def _keeps_authorization(source: Url, target: Url) -> bool:
    """Same origin, or the same host upgraded from HTTP to HTTPS on the default ports (httpx's rule)."""
    if source.origin == target.origin:
        return True
    return (
        source.host == target.host and source.scheme == "http" and target.scheme == "https"
        and source.port is None and target.port is None
    )


async def exchange(
    endpoint: Endpoint,
    method: str,
    target: str,
    *,
    headers: Mapping[str, str],
    max_bytes: int,
    context: str,
    what: str,
    observe: Observer,
    pull: bool = False,
    budget: Budget | None = None,
    content: bytes | None = None,
    max_header_bytes: int = _MAX_HEADER_BYTES,
    auth: Authenticator | None = None,
) -> Answer:
    """Send one request in its turn (``Throttle``) and read the answer, all within ``budget.limit()`` seconds
    however slowly the registry sends; raise on anything but an HTTP answer.

    Statuses other than 429 and 5xx are returned for the caller to interpret. ``auth`` (the token dance) runs
    inside the same turn and deadline.
    """
    budget = Budget(endpoint.options.timeout) if budget is None else budget
    async with endpoint.throttle.slot(pull=pull, budget=budget, context=context):
        if endpoint.down_until > time.monotonic():
            # found unreachable while this request was queued: do not spend another timeout on it
            raise RegistryError(f"{context}: {endpoint.down_reason}")
        seconds = budget.limit()
        if seconds <= 0:
            observe(endpoint.name, "timeout")
            hard = budget.seconds + budget.grace
            raise TransientRegistryError(f"{context}: {what}: no time left of the {hard:g} s it may take")
        chain = Chain(endpoint, context, what, max_bytes, max_header_bytes, observe, seconds)
        deadline = asyncio.timeout(seconds)
        url = endpoint.url(target)
        try:
            async with deadline:
                if auth is None:
                    return await send(chain, method, url, headers=headers, content=content)
                return await auth.send(chain, method, url, headers=headers, content=content)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            observe(endpoint.name, "timeout")
            raise TransientRegistryError(
                f"{context}: {what} did not complete within {seconds:g} s (the registry answers too slowly)"
            ) from exc


def _request_headers(
    url: Url, headers: Mapping[str, str], content: bytes | None
) -> list[tuple[bytes, bytes]]:
    fields = [(b"Host", url.netloc.encode("ascii")), (b"User-Agent", _USER_AGENT)]
    accept = False
    for name, value in headers.items():
        fields.append((name.encode("latin-1"), value.encode("latin-1")))
        accept = accept or name.lower() == "accept"
    if not accept:
        fields.append((b"Accept", _ACCEPT_ANY))
    fields.append((b"Accept-Encoding", _ACCEPT_ENCODING))
    if content is not None:
        fields.append((b"Content-Length", str(len(content)).encode("ascii")))
    return fields


async def send(
    chain: Chain,
    method: str,
    url: Url,
    *,
    headers: Mapping[str, str],
    content: bytes | None = None,
    read_401: bool = True,
) -> Answer:
    """One request and the redirects it leads to; the last answer read within ``chain.max_bytes`` (a 401's
    body is left unread when ``read_401`` is false: the auth flow answers it). No turn and no deadline of its
    own: ``exchange`` (or, for the auth flow's token request, the exchange that needed it) holds both. A
    loopback endpoint that speaks no TLS is asked again in plain HTTP, once."""
    fallback_tried = False
    while True:
        try:
            fields = _request_headers(url, headers, content)
        except UnicodeEncodeError:
            raise RegistryError(f"{chain.context}: {chain.what}: a request header is not Latin-1") from None
        try:
            response = await chain.endpoint.wire.open(method, url, fields, content, chain.seconds)
        except netio.ConnectError as exc:
            plain = None if fallback_tried else _plain_fallback(chain, exc, url)
            if plain is None:
                raise _connect_failure(chain, exc, url) from _cause_of(exc)
            fallback_tried, url = True, plain
            continue
        except (netio.TimeoutException, netio.NetworkError, netio.ProtocolError,
                netio.ProxyError, netio.UnsupportedProtocol) as exc:
            raise _failure(chain, exc, url) from exc
        except InvalidUrl as exc:
            raise RegistryError(f"{chain.context}: {chain.what}: {exc}") from None
        try:
            status, answer_headers = response.status, Headers(response.headers)
            _check_response(chain, status, answer_headers, url)
            location = answer_headers.get("location") if status in _REDIRECTS else None
            if location is not None:
                target = _check_redirect(chain, status, method, url, location)
                if not _keeps_authorization(url, target):
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                    method, content = "GET", None
                    headers = {k: v for k, v in headers.items()
                               if k.lower() not in ("content-type", "content-length")}
                url = target
                continue
            if status == 401 and not read_401:
                return Answer(status, answer_headers, b"", url)
            body = await _read_body(chain, response, answer_headers)
            return Answer(status, answer_headers, body, url)
        finally:
            await response.aclose()


def _plain_fallback(chain: Chain, exc: netio.ConnectError, url: Url) -> Url | None:
    """The plain-HTTP URL to ask instead when a loopback endpoint answered the TLS handshake in plain HTTP
    (as the Docker daemon does for 127.0.0.0/8); None when the failure is anything else."""
    ssl_error = _ssl_error(exc)
    speaks_plain = ssl_error is not None and not isinstance(ssl_error, ssl.SSLCertVerificationError)
    endpoint = chain.endpoint
    if not (speaks_plain and url.scheme == "https" and endpoint.may_fall_back(url)):
        return None
    if endpoint.https_fallback:
        log.debug("registry %s speaks no TLS; using plain HTTP (loopback)", endpoint.name)
        endpoint.base = endpoint.base.with_scheme("http")
        endpoint.https_fallback = False
    return url.with_scheme("http")


def _cause_of(exc: netio.ConnectError) -> BaseException | None:
    # a certificate failure's message is ours alone; other connect failures keep the pool's as their cause
    return None if isinstance(_ssl_error(exc), ssl.SSLCertVerificationError) else exc


def _connect_failure(chain: Chain, exc: netio.ConnectError, url: Url) -> RegistryError:
    ssl_error = _ssl_error(exc)
    if isinstance(ssl_error, ssl.SSLCertVerificationError):
        chain.observe(chain.endpoint.name, "tls_error")
        reason = ssl_error.verify_message or "certificate verification failed"
        return RegistryError(
            f"{chain.context}: TLS certificate of {url.host} not trusted ({reason}); "
            "set ca_file for this registry (or tls_verify: false)"
        )
    chain.observe(chain.endpoint.name, "connect_error")
    via = " through the proxy named by the environment" if chain.endpoint.wire.proxied(url) else ""
    return Unreachable(f"{chain.context}: cannot connect to {_where(url)}{via} ({_cause(exc)})")


def _failure(chain: Chain, exc: Exception, url: Url) -> RegistryError:
    """The error of a request that got no answer (other than a connect failure)."""
    name, prefix = chain.endpoint.name, f"{chain.context}: {chain.what}"
    if isinstance(exc, netio.ConnectTimeout):
        chain.observe(name, "timeout")
        return Unreachable(f"{chain.context}: cannot connect to {_where(url)} within {chain.seconds:g} s")
    if isinstance(exc, netio.TimeoutException):
        chain.observe(name, "timeout")
        return TransientRegistryError(f"{prefix} timed out after {chain.seconds:g} s")
    if isinstance(exc, netio.ProxyError):
        chain.observe(name, "connect_error")
        return Unreachable(f"{chain.context}: the proxy refused or failed the connection to {_where(url)}")
    if isinstance(exc, netio.UnsupportedProtocol | netio.LocalProtocolError):
        return RegistryError(f"{prefix}: cannot send this request ({type(exc).__name__})")
    chain.observe(name, "network_error")
    return TransientRegistryError(f"{prefix} failed: connection reset or closed early ({type(exc).__name__})")


async def _read_body(chain: Chain, response: RawResponse, headers: Headers) -> bytes:
    """The decoded body, at most ``chain.max_bytes`` (a compressed body is capped as it unpacks)."""
    context, what, max_bytes = chain.context, chain.what, chain.max_bytes
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RegistryError(
            f"{context}: {what} answer is {int(declared)} bytes, more than the {max_bytes} we accept"
        )
    try:
        decoder = body_decoder(headers)
    except ValueError as exc:
        raise RegistryError(f"{context}: {what} answer is encoded in a way we cannot read ({exc})") from None
    chunks: list[bytes] = []
    size = 0
    try:
        async for raw in response.aiter_stream():
            chunk = decoder.decode(raw, max_bytes - size)
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(context, what, max_bytes)
            chunks.append(chunk)
        tail = decoder.finish()
    except netio.TimeoutException as exc:
        chain.observe(chain.endpoint.name, "timeout")
        raise TransientRegistryError(f"{context}: {what} timed out while reading the answer") from exc
    except (netio.NetworkError, netio.ProtocolError) as exc:
        chain.observe(chain.endpoint.name, "network_error")
        reason = type(exc).__name__
        raise TransientRegistryError(f"{context}: {what} answer was cut short ({reason})") from exc
    except zlib.error:
        raise TransientRegistryError(f"{context}: {what} answer is not validly compressed") from None
    if tail:
        size += len(tail)
        if size > max_bytes:
            raise _too_large(context, what, max_bytes)
        chunks.append(tail)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(context: str, what: str, max_bytes: int) -> RegistryError:
    return RegistryError(f"{context}: {what} answer is larger than the {max_bytes} bytes we accept")
