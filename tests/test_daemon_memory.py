"""The daemon hands the C allocator's free memory back after every pass (issue 16, the RSS trend).

A pass reads and parses the whole tree in worker threads; the blocks larger than pymalloc's objects (file
contents, buffers) come from glibc's heaps, and what is freed between blocks that live on stays resident.
bench/daemon.py --only rss measured a slow drift (Python objects and pymalloc arenas flat, glibc's heaps
and free bytes wandering in ~2 MiB steps); the daemon now calls ``release_free_memory`` (``malloc_trim(0)``)
after every pass.

Covered: the call happens after every pass, whatever its outcome; and, in a child process, what it does:
memory freed between live blocks in a worker thread's arena stays resident until the call and leaves after
it (a comparison inside one process with a margin of tens of MiB, not a threshold on the daemon's RSS).
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from image_updater.daemon import Daemon, PassOutcome, release_free_memory
from image_updater.plan import Result
from image_updater.writeback import SourceOutcome

ROOT = Path(__file__).resolve().parents[1]


def _has_glibc_trim() -> bool:
    try:
        ctypes.CDLL(None).malloc_trim  # noqa: B018 (the lookup is the check)
    except (OSError, AttributeError):
        return False
    return True


def _outcome(name: str) -> SourceOutcome:
    """A pass that did nothing, as image_updater.writeback reports one."""
    return SourceOutcome(name, Result(), None, False, None, 0.01, frozenset())


def test_free_memory_is_released_after_every_pass_whatever_its_outcome() -> None:
    calls: list[int] = []  # passes finished when the release ran
    started: list[str] = []
    done = asyncio.Event()

    async def pass_fn(name: str, stop: threading.Event, images: frozenset[str] | None) -> PassOutcome:
        started.append(name)
        number = len(started)
        if number == 2:
            raise RuntimeError("a failing pass")
        if number >= 3:
            done.set()
        return _outcome(name)

    daemon: Daemon

    def release() -> None:
        calls.append(daemon.passes_finished)

    daemon = Daemon(
        ["a"], interval=timedelta(seconds=0.2), pass_fn=pass_fn, release_memory=release,
        webhook_min_interval=0,
    )

    async def main() -> None:
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(done.wait(), 60)  # a hang detector, not an expectation
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 30)

    asyncio.run(main())
    finished = daemon.passes_finished
    assert finished >= 3
    # once per finished pass (the failed second one included), after it was counted
    assert calls == list(range(1, finished + 1))


def test_default_release_is_the_glibc_trim() -> None:
    daemon = Daemon(["a"], interval=timedelta(hours=1), pass_fn=None)  # type: ignore[arg-type]
    assert daemon._release_memory is release_free_memory
    assert release_free_memory() is _has_glibc_trim()


CHILD = textwrap.dedent(
    """
    import json, re, sys, threading
    from image_updater.daemon import release_free_memory

    def anon_kib():
        with open("/proc/self/status") as status:
            return int(re.search(r"^RssAnon:\\s+(\\d+) kB", status.read(), re.M).group(1))

    kept = []
    figures = {}

    def work():
        # 10,000 blocks of 8 KiB (glibc, not pymalloc: > 512 bytes), written so that they are resident, in
        # a worker thread as the daemon's discovery is; every 32nd lives on and pins the rest in between
        blocks = [b"x" * 8192 for _ in range(10_000)]
        kept.extend(blocks[::32])
        figures["allocated"] = anon_kib()
        del blocks

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    figures["freed"] = anon_kib()
    figures["released"] = release_free_memory()
    figures["after_release"] = anon_kib()
    json.dump(figures, sys.stdout)
    """
)


@pytest.mark.skipif(not _has_glibc_trim(), reason="malloc_trim is glibc's; other C libraries lack it")
def test_release_returns_memory_freed_between_live_blocks(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )
    figures = json.loads(done.stdout)
    assert figures["released"] is True
    freed_kib = 10_000 * 8 * 31 // 32  # what `del blocks` freed, in KiB
    # freeing alone gives (almost) nothing back: the free chunks sit between live ones
    assert figures["allocated"] - figures["freed"] < freed_kib // 2, figures
    # the release gives back most of it
    assert figures["freed"] - figures["after_release"] > freed_kib // 2, figures


# -- the allocator's thresholds, fixed at start (issue 16, round 3) ----------------------------------------


def test_tune_allocator_fixes_both_thresholds_at_128_kib(monkeypatch: pytest.MonkeyPatch) -> None:
    from image_updater import daemon as daemon_module

    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    monkeypatch.setattr(daemon_module, "_mallopt", lambda: mallopt)
    assert daemon_module.tune_allocator({}) is True
    # M_MMAP_THRESHOLD (-3) and M_TRIM_THRESHOLD (-1), both 128 KiB
    assert calls == [(-3, 128 * 1024), (-1, 128 * 1024)]


@pytest.mark.parametrize(
    "environ",
    [
        {"MALLOC_MMAP_THRESHOLD_": "65536"},
        {"MALLOC_TRIM_THRESHOLD_": "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1048576"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
    ],
)
def test_tune_allocator_leaves_a_users_own_thresholds_alone(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]
) -> None:
    from image_updater import daemon as daemon_module

    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    monkeypatch.setattr(daemon_module, "_mallopt", lambda: mallopt)
    assert daemon_module.tune_allocator(environ) is False
    assert calls == []
    # other tunables are no reason to hold back
    assert daemon_module.tune_allocator({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) is True


def test_tune_allocator_without_mallopt_or_when_it_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    from image_updater import daemon as daemon_module

    monkeypatch.setattr(daemon_module, "_mallopt", lambda: None)  # no C library with it
    assert daemon_module.tune_allocator({}) is False
    monkeypatch.setattr(daemon_module, "_mallopt", lambda: lambda p, v: 0)  # musl's: does nothing, says 0
    assert daemon_module.tune_allocator({}) is False


def test_serve_tunes_the_allocator_before_the_daemon_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_updater import daemon as daemon_module
    from image_updater.settings import load_settings

    config = tmp_path / "config.yaml"
    config.write_text(f"cache_dir: {tmp_path / 'cache'}\nsources: [{{name: a, url: {tmp_path / 'repo'}}}]\n")
    settings = load_settings(config, env={})
    events: list[str] = []

    def tune(environ: object = None) -> bool:
        events.append("tune")
        return True

    def run(coro: Coroutine[object, object, None]) -> None:
        events.append("run")
        coro.close()  # the daemon itself is not the point here

    monkeypatch.setattr(daemon_module, "tune_allocator", tune)
    monkeypatch.setattr(asyncio, "run", run)
    assert daemon_module.serve(settings, dry_run=True) == 0
    assert events == ["tune", "run"]


THRESHOLD_CHILD = textwrap.dedent(
    """
    import ctypes, json, sys
    from image_updater.daemon import tune_allocator

    libc = ctypes.CDLL(None)
    names = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
             "keepcost")

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in names]

    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    tuned = tune_allocator({}) if sys.argv[1] == "tune" else False

    def mmapped_while_live(size):
        before = libc.mallinfo2().hblks
        block = libc.malloc(size)
        count = libc.mallinfo2().hblks - before
        libc.free(block)
        return count

    # a first 4 MiB buffer is mmapped; freeing it raises glibc's dynamic threshold past 4 MiB, so the next
    # buffer of that size is carved from the heap, unless the threshold was fixed
    first = mmapped_while_live(4 << 20)
    second = mmapped_while_live(4 << 20)
    json.dump({"tuned": tuned, "first": first, "second": second}, sys.stdout)
    """
)


def _has_mallinfo2() -> bool:
    try:
        ctypes.CDLL(None).mallinfo2  # noqa: B018 (the lookup is the check)
    except (OSError, AttributeError):
        return False
    return True


@pytest.mark.skipif(not _has_mallinfo2(), reason="mallopt's thresholds and mallinfo2 are glibc's")
def test_tuned_allocator_keeps_mmapping_big_buffers(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(THRESHOLD_CHILD)
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_")}
    figures = {}
    for mode in ("plain", "tune"):
        done = subprocess.run(
            [sys.executable, str(script), mode], cwd=ROOT, capture_output=True, text=True, timeout=120,
            check=True, env=env,
        )
        figures[mode] = json.loads(done.stdout)
    plain, tuned = figures["plain"], figures["tune"]
    assert plain["tuned"] is False and tuned["tuned"] is True
    # untuned: the first buffer was mmapped, the second (after the threshold rose) was not
    assert (plain["first"], plain["second"]) == (1, 0), plain
    # tuned: both were
    assert (tuned["first"], tuned["second"]) == (1, 1), tuned


def test_every_pass_hands_its_next_work_to_fresh_worker_threads() -> None:
    """The default executor (asyncio.to_thread) is renewed after each pass: a later pass runs its file and
    git work on new threads (glibc's per-thread caches go back when the old ones exit), and work a
    concurrent pass handed over before the renewal still completes."""
    threads: list[set[int]] = []  # worker threads each pass used, by a serial number each thread draws once
    done = asyncio.Event()
    slow_finished: list[bool] = []
    local = threading.local()
    serials = itertools.count()
    lock = threading.Lock()

    def work() -> int:
        # thread idents are reused once a thread has exited; a thread-local serial is not
        if not hasattr(local, "serial"):
            with lock:
                local.serial = next(serials)
        serial: int = local.serial
        return serial

    async def pass_fn(name: str, stop: threading.Event, images: frozenset[str] | None) -> PassOutcome:
        if name == "slow":
            # handed over before the fast source's passes renew the executor, finished after
            release = threading.Event()
            pending = asyncio.create_task(asyncio.to_thread(release.wait, 30))
            await asyncio.sleep(0.5)
            release.set()
            slow_finished.append(await pending)
            return _outcome(name)
        threads.append({await asyncio.to_thread(work) for _ in range(4)})
        if len(threads) >= 3:
            done.set()
        return _outcome(name)

    daemon = Daemon(
        ["fast", "slow"], interval=timedelta(seconds=0.1), pass_fn=pass_fn, release_memory=lambda: None,
        webhook_min_interval=0,
    )
    executors: list[object] = []

    async def main() -> None:
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(done.wait(), 60)  # a hang detector, not an expectation
            assert daemon._workers is not None
            executors.append(daemon._workers.current)
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 30)

    asyncio.run(main())
    assert slow_finished and slow_finished[0] is True  # the old executor ran what it had been given
    assert len(threads) >= 3
    # no thread served two passes of the fast source: each pass after the first got a fresh executor
    for earlier, later in itertools.pairwise(threads):
        assert not earlier & later
    assert daemon._workers is not None and daemon._workers.renewed >= daemon.passes_finished - 1
    old = executors[0]
    assert isinstance(old, ThreadPoolExecutor)
