"""Commit messages: one ``Result`` -> the text of the pass's commit.

The default message is a summary line followed by one line per change::

    Update 2 images in 1 file

    apps/web/deployment.yaml: ghcr.io/acme/web 1.2.0 -> 1.3.0
    apps/web/deployment.yaml: nginx 1.25-alpine -> 1.27-alpine

A user template (``commit.message_template``) is rendered in Jinja2's sandbox with ``changes`` (each with
``file``, ``line``, ``resource``, ``container``, ``image``, ``old``, ``new``, ``old_tag``, ``new_tag``,
``policy``, ``origin``, and ``old_version``/``new_version``: the value without the repository, e.g.
``1.25@sha256:…``), ``summary``, ``files`` (the changed files, sorted) and ``source``. Undefined
variables are errors, so a typo in a template fails loudly instead of writing an empty line. This module
is pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from image_updater.errors import ConfigError
from image_updater.plan import Change, Result

__all__ = [
    "DEFAULT_TEMPLATE", "SKIP_CI", "check_template", "render_commit_message", "summarize", "template_context",
]

SKIP_CI = "[skip ci]"

DEFAULT_TEMPLATE = """\
{{ summary }}

{% for c in changes -%}
{% if c.old_tag != c.new_tag -%}
{{ c.file }}: {{ c.image }} {{ c.old_tag or ("latest" if c.action == "update" else "-") }} -> {{ c.new_tag }}
{% else -%}
{{ c.file }}: {{ c.image }} {{ c.old_version }} -> {{ c.new_version }}
{% endif -%}
{% endfor %}"""


def _environment() -> SandboxedEnvironment:
    # a fresh sandbox per render: nothing a template does can leak into the next one
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def _version(value: str, image: str) -> str:
    """``nginx:1.25@sha256:…`` -> ``1.25@sha256:…``: what changed when the tag stays (digest tracking)."""
    if value.startswith(image) and value[len(image) : len(image) + 1] in (":", "@"):
        return value[len(image) :].lstrip(":")
    return value


def _change_vars(change: Change) -> dict[str, Any]:
    variables = change.to_dict()
    variables["old_version"] = _version(change.old, change.image)
    variables["new_version"] = _version(change.new, change.image)
    # "update" (a value rewritten), "insert" (a key or list entry added), "create" (a new file written)
    variables["action"] = "update" if change.insert is None else "create" if change.created else "insert"
    return variables


def summarize(changes: Sequence[Change]) -> str:
    """``Update 3 images in 2 files`` (singular where it applies)."""
    files = len({c.file for c in changes})
    images = len(changes)
    return f"Update {images} image{'s' if images != 1 else ''} in {files} file{'s' if files != 1 else ''}"


def template_context(result: Result, *, source: str) -> dict[str, Any]:
    """The variables a commit message template sees (pull-request templates see these too)."""
    changes = list(result.updates)
    return {
        "changes": [_change_vars(c) for c in changes],
        "summary": summarize(changes),
        "files": sorted({c.file for c in changes}),
        "source": source,
    }


def _where(exc: TemplateError) -> str:
    line = getattr(exc, "lineno", None)
    return f" (line {line})" if isinstance(exc, TemplateSyntaxError) and line else ""


def _compile(template: str) -> Template:
    try:
        return _environment().from_string(template)
    except TemplateError as exc:
        raise ConfigError(f"commit message template does not compile{_where(exc)}: {exc}") from exc


def check_template(template: str) -> None:
    """Compile ``template`` without rendering it; ``ConfigError`` if it is not valid Jinja2."""
    _compile(template)


def render_commit_message(
    result: Result, *, source: str, template: str | None = None, skip_ci: bool = False
) -> str:
    """The commit message for ``result``'s updates in ``source``.

    ``template`` None uses ``DEFAULT_TEMPLATE``. The message ends without a trailing newline, lines carry no
    trailing whitespace, and ``[skip ci]`` is appended to the subject when ``skip_ci`` is set (once).
    Raises ``ConfigError`` naming the problem when the template does not compile, fails while rendering
    (undefined variable, sandbox violation) or renders an empty message.
    """
    context = template_context(result, source=source)
    compiled = _compile(DEFAULT_TEMPLATE if template is None else template)
    try:
        rendered = compiled.render(context)
    except TemplateError as exc:
        raise ConfigError(f"commit message template failed{_where(exc)}: {exc}") from exc
    except Exception as exc:  # a template's own arithmetic or type error: the template is at fault
        raise ConfigError(f"commit message template failed: {type(exc).__name__}: {exc}") from exc
    lines = [line.rstrip() for line in rendered.replace("\r\n", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ConfigError("commit message template rendered an empty message")
    if skip_ci and SKIP_CI not in lines[0]:
        lines[0] = f"{lines[0]} {SKIP_CI}"
    return "\n".join(lines)
