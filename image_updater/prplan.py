"""Pull-request mode, the pure part: update-branch names, groups of changes, PR titles and bodies.

DESIGN "Review workflow": with ``pull_request`` set, a pass never writes to the source's branch (the base).
Its updates are split into groups (``group_by: source``: one group; ``group_by: image``: one per image
name), each group goes to its own update branch, named from a template with ``{source}``, ``{image}`` and
``{new_tag}``, and each update branch has one pull request.

Placeholders are filled with values made safe for a ref name: every run of characters git does not allow
in a branch name (and ``:``, which registry ports bring) becomes ``-``; ``/`` is kept, so
``ghcr.io/acme/web`` stays readable as ``image-updater/prod/ghcr.io/acme/web``; empty path components,
components starting with ``.`` or ending with ``.lock`` are repaired the same way.

Our own commits on an update branch carry the trailer ``Image-Updater-Source: <source>``; with the
committer identity that is how a pass recognises a branch it may rewrite (``is_ours``). This module is pure:
no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from image_updater.commitmsg import summarize, template_context
from image_updater.errors import ConfigError
from image_updater.plan import Change, Result
from image_updater.report import render_markdown

__all__ = [
    "DEFAULT_BRANCH_IMAGE",
    "DEFAULT_BRANCH_SOURCE",
    "TRAILER",
    "GroupBy",
    "UpdateGroup",
    "branch_pattern",
    "branch_template_problem",
    "check_pr_template",
    "commit_message_with_trailer",
    "default_branch",
    "group_updates",
    "is_ours",
    "ref_component",
    "render_body",
    "render_branch",
    "render_title",
]

GroupBy = Literal["source", "image"]

DEFAULT_BRANCH_SOURCE = "image-updater/{source}"
DEFAULT_BRANCH_IMAGE = "image-updater/{source}/{image}"
TRAILER = "Image-Updater-Source"

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_KNOWN = ("source", "image", "new_tag")
_BAD_RUN = re.compile(r"[\x00-\x20~^:?*\[\\\x7f@{}]+|\.{2,}")
_BRANCH_BAD = re.compile(r"(^[-/.])|(\.\.)|([\x00-\x20~^:?*\[\\\x7f])|(@\{)|(/\.)|(//)|(\.lock$)|([/.]$)")
_MAX_BRANCH = 200  # forges cap head refs (GitHub: 255 bytes); long image paths are cut here


def default_branch(group_by: GroupBy) -> str:
    """The update branch when none is configured: per source, or per source and image."""
    return DEFAULT_BRANCH_IMAGE if group_by == "image" else DEFAULT_BRANCH_SOURCE


def ref_component(value: str) -> str:
    """``value`` made safe inside a branch name: invalid runs -> ``-``, ``/`` kept, no empty components."""
    text = _BAD_RUN.sub("-", value)
    parts = []
    for part in text.split("/"):
        part = part.strip(".-")
        while part.endswith(".lock"):
            part = part[: -len(".lock")].rstrip(".-")
        if part:
            parts.append(part)
    return "/".join(parts) or "-"


def _fill(template: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: ref_component(values[m.group(1)]), template)


def branch_template_problem(template: str, group_by: GroupBy) -> str | None:
    """Why ``template`` cannot name update branches, or None when it can."""
    names = _PLACEHOLDER.findall(template)
    unknown = sorted({n for n in names if n not in _KNOWN})
    if unknown:
        return (f"unknown placeholder {{{unknown[0]}}} (use {{source}}, {{image}} or {{new_tag}})")
    if "{" in _PLACEHOLDER.sub("", template) or "}" in _PLACEHOLDER.sub("", template):
        return "unbalanced { or } (placeholders are {source}, {image} and {new_tag})"
    if group_by == "image" and "image" not in names:
        return "must contain {image} with group_by: image (one branch and pull request per image)"
    if group_by == "source" and "image" in names:
        return "{image} needs group_by: image (group_by: source puts every image on one branch)"
    sample = _fill(template, {"source": "source", "image": "registry/image", "new_tag": "1.0"})
    if not sample or sample == "@" or _BRANCH_BAD.search(sample):
        return f"renders to {sample!r}, which is not a valid branch name"
    return None


def render_branch(template: str, *, source: str, image: str = "", new_tag: str = "") -> str:
    """The update branch ``template`` names for these values (each made safe with ``ref_component``)."""
    branch = _fill(template, {"source": source, "image": image, "new_tag": new_tag})
    return branch[:_MAX_BRANCH].rstrip("/.-")


def branch_pattern(template: str, *, source: str) -> re.Pattern[str]:
    """Matches every branch ``template`` can name for ``source`` (``{image}``, ``{new_tag}``: anything)."""
    out: list[str] = []
    last = 0
    for match in _PLACEHOLDER.finditer(template):
        out.append(re.escape(template[last : match.start()]))
        name = match.group(1)
        out.append(re.escape(ref_component(source)) if name == "source" else ".+")
        last = match.end()
    out.append(re.escape(template[last:]))
    return re.compile("".join(out))


@dataclass(frozen=True, slots=True)
class UpdateGroup:
    """The changes that go to one update branch together (and so into one pull request)."""

    branch: str
    image: str | None  # the image name of a ``group_by: image`` group
    result: Result  # the group's updates only: the body stays the same while the branch does

    @property
    def updates(self) -> tuple[Change, ...]:
        return self.result.updates


def group_updates(result: Result, *, source: str, group_by: GroupBy, template: str) -> list[UpdateGroup]:
    """``result``'s updates split into update-branch groups, sorted by branch.

    ``group_by: image`` keys by the image name as written (``Change.image``): every file and container
    using that image moves together. A ``{new_tag}`` template with several tags in one group uses the
    highest in sort order (ties are rare: one policy picks one tag per image).
    """
    if not result.updates:
        return []
    if group_by == "source":
        tags = sorted({c.new_tag for c in result.updates})
        branch = render_branch(template, source=source, new_tag=tags[-1])
        return [UpdateGroup(branch=branch, image=None, result=Result(updates=result.updates))]
    by_image: dict[str, list[Change]] = {}
    for change in result.updates:
        by_image.setdefault(change.image, []).append(change)
    groups: dict[str, UpdateGroup] = {}
    for image, changes in by_image.items():
        tag = sorted({c.new_tag for c in changes})[-1]
        branch = render_branch(template, source=source, image=image, new_tag=tag)
        if branch in groups:  # two spellings that sanitise alike share one branch
            previous = groups[branch]
            merged = replace(previous.result, updates=(*previous.updates, *changes))
            groups[branch] = replace(previous, result=merged)
            continue
        sub = Result(updates=tuple(changes))
        groups[branch] = UpdateGroup(branch=branch, image=image, result=sub)
    return [groups[b] for b in sorted(groups)]


def commit_message_with_trailer(message: str, source: str) -> str:
    """``message`` with our ownership trailer as its last paragraph."""
    return f"{message.rstrip()}\n\n{TRAILER}: {source}"


def is_ours(message: str, committer: tuple[str, str], *, source: str, identity: tuple[str, str]) -> bool:
    """A commit image-updater made for ``source``: our trailer in its message and our committer."""
    lines = [line.strip() for line in message.strip().splitlines()]
    return f"{TRAILER}: {source}" in lines and committer == identity


def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def check_pr_template(template: str, what: str) -> None:
    """``ConfigError`` when ``template`` (the pull request's ``what``) is not valid Jinja2."""
    try:
        _environment().from_string(template)
    except TemplateError as exc:
        raise ConfigError(f"pull_request.{what} does not compile: {exc}") from exc


def _context(group: UpdateGroup, source: str, branch: str) -> dict[str, Any]:
    context = template_context(group.result, source=source)
    context.update(
        {"branch": branch, "image": group.image or "",
         "report": render_markdown(group.result, title=f"image-updater: {source}")}
    )
    return context


def _render(template: str, context: Mapping[str, Any], what: str) -> str:
    try:
        return _environment().from_string(template).render(dict(context))
    except TemplateError as exc:
        raise ConfigError(f"pull_request.{what} failed: {exc}") from exc
    except Exception as exc:  # the template's own arithmetic or type error
        raise ConfigError(f"pull_request.{what} failed: {type(exc).__name__}: {exc}") from exc


def render_title(group: UpdateGroup, *, source: str, template: str | None) -> str:
    """The pull request's title: one line, at most 250 characters."""
    if template is None:
        changes: Sequence[Change] = group.updates
        if group.image is not None:
            tags = sorted({c.new_tag for c in changes})
            title = f"Update {group.image} to {', '.join(tags)}"
        else:
            title = f"{summarize(changes)} ({source})"
    else:
        title = _render(template, _context(group, source, group.branch), "title_template")
    line = " ".join(title.split())
    if not line:
        raise ConfigError("pull_request.title_template rendered an empty title")
    return line[:250]


_HOW_TO = """\
---
<sub>Opened by image-updater for source `{source}` from branch `{branch}`. Every pass rebuilds this branch \
on top of the base branch while only image-updater has committed to it; push a commit of your own to it \
and image-updater leaves it as it is. Merge this pull request to roll the update out, or close it to \
skip it until a newer tag appears.</sub>"""


def render_body(group: UpdateGroup, *, source: str, template: str | None, marker: str) -> str:
    """The pull request's body: the Markdown report (or the template's text), ending with ``marker``."""
    context = _context(group, source, group.branch)
    if template is None:
        text = context["report"] + "\n" + _HOW_TO.format(source=source, branch=group.branch) + "\n"
    else:
        text = _render(template, context, "body_template")
    return f"{text.rstrip()}\n\n{marker}\n"
