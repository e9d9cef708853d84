"""Registry authentication: ``WWW-Authenticate`` challenges, Bearer tokens and Basic, around each request.

The registry tells us how to authenticate in its 401 answer. We remember that per registry, so the next
repository on the same registry gets its token *before* its first request instead of after a 401. Tokens
are cached per (registry, scope) until ``expires_in`` (60 s when the token server does not say) runs out, and
concurrent requests of one scope share one token request; a 401 on a request that carried a cached token
drops that token and fetches a fresh one once, and a 401 with a fresh token makes the credentials be read
again (they may have expired) before we give up.

``RegistryAuth`` is that dance around ``transport.send``, one per request attempt; ``Keyring`` holds what it
reads and forgets (the credential store and the ``TokenCache``). The token request is sent by
``transport.send`` inside the exchange that needed it: same turn, same deadline, same checks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from image_updater.errors import RegistryAuthError, RegistryError, TransientRegistryError, _TokenRefused
from image_updater.registry.credentials import Credential, CredentialStore
from image_updater.registry.options import is_loopback
from image_updater.registry.transport import Answer, Chain, Endpoint, send
from image_updater.registry.wire import Headers, InvalidUrl, Url, reason_phrase

__all__ = [
    "Challenge",
    "Keyring",
    "RegistryAuth",
    "Token",
    "TokenCache",
    "basic_header",
    "parse_challenges",
    "pull_scope",
    "short_reason",
    "token_from_response",
    "with_context",
]

_TOKEN_CHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DEFAULT_EXPIRES_IN = 60.0
# A token is renewed this long before the server says it expires, so that it never expires in flight.
_EXPIRY_MARGIN = 5.0
# Rounds of one request: first contact, a fresh token, credentials read again, and room to spare.
_ROUNDS = 5


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: a lower-case scheme and its parameters."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def _quoted(text: str, start: int) -> tuple[str, int]:
    """Read the quoted-string starting at ``text[start] == '"'``; return its value and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if char == '"':
            return "".join(out), i + 1
        out.append(char)
        i += 1
    return "".join(out), i  # unterminated: take the rest, as browsers do


def parse_challenges(headers: str | list[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` values (RFC 7235), e.g. ``Basic realm="x", Bearer realm="y",service="z"``.

    A token followed by ``=`` is a parameter of the current challenge; any other token starts a new challenge.
    Garbage is skipped rather than rejected: a registry's odd header must not crash a pass.
    """
    values = [headers] if isinstance(headers, str) else headers
    challenges: list[Challenge] = []
    for text in values:
        current: dict[str, str] | None = None
        scheme = ""
        i, n = 0, len(text)
        while i < n:
            while i < n and text[i] in " \t,":
                i += 1
            if i >= n:
                break
            match = _TOKEN_CHARS.match(text, i)
            if match is None:
                i += 1
                continue
            name, j = match.group(), match.end()
            k = j
            while k < n and text[k] in " \t":
                k += 1
            if current is not None and k < n and text[k] == "=":
                k += 1
                while k < n and text[k] in " \t":
                    k += 1
                if k < n and text[k] == '"':
                    value, k = _quoted(text, k)
                else:
                    value_match = _TOKEN_CHARS.match(text, k)
                    value = value_match.group() if value_match else ""
                    k = value_match.end() if value_match else k
                current[name.lower()] = value
                i = k
            else:
                if current is not None:
                    challenges.append(Challenge(scheme, current))
                scheme, current = name.lower(), {}
                i = j
        if current is not None:
            challenges.append(Challenge(scheme, current))
    return challenges


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def basic_header(credential: Credential) -> str:
    raw = f"{credential.username}:{credential.secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class Token:
    value: str = field(repr=False)
    expires_at: float  # on the cache's clock


def token_from_response(data: Any, now: float) -> Token:
    """Read ``token`` or ``access_token`` and ``expires_in`` from a token server's JSON answer."""
    if not isinstance(data, dict):
        raise ValueError("token answer is not a JSON object")
    value = data.get("token") or data.get("access_token")
    if not isinstance(value, str) or not value:
        raise ValueError("token answer has neither token nor access_token")
    expires_in = data.get("expires_in")
    lifetime = _DEFAULT_EXPIRES_IN
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        lifetime = float(expires_in)
    return Token(value, now + max(lifetime - min(_EXPIRY_MARGIN, lifetime / 10), 1.0))


SchemeKind = Literal["anonymous", "basic", "bearer"]


@dataclass(slots=True)
class _RegistryAuth:
    kind: SchemeKind | None = None  # None until the registry told us (first answer)
    challenge: Challenge | None = None


FetchToken = Callable[[Challenge, str, Credential | None], Awaitable[Token]]
GetCredential = Callable[[], Awaitable[Credential | None]]


class TokenCache:
    """Per-registry auth state and the token cache keyed by (registry, scope); safe for concurrent callers."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._registries: dict[str, _RegistryAuth] = {}
        self._tokens: dict[tuple[str, str], Token] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def kind(self, registry: str) -> SchemeKind | None:
        state = self._registries.get(registry)
        return state.kind if state else None

    def forget_tokens(self, registry: str) -> None:
        for key in [k for k in self._tokens if k[0] == registry]:
            del self._tokens[key]

    def drop(self, registry: str, scope: str, token: str | None) -> None:
        """Forget the token of (registry, scope) unless another task has renewed it meanwhile."""
        cached = self._tokens.get((registry, scope))
        if cached is not None and (token is None or cached.value == token):
            del self._tokens[(registry, scope)]

    def learn(self, registry: str, challenges: list[Challenge]) -> SchemeKind:
        """Record how ``registry`` wants to be authenticated (Bearer preferred over Basic)."""
        state = self._registries.setdefault(registry, _RegistryAuth())
        by_scheme = {c.scheme: c for c in challenges}
        bearer = by_scheme.get("bearer")
        if bearer is not None and bearer.realm:
            state.kind, state.challenge = "bearer", bearer
        elif "basic" in by_scheme:
            state.kind, state.challenge = "basic", by_scheme["basic"]
        else:
            names = ", ".join(sorted(by_scheme)) or "none"
            raise RegistryAuthError(f"registry {registry}: unsupported authentication scheme(s): {names}")
        return state.kind

    def learn_anonymous(self, registry: str) -> None:
        state = self._registries.setdefault(registry, _RegistryAuth())
        if state.kind is None:
            state.kind = "anonymous"

    async def authorization(
        self,
        registry: str,
        scope: str,
        get_credential: GetCredential,
        fetch_token: FetchToken,
    ) -> str | None:
        """The ``Authorization`` value for the next request to ``registry`` within ``scope`` (None = none)."""
        state = self._registries.get(registry)
        if state is None or state.kind in (None, "anonymous"):
            return None
        if state.kind == "basic":
            credential = await get_credential()
            if credential is None:
                raise RegistryAuthError(
                    f"registry {registry}: asks for Basic authentication and no credentials are configured "
                    f"for {registry}"
                )
            return basic_header(credential)
        assert state.challenge is not None
        challenge = state.challenge
        key = (registry, scope)
        token = self._tokens.get(key)
        if token is not None and token.expires_at > self._clock():
            return f"Bearer {token.value}"
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            token = self._tokens.get(key)
            if token is None or token.expires_at <= self._clock():
                token = await fetch_token(challenge, scope, await get_credential())
                self._tokens[key] = token
        return f"Bearer {token.value}"


def short_reason(exc: BaseException) -> str:
    # a decoder's message may quote the body; keep only its type and the position it names
    text = str(exc)
    if isinstance(exc, ValueError) and "char" in text:
        return f"{type(exc).__name__}: {text[:80]}"
    return type(exc).__name__


def with_context(context: str, exc: Exception, key: str) -> str:
    """``exc``'s message led by ``context`` instead of the ``registry <key>:`` it may start with."""
    message = str(exc)
    if message.startswith(f"{context}: "):
        return message
    for prefix in (f"registry {key}: ", f"registry {key.split('/', 1)[0]}: "):
        if message.startswith(prefix):
            return f"{context}: {message[len(prefix):]}"
    return f"{context}: {message}"


class Keyring:
    """The credentials and tokens of every endpoint of one session, and the auth flows that use them."""

    def __init__(self, credentials: CredentialStore, tokens: TokenCache, *, token_max_bytes: int) -> None:
        self.credentials = credentials
        self.tokens = tokens
        self.token_max_bytes = token_max_bytes

    def flow(self, endpoint: Endpoint, repository: str, *, context: str, what: str) -> RegistryAuth:
        return RegistryAuth(self, endpoint, pull_scope(repository), context=context, what=what)

    async def credential(self, endpoint: Endpoint) -> Credential | None:
        return await self.credentials.get(endpoint.name, endpoint.options.credentials)

    async def hint(self, endpoint: Endpoint) -> str:
        """Where the credentials came from, for a refusal's message (never the credentials themselves)."""
        try:
            credential = await self.credential(endpoint)
        except RegistryAuthError:
            return "unreadable credentials"
        return f"the credentials from {credential.source}" if credential is not None else "no credentials"

    def forget(self, endpoint: Endpoint) -> None:
        """Read the credentials again next time and drop the tokens they bought (they may have expired)."""
        self.credentials.invalidate(endpoint.name)
        self.tokens.forget_tokens(endpoint.key)


@dataclass(slots=True)
class _Rounds:
    refused: int = 0  # 401s to requests that carried an Authorization
    reread: bool = False  # the credentials were read again once already


class RegistryAuth:
    """The Docker token dance for one request attempt within one repository's pull scope.

    Each round sends the request with the ``Authorization`` the registry is known to want (none, Basic, or a
    Bearer token from the cache or the token server). A 401 teaches the challenge and earns another round:
    after first contact; once with a fresh token after a cached one was refused; once after reading the
    credentials again. Then the request fails with a ``RegistryAuthError`` naming where the credentials came
    from. Any other answer ends the flow and goes to the caller.
    """

    def __init__(self, keyring: Keyring, endpoint: Endpoint, scope: str, *, context: str, what: str) -> None:
        self._keyring = keyring
        self._tokens = keyring.tokens
        self._endpoint = endpoint
        self._scope = scope
        self._context = context
        self._what = what

    async def send(
        self, chain: Chain, method: str, url: Url, *, headers: Mapping[str, str], content: bytes | None
    ) -> Answer:
        rounds = _Rounds()
        plain = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        for _round in range(_ROUNDS):
            try:
                authorization = await self._authorization(chain)
            except _TokenRefused:
                await self._read_credentials_again(rounds)
                continue
            sent = plain if authorization is None else {**plain, "Authorization": authorization}
            answer = await send(chain, method, url, headers=sent, content=content, read_401=False)
            if answer.status != 401:
                if 200 <= answer.status < 300 and authorization is None:
                    self._tokens.learn_anonymous(self._endpoint.key)
                return answer
            await self._answer_challenge(answer.headers, authorization, rounds)
        raise RegistryAuthError(
            f"{self._context}: {self._what}: authentication did not settle after several rounds"
        )

    async def _authorization(self, chain: Chain) -> str | None:
        endpoint = self._endpoint
        try:
            return await self._tokens.authorization(
                endpoint.key, self._scope,
                lambda: self._keyring.credential(endpoint),
                lambda challenge, scope, credential: self._fetch_token(chain, challenge, scope, credential),
            )
        except RegistryAuthError as exc:
            raise RegistryAuthError(with_context(self._context, exc, endpoint.key)) from None

    async def _read_credentials_again(self, rounds: _Rounds) -> None:
        """After the token server refused the credentials: read them again once, then give up."""
        if rounds.reread:
            hint = await self._keyring.hint(self._endpoint)
            raise RegistryAuthError(f"{self._context}: the token server refused {hint}")
        rounds.reread = True
        self._keyring.forget(self._endpoint)

    async def _answer_challenge(
        self, headers: Headers, authorization: str | None, rounds: _Rounds
    ) -> None:
        """Learn a 401's challenge and decide whether another round can help; raise when none can."""
        endpoint, prefix = self._endpoint, f"{self._context}: {self._what}"
        challenges = parse_challenges(headers.get_list("www-authenticate"))
        if not challenges:
            raise RegistryAuthError(f"{prefix} answered 401 without a WWW-Authenticate challenge")
        try:
            kind = self._tokens.learn(endpoint.key, challenges)
        except RegistryAuthError as exc:
            raise RegistryAuthError(with_context(self._context, exc, endpoint.key)) from None
        if authorization is None:
            return  # first contact: now we know how to authenticate
        rounds.refused += 1
        credential = await self._keyring.credential(endpoint)
        if credential is None and (kind == "basic" or rounds.refused > 1):
            raise RegistryAuthError(
                f"{prefix} needs authentication and no credentials are configured for {endpoint.name}"
            )
        if rounds.refused == 1 and kind == "bearer":
            self._tokens.drop(endpoint.key, self._scope, authorization.removeprefix("Bearer "))
            return
        if not rounds.reread:
            rounds.reread = True
            self._keyring.forget(endpoint)
            return
        hint = await self._keyring.hint(endpoint)
        raise RegistryAuthError(f"{prefix} answered 401 Unauthorized with {hint}")

    async def _fetch_token(
        self, chain: Chain, challenge: Challenge, scope: str, credential: Credential | None
    ) -> Token:
        url = self._realm(challenge, credential)
        method, target, headers, content = token_request(url, challenge, scope, credential)
        derived = chain.derive(what=f"token request to {url.host}", max_bytes=self._keyring.token_max_bytes)
        answer = await send(derived, method, target, headers=headers, content=content)
        return self._token_of(answer, url, credential)

    def _realm(self, challenge: Challenge, credential: Credential | None) -> Url:
        """The token server's URL, refused when unusable or when it would take credentials over plain HTTP."""
        realm = challenge.realm or ""
        try:
            url: Url | None = Url.parse(realm)
        except InvalidUrl:
            url = None
        if url is None or url.scheme not in ("http", "https"):
            raise RegistryAuthError(
                f"{self._context}: the registry names an unusable token realm {realm[:100]!r}"
            )
        plain_ok = self._endpoint.base.scheme == "http" or is_loopback(url.host)
        if url.scheme == "http" and credential is not None and not plain_ok:
            raise RegistryAuthError(
                f"{self._context}: token realm {url.host} is plain HTTP; not sending credentials there"
            )
        return url

    def _token_of(self, answer: Answer, url: Url, credential: Credential | None) -> Token:
        if answer.status in (401, 403):
            if credential is None:
                raise RegistryAuthError(
                    f"{self._context}: the token server {url.host} refused an anonymous token "
                    f"({answer.status}); credentials are needed"
                )
            raise _TokenRefused
        if answer.status != 200:
            reason = f"{answer.status} {reason_phrase(answer.status)}".strip()
            raise RegistryError(f"{self._context}: token request to {url.host} answered {reason}")
        try:
            return token_from_response(json.loads(answer.body), time.monotonic())
        except ValueError as exc:
            raise TransientRegistryError(
                f"{self._context}: token request to {url.host} answered an undecodable body "
                f"({short_reason(exc)})"
            ) from None


def token_request(
    url: Url, challenge: Challenge, scope: str, credential: Credential | None
) -> tuple[str, Url, dict[str, str], bytes | None]:
    """``(method, url, headers, body)`` of the token request: a GET with Basic credentials (or anonymous),
    or, for an identity token, the OAuth2 refresh-token grant the Docker CLI uses."""
    params = {"scope": scope}
    service = challenge.params.get("service")
    if service:
        params["service"] = service
    headers = {"Accept": "application/json"}
    if credential is not None and credential.identity_token:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        form = {**params, "grant_type": "refresh_token", "refresh_token": credential.secret,
                "client_id": "image-updater"}
        return "POST", url, headers, urlencode(form).encode()
    if credential is not None:
        headers["Authorization"] = basic_header(credential)
    return "GET", url.with_query(params), headers, None
