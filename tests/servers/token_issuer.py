"""A small Docker token server for tests: the Bearer flow of Docker Hub, GHCR and Harbor, on 127.0.0.1.

The registry answers 401 with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``; the client
asks the realm for a token (``GET realm?service=S&scope=repository:NAME:pull``, Basic credentials optional)
and retries with ``Authorization: Bearer <jwt>``. distribution verifies the JWT itself: RS256, the signing
certificate in the header's ``x5c``, chained to ``rootcertbundle``, ``iss`` = issuer, ``aud`` = service, and
the ``access`` claim must grant the actions the request needs. The issuer counts requests so tests can assert
token caching.

``cryptography`` is a test-only dependency: it is imported inside the functions that sign.
"""

from __future__ import annotations

import base64
import functools
import json
import secrets
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.servers.registry_server import StrPath, TLSFiles

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = ["Access", "TokenAuth", "TokenIssuer", "TokenRequest"]

DEFAULT_SERVICE = "image-updater-test-registry"
DEFAULT_ISSUER = "image-updater-test-issuer"
ALL_ACTIONS = frozenset({"pull", "push", "delete", "*"})


@dataclass(frozen=True)
class TokenAuth:
    """What distribution's ``auth.token`` config needs; pass it as ``RegistryServer(token_auth=...)``."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


@dataclass(frozen=True)
class Access:
    """One entry of the JWT ``access`` claim: ``{"type": "repository", "name": "a/b", "actions": [...]}``."""

    type: str
    name: str
    actions: tuple[str, ...]

    def as_claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True)
class TokenRequest:
    """One request the issuer answered, as tests want to see it."""

    method: str
    user: str | None
    """The Basic user name, ``None`` for an anonymous request."""
    service: str | None
    scopes: tuple[str, ...]
    status: int
    granted: tuple[Access, ...]


@dataclass(frozen=True)
class _SigningIdentity:
    key: RSAPrivateKey
    cert_der: bytes
    cert_pem: bytes


@functools.cache
def _signing_identity() -> _SigningIdentity:
    # One RSA key per process: generating it costs ~100 ms and every issuer can share it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "image-updater test token issuer")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _SigningIdentity(
        key=key,
        cert_der=cert.public_bytes(serialization.Encoding.DER),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_scope(scope: str) -> Access | None:
    """``repository:team/app:pull,push`` -> Access; ``None`` when malformed.

    The name may contain ``:`` (a registry host with a port never appears here, but be lenient): the type is
    before the first colon and the actions after the last one.
    """
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return Access(kind, name, tuple(a for a in actions.split(",") if a))


class TokenIssuer:
    """A Docker token server: ``GET realm?service=&scope=``, and OAuth2 ``POST`` with ``grant_type=password``.

    - ``users``: ``{user: password}`` accepted as Basic credentials; wrong credentials get 401.
    - ``user_actions``: per user, the actions that may be granted (default: pull, push, delete, ``*``).
    - ``allow_anonymous_pull``: anonymous requests get ``pull``; otherwise they get a token granting nothing,
      as Docker Hub does for private repositories, and the registry then refuses with 401.
    - ``expires_in``: seconds, reported to clients (drives their cache).
    - ``token_lifetime``: the JWT's real ``exp`` offset (default ``expires_in``); a negative value beyond
      distribution's 60 s leeway makes tokens the registry rejects although the client thinks them fresh.
    - ``tls``: ``(cert_file, key_file)`` or :class:`TLSFiles` serves the realm over https.
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        user_actions: Mapping[str, Collection[str]] | None = None,
        allow_anonymous_pull: bool = True,
        expires_in: int = 300,
        token_lifetime: int | None = None,
        service: str = DEFAULT_SERVICE,
        issuer: str = DEFAULT_ISSUER,
        tls: tuple[StrPath, StrPath] | TLSFiles | None = None,
        work_dir: StrPath | None = None,
    ) -> None:
        self.users = dict(users or {})
        self.user_actions = {user: frozenset(actions) for user, actions in (user_actions or {}).items()}
        self.allow_anonymous_pull = allow_anonymous_pull
        self.expires_in = expires_in
        self.token_lifetime = expires_in if token_lifetime is None else token_lifetime
        self.service = service
        self.issuer = issuer
        if isinstance(tls, TLSFiles):
            tls = tls.server_pair
        self.tls = (Path(tls[0]), Path(tls[1])) if tls is not None else None
        self._own_work_dir = work_dir is None
        self._work_dir_arg = Path(work_dir) if work_dir is not None else None
        self._work_dir: Path | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []

    # -- public surface -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("the token issuer is not started")
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    @property
    def rootcertbundle(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the token issuer is not started")
        return self._work_dir / "token-signer.pem"

    @property
    def auth(self) -> TokenAuth:
        """The registry-side configuration matching this issuer."""
        return TokenAuth(
            realm=self.realm, service=self.service, issuer=self.issuer, rootcertbundle=self.rootcertbundle
        )

    @property
    def requests(self) -> list[TokenRequest]:
        """A copy of every request answered so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def reset(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    def issue(self, subject: str, access: Iterable[Access], *, lifetime: int | None = None) -> str:
        """Sign a JWT the registry accepts (``lifetime`` seconds, default ``token_lifetime``)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        identity = _signing_identity()
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(identity.cert_der).decode("ascii")]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + (self.token_lifetime if lifetime is None else lifetime),
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [entry.as_claim() for entry in access],
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = identity.key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    @staticmethod
    def claims_of(token: str) -> dict[str, Any]:
        """The (unverified) claims of a JWT, for assertions."""
        payload = token.split(".")[1]
        decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return decoded

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the token issuer is already started")
        if self._work_dir_arg is not None:
            self._work_dir_arg.mkdir(parents=True, exist_ok=True)
            self._work_dir = self._work_dir_arg
        else:
            self._work_dir = Path(tempfile.mkdtemp(prefix="image-updater-token-issuer-"))
        self.rootcertbundle.write_bytes(_signing_identity().cert_pem)
        # Binding port 0 directly: no window in which another process could take the port.
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="token-issuer", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._own_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the protocol ---------------------------------------------------------------------------------------

    def _allowed(self, user: str | None) -> frozenset[str]:
        if user is None:
            return frozenset({"pull"}) if self.allow_anonymous_pull else frozenset()
        return self.user_actions.get(user, ALL_ACTIONS)

    def _grant(self, user: str | None, scopes: Iterable[str]) -> tuple[Access, ...]:
        allowed = self._allowed(user)
        granted = []
        for scope in scopes:
            wanted = parse_scope(scope)
            if wanted is None:
                continue
            # "*" among a user's allowed actions stands for every action, as in distribution's own ACLs.
            actions = tuple(a for a in wanted.actions if a in allowed or "*" in allowed)
            if actions:
                granted.append(Access(wanted.type, wanted.name, actions))
        return tuple(granted)

    def _answer(
        self, method: str, authorization: str | None, form: Mapping[str, list[str]]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Return (status, JSON body, extra headers) for one token request."""
        service = _first(form, "service")
        scopes = tuple(scope for value in form.get("scope", []) for scope in value.split(" ") if scope)
        user: str | None = None
        password: str | None = None
        if method == "POST":
            # OAuth2 password grant (what containerd sends when it holds credentials).
            user = _first(form, "username")
            password = _first(form, "password")
        elif authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
            except ValueError:
                decoded = ""
            user, _, password = decoded.partition(":")
        if user is not None and self.users.get(user) != password:
            self._record(TokenRequest(method, user, service, scopes, HTTPStatus.UNAUTHORIZED, ()))
            body: dict[str, Any] = {
                "errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]
            }
            return HTTPStatus.UNAUTHORIZED, body, {"WWW-Authenticate": 'Basic realm="token"'}
        if service is not None and service != self.service:
            self._record(TokenRequest(method, user, service, scopes, HTTPStatus.BAD_REQUEST, ()))
            body = {"errors": [{"code": "DENIED", "message": f"unknown service {service!r}"}]}
            return HTTPStatus.BAD_REQUEST, body, {}
        granted = self._grant(user, scopes)
        token = self.issue(user or "", granted)
        self._record(TokenRequest(method, user, service, scopes, HTTPStatus.OK, granted))
        body = {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": _rfc3339(datetime.now(UTC)),
        }
        if method == "POST":
            body["scope"] = " ".join(scopes)
        return HTTPStatus.OK, body, {}

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self._requests.append(request)


def _first(form: Mapping[str, list[str]], key: str) -> str | None:
    values = form.get(key)
    return values[0] if values else None


def _handler_for(issuer: TokenIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/token":
                self._send(HTTPStatus.NOT_FOUND, {"errors": [{"code": "NOT_FOUND"}]}, {})
                return
            self._send(*issuer._answer("GET", self.headers.get("Authorization"), parse_qs(url.query)))

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
            if url.path != "/token" or _first(form, "grant_type") != "password":
                self._send(HTTPStatus.BAD_REQUEST, {"errors": [{"code": "UNSUPPORTED"}]}, {})
                return
            self._send(*issuer._answer("POST", self.headers.get("Authorization"), form))

        def _send(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are recorded on the issuer; stderr stays clean

    return Handler
