"""``plan --format html`` in a real browser: headless Debian ``chromium`` renders the page that ``plan``
wrote against the real registry, for a repository with a broken policy and hostile file names.

The DOM chromium dumps (after running whatever script it would run) must show every image with its current
and chosen tag and the broken policy's error, and a hostile ``<script>document.title='pwned'</script>`` in a
file path must stay text: the title is unchanged, with JavaScript enabled and disabled. A phone-sized
screenshot goes to ``$IMAGE_UPDATER_ARTIFACTS`` (default tests/artifacts/, git-ignored) for CI to keep.
Without chromium the tests skip, except under ``CI=true``, where they fail.

``--dump-dom`` needs JavaScript to serialise the page (with ``--blink-settings=scriptEnabled=false`` it
prints nothing), so the DOM with scripts disabled is read over the DevTools protocol instead
(``--remote-debugging-pipe``, ``Emulation.setScriptExecutionDisabled``, ``DOM.getOuterHTML``); a probe page
whose own script changes its title shows that scripts really are off there.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ImagePusher, RegistryServer

HOSTILE_DIR = "<script>document.title='pwned'<"  # with the file below: <script>...</script>.yaml
HOSTILE_FILE = "script>.yaml"
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
        image: {host}/acme/app:1.2.0
      - name: side
        image: {host}/acme/side:1.0.0
"""
HOSTILE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: "x"
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/tag.w: glob:main-*
spec:
  template:
    spec:
      containers:
      - name: w
        image: {host}/acme/worker:main-1
"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed (scripts/setup.sh installs it); CI skips nothing")
        pytest.skip("chromium is not installed (scripts/setup.sh installs the Debian package)")
    return found


def artifacts() -> Path:
    where = Path(os.environ.get("IMAGE_UPDATER_ARTIFACTS") or Path(__file__).parent / "artifacts")
    where.mkdir(parents=True, exist_ok=True)
    return where


class Dom(HTMLParser):
    """The title, the text of every table row (cells joined by " | ") and every script element."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.rows: list[str] = []
        self.scripts = 0
        self._stack: list[str] = []
        self._cells: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._stack.append(tag)
        if tag == "script":
            self.scripts += 1
        elif tag == "tr":
            self._cells = []
        elif tag in ("td", "th") and self._cells is not None:
            self._cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()
        if tag == "tr" and self._cells is not None:
            self.rows.append(" | ".join(cell.strip() for cell in self._cells))
            self._cells = None

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1] == "title":
            self.title += data
        elif self._cells:
            self._cells[-1] += data


def browse(browser: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
         "--no-first-run", "--disable-extensions", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "HOME": str(profile)},
    )


class DevTools:
    """Chromium's DevTools protocol over ``--remote-debugging-pipe``: NUL-terminated JSON on fds 3 and 4."""

    def __init__(self, browser: str, profile: Path, *, deadline: float = 90.0) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds() -> None:  # in the child: the pipe's ends as fds 3 and 4, whatever numbers they had
            read_end, write_end = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
             "--no-first-run", "--disable-extensions", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, close_fds=False, env={**os.environ, "HOME": str(profile)},
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._id = 0
        self._end = time.monotonic() + deadline  # every read below is bounded by this
        self._events: list[dict[str, Any]] = []

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = self._end - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer within the deadline")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    raise EOFError("chromium closed the DevTools pipe")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        answer: dict[str, Any] = json.loads(message)
        return answer

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._id += 1
        request: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            request["sessionId"] = session
        os.write(self._to_child, json.dumps(request).encode() + b"\0")
        while True:
            message = self._read()
            if message.get("id") == self._id:
                assert "error" not in message, f"{method}: {message['error']}"
                result: dict[str, Any] = message.get("result", {})
                return result
            self._events.append(message)

    def wait_for(self, method: str) -> None:
        if any(event.get("method") == method for event in self._events):
            return
        while self._read().get("method") != method:
            pass

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, TimeoutError, AssertionError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        os.close(self._to_child)
        os.close(self._from_child)


def dom_without_scripts(browser: str, page: Path, profile: Path) -> str:
    """The page's DOM after loading it with script execution disabled."""
    tools = DevTools(browser, profile)
    try:
        target = tools.send("Target.createTarget", url="about:blank")["targetId"]
        session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tools.send("Emulation.setScriptExecutionDisabled", session, value=True)
        tools.send("Page.enable", session)
        tools.send("Page.navigate", session, url=page.as_uri())
        tools.wait_for("Page.loadEventFired")
        root = tools.send("DOM.getDocument", session)["root"]["nodeId"]
        html: str = tools.send("DOM.getOuterHTML", session, nodeId=root)["outerHTML"]
        return html
    finally:
        tools.close()


def parsed(html: str) -> Dom:
    dom = Dom()
    dom.feed(html)
    return dom


def test_the_two_ways_of_reading_the_dom_see_scripts_run_or_not(tmp_path: Path) -> None:
    browser = chromium()
    probe = tmp_path / "probe.html"
    probe.write_text("<!DOCTYPE html><title>plain</title><script>document.title='ran'</script><p>x</p>")
    done = browse(browser, probe, tmp_path / "profile-on", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    assert parsed(done.stdout).title == "ran"
    assert parsed(dom_without_scripts(browser, probe, tmp_path / "profile-off")).title == "plain"


@pytest.fixture
def report(registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``plan --format html`` of a repository with a broken policy and a hostile file path."""
    with ImagePusher(registry.url) as pusher:
        pusher.push_many("acme/app", ["1.2.0", "1.2.3", "1.3.0", "2.0.0"])
        pusher.push_many("acme/side", ["1.0.0", "1.1.0"])
        pusher.push_many("acme/worker", ["main-1", "main-2"])
    root = tmp_path / "repo"
    (root / "apps").mkdir(parents=True)
    (root / "apps" / "web.yaml").write_text(DEPLOYMENT.format(host=registry.host))
    (root / HOSTILE_DIR).mkdir()
    (root / HOSTILE_DIR / HOSTILE_FILE).write_text(HOSTILE.format(host=registry.host))
    env = {**os.environ, "IMAGE_UPDATER_CACHE_DIR": str(tmp_path / "cache"),
           "DOCKER_CONFIG": str(tmp_path / "docker")}
    env.pop("IMAGE_UPDATER_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "image_updater", "plan", str(root), "--format", "html"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )
    assert done.returncode == 1, done.stderr  # the broken policy is an error
    page = tmp_path / "report.html"
    page.write_text(done.stdout)
    return page


@pytest.mark.parametrize("scripts", ["enabled", "disabled"])
def test_plan_html_in_chromium(report: Path, registry: RegistryServer, tmp_path: Path, scripts: str) -> None:
    browser = chromium()
    if scripts == "enabled":
        done = browse(browser, report, tmp_path / "profile", "--dump-dom")
        assert done.returncode == 0, done.stderr[-2000:]
        dom = parsed(done.stdout)
    else:
        dom = parsed(dom_without_scripts(browser, report, tmp_path / "profile"))
    assert dom.title == "image-updater plan"  # the hostile <script> did not run
    assert dom.scripts == 0  # ...and is no element at all
    host = registry.host
    rows = dom.rows
    # every image with its current and chosen tag
    app = [r for r in rows if r.startswith(f"{host}/acme/app | semver:~1.2")]
    assert app and "| 1.2.0 | 1.2.3 |" in app[0], rows
    assert any(r.startswith(f"{host}/acme/worker | glob:main-*") and "| main-1 | main-2 |" in r for r in rows)
    # the hostile path shows as text, where the worker is used
    assert any(f"{HOSTILE_DIR}/{HOSTILE_FILE}:" in r for r in rows if "/acme/worker" in r), rows
    # the broken policy's error, with its file
    broken = "apps/web.yaml:8 | - | annotation fluxcd.io/tag.side: invalid policy 'semver:>>>broken'"
    assert any(r.startswith(broken) for r in rows), rows
    # the explain table: why 1.2.0, 1.3.0 and 2.0.0 lost
    assert "1.2.3 | chosen | highest version satisfying ~1.2" in rows
    assert "1.2.0 (current) | lower | 1.2.0 < 1.2.3" in rows
    assert "1.3.0 | filtered | does not satisfy ~1.2" in rows
    assert any(r.startswith("2.0.0 | filtered |") for r in rows)


def test_plan_html_screenshot_on_a_phone(report: Path, tmp_path: Path) -> None:
    browser = chromium()
    shot = artifacts() / "plan-html-390x844.png"
    shot.unlink(missing_ok=True)
    done = browse(browser, report, tmp_path / "profile-shot", "--hide-scrollbars",
                  f"--screenshot={shot}", "--window-size=390,844")
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (390, 844)
    assert len(data) > 5000  # a page was drawn, not a blank surface
