"""The daemon's scheduling, driven by a fake pass function.

Covers: the first pass runs at start-up and then every interval; passes of one source never overlap
(scheduled ticks and webhooks are coalesced, a webhook during a pass queues exactly one more); the webhook
rate limit; a failing pass is logged and counted and the daemon goes on; outcomes feed logs and metrics;
pushes map to the sources that track the image; graceful stop (cooperative pass, grace period expiry); and,
in child processes, SIGTERM/SIGINT exit 0, a second signal and the last-resort exit timer exit 1.

No test waits a fixed time for something to happen: they wait on events (the scheduler's skipped-tick
event, a log line of the child) or poll a condition with a generous deadline; "nothing more happens" is
checked once the daemon is idle (no pass running or queued, the next tick an hour away).
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from image_updater.daemon import Daemon, PassOutcome
from image_updater.metrics import Metrics
from image_updater.plan import Change, ErrorEntry, Result
from image_updater.webhooks import PushEvent

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Outcome:
    """Shaped like image_updater.writeback.SourceOutcome."""

    source: str
    result: Result = field(default_factory=Result)
    commit: str | None = None
    pushed: bool = False
    error: str | None = None
    duration: float = 0.01
    images: frozenset[str] = frozenset()


class Recorder:
    """A pass function that records every call and can be told what to do per call."""

    def __init__(
        self, behaviour: Callable[[str, int, threading.Event], Awaitable[PassOutcome]] | None = None
    ):
        self.starts: dict[str, list[float]] = {}
        self.ends: dict[str, list[float]] = {}
        self.active: dict[str, int] = {}
        self.max_active: dict[str, int] = {}
        self.focus: dict[str, list[frozenset[str] | None]] = {}
        self.behaviour = behaviour

    def count(self, name: str) -> int:
        return len(self.ends.get(name, []))

    async def __call__(
        self, name: str, stop: threading.Event, images: frozenset[str] | None = None
    ) -> PassOutcome:
        self.starts.setdefault(name, []).append(time.monotonic())
        self.focus.setdefault(name, []).append(images)
        self.active[name] = self.active.get(name, 0) + 1
        self.max_active[name] = max(self.max_active.get(name, 0), self.active[name])
        try:
            if self.behaviour is not None:
                return await self.behaviour(name, len(self.starts[name]), stop)
            await asyncio.sleep(0.01)  # the pass's own work (simulated), not a wait for anything
            return Outcome(name)
        finally:
            self.active[name] -= 1
            self.ends.setdefault(name, []).append(time.monotonic())


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Bounded polling; the deadline is a hang detector, not an expectation."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def idle(daemon: Daemon, *sources: str) -> bool:
    """No pass of these sources is running, waiting for the rate limit or queued to run again."""
    return not any(daemon._states[s].busy or daemon._states[s].rerun for s in sources)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def make(
    recorder: Recorder, sources: tuple[str, ...] = ("a",), interval: float = 3600, **kwargs: object
) -> Daemon:
    return Daemon(list(sources), interval=timedelta(seconds=interval), pass_fn=recorder, **kwargs)  # type: ignore[arg-type]


async def run_while(daemon: Daemon, body: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.create_task(daemon.run())
    try:
        await body()
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 30)


def test_first_pass_runs_at_startup_without_waiting_for_the_interval() -> None:
    recorder = Recorder()
    daemon = make(recorder, ("a", "b"), interval=3600)
    assert not daemon.ready()

    async def body() -> None:
        await wait_until(lambda: recorder.count("a") == 1 and recorder.count("b") == 1)
        assert daemon.alive() and daemon.ready()

    asyncio.run(run_while(daemon, body))
    assert sample(daemon.metrics, "image_updater_passes_total", source="a", outcome="success") == 1
    assert not daemon.alive()


def test_interval_ticks_repeat_and_passes_of_a_source_never_overlap() -> None:
    async def behaviour(name: str, n: int, stop: threading.Event) -> PassOutcome:
        await asyncio.sleep(0.3)  # a pass long enough for the other source's passes to interleave
        return Outcome(name)

    recorder = Recorder(behaviour)
    daemon = make(recorder, ("a", "b"), interval=1)

    async def body() -> None:
        await wait_until(lambda: recorder.count("a") >= 3 and recorder.count("b") >= 3)

    asyncio.run(run_while(daemon, body))
    assert recorder.max_active == {"a": 1, "b": 1}


def test_scheduled_ticks_during_a_long_pass_are_coalesced() -> None:
    release = asyncio.Event()

    async def behaviour(name: str, n: int, stop: threading.Event) -> PassOutcome:
        if n == 1:
            await release.wait()
        return Outcome(name)

    recorder = Recorder(behaviour)
    daemon = make(recorder, interval=1)
    records = capture_logs()
    # what APScheduler says reaches the image_updater handlers (none in tests: it then propagates to root)
    scheduler_records: list[logging.LogRecord] = []
    root_handler = ListHandler(scheduler_records)
    logging.getLogger().addHandler(root_handler)

    async def body() -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent

        await wait_until(lambda: len(recorder.starts.get("a", [])) == 1)
        skipped: list[JobSubmissionEvent] = []
        assert daemon._scheduler is not None
        daemon._scheduler.add_listener(skipped.append, EVENT_JOB_MAX_INSTANCES)
        await wait_until(lambda: len(skipped) >= 2)  # two ticks fell due while the first pass runs
        assert len(recorder.starts["a"]) == 1
        release.set()
        await wait_until(lambda: recorder.count("a") >= 2)

    try:
        asyncio.run(run_while(daemon, body))
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert recorder.max_active["a"] == 1
    # coalescing is not worth a warning per skipped tick: one line for the pass that outlasted the interval
    assert not [r for r in scheduler_records if "maximum number of running instances" in r.getMessage()]
    long_pass = [r for r in records if "longer than the interval" in r.getMessage()]
    assert len(long_pass) == 1 and long_pass[0].levelno == logging.INFO


def test_webhooks_during_a_pass_queue_exactly_one_more_pass() -> None:
    release = asyncio.Event()

    async def behaviour(name: str, n: int, stop: threading.Event) -> PassOutcome:
        if name == "a" and n == 1:
            await release.wait()
        return Outcome(name, images=frozenset({"docker.io/library/nginx"}))

    recorder = Recorder(behaviour)
    daemon = make(recorder, ("a", "b"), webhook_min_interval=0)

    async def body() -> None:
        await wait_until(lambda: len(recorder.starts.get("a", [])) == 1 and recorder.count("b") == 1)
        for _ in range(3):
            assert daemon.trigger(["a"]) == ["a"]
        assert len(recorder.starts["a"]) == 1  # nothing started beside the running pass
        release.set()
        await wait_until(lambda: recorder.count("a") == 2)
        await wait_until(lambda: idle(daemon, "a", "b"))
        assert recorder.count("a") == 2  # three webhooks during the pass: exactly one more
        assert recorder.count("b") == 1  # not triggered

    asyncio.run(run_while(daemon, body))
    assert recorder.max_active["a"] == 1


def test_webhook_passes_of_a_source_are_rate_limited_and_none_is_lost() -> None:
    # the daemon's own record of when each webhook pass was let through: the limiter's decisions, which
    # no load on the machine can bring closer together than webhook_min_interval
    admitted: list[float] = []

    async def behaviour(name: str, n: int, stop: threading.Event) -> PassOutcome:
        admitted.append(daemon._states[name].last_webhook_start)
        return Outcome(name)

    recorder = Recorder(behaviour)
    daemon = make(recorder, webhook_min_interval=0.5)
    records = capture_logs()

    async def body() -> None:
        await wait_until(lambda: recorder.count("a") == 1)
        daemon.trigger(["a"])
        await wait_until(lambda: recorder.count("a") == 2)
        daemon.trigger(["a"])
        daemon.trigger(["a"])  # coalesced into the waiting one
        await wait_until(lambda: recorder.count("a") == 3)
        await wait_until(lambda: idle(daemon, "a"))
        assert recorder.count("a") == 3

    asyncio.run(run_while(daemon, body))
    first, second, third = admitted
    assert first == float("-inf")  # the start-up pass is a scheduled one
    assert third - second >= 0.5 - 1e-3  # (1 ms: asyncio may wake a timer a clock tick early)
    # only the third pass can have had to wait (not at all if the trigger came late), never longer than
    # the interval
    prefix = "webhook rate limit: pass starts in "
    messages = [r.getMessage() for r in records]
    waits = [float(m.removeprefix(prefix).removesuffix("s")) for m in messages if m.startswith(prefix)]
    assert len(waits) <= 1 and all(0 < w <= 0.5 for w in waits), waits


def test_a_failing_pass_is_counted_and_the_daemon_goes_on() -> None:
    async def behaviour(name: str, n: int, stop: threading.Event) -> PassOutcome:
        if n <= 2:
            raise RuntimeError(f"boom {n} https://user:hunter2@git.example.com/repo.git")
        return Outcome(name)

    recorder = Recorder(behaviour)
    daemon = make(recorder, interval=1)
    records = capture_logs()

    async def body() -> None:
        await wait_until(lambda: recorder.count("a") >= 3)
        assert daemon.alive() and daemon.ready()

    asyncio.run(run_while(daemon, body))
    m = daemon.metrics
    assert sample(m, "image_updater_passes_total", source="a", outcome="failed") == 2
    assert sample(m, "image_updater_passes_total", source="a", outcome="success") >= 1
    assert sample(m, "image_updater_errors_total", kind="pass") == 2
    failures = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    assert any("boom 1" in msg for msg in failures)
    assert not any("hunter2" in msg for msg in failures)


class ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def capture_logs() -> list[logging.LogRecord]:
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("image_updater.daemon")
    logger.handlers = [ListHandler(records)]
    logger.setLevel(logging.DEBUG)
    return records


def change(file: str, image: str, old: str, new: str) -> Change:
    return Change(
        file=file,
        line=7,
        resource="Deployment/default/web",
        container="web",
        image=image,
        old=f"{image}:{old}",
        new=f"{image}:{new}",
        old_tag=old,
        new_tag=new,
        policy="semver:^1",
        origin="annotation",
    )


def test_outcomes_feed_metrics_and_the_summary_line() -> None:
    result = Result(
        updates=(
            change("apps/web.yaml", "nginx", "1.25.0", "1.27.0"),
            change("apps/api.yaml", "ghcr.io/x/api", "1.0", "1.1"),
        ),
        errors=(
            ErrorEntry("apps/db.yaml", 3, "quay.io/x/db", "quay.io: repository x/db not found"),
            ErrorEntry("apps/broken.yaml", 1, None, "apps/broken.yaml:1: does not parse"),
        ),
    )
    images = frozenset({"docker.io/library/nginx", "ghcr.io/x/api", "quay.io/x/db"})

    async def behaviour(name: str, n: int, stop: threading.Event) -> PassOutcome:
        if name == "git-down":
            return Outcome(name, error="git fetch failed: could not resolve host git.example.com")
        return Outcome(name, result=result, commit="0123456789abcdef", pushed=True, images=images)

    recorder = Recorder(behaviour)
    daemon = make(recorder, ("a", "git-down"))
    records = capture_logs()

    async def body() -> None:
        await wait_until(lambda: recorder.count("a") == 1 and recorder.count("git-down") == 1)

    asyncio.run(run_while(daemon, body))
    m = daemon.metrics
    assert sample(m, "image_updater_updates_committed_total", source="a") == 2
    assert sample(m, "image_updater_images_tracked", source="a") == 3
    assert sample(m, "image_updater_errors_total", kind="image") == 1
    assert sample(m, "image_updater_errors_total", kind="file") == 1
    assert sample(m, "image_updater_errors_total", kind="source") == 1
    assert sample(m, "image_updater_passes_total", source="a", outcome="errors") == 1
    assert sample(m, "image_updater_passes_total", source="git-down", outcome="failed") == 1
    assert sample(m, "image_updater_last_success_timestamp_seconds", source="a") > 0
    assert (
        m.registry.get_sample_value("image_updater_last_success_timestamp_seconds", {"source": "git-down"})
        is None
    )
    assert sample(m, "image_updater_pass_duration_seconds_count", source="a") == 1

    # the pass logs its changes and errors itself (workflow.run_source); the daemon adds one summary line
    summaries = {r.source: r.getMessage() for r in records if r.getMessage().startswith("pass ")}  # type: ignore[attr-defined]
    assert summaries == {
        "a": "pass errors: 2 updated, 0 unchanged, 0 skipped, 2 errors, commit 0123456789ab",
        "git-down": "pass failed: 0 updates, 0 unchanged, 0 skipped, 0 errors",
    }


def test_pushes_map_to_the_sources_that_track_the_image() -> None:
    tracked = {
        "a": frozenset({"docker.io/library/nginx", "ghcr.io/x/api"}),
        "b": frozenset({"registry.example.com:5000/team/app"}),
        "c": frozenset({"docker.io/library/redis"}),
    }
    release = asyncio.Event()

    async def behaviour(name: str, n: int, stop: threading.Event) -> PassOutcome:
        if name == "late":
            await release.wait()
        return Outcome(name, images=tracked.get(name, frozenset()))

    recorder = Recorder(behaviour)
    daemon = make(recorder, ("a", "b", "c", "late"))

    def push(registry: str | None, repository: str) -> PushEvent:
        return PushEvent(registry, repository, "1.0", "distribution")

    # before any pass, every source is concerned: its images are unknown
    assert daemon.sources_for([push("docker.io", "library/nginx")]) == ["a", "b", "c", "late"]

    async def body() -> None:
        await wait_until(lambda: all(recorder.count(s) == 1 for s in "abc"))
        # "late" has not finished its first pass: still concerned by every push
        assert daemon.sources_for([push("docker.io", "library/nginx")]) == ["a", "late"]
        assert daemon.sources_for([push("quay.io", "nobody/uses-this")]) == ["late"]
        release.set()
        await wait_until(lambda: recorder.count("late") == 1)
        assert daemon.sources_for([push("docker.io", "library/nginx")]) == ["a"]
        assert daemon.sources_for([push("docker.io", "library/redis"), push("ghcr.io", "x/api")]) == [
            "a",
            "c",
        ]
        # the registry announces itself under another host name than the YAML uses: match on the path
        assert daemon.sources_for([push("10.0.0.5:5000", "team/app")]) == ["b"]
        assert daemon.sources_for([push(None, "team/app")]) == ["b"]
        # each event of a batch is matched on its own
        assert daemon.sources_for(
            [push("docker.io", "library/nginx"), push("10.0.0.5:5000", "team/app")]
        ) == [
            "a",
            "b",
        ]
        assert daemon.sources_for([push("quay.io", "nobody/uses-this")]) == []

    asyncio.run(run_while(daemon, body))


def test_webhook_passes_focus_on_the_pushed_images_and_keep_knowing_the_others() -> None:
    tracked = frozenset({"docker.io/library/nginx", "ghcr.io/x/api", "registry.example.com:5000/team/app"})

    async def behaviour(name: str, n: int, stop: threading.Event) -> PassOutcome:
        focus = recorder.focus[name][-1]
        # a focused pass reports only the images it looked at
        return Outcome(name, images=tracked if focus is None else tracked & focus)

    recorder = Recorder(behaviour)
    daemon = make(recorder, ("a",), webhook_min_interval=0)

    async def body() -> None:
        await wait_until(lambda: recorder.count("a") == 1)
        assert recorder.focus["a"] == [None]  # the first (scheduled) pass is a full pass
        nginx = PushEvent("docker.io", "library/nginx", "1.27", "distribution")
        daemon.trigger(daemon.sources_for([nginx]), events=[nginx])
        await wait_until(lambda: recorder.count("a") == 2)
        assert recorder.focus["a"][1] == frozenset({"docker.io/library/nginx"})
        # matched on the path alone (the registry calls itself differently): still focused
        app = PushEvent("10.0.0.5:5000", "team/app", "2.0", "distribution")
        daemon.trigger(daemon.sources_for([app]), events=[app])
        await wait_until(lambda: recorder.count("a") == 3)
        assert recorder.focus["a"][2] == frozenset({"registry.example.com:5000/team/app"})
        # the focused passes did not make the daemon forget the source's other images
        api = PushEvent("ghcr.io", "x/api", "3", "ghcr")
        assert daemon.sources_for([api]) == ["a"]
        # a trigger without events (e.g. by hand) is a full pass
        daemon.trigger(["a"])
        await wait_until(lambda: recorder.count("a") == 4)
        assert recorder.focus["a"][3] is None

    asyncio.run(run_while(daemon, body))


def test_a_source_whose_sync_failed_keeps_its_known_images() -> None:
    async def behaviour(name: str, n: int, stop: threading.Event) -> PassOutcome:
        if n == 1:
            return Outcome(name, images=frozenset({"docker.io/library/nginx"}))
        return Outcome(name, error="git fetch failed")

    recorder = Recorder(behaviour)
    daemon = make(recorder, ("a", "b"), webhook_min_interval=0)

    async def body() -> None:
        await wait_until(lambda: recorder.count("a") == 1 and recorder.count("b") == 1)
        daemon.trigger(["a"])
        await wait_until(lambda: recorder.count("a") == 2)
        nginx = PushEvent("docker.io", "library/nginx", "1.27", "dockerhub")
        assert daemon.sources_for([nginx]) == ["a", "b"]

    asyncio.run(run_while(daemon, body))


def test_stop_lets_a_running_pass_finish_and_give_up_before_pushing() -> None:
    started = asyncio.Event()

    async def behaviour(name: str, n: int, stop: threading.Event) -> PassOutcome:
        started.set()
        # the real pass checks the event in its worker thread before pushing
        saw_stop = await asyncio.to_thread(stop.wait, 30)
        assert saw_stop
        return Outcome(name, error="stopping: pass abandoned before the push")

    recorder = Recorder(behaviour)
    daemon = make(recorder, grace_period=30)

    async def main() -> None:
        task = asyncio.create_task(daemon.run())
        await asyncio.wait_for(started.wait(), 15)
        assert daemon.trigger(["a"]) == ["a"]  # queued behind the running pass...
        daemon.request_stop()
        await asyncio.wait_for(task, 30)
        assert daemon.trigger(["a"]) == []  # ...and nothing starts once stopping

    asyncio.run(main())
    assert recorder.count("a") == 1
    assert sample(daemon.metrics, "image_updater_passes_total", source="a", outcome="abandoned") == 1
    assert sample(daemon.metrics, "image_updater_errors_total", kind="source") == 0


def test_a_pass_that_ignores_stop_is_cancelled_after_the_grace_period() -> None:
    started = asyncio.Event()
    cancelled = []

    async def behaviour(name: str, n: int, stop: threading.Event) -> PassOutcome:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return Outcome(name)

    daemon = make(Recorder(behaviour), grace_period=0.3)

    async def main() -> None:
        task = asyncio.create_task(daemon.run())
        await asyncio.wait_for(started.wait(), 15)
        daemon.request_stop()
        await asyncio.wait_for(task, 30)

    asyncio.run(main())
    assert cancelled == ["a"]
    assert sample(daemon.metrics, "image_updater_passes_total", source="a", outcome="abandoned") == 1


def test_constructor_refuses_unusable_configurations() -> None:
    from image_updater.errors import ConfigError

    with pytest.raises(ConfigError):
        make(Recorder(), ())
    with pytest.raises(ConfigError):
        make(Recorder(), ("a", "a"))
    with pytest.raises(ConfigError):
        make(Recorder(), ("a",), interval=0)


# -- signals, in child processes -------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys, threading, time
    from datetime import timedelta
    from image_updater import daemon as d
    from image_updater.httpserver import HttpServer
    from image_updater.logs import configure_logging
    from image_updater.metrics import Metrics
    from image_updater.plan import Result

    mode, grace = sys.argv[1], float(sys.argv[2])
    d.EXIT_TIMEOUT_MARGIN = 1.0
    configure_logging("info", "text")

    class Outcome:
        def __init__(self, source, error=None):
            self.source, self.result, self.commit, self.pushed = source, Result(), None, False
            self.error, self.duration, self.images = error, 0.0, frozenset()

    async def one_pass(name, stop, images=None):
        print("started", flush=True)
        if mode == "cooperative":
            await asyncio.to_thread(stop.wait, 60)
            print("saw stop", flush=True)
            return Outcome(name, error="abandoned before the push")
        if mode == "hung-thread":
            await asyncio.to_thread(time.sleep, 60)  # a git call that never returns
        else:
            await asyncio.sleep(60)
        return Outcome(name)

    async def main():
        metrics = Metrics()
        daemon = d.Daemon(["a"], interval=timedelta(hours=1), pass_fn=one_pass, metrics=metrics,
                          grace_period=grace)
        server = HttpServer(daemon, metrics=metrics, listen="127.0.0.1:0")
        await d.run_until_stopped(daemon, server, exit_timer=d.ExitTimer(grace + d.EXIT_TIMEOUT_MARGIN))

    asyncio.run(main())
    print("exited", flush=True)
    """
)


def start_child(mode: str, grace: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(grace)],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the first pass runs (or the child dies)
    assert line == "started\n", proc.stderr.read() if proc.stderr else ""
    return proc


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"child did not exit\n{err}") from None
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_a_cooperative_pass_and_exits_zero(sig: signal.Signals) -> None:
    proc = start_child("cooperative", 30)
    proc.send_signal(sig)
    code, out, err = finish(proc)
    assert code == 0, err
    assert out == "saw stop\nexited\n"
    assert "daemon stopped" in err


def test_sigterm_abandons_a_pass_that_outlives_the_grace_period() -> None:
    proc = start_child("stubborn", 0.5)
    proc.send_signal(signal.SIGTERM)
    code, _out, err = finish(proc)
    assert code == 0, err
    assert "did not finish within the grace period" in err


def test_last_resort_timer_ends_a_process_held_by_a_hung_thread() -> None:
    proc = start_child("hung-thread", 0.5)
    proc.send_signal(signal.SIGTERM)
    code, _out, err = finish(proc)
    assert code == 1
    assert "did not exit within" in err


def read_until(proc: subprocess.Popen[str], text: str, timeout: float = 30.0) -> str:
    """What the child writes to stderr up to and including ``text`` (select on the pipe, bounded)."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            raise AssertionError(f"the child did not write {text!r}:\n{seen.decode(errors='replace')}")
        seen += chunk
    return seen.decode()


def test_a_second_signal_exits_at_once() -> None:
    proc = start_child("stubborn", 30)
    proc.send_signal(signal.SIGTERM)
    first = read_until(proc, "stopping: running passes get")  # the first signal was handled
    proc.send_signal(signal.SIGTERM)
    code, _out, err = finish(proc)
    assert code == 1
    assert "second stop signal" in first + err
    assert os.name == "posix"
