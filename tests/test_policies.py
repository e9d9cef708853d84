"""Tag policies: parsing and canonical form, every kind's choice, modifiers, explain(), and properties.

The choice tables restate what Flux v1, Flux v2 and Argo CD Image Updater users try (v-prefixed tags,
1.10 vs 1.9, prereleases and ``-0`` ranges, flavours, cosign tags, ``latest``, invalid tags) and are kept
sorted by policy. Hypothesis checks that the chosen tag always qualifies and that no candidate outranks it.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from image_updater.errors import ConfigError, InvalidPolicy
from image_updater.policies import (
    DEFAULT_EXCLUDE,
    Policy,
    Status,
    TagInfo,
    format_duration,
    normalise_platform,
    parse_duration,
    parse_policy,
)
from image_updater.versions import parse_version

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def at(hours_ago: float) -> datetime:
    return NOW - timedelta(hours=hours_ago)


def infos(*tags: str | tuple[str, datetime | None]) -> list[TagInfo]:
    out = []
    for t in tags:
        out.append(TagInfo(t) if isinstance(t, str) else TagInfo(t[0], created=t[1]))
    return out


# ----------------------------------------------------------------------------------------------- parsing

# (text, modifiers, kind, argument, canonical str)
PARSED: list[tuple[str, dict[str, Any], str, str, str]] = sorted(
    [
        ("  semver: ~1.2  ", {}, "semver", "~1.2", "semver:~1.2"),
        ("ALPHABETICAL", {}, "alphabetical", "asc", "alphabetical:asc"),
        ("SemVer:^1", {}, "semver", "^1", "semver:^1"),
        ("alphabetical", {}, "alphabetical", "asc", "alphabetical:asc"),
        ("alphabetical:DESC", {}, "alphabetical", "desc", "alphabetical:desc"),
        ("digest", {}, "digest", "", "digest"),
        ("digest:latest", {}, "digest", "latest", "digest:latest"),
        ("glob:*", {}, "glob", "*", "glob:*"),
        ("glob:main-*", {}, "glob", "main-*", "glob:main-*"),
        ("newest", {}, "newest", "", "newest"),
        ("numerical", {}, "numerical", "asc", "numerical:asc"),
        ("numerical:desc", {}, "numerical", "desc", "numerical:desc"),
        ("regex:^v\\d+$", {}, "regex", "^v\\d+$", "regex:^v\\d+$"),
        ("regexp:^pr-", {}, "regex", "^pr-", "regex:^pr-"),
        ("semver:>= 1.2, < 2", {}, "semver", ">=1.2 <2", "semver:>=1.2 <2"),
        ("semver:>=1.0.0-0", {}, "semver", ">=1.0.0-0", "semver:>=1.0.0-0"),
        ("semver:1.x||2.x", {}, "semver", "1.x || 2.x", "semver:1.x || 2.x"),
    ]
)


@pytest.mark.parametrize(("text", "modifiers", "kind", "argument", "canonical"), PARSED)
def test_parse_policy(text: str, modifiers: dict[str, Any], kind: str, argument: str, canonical: str) -> None:
    policy = parse_policy(text, modifiers)
    assert (policy.kind, policy.argument) == (kind, argument)
    assert str(policy) == canonical
    # the canonical form parses to the same value: it is what reports and logs show
    assert parse_policy(canonical, modifiers) == policy


@pytest.mark.parametrize(
    ("text", "modifiers", "message"),
    sorted(
        [
            ("", {}, "empty policy"),
            ("   ", {}, "empty policy"),
            ("alphabetical:up", {}, "'asc' or 'desc'"),
            ("digest:bad tag", {}, "'bad tag' is not a valid tag"),
            ("glob:", {}, "glob needs a pattern"),
            ("glob:[abc", {}, "unclosed '['"),
            ("glob:a\\", {}, "trailing backslash"),
            ("glob:[z-a]", {}, "invalid glob '[z-a]'"),
            ("latest", {}, "unknown kind 'latest'"),
            ("newest:foo", {}, "newest takes no argument"),
            ("numerical:1", {}, "'asc' or 'desc'"),
            ("regex:", {}, "regex needs a pattern"),
            ("regex:(unclosed", {}, "invalid regex '(unclosed'"),
            ("regexp:[", {}, "invalid regex '['"),
            ("semver", {}, "semver needs a range"),
            ("semver:", {}, "semver needs a range"),
            ("semver:>=", {}, "dangling operator '>='"),
            ("semver:latest", {}, "cannot parse 'latest'"),
            ("semver:~1.2 ||", {}, "empty alternative"),
            ("semverr:1", {}, "unknown kind 'semverr'"),
            ("semver:*", {"bogus": "1"}, "unknown policy modifier 'bogus'"),
            ("semver:*", {"exclude": "[x"}, "invalid exclude glob '[x': unclosed '['"),
            ("semver:*", {"exclude": 5}, "invalid exclude 5"),
            ("semver:*", {"exclude": ["ok", 3]}, "3 is not a string"),
            ("semver:*", {"extract": "$1"}, "extract needs a filter"),
            ("semver:*", {"filter": "("}, "invalid filter '('"),
            ("semver:*", {"filter": ""}, "invalid filter ''"),
            ("semver:*", {"filter": "^(a)", "extract": "$2"}, "filter has no group 2"),
            ("semver:*", {"filter": "^(?P<v>.*)", "extract": "${ver}"}, "no group named 'ver'"),
            ("semver:*", {"flavour": "has space"}, "invalid flavour 'has space'"),
            ("semver:*", {"flavour": 3}, "invalid flavour 3"),
            ("semver:*", {"min-age": "-1h"}, "invalid min_age '-1h'"),
            ("semver:*", {"min_age": "soon"}, "invalid min_age 'soon'"),
            ("semver:*", {"min_age": timedelta(hours=-1)}, "negative"),
            ("semver:*", {"min_age": [1]}, "invalid min_age [1]"),
            ("semver:*", {"pin-digest": "maybe"}, "invalid pin-digest 'maybe'"),
            ("semver:*", {"platforms": "linux"}, "invalid platform 'linux'"),
            ("semver:*", {"platforms": {"a": 1}}, "invalid platforms"),
            ("semver:*", {"prerelease": "sometimes"}, "invalid prerelease 'sometimes'"),
            ("semver:*", {"min_age": "1h", "min-age": "2h"}, "given twice"),
        ],
        key=repr,
    ),
)
def test_invalid_policies(text: str, modifiers: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidPolicy) as info:
        parse_policy(text, modifiers)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConfigError)


def test_parse_policy_rejects_non_strings() -> None:
    with pytest.raises(InvalidPolicy, match="expected a string"):
        parse_policy(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("modifiers", "field", "value"),
    sorted(
        [
            ({"exclude": "*-debug, *-debug"}, "exclude", (*DEFAULT_EXCLUDE, "*-debug")),
            ({"exclude": ["sha256-*.sig", "x*"]}, "exclude", (*DEFAULT_EXCLUDE, "x*")),
            ({"exclude": []}, "exclude", DEFAULT_EXCLUDE),
            ({"exclude": None}, "exclude", DEFAULT_EXCLUDE),
            ({"flavor": "alpine"}, "flavour", "alpine"),
            ({"flavour": "-alpine"}, "flavour", "alpine"),
            ({"flavour": "ANY"}, "flavour", "any"),
            ({"flavour": ""}, "flavour", "none"),
            ({"flavour": "None"}, "flavour", "none"),
            ({"min-age": "1h30m"}, "min_age", timedelta(minutes=90)),
            ({"min_age": 90}, "min_age", timedelta(seconds=90)),
            ({"min_age": timedelta(days=1)}, "min_age", timedelta(days=1)),
            ({"pin-digest": "true"}, "pin_digest", True),
            ({"pin_digest": False}, "pin_digest", False),
            ({"platform": "linux/amd64"}, "platforms", ("linux/amd64",)),
            ({"platforms": "linux/arm64/v8, linux/amd64"}, "platforms", ("linux/amd64", "linux/arm64")),
            ({"platforms": ["linux/arm", "linux/arm/v7"]}, "platforms", ("linux/arm/v7",)),
            ({"prerelease": "yes"}, "prerelease", True),
            ({"prerelease": "false"}, "prerelease", False),
            ({"prerelease": True}, "prerelease", True),
        ],
        key=repr,
    ),
)
def test_modifiers(modifiers: dict[str, Any], field: str, value: Any) -> None:
    assert getattr(parse_policy("semver:*", modifiers), field) == value


def test_policy_is_a_hashable_value() -> None:
    a = parse_policy("semver: ~1.2", {"exclude": "*-debug", "min-age": "1h"})
    b = parse_policy("semver:~1.2", {"exclude": ["*-debug"], "min_age": 3600})
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert a != parse_policy("semver:~1.2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.kind = "glob"  # type: ignore[misc]


def test_direct_construction_is_validated() -> None:
    assert str(Policy("semver", "~1.2")) == "semver:~1.2"
    with pytest.raises(InvalidPolicy, match="unclosed"):
        Policy("glob", "[a")
    with pytest.raises(InvalidPolicy, match="unknown policy kind"):
        Policy("latest")  # type: ignore[arg-type]
    with pytest.raises(InvalidPolicy, match="invalid filter"):
        dataclasses.replace(parse_policy("semver:*"), filter="(?P<x>")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "alphabetical", "argument": "up"}, "'asc' or 'desc'"),
        ({"kind": "digest", "argument": "a b"}, "not a valid tag"),
        ({"kind": "glob"}, "empty pattern"),
        ({"kind": "newest", "argument": "x"}, "newest takes no argument"),
        ({"kind": "regex"}, "empty regex"),
        ({"kind": "semver", "argument": "*", "exclude": ("",)}, "invalid exclude ''"),
        ({"kind": "semver", "argument": "*", "extract": ""}, "extract needs a filter"),
        ({"kind": "semver", "argument": "*", "filter": "x", "extract": ""}, "invalid extract ''"),
        ({"kind": "semver", "argument": "*", "filter": ""}, "invalid filter ''"),
        ({"kind": "semver", "argument": "*", "min_age": timedelta(seconds=-1)}, "negative"),
        ({"kind": "semver", "argument": "*", "platforms": ("linux",)}, "invalid platforms"),
        ({"kind": "semver", "argument": "~1.x.y"}, "cannot parse '~1.x.y'"),
    ],
    ids=repr,
)
def test_direct_construction_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidPolicy, match=message):
        Policy(**fields)


@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        ("[]a]x", ["]x", "ax"], ["bx"]),
        ("[!]a]x", ["bx"], ["]x", "ax"]),
        ("[^0-9]*", ["a1"], ["1a"]),
        ("a\\*", ["a*"], ["ab"]),
        ("a?c", ["abc"], ["ac", "abbc"]),
        ("*-[0-9][0-9]", ["x-10"], ["x-1", "x-100"]),
        ("v1.*", ["v1.2"], ["v1x2", "v1"]),
        ("[&&]|~", ["&|~"], ["a|~"]),
    ],
)
def test_glob_syntax(glob: str, matches: list[str], misses: list[str]) -> None:
    from image_updater.policies.patterns import _compile_glob

    pattern = _compile_glob(glob, "glob")
    for text in matches:
        assert pattern.match(text), text
    for text in misses:
        assert not pattern.match(text), text


def test_long_version_shaped_tags_are_invalid() -> None:
    long_tag = "1.2.3-" + "a" * 123
    assert len(long_tag) == 129
    verdicts = parse_policy("semver:*", {"flavour": "any"}).explain(infos(long_tag, "1.0.0"))
    assert (verdicts[1].tag, verdicts[1].status) == (long_tag, Status.INVALID)


def test_non_string_inputs() -> None:
    with pytest.raises(InvalidPolicy, match="invalid policy modifier 1"):
        parse_policy("semver:*", {1: "x"})  # type: ignore[dict-item]
    # one grammar for settings and policies (image_updater.durations): a number is seconds, a bool is not
    assert parse_duration(5) == timedelta(seconds=5)
    with pytest.raises(ConfigError, match="expected a duration"):
        parse_duration(True)


@pytest.mark.parametrize(
    ("text", "modifiers", "build_time", "platforms", "digest"),
    sorted(
        [
            ("alphabetical", {}, False, False, False),
            ("digest", {}, False, False, True),
            ("glob:*", {}, True, False, False),
            ("newest", {}, True, False, False),
            ("numerical", {"platforms": "linux/amd64"}, False, True, False),
            ("regex:.", {}, True, False, False),
            ("semver:*", {"min_age": "1d"}, True, False, False),
            ("semver:*", {"pin_digest": True}, False, False, True),
            ("semver:*", {}, False, False, False),
        ],
        key=repr,
    ),
)
def test_needs(text: str, modifiers: dict[str, Any], build_time: bool, platforms: bool, digest: bool) -> None:
    policy = parse_policy(text, modifiers)
    needs = (policy.needs_build_time, policy.needs_platforms, policy.needs_digest)
    assert needs == (build_time, platforms, digest)


@pytest.mark.parametrize(
    ("text", "seconds"),
    sorted(
        [
            ("0", 0), ("1.5h", 5400), ("1h30m", 5400), ("1w", 604800), ("1w2d", 777600), ("30", 30),
            ("5m", 300), ("7d", 604800), ("90s", 90), (" 2H ", 7200), ("30m1h", 5400),
        ]
    ),
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text", sorted(["", "-1h", "1h1h", "1y", "h", "1 h", "1.h", "soon", "\uff11\uff12", "1h-"])
)
def test_parse_duration_invalid(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (45, "45s"), (90, "1m30s"), (7200, "2h"), (86400, "1d"), (93784, "1d2h")]
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(
    ("platform", "normal"),
    [
        ("Linux/AMD64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/x86_64", "linux/amd64"),
        ("windows/amd64", "windows/amd64"),
    ],
)
def test_normalise_platform(platform: str, normal: str) -> None:
    assert normalise_platform(platform) == normal


# ------------------------------------------------------------------------------------------------ choices

# (policy, modifiers, tags, current, chosen)
CHOICES: list[tuple[str, dict[str, Any], list[TagInfo], str | None, str | None]] = [
    # -- alphabetical: byte order, asc picks the max, desc the min
    ("alphabetical", {}, infos("2024-01-02", "2024-01-10", "2023-12-31"), None, "2024-01-10"),
    ("alphabetical", {}, infos("a", "B", "_x"), None, "a"),
    ("alphabetical", {}, infos("main-1", "latest", "sha256-" + "a" * 64 + ".sig"), None, "main-1"),
    ("alphabetical", {"filter": "^main-"}, infos("main-a", "main-b", "zzz"), None, "main-b"),
    ("alphabetical:desc", {}, infos("b", "a", "c"), None, "a"),
    ("alphabetical:desc", {"filter": "^(?P<ts>\\d+)-", "extract": "$ts"}, infos("2-x", "1-z", "3-a"), None,
     "1-z"),
    # -- digest: the one tag, by default the current one; latest is fine when it is the tracked tag
    ("digest", {}, infos("1.0", "latest", "1.1"), "latest", "latest"),
    ("digest", {}, infos("1.0", "1.1"), "1.0", "1.0"),
    ("digest", {}, infos("1.0", "1.1"), None, None),
    ("digest", {}, infos("1.0"), "2.0", None),
    ("digest:stable", {}, infos("1.0", "stable"), "1.0", "stable"),
    # -- glob: full match; newest build time; unknown build time below any known; ties by natural order
    ("glob:*", {}, infos(("a", at(5)), ("b", at(1)), ("c", None)), None, "b"),
    ("glob:*", {}, infos("dev-9", "dev-10", "dev-1"), None, "dev-10"),
    ("glob:*", {}, infos(("dev-9", at(1)), ("dev-10", at(1)), ("dev-8", at(2))), None, "dev-10"),
    ("glob:*", {}, infos(("latest", at(0)), ("v1", at(3))), None, "v1"),
    ("glob:*", {}, infos(("sha256-" + "b" * 64 + ".att", at(0)), ("v1", at(3))), None, "v1"),
    ("glob:1.*", {}, infos(("1.2", at(2)), ("x1.3", at(1)), ("1.1", at(3))), None, "1.2"),
    ("glob:[!m]*", {}, infos(("main-1", at(1)), ("dev-1", at(2))), None, "dev-1"),
    ("glob:latest*", {}, infos(("latest", at(2)), ("latest-arm", at(1))), None, "latest-arm"),
    ("glob:main-*", {}, infos(("main-abc", at(2)), ("main-def", at(1)), ("pr-1", at(0))), None, "main-def"),
    ("glob:main-*", {}, infos(("xmain-1", at(1)), ("main-", at(2))), None, "main-"),
    ("glob:v?.[0-9]", {}, infos(("v1.0", at(3)), ("v2.1", at(2)), ("v10.1", at(1)), ("v3.a", at(0))), None,
     "v2.1"),
    # -- newest: build time only
    ("newest", {}, infos(("a", at(2)), ("b", at(3))), None, "a"),
    ("newest", {}, infos(("a", None), ("b", None)), None, "b"),
    ("newest", {}, infos(("a", None), ("b", at(100))), None, "b"),
    ("newest", {}, infos("LATEST", "Latest"), None, None),
    # -- numerical: \d+(\.\d+)? only, compared as numbers
    ("numerical", {}, infos("1.10", "1.9", "1.2.3", "x"), None, "1.9"),
    ("numerical", {}, infos("1611840548", "999999999", "20"), None, "1611840548"),
    ("numerical", {}, infos("9", "10", "010"), None, "10"),
    (
        "numerical",
        {"filter": "^main-[a-f0-9]+-(?P<ts>[0-9]+)", "extract": "$ts"},
        infos("main-abc1234-1611840548", "main-def5678-1611840600", "pr-1-1711840600", "main-zzz-1"),
        None,
        "main-def5678-1611840600",
    ),
    ("numerical", {"filter": "^build-(\\d+)$", "extract": "$1"}, infos("build-9", "build-10"), None,
     "build-10"),
    ("numerical:desc", {}, infos("3", "1", "2", "0.5"), None, "0.5"),
    # -- regex: unanchored search, newest build time
    ("regex:^pr-\\d+$", {}, infos(("pr-1", at(3)), ("pr-2", at(4)), ("pr-3x", at(0))), None, "pr-1"),
    ("regex:rc", {}, infos(("1.0-rc1", at(2)), ("1.0", at(1)), ("rc-2", at(3))), None, "1.0-rc1"),
    ("regexp:latest|stable", {}, infos(("latest", at(1)), ("stable", at(2))), None, "latest"),
    # -- semver: order by version, never by spelling or time
    ("semver:*", {}, infos("1.9", "1.10", "1.2"), None, "1.10"),
    ("semver:*", {}, infos("1.2.3", "1.2.3-alpine", "1.3.0-alpine"), "1.2.0", "1.2.3"),
    ("semver:*", {}, infos("1.2.3-rc.1", "1.2.2"), "1.2.3-rc.1", "1.2.2"),
    ("semver:*", {}, infos("1.27", "1.27-alpine", "1.27-perl", "1.26-perl"), "1.16-perl", "1.27-perl"),
    ("semver:*", {}, infos("1.27", "1.27-alpine"), "1.16-perl", None),
    ("semver:*", {}, infos("1.27", "1.27-alpine"), "alpine", "1.27"),
    ("semver:*", {}, infos("2", "10", "9.9.9"), None, "10"),
    ("semver:*", {}, infos("3.12-slim-bookworm", "3.13-slim-bookworm", "3.13-bookworm"), "3.11-slim-bookworm",
     "3.13-slim-bookworm"),
    ("semver:*", {}, infos("latest", "stable", "main"), None, None),
    ("semver:*", {}, infos("v1.2.3", "1.2.4", "v1.2.5-beta"), "v1.0.0", "1.2.4"),
    ("semver:*", {"flavour": "alpine"}, infos("1.27", "1.27-alpine", "1.28-perl"), "1.0", "1.27-alpine"),
    ("semver:*", {"flavour": "any"}, infos("1.27-perl", "1.28-alpine", "1.26"), "1.0", "1.28-alpine"),
    ("semver:*", {"flavour": "any"}, infos("1.28-alpine", "1.28", "1.28-perl"), "1.0-perl", "1.28-perl"),
    ("semver:*", {"flavour": "none"}, infos("1.27", "1.28-perl"), "1.0-perl", "1.27"),
    ("semver:*", {"prerelease": True}, infos("1.2.3-rc.1", "1.2.2"), None, "1.2.3-rc.1"),
    ("semver:*", {"prerelease": True}, infos("1.0.0-rc.2", "1.0.0-rc.10", "1.0.0-rc.9"), None, "1.0.0-rc.10"),
    ("semver:*", {"prerelease": True}, infos("1.0.0-rc9", "1.0.0-rc10"), None, "1.0.0-rc10"),
    ("semver:*", {"prerelease": True}, infos("1.0.0-rc.1", "1.0.0"), "1.0.0-rc.1", "1.0.0"),
    ("semver:1.2.x", {}, infos("1.2.0", "1.2.0-rc.1", "1.3.0"), None, "1.2.0"),
    ("semver:<=1.2", {}, infos("1.2.9", "1.3.0", "1.1"), None, "1.2.9"),
    ("semver:>1.2", {}, infos("1.2.9", "1.3.0", "1.2.10"), None, "1.3.0"),
    ("semver:>=1.0.0", {}, infos("1.0.0", "2.0.0-rc.1", "sha256-" + "c" * 64 + ".sig"), None, "1.0.0"),
    ("semver:>=1.0.0 <2.0.0", {}, infos("1.9.0", "2.0.0-rc.1", "1.10.0"), None, "1.10.0"),
    ("semver:>=1.0.0-0", {}, infos("1.0.0", "2.0.0-rc.1"), None, "2.0.0-rc.1"),
    ("semver:>=1.0.0-0", {"prerelease": False}, infos("1.0.0", "2.0.0-rc.1"), None, "1.0.0"),
    ("semver:>=1.0.0-0 <2", {}, infos("1.5.0-rc.1", "1.4.0", "2.0.0-rc.1"), None, "1.5.0-rc.1"),
    ("semver:>=5.0.0", {}, infos("5.0.0", "v5.0.1", "6.0.0+build"), None, "v5.0.1"),
    ("semver:^0.2.3", {}, infos("0.2.3", "0.2.10", "0.3.0"), None, "0.2.10"),
    ("semver:^1", {}, infos("01.02.03", "1.2.4", "2.0.0"), None, "1.2.4"),
    ("semver:^1", {}, infos("1.02.10", "1.2.9"), None, "1.02.10"),
    ("semver:^1.2.3", {"exclude": "1.9.*"}, infos("1.9.0", "1.8.0", "2.0.0"), None, "1.8.0"),
    ("semver:~1", {}, infos("1", "1.1", "1.1.1", "2"), None, "1.1.1"),
    ("semver:~1.2", {}, infos("1.2.3", "1.2.10", "1.3.0", "v1.2.11-rc.1"), None, "1.2.10"),
    ("semver:~1.2", {}, infos("1.2.9", "bad tag", "1.2.8\n"), None, "1.2.9"),
    ("semver:~1.2", {}, infos("1.3.0", "1.1.0"), "1.2.0", None),
    ("semver:~1.2", {"filter": "^v.*", "extract": "$0"}, infos("1.2.5", "v1.2.4"), None, "v1.2.4"),
    ("semver:~1.2", {"filter": "^(v)", "extract": "$1"}, infos("1.2.5", "v1.2.4"), None, None),
    (
        "semver:~1.2",
        {"filter": "^app-(?P<version>.*)$", "extract": "${version}"},
        infos("app-1.2.3", "app-1.2.10", "lib-1.2.99", "app-1.3.0"),
        None,
        "app-1.2.10",
    ),
]


@pytest.mark.parametrize(
    ("text", "modifiers", "tags", "current", "chosen"),
    CHOICES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CHOICES)],
)
def test_choose(
    text: str, modifiers: dict[str, Any], tags: list[TagInfo], current: str | None, chosen: str | None
) -> None:
    policy = parse_policy(text, modifiers)
    got = policy.choose(tags, current=current, now=NOW)
    assert (got.tag if got else None) == chosen
    if got is not None:
        assert got in tags  # the TagInfo itself, original spelling and metadata
    # order of the input never matters
    for seed in range(3):
        shuffled = tags[:]
        random.Random(seed).shuffle(shuffled)
        again = policy.choose(shuffled, current=current, now=NOW)
        assert (again.tag if again else None) == chosen
    verdicts = policy.explain(tags, current=current, now=NOW)
    assert len(verdicts) == len(tags)
    chosen_verdicts = [v.tag for v in verdicts if v.status is Status.CHOSEN]
    assert chosen_verdicts == ([chosen] if chosen else [])
    if chosen:
        assert verdicts[0].tag == chosen


# Equal versions spelled differently: the current tag's v prefix and part count, then the v prefix, then the
# part count, then the natural/lexical greatest; with no current version to follow (none, "alpine", "latest")
# the lexically greatest at once. (current, chosen) over the same four spellings.
SPELLINGS = ["1.2", "1.2.0", "v1.2", "v1.2.0"]


@pytest.mark.parametrize(
    ("current", "chosen"),
    sorted(
        [
            (None, "v1.2.0"),
            ("1", "1.2.0"),
            ("1.0", "1.2"),
            ("1.0.0", "1.2.0"),
            ("alpine", "v1.2.0"),
            ("latest", "v1.2.0"),
            ("v1", "v1.2.0"),
            ("v1.0", "v1.2"),
            ("v1.0.0", "v1.2.0"),
        ],
        key=repr,
    ),
)
def test_tie_rule_prefers_the_current_spelling(current: str | None, chosen: str) -> None:
    policy = parse_policy("semver:*")
    for seed in range(4):
        tags = infos(*SPELLINGS)
        random.Random(seed).shuffle(tags)
        got = policy.choose(tags, current=current)
        assert got is not None and got.tag == chosen


@pytest.mark.parametrize(
    ("current", "tags", "chosen"),
    [
        ("1.0", ["1.2.0", "v1.2"], "1.2.0"),  # same prefix beats same part count
        ("v1.0", ["1.2", "v1.2.0"], "v1.2.0"),
        ("1.0.0", ["1.2", "v1.2"], "1.2"),
        ("1.0.0", ["01.2.0", "1.2.0"], "1.2.0"),  # lexically greatest among identical spellings
        (None, ["1.2.4", "v1.2.4"], "v1.2.4"),  # nothing to follow: lexically greatest ('v' > '1')
        (None, ["1.2", "1.2.0"], "1.2.0"),
        (None, ["01.2.0", "1.2.0"], "1.2.0"),
        ("main", ["1.2.4", "v1.2.4"], "v1.2.4"),
    ],
)
def test_tie_rule_steps(current: str | None, tags: list[str], chosen: str) -> None:
    for order in (tags, tags[::-1]):
        got = parse_policy("semver:*").choose(infos(*order), current=current)
        assert got is not None and got.tag == chosen


# Release versions in strictly ascending order: under semver:* the greatest of any prefix wins.
ASCENDING = [
    "0.0.1", "0.1", "0.9.9", "0.10.0", "1", "1.0.1", "1.1", "1.2.9", "1.2.10", "1.9", "1.10", "2", "10",
]


@pytest.mark.parametrize("end", range(1, len(ASCENDING) + 1))
def test_semver_order_table(end: int) -> None:
    tags = infos(*ASCENDING[:end])
    random.Random(end).shuffle(tags)
    got = parse_policy("semver:*").choose(tags)
    assert got is not None and got.tag == ASCENDING[end - 1]
    assert [parse_version(t).key for t in ASCENDING] == sorted(parse_version(t).key for t in ASCENDING)


# -------------------------------------------------------------------------------------- age and platforms


def test_min_age() -> None:
    policy = parse_policy("semver:*", {"min_age": "1d"})
    future = NOW + timedelta(hours=1)
    tags = infos(("1.0", at(48)), ("1.1", at(30)), ("1.2", at(2)), ("1.3", None), ("1.4", future))
    got = policy.choose(tags, now=NOW)
    assert got is not None and got.tag == "1.1"
    reasons = {v.tag: (v.status, v.reason) for v in policy.explain(tags, now=NOW)}
    assert reasons["1.2"] == (Status.TOO_YOUNG, "built 2h ago, min_age 1d")
    assert reasons["1.3"] == (Status.TOO_YOUNG, "build time unknown; min_age 1d")
    assert reasons["1.4"] == (Status.TOO_YOUNG, "built 1h in the future, min_age 1d")
    assert reasons["1.0"] == (Status.LOWER, "1.0 < 1.1")


def test_min_age_defaults_to_the_clock_and_accepts_naive_times() -> None:
    policy = parse_policy("glob:*", {"min_age": "1h"})
    recent = datetime.now(UTC) - timedelta(minutes=5)
    old = (datetime.now(UTC) - timedelta(days=3)).replace(tzinfo=None)  # naive = UTC
    got = policy.choose(infos(("new", recent), ("old", old)))
    assert got is not None and got.tag == "old"


def test_zero_min_age_still_needs_a_build_time() -> None:
    policy = parse_policy("semver:*", {"min_age": "0"})
    got = policy.choose(infos(("1.0", at(1)), ("1.1", None)))
    assert got is not None and got.tag == "1.0"


def test_platforms() -> None:
    policy = parse_policy("semver:*", {"platforms": "linux/amd64,linux/arm64"})
    tags = [
        TagInfo("1.0", platforms=frozenset({"linux/amd64", "linux/arm64/v8", "linux/arm/v7"})),
        TagInfo("1.1", platforms=frozenset({"linux/amd64"})),
        TagInfo("1.2", platforms=None),
        TagInfo("1.3", platforms=frozenset({"linux/amd64", "weird"})),
    ]
    got = policy.choose(tags)
    assert got is not None and got.tag == "1.0"
    reasons = {v.tag: (v.status, v.reason) for v in policy.explain(tags)}
    assert reasons["1.1"] == (Status.PLATFORM, "lacks linux/arm64 (has linux/amd64)")
    assert reasons["1.2"] == (Status.PLATFORM, "platforms unknown; needs linux/amd64, linux/arm64")
    assert reasons["1.3"][0] is Status.PLATFORM


# ------------------------------------------------------------------------------------------------ explain


def test_explain_semver() -> None:
    policy = parse_policy("semver:~1.2")
    tags = infos(
        "1.2.9", "1.2.10", "1.3.0", "v1.2.11-rc.1", "1.2.9-alpine", "latest", "sha256-" + "a" * 64 + ".sig",
        "bad tag", "main", "v1.2.10",
    )
    verdicts = policy.explain(tags, current="1.2.0")
    assert verdicts[0].tag == "1.2.10" and verdicts[0].status is Status.CHOSEN
    by_tag = {v.tag: (v.status, v.reason) for v in verdicts}
    assert by_tag == {
        "1.2.10": (Status.CHOSEN, "highest version satisfying ~1.2"),
        "v1.2.10": (Status.LOWER, "ranks equal to 1.2.10, which the tie rule prefers"),
        "1.2.9": (Status.LOWER, "1.2.9 < 1.2.10"),
        "1.3.0": (Status.FILTERED, "does not satisfy ~1.2"),
        "v1.2.11-rc.1": (Status.PRERELEASE, "prerelease; ~1.2 names no prerelease (set prerelease: true)"),
        "1.2.9-alpine": (Status.FILTERED, "flavour 'alpine' differs from current ''"),
        "latest": (Status.EXCLUDED, "'latest' counts only when the policy's pattern names it"),
        "sha256-" + "a" * 64 + ".sig": (Status.EXCLUDED, "matches exclude 'sha256-*.sig'"),
        "bad tag": (Status.INVALID, "not a valid tag: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}"),
        "main": (Status.FILTERED, "not a version"),
    }
    # chosen, then the other candidates best-first, then the rest (versions first, best-first)
    assert [v.tag for v in verdicts[:3]] == ["1.2.10", "v1.2.10", "1.2.9"]
    assert [v.tag for v in verdicts[3:6]] == ["1.3.0", "v1.2.11-rc.1", "1.2.9-alpine"]


def test_explain_time_ordered_and_flavour_modifier() -> None:
    policy = parse_policy("glob:main-*")
    verdicts = policy.explain(infos(("main-1", at(2)), ("main-2", at(1)), ("main-0", None), ("pr-1", at(0))))
    assert [(v.tag, v.status) for v in verdicts] == [
        ("main-2", Status.CHOSEN),
        ("main-1", Status.LOWER),
        ("main-0", Status.LOWER),
        ("pr-1", Status.FILTERED),
    ]
    assert verdicts[1].reason == "built 2024-06-01T10:00:00Z, before main-2 (2024-06-01T11:00:00Z)"
    assert verdicts[2].reason == "build time unknown; main-2 was built 2024-06-01T11:00:00Z"
    assert verdicts[3].reason == "does not match glob:main-*"
    flavour = parse_policy("semver:*", {"flavour": "perl"}).explain(infos("1.0-alpine"))
    assert flavour[0].reason == "flavour 'alpine' differs from flavour: perl"


@pytest.mark.parametrize(
    ("text", "modifiers", "tags", "reasons"),
    [
        ("alphabetical:desc", {}, ["b", "a"], ["first in byte order", "b > a"]),
        ("alphabetical", {"filter": "^x"}, ["xb", "y"], ["last in byte order", "does not match filter '^x'"]),
        ("digest", {}, ["a", "b"], ["no current tag to track", "no current tag to track"]),
        ("digest:a", {}, ["a", "b"], ["the tracked tag", "not the tracked tag 'a'"]),
        ("newest", {}, ["a"], ["newest build"]),
        ("numerical", {}, ["2", "10", "x"], ["highest number", "2 < 10", "not a number (\\d+ or \\d+.\\d+)"]),
        ("numerical:desc", {}, ["2", "10"], ["lowest number", "10 > 2"]),
        ("regex:^a", {}, ["a"], ["newest build matching regex:^a"]),
        ("semver:*", {"prerelease": False}, ["1.0-rc1"], ["prerelease; the policy sets prerelease: false"]),
    ],
)
def test_explain_reasons(text: str, modifiers: dict[str, Any], tags: list[str], reasons: list[str]) -> None:
    verdicts = parse_policy(text, modifiers).explain(infos(*tags))
    assert [v.reason for v in verdicts] == reasons


# --------------------------------------------------------------------------------------------- properties

_versionish = st.builds(
    lambda v, nums, suffix: v + ".".join(str(n) for n in nums) + suffix,
    st.sampled_from(["", "v"]),
    st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=3),
    st.sampled_from(["", "", "", "-rc.1", "-rc.10", "-alpine", "-perl", "-0", "-beta2"]),
)
_other = st.sampled_from(
    ["latest", "main", "sha256-" + "d" * 64 + ".sig", "bad tag", "dev-9", "dev-10", "1.2.3.4"]
)
_tags = st.lists(st.one_of(_versionish, _other), max_size=25)
_times = st.one_of(st.none(), st.integers(min_value=0, max_value=100).map(lambda h: at(h)))
_policy_texts = st.sampled_from(
    [
        "semver:*", "semver:~1.2", "semver:^1", "semver:>=1.0.0-0", "semver:<2 || >10", "semver:1.2 - 3",
        "glob:*", "glob:*.*", "regex:^v", "alphabetical", "alphabetical:desc", "numerical", "numerical:desc",
        "newest", "digest",
    ]
)
_modifier_sets = st.sampled_from(
    [
        {}, {"prerelease": True}, {"flavour": "any"}, {"flavour": "alpine"}, {"exclude": "*.1*"},
        {"min_age": "10h"},
    ]
)


@settings(max_examples=300, deadline=None)
@given(_policy_texts, _modifier_sets, _tags, st.data())
def test_property_chosen_qualifies_and_nothing_outranks_it(
    text: str, modifiers: dict[str, Any], tags: list[str], data: st.DataObject
) -> None:
    policy = parse_policy(text, modifiers)
    items = [TagInfo(t, created=data.draw(_times)) for t in tags]
    current = data.draw(st.one_of(st.none(), st.sampled_from(tags) if tags else st.none()))
    chosen = policy.choose(items, current=current, now=NOW)
    verdicts = policy.explain(items, current=current, now=NOW)
    assert len(verdicts) == len(items)
    candidates = [v for v in verdicts if v.status in (Status.CHOSEN, Status.LOWER)]
    if chosen is None:
        assert candidates == []
        return
    assert chosen in items
    assert verdicts[0].status is Status.CHOSEN and verdicts[0].tag == chosen.tag
    assert sum(v.status is Status.CHOSEN for v in verdicts) == 1
    # choosing among the candidates alone gives the same answer: no rejected tag took part
    candidate_ids = {(c.tag, c.created) for c in candidates}
    only = policy.choose([i for i in items if (i.tag, i.created) in candidate_ids], current=current, now=NOW)
    assert only is not None and only.tag == chosen.tag
    if policy.kind == "semver":
        key = parse_version(chosen.tag).key
        for v in candidates:
            assert parse_version(v.tag).key <= key
        assert policy.prerelease or parse_version(chosen.tag).prerelease is None or "-" in policy.argument
    elif policy.kind in ("glob", "regex", "newest"):
        best = max((c.created is not None, c.created or NOW) for c in candidates)
        assert (chosen.created is not None, chosen.created or NOW) == best


@settings(max_examples=200, deadline=None)
@given(_policy_texts, _tags, st.randoms(use_true_random=False))
def test_property_input_order_does_not_matter(text: str, tags: list[str], rnd: random.Random) -> None:
    policy = parse_policy(text)
    items = [TagInfo(t) for t in tags]
    current = tags[0] if tags else None
    first = policy.choose(items, current=current)
    rnd.shuffle(items)
    second = policy.choose(items, current=current)
    assert (first.tag if first else None) == (second.tag if second else None)


# ------------------------------------------------------------------------------------- extract templates


@pytest.mark.parametrize(
    ("pattern", "template", "tag", "value"),
    sorted(
        [
            ("^(\\w+)-(\\d+)$", "$2", "main-42", "42"),
            ("^(\\w+)-(\\d+)$", "${2}x", "main-42", "42x"),
            ("^(\\w+)-(\\d+)$", "$1.$2", "main-42", "main.42"),
            ("^(\\w+)-(\\d+)$", "$$$2", "main-42", "$42"),
            ("^(\\w+)-(\\d+)$", "a$", "main-42", "a$"),
            ("^(\\w+)-(\\d+)$", "$-", "main-42", "$-"),
            ("^(\\w+)-(\\d+)$", "${2", "main-42", "${2"),
            ("^(?P<branch>\\w+)-(?P<ts>\\d+)$", "$ts-$branch", "main-42", "42-main"),
            ("^(?P<branch>\\w+)-(?P<ts>\\d+)$", "${ts}_${branch}", "main-42", "42_main"),
            ("^(?<branch>\\w+)-(?<ts>\\d+)$", "$ts", "main-42", "42"),  # Go/PCRE named group spelling
            ("-(\\d+)", "$1", "main-42", "42"),  # searched, not anchored
            ("^(\\w+)-(\\d+)$", "\\1-$2", "main-42", "\\1-42"),  # Go's Expand: \1 is literal text
            ("^(\\w+)(-x)?-(\\d+)$", "[$2]", "main-42", "[]"),  # an unmatched group expands to nothing
        ]
    ),
)
def test_extract_templates(pattern: str, template: str, tag: str, value: str) -> None:
    from image_updater.policies.patterns import _compile_template
    from image_updater.regexes import compile_user_regex

    regex = compile_user_regex(pattern, "filter")
    spans = regex.spans(tag)
    assert spans is not None
    assert _compile_template(template, regex)(tag, spans) == value


@pytest.mark.parametrize(
    ("template", "message"),
    [("$ts", "no group named 'ts'"), ("$3", "no group 3"), ("$1x", "no group named '1x'"), ("${}", None)],
)
def test_extract_refers_to_groups_that_exist(template: str, message: str | None) -> None:
    modifiers = {"filter": "^(\\w+)-(\\d+)$", "extract": template}
    if message is None:  # "${}" is no reference at all: Go writes it as it is
        assert parse_policy("alphabetical", modifiers).extract == template
        return
    with pytest.raises(InvalidPolicy, match=message):
        parse_policy("alphabetical", modifiers)


@pytest.mark.parametrize("text", ["alphabetical", "glob:*", "newest", "numerical", "semver:*", "regex:."])
def test_plus_is_never_a_tag(text: str) -> None:
    verdicts = parse_policy(text).explain(infos("1.0.0+build", "2+1"))
    assert {v.status for v in verdicts} == {Status.INVALID}


def test_latest_counts_when_the_filter_names_it() -> None:
    policy = parse_policy("alphabetical", {"filter": "^(latest|stable)$"})
    got = policy.choose(infos("latest", "stable", "main"))
    assert got is not None and got.tag == "stable"
    got = parse_policy("alphabetical:desc", {"filter": "^(latest|stable)$"}).choose(infos("latest", "stable"))
    assert got is not None and got.tag == "latest"


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["semver:*", "semver:~1.2", "semver:>=1.0.0-0", "numerical", "alphabetical"]), _tags)
def test_property_identity_extract_changes_nothing(text: str, tags: list[str]) -> None:
    """The filter/extract path must rank exactly as the plain path when the extract gives back the tag."""
    items = [TagInfo(t) for t in tags]
    current = tags[0] if tags else None
    plain = parse_policy(text).choose(items, current=current)
    identity = parse_policy(text, {"filter": "^(.*)$", "extract": "$1"}).choose(items, current=current)
    assert (plain.tag if plain else None) == (identity.tag if identity else None)


def test_hot_loop_tag_grammar_is_the_reference_grammar() -> None:
    from image_updater import references
    from image_updater.policies import ranking

    assert ranking._TAG_GRAMMAR.pattern == references._TAG.pattern


def test_several_exclude_globs_with_inner_stars_combine() -> None:
    # each glob's inner stars become named groups in one combined regex: the names must not collide
    policy = parse_policy("alphabetical", {"exclude": ["*-debug-*", "x*y*z", "*a*b*"]})
    tags = [TagInfo("1-debug-2"), TagInfo("xaybz"), TagInfo("zz"), TagInfo("cab")]
    chosen = policy.choose(tags)
    assert chosen is not None and chosen.tag == "zz"
