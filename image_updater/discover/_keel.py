"""Keel (keel.sh) settings read from Git: workload annotations/labels and the Helm values ``keel:`` block.

Pure: nodes in, policies out; ``_discover`` turns them into claims of origin ``keel``.

Keel's meaning, taken from its ``internal/policy`` package, and ours for it (the current tag is known at
discovery, so Keel's "relative to the running tag" policies become absolute ranges):

- ``keel.sh/policy`` is read from the annotations first, then from the labels (legacy key
  ``keel.observer/policy``); ``keel.sh/matchTag`` (legacy ``keel.sh/match-tag``) and
  ``keel.sh/matchPreRelease`` are read from the same map the policy came from. ``matchPreRelease`` defaults
  to true; any value but ``"true"`` is false.
- ``all``: any higher semver, prereleases included whatever ``matchPreRelease`` says ->
  ``semver:>=<current>`` with ``prerelease: true``.
- ``major``: like ``all``, but with ``matchPreRelease`` (the default) the candidate's prerelease part must
  equal the current one's (a stable tag moves to stable tags only; ``1.2.0-rc1`` to ``*-rc1`` tags only).
- ``minor``: same major -> ``semver:>=<current> <M+1.0.0``; ``patch``: same major and minor ->
  ``semver:>=<current> <M.m+1.0``; prerelease handling as for ``major``.
- current tag ``latest``: Keel updates to any version -> ``semver:>=0.0.0``.
- ``force`` with ``matchTag``: only re-pushes of the same tag -> ``digest:<current>`` (the digest pinned in
  Git, so that a re-push becomes a commit); ``force`` alone: the highest semver tag greater than the current
  one (``semver:>=<current>``, prereleases included), or, for a current tag that is not a version, the tag's
  own digest.
- ``glob:<pattern>``: tags matching the pattern, the greatest *name* wins (Keel sorts descending by string)
  -> ``alphabetical`` with the glob as a ``filter`` regex.
- ``regexp:<re>``: tags the expression finds (unanchored, Go syntax), the greatest name wins, or the greatest
  ``(?P<compare>...)`` group -> ``alphabetical`` with ``filter`` (and ``extract: $compare``).
- ``never`` or empty: no policy (the workload is not managed).
- ``keel.sh/initContainers: "true"`` (labels first, then annotations, key case-insensitive): the init
  containers are tracked as well as the containers.

Flavours do not exist in Keel: every translated policy says ``flavour: any``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from image_updater.errors import InvalidPolicy
from image_updater.policies import Policy, parse_policy

from ._nodes import MappingNode, Node, SequenceNode, get, get_path, items, node_line, scalar

__all__ = [
    "KEEL_POLICY",
    "KeelImage",
    "KeelSettings",
    "keel_values",
    "keel_workload",
    "translate",
]

KEEL_POLICY = "keel.sh/policy"
_LEGACY_POLICY = "keel.observer/policy"
_MATCH_TAG = "keel.sh/matchTag"
_MATCH_TAG_LEGACY = "keel.sh/match-tag"
_MATCH_PRERELEASE = "keel.sh/matchPreRelease"
_INIT = "keel.sh/initcontainers"
# Masterminds/semver v1 (what Keel uses): optional v, 1 to 3 numbers, prerelease, metadata
_SEMVER = re.compile(
    r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)


@dataclass(frozen=True, slots=True)
class KeelSettings:
    """Keel's policy settings of one workload or values file, as written."""

    policy: str
    match_tag: bool
    match_prerelease: bool
    line: int  # the line of the policy key
    init_containers: bool = False


@dataclass(frozen=True, slots=True)
class KeelImage:
    """One ``keel.images`` entry of a values file: dotted paths into the same file."""

    repository: str
    tag: str | None
    digest: str | None
    line: int


def _string_map(node: Node | None) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    if not isinstance(node, MappingNode):
        return out
    for key, key_node, value_node in items(node):
        value = scalar(value_node)
        where = value_node if value is not None else key_node
        out[key] = (value if value is not None else "", node_line(where))
    return out


def _settings_of(values: dict[str, tuple[str, int]]) -> KeelSettings | None:
    found = values.get(KEEL_POLICY) or values.get(_LEGACY_POLICY)
    if found is None:
        return None
    if _MATCH_TAG in values:
        match_tag = values[_MATCH_TAG][0] == "true"
    else:
        match_tag = values.get(_MATCH_TAG_LEGACY, ("", 0))[0] == "true"
    prerelease = values[_MATCH_PRERELEASE][0] == "true" if _MATCH_PRERELEASE in values else True
    return KeelSettings(found[0].strip(), match_tag, prerelease, found[1])


def keel_workload(node: Node) -> KeelSettings | None:
    """The Keel settings of a workload: annotations first, then labels, as Keel reads them."""
    annotations = _string_map(get_path(node, "metadata", "annotations"))
    labels = _string_map(get_path(node, "metadata", "labels"))
    settings = _settings_of(annotations) or _settings_of(labels)
    if settings is None:
        return None
    init = False
    for source in (labels, annotations):
        hit = next((v for k, (v, _l) in source.items() if k.lower() == _INIT), None)
        if hit is not None:
            init = hit == "true"
            break
    return KeelSettings(settings.policy, settings.match_tag, settings.match_prerelease, settings.line, init)


def keel_values(node: Node) -> tuple[KeelSettings | None, list[KeelImage], list[tuple[int, str]]]:
    """The ``keel:`` block of a Helm values file: its settings, its ``images`` entries and problems."""
    block = get(node, "keel")
    if not isinstance(block, MappingNode):
        return None, [], []
    problems: list[tuple[int, str]] = []
    policy_node = get(block, "policy")
    policy = scalar(policy_node)
    if not policy:
        return None, [], [(node_line(block), "keel: no policy set (Keel ignores such a release)")]
    match_tag = (scalar(get(block, "matchTag")) or "").lower() == "true"
    prerelease_text = scalar(get(block, "matchPreRelease"))
    match_prerelease = True if prerelease_text is None else prerelease_text.lower() == "true"
    settings = KeelSettings(policy.strip(), match_tag, match_prerelease, node_line(policy_node or block))
    images: list[KeelImage] = []
    entries = get(block, "images")
    for entry in entries.value if isinstance(entries, SequenceNode) else []:
        repository = scalar(get(entry, "repository"))
        if not repository:
            problems.append((node_line(entry), "keel.images entry has no repository path"))
            continue
        images.append(KeelImage(repository, scalar(get(entry, "tag")) or None,
                                scalar(get(entry, "digest")) or None, node_line(entry)))
    return settings, images, problems


def _glob_regex(pattern: str) -> str:
    # ryanuber/go-glob: only '*' is special, the whole tag must match
    return "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"


def translate(settings: KeelSettings, current: str | None) -> Policy | None:
    """Keel's policy for a container whose tag is ``current`` -> ours; None for ``never``/empty.
    Raises ``InvalidPolicy`` naming Keel's setting."""
    name = settings.policy
    tag = current or "latest"
    if name in ("", "never"):
        return None
    if name.startswith("glob:"):
        pattern = name[len("glob:"):]
        if ":" in pattern:
            raise InvalidPolicy(f"invalid Keel policy {name!r}: a glob policy has one ':'")
        return parse_policy("alphabetical", {"filter": _glob_regex(pattern), "flavour": "any"})
    if name.startswith("regexp:"):
        expression = name[len("regexp:"):]
        found = {"filter": expression, "flavour": "any"}
        if "(?P<compare>" in expression:
            found["extract"] = "$compare"
        return parse_policy("alphabetical", found)
    if name == "force":
        version = _SEMVER.match(tag)
        if settings.match_tag or version is None:
            return parse_policy(f"digest:{tag}")
        return parse_policy(f"semver:>={_normal(version)}", {"prerelease": "true", "flavour": "any"})
    if name not in ("all", "major", "minor", "patch"):
        raise InvalidPolicy(
            f"unknown Keel policy {name!r} "
            "(expected all, major, minor, patch, force, glob:, regexp: or never)"
        )
    if tag == "latest":
        return parse_policy("semver:>=0.0.0", {"prerelease": "true", "flavour": "any"})
    version = _SEMVER.match(tag)
    if version is None:
        raise InvalidPolicy(f"Keel policy {name!r}: the current tag {tag!r} is not a semantic version")
    major, minor = int(version.group(1)), int(version.group(2) or 0)
    low = f">={_normal(version)}"
    if name == "minor":
        low += f" <{major + 1}.0.0"
    elif name == "patch":
        low += f" <{major}.{minor + 1}.0"
    modifiers: dict[str, str] = {"flavour": "any", "prerelease": "true"}
    pre = version.group(4)
    if name != "all" and settings.match_prerelease:
        if pre is None:
            modifiers["prerelease"] = "false"
        else:
            modifiers["filter"] = (r"^v?\d+(\.\d+){0,2}-" + re.escape(pre) + r"(\+[0-9A-Za-z.-]+)?$")
    return parse_policy(f"semver:{low}", modifiers)


def _normal(version: re.Match[str]) -> str:
    text = f"{int(version.group(1))}.{int(version.group(2) or 0)}.{int(version.group(3) or 0)}"
    return f"{text}-{version.group(4)}" if version.group(4) else text
