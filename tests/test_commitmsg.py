"""Commit messages: the default message (golden), summaries, [skip ci], user templates in the sandbox and
the errors a broken template produces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from image_updater.commitmsg import DEFAULT_TEMPLATE, check_template, render_commit_message, summarize
from image_updater.errors import ConfigError
from image_updater.plan import Change, Result


def change(
    file: str = "apps/web/deployment.yaml",
    image: str = "ghcr.io/acme/web",
    old_tag: str | None = "1.2.0",
    new_tag: str = "1.3.0",
    *,
    old: str | None = None,
    new: str | None = None,
    container: str | None = "web",
    origin: str = "annotation",
) -> Change:
    return Change(
        file=file,
        line=12,
        resource="Deployment/prod/web",
        container=container,
        image=image,
        old=old if old is not None else f"{image}:{old_tag}" if old_tag else image,
        new=new if new is not None else f"{image}:{new_tag}",
        old_tag=old_tag,
        new_tag=new_tag,
        policy="semver:^1",
        origin=origin,  # type: ignore[arg-type]
    )


RESULT = Result(
    updates=(
        change(),
        change(image="nginx", old_tag="1.25-alpine", new_tag="1.27-alpine", container="proxy"),
        change(file="apps/api/values.yaml", image="ghcr.io/acme/api", old_tag=None, new_tag="2.0.1"),
        change(
            file="apps/api/values.yaml",
            image="redis",
            old_tag="7.2",
            new_tag="7.2",
            old="redis:7.2@sha256:" + "a" * 64,
            new="redis:7.2@sha256:" + "b" * 64,
        ),
    )
)


def test_default_message_golden() -> None:
    assert render_commit_message(RESULT, source="apps") == (
        "Update 4 images in 2 files\n"
        "\n"
        "apps/web/deployment.yaml: ghcr.io/acme/web 1.2.0 -> 1.3.0\n"
        "apps/web/deployment.yaml: nginx 1.25-alpine -> 1.27-alpine\n"
        "apps/api/values.yaml: ghcr.io/acme/api latest -> 2.0.1\n"
        f"apps/api/values.yaml: redis 7.2@sha256:{'a' * 64} -> 7.2@sha256:{'b' * 64}"
    )


def test_default_message_with_skip_ci() -> None:
    message = render_commit_message(Result(updates=(change(),)), source="apps", skip_ci=True)
    assert message == (
        "Update 1 image in 1 file [skip ci]\n\napps/web/deployment.yaml: ghcr.io/acme/web 1.2.0 -> 1.3.0"
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ([], "Update 0 images in 0 files"),
        ([change()], "Update 1 image in 1 file"),
        ([change(), change(image="nginx")], "Update 2 images in 1 file"),
        ([change(), change(file="b.yaml")], "Update 2 images in 2 files"),
    ],
)
def test_summary(changes: list[Change], expected: str) -> None:
    assert summarize(changes) == expected


def test_user_template_sees_every_variable() -> None:
    template = (
        "chore({{ source }}): {{ summary }}\n\n"
        "{% for c in changes %}"
        "- {{ c.file }}:{{ c.line }} {{ c.resource }} [{{ c.container }}] {{ c.image }} "
        "{{ c.old_tag }} => {{ c.new_tag }} ({{ c.policy }}, {{ c.origin }}) {{ c.old }} {{ c.new }}\n"
        "{% endfor %}files: {{ files | join(', ') }}\n"
    )
    message = render_commit_message(Result(updates=(change(),)), source="prod", template=template)
    assert message == (
        "chore(prod): Update 1 image in 1 file\n\n"
        "- apps/web/deployment.yaml:12 Deployment/prod/web [web] ghcr.io/acme/web 1.2.0 => 1.3.0 "
        "(semver:^1, annotation) ghcr.io/acme/web:1.2.0 ghcr.io/acme/web:1.3.0\n"
        "files: apps/web/deployment.yaml"
    )


def test_skip_ci_is_added_once_to_the_subject_only() -> None:
    template = "{{ summary }}\n\nbody line\n"
    message = render_commit_message(RESULT, source="s", template=template, skip_ci=True)
    assert message == "Update 4 images in 2 files [skip ci]\n\nbody line"
    already = render_commit_message(RESULT, source="s", template="deploy [skip ci]\n", skip_ci=True)
    assert already == "deploy [skip ci]"


def test_output_is_trimmed_and_has_no_trailing_whitespace() -> None:
    message = render_commit_message(RESULT, source="s", template="\n\n  subject   \nbody   \n\n\n")
    assert message == "  subject\nbody"


def test_comment_like_lines_are_kept() -> None:
    # git's default cleanup would drop lines starting with '#'; the renderer keeps them (so does gitrepo)
    message = render_commit_message(RESULT, source="s", template="subject\n\n# {{ summary }}\n")
    assert message.splitlines()[-1] == "# Update 4 images in 2 files"


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{{ summary ", "does not compile (line 1)"),
        ("ok\n{% for c in changes %}\n{{ c.file }}", "does not compile (line 3)"),
        ("{{ sumary }}", "'sumary' is undefined"),
        ("{{ changes[0].flie }}", "flie"),
        ("{{ ''.__class__.__mro__ }}", "template failed"),
        ("{{ summary.__class__ }}", "template failed"),
        ("{{ 1 // 0 }}", "ZeroDivisionError"),
        ("{% if false %}x{% endif %}", "empty message"),
    ],
)
def test_broken_templates_are_config_errors(template: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="commit message template") as info:
        render_commit_message(RESULT, source="s", template=template)
    assert fragment in str(info.value)


def test_check_template() -> None:
    check_template(DEFAULT_TEMPLATE)
    check_template("{{ summary }}")
    with pytest.raises(ConfigError, match=r"does not compile \(line 1\)"):
        check_template("{% for %}")


def test_sandbox_blocks_unsafe_calls() -> None:
    # the sandbox refuses to reach Python internals even through an allowed object
    with pytest.raises(ConfigError):
        render_commit_message(RESULT, source="s", template="{{ changes.__len__.__globals__ }}")
    with pytest.raises(ConfigError):
        render_commit_message(RESULT, source="s", template="{{ cycler.__init__.__globals__.os }}")


tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True)
files = st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8}){0,2}\.yaml", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(files, tags, tags), min_size=1, max_size=8), st.booleans())
def test_default_message_shape(items: list[tuple[str, str, str]], skip_ci: bool) -> None:
    changes = tuple(change(file=f, image="nginx", old_tag=o, new_tag=n) for f, o, n in items)
    lines = render_commit_message(Result(updates=changes), source="s", skip_ci=skip_ci).split("\n")
    assert lines[0] == summarize(changes) + (" [skip ci]" if skip_ci else "")
    assert lines[1] == ""
    assert len(lines) == 2 + len(changes)
    for line, c in zip(lines[2:], changes, strict=True):
        assert line.startswith(f"{c.file}: nginx ")
        assert line.endswith(f" -> {c.new_tag}")
