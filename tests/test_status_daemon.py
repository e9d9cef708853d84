"""The status page as the daemon serves it, in a real browser: ``image-updater run`` (a child process) on a
bare repository after its start-up pass, with ``http.status_auth`` set.

- ``/``, ``/api/v1/status`` and ``/images/...`` answer 401 without the token; ``/healthz`` stays open.
- With the token, the JSON lists the image with the tag the daemon committed as current and chosen, and the
  broken policy under ``errors`` with its file and line.
- Headless Chromium (DevTools pipe, the token as a header), with scripts on and off: the page shows the
  image, its tags and the broken policy's error; a file path made of ``<script>`` does not run and is no
  element. A phone-sized screenshot goes to the artifacts folder.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import ImagePusher
from tests.test_daemon_e2e import Daemon, free_port, get, wait_for
from tests.test_status_browser import (
    DEPLOYMENT,
    HOSTILE,
    HOSTILE_DIR,
    HOSTILE_FILE,
    DevTools,
    Dom,
    artifacts,
    chromium,
    parsed,
)

TOKEN = "status-token-canary-5f0c2a9e"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def page_in_chromium(
    browser: str, url: str, profile: Path, *, scripts: bool, shot: Path | None = None
) -> Dom:
    """Load ``url`` with the token as a header; the DOM as Chromium holds it after the load."""
    tools = DevTools(browser, profile)
    try:
        target = tools.send("Target.createTarget", url="about:blank")["targetId"]
        session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tools.send("Network.enable", session)
        tools.send("Network.setExtraHTTPHeaders", session, headers={"Authorization": f"Bearer {TOKEN}"})
        if not scripts:
            tools.send("Emulation.setScriptExecutionDisabled", session, value=True)
        if shot is not None:
            tools.send("Emulation.setDeviceMetricsOverride", session, width=390, height=844,
                       deviceScaleFactor=1, mobile=True)
        tools.send("Page.enable", session)
        tools.send("Page.navigate", session, url=url)
        tools.wait_for("Page.loadEventFired")
        if shot is not None:
            shot.write_bytes(base64.b64decode(tools.send("Page.captureScreenshot", session)["data"]))
        root = tools.send("DOM.getDocument", session)["root"]["nodeId"]
        html: str = tools.send("DOM.getOuterHTML", session, nodeId=root)["outerHTML"]
        return parsed(html)
    finally:
        tools.close()


@pytest.fixture
def serving(
    tmp_path: Path, registry_factory: Any, bare_repo: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Daemon, str]]:
    registry = registry_factory()
    with ImagePusher(registry.url) as pusher:
        for i, tag in enumerate(["1.2.0", "1.2.3", "1.3.0", "2.0.0"]):
            pusher.push("acme/app", tag, created=T0 + timedelta(days=i))
        pusher.push_many("acme/side", ["1.0.0", "1.1.0"])
        pusher.push_many("acme/worker", ["main-1", "main-2"])
    bare = bare_repo({
        "apps/web.yaml": DEPLOYMENT.format(host=registry.host),
        f"{HOSTILE_DIR}/{HOSTILE_FILE}": HOSTILE.format(host=registry.host),
    })
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"interval: 1h\ncache_dir: {tmp_path / 'cache'}\n"
        f"sources:\n  - name: demo\n    url: {bare}\n    branch: main\n"
        f"commit:\n  author_name: Image Bot\n  author_email: bot@example.com\n"
        f"registries:\n  - prefix: {registry.host}\n    insecure: true\n"
        f"http:\n  listen: 127.0.0.1:{port}\n  webhook_secret_env: WEBHOOK_SECRET\n"
        f"  status_auth: {{token_env: STATUS_TOKEN}}\n"
        f"log:\n  format: text\n"
    )
    monkeypatch.setenv("STATUS_TOKEN", TOKEN)
    daemon = Daemon(config, tmp_path / "daemon.log", port)
    try:
        wait_for(lambda: (r := get(daemon.url + "/readyz")) is not None and r.status_code == 200, 90,
                 "the start-up pass", daemon.log)
        yield daemon, registry.host
    finally:
        daemon.stop()


def test_the_daemon_serves_its_status_behind_the_token_and_chromium_shows_it(
    serving: tuple[Daemon, str], tmp_path: Path
) -> None:
    daemon, host = serving
    for path in ("/", "/api/v1/status", f"/images/{host}/acme/app"):
        refused = httpx.get(daemon.url + path, timeout=10)
        assert refused.status_code == 401, path
        assert "www-authenticate" in refused.headers
        assert TOKEN not in refused.text
    assert httpx.get(daemon.url + "/healthz", timeout=10).status_code == 200

    bearer = {"Authorization": f"Bearer {TOKEN}"}
    answer = httpx.get(daemon.url + "/api/v1/status", headers=bearer, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["x-content-type-options"] == "nosniff"
    status = answer.json()
    images = {image["image"]: image for image in status["images"]}
    app = images[f"{host}/acme/app"]
    assert app["chosen"] == "1.2.3" and app["current"] == ["1.2.3"], app  # committed by the start-up pass
    assert any(c["tag"] == "1.3.0" and c["status"] == "filtered" for c in app["candidates"]), app
    assert any(e["file"] == "apps/web.yaml" and e["line"] == 8 and "semver:>>>broken" in e["message"]
               for e in status["errors"]), status["errors"]
    assert status["passes"] and status["sources"][0]["name"] == "demo"
    assert TOKEN not in answer.text

    browser = chromium()
    shot = artifacts() / "daemon-status-390x844.png"
    for scripts in (True, False):
        dom = page_in_chromium(browser, daemon.url + "/", tmp_path / f"profile-{scripts}", scripts=scripts,
                               shot=shot if scripts else None)
        assert dom.title == "image-updater status"  # the hostile <script> path did not run
        assert dom.scripts == 0
        text = "\n".join(dom.rows)
        assert f"{host}/acme/app" in text and "1.2.3" in text, dom.rows
        assert f"{HOSTILE_DIR}/{HOSTILE_FILE}" in text, dom.rows  # shown as text
        assert "semver:>>>broken" in text, dom.rows
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
