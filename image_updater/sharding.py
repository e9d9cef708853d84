"""Which replica owns which source: rendezvous (highest random weight) hashing, pure.

Every replica computes the same answer from the source name and the replica count alone: no coordinator, no
shared state. The weight of ``(ordinal, source)`` is the first 8 bytes of blake2b over
``f"{ordinal}\\0{source}"`` (never Python's ``hash()``, which is salted per process); the highest weight wins,
ties (which blake2b makes vanishingly rare) going to the lower ordinal. Growing from N to N+1 replicas moves
only the sources the new ordinal wins, about 1/(N+1) of them; the others keep their owner.

The spread of first passes over the interval (``first_pass_offset``) hashes the name the same way, so that a
replica holding hundreds of sources does not start them all in the same second, and a restart keeps the order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = ["FORWARDED_HEADER", "first_pass_offset", "owned", "owner", "parse_ordinal", "weight"]

# Marks a webhook one replica forwarded to its peers; a replica never forwards such a request again.
FORWARDED_HEADER = "X-Image-Updater-Forwarded"

_TRAILING_ORDINAL = re.compile(r"-(0|[1-9][0-9]{0,5})")


def weight(ordinal: int, source: str) -> int:
    """The stable 64-bit weight of ``source`` on replica ``ordinal``."""
    digest = hashlib.blake2b(f"{ordinal}\0{source}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(source: str, replicas: int) -> int:
    """The ordinal (0..replicas-1) of the replica that owns ``source``."""
    if replicas < 1:
        raise ValueError("replicas must be at least 1")
    if replicas == 1:
        return 0
    return max(range(replicas), key=lambda ordinal: (weight(ordinal, source), -ordinal))


def owned(sources: Iterable[str], ordinal: int, replicas: int) -> list[str]:
    """The sources replica ``ordinal`` owns, in the given order."""
    return [name for name in sources if owner(name, replicas) == ordinal]


def parse_ordinal(hostname: str) -> int | None:
    """The StatefulSet ordinal at the end of a pod's hostname (``image-updater-2`` -> 2), else None.

    Only the first label counts (``image-updater-2.image-updater-headless.ns.svc`` -> 2).
    """
    first = hostname.strip().split(".", 1)[0]
    match = _TRAILING_ORDINAL.search(first)
    if match is None or match.end() != len(first) or match.start() == 0:
        return None
    return int(match.group(1))


def first_pass_offset(source: str, interval_seconds: float) -> float:
    """Seconds after start-up at which ``source``'s first pass runs: spread evenly over ``[0, interval)``."""
    if interval_seconds <= 0:
        return 0.0
    digest = hashlib.blake2b(f"offset\0{source}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") / 2**64) * interval_seconds
