"""The status board, its JSON (DESIGN "Status page and status API"), the HTML pages and the page handler.

Pass outcomes are built from real ``plan.Result`` values (``build_plan`` over a real discovery), so the
board reads exactly what the daemon's passes hand it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from image_updater.discover import discover_files
from image_updater.plan import Candidate, Resolution, Result, build_plan
from image_updater.status import (
    CSP,
    PASSES_KEPT,
    SourceInfo,
    StatusBoard,
    make_page_handler,
    render_plan_html,
)

CANARY = "canary-s3cr3t-9f8e7d6c5b4a"
HOSTILE = "<script>document.title='pwned'</script>"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/tag.app: semver:~1.2
    fluxcd.io/tag.side: "semver:>>>broken"
spec:
  template:
    spec:
      containers:
      - name: app
        image: registry.example/acme/app:1.2.0
      - name: side
        image: registry.example/acme/side:1.0.0
"""


@dataclass(frozen=True)
class Outcome:
    source: str
    result: Result
    commit: str | None = None
    pushed: bool = False
    error: str | None = None
    duration: float = 1.25
    images: frozenset[str] = frozenset()


def planned(file: str = "apps/web.yaml", resolution: Resolution | None = None) -> Result:
    discovery = discover_files({file: DEPLOYMENT})
    keys = discovery.resolve_keys
    answer = resolution or Resolution(
        tag="1.2.3", candidates=(Candidate("1.2.3", "chosen", "highest version within ~1.2"),
                                 Candidate("1.2.0", "lower", "lower than 1.2.3"),
                                 Candidate("2.0.0", "filtered", "outside ~1.2")),
        considered=3,
    )
    return build_plan(discovery, {key: answer for key in keys})


def board_with(*outcomes: Outcome) -> StatusBoard:
    board = StatusBoard(
        [SourceInfo("apps", f"https://bot:{CANARY}@git.example/acme/apps.git", "main")], secrets=[CANARY]
    )
    for outcome in outcomes:
        board.record(outcome, T0)
    return board


def test_snapshot_has_designs_shape_and_types() -> None:
    board = board_with(Outcome("apps", planned()))
    board.set_next_pass("apps", T0.replace(minute=9))
    snap = json.loads(json.dumps(board.snapshot()))  # JSON-serialisable as it is
    assert set(snap) >= {"shard", "sources", "images", "errors", "passes"}
    assert snap["shard"] is None
    (source,) = snap["sources"]
    assert set(source) >= {"name", "url", "branch", "owned", "last_pass", "next_pass", "last_error"}
    assert source["name"] == "apps" and source["branch"] == "main" and source["owned"] is True
    assert source["next_pass"] == "2026-01-02T03:09:05Z"
    assert source["last_error"] is None
    last = source["last_pass"]
    assert set(last) >= {"started", "duration_s", "result", "commit", "pull_request"}
    assert last["started"] == "2026-01-02T03:04:05Z" and last["duration_s"] == 1.25
    assert last["result"] == "errors"  # the broken policy is an error of this pass
    for image in snap["images"]:
        assert set(image) >= {"image", "policy", "origin", "targets", "current", "chosen", "candidates",
                              "error"}
        assert isinstance(image["targets"], list) and isinstance(image["current"], list)
        for target in image["targets"]:
            assert set(target) == {"source", "file", "line"}
        for candidate in image["candidates"]:
            assert set(candidate) == {"tag", "status", "reason"}
    app = next(i for i in snap["images"] if i["image"] == "registry.example/acme/app")
    assert app["policy"] == "semver:~1.2" and app["origin"] == "annotation"
    assert app["targets"] == [{"source": "apps", "file": "apps/web.yaml", "line": 14}]
    assert app["current"] == ["1.2.0"] and app["chosen"] == "1.2.3"
    assert [c["status"] for c in app["candidates"]] == ["chosen", "lower", "filtered"]
    assert app["error"] is None
    # the annotation whose policy does not parse is under errors with its file and line
    (error,) = snap["errors"]
    assert error["source"] == "apps" and error["file"] == "apps/web.yaml" and isinstance(error["line"], int)
    assert "broken" in error["message"] or "semver" in error["message"]
    (entry,) = snap["passes"]
    assert entry["source"] == "apps" and entry["result"] == "errors"


def test_current_tag_is_what_the_files_hold_after_the_daemons_commit() -> None:
    snap = board_with(Outcome("apps", planned(), commit="a" * 40, pushed=True)).snapshot()
    app = next(i for i in snap["images"] if i["image"] == "registry.example/acme/app")
    assert app["current"] == ["1.2.3"]
    assert snap["sources"][0]["last_pass"]["commit"] == "a" * 40


def test_no_secret_anywhere() -> None:
    message = f"git push to https://bot:{CANARY}@git.example failed: {CANARY}"
    failing = Outcome("apps", Result(), error=message)
    board = board_with(Outcome("apps", planned()), failing)
    text = json.dumps(board.snapshot())
    assert CANARY not in text
    assert "git.example/acme/apps.git" in text  # the URL is there, without its credentials
    handler = make_page_handler(board, None)
    for path in ("/", "/api/v1/status", "/images/registry.example/acme/app"):
        answer = call(handler, "GET", path)
        assert answer is not None and answer[0] == 200
        assert CANARY.encode() not in answer[2]


def test_a_focused_pass_updates_its_images_and_keeps_the_others() -> None:
    board = board_with(Outcome("apps", planned()))
    other = discover_files({"apps/other.yaml": DEPLOYMENT.replace("acme/app", "acme/api")})
    board.record(Outcome("apps", build_plan(other, {k: Resolution(tag="1.2.9") for k in other.resolve_keys})),
                 T0)
    names = {i["image"] for i in board.snapshot()["images"]}
    assert "registry.example/acme/app" not in names  # a full pass replaces what the source showed
    focused = planned(resolution=Resolution(tag="1.2.7"))
    focused = Result(updates=focused.updates)  # the pass over the pushed image only
    board.record(Outcome("apps", focused), T0, focused=True)
    images = {i["image"]: i for i in board.snapshot()["images"]}
    assert images["registry.example/acme/app"]["chosen"] == "1.2.7"
    assert images["registry.example/acme/api"]["chosen"] == "1.2.9"  # kept from the full pass
    board.record(Outcome("apps", Result(updates=planned(resolution=Resolution(tag="1.2.8")).updates)), T0,
                 focused=True)
    images = {i["image"]: i for i in board.snapshot()["images"]}
    assert images["registry.example/acme/app"]["chosen"] == "1.2.8"
    assert len(images["registry.example/acme/app"]["targets"]) == 1  # replaced, not added up
    assert images["registry.example/acme/api"]["chosen"] == "1.2.9"


def test_registry_error_is_the_images_error() -> None:
    result = planned(resolution=Resolution(error="registry registry.example, image acme/app: 503"))
    snap = board_with(Outcome("apps", result)).snapshot()
    app = next(i for i in snap["images"] if i["image"] == "registry.example/acme/app")
    assert app["error"] == "registry registry.example, image acme/app: 503"
    assert (app["policy"], app["origin"], app["current"], app["chosen"]) == (
        "semver:~1.2", "annotation", ["1.2.0"], None)
    assert app["targets"] == [{"source": "apps", "file": "apps/web.yaml", "line": 14}]


def test_keeps_the_last_passes_and_the_last_outcome_per_source() -> None:
    board = board_with()
    for number in range(PASSES_KEPT + 7):
        board.record(Outcome("apps", Result(), commit=f"{number:040x}"), T0)
    snap = board.snapshot()
    assert len(snap["passes"]) == PASSES_KEPT
    assert snap["passes"][0]["commit"] == f"{PASSES_KEPT + 6:040x}"  # newest first
    assert snap["sources"][0]["last_pass"]["commit"] == f"{PASSES_KEPT + 6:040x}"


def test_recording_and_reading_from_threads() -> None:
    board = board_with()
    result = planned()
    errors: list[BaseException] = []

    def write() -> None:
        for _ in range(300):
            board.record(Outcome("apps", result), T0)

    def read() -> None:
        try:
            for _ in range(300):
                json.dumps(board.snapshot())
        except BaseException as exc:  # any failure of a reader fails the test
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(2)] + [threading.Thread(target=read)
                                                                    for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert errors == []
    assert len(board.snapshot()["passes"]) == PASSES_KEPT


def call(handler: Any, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    return asyncio.run(handler(method, path, headers or {}))


def test_handler_paths_statuses_and_headers() -> None:
    handler = make_page_handler(board_with(Outcome("apps", planned())), None)
    status, headers, body = call(handler, "GET", "/")
    names = dict(headers)
    assert status == 200 and names["Content-Type"] == "text/html; charset=utf-8"
    assert names["Content-Security-Policy"] == CSP and "default-src 'none'" in CSP
    assert "script-src" not in CSP  # no script may run at all
    assert names["X-Content-Type-Options"] == "nosniff"
    assert names["Cache-Control"] == "no-store"
    assert names["Referrer-Policy"] == "no-referrer"
    assert int(names["Content-Length"]) == len(body)
    assert b"<script" not in body
    # the inline style is the one the CSP's hash admits
    import hashlib
    style = re.search(rb"<style>(.*?)</style>", body, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1)).digest()).decode()
    assert f"'sha256-{digest}'" in CSP

    status, headers, body = call(handler, "GET", "/api/v1/status?pretty=1")
    assert status == 200 and dict(headers)["Content-Type"] == "application/json"
    assert json.loads(body)["sources"][0]["name"] == "apps"

    status, headers, body = call(handler, "HEAD", "/api/v1/status")
    assert status == 200 and body == b"" and int(dict(headers)["Content-Length"]) > 0

    status, _, body = call(handler, "GET", "/images/registry.example/acme/app")
    assert status == 200 and b"1.2.3" in body and b"highest version within ~1.2" in body
    status, _, body = call(handler, "GET", "/images/registry.example/acme/none")
    assert status == 404 and b"registry.example/acme/none" in body

    status, headers, _ = call(handler, "POST", "/api/v1/status")
    assert status == 405 and dict(headers)["Allow"] == "GET, HEAD"
    assert call(handler, "GET", "/healthz") is None
    assert call(handler, "GET", "/metrics") is None
    assert call(handler, "GET", "/imagesx") is None


def test_pages_are_rendered_once_per_change_of_the_board() -> None:
    """The handler caches each rendered page until the board changes (a recorded pass, a next-pass time):
    a page is never older than the board, and a burst of requests costs one rendering."""
    board = board_with(Outcome("apps", planned()))
    handler = make_page_handler(board, None)
    first = json.loads(call(handler, "GET", "/api/v1/status")[2])
    again = call(handler, "GET", "/api/v1/status")[2]
    assert json.loads(again) == first and len(first["passes"]) == 1
    board.record(Outcome("apps", planned(), error="push rejected"), T0 + timedelta(hours=1))
    after = json.loads(call(handler, "GET", "/api/v1/status")[2])
    assert len(after["passes"]) == 2 and after["sources"][0]["last_error"] == "push rejected"
    board.set_next_pass("apps", T0 + timedelta(hours=2))
    nxt = json.loads(call(handler, "GET", "/api/v1/status")[2])["sources"][0]["next_pass"]
    assert nxt is not None and nxt.startswith("2026-01-02T05:04:05")


def test_handler_token_auth() -> None:
    token = "status-token-0123456789"
    handler = make_page_handler(board_with(Outcome("apps", planned())), token)
    for path in ("/", "/api/v1/status", "/images/registry.example/acme/app"):
        status, headers, body = call(handler, "GET", path)
        assert status == 401 and "WWW-Authenticate" in dict(headers)
        assert b"acme" not in body
    assert call(handler, "GET", "/healthz") is None  # not ours: stays open
    assert call(handler, "GET", "/", {"authorization": f"Bearer {token}"})[0] == 200
    assert call(handler, "GET", "/", {"authorization": "Bearer wrong"})[0] == 401
    assert call(handler, "GET", "/", {"authorization": f"Bearer {token}x"})[0] == 401
    basic = base64.b64encode(f"anyone:{token}".encode()).decode()
    assert call(handler, "GET", "/", {"authorization": f"Basic {basic}"})[0] == 200
    wrong = base64.b64encode(b"anyone:nope").decode()
    assert call(handler, "GET", "/", {"authorization": f"Basic {wrong}"})[0] == 401
    assert call(handler, "GET", "/", {"authorization": "Basic !!!"})[0] == 401
    assert call(handler, "HEAD", "/api/v1/status", {"authorization": f"Bearer {token}"})[2] == b""


def test_hostile_names_are_escaped() -> None:
    file = f"{HOSTILE}\x1b[31m\u202e.yaml"
    result = planned(file=file, resolution=Resolution(
        tag="1.2.3", candidates=(Candidate('1.2.3"><b>x', "chosen", f"{HOSTILE} reason"),), considered=1,
    ))
    board = board_with(Outcome("apps", result, error=f"sync failed: {HOSTILE}"))
    handler = make_page_handler(board, None)
    pages = [call(handler, "GET", "/")[2], call(handler, "GET", "/images/registry.example/acme/app")[2],
             render_plan_html(result).encode()]
    for page in pages:
        text = page.decode()
        assert "<script" not in text and '"><b>' not in text
        assert "&lt;script&gt;" in text
        assert "\x1b" not in text and "\u202e" not in text
    assert "\\x1b[31m\\u202e.yaml" in pages[2].decode()
    # the JSON keeps the real values (json escapes what it must)
    snap = json.loads(call(handler, "GET", "/api/v1/status")[2])
    assert any(t["file"] == file for i in snap["images"] for t in i["targets"])


def test_plan_html_is_self_contained() -> None:
    from image_updater.report import FORMATS, render

    assert "html" in FORMATS
    page = render(planned(), "html")
    assert page == render_plan_html(planned())
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta name="viewport"' in page and 'lang="en"' in page
    assert "<script" not in page and "http-equiv=\"refresh\"" not in page
    assert re.search(r"<(link|img|iframe)\b", page) is None  # nothing fetched from elsewhere
    assert '<th scope="col">' in page and "<caption>" in page and "<main" in page
    assert "highest version within ~1.2" in page  # the explain table
    assert f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">' in page


@pytest.mark.parametrize("result", [Result(), planned()])
def test_board_without_passes_or_with_empty_results(result: Result) -> None:
    board = StatusBoard([SourceInfo("a", "/srv/a", "main")])
    assert board.snapshot()["sources"][0]["last_pass"] is None
    board.record(Outcome("a", result), T0)
    assert call(make_page_handler(board, None), "GET", "/")[0] == 200


def test_the_daemon_records_every_outcome_on_its_board() -> None:
    from image_updater.daemon import Daemon
    from tests.test_daemon import Recorder, run_while, wait_until

    result = planned()

    async def behaviour(name: str, n: int, stop: threading.Event) -> Any:
        return Outcome(name, result=result, commit="b" * 40, pushed=True)

    recorder = Recorder(behaviour)
    daemon = Daemon(["apps"], interval=timedelta(hours=1), pass_fn=recorder)
    before = datetime.now(UTC).replace(microsecond=0)

    async def body() -> None:
        await wait_until(lambda: len(daemon.status_board.snapshot()["passes"]) == 1)

    asyncio.run(run_while(daemon, body))
    snap = daemon.status_board.snapshot()
    (source,) = snap["sources"]
    started = datetime.fromisoformat(source["last_pass"]["started"].replace("Z", "+00:00"))
    assert started >= before and source["last_pass"]["result"] == "errors"
    assert source["next_pass"] is not None  # the scheduler's next tick, about an hour on
    app = next(i for i in snap["images"] if i["image"] == "registry.example/acme/app")
    assert app["current"] == ["1.2.3"]


def test_status_auth_settings_and_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from image_updater.daemon import status_board_for, status_token
    from image_updater.errors import ConfigError
    from image_updater.settings import Settings, load_settings

    settings = Settings.model_validate({
        "sources": [{"name": "apps", "url": "https://git.example/acme/apps.git",
                     "auth": {"token_env": "GIT_TOKEN"}}],
        "http": {"status_auth": {"token_env": "STATUS_TOKEN"}},
    })
    assert settings.http.status_auth is not None and settings.http.status_auth.token_env == "STATUS_TOKEN"
    monkeypatch.delenv("STATUS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="STATUS_TOKEN"):
        status_token(settings)
    monkeypatch.setenv("STATUS_TOKEN", "a-status-token")
    assert status_token(settings) == "a-status-token"
    assert status_token(Settings.model_validate({"sources": []})) is None
    # a token pasted where the variable's name belongs is refused without being repeated
    config = tmp_path / "config.yaml"
    config.write_text("http:\n  status_auth: {token_env: ghp_" + "A1b2C3d4E5" * 4 + "}\n")
    with pytest.raises(ConfigError, match=r"http\.status_auth\.token_env") as refused:
        load_settings(config, env={})
    assert "A1b2C3d4E5" not in str(refused.value)
    config.write_text("http:\n  status_auth: {}\n")
    with pytest.raises(ConfigError, match=r"http\.status_auth\.token_env: required"):
        load_settings(config, env={})
    # the git token never shows on the board, even inside a message
    monkeypatch.setenv("GIT_TOKEN", CANARY)
    board = status_board_for(settings, "a-status-token")
    board.record(Outcome("apps", Result(), error=f"push failed: {CANARY}"), T0)
    assert CANARY not in json.dumps(board.snapshot())
