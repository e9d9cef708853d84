"""Flux v2 setter markers: ``# {"$imagepolicy": "<ns>:<name>[:tag|:name|:digest]"}`` after a scalar.

The marker is a line comment right after a scalar value (a mapping value or a sequence item). It names a
policy from a policy file or a Flux ``ImagePolicy`` found in the tree; ``"<name>"`` alone works when the
name is unique. Without a suffix the scalar holds a whole reference; Flux writes the policy's image there,
so a value naming another repository is renamed to it (a value naming the same repository keeps its
spelling).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from image_updater.errors import InvalidReference
from image_updater.references import ImageReference, is_valid_tag, parse_reference

from ._model import Part
from ._nodes import MappingNode, Node, ScalarNode, SequenceNode, scalar
from ._policies import PolicyDef, PolicyIndex

__all__ = ["FLEET_MARKER_KEY", "MARKER_KEY", "Lookup", "MarkerHit", "MarkerProblem", "find_markers"]

MARKER_KEY = "$imagepolicy"
# Rancher Fleet's image scan setters: ``{"$imagescan": "<tagName>[:tag|:name|:digest]"}``; no namespace part,
# and ``:digest`` holds a whole ``image:tag@sha256:...`` reference (Fleet's setters.go), looked up as the
# name ``<tagName>:digest``
FLEET_MARKER_KEY = "$imagescan"


class Lookup(Protocol):
    def lookup(self, namespace: str | None, name: str) -> tuple[PolicyDef | None, str | None]: ...
_AFTER_SCALAR = re.compile(r"[ \t]*#")
_COMMENT_START = re.compile(r"(?:^|(?<=[ \t]))#", re.MULTILINE)
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}\Z")
_SUFFIX_PART: dict[str | None, Part] = {None: "reference", "tag": "tag", "name": "name", "digest": "digest"}


@dataclass(frozen=True, slots=True)
class MarkerHit:
    """A scalar with a valid marker that names a usable policy."""

    node: ScalarNode
    definition: PolicyDef
    part: Part
    image: ImageReference
    value: str
    write_name: str
    group: tuple[int, str]  # markers of one policy in one mapping describe one image (tag + digest)


@dataclass(frozen=True, slots=True)
class MarkerProblem:
    offset: int  # where the marker comment starts (or the scalar, for problems with the value)
    message: str


@dataclass(frozen=True, slots=True)
class _Comment:
    hash_pos: int
    namespace: str | None
    name: str
    suffix: str | None
    problem: str | None
    # '#' characters earlier on the line that may start a comment: if one does, this "marker" is only text
    # inside a comment (documentation quoting a marker)
    earlier: tuple[int, ...] = ()


def _comments(text: str, key: str = MARKER_KEY) -> dict[int, _Comment]:
    """Every ``$imagepolicy`` marker comment in ``text``, keyed by the offset of its ``#``."""
    found: dict[int, _Comment] = {}
    start = 0
    while True:
        at = text.find(key, start)
        if at < 0:
            return found
        start = at + len(key)
        line_start = max(text.rfind("\n", 0, at), text.rfind("\r", 0, at)) + 1
        line_end = len(text)
        for brk in ("\n", "\r"):
            pos = text.find(brk, at)
            if 0 <= pos < line_end:
                line_end = pos
        hash_pos = text.rfind("#", line_start, at)
        if hash_pos < 0 or hash_pos in found:
            continue
        comment = _parse_comment(hash_pos, text[hash_pos + 1 : line_end], key)
        earlier = tuple(m.start() for m in _COMMENT_START.finditer(text, line_start, hash_pos))
        found[hash_pos] = dataclasses.replace(comment, earlier=earlier)


def _parse_comment(hash_pos: int, body: str, key: str = MARKER_KEY) -> _Comment:
    def bad(message: str) -> _Comment:
        return _Comment(hash_pos, None, "", None, message)

    first, last = body.find("{"), body.rfind("}")
    if first < 0 or last < first:
        return bad(f"setter marker {body.strip()!r} is not a JSON object like "
                   '{"$imagepolicy": "<namespace>:<name>"}')
    try:
        data = json.loads(body[first : last + 1])
    except ValueError as exc:
        return bad(f"setter marker {body.strip()!r} is not valid JSON: {exc}")
    value = data.get(key) if isinstance(data, dict) else None
    if key == FLEET_MARKER_KEY:
        if not isinstance(value, str) or not value.strip():
            return bad(f"setter marker {body.strip()!r}: {key} must be a string "
                       "\"<tagName>[:tag|:name|:digest]\"")
        scan, sep, scan_suffix = value.strip().rpartition(":")
        if not sep or scan_suffix not in ("tag", "name"):
            return _Comment(hash_pos, None, value.strip(), None, None)  # ":digest" stays in the name
        return _Comment(hash_pos, None, scan, scan_suffix, None)
    if not isinstance(value, str):
        return bad(f"setter marker {body.strip()!r}: {MARKER_KEY} must be a string "
                   "\"<namespace>:<name>[:tag|:name|:digest]\"")
    parts = value.split(":")
    suffix: str | None = None
    if len(parts) == 3:
        suffix = parts.pop()
        if suffix not in ("tag", "name", "digest"):
            return bad(f"setter marker {value!r}: unknown suffix {suffix!r} (tag, name or digest)")
    if len(parts) not in (1, 2) or not all(p.strip() for p in parts):
        return bad(f"setter marker {value!r} must be \"<namespace>:<name>[:tag|:name|:digest]\" "
                   "or \"<name>\"")
    namespace, name = (parts[0].strip(), parts[1].strip()) if len(parts) == 2 else (None, parts[0].strip())
    return _Comment(hash_pos, namespace, name, suffix, None)


def _scalars_with_parent(root: Node) -> Iterator[tuple[ScalarNode, MappingNode | None]]:
    """Value scalars (mapping values and sequence items) with the mapping holding them."""
    seen: set[int] = set()
    stack: list[tuple[Node, MappingNode | None]] = [(root, None)]
    while stack:
        node, parent = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            yield node, parent
        elif isinstance(node, MappingNode):
            for _key, value in reversed(node.value):
                stack.append((value, node))
        elif isinstance(node, SequenceNode):
            stack.extend((item, None) for item in reversed(node.value))


def _parse(text: str) -> ImageReference | None:
    try:
        return parse_reference(text)
    except InvalidReference:
        return None


def find_markers(
    text: str, root: Node, index: PolicyIndex | Lookup, key: str = MARKER_KEY
) -> tuple[list[MarkerHit], list[MarkerProblem]]:
    """Markers attached to scalars of one document, and every problem with a marker (in that document)."""
    comments = _comments(text, key)
    if not comments:
        return [], []
    hits: list[MarkerHit] = []
    problems: list[MarkerProblem] = []
    doc_start, doc_end = int(root.start_mark.index), int(root.end_mark.index)
    attached: list[tuple[ScalarNode, MappingNode | None, _Comment]] = []
    spans: list[tuple[int, int]] = []
    claimed: set[int] = set()
    for node, parent in _scalars_with_parent(root):
        start, end = int(node.start_mark.index), int(node.end_mark.index)
        spans.append((start, end))
        m = _AFTER_SCALAR.match(text, end)
        if m is None:
            continue
        comment = comments.get(m.end() - 1)
        if comment is not None:
            attached.append((node, parent, comment))
            claimed.add(comment.hash_pos)

    # markers on this document's lines that follow no scalar value are mistakes, unless they sit inside a
    # scalar (a block scalar's text may well quote a marker)
    for hash_pos, comment in comments.items():
        if hash_pos in claimed or not doc_start <= hash_pos < doc_end:
            continue
        if any(s <= hash_pos < e for s, e in spans):
            continue
        if any(not any(s <= h < e for s, e in spans) for h in comment.earlier):
            continue
        problems.append(MarkerProblem(hash_pos, comment.problem or (
            f"setter marker for {comment.namespace + ':' if comment.namespace else ''}{comment.name} "
            "does not follow a scalar value on its line"
        )))

    for node, parent, comment in attached:
        if comment.problem is not None:
            problems.append(MarkerProblem(comment.hash_pos, comment.problem))
            continue
        value = scalar(node)
        if value is None:
            problems.append(MarkerProblem(comment.hash_pos, "setter marker on an empty value"))
            continue
        definition, why = index.lookup(comment.namespace, comment.name)
        if definition is None:
            problems.append(MarkerProblem(comment.hash_pos, f"setter marker: {why}"))
            continue
        if definition.policy is None or definition.image is None:
            problems.append(MarkerProblem(comment.hash_pos, (
                f"setter marker names {definition.label} ({definition.source}), which cannot be used: "
                f"{definition.problem}"
            )))
            continue
        hit = _hit(node, parent, comment, definition, value, attached)
        if isinstance(hit, str):
            problems.append(MarkerProblem(int(node.start_mark.index), hit))
        else:
            hits.append(hit)
    return hits, problems


def _sibling_tag(
    parent: MappingNode | None, comment: _Comment,
    attached: list[tuple[ScalarNode, MappingNode | None, _Comment]],
) -> str | None:
    """The current tag for a ``:name``/``:digest`` marker: a ``:tag`` marker of the same policy in the same
    mapping, else a sibling ``newTag``/``tag`` value."""
    if parent is None:
        return None
    for node, other_parent, other in attached:
        if other_parent is parent and other.suffix == "tag" and (other.namespace, other.name) == (
            comment.namespace, comment.name
        ):
            tag = (scalar(node) or "").partition("@")[0]
            return tag if is_valid_tag(tag) else None
    for key_node, value_node in parent.value:
        if scalar(key_node) in ("newTag", "tag"):
            tag = (scalar(value_node) or "").partition("@")[0]
            return tag if is_valid_tag(tag) else None
    return None


def _hit(
    node: ScalarNode, parent: MappingNode | None, comment: _Comment, definition: PolicyDef, value: str,
    attached: list[tuple[ScalarNode, MappingNode | None, _Comment]],
) -> MarkerHit | str:
    policy_image = definition.image
    assert policy_image is not None
    part = _SUFFIX_PART[comment.suffix]
    group = (id(parent) if parent is not None else id(node), definition.source)
    if comment.suffix == "tag":
        tag = value.partition("@")[0]
        image = dataclasses.replace(policy_image, tag=tag if is_valid_tag(tag) else None, digest=None)
        return MarkerHit(node, definition, "tag", image, value, policy_image.written_name, group)
    if comment.suffix == "name":
        current = _parse(value)
        same = current is not None and current.same_repository(policy_image)
        image = dataclasses.replace(policy_image, tag=_sibling_tag(parent, comment, attached), digest=None)
        write_name = value if same else policy_image.written_name
        return MarkerHit(node, definition, part, image, value, write_name, group)
    if comment.suffix == "digest":
        digest = value if _DIGEST.match(value) else None
        image = dataclasses.replace(policy_image, tag=_sibling_tag(parent, comment, attached), digest=digest)
        return MarkerHit(node, definition, part, image, value, policy_image.written_name, group)
    current = _parse(value)
    if current is None:
        return (f"value {value!r} with setter marker {definition.label} is not an image reference "
                "(use the :tag, :name or :digest suffix for a part of one)")
    if current.same_repository(policy_image):
        return MarkerHit(node, definition, part, current, value, current.written_name, group)
    image = dataclasses.replace(policy_image, tag=current.tag, digest=current.digest)
    return MarkerHit(node, definition, part, image, value, policy_image.written_name, group)
