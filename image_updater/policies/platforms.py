"""Platform strings (``os/arch[/variant]``) normalised as containerd compares them, for ``platforms``."""

from __future__ import annotations

import re

__all__ = ["normalise_platform"]

_PLATFORM = re.compile(r"([a-z0-9_]+)/([a-z0-9_-]+)(?:/([a-z0-9_.]+))?\Z")
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386", "armhf": "arm"}


def normalise_platform(platform: str) -> str:
    """``os/arch[/variant]`` as containerd compares them: ``linux/arm64/v8`` == ``linux/arm64``,
    ``linux/arm`` == ``linux/arm/v7``, ``x86_64`` == ``amd64``. Raises ``ValueError`` for other shapes."""
    m = _PLATFORM.match(platform.strip().lower())
    if m is None:
        raise ValueError(f"invalid platform {platform!r}: expected os/arch[/variant]")
    os_name, arch, variant = m.groups()
    arch = _ARCH_ALIASES.get(arch, arch)
    if (arch == "arm64" and variant == "v8") or (arch == "amd64" and variant == "v1"):
        variant = None
    if arch == "arm" and variant is None:
        variant = "v7"
    return f"{os_name}/{arch}/{variant}" if variant else f"{os_name}/{arch}"

