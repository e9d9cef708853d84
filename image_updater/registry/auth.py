"""Registry authentication: ``WWW-Authenticate`` challenges, the Bearer token flow and Basic.

The registry tells us how to authenticate in its 401 answer. We remember that per registry, so the next
repository on the same registry gets its token *before* its first request instead of after a 401. Tokens
are cached per (registry, scope) until ``expires_in`` (60 s when the token server does not say) runs out; a
401 on a request that carried a cached token drops that token and fetches a fresh one once, and a 401 with
a fresh token makes the credentials be read again (they may have expired) before we give up.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from image_updater.errors import RegistryAuthError
from image_updater.registry.credentials import Credential

__all__ = [
    "Challenge",
    "Token",
    "TokenCache",
    "basic_header",
    "parse_challenges",
    "pull_scope",
    "token_from_response",
]

_TOKEN_CHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DEFAULT_EXPIRES_IN = 60.0
# A token is renewed this long before the server says it expires, so that it never expires in flight.
_EXPIRY_MARGIN = 5.0


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
