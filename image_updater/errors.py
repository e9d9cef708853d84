"""The exception tree of image-updater.

Every error the package raises on purpose is an ``ImageUpdaterError``::

    ImageUpdaterError
     ├── ConfigError                  bad configuration, policy or reference (exit code 2 on the CLI)
     │    ├── InvalidReference        also a ValueError
     │    ├── InvalidPolicy           also a ValueError
     │    │    ├── InvalidRange       a semver range that does not parse (versions.parse_range)
     │    │    └── InvalidGlob        a path glob (policy files' spec.targets[].path) that does not compile
     │    ├── InvalidVersion          not a version (versions.parse_version); also a ValueError
     │    └── InvalidDuration         not a duration (durations.parse_duration); also a ValueError
     ├── RegistryError                a registry could not answer what we asked
     │    ├── TransientRegistryError  worth retrying: 5xx, 429, timeouts, resets, truncated bodies
     │    │    └── Unreachable        no connection at all: the whole registry is down for this pass
     │    ├── RegistryAuthError       401/403, or credentials that cannot be obtained
     │    │    └── _HelperFailed      a docker credential helper failed (remembered for a while)
     │    └── RepositoryNotFound      404 on the repository or tag
     ├── YamlEditError                a target behind an alias, a failed write
     │    └── YamlParseError          a file that does not parse or is refused; names the file and the line
     ├── MalformedWebhook             a webhook body that is not JSON, too deep or of no known shape
 ├── ForgeError                   a forge's REST API (GitHub, GitLab, Gitea) refused or failed a request
     └── GitError                     clone, fetch, commit or push failed
          └── PushRejected            the remote moved on; fetch, re-plan and retry

Internal signals (one module raises and catches each; no caller sees them): ``_TooDeep``, ``_TooMany`` (YAML
budgets), ``_NoValue`` (plan), ``_Stopped`` (writeback), ``_TokenRefused`` (registry auth), ``_TooMuchOutput``
(credential helpers), ``_HttpError`` and ``_ClientGone`` (httpserver), ``_AddressInUse`` (the demo's
registry), ``_ForgeRetry`` (a forge answer worth retrying; forges), ``_RetryableNotification`` (notify).
``NetError`` and its subclasses, with httpcore's names and tree (``TimeoutException``: ``ConnectTimeout``,
``ReadTimeout``, ``WriteTimeout``, ``PoolTimeout``; ``NetworkError``: ``ConnectError``, ``ReadError``,
``WriteError``; ``ProtocolError``: ``RemoteProtocolError``, ``LocalProtocolError``; ``ProxyError``,
``UnsupportedProtocol``) are the registry's HTTP/1.1 layer's (registry.netio, registry.http11);
registry.transport classifies each into a ``RegistryError``. The demo's ``RegistryStartError`` and
``PushError`` are ``RuntimeError``s: they report a broken demo set-up, not a failed pass. ``InvalidUrl`` is a
``ValueError`` of the registry's URL parser (registry.wire); its callers raise the ``RegistryError`` of the
image that led there.

Every exception class of the package is defined here and re-exported where it is raised;
``tests/test_errors.py`` fails on one defined elsewhere.

Lower-level exceptions (httpx, httpcore, GitPython, ruamel.yaml, OSError) are wrapped at the module boundary
and chained with ``raise ... from exc``. Messages name the file, image or registry concerned and never contain
a secret: code that builds a message from a URL or a command line must pass it through ``redact`` first.

Not chained (``from None``), because the chained exception's text or traceback could show a secret:

- git failures (gitrepo): ``GitCommandError`` prints the command line, whose URL may carry the token, and
  git's stderr; the ``GitError`` message carries the redacted text instead.
- credentials (registry.credentials): a credential helper's output, a docker ``config.json`` or its base64
  ``auth`` entry hold passwords; the JSON/base64/subprocess errors would quote or hold them.
- token requests (registry.auth): the token server's refusal or undecodable answer may hold the token or
  echo the credentials sent (a ``JSONDecodeError`` keeps the whole document).
- configuration (settings): pydantic's and ruamel.yaml's messages quote the input (a password field, a
  snippet of the file, an environment variable's value).
- the webhook request head (httpserver): it holds the ``Authorization`` header.

Also not chained: the internal signals below (they carry a number, not a cause) and re-raising the first
error of a group (registry.client, registry.credentials), where the group is noise. Everything else is
chained.

"Nothing to update" is an empty result, never an exception.
"""

from __future__ import annotations

import re

__all__ = [
    "ConfigError",
    "ForgeError",
    "GitError",
    "ImageUpdaterError",
    "InvalidDuration",
    "InvalidGlob",
    "InvalidPolicy",
    "InvalidRange",
    "InvalidReference",
    "InvalidUrl",
    "InvalidVersion",
    "MalformedWebhook",
    "PushError",
    "PushRejected",
    "RegistryAuthError",
    "RegistryError",
    "RegistryStartError",
    "RepositoryNotFound",
    "TransientRegistryError",
    "Unreachable",
    "YamlEditError",
    "YamlParseError",
    "redact",
]


class ImageUpdaterError(Exception):
    """Base class of every error image-updater raises on purpose."""


class ConfigError(ImageUpdaterError):
    """The configuration, a policy, an annotation or a reference is invalid."""


class InvalidReference(ConfigError, ValueError):
    """An image reference does not parse."""


class InvalidPolicy(ConfigError, ValueError):
    """A policy string (or one of its modifiers) does not parse."""


class InvalidRange(InvalidPolicy):
    """A semver range does not parse; the message names the range and the bad part."""

    def __init__(self, range_text: str, detail: str) -> None:
        super().__init__(f"invalid semver range {range_text!r}: {detail}")
        self.range_text = range_text
        self.detail = detail


class InvalidGlob(InvalidPolicy):
    """A path glob does not compile (unclosed ``[``, reversed range, absolute or ``..`` path, too long)."""


class InvalidVersion(ConfigError, ValueError):
    """A string is not a (lenient) version; the message shows it."""


class InvalidDuration(ConfigError, ValueError):
    """A value that is not a duration (``parse_duration``)."""


class RegistryError(ImageUpdaterError):
    """A registry request failed; the message names the registry and the image."""


class TransientRegistryError(RegistryError):
    """A failure worth retrying (5xx, 429, timeout, reset, truncated or undecodable body)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unreachable(TransientRegistryError):
    """No connection could be made (refused, no route, connect timeout): the whole registry is down."""


class RegistryAuthError(RegistryError):
    """The registry refused our credentials, or none could be obtained."""


class _HelperFailed(RegistryAuthError):
    """A credential helper could not be run or failed; remembered for ``failure_ttl`` seconds."""


class RepositoryNotFound(RegistryError):
    """The repository (or the tag) does not exist on the registry."""


class InvalidUrl(ValueError):
    """Not an absolute URL with a host, or a host that cannot be spelled in ASCII (registry.wire): the
    caller turns it into the ``RegistryError`` of the registry and image that led there."""


class YamlEditError(ImageUpdaterError):
    """A YAML file could not be parsed or edited; the message names the file (and line)."""


class YamlParseError(YamlEditError):
    """A file does not parse (or is refused before parsing); ``line`` is 1-based when known.

    The text is ``file:line: reason``; ``reason`` alone is for callers that show file and line themselves.
    """

    def __init__(self, reason: str, *, filename: str, line: int | None = None) -> None:
        super().__init__(f"{filename}:{line}: {reason}" if line is not None else f"{filename}: {reason}")
        self.reason = reason
        self.filename = filename
        self.line = line


class GitError(ImageUpdaterError):
    """A git operation failed; the message never contains credentials."""


class PushRejected(GitError):
    """The remote rejected our push because it moved on (non-fast-forward)."""


class MalformedWebhook(ImageUpdaterError, ValueError):
    """The body is not JSON, nests too deep, or is not any of the understood notification shapes."""


# -- internal signals --------------------------------------------------------------------------------
# Exceptions one module raises and catches itself to end a loop or a parse early; never seen by a caller.


class ForgeError(ImageUpdaterError):
    """A forge API call failed: ``provider``, the HTTP ``status`` (None: no answer) and the forge's own
    ``message`` (from its error body; never the token)."""

    def __init__(self, provider: str, status: int | None, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.status = status
        self.message = message


class _TooDeep(Exception):
    def __init__(self, line: int | None) -> None:
        super().__init__(line)
        self.line = line


class _TooMany(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class _NoValue(ValueError):
    pass


class _Stopped(Exception):
    """A stop was requested before the push; the pass is abandoned cleanly."""


class _ForgeRetry(Exception):
    """A forge answer worth retrying (5xx, 429, rate limit, no connection): the error to report when the
    budget runs out, and the forge's own wait in seconds when it said one."""

    def __init__(self, error: ForgeError, after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.after = after


class NetError(Exception):
    """A registry request that got no answer, or not all of it (registry.netio and registry.http11 raise it;
    registry.transport turns it into the ``RegistryError`` of the image). The subclasses carry httpcore's
    names and hierarchy, so that an httpcore stand-in's exceptions translate by name (registry.wire)."""


class TimeoutException(NetError):
    pass


class ConnectTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


class WriteTimeout(TimeoutException):
    pass


class PoolTimeout(TimeoutException):
    pass


class NetworkError(NetError):
    pass


class ConnectError(NetworkError):
    pass


class ReadError(NetworkError):
    pass


class WriteError(NetworkError):
    pass


class ProtocolError(NetError):
    pass


class RemoteProtocolError(ProtocolError):
    """The server's bytes are not HTTP/1.1, or it closed the connection before its answer was complete."""


class LocalProtocolError(ProtocolError):
    """A request HTTP/1.1 cannot carry (a header name or value h11 refuses)."""


class ProxyError(NetError):
    """The proxy refused the tunnel (its answer to CONNECT was not 2xx)."""


class UnsupportedProtocol(NetError):
    pass


class _TokenRefused(Exception):
    """The token server refused our credentials (401/403); they may have expired, so read them again."""


class _TooMuchOutput(Exception):
    def __init__(self, stream: str, limit: int) -> None:
        super().__init__(stream)
        self.stream = stream
        self.limit = limit


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _ClientGone(Exception):
    """The HTTP client hung up before sending its whole body."""


class _AddressInUse(Exception):
    pass


class _RetryableNotification(Exception):
    """A notification receiver answered 5xx or 429: worth another attempt (image_updater.notify)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status



# -- the demo's helpers (image_updater.demo) --------------------------------------------------------------
# Not ImageUpdaterErrors: they report a broken demo set-up (no registry binary, a refused push), not a
# failure of a pass, and the demo lets them end with a traceback.


class RegistryStartError(RuntimeError):
    """The demo's registry did not come up; the message carries the end of its log."""


class PushError(RuntimeError):
    """The registry refused or failed a request of the image pusher; the message names method, URL, status
    and the start of the body (``image_updater.demo.push.push_error`` builds it from the response)."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_AUTH_HEADER = re.compile(r"(?i)(authorization:\s*(?:basic|bearer)\s+)\S+")


def redact(text: str, *secrets: str | None) -> str:
    """Return ``text`` with URL credentials, Authorization header values and the given secrets masked."""
    text = _URL_USERINFO.sub(lambda m: m.group("scheme") + "***@", text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + "***", text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text
