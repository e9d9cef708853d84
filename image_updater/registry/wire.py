"""The registry client's requests on the wire: URLs, answer headers, and the connection pools.

``httpx.AsyncClient`` adds on top of its engine what the registry client does itself anyway (redirects with
its own checks, the token dance, deadlines) and what it does not want (a cookie jar, per-request URL and
header merging, event hooks); on a scan of 1,000 tag lists that layer cost a quarter of the CPU of the whole
request. So the registry path builds its requests itself: ``Url`` (an absolute http(s) URL, split once),
``Headers`` (an answer's header lines, names case-insensitive) and ``Wire`` (the pools of one TLS setting: a
direct one, one per proxy in use), whose pools are ``http11.Pool`` (h11 on asyncio's transports).

A ``transport`` given to a ``Wire`` (tests, benchmarks: ``RegistryClient(transport=)``) replaces every pool:
an object with ``Pool``'s ``request`` (a subclass of it, say), or an httpcore-style one
(``handle_async_request(httpcore.Request)``, as ``httpcore.AsyncConnectionPool`` and respx's mocks of it
have), whose httpcore exceptions are raised as ``netio``'s of the same name. A SOCKS proxy goes through
httpcore's own pool the same way (it needs the ``socksio`` package).

Proxies come from the environment as httpx's ``trust_env`` and Go's ``ProxyFromEnvironment`` take them:
``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` (either case, lower case first) per scheme; ``NO_PROXY`` lists
what bypasses them (``bypasses_proxy``). A proxy URL's user and password become its ``Proxy-Authorization``;
they never appear in a message.
"""

from __future__ import annotations

import base64
import http
import ipaddress
import os
import ssl
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, cast

from image_updater.errors import InvalidUrl
from image_updater.registry import netio
from image_updater.registry.http11 import Pool, ProxyRoute

if TYPE_CHECKING:
    import httpcore

__all__ = [
    "DEFAULT_PORTS",
    "Headers",
    "HttpcoreTransport",
    "InvalidUrl",
    "RawResponse",
    "Requester",
    "Transport",
    "Url",
    "Wire",
    "body_decoder",
    "reason_phrase",
]

DEFAULT_PORTS = {"http": 80, "https": 443}
# bytes a target may carry as they are (RFC 3986 pchar, "/" and "?", and "%" of existing escapes)
_TARGET_SAFE = "/?:@!$&'()*+,;=%~-._"
_KEEPALIVE_SECONDS = 5.0  # httpx's default: an idle connection is closed after this long


@dataclass(frozen=True, slots=True)
class Url:
    """An absolute URL split once: lower-case scheme and host (no brackets), the port only when it is not
    the scheme's default, and the request target (path and query, percent-encoded, never empty)."""

    scheme: str
    host: str
    port: int | None
    target: str

    @classmethod
    def parse(cls, text: str) -> Url:
        try:
            parts = urllib.parse.urlsplit(text.strip())
            port = parts.port
        except ValueError as exc:
            raise InvalidUrl(f"invalid URL ({exc})") from None
        host = parts.hostname or ""
        if not parts.scheme or not host:
            raise InvalidUrl("not an absolute URL with a host")
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise InvalidUrl("a host name that cannot be spelled in ASCII") from None
        scheme = parts.scheme.lower()
        if port is not None and DEFAULT_PORTS.get(scheme) == port:
            port = None
        target = urllib.parse.quote(parts.path or "/", safe=_TARGET_SAFE)
        if parts.query:
            target += "?" + urllib.parse.quote(parts.query, safe=_TARGET_SAFE)
        return cls(scheme, host, port, target)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def origin(self) -> tuple[str, str, int | None]:
        port = self.port if self.port is not None else DEFAULT_PORTS.get(self.scheme)
        return (self.scheme, self.host, port)

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    def join(self, reference: str) -> Url:
        """``reference`` (a ``Location`` or ``Link`` target, absolute or relative) resolved against this."""
        return Url.parse(urllib.parse.urljoin(str(self), reference.strip()))

    def with_scheme(self, scheme: str) -> Url:
        port = None if self.port is not None and DEFAULT_PORTS.get(scheme) == self.port else self.port
        return replace(self, scheme=scheme, port=port)

    def with_query(self, params: Mapping[str, str]) -> Url:
        """This URL with ``params`` in its query, replacing parameters of the same names."""
        path, _, existing = self.target.partition("?")
        merged = dict(urllib.parse.parse_qsl(existing, keep_blank_values=True))
        merged.update(params)
        return replace(self, target=f"{path}?{urllib.parse.urlencode(merged)}")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.target}"


class Headers:
    """An answer's header lines: ``get`` joins repeated fields with ``", "`` (as httpx does), ``get_list``
    keeps them apart; names are case-insensitive. Values are decoded as Latin-1, which maps every byte."""

    __slots__ = ("_index", "raw")

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        self.raw = raw
        self._index: dict[bytes, list[bytes]] | None = None

    @classmethod
    def of(cls, fields: Mapping[str, str]) -> Headers:
        return cls([(name.encode("latin-1"), value.encode("latin-1")) for name, value in fields.items()])

    def _fields(self) -> dict[bytes, list[bytes]]:
        index = self._index
        if index is None:
            index = {}
            for name, value in self.raw:
                key = name.lower()
                if key in index:
                    index[key].append(value)
                else:
                    index[key] = [value]
            self._index = index
        return index

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._fields().get(name.lower().encode("latin-1"))
        if not values:
            return default
        return (values[0] if len(values) == 1 else b", ".join(values)).decode("latin-1")

    def get_list(self, name: str) -> list[str]:
        return [value.decode("latin-1") for value in self._fields().get(name.lower().encode("latin-1"), ())]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower().encode("latin-1") in self._fields()

    def size(self) -> int:
        """Bytes of all header lines together (names, values, ``": "`` and line ends)."""
        return sum([len(name) + len(value) for name, value in self.raw]) + 4 * len(self.raw)


def reason_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


class HttpcoreTransport(Protocol):
    """An httpcore-style stand-in for the pools: ``httpcore.AsyncConnectionPool`` or an object like it."""

    def handle_async_request(self, request: httpcore.Request) -> Awaitable[httpcore.Response]: ...

    async def aclose(self) -> None: ...


class RawResponse(Protocol):
    """An answer whose head has been read (``http11.Response``, or a stand-in's)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]: ...

    def aiter_stream(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Requester(Protocol):
    """What a ``Wire`` sends through: ``http11.Pool``, or a stand-in with its calls."""

    async def request(
        self, method: bytes, scheme: str, host: str, port: int, target: str,
        headers: list[tuple[bytes, bytes]], content: bytes | None, seconds: float,
    ) -> RawResponse: ...

    async def aclose(self) -> None: ...


Transport = Requester | HttpcoreTransport  # RegistryClient(transport=)


class Wire:
    """The connection pools of one TLS setting: direct, and one per proxy (from the environment, read when
    the wire is made). ``ssl_context`` is called at the first TLS connection (a pass that speaks only plain
    HTTP builds none). ``transport`` replaces every pool (tests, benchmarks)."""

    def __init__(
        self, ssl_context: Callable[[], ssl.SSLContext], *, transport: Transport | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._make_context = ssl_context
        self._context: ssl.SSLContext | None = None
        self._transport = _requester(transport)
        self._pools: dict[str | None, Requester] = {}
        self._proxies = _environment_proxies(os.environ if environ is None else environ)
        self._routes: dict[tuple[str, str], str | None] = {}

    def ssl_context(self) -> ssl.SSLContext:
        context = self._context
        if context is None:
            context = self._context = self._make_context()
            context.set_alpn_protocols(["http/1.1"])  # as httpcore offered it: we speak HTTP/1.1 only
        return context

    def _pool(self, url: Url) -> Requester:
        if self._transport is not None:
            return self._transport
        route = self._routes.get((url.scheme, url.netloc), "")
        if route == "":
            route = self._route(url)
            self._routes[(url.scheme, url.netloc)] = route
        pool = self._pools.get(route)
        if pool is None:
            pool = self._pools[route] = self._new_pool(route)
        return pool

    def proxied(self, url: Url) -> bool:
        """True when requests to ``url`` go through a proxy."""
        return self._transport is None and self._routes.get((url.scheme, url.netloc)) not in (None, "")

    def _route(self, url: Url) -> str | None:
        """The proxy URL for ``url`` (None: connect directly)."""
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        if not proxy:
            return None
        if bypasses_proxy(url, self._proxies.get("no", "")):
            return None
        return proxy

    def _new_pool(self, route: str | None) -> Requester:
        if route is None:
            return Pool(self.ssl_context, keepalive=_KEEPALIVE_SECONDS)
        scheme, host, port, auth = _proxy_parts(route)
        if scheme in ("http", "https"):
            authorization = None
            if auth is not None:
                authorization = b"Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode())
            proxy = ProxyRoute(scheme, host, port, authorization)
            return Pool(self.ssl_context, proxy, keepalive=_KEEPALIVE_SECONDS)
        import httpcore

        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return _Httpcore(httpcore.AsyncConnectionPool(
            ssl_context=self.ssl_context(), proxy=httpcore.Proxy(url=f"{scheme}://{netloc}", auth=auth),
            max_connections=None, max_keepalive_connections=100, keepalive_expiry=_KEEPALIVE_SECONDS,
            http1=True, http2=False, retries=0,
        ))

    async def open(
        self, method: str, url: Url, headers: list[tuple[bytes, bytes]], content: bytes | None,
        seconds: float,
    ) -> RawResponse:
        """Send one request; the answer's head is read, its body is left on the wire (``aiter_stream``)."""
        port = url.port if url.port is not None else DEFAULT_PORTS.get(url.scheme)
        if port is None:
            raise netio.UnsupportedProtocol(f"unsupported URL scheme {url.scheme[:20]!r}")
        return await self._pool(url).request(
            method.encode("ascii"), url.scheme, url.host, port, url.target, headers, content, seconds
        )

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()
        if self._transport is not None:
            await self._transport.aclose()


def _requester(transport: Transport | None) -> Requester | None:
    if transport is None or isinstance(transport, Pool):
        return transport
    if hasattr(transport, "handle_async_request"):
        return _Httpcore(cast("HttpcoreTransport", transport))
    return transport


class _Httpcore:
    """An httpcore-style pool behind ``Pool``'s calls: its exceptions become ``netio``'s of the same name."""

    def __init__(self, transport: HttpcoreTransport) -> None:
        self._transport = transport

    async def request(
        self, method: bytes, scheme: str, host: str, port: int, target: str,
        headers: list[tuple[bytes, bytes]], content: bytes | None, seconds: float,
    ) -> RawResponse:
        import httpcore

        url = httpcore.URL(
            scheme=scheme.encode("ascii"), host=host.encode("ascii"),
            port=None if DEFAULT_PORTS.get(scheme) == port else port, target=target.encode("ascii"),
        )
        timeouts = {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}
        request = httpcore.Request(method, url, headers=headers, content=content,
                                   extensions={"timeout": timeouts})
        try:
            response = await self._transport.handle_async_request(request)
        except Exception as exc:
            ours = _translated(exc)
            if ours is None:
                raise
            raise ours from exc
        return _HttpcoreResponse(response)

    async def aclose(self) -> None:
        await self._transport.aclose()


class _HttpcoreResponse:
    def __init__(self, response: httpcore.Response) -> None:
        self.status = response.status
        self.headers = response.headers
        self._response = response

    async def aiter_stream(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_stream():
                yield chunk
        except Exception as exc:
            ours = _translated(exc)
            if ours is None:
                raise
            raise ours from exc

    async def aclose(self) -> None:
        await self._response.aclose()


def _translated(exc: Exception) -> netio.NetError | None:
    """``netio``'s exception named as httpcore's ``exc`` (or its nearest base); None for any other."""
    if type(exc).__module__.partition(".")[0] != "httpcore":
        return None
    for kind in type(exc).__mro__:
        ours: Any = getattr(netio, kind.__name__, None)
        if isinstance(ours, type) and issubclass(ours, netio.NetError):
            return ours(str(exc))
    return None


def _environment_proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """``{"http": url, "https": url, "all": url, "no": hosts}`` from ``*_PROXY`` variables, lower case first
    (as urllib and httpx read them); an empty value is unset."""
    found: dict[str, str] = {}
    for name in sorted(environ, key=lambda n: (n.lower(), not n.islower())):
        if not name.lower().endswith("_proxy"):
            continue
        value = environ[name].strip()
        key = name.lower().removesuffix("_proxy")
        if value and key in ("http", "https", "all", "no"):
            found.setdefault(key, value)
    return found


def bypasses_proxy(url: Url, no_proxy: str) -> bool:
    """True when ``NO_PROXY`` names ``url``'s host: ``*`` (everything), a host or domain (``example.com`` and
    ``.example.com`` both match it and every name under it), either with ``:port`` (that port only), an IP
    address, or a CIDR block (``10.0.0.0/8``), as Go's ``httpproxy`` reads it."""
    host, port = url.host.rstrip("."), url.origin[2]
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if address is not None and address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, entry_port = entry, None
        if entry.startswith("["):  # [::1]:5000
            name, _, rest = entry[1:].partition("]")
            entry_port = rest.removeprefix(":") or None
        elif entry.count(":") == 1:
            name, entry_port = entry.split(":")
        if entry_port is not None and entry_port != str(port):
            continue
        name = name.rstrip(".")
        if address is not None:
            try:
                if ipaddress.ip_address(name) == address:
                    return True
            except ValueError:
                pass
            continue
        domain = name.removeprefix("*").removeprefix(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


def _proxy_parts(route: str) -> tuple[str, str, int, tuple[str, str] | None]:
    """Scheme, host, port and credentials of a proxy URL (``host:port`` alone means ``http://``)."""
    text = route if "://" in route else f"http://{route}"
    parts = urllib.parse.urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "socks5", "socks5h") or not parts.hostname:
        # the variable's value may hold a password: name the scheme only
        raise InvalidUrl(f"unusable proxy URL in the environment (scheme {scheme[:10]!r})")
    default = {"http": 80, "https": 443}.get(scheme, 1080)
    auth = None
    if parts.username is not None:
        auth = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
    return scheme, parts.hostname, port or default, auth


class BodyDecoder(Protocol):
    def decode(self, chunk: bytes, limit: int) -> bytes: ...

    def finish(self) -> bytes: ...


class _Identity:
    def decode(self, chunk: bytes, limit: int) -> bytes:
        return chunk

    def finish(self) -> bytes:
        return b""


class _Zlib:
    """gzip or deflate, unpacked at most ``limit + 1`` bytes at a time so that a zip bomb is caught early."""

    def __init__(self, wbits: int) -> None:
        self._inflate = zlib.decompressobj(wbits)
        self._wbits = wbits
        self._started = False

    def decode(self, chunk: bytes, limit: int) -> bytes:
        try:
            out = self._inflate.decompress(chunk, limit + 1)
        except zlib.error:
            if self._started or self._wbits != zlib.MAX_WBITS:
                raise
            # "deflate" sent as a raw stream, without the zlib header (as some servers do)
            self._inflate, self._wbits = zlib.decompressobj(-zlib.MAX_WBITS), -zlib.MAX_WBITS
            out = self._inflate.decompress(chunk, limit + 1)
        self._started = True
        return out

    def finish(self) -> bytes:
        return self._inflate.flush()


def body_decoder(headers: Headers) -> BodyDecoder:
    """The decoder of an answer's ``Content-Encoding`` (we ask for gzip or deflate); ValueError for others."""
    encodings: Iterable[str] = [
        part.strip().lower() for part in (headers.get("content-encoding") or "").split(",") if part.strip()
    ]
    encodings = [e for e in encodings if e != "identity"]
    if not encodings:
        return _Identity()
    if len(encodings) > 1:
        raise ValueError("more than one content-coding")
    if encodings[0] in ("gzip", "x-gzip"):
        return _Zlib(16 + zlib.MAX_WBITS)
    if encodings[0] == "deflate":
        return _Zlib(zlib.MAX_WBITS)
    raise ValueError(f"unsupported content-coding {encodings[0][:20]!r}")
