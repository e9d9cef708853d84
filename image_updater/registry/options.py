"""Per-registry settings and how an image finds its registry's settings.

``RegistryOptions.prefix`` is matched against the *normalised* image name (``docker.io/library/nginx``) on
whole path segments, and the longest matching prefix wins: ``docker.io`` covers ``nginx``, ``ghcr.io/acme``
covers ``ghcr.io/acme/app`` but not ``ghcr.io/acme-labs/app``, and ``127.0.0.1:5000`` never covers
``127.0.0.1:50001/x``. An image no entry covers gets the defaults for its registry host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from image_updater.envnames import env_name_problem
from image_updater.errors import ConfigError
from image_updater.references import normalise_registry

__all__ = [
    "RegistryOptions",
    "find_options",
    "is_loopback",
    "options_for",
    "options_from_settings",
    "split_image",
]

_CREDENTIAL_KINDS = ("env:", "file:", "dockerconfig:")


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """How to talk to the registries under ``prefix`` (a host, or a host and leading path segments)."""

    prefix: str
    api_url: str | None = None  # replaces the endpoint only, e.g. a pull-through mirror
    insecure: bool = False  # plain HTTP for this registry only
    tls_verify: bool = True  # False only when set explicitly
    ca_file: str | None = None  # PEM bundle trusted for this registry (instead of the system store)
    credentials: str | None = None  # "env:VAR" | "file:PATH" (user:password) | "dockerconfig:PATH"
    rate_limit: float | None = None  # requests per second, None = unlimited
    max_concurrency: int = 8  # requests in flight to this registry
    timeout: float = 10.0  # seconds one request may take, retries included

    def __post_init__(self) -> None:
        if not self.prefix or self.prefix != self.prefix.strip():
            raise ConfigError(f"registry prefix {self.prefix!r} is empty or has surrounding spaces")
        if self.max_concurrency < 1:
            raise ConfigError(f"registry {self.prefix}: max_concurrency must be at least 1")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ConfigError(f"registry {self.prefix}: rate_limit must be positive")
        if self.timeout <= 0:
            raise ConfigError(f"registry {self.prefix}: timeout must be positive")
        if self.credentials is not None and not self.credentials.startswith(_CREDENTIAL_KINDS):
            raise ConfigError(
                f"registry {self.prefix}: credentials must be env:VAR, file:PATH or dockerconfig:PATH"
            )
        spec = self.credentials or ""
        problem = env_name_problem(spec[4:]) if spec.startswith("env:") else None
        if problem is not None:
            raise ConfigError(f"registry {self.prefix}: credentials env:VAR: the variable name {problem}")
        if self.api_url is not None and not self.api_url.startswith(("http://", "https://")):
            raise ConfigError(f"registry {self.prefix}: api_url must start with http:// or https://")

    @property
    def normalised_prefix(self) -> str:
        """The prefix with its host lower-cased and Docker Hub's aliases folded into ``docker.io``."""
        host, _, rest = self.prefix.strip("/").partition("/")
        host = normalise_registry(host)
        return f"{host}/{rest}" if rest else host


def split_image(image: str) -> tuple[str, str]:
    """``"registry/repository"`` -> ``("registry", "repository")`` (the image name must be normalised)."""
    registry, sep, repository = image.partition("/")
    if not sep or not repository:
        raise ConfigError(f"image name {image!r} is not a normalised registry/repository name")
    return registry, repository


def options_for(image: str, options: Iterable[RegistryOptions]) -> RegistryOptions:
    """The entry whose prefix covers ``image`` on whole path segments (longest wins), else the defaults."""
    found = find_options(image, options)
    return found if found is not None else RegistryOptions(prefix=split_image(image)[0])


def find_options(image: str, options: Iterable[RegistryOptions]) -> RegistryOptions | None:
    """The entry whose prefix covers ``image`` on whole path segments (longest wins), or None."""
    best: RegistryOptions | None = None
    best_len = -1
    for entry in options:
        prefix = entry.normalised_prefix
        if (image == prefix or image.startswith(prefix + "/")) and len(prefix) > best_len:
            best, best_len = entry, len(prefix)
    return best


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (with or without a port)."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def options_from_settings(settings: Any) -> list[RegistryOptions]:
    """Convert ``Settings.registries`` (objects with the config's registry fields) to ``RegistryOptions``."""
    result: list[RegistryOptions] = []
    for entry in getattr(settings, "registries", None) or ():
        kwargs: dict[str, Any] = {"prefix": str(entry.prefix)}
        for name in ("api_url", "credentials"):
            value = getattr(entry, name, None)
            if value is not None:
                kwargs[name] = str(value)
        ca_file = getattr(entry, "ca_file", None)
        if ca_file is not None:
            kwargs["ca_file"] = str(ca_file)
        for name in ("insecure", "tls_verify"):
            value = getattr(entry, name, None)
            if value is not None:
                kwargs[name] = bool(value)
        rate = getattr(entry, "rate_limit", None)
        if rate is not None:
            kwargs["rate_limit"] = float(rate)
        concurrency = getattr(entry, "max_concurrency", None)
        if concurrency is not None:
            kwargs["max_concurrency"] = int(concurrency)
        timeout = getattr(entry, "timeout", None)
        if timeout is not None:
            seconds = timeout.total_seconds() if hasattr(timeout, "total_seconds") else timeout
            kwargs["timeout"] = float(seconds)
        result.append(RegistryOptions(**kwargs))
    return result

