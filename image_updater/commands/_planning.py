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

__all__ = ["check_directory", "configured_settings", "log_errors", "plan_path", "progress_indicator"]

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


def configured_settings(config: str | None) -> Settings | None:
    """The settings of ``config`` and the environment, or ``None`` when neither configures anything (no
    ``-c``, no ``IMAGE_UPDATER_*`` variable): the defaults, which ``plan_path`` then loads only if a
    registry is to be asked. An empty tree is planned without importing pydantic or httpx."""
    import os

    from image_updater.envnames import settings_from_environment

    if config is None and not settings_from_environment(os.environ):
        return None
    from image_updater.commands._oneshot import settle
    from image_updater.settings import load_settings

    settings = load_settings(config)
    settle()  # pydantic and the validated settings live until exit
    return settings


def plan_path(
    root: Path, settings: Settings | None, progress: Progress | None = None, *, explain: bool = False
) -> Planned:
    """Plan ``root`` with the registries, credentials, cache and policy_dirs of ``settings`` (``None``: the
    defaults, see ``configured_settings``); ``explain``: keep the verdicts per image too
    (``plan --format html``)."""
    from image_updater.checkout import Planned, discover_directory, plan_discovery

    if progress:
        progress("discovering")
    policy_dirs = list(settings.policy_dirs) if settings is not None else []
    namespace = settings.migration.argocd_namespace if settings is not None else "argocd"
    discovery, texts = discover_directory(root, policy_dirs=policy_dirs, argocd_namespace=namespace)
    if not discovery.resolve_keys:
        from image_updater.plan import build_plan

        return Planned(root=root, discovery=discovery, result=build_plan(discovery, {}), texts=texts)
    if settings is None:
        from image_updater.settings import load_settings

        settings = load_settings(None)
    import asyncio  # here: a tree without targets needs no loop (~19 ms)

    from image_updater import registry  # noqa: F401 (imported before settle(), for make_client)
    from image_updater.commands._oneshot import settle
    from image_updater.writeback import make_client

    settle()

    async def go(settings: Settings) -> Planned:
        async with make_client(settings) as client:
            return await plan_discovery(root, discovery, texts, client=client, progress=progress,
                                        explain=explain)

    return asyncio.run(go(settings))


def log_errors(result: Result, fmt: str) -> None:
    """One log line per error on stderr, unless the table on stdout already shows them to the reader."""
    if fmt == "table":
        return
    for error in result.errors:
        where = f"{error.file}:{error.line}" if error.file and error.line else (error.file or "")
        log.error("%s%s%s", where, ": " if where else "", error.message,
                  extra={"image": error.image} if error.image else None)
