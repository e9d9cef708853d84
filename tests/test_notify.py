"""Notifications (issue 11, part 5): payload shapes, HMAC, retries, bounded failure, events filter, secrets.

A real local receiver (tests/servers/receiver.py) checks the HMAC, records bodies and can answer 500 or hang.
End to end: ``run --once`` posts the pass's report; a daemon whose receiver hangs still runs its next pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from image_updater.errors import ConfigError
from image_updater.notify import (
    DISCORD_LIMIT,
    Channel,
    Notifier,
    PassSummary,
    channels_of,
    discord_payload,
    request_for,
    slack_payload,
    teams_payload,
)
from image_updater.plan import Change
from image_updater.settings import Settings
from tests.servers.receiver import Receiver
from tests.test_daemon_e2e import (
    DEPLOYMENT,
    SECRET,
    T0,
    Daemon,
    commits,
    distribution_event,
    free_port,
    get,
    wait_for,
)
from tests.test_writeback import run_cli, write_config

HOOK_SECRET = "hmac-canary-" + "3f9a1c"
URL_TOKEN = "T0000/B0000/url-canary-xyz"


def change(n: int = 0) -> Change:
    return Change(
        file=f"apps/d{n}.yaml", line=3, resource="Deployment/prod/web", container="web",
        image=f"ghcr.io/acme/web{n}", old=f"ghcr.io/acme/web{n}:1.0.0", new=f"ghcr.io/acme/web{n}:1.2.0",
        old_tag="1.0.0", new_tag="1.2.0", policy="semver:^1.0", origin="annotation",
    )  # fmt: skip


def summary(
    *, changes: int = 1, errors: int = 0, pushed: bool = True, prs: tuple[str, ...] = ()
) -> PassSummary:
    items = tuple(change(i) for i in range(changes))
    return PassSummary(
        source="demo", commit="0123456789abcdef0123" if pushed else None, pushed=pushed, changes=items,
        error_count=errors, pull_request_urls=prs,
        report={"updates": [c.to_dict() for c in items], "unchanged": [], "skipped": [], "errors": []},
    )  # fmt: skip


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    options: dict[str, Any] = getattr(request, "param", {})
    with Receiver(**options) as server:
        yield server


def channel(receiver: Receiver, kind: str = "webhook", **kw: Any) -> Channel:
    kw.setdefault("events", frozenset({"update", "error"}))
    return Channel(type=kind, url=f"{receiver.url}/hooks/{URL_TOKEN}", **kw)


async def send(notifier: Notifier, *summaries: PassSummary, bound: float = 30) -> int:
    n = sum(notifier.submit(s) for s in summaries)
    await notifier.aclose(bound)
    return n


# -- payload shapes -------------------------------------------------------------------------------------


def test_slack_payload_is_short_mrkdwn() -> None:
    payload = slack_payload(summary(changes=2, errors=1, prs=("https://git.example/pr/7",)))
    assert list(payload) == ["text"]
    text = payload["text"]
    assert text.startswith("*image-updater* demo: pushed 0123456789ab")
    assert "<https://git.example/pr/7|pull request>" in text
    assert "ghcr.io/acme/web1: 1.0.0 -&gt; 1.2.0" in text
    assert "1 error" in text


def test_teams_payload_is_an_adaptive_card_message() -> None:
    payload = teams_payload(summary(changes=1, prs=("https://git.example/pr/7",)))
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["body"][0]["text"] == "image-updater: demo: pushed 0123456789ab"
    assert card["body"][1]["facts"] == [{"title": "ghcr.io/acme/web0", "value": "1.0.0 -> 1.2.0"}]
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Pull request", "url": "https://git.example/pr/7"}
    ]


def test_discord_payload_is_truncated_to_2000_characters() -> None:
    small = discord_payload(summary(changes=2))["content"]
    assert "- `ghcr.io/acme/web0: 1.0.0 -> 1.2.0`" in small and "more" not in small
    big = discord_payload(summary(changes=200, errors=3))["content"]
    assert len(big) <= DISCORD_LIMIT
    shown = big.count("- `ghcr.io/acme/web")
    assert 0 < shown < 200
    assert f"…and {200 - shown} more" in big
    assert big.endswith("3 errors")


def test_webhook_body_is_the_report_with_source_and_commit_and_a_valid_hmac() -> None:
    ch = Channel(
        type="webhook", url="https://example.invalid/x", secret=HOOK_SECRET, events=frozenset({"update"})
    )
    body, headers = request_for(ch, summary(errors=2))
    data = json.loads(body)
    assert data["source"] == "demo" and data["commit"] == "0123456789abcdef0123" and data["pushed"] is True
    assert set(data) >= {"updates", "unchanged", "skipped", "errors"}
    assert headers["X-Image-Updater-Event"] == "error,update"
    expected = hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Image-Updater-Signature"] == f"sha256={expected}"
    assert HOOK_SECRET.encode() not in body


# -- sending --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("receiver", [{"secret": HOOK_SECRET, "fail_first": 2}], indirect=True)
def test_retries_then_success_with_a_verified_signature(receiver: Receiver) -> None:
    counted: list[tuple[str, str]] = []
    notifier = Notifier(
        [channel(receiver, secret=HOOK_SECRET)], on_result=lambda t, r: counted.append((t, r)), backoff=0.01
    )
    assert run(send(notifier, summary())) == 1
    assert len(receiver.requests) == 3
    assert all(r.signature_ok for r in receiver.requests)
    assert len({r.body for r in receiver.requests}) == 1  # every retry sends the same signed body
    assert counted == [("webhook", "sent")]


@pytest.mark.parametrize("receiver", [{"fail_first": -1}], indirect=True)
def test_500_forever_is_failed_counted_and_logged_without_secrets(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    counted: list[tuple[str, str]] = []
    notifier = Notifier(
        [channel(receiver, kind="slack")],
        on_result=lambda t, r: counted.append((t, r)),
        backoff=0.01,
        attempts=3,
    )
    with caplog.at_level(logging.DEBUG):
        run(send(notifier, summary()))
    assert len(receiver.requests) == 3  # bounded retries
    assert counted == [("slack", "failed")]
    assert "notification to slack (127.0.0.1) failed: HTTP 500 after 3 attempts" in caplog.text
    assert URL_TOKEN not in caplog.text and "url-canary" not in caplog.text
    for received in receiver.requests:
        assert b"url-canary" not in received.body


@pytest.mark.parametrize("receiver", [{"hang": True}], indirect=True)
def test_a_hanging_receiver_is_bounded(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    counted: list[tuple[str, str]] = []
    notifier = Notifier(
        [channel(receiver, kind="discord")], on_result=lambda t, r: counted.append((t, r)),
        request_timeout=0.5, total_timeout=60, attempts=2, backoff=0.01,
    )  # fmt: skip
    run(send(notifier, summary()))
    assert counted == [("discord", "failed")]
    assert "ReadTimeout after 2 attempts" in caplog.text


@pytest.mark.parametrize("receiver", [{"hang": True}], indirect=True)
def test_close_drops_sends_still_in_flight(receiver: Receiver) -> None:
    counted: list[tuple[str, str]] = []
    notifier = Notifier([channel(receiver)], on_result=lambda t, r: counted.append((t, r)))

    async def go() -> None:
        notifier.submit(summary())
        await asyncio.to_thread(receiver.wait_for, 1)
        assert notifier.in_flight == 1
        await notifier.aclose(0.1)

    run(go())
    assert counted == [("webhook", "failed")]


def test_nothing_changed_and_no_error_sends_nothing_and_events_filter(receiver: Receiver) -> None:
    update_only = channel(receiver, kind="slack", events=frozenset({"update"}))
    errors_only = channel(receiver, kind="teams", events=frozenset({"error"}))
    notifier = Notifier([update_only, errors_only])
    assert run(send(notifier, summary(changes=0, pushed=False))) == 0
    notifier = Notifier([update_only, errors_only])
    assert run(send(notifier, summary(changes=1))) == 1
    notifier = Notifier([update_only, errors_only])
    assert run(send(notifier, summary(changes=0, pushed=False, errors=1))) == 1
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert "text" in bodies[0] and bodies[1]["type"] == "message"


def test_channels_need_their_environment_variables() -> None:
    settings = Settings.model_validate(
        {"notifications": [{"type": "webhook", "url_env": "HOOK_URL", "secret_env": "HOOK_SECRET"}]}
    )
    with pytest.raises(ConfigError, match=r"notifications\[0\]\.url_env: .*HOOK_URL.* empty or unset"):
        channels_of(settings, {})
    with pytest.raises(ConfigError, match=r"notifications\[0\]\.url_env: .* http\(s\) URL"):
        channels_of(settings, {"HOOK_URL": "ftp://x", "HOOK_SECRET": "s"})
    with pytest.raises(ConfigError, match=r"notifications\[0\]\.secret_env"):
        channels_of(settings, {"HOOK_URL": "https://x.example/h"})
    (ch,) = channels_of(settings, {"HOOK_URL": "https://x.example/h/tok", "HOOK_SECRET": "s3"})
    assert "tok" not in repr(ch) and "s3" not in repr(ch)
    with pytest.raises(ValueError, match="only the webhook type signs"):
        Settings.model_validate({"notifications": [{"type": "slack", "url_env": "U", "secret_env": "S"}]})


# -- end to end -----------------------------------------------------------------------------------------


@pytest.fixture
def seeded(registry: Any, pusher: Any) -> Any:
    for tag, days in [("1.0.0", 1), ("1.2.0", 3)]:
        pusher.push("team/web", tag, created=T0 + timedelta(days=days))
    return registry


@pytest.mark.parametrize("receiver", [{"secret": HOOK_SECRET}], indirect=True)
def test_run_once_posts_the_pass_report(
    tmp_path: Path, seeded: Any, bare_repo: Any, receiver: Receiver
) -> None:
    bare = bare_repo({"apps/deployment.yaml": DEPLOYMENT.format(host=seeded.host)})
    tail = ["notifications:", "  - type: webhook", "    url_env: HOOK_URL", "    secret_env: HOOK_SECRET"]
    config = write_config(tmp_path, seeded, str(bare), tail=tail)
    env = {"HOOK_URL": f"{receiver.url}/hooks/{URL_TOKEN}", "HOOK_SECRET": HOOK_SECRET}
    out = run_cli("run", "--once", "-c", str(config), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    (received,) = receiver.requests
    assert received.signature_ok is True
    assert received.headers["X-Image-Updater-Event"] == "update"
    data = json.loads(received.body)
    head = subprocess.run(
        ["git", "rev-parse", "main"], cwd=bare, capture_output=True, text=True
    ).stdout.strip()
    assert data["source"] == "demo" and data["commit"] == head and data["pushed"] is True
    assert [u["new_tag"] for u in data["updates"]] == ["1.2.0"]
    for secret in (HOOK_SECRET, URL_TOKEN):
        assert secret not in received.body.decode() and secret not in out.stdout + out.stderr
    # a second pass changes nothing: no notification
    again = run_cli("run", "--once", "-c", str(config), env=env)
    assert again.returncode == 0 and len(receiver.requests) == 1

    missing = run_cli("run", "--once", "-c", str(config), env={"HOOK_SECRET": HOOK_SECRET})
    assert missing.returncode == 2 and "notifications[0].url_env" in missing.stderr


@pytest.mark.slow
@pytest.mark.parametrize("receiver", [{"hang": True}], indirect=True)
def test_a_hanging_receiver_does_not_delay_the_next_daemon_pass(
    tmp_path: Path,
    registry: Any,
    pusher: Any,
    bare_repo: Any,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    pusher.push("team/web", "1.0.0", created=T0)
    bare = bare_repo({"apps/deployment.yaml": DEPLOYMENT.format(host=registry.host)})
    config = tmp_path / "config.yaml"
    config.write_text(
        f"interval: 1h\ncache_dir: {tmp_path / 'cache'}\n"
        f"sources:\n  - name: demo\n    url: {bare}\n    branch: main\n"
        f"registries:\n  - prefix: {registry.host}\n    insecure: true\n"
        f"http:\n  listen: 127.0.0.1:{port}\n  webhook_secret_env: WEBHOOK_SECRET\n"
        f"notifications:\n  - type: slack\n    url_env: HOOK_URL\n"
    )
    monkeypatch.setenv("HOOK_URL", f"{receiver.url}/hooks/{URL_TOKEN}")
    daemon = Daemon(config, tmp_path / "daemon.log", port)
    try:
        wait_for(lambda: (r := get(daemon.url + "/readyz")) is not None and r.status_code == 200, 60,
                 "the start-up pass", daemon.log)  # fmt: skip
        assert commits(bare) == ["Initial commit"]
        for n, tag in enumerate(["1.1.0", "1.2.0"], start=1):
            pusher.push("team/web", tag, created=T0 + timedelta(days=n))
            body = distribution_event(registry.host, "team/web", tag)
            signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            response = httpx.post(
                daemon.url + "/webhook", content=body, timeout=10, headers={"X-Hub-Signature-256": signature}
            )
            assert response.status_code == 202, response.text
            wait_for(lambda n=n: len(commits(bare)) == n + 1, 60, f"commit {n}", daemon.log)  # type: ignore[misc]
            receiver.wait_for(n)
        # both notifications are still hanging, unanswered, yet the second pass ran and pushed
        assert len(receiver.requests) == 2
        metrics = daemon.metrics()
        # the series exist from the start (zero); nothing has been answered yet
        assert 'image_updater_notifications_total{result="sent",type="slack"} 0.0' in metrics or (
            'image_updater_notifications_total{type="slack",result="sent"} 0.0' in metrics
        ), metrics
        assert b"url-canary" not in receiver.requests[0].body
        assert "1.0.0 -&gt; 1.1.0" in json.loads(receiver.requests[0].body)["text"]
    finally:
        code = daemon.stop()
    assert code == 0
    log = daemon.log.read_text()
    assert "dropped 2 notification(s)" in log
    assert "url-canary" not in log


def test_summary_of_a_pushed_and_of_a_failed_outcome() -> None:
    from image_updater.findings import ErrorEntry
    from image_updater.plan import Result
    from image_updater.writeback import SourceOutcome, summary_of

    bad = ErrorEntry("a.yaml", 3, "x/y", "bad tag")
    pushed = SourceOutcome(
        source="demo", result=Result(updates=(change(),), errors=(bad,)),
        commit="abc123", pushed=True, error=None, duration=1.0, images=frozenset(),
    )  # fmt: skip
    s = summary_of(pushed)
    assert (s.source, s.commit, s.pushed, s.error_count) == ("demo", "abc123", True, 1)
    assert s.changes == (change(),) and s.events == {"update", "error"}
    assert s.report["updates"][0]["new_tag"] == "1.2.0" and s.pull_request_urls == ()
    failed = SourceOutcome(
        source="demo", result=Result(updates=(change(),)), commit=None, pushed=False,
        error="git push failed for source 'demo': rejected", duration=1.0, images=frozenset(),
    )  # fmt: skip
    s = summary_of(failed)
    assert s.events == {"error"} and s.changes == () and s.error_count == 1
    assert s.report["errors"][-1]["message"] == "git push failed for source 'demo': rejected"
    assert "pass failed" in slack_payload(s)["text"]
