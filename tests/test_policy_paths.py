"""The two ways a tag is ranked (image_updater/policies/ranking.py) give the same answers, on generated input.

``_Judge._generic_rank`` is the path of every kind: the common checks (grammar, exclude globs, exclusionList
regexes, ``latest``), ``filter``/``extract``, the kind's own check, then age and platforms.
``_Judge._semver_rank`` is the same for semver without ``filter``, specialised because it meets
100,000-tag repositories (it parses the version first and skips checks that cannot fail). A single path
would cost semver 15-40 % more CPU (docs/benchmarks.md, select), so this differential test holds the two
together instead:

- the specialised semver path gives exactly the verdict or rank key of the generic path;
- a tag the common checks reject gets the same verdict (status and reason) under every kind;
- under ``semver``, an identity ``filter``/``extract`` changes no verdict of ``explain`` (with a filter,
  semver takes the generic path; without, the specialised one);
- ranking bare names (``choose_tag``, and ``choose``/``explain`` of a policy that reads names only) gives
  the answers of ranking ``TagInfo`` objects, for every kind, ``filter``/``extract`` and ``desc`` included;
- the regression the old fast path had: ``1.2.3+abc`` is an invalid tag even when an exclude glob or an
  exclusionList regex matches it (the fast path called it excluded).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from image_updater.policies import Policy, Status, TagInfo, parse_policy
from image_updater.policies.ranking import _Judge, _Reject

NOW = datetime(2024, 6, 1, tzinfo=UTC)

FRONT = {Status.INVALID, Status.EXCLUDED}

_versions = st.from_regex(
    r"v?[0-9]{1,3}(\.[0-9]{1,3}){0,2}(-(rc|rc\.[0-9]|alpha|beta\.2|alpine|slim-bookworm|perl|[0-9]))?"
    r"(\+[a-z0-9]{1,3})?",
    fullmatch=True,
)
_grammar = st.text(alphabet="abcLATESTv019._-+/: ", min_size=0, max_size=12)
_special = st.sampled_from(
    [
        "latest", "LATEST", "Latest", "latest-1", "sha256-abc.sig", "sha256-1.2.3.att", "main-abc123",
        "1" * 129, "1." + "1" * 127, "1.2.3+abc", "v1.2+x", ".1.2", "-1.2", "_1.2", "1.2.3-", "",
    ]
)
tags = st.one_of(_versions, _grammar, _special)

_excludes = st.sampled_from([(), ("1.*",), ("*-rc*",), ("v*",), ("*+*",), ("[0-9]*",), ("latest",), ("*",)])
_exclusion_lists = st.sampled_from([(), ("^v",), ("rc",), (r"\+",), ("^1",)])
_flavours = st.sampled_from([None, "any", "none", "alpine"])
_prereleases = st.sampled_from([None, True, False])
_ranges = st.sampled_from(["semver:*", "semver:>=1.0.0-0", "semver:~1.2", "semver:<3", "semver:>=0.0.0-0 <2"])
# every kind but digest (which admits "latest": its latest verdict differs by design)
_kinds = ["alphabetical", "numerical", "numerical:desc", "glob:*", "regex:.", "newest", "alphabetical:desc"]


def _policy(
    text: str, exclude: tuple[str, ...], exclusion_list: tuple[str, ...], **modifiers: object
) -> Policy:
    policy = parse_policy(text, {"exclude": list(exclude), **modifiers})
    return dataclasses.replace(policy, exclude_regex=exclusion_list) if exclusion_list else policy


def _verdict(policy: Policy, tag: str, current: str | None = None) -> tuple[Status, str]:
    (verdict,) = policy.explain([TagInfo(tag)], current=current)
    return verdict.status, verdict.reason


def _outcome(result: Any) -> Any:
    return (result.status, result.reason) if isinstance(result, _Reject) else result


_created = st.sampled_from(
    [None, NOW - timedelta(days=3), NOW - timedelta(minutes=5), NOW + timedelta(hours=1)]
)
_platform_sets = st.sampled_from(
    [None, frozenset(), frozenset({"linux/amd64"}), frozenset({"linux/arm64/v8", "linux/amd64"})]
)
_min_ages = st.sampled_from([None, "1h", "2d"])
_wanted_platforms = st.sampled_from([None, "linux/amd64", "linux/amd64,linux/arm64"])


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.tuples(tags, _created, _platform_sets), max_size=10),
    st.one_of(st.none(), tags),
    _excludes,
    _exclusion_lists,
    _ranges,
    _flavours,
    _prereleases,
    _min_ages,
    _wanted_platforms,
)
def test_semver_fast_path_answers_as_the_generic_path(
    generated: list[tuple[str, datetime | None, frozenset[str] | None]],
    current: str | None,
    exclude: tuple[str, ...],
    exclusion_list: tuple[str, ...],
    semver: str,
    flavour: str | None,
    prerelease: bool | None,
    min_age: str | None,
    platforms: str | None,
) -> None:
    policy = _policy(
        semver, exclude, exclusion_list,
        flavour=flavour, prerelease=prerelease, min_age=min_age, platforms=platforms,
    )
    judge = _Judge(policy, current, NOW)
    fast, generic = judge._semver_rank(), judge._generic_rank()
    # the path choose(), choose_tag() and explain() take
    assert judge.rank_name is not None
    assert judge.rank_name.__qualname__ == judge._semver_names().__qualname__
    for tag, created, have in generated:
        info = TagInfo(tag, created=created, platforms=have)
        assert _outcome(fast(info)) == _outcome(generic(info)), (tag, str(policy), current)


@settings(max_examples=400, deadline=None)
@given(tags, _excludes, _exclusion_lists, _ranges, _flavours, _prereleases)
def test_common_checks_give_every_kind_the_same_verdict(
    tag: str,
    exclude: tuple[str, ...],
    exclusion_list: tuple[str, ...],
    semver: str,
    flavour: str | None,
    prerelease: bool | None,
) -> None:
    policies = [_policy(semver, exclude, exclusion_list, flavour=flavour, prerelease=prerelease)]
    policies += [_policy(kind, exclude, exclusion_list) for kind in _kinds]
    verdicts = [_verdict(policy, tag, current="1.2.0") for policy in policies]
    front = [v for v in verdicts if v[0] in FRONT]
    if front:
        named = list(zip(map(str, policies), verdicts, strict=True))
        assert verdicts == [front[0]] * len(verdicts), (tag, named)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(tags, max_size=8), st.one_of(st.none(), tags), _excludes, _exclusion_lists, _ranges, _flavours,
    _prereleases,
)
def test_identity_filter_changes_no_semver_verdict(
    tag_list: list[str],
    current: str | None,
    exclude: tuple[str, ...],
    exclusion_list: tuple[str, ...],
    semver: str,
    flavour: str | None,
    prerelease: bool | None,
) -> None:
    items = [TagInfo(t) for t in tag_list]
    plain = _policy(semver, exclude, exclusion_list, flavour=flavour, prerelease=prerelease)
    identity = _policy(
        semver, exclude, exclusion_list, flavour=flavour, prerelease=prerelease, filter="^(.*)$", extract="$1"
    )
    assert identity.explain(items, current=current) == plain.explain(items, current=current)


def test_a_build_suffix_is_invalid_even_where_an_exclude_matches() -> None:
    for modifiers, exclusion_list in (({"exclude": ["1.*"]}, ()), ({}, (r"\+",)), ({}, ())):
        for text in ("semver:*", "alphabetical", "glob:*"):
            policy = parse_policy(text, modifiers)
            if exclusion_list:
                policy = dataclasses.replace(policy, exclude_regex=exclusion_list)
            status, reason = _verdict(policy, "1.2.3+abc")
            assert status is Status.INVALID, (text, modifiers, exclusion_list, reason)
            assert reason.startswith("not a valid tag")


def test_an_extracted_build_suffix_is_ignored_in_order() -> None:
    # "+" never reaches the version parser from a tag, but an extracted value may carry one
    policy = parse_policy("semver:*", {"filter": r"^(?P<v>[0-9.]+)_(?P<b>[a-z]+)$", "extract": "${v}+${b}"})
    chosen = policy.choose([TagInfo("1.2.3_abc"), TagInfo("1.2.4_aaa"), TagInfo("1.2.3_zzz")])
    assert chosen is not None and chosen.tag == "1.2.4_aaa"


_name_policies = st.sampled_from(
    [
        ("semver:*", {}), ("semver:~1.2", {"flavour": "any"}), ("semver:>=1.0.0-0", {"prerelease": True}),
        ("semver:<3", {"flavour": "alpine"}), ("semver:*", {"filter": "^v?(?P<v>.*)$", "extract": "$v"}),
        ("alphabetical", {}), ("alphabetical:desc", {"exclude": ["*-rc*"]}), ("numerical", {}),
        ("numerical:desc", {}), ("numerical", {"filter": r"^build-(\d+)$", "extract": "$1"}), ("digest", {}),
        ("digest:latest", {}),
        # these need metadata: choose_tag takes choose()'s road, every tag's build time unknown
        ("glob:1.*", {}), ("newest", {}), ("semver:*", {"min_age": "1h"}),
        ("semver:*", {"platforms": "linux/amd64"}),
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(tags, max_size=12), st.one_of(st.none(), tags), _name_policies, _exclusion_lists)
def test_ranking_names_answers_as_ranking_tag_infos(
    tag_list: list[str],
    current: str | None,
    named: tuple[str, dict[str, object]],
    exclusion_list: tuple[str, ...],
) -> None:
    text, modifiers = named
    policy = parse_policy(text, modifiers)  # the default exclude globs, or the entry's own
    if exclusion_list:
        policy = dataclasses.replace(policy, exclude_regex=exclusion_list)
    items = [TagInfo(t) for t in tag_list]
    chosen = policy.choose(items, current=current, now=NOW)
    assert policy.choose_tag(tag_list, current=current, now=NOW) == (chosen.tag if chosen else None)
    judge = _Judge(policy, current, NOW)
    if judge.rank_name is not None and judge.back is None:
        for info in items:
            assert _outcome(judge.rank_name(info.tag)) == _outcome(judge.rank(info)), (info.tag, str(policy))
    # explain's first verdict is choose's answer, through either road
    verdicts = policy.explain(items, current=current, now=NOW)
    first = verdicts[0] if verdicts and verdicts[0].status is Status.CHOSEN else None
    assert (first.tag if first else None) == (chosen.tag if chosen else None)


def test_a_min_age_policy_reads_the_clock_of_each_call() -> None:
    # judges are kept per (policy, current tag) only where min_age plays no part: `now` must count here
    policy = parse_policy("semver:*", {"min_age": "1h"})
    items = [TagInfo("1.0.0", created=NOW - timedelta(hours=2)), TagInfo("1.1.0", created=NOW)]
    later = NOW + timedelta(hours=1)
    assert [policy.choose(items, now=when) for when in (NOW, later)] == [items[0], items[1]]
    assert policy.choose_tag(["1.0.0", "1.1.0"], now=NOW) is None  # build times unknown: too young


def test_the_kept_judge_follows_the_current_tag() -> None:
    policy = parse_policy("semver:*")
    tags_ = ["1.2.0", "1.3.0-alpine", "1.3.0"]
    assert [policy.choose_tag(tags_, current=c) for c in ("1.0.0-alpine", "1.0.0", "1.0.0-alpine")] == [
        "1.3.0-alpine", "1.3.0", "1.3.0-alpine"
    ]


# plain [v]X.Y.Z tags (the ones choose_tag ranks all at once, ranking._Judge._semver_plain) among others:
# leading zeros, numbers past the small-int table, equal keys in two spellings, a plain tag too long for the
# grammar, newlines inside a tag, the empty tag
_plain = st.from_regex(r"v?(0|1|2|01|10|999|1000|12345)\.(0|1|00|3|1000)\.(0|1|01|7|1234)", fullmatch=True)
_plain_specials = st.sampled_from(
    ["1." + "1" * 125 + ".0", "2.0." + "9" * 130, "1.0.0\n2.0.0", "\n", "", "1.2.3\n", "v", "1.2.3-alpine",
     "1.2.3-rc.1", "latest", "1.2", "9.9.9.9"]
)
_plain_policies = st.sampled_from(
    [("semver:*", {}), ("semver:^1", {}), ("semver:<2", {"flavour": "any"}), ("semver:>=1.0.0-0", {}),
     ("semver:~1.0", {"prerelease": True}), ("semver:>=2 <1000", {}), ("semver:!=1.0.0", {}),
     ("semver:<0", {}), ("semver:1.0.0 || 2.0.0", {}), ("semver:*", {"flavour": "alpine"}),
     ("semver:*", {"flavour": "none"}), ("semver:*", {"exclude": ["1.*"]})]
)


@settings(max_examples=600, deadline=None)
@given(
    st.lists(st.one_of(_plain, _plain, _plain, _plain_specials, tags), max_size=30),
    st.one_of(st.none(), _plain, tags),
    _plain_policies,
    _exclusion_lists,
)
def test_ranking_plain_versions_at_once_answers_as_one_by_one(
    tag_list: list[str],
    current: str | None,
    named: tuple[str, dict[str, object]],
    exclusion_list: tuple[str, ...],
) -> None:
    text, modifiers = named
    policy = parse_policy(text, modifiers)
    if exclusion_list:
        policy = dataclasses.replace(policy, exclude_regex=exclusion_list)
    chosen = policy.choose([TagInfo(t) for t in tag_list], current=current, now=NOW)  # one tag at a time
    expected = chosen.tag if chosen else None
    assert policy.choose_tag(tag_list, current=current, now=NOW) == expected
    assert policy.choose_tag(iter(tag_list), current=current, now=NOW) == expected
    assert policy.choose_tag(list(reversed(tag_list)), current=current, now=NOW) == expected


def test_plain_versions_are_ranked_at_once_where_the_policy_allows() -> None:
    # the path the test above exercises is the one a plain semver policy takes, and only that one
    assert _Judge(parse_policy("semver:^1"), "1.0.0", None).plain_best is not None
    assert _Judge(parse_policy("semver:^1"), "v1.0.0", None).plain_best is not None
    assert _Judge(parse_policy("semver:*", {"flavour": "any"}), None, None).plain_best is not None
    for policy, current in (
        (parse_policy("semver:^1"), "1.0.0-alpine"),  # plain tags are the wrong flavour
        (parse_policy("semver:^1", {"exclude": ["1.*"]}), "1.0.0"),
        (parse_policy("semver:^1", {"min_age": "1h"}), "1.0.0"),
        (parse_policy("semver:^1", {"filter": "^(.*)$"}), "1.0.0"),
        (parse_policy("alphabetical"), "1.0.0"),
    ):
        assert _Judge(policy, current, NOW).plain_best is None, str(policy)
    policy = parse_policy("semver:^1")
    tags_ = ["1.2.3", "v1.2.3", "01.2.3", "1.2.03", "1.1.9", "2.0.0"]
    assert policy.choose_tag(tags_, current="1.0.0") == "1.2.3"
    assert policy.choose_tag(tags_, current="v1.0.0") == "v1.2.3"
    assert policy.choose_tag(["1.0.0", "1.0." + "1" * 127]) == "1.0.0"  # 130 characters: not a valid tag
