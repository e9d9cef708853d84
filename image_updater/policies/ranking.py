"""Ranking: which of a repository's tags a policy picks (``choose``), and why for every tag (``explain``).

Both are pure: no I/O, no clock unless ``now`` is left out and ``min_age`` needs one. ``Policy.choose`` and
``Policy.explain`` call them.

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

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import repeat
from typing import TYPE_CHECKING, Any

from image_updater.durations import format_duration
from image_updater.versions import (
    PRERELEASE_START_RE,
    RELEASE,
    VERSION_RE,
    natural_key,
    prerelease_key,
    scan_version,
)

from .compiled import _compile
from .platforms import normalise_platform

if TYPE_CHECKING:
    from .spec import Policy

__all__ = ["Status", "TagInfo", "Verdict", "choose", "choose_tag", "explain"]

# kinds that rank by build time
_TIME_ORDERED = frozenset({"glob", "regex", "newest"})


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


def choose(
    policy: Policy, tags: Iterable[TagInfo], current: str | None = None, now: datetime | None = None
) -> TagInfo | None:
    """The tag ``policy`` picks among ``tags`` (``current`` is the tag now in use), or ``None``."""
    judge = _judge(policy, current, now)
    descending = judge.descending
    best_key: Any = None
    best: list[tuple[TagInfo, Any]] = []
    rank_name = judge.rank_name
    if rank_name is not None and judge.back is None:
        # names alone decide: the same loop, ranking ``info.tag`` without a call per tag in between
        for info in tags:
            key = rank_name(info.tag)
            if type(key) is _Reject:
                continue
            if not best or (key < best_key if descending else key > best_key):
                best_key, best = key, [(info, key)]
            elif key == best_key:
                best.append((info, key))
    else:
        rank = judge.rank
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
    return max(best, key=lambda pair: judge.tie_key(pair[0].tag))[0]


def choose_tag(
    policy: Policy, tags: Iterable[str], current: str | None = None, now: datetime | None = None
) -> str | None:
    """``choose`` over bare tag names, without a ``TagInfo`` per tag where the policy reads names only.

    The answer is ``choose``'s over ``TagInfo(tag)`` for every tag (nothing known of any tag). A policy that
    needs metadata (build-time order, ``min_age``, ``platforms``) takes that road itself: its tags are
    rejected or ranked as unknown, exactly as ``choose`` would. Under ``semver`` the plain ``[v]X.Y.Z`` tags
    are ranked all at once (``_Judge._semver_plain``, a third of the CPU of one by one: an empty cache ranks
    every image's tags), the others one by one; tests/test_policy_paths.py holds the two to ``choose``.
    """
    judge = _judge(policy, current, now)
    rank_name = judge.rank_name
    if rank_name is None or judge.back is not None:
        chosen = choose(policy, [TagInfo(tag) for tag in tags], current, now)
        return chosen.tag if chosen is not None else None
    descending = judge.descending
    best_key: Any = None
    best: list[str] = []
    plain_best = judge.plain_best
    if plain_best is not None:
        # semver: the plain ``[v]X.Y.Z`` tags ranked all at once (_Judge._semver_plain), the rest one by one
        tags = tags if isinstance(tags, list) else list(tags)
        split = _plain_split(tags)
        if split is not None:
            plain, joined, others = split
            found = plain_best(plain, joined) if plain else (None, [])
            if found is not None:  # else a best plain tag is too long for the grammar: every tag one by one
                best_key, best = found
                tags = others
    for tag in tags:
        key = rank_name(tag)
        if type(key) is _Reject:
            continue
        if not best or (key < best_key if descending else key > best_key):
            best_key, best = key, [tag]
        elif key == best_key:
            best.append(tag)
    if not best:
        return None
    if len(best) == 1:
        return best[0]
    return max(best, key=judge.tie_key)


def explain(
    policy: Policy, tags: Iterable[TagInfo], current: str | None = None, now: datetime | None = None
) -> list[Verdict]:
    """One verdict per tag: the chosen tag first, then the other candidates best-first, then the rest."""
    judge = _judge(policy, current, now)
    candidates: list[tuple[TagInfo, Any]] = []
    rejected: list[tuple[TagInfo, _Reject]] = []
    rank_name = judge.rank_name if judge.back is None else None
    for info in tags:
        key = rank_name(info.tag) if rank_name is not None else judge.rank(info)
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
                candidates[start:end], key=lambda pair: judge.tie_key(pair[0].tag), reverse=True
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


# a plain version tag, ``[v]MAJOR.MINOR.PATCH``: inside the tag grammar unless longer than 128 characters,
# never "latest", no prerelease, no flavour; what most tags of a semver repository look like
_PLAIN_TAG = r"v?[0-9]+\.[0-9]+\.[0-9]+"
_ALL_PLAIN = re.compile(rf"{_PLAIN_TAG}(?:\n{_PLAIN_TAG})*\Z", re.ASCII)
_PLAIN_LINES = re.compile(rf"^{_PLAIN_TAG}$", re.ASCII | re.MULTILINE)
_OTHER_LINES = re.compile(rf"^(?!{_PLAIN_TAG}$).*$", re.ASCII | re.MULTILINE)
# int() of a short digit string costs more than a dict lookup; one with a leading zero ("01") takes int()
_SMALL_INTS = {str(number): number for number in range(1000)}


def _plain_split(tags: list[str]) -> tuple[list[str], str, list[str]] | None:
    """``(plain, plain joined by newlines, others)``: the plain version tags (``_PLAIN_TAG``) and the rest,
    each in their order, found by regular expressions over all the tags joined by newlines instead of one
    match per tag; ``None`` when there are no tags or one holds a newline."""
    joined = "\n".join(tags)
    if not tags or joined.count("\n") != len(tags) - 1:
        return None
    if _ALL_PLAIN.match(joined):
        return tags, joined, []
    plain, others = _PLAIN_LINES.findall(joined), _OTHER_LINES.findall(joined)
    if len(plain) + len(others) != len(tags):  # pragma: no cover - every line is one or the other
        return None
    return plain, "\n".join(plain), others


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


def _judge(policy: Policy, current: str | None, now: datetime | None) -> _Judge:
    """The ``_Judge`` of a call; one per (policy, current tag) is kept where the clock plays no part."""
    if policy.min_age is None:
        return _timeless_judge(policy, current)
    return _Judge(policy, current, now)


@functools.lru_cache(maxsize=1024)
def _timeless_judge(policy: Policy, current: str | None) -> _Judge:
    # without min_age the judge never reads ``now``: a scan of a thousand images with the same policy and
    # current tag builds its reasons and ranking closures once instead of a thousand times
    return _Judge(policy, current, None)


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
        self.back: Callable[[TagInfo], _Reject | None] | None = None
        self.rank_name: Callable[[str], Any] | None = None
        self.plain_best: Callable[[list[str], str], tuple[Any, list[str]] | None] | None = None
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
        """Set ``rank_name`` (by name, for kinds not ordered by build time) and ``back`` (the metadata
        checks, when the policy has any); return ``rank``, which ranks a ``TagInfo``."""
        policy, c = self.policy, self.compiled
        self.back = self._back_check if policy.min_age is not None or c.platforms else None
        if policy.kind in _TIME_ORDERED:
            self.rank_name = None
            return self._time_rank()
        if policy.kind == "semver" and c.filter is None:
            self.rank_name = self._semver_names()
            self.plain_best = self._semver_plain()
        else:
            self.rank_name = self._generic_names()
        return self._with_back(self.rank_name)

    def _generic_rank(self) -> Callable[[TagInfo], Any]:
        """The path of every kind, on a ``TagInfo`` (the reference ``_semver_rank`` is held to)."""
        if self.policy.kind in _TIME_ORDERED:
            return self._time_rank()
        return self._with_back(self._generic_names())

    def _semver_rank(self) -> Callable[[TagInfo], Any]:
        """``_semver_names`` on a ``TagInfo``, with the metadata checks."""
        return self._with_back(self._semver_names())

    def _with_back(self, names: Callable[[str], Any]) -> Callable[[TagInfo], Any]:
        """A name ranking applied to a ``TagInfo``, then the metadata checks (``min_age``, ``platforms``)."""
        back = self.back

        if back is None:
            def rank(info: TagInfo) -> Any:
                return names(info.tag)
        else:
            def rank(info: TagInfo) -> Any:
                key = names(info.tag)
                if type(key) is _Reject:
                    return key
                return back(info) or key

        return rank

    def _generic_names(self) -> Callable[[str], Any]:
        """The path every tag of a kind not ordered by build time takes, by name: the checks of the module
        docstring, in its order, then the kind's (``_with_back`` adds the metadata checks).

        Everything the loop needs is bound to a local name once: this function meets every tag of a
        repository (100,000 of them in bench/select.py), so each attribute lookup saved counts.
        """
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

        def rank(tag: str) -> Any:
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
            return ranker(tag, value)

        return rank

    def _time_rank(self) -> Callable[[TagInfo], Any]:
        """The path every tag of a kind ordered by build time takes: ``_generic_names``'s checks, then the
        pattern and the build time (which only a ``TagInfo`` carries), then the metadata checks.

        Everything the loop needs is bound to a local name once: this function meets every tag of a
        repository (100,000 of them in bench/select.py), so each attribute lookup saved counts.
        """
        c, policy = self.compiled, self.policy
        r_invalid, r_latest, r_filter = self.r_invalid, self.r_latest, self.r_filter
        valid_tag = _TAG_GRAMMAR.match
        exclude = c.exclude.match if c.exclude is not None else None
        exclude_reason = self._exclude_reason
        excluded_by_regex = self._regex_exclusion if c.exclude_regexes else None
        latest_ok = c.allows_latest or policy.kind == "digest"
        filter_ = c.filter.spans if c.filter is not None else None
        extract = c.extract
        ranker = self._by_time()
        back = self._back_check if policy.min_age is not None or c.platforms else None

        def rank(info: TagInfo) -> Any:
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

    def _semver_names(self) -> Callable[[str], Any]:
        """``_generic_names`` with ``_by_version``, specialised for semver without ``filter``: the kind that
        meets 100,000-tag repositories. tests/test_policy_paths.py holds the two to the same answers.

        It parses the version first and skips the work that cannot change the answer: a tag the version
        pattern matches is inside the tag grammar unless it is too long or has a ``+build``, and it is never
        ``latest``; the exclude globs are skipped for it when none can match a version-shaped tag.
        """
        c = self.compiled
        assert c.range_match is not None and c.filter is None
        in_range = c.range_match
        exclude_any = c.exclude.match if c.exclude is not None else None
        exclude = exclude_any if c.exclude_may_match_versions else None
        exclude_reason = self._exclude_reason
        excluded_by_regex = self._regex_exclusion if c.exclude_regexes else None
        valid_tag = _TAG_GRAMMAR.match
        version = VERSION_RE.match
        is_prerelease = PRERELEASE_START_RE.match
        flavour = self.flavour
        any_flavour = flavour is _ANY
        include_prerelease = self.include_prerelease
        r_invalid, r_latest, r_not_version = self.r_invalid, self.r_latest, self.r_not_version
        r_range, r_prerelease = self.r_range, self.r_prerelease
        flavour_reason = self._flavour_reason

        def rank(tag: str) -> Any:
            m = version(tag)
            if m is None:  # the common checks, then "not a version"; no range names latest
                if valid_tag(tag) is None:
                    return r_invalid
                if exclude_any is not None and exclude_any(tag):
                    return exclude_reason(tag)
                if excluded_by_regex is not None and (rejected := excluded_by_regex(tag)) is not None:
                    return rejected
                if len(tag) == 6 and tag.lower() == "latest":
                    return r_latest
                return r_not_version
            _v, major, minor, patch, suffix, build = m.groups()
            if build is not None or len(tag) > 128:  # the only ways a version-shaped tag leaves the grammar
                return r_invalid
            if exclude is not None and exclude(tag):
                return exclude_reason(tag)
            if excluded_by_regex is not None and (rejected := excluded_by_regex(tag)) is not None:
                return rejected
            # from here on _by_version, inlined
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
            return key

        return rank

    def _semver_plain(self) -> Callable[[list[str], str], tuple[Any, list[str]] | None] | None:
        """``_semver_names`` over a list of plain version tags at once (``_PLAIN_TAG``), for ``choose_tag``:
        ``(best key, the tags of that key)``, ``(None, [])`` when none is a candidate, ``None`` when the
        answer needs the tags one by one (a best tag longer than 128 characters, outside the grammar).

        Only the best candidate matters to ``choose_tag``, so the checks are made on the best key alone where
        they can be: a plain tag is a release with no flavour, never "latest", inside the grammar unless too
        long. The keys come from the numbers of all the tags at once (``plain_best(tags, "\\n".join(tags))``).
        There is none (``None``: the per-tag path) where a plain tag may fail by name: a metadata check, an
        exclude glob that can match a version, an exclusionList regex, a flavour the policy wants.
        """
        c = self.compiled
        if self.back is not None or c.exclude_may_match_versions or c.exclude_regexes:
            return None
        if not (self.flavour is None or self.flavour is _ANY):
            return None  # every plain tag is rejected for its flavour: the per-tag path words that
        assert c.range_match is not None
        in_range = c.range_match
        small = _SMALL_INTS.__getitem__

        def plain_best(plain: list[str], joined: str) -> tuple[Any, list[str]] | None:
            if "v" in joined:  # only ever a tag's first character
                joined = joined.replace("v", "")
            runs = joined.replace("\n", ".").split(".")  # three per tag, in order
            try:
                numbers = list(map(small, runs))
            except KeyError:
                numbers = list(map(int, runs))
            parts = iter(numbers)
            keys = list(zip(parts, parts, parts, repeat(RELEASE)))
            best = max(keys)
            if not in_range(best):
                inside = list(filter(in_range, keys))
                if not inside:
                    return None, []
                best = max(inside)
            if keys.count(best) == 1:
                tied = [plain[keys.index(best)]]
            else:
                tied = [tag for tag, key in zip(plain, keys, strict=True) if key == best]
            if max(map(len, tied)) > 128:
                return None
            return best, tied

        return plain_best

    def _back_check(self, info: TagInfo) -> _Reject | None:
        """Checks on metadata, made last: build age and platforms."""
        if self.policy.min_age is not None:
            rejected = self._age_check(info, self.policy.min_age, self.now)
            if rejected is not None:
                return rejected
        if self.compiled.platforms:
            return self._platform_check(info, self.compiled.platforms)
        return None

    def _kind_ranker(self) -> Callable[[str, str], Any]:
        """What a kind not ordered by build time says about a tag that passed the common checks: a rank
        key, or a ``_Reject``. Called as ``ranker(tag, value)``; ``value`` is the tag, or its ``extract``
        expansion."""
        kind = self.policy.kind
        assert kind not in _TIME_ORDERED
        if kind == "semver":
            return self._by_version()
        if kind == "alphabetical":
            return lambda tag, value: value
        if kind == "numerical":
            return self._by_number()
        return self._by_name()

    def _by_version(self) -> Callable[[str, str], Any]:
        """semver: a version with the wanted flavour, a prerelease only if admitted, inside the range."""
        assert self.compiled.range_match is not None
        in_range = self.compiled.range_match
        version = VERSION_RE.match
        is_prerelease = PRERELEASE_START_RE.match
        flavour = self.flavour
        any_flavour = flavour is _ANY
        include_prerelease = self.include_prerelease
        r_not_version, r_range, r_prerelease = self.r_not_version, self.r_range, self.r_prerelease
        flavour_reason = self._flavour_reason

        def by_version(tag: str, value: str) -> Any:
            m = version(value)
            if m is None:
                return r_not_version
            # a build suffix ("+abc") is ignored; only an extracted value can carry one (not in the grammar)
            _v, major, minor, patch, suffix, _build = m.groups()
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
            return key

        return by_version

    def _by_time(self) -> Callable[[TagInfo, str], Any]:
        """glob, regex, newest: the pattern must match the tag; then the build time ranks (unknown lowest)."""
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

    def _by_number(self) -> Callable[[str, str], Any]:
        """numerical: ``\\d+`` or ``\\d+.\\d+``, ranked as a number."""
        r_number = self.r_number

        def by_number(tag: str, value: str) -> Any:
            m = _NUMBER.match(value)
            if m is None:
                return r_number
            whole, fraction = m.groups()
            return (int(whole), (fraction or "").rstrip("0"))

        return by_number

    def _by_name(self) -> Callable[[str, str], Any]:
        """digest: only the tracked tag is a candidate."""
        target, r_digest = self.digest_target, self.r_digest

        def by_name(tag: str, value: str) -> Any:
            return 0 if target is not None and tag == target else r_digest

        return by_name

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

    def tie_key(self, tag: str) -> tuple[Any, ...]:
        """Among equal ranks: the current tag's spelling (semver, when the current tag is a version), then
        the lexically greatest: natural order (digit runs as numbers), then byte order."""
        value = self._value_of(tag)
        tail = (natural_key(value), value, natural_key(tag), tag)
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
