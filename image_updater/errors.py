"""The exception tree of image-updater.

Every error the package raises on purpose is an ``ImageUpdaterError``::

    ImageUpdaterError
     ├── ConfigError                  bad configuration, policy or reference (exit code 2 on the CLI)
     │    ├── InvalidReference        also a ValueError
     │    ├── InvalidPolicy           also a ValueError
     │    │    └── InvalidGlob        a path glob (policy files' spec.targets[].path) that does not compile
     │    ├── InvalidVersion          not a version (versions.parse_version); also a ValueError
     │    └── InvalidDuration         not a duration (durations.parse_duration); also a ValueError
     ├── RegistryError                a registry could not answer what we asked
     │    ├── TransientRegistryError  worth retrying: 5xx, 429, timeouts, resets, truncated bodies
     │    ├── RegistryAuthError       401/403, or credentials that cannot be obtained
     │    └── RepositoryNotFound      404 on the repository or tag
     ├── YamlEditError                a file that does not parse, a target behind an alias, a failed write
     ├── MalformedWebhook             a webhook body that is not JSON, too deep or of no known shape
     └── GitError                     clone, fetch, commit or push failed
          └── PushRejected            the remote moved on; fetch, re-plan and retry

Lower-level exceptions (httpx, GitPython, ruamel.yaml, OSError) are wrapped at the module boundary and
chained with ``raise ... from exc``. Messages name the file, image or registry concerned and never contain a
secret: code that builds a message from a URL or a command line must pass it through ``redact`` first.

"Nothing to update" is an empty result, never an exception.
"""

from __future__ import annotations

import re

__all__ = [
    "ConfigError",
    "GitError",
    "ImageUpdaterError",
    "InvalidGlob",
    "InvalidPolicy",
    "InvalidReference",
    "PushError",
    "PushRejected",
    "RegistryAuthError",
    "RegistryError",
    "RegistryStartError",
    "RepositoryNotFound",
    "TransientRegistryError",
    "YamlEditError",
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


class InvalidGlob(InvalidPolicy):
    """A path glob does not compile (unclosed ``[``, reversed range, absolute or ``..`` path, too long)."""


class RegistryError(ImageUpdaterError):
    """A registry request failed; the message names the registry and the image."""


class TransientRegistryError(RegistryError):
    """A failure worth retrying (5xx, 429, timeout, reset, truncated or undecodable body)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RegistryAuthError(RegistryError):
    """The registry refused our credentials, or none could be obtained."""


class RepositoryNotFound(RegistryError):
    """The repository (or the tag) does not exist on the registry."""


class YamlEditError(ImageUpdaterError):
    """A YAML file could not be parsed or edited; the message names the file (and line)."""


class GitError(ImageUpdaterError):
    """A git operation failed; the message never contains credentials."""


class PushRejected(GitError):
    """The remote rejected our push because it moved on (non-fast-forward)."""


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
