"""Tag policies: one string form (``semver:~1.2``, ``glob:develop-*``, ...) plus modifiers.

A policy answers one question: given a repository's tags (and whatever metadata is known about them), which
tag should the reference point at? ``Policy.choose`` answers it, ``Policy.explain`` says why for every tag.

The package, one idea per module, each importing at run time only the ones below it (type hints aside):

    spec        ``Policy``, its string form and modifiers, ``parse_policy``
    ranking     ``choose`` / ``explain``: the checks every tag goes through, the order, the tie rule, reasons
    compiled    a policy validated and compiled once (range, globs, regexes, template), cached per policy
    patterns    tag globs (``glob:``, ``exclude``) and ``extract`` templates
    platforms   ``os/arch[/variant]`` normalised as containerd compares them
    durations   ``min_age`` durations (to be replaced by the grammar shared with settings)

Everything here is pure: no I/O (an import-linter contract in pyproject.toml checks it).
"""

from __future__ import annotations

from image_updater.durations import format_duration, parse_duration

from .platforms import normalise_platform
from .ranking import Status, TagInfo, Verdict
from .spec import DEFAULT_EXCLUDE, MODIFIERS, Policy, PolicyKind, parse_policy

__all__ = [
    "DEFAULT_EXCLUDE",
    "MODIFIERS",
    "Policy",
    "PolicyKind",
    "Status",
    "TagInfo",
    "Verdict",
    "format_duration",
    "normalise_platform",
    "parse_duration",
    "parse_policy",
]
