"""A policy compiled: validated, its patterns, range and templates built once and cached per policy.

``_compile`` is what ``Policy`` runs at construction (so a bad policy fails there, not at the first
``choose``) and what ranking starts from; it holds everything that does not depend on the current tag.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from image_updater.durations import format_duration
from image_updater.errors import InvalidPolicy
from image_updater.references import is_valid_tag
from image_updater.regexes import Spans, UserRegex, compile_user_regex
from image_updater.versions import Range, parse_range

from .patterns import _compile_excludes, _compile_glob, _compile_template
from .platforms import normalise_platform

if TYPE_CHECKING:
    from .spec import Policy

@dataclass(frozen=True, slots=True)
class _Compiled:
    """Everything about a policy that does not depend on the current tag; cached per policy."""

    range: Range | None
    range_match: Callable[[Any], bool] | None
    pattern: re.Pattern[str] | None  # glob (full match)
    regex: UserRegex | None  # regex (search)
    exclude: re.Pattern[str] | None  # all exclude globs in one pattern
    exclude_globs: tuple[tuple[str, re.Pattern[str]], ...]  # each on its own, to name the one that matched
    exclude_may_match_versions: bool
    exclude_regexes: tuple[UserRegex, ...]
    filter: UserRegex | None
    extract: Callable[[str, Spans], str] | None
    allows_latest: bool
    platforms: frozenset[str]


@lru_cache(maxsize=512)
def _compile(policy: Policy) -> _Compiled:
    """Validate ``policy`` (its kind is already known to be valid) and compile its patterns, once.

    The steps run in this order, so a policy with several faults always names the same one first."""
    range_, pattern, regex = _compile_kind(policy.kind, policy.argument)
    exclude, exclude_globs = _compile_excludes(policy.exclude)
    exclude_regexes = _compile_exclusion_list(policy.exclude_regex)
    filter_, extract = _compile_filter(policy.filter, policy.extract)
    platforms = _check_modifiers(policy)
    named = (policy.argument if policy.kind in ("glob", "regex") else "") + (policy.filter or "")
    return _Compiled(
        range=range_,
        range_match=range_.matcher() if range_ is not None else None,
        pattern=pattern,
        regex=regex,
        exclude=exclude,
        exclude_globs=exclude_globs,
        # version-shaped tags start with a digit or "v": the default cosign globs ("sha256-*") never match one
        exclude_may_match_versions=any(g[0] in "*?[\\0123456789v" for g in policy.exclude),
        exclude_regexes=exclude_regexes,
        filter=filter_,
        extract=extract,
        allows_latest="latest" in named.lower(),
        platforms=platforms,
    )


def _compile_kind(
    kind: str, arg: str
) -> tuple[Range | None, re.Pattern[str] | None, UserRegex | None]:
    """The kind's argument: a semver range, a glob, a regex, an order, nothing, or a tag to track."""
    if kind == "semver":
        return parse_range(arg), None, None
    if kind == "glob":
        if not arg:
            raise InvalidPolicy("invalid policy 'glob:': empty pattern (use 'glob:*' to match every tag)")
        return None, _compile_glob(arg, "glob"), None
    if kind == "regex":
        if not arg:
            raise InvalidPolicy("invalid policy 'regex:': empty regex (use 'regex:.' to match every tag)")
        return None, None, compile_user_regex(arg, "regex")
    if kind in ("alphabetical", "numerical"):
        if arg not in ("asc", "desc"):
            raise InvalidPolicy(f"invalid policy '{kind}:{arg}': the order must be 'asc' or 'desc'")
    elif kind == "newest":
        if arg:
            raise InvalidPolicy(f"invalid policy 'newest:{arg}': newest takes no argument")
    elif kind == "digest" and arg and not is_valid_tag(arg):
        raise InvalidPolicy(f"invalid policy 'digest:{arg}': {arg!r} is not a valid tag")
    return None, None, None


def _compile_exclusion_list(patterns: tuple[str, ...]) -> tuple[UserRegex, ...]:
    """A Flux ``exclusionList``: regexes, each searched in the tag."""
    for pattern_text in patterns:
        if not isinstance(pattern_text, str) or not pattern_text:
            raise InvalidPolicy(f"invalid exclusionList regex {pattern_text!r}: expected a non-empty regex")
    return tuple(compile_user_regex(r, "exclusionList regex") for r in patterns)


def _compile_filter(
    filter_text: str | None, template: str | None
) -> tuple[UserRegex | None, Callable[[str, Spans], str] | None]:
    """``filter`` (a regex) and ``extract`` (a template over the filter's groups, which it needs)."""
    filter_ = None
    if filter_text is not None:
        if not filter_text:
            raise InvalidPolicy("invalid filter '': empty regex")
        filter_ = compile_user_regex(filter_text, "filter")
    if template is None:
        return filter_, None
    if filter_ is None:
        raise InvalidPolicy(f"invalid extract {template!r}: extract needs a filter regex")
    if not template:
        raise InvalidPolicy("invalid extract '': empty template")
    return filter_, _compile_template(template, filter_)


def _check_modifiers(policy: Policy) -> frozenset[str]:
    """``flavour`` and ``min_age`` as direct construction may give them; the platforms, normalised."""
    if policy.flavour is not None and policy.flavour not in ("none", "any") and not _FLAVOUR.match(
        policy.flavour
    ):
        raise InvalidPolicy(f"invalid flavour {policy.flavour!r}: expected 'none', 'any' or a tag suffix")
    if policy.min_age is not None and policy.min_age < timedelta(0):
        raise InvalidPolicy(f"invalid min_age {format_duration(policy.min_age)!r}: negative")
    try:
        return frozenset(normalise_platform(p) for p in policy.platforms)
    except ValueError as exc:
        raise InvalidPolicy(f"invalid platforms: {exc}") from exc


_FLAVOUR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")
