"""Pull-request mode, pure part and settings (issue 11): branch names, groups, titles, bodies, errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from image_updater.errors import ConfigError
from image_updater.plan import Change, Result
from image_updater.prplan import (
    branch_pattern,
    branch_template_problem,
    group_updates,
    is_ours,
    ref_component,
    render_body,
    render_branch,
    render_title,
)
from image_updater.settings import load_settings


def change(image: str, new_tag: str, file: str = "apps/a.yaml", old_tag: str = "1.0") -> Change:
    return Change(file=file, line=3, resource="Deployment/a", container="a", image=image,
                  old=f"{image}:{old_tag}", new=f"{image}:{new_tag}", old_tag=old_tag, new_tag=new_tag,
                  policy="semver:^1", origin="annotation")


@pytest.mark.parametrize(("raw", "safe"), [
    ("ghcr.io/acme/web", "ghcr.io/acme/web"),
    ("127.0.0.1:5000/team/web", "127.0.0.1-5000/team/web"),
    ("a..b", "a-b"),
    ("x/.hidden/y.lock", "x/hidden/y"),
    ("weird name~^?*[", "weird-name"),
    ("@{", "-"),
    ("a//b/", "a/b"),
])
def test_ref_component_makes_valid_ref_parts(raw: str, safe: str) -> None:
    assert ref_component(raw) == safe


def test_branch_templates_are_checked_for_the_grouping() -> None:
    assert branch_template_problem("image-updater/{source}", "source") is None
    assert branch_template_problem("image-updater/{source}/{image}", "image") is None
    assert "must contain {image}" in (branch_template_problem("bot/{source}", "image") or "")
    assert "needs group_by: image" in (branch_template_problem("bot/{image}", "source") or "")
    assert "unknown placeholder {tag}" in (branch_template_problem("bot/{tag}", "source") or "")
    assert "unbalanced" in (branch_template_problem("bot/{source", "source") or "")
    assert "not a valid branch name" in (branch_template_problem("bot..x/{source}", "source") or "")


def test_render_branch_and_its_pattern() -> None:
    branch = render_branch("image-updater/{source}/{image}", source="prod apps", image="127.0.0.1:5000/web")
    assert branch == "image-updater/prod-apps/127.0.0.1-5000/web"
    pattern = branch_pattern("image-updater/{source}/{image}", source="prod apps")
    assert pattern.fullmatch(branch)
    assert not pattern.fullmatch("image-updater/other/127.0.0.1-5000/web")
    assert not pattern.fullmatch("image-updater/prod-apps")


def test_group_by_image_splits_by_image_and_keeps_files_together() -> None:
    web, api = change("r/web", "1.2"), change("r/api", "1.1")
    result = Result(updates=(web, api, change("r/web", "1.2", "b.yaml")))
    groups = group_updates(result, source="s", group_by="image", template="u/{source}/{image}")
    assert [(g.branch, len(g.updates)) for g in groups] == [("u/s/r/api", 1), ("u/s/r/web", 2)]
    [one] = group_updates(result, source="s", group_by="source", template="u/{source}")
    assert one.branch == "u/s" and one.image is None and len(one.updates) == 3
    assert group_updates(Result(), source="s", group_by="source", template="u/{source}") == []


def test_titles_and_bodies() -> None:
    result = Result(updates=(change("r/web", "1.2"),))
    [group] = group_updates(result, source="s", group_by="image", template="u/{image}")
    assert render_title(group, source="s", template=None) == "Update r/web to 1.2"
    assert render_title(group, source="s", template="bump {{ image }} in {{ source }}") == "bump r/web in s"
    body = render_body(group, source="s", template=None, marker="<!-- m -->")
    assert body.endswith("\n\n<!-- m -->\n")
    assert "| apps/a.yaml:3 |" in body or "apps/a.yaml" in body
    assert "1.0" in body and "1.2" in body and "Opened by image-updater" in body
    custom = render_body(group, source="s", template="{{ summary }}", marker="<!-- m -->")
    assert custom == "Update 1 image in 1 file\n\n<!-- m -->\n"
    with pytest.raises(ConfigError, match="body_template failed"):
        render_body(group, source="s", template="{{ nope }}", marker="m")


def test_ownership_needs_our_trailer_and_our_committer() -> None:
    me = ("Image Bot", "bot@example.com")
    assert is_ours("Update\n\nImage-Updater-Source: s\n", me, source="s", identity=me)
    assert not is_ours("Update\n\nImage-Updater-Source: other", me, source="s", identity=me)
    assert not is_ours("Update\n\nImage-Updater-Source: s", ("Eve", "e@x"), source="s", identity=me)
    assert not is_ours("fix by hand", me, source="s", identity=me)


def write(tmp_path: Path, source_extra: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent("""\
        sources:
          - name: apps
            url: https://git.example.com/acme/apps.git
            auth: {token_env: GIT_TOKEN}
        """) + textwrap.indent(textwrap.dedent(source_extra), "    "))
    return path


def test_pull_request_settings_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "pull_request: {provider: github}\n"), env={})
    pr = settings.sources[0].pull_request
    assert pr is not None
    assert (pr.group_by, pr.branch_template, pr.draft, pr.labels) == ("source", "image-updater/{source}",
                                                                       False, [])
    assert settings.sources[0].pr_token_env == "GIT_TOKEN"  # the source's HTTPS token by default
    by_image = load_settings(write(tmp_path, "pull_request: {provider: gitlab, group_by: image, "
                                              "token_env: FORGE}\n"), env={})
    pr2 = by_image.sources[0].pull_request
    assert pr2 is not None and pr2.branch_template == "image-updater/{source}/{image}"
    assert by_image.sources[0].pr_token_env == "FORGE"


@pytest.mark.parametrize(("extra", "message"), [
    ("push_branch: x\npull_request: {provider: github}\n", "cannot be combined with pull_request"),
    ("pull_request: {provider: github, group_by: image, branch: 'bot/{source}'}\n", "must contain {image}"),
    ("pull_request: {provider: bitbucket}\n", "provider"),
    ("pull_request: {provider: github, title_template: '{{ x'}\n", "title_template does not compile"),
    ("pull_request: {provider: github, api_url: 'ftp://x'}\n", "http:// or https://"),
])
def test_pull_request_settings_errors(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match="sources\\[0\\]") as exc:
        load_settings(write(tmp_path, extra), env={})
    assert message in str(exc.value)


def test_a_forge_token_is_required(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("sources: [{name: a, url: /srv/a.git, pull_request: {provider: gitea}}]\n")
    with pytest.raises(ConfigError, match=r"pull_request\.token_env"):
        load_settings(path, env={})
