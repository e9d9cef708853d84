"""One HTTP exchange with a registry: redirects, size caps, deadlines and the classification of failures
(when to send, and how often to retry, is ``pacing``; its names are re-exported here).

Everything that decides whether a failure is worth retrying lives here: 5xx, 429, timeouts, resets,
connections closed early and truncated bodies become ``TransientRegistryError`` (the caller retries them
with tenacity); TLS verification failures, oversized answers and redirect loops are permanent. The answer
of a successful exchange is fully read (bounded by ``max_bytes``), so no connection outlives its exchange.

httpx follows redirects (``http_client``: ``follow_redirects``, dropping ``Authorization`` across origins)
and runs the auth flow (``auth.RegistryAuth``); every request of one exchange carries a ``Chain`` in its
extensions, and the client's response hook checks each answer against it: the header cap, the metrics
observer, the pull budget, 429/5xx, and redirects (at most ``MAX_REDIRECTS``, only to HTTP(S), no HTTPS to
plain HTTP unless the target may be spoken to in plain HTTP anyway, no request body to another origin; a
redirect's body is never read). The hook counts redirects itself because httpx's ``max_redirects`` counts
the auth flow's retries in the same history; ``_CLIENT_MAX_REDIRECTS`` is only a backstop.

httpx's timeouts bound each read, not the exchange: a registry that drips one byte a second never trips
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from image_updater import __version__
from image_updater.errors import RegistryError, TransientRegistryError, Unreachable
from image_updater.registry.options import RegistryOptions, is_loopback
from image_updater.registry.pacing import (
    MAX_WAIT,
    Budget,
    RetryPolicy,
    Throttle,
    parse_rate_header,
    parse_retry_after,
)

__all__ = [
    "MAX_REDIRECTS",
    "MAX_WAIT",
    "Answer",
    "BodyLimits",
    "Budget",
    "Chain",
    "Endpoint",
    "Observer",
    "RetryPolicy",
    "Throttle",
    "Unreachable",
    "chain_of",
    "discard",
    "exchange",
    "http_client",
    "parse_rate_header",
    "parse_retry_after",
    "send",
]

log = logging.getLogger(__name__)

Observer = Callable[[str, int | str], None]

MAX_REDIRECTS = 5  # per exchange, counted by the response hook
# httpx's own limit counts the auth flow's rounds too (at most 4 before the last): only a backstop
_CLIENT_MAX_REDIRECTS = 2 * MAX_REDIRECTS
_CHAIN = "image_updater.chain"  # the request extension that carries an exchange's Chain
_MAX_HEADER_BYTES = 64 * 1024


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
    headers: httpx.Headers
    body: bytes
    url: httpx.URL


@dataclass(slots=True)
class Endpoint:
    """Everything per registry (per matching ``registries[]`` entry): where, how, how fast."""

    key: str  # token-cache and endpoint identity: the host, plus the prefix when it is narrower
    name: str  # the registry host, as used in messages and metrics
    options: RegistryOptions
    base_url: str  # scheme://host[:port], no trailing slash
    client: httpx.AsyncClient
    throttle: Throttle
    https_fallback: bool = False  # a loopback registry without an entry: try https, fall back to http
    down_until: float = 0.0
    down_reason: str = ""

    def url(self, target: str) -> httpx.URL:
        return httpx.URL(self.base_url + target) if target.startswith("/") else httpx.URL(target)

    def may_fall_back(self, url: httpx.URL) -> bool:
        """True when ``url`` is this loopback endpoint's and it may be (or already is) spoken to in HTTP."""
        base = httpx.URL(self.base_url)
        fallen_back = base.scheme == "http" and self.options.api_url is None and not self.options.insecure
        return (self.https_fallback or fallen_back) and (url.host, url.port) == (base.host, base.port)

    def allows_plain(self, url: httpx.URL) -> bool:
        """True when plain HTTP to ``url`` weakens nothing the configuration asked for: the registry is
        ``insecure``, or ``url`` is a loopback address (Docker's default ``insecure-registries``)."""
        return self.options.insecure or is_loopback(url.host)

    def same_origin(self, url: httpx.URL) -> bool:
        base = httpx.URL(self.base_url)
        return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _where(url: httpx.URL) -> str:
    return f"{url.host}:{url.port}" if url.port else url.host


def _cause(exc: BaseException) -> str:
    """The OS-level reason of a connection failure ("Connection refused"), without URLs or headers."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        current = current.__cause__ or current.__context__
    return type(exc).__name__


def _failed_url(exc: httpx.HTTPError, default: httpx.URL) -> httpx.URL:
    try:
        return exc.request.url
    except RuntimeError:  # an exception httpx raised before it had a request
        return default


@dataclass(slots=True)
class Chain:
    """What one exchange's requests are checked against: the request, the redirects httpx follows for it and
    the auth flow's retries of it all carry the same ``Chain`` (in ``request.extensions``), which the client's
    event hooks read. The auth flow's token request gets its own (``derive``)."""

    endpoint: Endpoint
    context: str
    what: str
    max_bytes: int
    max_header_bytes: int
    observe: Observer
    seconds: float  # the exchange's deadline, also httpx's timeout of each operation
    redirects: int = 0

    def derive(self, *, what: str, max_bytes: int) -> Chain:
        return Chain(
            self.endpoint, self.context, what, max_bytes, self.max_header_bytes, self.observe, self.seconds
        )


def chain_of(request: httpx.Request) -> Chain:
    """The ``Chain`` of a request ``send`` built (or httpx derived from one: a redirect, an auth retry)."""
    chain = request.extensions.get(_CHAIN)
    if not isinstance(chain, Chain):
        raise TypeError("not a request of image_updater.registry.transport.send")
    return chain


def http_client(
    *, verify: ssl.SSLContext | bool, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for ``send``: httpx follows redirects (dropping ``Authorization`` across
    origins) and the response hook checks every answer of a chain (``_check_response``)."""
    return httpx.AsyncClient(
        verify=verify,
        transport=transport,
        follow_redirects=True,
        max_redirects=_CLIENT_MAX_REDIRECTS,
        event_hooks={"response": [_check_response]},
        headers={"User-Agent": f"image-updater/{__version__}"},
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
        trust_env=True,
    )


async def discard(response: httpx.Response) -> None:
    """Close the body of an answer nobody reads (a redirect, a 401 the auth flow answers). httpx reads the
    body of every answer in a chain before it sends the next request; this one it finds empty."""
    if isinstance(response.stream, httpx.AsyncByteStream):
        await response.stream.aclose()
    response.stream = httpx.ByteStream(b"")


async def _check_response(response: httpx.Response) -> None:
    """The response hook: count the answer, cap its headers, note the pull budget, vet a redirect, and turn
    429 and 5xx into ``TransientRegistryError``."""
    chain = response.request.extensions.get(_CHAIN)
    if not isinstance(chain, Chain):
        return
    endpoint, status = chain.endpoint, response.status_code
    chain.observe(endpoint.name, status)
    header_bytes = sum(len(name) + len(value) + 4 for name, value in response.headers.raw)
    if header_bytes > chain.max_header_bytes:
        raise RegistryError(
            f"{chain.context}: {chain.what} answer headers from {_where(response.request.url)} are "
            f"{header_bytes} bytes, more than the {chain.max_header_bytes} we accept"
        )
    endpoint.throttle.note_headers(response.headers)
    if response.has_redirect_location:
        _check_redirect(chain, response)
        await discard(response)
    elif status == 429 or status >= 500:
        retry_after = parse_retry_after(
            response.headers.get("retry-after"), maximum=endpoint.throttle.max_wait
        )
        if status == 429:
            endpoint.throttle.pause(retry_after if retry_after is not None else 1.0)
        reason = f"{status} {response.reason_phrase}".strip()
        raise TransientRegistryError(
            f"{chain.context}: {chain.what} answered {reason}", retry_after=retry_after
        )


def _check_redirect(chain: Chain, response: httpx.Response) -> None:
    """Count a redirect and refuse one that would weaken the request: to a scheme other than HTTP(S), from
    HTTPS to plain HTTP (unless ``Endpoint.allows_plain``), or of a request body to another origin."""
    prefix = f"{chain.context}: {chain.what}"
    chain.redirects += 1
    if chain.redirects > MAX_REDIRECTS:
        chain.observe(chain.endpoint.name, "redirect_loop")
        raise RegistryError(f"{prefix} redirected more than {MAX_REDIRECTS} times")
    source = response.request.url
    try:
        target = source.join(response.headers["location"])
    except httpx.InvalidURL:
        raise RegistryError(f"{prefix} redirected to an invalid URL") from None
    if target.scheme not in ("http", "https"):
        raise RegistryError(f"{prefix} redirected to a {target.scheme[:20]!r} URL; not following")
    if source.scheme == "https" and target.scheme == "http" and not chain.endpoint.allows_plain(target):
        raise RegistryError(f"{prefix} redirected from HTTPS to plain HTTP ({target.host}); not following")
    keeps_body = response.status_code in (307, 308) and response.request.method not in ("GET", "HEAD")
    if keeps_body and _origin(target) != _origin(source):
        # httpx would resend the body (a token request's refresh token) to the other origin
        raise RegistryError(
            f"{prefix} redirected its request body to another origin ({target.host}); not following"
        )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


async def _read_capped(response: httpx.Response, max_bytes: int, context: str, what: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RegistryError(
            f"{context}: {what} answer is {int(declared)} bytes, more than the {max_bytes} we accept"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():  # decoded bytes: a compressed body is capped as it unpacks
        size += len(chunk)
        if size > max_bytes:
            raise RegistryError(f"{context}: {what} answer is larger than the {max_bytes} bytes we accept")
        chunks.append(chunk)
    return b"".join(chunks)


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
    auth: httpx.Auth | None = None,
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
        try:
            async with deadline:
                return await send(
                    chain, method, endpoint.url(target), headers=headers, content=content, auth=auth
                )
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            observe(endpoint.name, "timeout")
            raise TransientRegistryError(
                f"{context}: {what} did not complete within {seconds:g} s (the registry answers too slowly)"
            ) from exc


async def send(
    chain: Chain,
    method: str,
    url: httpx.URL,
    *,
    headers: Mapping[str, str],
    content: bytes | None = None,
    auth: httpx.Auth | None = None,
) -> Answer:
    """One request, the redirects httpx follows for it and ``auth``'s rounds; the answer read within
    ``chain.max_bytes``. No turn and no deadline of its own: ``exchange`` (or, for the auth flow's token
    request, the exchange that needed it) holds both. A loopback endpoint that speaks no TLS is asked again
    in plain HTTP, once."""
    client = chain.endpoint.client
    for attempt in range(2):
        request = client.build_request(
            method, url, headers=headers, content=content, timeout=httpx.Timeout(chain.seconds),
            extensions={_CHAIN: chain},
        )
        try:
            response = await client.send(request, stream=True, auth=auth)
        except httpx.ConnectError as exc:
            plain = _plain_fallback(chain, exc, url) if attempt == 0 else None
            if plain is None:
                raise _connect_failure(chain, exc, url) from _cause_of(exc)
            url = plain
            continue
        except (httpx.TransportError, httpx.TooManyRedirects) as exc:
            raise _failure(chain, exc, url) from exc
        try:
            body = await _read_body(chain, response)
        finally:
            await response.aclose()
        return Answer(response.status_code, response.headers, body, response.url)
    raise AssertionError("unreachable")  # pragma: no cover - the second attempt returns or raises


def _plain_fallback(chain: Chain, exc: httpx.ConnectError, url: httpx.URL) -> httpx.URL | None:
    """The plain-HTTP URL to ask instead when a loopback endpoint answered the TLS handshake in plain HTTP
    (as the Docker daemon does for 127.0.0.0/8); None when the failure is anything else."""
    failed = _failed_url(exc, url)
    ssl_error = _ssl_error(exc)
    speaks_plain = ssl_error is not None and not isinstance(ssl_error, ssl.SSLCertVerificationError)
    endpoint = chain.endpoint
    if not (speaks_plain and failed.scheme == "https" and endpoint.may_fall_back(failed)):
        return None
    if endpoint.https_fallback:
        log.debug("registry %s speaks no TLS; using plain HTTP (loopback)", endpoint.name)
        endpoint.base_url = "http://" + endpoint.base_url.removeprefix("https://")
        endpoint.https_fallback = False
    return failed.copy_with(scheme="http")


def _cause_of(exc: httpx.ConnectError) -> BaseException | None:
    # a certificate failure's message is ours alone; other connect failures keep httpx's as their cause
    return None if isinstance(_ssl_error(exc), ssl.SSLCertVerificationError) else exc


def _connect_failure(chain: Chain, exc: httpx.ConnectError, url: httpx.URL) -> RegistryError:
    failed = _failed_url(exc, url)
    ssl_error = _ssl_error(exc)
    if isinstance(ssl_error, ssl.SSLCertVerificationError):
        chain.observe(chain.endpoint.name, "tls_error")
        reason = ssl_error.verify_message or "certificate verification failed"
        return RegistryError(
            f"{chain.context}: TLS certificate of {failed.host} not trusted ({reason}); "
            "set ca_file for this registry (or tls_verify: false)"
        )
    chain.observe(chain.endpoint.name, "connect_error")
    return Unreachable(f"{chain.context}: cannot connect to {_where(failed)} ({_cause(exc)})")


def _failure(
    chain: Chain, exc: httpx.TransportError | httpx.TooManyRedirects, url: httpx.URL
) -> RegistryError:
    """The error of a request that got no answer (other than a connect failure)."""
    name, prefix = chain.endpoint.name, f"{chain.context}: {chain.what}"
    if isinstance(exc, httpx.ConnectTimeout):
        chain.observe(name, "timeout")
        where = _where(_failed_url(exc, url))
        return Unreachable(f"{chain.context}: cannot connect to {where} within {chain.seconds:g} s")
    if isinstance(exc, httpx.TimeoutException):
        chain.observe(name, "timeout")
        return TransientRegistryError(f"{prefix} timed out after {chain.seconds:g} s")
    if isinstance(exc, httpx.TooManyRedirects):  # the hook counts first; this is the backstop
        chain.observe(name, "redirect_loop")
        return RegistryError(f"{prefix} redirected more than {MAX_REDIRECTS} times")
    chain.observe(name, "network_error")
    return TransientRegistryError(f"{prefix} failed: connection reset or closed early ({type(exc).__name__})")


async def _read_body(chain: Chain, response: httpx.Response) -> bytes:
    try:
        return await _read_capped(response, chain.max_bytes, chain.context, chain.what)
    except httpx.TimeoutException as exc:
        chain.observe(chain.endpoint.name, "timeout")
        raise TransientRegistryError(
            f"{chain.context}: {chain.what} timed out while reading the answer"
        ) from exc
    except httpx.TransportError as exc:
        chain.observe(chain.endpoint.name, "network_error")
        raise TransientRegistryError(
            f"{chain.context}: {chain.what} answer was cut short ({type(exc).__name__})"
        ) from exc
