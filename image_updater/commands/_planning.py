"""Planning a directory from the command line, shared by ``plan``, ``apply`` and ``validate``: the PATH
check, the registries-backed plan of a checkout, a progress line on a terminal, and error log lines."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from image_updater.errors import ConfigError

if TYPE_CHECKING:
    from image_updater.checkout import Planned, Progress
    from image_updater.plan import Result
    from image_updater.settings import Settings

__all__ = ["check_directory", "log_errors", "plan_path", "progress_indicator"]

log = logging.getLogger(__name__)


class _Ticker:
    """A one-line status on a terminal's stderr, shown only once a run has taken longer than ``delay``."""

    def __init__(self, stream: IO[str], delay: float = 1.0) -> None:
        self._stream = stream
        self._delay = delay
        self._message = "working"
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._shown = False
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def update(self, message: str) -> None:
        self._message = message

    def _loop(self) -> None:
        frames = "|/-\\"
        tick = 0
        while not self._stop.wait(0.2):
            elapsed = time.monotonic() - self._started
            if elapsed < self._delay:
                continue
            self._shown = True
            self._stream.write(f"\r\x1b[K{frames[tick % 4]} {self._message}… {elapsed:.0f}s")
            self._stream.flush()
            tick += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


@contextmanager
def progress_indicator(stream: IO[str] | None = None) -> Iterator[Progress | None]:
    """A progress callback drawing on ``stream`` (stderr) when it is a terminal, else ``None``."""
    stream = stream if stream is not None else sys.stderr
    if not stream.isatty():
        yield None
        return
    ticker = _Ticker(stream)
    ticker.start()
    try:
        yield ticker.update
    finally:
        ticker.stop()


def check_directory(path: str) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"{path}: not a directory")
    return root


def plan_path(
    root: Path, settings: Settings, progress: Progress | None = None, *, explain: bool = False
) -> Planned:
    """Plan ``root`` with the registries, credentials, cache and policy_dirs of ``settings``; ``explain``:
    keep the verdicts per image too (``plan --format html``)."""
    import asyncio

    from image_updater.checkout import plan_directory
    from image_updater.writeback import make_client

    async def go() -> Planned:
        async with make_client(settings) as client:
            return await plan_directory(root, client=client, policy_dirs=list(settings.policy_dirs),
                                        progress=progress, explain=explain)

    return asyncio.run(go())


def log_errors(result: Result, fmt: str) -> None:
    """One log line per error on stderr, unless the table on stdout already shows them to the reader."""
    if fmt == "table":
        return
    for error in result.errors:
        where = f"{error.file}:{error.line}" if error.file and error.line else (error.file or "")
        log.error("%s%s%s", where, ": " if where else "", error.message,
                  extra={"image": error.image} if error.image else None)
