"""The request machinery under ``RegistryClient``: endpoints, authentication, retries, shared HTTP clients.

A ``Session`` owns one ``wire.Wire`` (HTTP/1.1 connection pools) per TLS setting (system trust store, a
registry's ``ca_file``, or no verification), shared by every registry with that setting, and one
``Endpoint`` per registry (or per ``registries[]`` entry when a narrower prefix configures part of a
registry): base URL, pacing, and the authentication state. ``call`` is one logical request: one
``exchange`` per attempt, with the token dance (``auth.RegistryAuth``) inside it, retries of transient
failures (``RetryPolicy``: exponential backoff with jitter, ``Retry-After`` honoured, bounded by the
registry's ``timeout``; a plain loop rather than tenacity, whose machinery cost more CPU per request than
the rest of this module), and the answer parsed (``_interpret``); a parse failure of a 200 counts as
transient too. Its attempts, token requests included, share one ``Budget``: the whole logical request ends
within ``timeout + min(timeout, 2 s)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from image_updater.errors import (
    RegistryAuthError,
    RegistryError,
    RepositoryNotFound,
    TransientRegistryError,
)
from image_updater.references import DOCKER_HUB
from image_updater.registry.auth import Keyring, TokenCache, short_reason
from image_updater.registry.credentials import CredentialStore
from image_updater.registry.options import RegistryOptions, find_options, is_loopback, split_image
from image_updater.registry.pacing import Budget, RetryPolicy, Throttle
from image_updater.registry.transport import (
    Answer,
    BodyLimits,
    Endpoint,
    Observer,
    Unreachable,
    exchange,
)
from image_updater.registry.wire import InvalidUrl, Transport, Url, Wire, reason_phrase

__all__ = ["DOCKER_HUB_API", "Session", "context_of"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DOCKER_HUB_API = "https://hub.docker.com"
_DOCKER_HUB_REGISTRY = "registry-1.docker.io"
_NO_HEADERS: dict[str, str] = {}  # read-only: exchange copies what it is given into the request


class _SystemTrustContext(ssl.SSLContext):
    """``ssl.create_default_context()`` whose trust store is loaded at the first TLS handshake, not when the
    client is built: loading the system's certificates costs 20 ms to 0.15 s (a loaded machine), which a
    pass that only speaks plain HTTP (a loopback or ``insecure`` registry) never needs to pay."""

    _loaded = False
    _lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:  # once per handshake: cheap beside the handshake itself
            if self._loaded:
                return
            before = self.cert_store_stats().get("x509_ca", 0)  # a registry's own ca_file, if any
            self.load_default_certs(ssl.Purpose.SERVER_AUTH)
            if self.cert_store_stats().get("x509_ca", 0) == before:
                # the system store is empty (a minimal container without ca-certificates): certifi's bundle
                with contextlib.suppress(ImportError, OSError, ssl.SSLError):
                    import certifi

                    self.load_verify_locations(cafile=certifi.where())
            self._loaded = True

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load()
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load()
        return super().wrap_socket(*args, **kwargs)

    def get_ca_certs(self, *args: Any, **kwargs: Any) -> Any:
        self._load()
        return super().get_ca_certs(*args, **kwargs)


def system_trust_context() -> ssl.SSLContext:
    """A verifying TLS context over the operating system's trust store (``SSL_CERT_FILE``/``SSL_CERT_DIR``
    honoured), so that a corporate CA installed the usual way is trusted, as Docker and Flux users expect.
    Only where the system store is empty (a minimal container without ca-certificates) certifi's bundle
    stands in. The store is loaded at the first handshake (``_SystemTrustContext``)."""
    # what ssl.create_default_context() sets, less load_default_certs
    context = _SystemTrustContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    if sys.version_info >= (3, 13):  # pragma: no cover - as create_default_context() does there
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
    return context


def _unverified_context() -> ssl.SSLContext:
    """``tls_verify: false``: TLS without checking the certificate or the name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Session:
    """Endpoints, credentials, tokens and HTTP clients for one ``RegistryClient``."""

    def __init__(
        self,
        options: Sequence[RegistryOptions],
        *,
        docker_config: str | os.PathLike[str] | None,
        retry: RetryPolicy,
        limits: BodyLimits,
        on_request: Observer | None,
        transport: Transport | None,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._options = tuple(options)
        self._credentials = CredentialStore(docker_config)
        self._tokens = TokenCache()
        self._keyring = Keyring(self._credentials, self._tokens, token_max_bytes=limits.token)
        self._retry = retry
        self.limits = limits
        self._observer = on_request
        self._transport = transport
        self._sleep = sleep
        self._http: dict[tuple[str, ...], Wire] = {}
        self._endpoints: dict[str, Endpoint] = {}
        self._by_image: dict[str, Endpoint] = {}

    async def aclose(self) -> None:
        clients, self._http = list(self._http.values()), {}
        for client in clients:
            await client.aclose()

    # -- endpoints -------------------------------------------------------------------------------------------

    def endpoint(self, image: str, context: str) -> Endpoint:
        known = self._by_image.get(image)
        if known is not None:
            return known
        endpoint = self._new_endpoint(image, context)
        self._by_image[image] = endpoint
        return endpoint

    def _new_endpoint(self, image: str, context: str) -> Endpoint:
        registry, _ = split_image(image)
        entry = find_options(image, self._options)
        key = registry if entry is None or entry.normalised_prefix == registry else entry.normalised_prefix
        endpoint = self._endpoints.get(key)
        if endpoint is not None:
            return endpoint
        options = entry if entry is not None else RegistryOptions(prefix=registry)
        fallback = False
        if options.api_url:
            base = options.api_url.rstrip("/") + "/"
        else:
            host = _DOCKER_HUB_REGISTRY if registry == DOCKER_HUB else registry
            base = f"{'http' if options.insecure else 'https'}://{host}"
            # Docker's default insecure-registries is 127.0.0.0/8: a loopback registry that does not speak TLS
            # at all is spoken to in plain HTTP (a certificate that fails to verify is never bypassed).
            fallback = not options.insecure and is_loopback(registry)
        try:
            base_url = Url.parse(base)
        except InvalidUrl as exc:
            raise RegistryError(f"{context}: unusable registry address {base[:100]!r} ({exc})") from None
        endpoint = Endpoint(
            key=key,
            name=registry,
            options=options,
            base=base_url,
            wire=self._wire(options, context),
            throttle=Throttle(
                options.max_concurrency, options.rate_limit, max_wait=self._retry.max_wait, sleep=self._sleep
            ),
            https_fallback=fallback,
        )
        self._endpoints[key] = endpoint
        return endpoint

    def hub_endpoint(self) -> Endpoint:
        endpoint = self._endpoints.get(DOCKER_HUB_API)
        if endpoint is None:
            hub_entry = find_options(f"{DOCKER_HUB}/library/x", self._options)
            options = RegistryOptions(
                prefix="hub.docker.com",
                max_concurrency=hub_entry.max_concurrency if hub_entry else 8,
                timeout=hub_entry.timeout if hub_entry else 10.0,
            )
            endpoint = Endpoint(
                key=DOCKER_HUB_API, name="hub.docker.com", options=options, base=Url.parse(DOCKER_HUB_API),
                wire=self._wire(options, "registry docker.io"),
                throttle=Throttle(
                    options.max_concurrency, None, max_wait=self._retry.max_wait, sleep=self._sleep
                ),
            )
            self._endpoints[DOCKER_HUB_API] = endpoint
        return endpoint

    def _wire(self, options: RegistryOptions, context: str) -> Wire:
        if not options.tls_verify:
            key: tuple[str, ...] = ("no-verify",)
        elif options.ca_file:
            key = ("ca", os.path.abspath(os.path.expanduser(options.ca_file)))
        else:
            key = ("default",)
        client = self._http.get(key)
        if client is not None:
            return client
        make: Callable[[], ssl.SSLContext]
        if key[0] == "no-verify":
            make = _unverified_context
        elif key[0] == "default":
            make = system_trust_context
        else:
            # the system (or SSL_CERT_FILE) trust store plus the registry's CA: blob redirects to a CDN with a
            # public certificate must still verify; loaded now, so that a bad ca_file is named at once
            verify = system_trust_context()
            try:
                verify.load_verify_locations(cafile=key[1])
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                raise RegistryError(f"{context}: cannot load ca_file {key[1]}: {reason}") from exc

            def make() -> ssl.SSLContext:
                return verify

        client = Wire(make, transport=self._transport)  # contexts are built at the first TLS connection
        self._http[key] = client
        return client

    # -- requests --------------------------------------------------------------------------------------------

    def _observe(self, registry: str, status: int | str) -> None:
        if self._observer is not None:
            try:
                self._observer(registry, status)
            except Exception:  # metrics must never break a pass
                log.debug("on_request observer failed", exc_info=True)

    def _wait(self, exc: TransientRegistryError, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1 = the first): what the registry asked for
        (``Retry-After``), else the policy's jittered exponential backoff."""
        if exc.retry_after is not None:
            return exc.retry_after
        return self._retry.backoff(attempt)

    async def call(
        self,
        endpoint: Endpoint,
        method: str,
        target: str,
        *,
        repository: str,
        context: str,
        what: str,
        max_bytes: int,
        parse: Callable[[Answer], T],
        accept: str | None = None,
        pull: bool = False,
        authenticate: bool = True,
    ) -> T:
        """One logical request: authentication, retries of transient failures, the answer parsed."""
        if endpoint.down_until > time.monotonic():
            raise RegistryError(f"{context}: {endpoint.down_reason}")
        budget = Budget(endpoint.options.timeout)
        auth = self._keyring.flow(endpoint, repository, context=context, what=what) if authenticate else None
        headers = {"Accept": accept} if accept else _NO_HEADERS
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    answer = await exchange(
                        endpoint, method, target, headers=headers, max_bytes=max_bytes, context=context,
                        what=what, observe=self._observe, pull=pull, budget=budget,
                        max_header_bytes=self.limits.headers, auth=auth,
                    )
                    return await self._interpret(answer, endpoint, parse, context=context, what=what,
                                                 authenticate=authenticate)
                except TransientRegistryError as exc:
                    # retried while attempts are left and the wait ends inside the request's budget
                    wait = self._wait(exc, attempt)
                    if attempt >= self._retry.attempts or wait > budget.remaining():
                        raise
                    await self._sleep(wait)
        except Unreachable as exc:
            # one verdict per registry and pass instead of every image waiting for its own timeout
            endpoint.down_until = time.monotonic() + 3 * budget.seconds
            endpoint.down_reason = str(exc).removeprefix(f"{context}: ") + " (recently)"
            raise

    async def _interpret(
        self,
        answer: Answer,
        endpoint: Endpoint,
        parse: Callable[[Answer], T],
        *,
        context: str,
        what: str,
        authenticate: bool,
    ) -> T:
        """The parsed answer of a 2xx; the error of anything else (the auth flow has answered every 401 it
        could)."""
        status = answer.status
        if 200 <= status < 300:
            try:
                return parse(answer)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                raise TransientRegistryError(
                    f"{context}: {what} answered {status} with an undecodable body ({short_reason(exc)})"
                ) from exc
        reason = f"{status} {reason_phrase(status)}".strip()
        if status == 404:
            raise RepositoryNotFound(f"{context}: {what} answered {reason} (no such repository or tag)")
        if status in (401, 403):
            hint = await self._keyring.hint(endpoint) if authenticate else "no credentials"
            raise RegistryAuthError(f"{context}: {what} answered {reason} with {hint}")
        raise RegistryError(f"{context}: {what} answered {reason}")


def context_of(registry: str, repository: str) -> str:
    return f"registry {registry}, image {repository}"
