"""Tag policies: one string form (``semver:~1.2``, ``glob:develop-*``, ...) plus modifiers.

A policy answers one question: given a repository's tags (and whatever metadata is known about them), which
tag should the reference point at? ``Policy.choose`` answers it, ``Policy.explain`` says why for every tag.
Both are pure: no I/O, no clock unless ``now`` is left out and ``min_age`` needs one.

Every tag goes through the same checks, in this order; the first that fails gives its status:

    invalid     the tag does not match the OCI tag grammar
    excluded    it matches an ``exclude`` glob or a Flux ``exclusionList`` regex, or it is ``latest`` and
                the pattern does not name ``latest``
    filtered    it does not match ``filter``, or the kind rejects it (not a version, flavour differs, outside
                the range, no glob/regex match, not a number, not the tracked tag)
    prerelease  a prerelease while the policy admits none (checked before the range, after the flavour)
    too-young   built less than ``min_age`` ago, or build time unknown
    platform    its platforms do not cover ``platforms``, or are unknown

The remaining candidates are ranked per kind; the greatest wins, and equal ranks go to the tie rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal

from image_updater.errors import ConfigError, InvalidPolicy
from image_updater.references import is_valid_tag
from image_updater.regexes import Spans, UserRegex, compile_user_regex
from image_updater.versions import (
    PRERELEASE_START_RE,
    RELEASE,
    VERSION_RE,
    InvalidRange,
    Range,
    natural_key,
    parse_range,
    prerelease_key,
    scan_version,
)

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

PolicyKind = Literal["semver", "glob", "regex", "alphabetical", "numerical", "newest", "digest"]

# cosign signatures, attestations and SBOMs are tags too; they are never images to deploy
DEFAULT_EXCLUDE: tuple[str, ...] = ("sha256-*.sig", "sha256-*.att", "sha256-*.sbom")

_KINDS: dict[str, PolicyKind] = {
    "semver": "semver",
    "glob": "glob",
    "regex": "regex",
    "regexp": "regex",  # Flux v1 spelling
    "alphabetical": "alphabetical",
    "numerical": "numerical",
    "newest": "newest",
    "digest": "digest",
}
_TIME_ORDERED = frozenset({"glob", "regex", "newest"})

# modifier name -> accepted spellings (annotations use "min-age", policy files "min_age")
MODIFIERS: tuple[str, ...] = (
    "exclude", "filter", "extract", "prerelease", "flavour", "min_age", "platforms", "pin_digest",
)
_MODIFIER_ALIASES = {"flavor": "flavour", "platform": "platforms"}


@dataclass(frozen=True, slots=True)
class TagInfo:
    """One tag of a repository, with whatever metadata is known (``None`` = not known / not fetched)."""

    tag: str
    created: datetime | None = None  # timezone-aware build time
    digest: str | None = None  # manifest (or index) digest
    platforms: frozenset[str] | None = None  # "linux/amd64", "linux/arm64/v8"; None = unknown


class Status(StrEnum):
    CHOSEN = "chosen"
    LOWER = "lower"
    FILTERED = "filtered"
    EXCLUDED = "excluded"
    PRERELEASE = "prerelease"
    TOO_YOUNG = "too-young"
    PLATFORM = "platform"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why one tag won or lost under a policy (``check --explain``)."""

    tag: str
    created: datetime | None
    status: Status
    reason: str


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed, validated, hashable policy. ``str(policy)`` gives back the canonical string form.

    Build one with ``parse_policy``; direct construction is validated too (``InvalidPolicy``), but only
    ``parse_policy`` canonicalises spellings (``regexp:`` -> ``regex:``, range spacing, ``exclude`` defaults).
    """

    kind: PolicyKind
    argument: str = ""  # the range, pattern, "asc"/"desc", or the digest policy's tag ("" = current tag)
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    filter: str | None = None
    extract: str | None = None
    prerelease: bool | None = None  # None: only when the range mentions one
    flavour: str | None = None  # None: same as the current tag's; "none", "any" or a literal suffix
    min_age: timedelta | None = None
    platforms: tuple[str, ...] = ()
    pin_digest: bool = False
    # Flux ImageRepository exclusionList: tags any of these regexes finds are excluded. Set by discovery
    # from Flux objects only, never a modifier of the string form.
    exclude_regex: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _compile(self)  # fail at construction, not at the first choose()

    def __str__(self) -> str:
        return f"{self.kind}:{self.argument}" if self.argument else self.kind

    @property
    def needs_build_time(self) -> bool:
        return self.kind in _TIME_ORDERED or self.min_age is not None

    @property
    def needs_platforms(self) -> bool:
        return bool(self.platforms)

    @property
    def needs_digest(self) -> bool:
        return self.kind == "digest" or self.pin_digest

    def choose(
        self, tags: Iterable[TagInfo], current: str | None = None, now: datetime | None = None
    ) -> TagInfo | None:
        """The tag this policy picks among ``tags`` (``current`` is the tag now in use), or ``None``."""
        judge = _Judge(self, current, now)
        rank = judge.rank
        descending = judge.descending
        best_key: Any = None
        best: list[tuple[TagInfo, Any]] = []
        for info in tags:
            key = rank(info)
            if type(key) is _Reject:
                continue
            if not best or (key < best_key if descending else key > best_key):
                best_key, best = key, [(info, key)]
            elif key == best_key:
                best.append((info, key))
        if not best:
            return None
        if len(best) == 1:
            return best[0][0]
        return max(best, key=lambda pair: judge.tie_key(pair[0]))[0]

    def explain(
        self, tags: Iterable[TagInfo], current: str | None = None, now: datetime | None = None
    ) -> list[Verdict]:
        """One verdict per tag: the chosen tag first, then the other candidates best-first, then the rest."""
        judge = _Judge(self, current, now)
        candidates: list[tuple[TagInfo, Any]] = []
        rejected: list[tuple[TagInfo, _Reject]] = []
        for info in tags:
            key = judge.rank(info)
            if type(key) is _Reject:
                rejected.append((info, key))
            else:
                candidates.append((info, key))
        # best rank first (the smallest for desc policies); the tie rule orders only runs of equal ranks,
        # so a large repository does not pay for tie keys it never needs
        candidates.sort(key=lambda pair: pair[1], reverse=not judge.descending)
        start = 0
        while start < len(candidates):
            end = start + 1
            while end < len(candidates) and candidates[end][1] == candidates[start][1]:
                end += 1
            if end - start > 1:
                candidates[start:end] = sorted(
                    candidates[start:end], key=lambda pair: judge.tie_key(pair[0]), reverse=True
                )
            start = end
        verdicts: list[Verdict] = []
        if candidates:
            best, best_key = candidates[0]
            verdicts.append(Verdict(best.tag, best.created, Status.CHOSEN, judge.chosen_reason()))
            for info, key in candidates[1:]:
                reason = judge.lower_reason(info, key, best, best_key)
                verdicts.append(Verdict(info.tag, info.created, Status.LOWER, reason))
        rejected.sort(key=lambda pair: judge.display_key(pair[0]), reverse=True)
        for info, reject in rejected:
            verdicts.append(Verdict(info.tag, info.created, reject.status, reject.reason))
        return verdicts


# --------------------------------------------------------------------------------------------- compilation


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


#: Longest glob accepted (characters): a tag has at most 128, and compiling costs time in the glob's length.
MAX_GLOB = 1024
#: All of one policy's exclude globs together, for the same reason.
MAX_EXCLUDE_CHARS = 4096


def _glob_to_regex(glob: str, what: str, group: str = "g") -> str:
    """Translate a glob (``*`` ``?`` ``[...]`` ``[!...]`` ``\\x``) into a regex body for a full match.

    ``group`` prefixes the names of the groups the body defines: distinct per glob joined into one regex.
    """
    if len(glob) > MAX_GLOB:
        raise InvalidPolicy(f"invalid {what} {glob[:40]!r}...: {len(glob)} characters (limit {MAX_GLOB})")
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1
            negate = j < n and glob[j] in "!^"
            if negate:
                j += 1
            start = j
            if j < n and glob[j] == "]":  # a leading ] is literal
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                raise InvalidPolicy(f"invalid {what} {glob!r}: unclosed '['")
            body = "".join(ch if ch == "-" else re.escape(ch) for ch in glob[start:j])
            out.append(f"[{'^' if negate else ''}{body}]")
            i = j
        elif c == "\\":
            if i + 1 >= n:
                raise InvalidPolicy(f"invalid {what} {glob!r}: trailing backslash")
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(c))
        i += 1
    # Tags come from the registry: with plain `.*` a tag of 128 `a` against `*a*a*a*a*a*b` backtracks for
    # minutes. Each fixed-width part between stars is matched at its leftmost place and never revisited,
    # which is exact for globs and linear: the construction of fnmatch.translate, a lookahead captured and
    # matched again by reference (an atomic group that also works on Python 3.11's first releases, whose
    # `(?>...)` misbehaves).
    parts: list[list[str]] = [[]]
    for piece in out:
        if piece == ".*":
            parts.append([])
        else:
            parts[-1].append(piece)
    if len(parts) == 1:
        return "".join(parts[0])
    head, *middle, tail = ("".join(part) for part in parts)
    atomic = "".join(f"(?=(?P<{group}{k}>.*?{part}))(?P={group}{k})" for k, part in enumerate(middle))
    return head + atomic + ".*" + tail


def _compile_glob(glob: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(f"(?:{_glob_to_regex(glob, what)})\\Z", re.DOTALL)
    except re.error as exc:
        raise InvalidPolicy(f"invalid {what} {glob!r}: {exc}") from exc


_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_]+")


def _compile_template(template: str, regex: UserRegex) -> Callable[[str, Spans], str]:
    """Go's ``Regexp.Expand`` (Flux ``extract``): ``$1``, ``$name``, ``${name}``, ``$$``; anything else,
    ``\\1`` included, is literal text. The result expands a tag and its filter spans (``UserRegex.spans``).

    Go silently expands a reference to a group that does not exist to ""; we refuse it, because an extract
    that is always empty would make every tag rank the same.
    """
    pieces: list[str | int] = []  # literal text, or a group's index
    literal: list[str] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c != "$":
            literal.append(c)
            i += 1
            continue
        if template.startswith("$$", i):
            literal.append("$")
            i += 2
            continue
        name: str | None = None
        if template.startswith("${", i):
            close = template.find("}", i + 2)
            if close != -1 and _TEMPLATE_NAME.fullmatch(template, i + 2, close):
                name, i = template[i + 2 : close], close + 1
        else:
            m = _TEMPLATE_NAME.match(template, i + 1)
            if m is not None:
                name, i = m.group(), m.end()
        if name is None:  # malformed: Go writes the $ as it is
            literal.append("$")
            i += 1
            continue
        if name.isdigit():
            index = int(name)
            if index > regex.groups:
                raise InvalidPolicy(f"invalid extract {template!r}: filter has no group {name}")
        else:
            if name not in regex.groupindex:
                raise InvalidPolicy(f"invalid extract {template!r}: filter has no group named {name!r}")
            index = regex.groupindex[name]
        if literal:
            pieces.append("".join(literal))
            literal = []
        pieces.append(index)
    if literal:
        pieces.append("".join(literal))
    frozen = tuple(pieces)
    # a group that did not take part has the span (-1, -1), which slices to "" as Go expands it
    if len(frozen) == 1 and isinstance(frozen[0], int):  # "$version": the common case, once per tag
        only = frozen[0]

        def expand_one(text: str, spans: Spans) -> str:
            start, end = spans[only]
            return text[start:end]

        return expand_one

    def expand(text: str, spans: Spans) -> str:
        return "".join([p if isinstance(p, str) else text[spans[p][0] : spans[p][1]] for p in frozen])

    return expand


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


@lru_cache(maxsize=512)
def _compile(policy: Policy) -> _Compiled:
    kind, arg = policy.kind, policy.argument
    range_: Range | None = None
    pattern: re.Pattern[str] | None = None
    regex: UserRegex | None = None
    if kind not in _KINDS.values():
        known = ", ".join(sorted(set(_KINDS.values())))
        raise InvalidPolicy(f"unknown policy kind {kind!r} (expected one of {known})")
    if kind == "semver":
        range_ = parse_range(arg)
    elif kind == "glob":
        if not arg:
            raise InvalidPolicy("invalid policy 'glob:': empty pattern (use 'glob:*' to match every tag)")
        pattern = _compile_glob(arg, "glob")
    elif kind == "regex":
        if not arg:
            raise InvalidPolicy("invalid policy 'regex:': empty regex (use 'regex:.' to match every tag)")
        regex = compile_user_regex(arg, "regex")
    elif kind in ("alphabetical", "numerical"):
        if arg not in ("asc", "desc"):
            raise InvalidPolicy(f"invalid policy '{kind}:{arg}': the order must be 'asc' or 'desc'")
    elif kind == "newest":
        if arg:
            raise InvalidPolicy(f"invalid policy 'newest:{arg}': newest takes no argument")
    elif arg and not is_valid_tag(arg):  # digest
        raise InvalidPolicy(f"invalid policy 'digest:{arg}': {arg!r} is not a valid tag")

    for glob in policy.exclude:
        if not isinstance(glob, str) or not glob:
            raise InvalidPolicy(f"invalid exclude {glob!r}: expected a non-empty glob")
    if sum(len(glob) for glob in policy.exclude) > MAX_EXCLUDE_CHARS:
        raise InvalidPolicy(f"invalid exclude: the globs together are over {MAX_EXCLUDE_CHARS} characters")
    exclude = None
    exclude_globs = tuple((glob, _compile_glob(glob, "exclude glob")) for glob in policy.exclude)
    if policy.exclude:
        body = "|".join(
            f"(?:{_glob_to_regex(g, 'exclude glob', f'x{i}_')})" for i, g in enumerate(policy.exclude)
        )
        exclude = re.compile(f"(?:{body})\\Z", re.DOTALL)
    for pattern_text in policy.exclude_regex:
        if not isinstance(pattern_text, str) or not pattern_text:
            raise InvalidPolicy(f"invalid exclusionList regex {pattern_text!r}: expected a non-empty regex")
    exclude_regexes = tuple(compile_user_regex(r, "exclusionList regex") for r in policy.exclude_regex)
    filter_ = None
    extract = None
    if policy.filter is not None:
        if not policy.filter:
            raise InvalidPolicy("invalid filter '': empty regex")
        filter_ = compile_user_regex(policy.filter, "filter")
    if policy.extract is not None:
        if filter_ is None:
            raise InvalidPolicy(f"invalid extract {policy.extract!r}: extract needs a filter regex")
        if not policy.extract:
            raise InvalidPolicy("invalid extract '': empty template")
        extract = _compile_template(policy.extract, filter_)
    if policy.flavour is not None and policy.flavour not in ("none", "any") and not _FLAVOUR.match(
        policy.flavour
    ):
        raise InvalidPolicy(f"invalid flavour {policy.flavour!r}: expected 'none', 'any' or a tag suffix")
    if policy.min_age is not None and policy.min_age < timedelta(0):
        raise InvalidPolicy(f"invalid min_age {format_duration(policy.min_age)!r}: negative")
    try:
        platforms = frozenset(normalise_platform(p) for p in policy.platforms)
    except ValueError as exc:
        raise InvalidPolicy(f"invalid platforms: {exc}") from exc
    named = (arg if kind in ("glob", "regex") else "") + (policy.filter or "")
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


_FLAVOUR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")

# ---------------------------------------------------------------------------------------------- evaluation


class _Reject:
    """A tag that is no candidate, and why."""

    __slots__ = ("reason", "status")

    def __init__(self, status: Status, reason: str) -> None:
        self.status = status
        self.reason = reason


# references.is_valid_tag's grammar; matched directly in the hot loops to save a call per tag
_TAG_GRAMMAR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
_NO_TIME: tuple[int] = (0,)
_ANY = object()
_NUMBER = re.compile(r"(\d+)(?:\.(\d+))?\Z", re.ASCII)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _iso(dt: datetime | None) -> str:
    if dt is None:
        return "unknown"
    return _aware(dt).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Judge:
    """One policy applied against one current tag at one moment: ranks tags and words the reasons.

    ``rank`` returns either a ``_Reject`` or the tag's rank key (greater is better, or smaller for ``desc``
    policies); ``tie_key`` breaks equal ranks. Reason strings that do not depend on the tag are built once.
    """

    def __init__(self, policy: Policy, current: str | None, now: datetime | None) -> None:
        self.policy = policy
        self.compiled = compiled = _compile(policy)
        self.current = current
        self.descending = policy.argument == "desc" and policy.kind in ("alphabetical", "numerical")
        # the clock is read only when min_age needs it, so choices stay reproducible otherwise
        if now is not None:
            self.now: datetime | None = _aware(now)
        else:
            self.now = datetime.now(UTC) if policy.min_age is not None else None
        current_value = self._value_of(current) if current is not None else None
        scanned = scan_version(current_value) if current_value is not None else None
        # the tie rule follows the current spelling; with no current version to follow (no current tag, or
        # one such as "alpine" or "latest"), the lexically greatest spelling wins
        self.follow_spelling = scanned is not None
        self.current_v, self.current_parts = (scanned[2], scanned[3]) if scanned else (False, 0)
        self.current_flavour = scanned[1] if scanned else None
        flavour = policy.flavour
        self.flavour: object
        if flavour is None:
            self.flavour = self.current_flavour
        elif flavour == "none":
            self.flavour = None
        else:
            self.flavour = _ANY if flavour == "any" else flavour
        self.range = compiled.range
        mentioned = bool(self.range and self.range.has_prerelease)
        self.include_prerelease = policy.prerelease if policy.prerelease is not None else mentioned
        self.digest_target = (policy.argument or current) if policy.kind == "digest" else None
        # constant reasons
        self.r_invalid = _Reject(Status.INVALID, "not a valid tag: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
        self.r_latest = _Reject(Status.EXCLUDED, "'latest' counts only when the policy's pattern names it")
        self.r_filter = _Reject(Status.FILTERED, f"does not match filter {policy.filter!r}")
        self.r_not_version = _Reject(Status.FILTERED, "not a version")
        self.r_range = _Reject(Status.FILTERED, f"does not satisfy {self.range}")
        self.r_prerelease = _Reject(
            Status.PRERELEASE,
            "prerelease; the policy sets prerelease: false" if policy.prerelease is False
            else f"prerelease; {self.range} names no prerelease (set prerelease: true)",
        )
        self.r_pattern = _Reject(Status.FILTERED, f"does not match {policy}")
        self.r_number = _Reject(Status.FILTERED, r"not a number (\d+ or \d+.\d+)")
        target = self.digest_target
        self.r_digest = _Reject(
            Status.FILTERED, f"not the tracked tag {target!r}" if target else "no current tag to track"
        )
        self.r_unknown_platforms = _Reject(
            Status.PLATFORM, f"platforms unknown; needs {', '.join(sorted(compiled.platforms))}"
        )
        self._flavour_rejects: dict[str | None, _Reject] = {}
        self.rank = self._build_rank()

    # -- values and ranking

    def _value_of(self, tag: str) -> str:
        """The value a tag is ranked by: the ``extract`` expansion of the filter match, else the tag."""
        c = self.compiled
        if c.extract is not None and c.filter is not None:
            spans = c.filter.spans(tag)
            if spans is not None:
                return c.extract(tag, spans)
        return tag

    def _build_rank(self) -> Callable[[TagInfo], Any]:
        if self.policy.kind == "semver":
            return self._semver_rank()
        c, policy = self.compiled, self.policy
        r_invalid, r_latest, r_filter = self.r_invalid, self.r_latest, self.r_filter
        valid_tag = _TAG_GRAMMAR.match
        exclude = c.exclude.match if c.exclude is not None else None
        exclude_reason = self._exclude_reason
        excluded_by_regex = self._regex_exclusion if c.exclude_regexes else None
        latest_ok = c.allows_latest or policy.kind == "digest"
        filter_ = c.filter.spans if c.filter is not None else None
        extract = c.extract
        ranker = self._kind_ranker()
        back = self._back_check if policy.min_age is not None or c.platforms else None

        def rank(info: TagInfo) -> Any:
            # the same checks as _front_check, inlined: this loop meets every tag of a repository
            tag = info.tag
            if valid_tag(tag) is None:
                return r_invalid
            if exclude is not None and exclude(tag):
                return exclude_reason(tag)
            if excluded_by_regex is not None and (rejected := excluded_by_regex(tag)) is not None:
                return rejected
            if not latest_ok and len(tag) == 6 and tag.lower() == "latest":
                return r_latest
            value = tag
            if filter_ is not None:
                spans = filter_(tag)
                if spans is None:
                    return r_filter
                if extract is not None:
                    value = extract(tag, spans)
            key = ranker(info, value)
            if back is not None and type(key) is not _Reject:
                return back(info) or key
            return key

        return rank

    def _front_check(self, tag: str) -> _Reject | None:
        """Checks every kind makes before looking at the tag's value: grammar, exclude, latest."""
        if _TAG_GRAMMAR.match(tag) is None:
            return self.r_invalid
        exclude = self.compiled.exclude
        if exclude is not None and exclude.match(tag):
            return self._exclude_reason(tag)
        if self.compiled.exclude_regexes and (rejected := self._regex_exclusion(tag)) is not None:
            return rejected
        if tag.lower() == "latest" and not (self.compiled.allows_latest or self.policy.kind == "digest"):
            return self.r_latest
        return None

    def _back_check(self, info: TagInfo) -> _Reject | None:
        """Checks on metadata, made last: build age and platforms."""
        if self.policy.min_age is not None:
            rejected = self._age_check(info, self.policy.min_age, self.now)
            if rejected is not None:
                return rejected
        if self.compiled.platforms:
            return self._platform_check(info, self.compiled.platforms)
        return None

    def _kind_ranker(self) -> Callable[[TagInfo, str], Any]:
        kind = self.policy.kind
        if kind in _TIME_ORDERED:
            pattern, regex = self.compiled.pattern, self.compiled.regex
            match: Callable[[str], object] | None = (
                pattern.match if pattern is not None else regex.found_in if regex is not None else None
            )
            r_pattern = self.r_pattern

            def by_time(info: TagInfo, value: str) -> Any:
                if match is not None and not match(info.tag):
                    return r_pattern
                created = info.created
                return _NO_TIME if created is None else (1, _aware(created))

            return by_time
        if kind == "alphabetical":
            return lambda info, value: value
        if kind == "numerical":
            r_number = self.r_number

            def by_number(info: TagInfo, value: str) -> Any:
                m = _NUMBER.match(value)
                if m is None:
                    return r_number
                whole, fraction = m.groups()
                return (int(whole), (fraction or "").rstrip("0"))

            return by_number
        target, r_digest = self.digest_target, self.r_digest

        def by_name(info: TagInfo, value: str) -> Any:
            return 0 if target is not None and info.tag == target else r_digest

        return by_name

    def _semver_rank(self) -> Callable[[TagInfo], Any]:
        """The semver path, specialised because it is the one that meets 100,000-tag repositories.

        It makes the same checks in the same order as the generic path; it only skips work that cannot
        change the answer: a tag the version pattern matches is a valid tag once it is short enough and is
        never ``latest``, and the exclude globs are skipped when none can match a version-shaped tag.
        """
        c, policy = self.compiled, self.policy
        assert c.range_match is not None
        in_range = c.range_match
        front = self._front_check
        back = self._back_check if policy.min_age is not None or c.platforms else None
        exclude_any = c.exclude.match if c.exclude is not None else None
        exclude = exclude_any if c.exclude_may_match_versions else None
        exclude_reason = self._exclude_reason
        excluded_by_regex = self._regex_exclusion if c.exclude_regexes else None
        valid_tag = _TAG_GRAMMAR.match
        r_latest = self.r_latest  # no range names latest, and with a filter the generic checks run
        filter_ = c.filter.spans if c.filter is not None else None
        extract = c.extract
        version = VERSION_RE.match
        is_prerelease = PRERELEASE_START_RE.match
        flavour = self.flavour
        any_flavour = flavour is _ANY
        include_prerelease = self.include_prerelease
        r_invalid, r_filter, r_not_version = self.r_invalid, self.r_filter, self.r_not_version
        r_range, r_prerelease = self.r_range, self.r_prerelease
        flavour_reason = self._flavour_reason

        def rank(info: TagInfo) -> Any:
            tag = info.tag
            if filter_ is None:
                m = version(tag)
                if m is None:  # _front_check inlined
                    if valid_tag(tag) is None:
                        return r_invalid
                    if exclude_any is not None and exclude_any(tag):
                        return exclude_reason(tag)
                    if excluded_by_regex is not None and (rejected := excluded_by_regex(tag)) is not None:
                        return rejected
                    if len(tag) == 6 and tag.lower() == "latest":
                        return r_latest
                    return r_not_version
                if len(tag) > 128:
                    return r_invalid
                if exclude is not None and exclude(tag):
                    return exclude_reason(tag)
                if excluded_by_regex is not None and (rejected := excluded_by_regex(tag)) is not None:
                    return rejected
            else:
                rejected = front(tag)
                if rejected is not None:
                    return rejected
                spans = filter_(tag)
                if spans is None:
                    return r_filter
                m = version(extract(tag, spans) if extract is not None else tag)
                if m is None:
                    return r_not_version
            _v, major, minor, patch, suffix, build = m.groups()
            if build is not None and filter_ is None:
                return r_invalid  # "+" is not in the tag grammar; an extracted value may carry one
            prerelease = False
            if suffix is None:
                tag_flavour = None
            elif is_prerelease(suffix):
                tag_flavour, prerelease = None, True
            else:
                tag_flavour = suffix
            if not any_flavour and tag_flavour != flavour:
                return flavour_reason(tag_flavour)
            if prerelease:
                if not include_prerelease:
                    return r_prerelease
                key: tuple[Any, ...] = (int(major), int(minor or 0), int(patch or 0), prerelease_key(suffix))
            else:
                key = (int(major), int(minor or 0), int(patch or 0), RELEASE)
            if not in_range(key):
                return r_range
            if back is not None:
                return back(info) or key
            return key

        return rank

    def _flavour_reason(self, flavour: str | None) -> _Reject:
        # a repository has a handful of flavours and thousands of tags of each: word each reason once
        reject = self._flavour_rejects.get(flavour)
        if reject is None:
            if self.policy.flavour is None:
                wanted = f"current {self.current_flavour or ''!r}"
            else:
                wanted = f"flavour: {self.policy.flavour}"
            reject = _Reject(Status.FILTERED, f"flavour {flavour or ''!r} differs from {wanted}")
            self._flavour_rejects[flavour] = reject
        return reject

    def _exclude_reason(self, tag: str) -> _Reject:
        for glob, pattern in self.compiled.exclude_globs:
            if pattern.match(tag):
                return _Reject(Status.EXCLUDED, f"matches exclude {glob!r}")
        raise AssertionError("unreachable: the combined exclude pattern matched")  # pragma: no cover

    def _regex_exclusion(self, tag: str) -> _Reject | None:
        for regex in self.compiled.exclude_regexes:
            if regex.found_in(tag):
                return _Reject(Status.EXCLUDED, f"matches exclusionList regex {regex.pattern!r}")
        return None

    @staticmethod
    def _age_check(info: TagInfo, min_age: timedelta, now: datetime | None) -> _Reject | None:
        if info.created is None:
            return _Reject(Status.TOO_YOUNG, f"build time unknown; min_age {format_duration(min_age)}")
        assert now is not None
        age = now - _aware(info.created)
        if age >= min_age:
            return None
        if age < timedelta(0):
            when = f"built {format_duration(-age)} in the future"
        else:
            when = f"built {format_duration(age)} ago"
        return _Reject(Status.TOO_YOUNG, f"{when}, min_age {format_duration(min_age)}")

    def _platform_check(self, info: TagInfo, wanted: frozenset[str]) -> _Reject | None:
        if info.platforms is None:
            return self.r_unknown_platforms
        have = set()
        for p in info.platforms:
            try:
                have.add(normalise_platform(p))
            except ValueError:
                continue  # a platform we cannot read covers nothing
        missing = sorted(wanted - have)
        if not missing:
            return None
        return _Reject(
            Status.PLATFORM, f"lacks {', '.join(missing)} (has {', '.join(sorted(info.platforms)) or 'none'})"
        )

    # -- ties and words

    def tie_key(self, info: TagInfo) -> tuple[Any, ...]:
        """Among equal ranks: the current tag's spelling (semver, when the current tag is a version), then
        the lexically greatest: natural order (digit runs as numbers), then byte order."""
        value = self._value_of(info.tag)
        tail = (natural_key(value), value, natural_key(info.tag), info.tag)
        if self.policy.kind != "semver":
            return tail
        scanned = scan_version(value)
        if scanned is None:  # pragma: no cover - candidates under semver always scan
            return (False, False, False, False, *tail)
        _, flavour, v, parts = scanned
        if not self.follow_spelling:
            return (flavour == self.current_flavour, *tail)
        same_v, same_parts = v == self.current_v, parts == self.current_parts
        return (flavour == self.current_flavour, same_v and same_parts, same_v, same_parts, *tail)

    def display_key(self, info: TagInfo) -> tuple[Any, ...]:
        """How rejected tags are listed: best-first by what the policy orders on, where that is known."""
        kind, tag = self.policy.kind, info.tag
        if kind in _TIME_ORDERED:
            created = info.created
            return (created is not None, _aware(created) if created else 0, natural_key(tag))
        if kind == "semver":
            scanned = scan_version(self._value_of(tag))
            if scanned is not None:
                return (1, scanned[0], tag)
        elif kind == "numerical":
            m = _NUMBER.match(self._value_of(tag))
            if m is not None:
                return (1, int(m.group(1)), (m.group(2) or "").rstrip("0"), tag)
        return (0, natural_key(tag))

    def chosen_reason(self) -> str:
        kind, policy = self.policy.kind, self.policy
        if kind == "semver":
            return f"highest version satisfying {self.range}"
        if kind in ("glob", "regex"):
            return f"newest build matching {policy}"
        if kind == "newest":
            return "newest build"
        if kind == "alphabetical":
            return "last in byte order" if not self.descending else "first in byte order"
        if kind == "numerical":
            return "highest number" if not self.descending else "lowest number"
        return "the tracked tag"

    def lower_reason(self, info: TagInfo, key: Any, best: TagInfo, best_key: Any) -> str:
        if key == best_key:
            return f"ranks equal to {best.tag}, which the tie rule prefers"
        kind = self.policy.kind
        value, best_value = self._value_of(info.tag), self._value_of(best.tag)
        if kind in _TIME_ORDERED:
            if info.created is None:
                return f"build time unknown; {best.tag} was built {_iso(best.created)}"
            return f"built {_iso(info.created)}, before {best.tag} ({_iso(best.created)})"
        if self.descending:
            return f"{value} > {best_value}"
        return f"{value} < {best_value}"


# ----------------------------------------------------------------------------------------------- parsing


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidPolicy(f"invalid {name} {value!r}: expected true or false")


def _parse_list(name: str, value: Any) -> list[str]:
    """A list modifier: a YAML list, or one string with comma-separated items (as annotations carry them)."""
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise InvalidPolicy(f"invalid {name} {value!r}: expected a list or a comma-separated string")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidPolicy(f"invalid {name} {value!r}: {item!r} is not a string")
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return out


def _parse_min_age(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            result = timedelta(seconds=value)
        except (OverflowError, ValueError):  # inf, nan, or more days than a timedelta holds
            raise InvalidPolicy(f"invalid min_age {value!r}: not a usable number of seconds") from None
    elif isinstance(value, str):
        try:
            result = parse_duration(value)
        except ConfigError as exc:
            raise InvalidPolicy(f"invalid min_age {value!r}: {exc}") from exc
    else:
        raise InvalidPolicy(f"invalid min_age {value!r}: expected a duration such as 1h30m or 7d")
    if result < timedelta(0):
        raise InvalidPolicy(f"invalid min_age {value!r}: negative")
    return result


def _modifier_kwargs(modifiers: Mapping[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for raw_key, value in modifiers.items():
        if not isinstance(raw_key, str):
            raise InvalidPolicy(f"invalid policy modifier {raw_key!r}")
        key = raw_key.strip().lower().replace("-", "_")
        key = _MODIFIER_ALIASES.get(key, key)
        if key not in MODIFIERS:
            raise InvalidPolicy(
                f"unknown policy modifier {raw_key!r} (expected one of {', '.join(MODIFIERS)})"
            )
        if key in kwargs:
            raise InvalidPolicy(f"policy modifier {key!r} given twice")
        if value is None:
            continue
        if key == "exclude":
            user = _parse_list("exclude", value)
            for glob in user:
                _compile_glob(glob, "exclude glob")
            kwargs[key] = DEFAULT_EXCLUDE + tuple(g for g in user if g not in DEFAULT_EXCLUDE)
        elif key in ("filter", "extract"):
            if not isinstance(value, str) or not value:
                raise InvalidPolicy(f"invalid {key} {value!r}: expected a non-empty string")
            kwargs[key] = value
        elif key in ("prerelease", "pin_digest"):
            kwargs[key] = _parse_bool(key.replace("_", "-"), value)
        elif key == "flavour":
            if not isinstance(value, str):
                raise InvalidPolicy(f"invalid flavour {value!r}: expected 'none', 'any' or a tag suffix")
            flavour = value.strip().removeprefix("-")
            lowered = flavour.lower()
            kwargs[key] = "none" if lowered in ("", "none") else "any" if lowered == "any" else flavour
        elif key == "min_age":
            kwargs[key] = _parse_min_age(value)
        else:  # platforms
            try:
                kwargs[key] = tuple(sorted({normalise_platform(p) for p in _parse_list(key, value)}))
            except ValueError as exc:
                raise InvalidPolicy(f"invalid platforms: {exc}") from exc
    return kwargs


def parse_policy(text: str, modifiers: Mapping[str, Any] | None = None) -> Policy:
    """Parse ``kind[:argument]`` plus modifiers into a canonical ``Policy``; raise ``InvalidPolicy``.

    Modifier keys may use ``_`` or ``-`` (``min-age``); values may be strings as annotations carry them
    (``"true"``, ``"1h"``, ``"a,b"``) or typed values from a policy file.
    """
    if not isinstance(text, str):
        raise InvalidPolicy(f"invalid policy {text!r}: expected a string such as 'semver:~1.2'")
    stripped = text.strip()
    if not stripped:
        raise InvalidPolicy("empty policy (expected e.g. 'semver:^1.0', 'glob:main-*', 'alphabetical')")
    head, _, argument = stripped.partition(":")
    kind = _KINDS.get(head.strip().lower())
    if kind is None:
        raise InvalidPolicy(
            f"invalid policy {text!r}: unknown kind {head!r} "
            f"(expected semver, glob, regex, regexp, alphabetical, numerical, newest or digest)"
        )
    argument = argument.strip()
    if kind == "semver":
        if not argument:
            raise InvalidPolicy(f"invalid policy {text!r}: semver needs a range, e.g. 'semver:^1.2'")
        try:
            argument = parse_range(argument).text
        except InvalidRange as exc:
            raise InvalidPolicy(f"invalid policy {text!r}: {exc.detail}") from exc
    elif kind in ("glob", "regex") and not argument:
        example = "glob:*" if kind == "glob" else "regex:^v\\d+"
        raise InvalidPolicy(f"invalid policy {text!r}: {head.strip()} needs a pattern, e.g. {example!r}")
    elif kind in ("alphabetical", "numerical"):
        argument = argument.lower() or "asc"
        if argument not in ("asc", "desc"):
            raise InvalidPolicy(f"invalid policy {text!r}: the order must be 'asc' or 'desc'")
    elif kind == "newest" and argument:
        raise InvalidPolicy(f"invalid policy {text!r}: newest takes no argument")
    elif kind == "digest" and argument and not is_valid_tag(argument):
        raise InvalidPolicy(f"invalid policy {text!r}: {argument!r} is not a valid tag")
    kwargs = _modifier_kwargs(modifiers or {})
    return Policy(kind=kind, argument=argument, **kwargs)


# ---------------------------------------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])", re.ASCII)
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[wdhms])+\Z", re.ASCII)
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``5m``, ``1h30m``, ``7d``, ``1w``, ``1.5h`` or plain seconds ``30``; else ``ConfigError``."""
    if not isinstance(text, str):
        raise ConfigError(f"invalid duration {text!r}: expected e.g. '90s', '1h30m', '7d'")
    cleaned = text.strip().lower()
    if cleaned.isascii() and cleaned.isdigit():
        return _seconds(int(cleaned), text)
    if not _DURATION.match(cleaned):
        raise ConfigError(f"invalid duration {text!r}: expected e.g. '90s', '1h30m', '7d' or plain seconds")
    seen: set[str] = set()
    seconds = 0.0
    for number, unit in _DURATION_PART.findall(cleaned):
        if unit in seen:
            raise ConfigError(f"invalid duration {text!r}: unit {unit!r} given twice")
        seen.add(unit)
        seconds += float(number) * _UNIT_SECONDS[unit]
    return _seconds(seconds, text)


def _seconds(seconds: float, text: str) -> timedelta:
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # "99999999999d": a typo must be a config error, not a crash
        raise ConfigError(f"invalid duration {text!r}: too long") from None


def format_duration(delta: timedelta) -> str:
    """The short form ``parse_duration`` reads: ``1d``, ``2h``, ``1h30m``, ``45s`` (largest two units)."""
    total = int(delta.total_seconds())
    if total <= 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])
