"""Fault injection for the reliability tests (issue 7).

- :class:`FaultProxy` (``tests.faults.proxy``): a seeded, rule-driven HTTP reverse proxy on 127.0.0.1 that
  sits between the registry client and a real registry and breaks chosen requests (5xx, 429 with or without
  ``Retry-After``, delays past the client's timeout, connection resets, truncated, undecodable or huge bodies,
  manifests that do not match their digest).
- Git faults (``tests.faults.gitfaults``): a remote that is unreachable, a push that loses a race against a
  human push (a ``pre-receive`` hook pushes first), and a cache directory whose disk is full (a small
  tmpfs, else a size-limited loop file system, else a simulated ``ENOSPC``).
"""

from tests.faults.gitfaults import (
    DiskFull,
    arm_push_race,
    disarm_push_race,
    human_commits,
    install_push_race,
    small_disk,
)
from tests.faults.proxy import KINDS, Fault, FaultProxy

__all__ = [
    "KINDS",
    "DiskFull",
    "Fault",
    "FaultProxy",
    "arm_push_race",
    "disarm_push_race",
    "human_commits",
    "install_push_race",
    "small_disk",
]
