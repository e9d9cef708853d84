"""Rendering a Result: summary wording, the terminal table, DESIGN's JSON schema, Markdown for pull-request
comments (escaping), and the unified diff (CRLF, missing final newline, several files)."""

from __future__ import annotations

import json

import pytest

from image_updater.plan import Change, ErrorEntry, Result, Skipped, Unchanged
from image_updater.report import (
    counts,
    render,
    render_diff,
    render_json,
    render_markdown,
    render_table,
    short,
    summary,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4


def change(
    file: str = "apps/web.yaml", line: int = 12, old: str = "nginx:1.25.1", new: str = "nginx:1.25.4",
    **kw: object,
) -> Change:
    fields: dict[str, object] = dict(
        file=file, line=line, resource="Deployment/shop/web", container="web", image="nginx", old=old,
        new=new, old_tag="1.25.1", new_tag="1.25.4", policy="semver:~1.25", origin="annotation",
    )
    fields.update(kw)
    return Change(**fields)  # type: ignore[arg-type]


RESULT = Result(
    updates=(change(), change(file="apps/db.yaml", line=3, old="postgres:15.1", new="postgres:15.4",
                              container=None, resource=None, image="postgres")),
    unchanged=(Unchanged(file="a.yaml", line=1, resource=None, container=None, image="redis", old="redis:7",
                         old_tag="7", policy="semver:^7", origin="policy-file"),),
    skipped=(Skipped(file="apps/web.yaml", line=20, image="busybox",
                     reason="no policy for container sidecar"),),
    errors=(ErrorEntry(file="apps/x.yaml", line=4, image="ghcr.io/a|b",
                       message="registry ghcr.io: 503 | retry"),
            ErrorEntry(file=None, line=None, image=None, message="source failed")),
)


@pytest.mark.parametrize(("result", "text"), [
    (Result(), "no updates"),
    (Result(updates=(change(),)), "1 update in 1 file"),
    (Result(updates=(change(), change(line=20), change(file="b.yaml"))), "3 updates in 2 files"),
])
def test_summary(result: Result, text: str) -> None:
    assert summary(result) == text


def test_counts() -> None:
    assert counts(RESULT) == "2 updates in 2 files, 1 unchanged, 1 skipped, 2 errors"
    assert counts(Result()) == "no updates"


def test_table() -> None:
    table = render_table(RESULT)
    lines = table.splitlines()
    assert lines[0].split() == ["FILE:LINE", "RESOURCE", "CONTAINER", "OLD", "NEW", "POLICY"]
    assert lines[1].split() == ["apps/web.yaml:12", "Deployment/shop/web", "web", "nginx:1.25.1",
                                "nginx:1.25.4", "semver:~1.25", "(annotation)"]
    assert lines[2].split()[:3] == ["apps/db.yaml:3", "-", "-"]
    # columns line up
    assert lines[0].index("OLD") == lines[1].index("nginx:1.25.1") == lines[2].index("postgres:15.1")
    assert "Skipped:" in lines and "Errors:" in lines
    assert "  apps/x.yaml:4: ghcr.io/a|b: registry ghcr.io: 503 | retry" in lines
    assert "  -: source failed" in lines
    assert lines[-1] == counts(RESULT)
    assert all(line == line.rstrip() for line in lines)


def test_table_without_anything() -> None:
    assert render_table(Result()) == "no updates\n"


def test_json_is_exactly_the_design_schema() -> None:
    data = json.loads(render_json(RESULT))
    assert list(data) == ["updates", "unchanged", "skipped", "errors"]
    assert list(data["updates"][0]) == ["file", "line", "resource", "container", "image", "old", "new",
                                        "old_tag", "new_tag", "policy", "origin"]
    assert list(data["unchanged"][0]) == ["file", "line", "resource", "container", "image", "old", "old_tag",
                                          "policy", "origin"]
    assert list(data["skipped"][0]) == ["file", "line", "image", "reason"]
    assert list(data["errors"][0]) == ["file", "line", "image", "message"]
    assert data["errors"][1] == {"file": None, "line": None, "image": None, "message": "source failed"}
    assert render(RESULT, "json") == render_json(RESULT)


def test_markdown_escapes_table_cells() -> None:
    md = render_markdown(RESULT)
    assert md.startswith("### image-updater: 2 updates in 2 files\n")
    row = "| `apps/web.yaml:12` | Deployment/shop/web | web | `nginx` | `nginx:1.25.1` | `nginx:1.25.4` |"
    assert row in md
    # a pipe inside a cell would split it: escaped in text, replaced in code spans
    assert "registry ghcr.io: 503 \\| retry" in md
    assert "`ghcr.io/a¦b`" in md
    assert "<details><summary>1 skipped</summary>" in md
    assert md.rstrip().endswith("1 already at the tag their policy picks.")
    for row in [line for line in md.splitlines() if line.startswith("| `apps/web.yaml:12`")]:
        assert row.count(" | ") == 7


def test_markdown_without_updates() -> None:
    assert render_markdown(Result()) == "### image-updater: no updates\n"


def test_short_digests() -> None:
    assert short(f"nginx:1.25@{DIGEST}") == "nginx:1.25@sha256:0123456789ab…"
    assert short("nginx:1.25") == "nginx:1.25"


def test_diff_like_git() -> None:
    before = "a: 1\nimage: nginx:1.25.1\nb: 2\n"
    after = "a: 1\nimage: nginx:1.25.4\nb: 2\n"
    crlf_before = "x: 1\r\nimage: redis:7.0\r\n"
    crlf_after = "x: 1\r\nimage: redis:7.2\r\n"
    diff = render_diff({"z.yaml": (before, after), "crlf.yaml": (crlf_before, crlf_after),
                        "same.yaml": ("a\n", "a\n"), "eof.yaml": ("image: x:1", "image: x:2")})
    assert diff == (
        "--- a/crlf.yaml\n+++ b/crlf.yaml\n@@ -1,2 +1,2 @@\n"
        " x: 1\r\n-image: redis:7.0\r\n+image: redis:7.2\r\n"
        "--- a/eof.yaml\n+++ b/eof.yaml\n@@ -1 +1 @@\n-image: x:1\n\\ No newline at end of file\n"
        "+image: x:2\n\\ No newline at end of file\n"
        "--- a/z.yaml\n+++ b/z.yaml\n@@ -1,3 +1,3 @@\n"
        " a: 1\n-image: nginx:1.25.1\n+image: nginx:1.25.4\n b: 2\n"
    )
    assert render(Result(), "diff") == ""


def test_diff_does_not_split_at_unicode_line_separators() -> None:
    before = "note: 'a\u2028b'\nimage: x:1\n"
    diff = render_diff({"u.yaml": (before, before.replace("x:1", "x:2"))})
    assert " note: 'a\\u2028b'\n" in diff  # one line, the separator shown escaped (printable)


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render(Result(), "xml")
