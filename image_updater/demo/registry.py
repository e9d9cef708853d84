"""The CNCF distribution registry (``docker-registry serve``) on a free 127.0.0.1 port, for the demo.

``image-updater demo`` pushes its example images to the same registry binary users run in production. Each
server gets its own temporary storage, its own generated config file and its own log file; nothing is shared
with other servers or with the system registry in ``/etc/docker/registry``. This launcher serves plain HTTP
without auth; the tests extend it with Basic/token auth, TLS and notifications
(``tests/servers/registry_server.py``) through the :meth:`RegistryServer._prepare` and
:meth:`RegistryServer._config` hooks.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

from image_updater.errors import RegistryStartError, _AddressInUse

__all__ = ["DEFAULT_REGISTRY_BINARY", "RegistryServer", "RegistryStartError", "StrPath"]

DEFAULT_REGISTRY_BINARY = "/usr/bin/docker-registry"

StrPath = str | os.PathLike[str]

# How many times start() picks a new port when another process grabbed the one we chose between closing our
# probe socket and the registry binding it.
_PORT_ATTEMPTS = 5
_PR_SET_PDEATHSIG = 1
_INSTANCE_HEADER = "X-Image-Updater-Test-Instance"


def _tmpfs() -> str | None:
    """``/dev/shm`` when it is a writable directory (Linux tmpfs), else ``None`` (the default temp dir)."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGTERM the registry when the thread that started it dies.

    A test run killed by a timeout must not leave registries behind on a shared machine. libc is looked up
    here, in the parent: the child between fork and exec should do as little as possible (no dlopen).
    Elsewhere than Linux ``None``: the registry then outlives a crashed parent.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


class RegistryServer:
    """A ``docker-registry serve`` process on 127.0.0.1 with temporary filesystem storage, plain HTTP.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``url``/``host`` are valid once started.

    - ``delete_enabled``: allow ``DELETE`` of manifests and blobs.
    - ``work_dir``: where config and log go (default: a temp dir removed by :meth:`stop`).
    - ``storage_dir``: the registry's storage (default: a fresh temp dir on tmpfs ``/dev/shm`` when there is
      one, removed by :meth:`stop`). distribution fsyncs every blob and link it writes, which on a busy disk
      costs milliseconds per request; on tmpfs fsync is free. Expect ~25 KiB of RAM per pushed tag.
    - ``port``: a fixed port (default: a free one, re-chosen when another process takes it first).
    - ``die_with_parent``: the registry gets SIGTERM when the thread that started it dies (Linux), so a
      crashed test run leaves no servers behind; start servers from a long-lived thread.
    """

    def __init__(
        self,
        *,
        delete_enabled: bool = False,
        work_dir: StrPath | None = None,
        storage_dir: StrPath | None = None,
        port: int | None = None,
        binary: StrPath = DEFAULT_REGISTRY_BINARY,
        startup_timeout: float = 15.0,
        log_level: str = "info",
        die_with_parent: bool = True,
    ) -> None:
        self.delete_enabled = delete_enabled
        self.binary = Path(binary)
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self.die_with_parent = die_with_parent
        self._fixed_port = port
        self._own_work_dir = work_dir is None
        self._work_dir_arg = Path(work_dir) if work_dir is not None else None
        self._work_dir: Path | None = None
        self._own_storage_dir = storage_dir is None
        self._storage_dir: Path | None = Path(storage_dir) if storage_dir is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._port: int | None = None
        self._nonce = secrets.token_hex(8)

    # -- public surface -------------------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "http"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the registry is not started")
        return self._port

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (or ``https://``), without a trailing slash."""
        return f"{self.scheme}://{self.host}"

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the registry is not started")
        return self._work_dir

    @property
    def storage_dir(self) -> Path:
        if self._storage_dir is None:
            raise RuntimeError("the registry is not started")
        return self._storage_dir

    @property
    def config_path(self) -> Path:
        return self.work_dir / "config.yml"

    @property
    def log_path(self) -> Path:
        """The registry's combined stdout and stderr."""
        return self.work_dir / "registry.log"

    @property
    def pid(self) -> int | None:
        """The registry process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> Self:
        if self._process is not None:
            raise RuntimeError("the registry is already started")
        if not self.binary.exists():
            raise RegistryStartError(
                f"registry binary {self.binary} not found (Debian package docker-registry)"
            )
        if self._work_dir_arg is not None:
            self._work_dir_arg.mkdir(parents=True, exist_ok=True)
            self._work_dir = self._work_dir_arg
        else:
            self._work_dir = Path(tempfile.mkdtemp(prefix="image-updater-registry-"))
        if self._own_storage_dir:
            self._storage_dir = Path(tempfile.mkdtemp(prefix="image-updater-registry-storage-", dir=_tmpfs()))
        else:
            self.storage_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._prepare()
            self._start_on_some_port()
        except BaseException:
            self.stop()  # the error message already carries the log's tail
            raise
        return self

    def _start_on_some_port(self) -> None:
        attempts = 1 if self._fixed_port is not None else _PORT_ATTEMPTS
        for attempt in range(attempts):
            port = self._fixed_port if self._fixed_port is not None else self._pick_port()
            try:
                self._launch(port)
                return
            except _AddressInUse as exc:
                if attempt == attempts - 1:
                    tried = f"tried {attempts} port(s)"
                    raise RegistryStartError(
                        f"registry could not bind 127.0.0.1:{port} ({tried})\n{self._log_tail()}"
                    ) from exc

    def stop(self) -> None:
        """Terminate the registry (kill it if it does not exit within 5 s); idempotent."""
        process, self._process = self._process, None
        if process is not None:
            _terminate(process)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
        if self._own_storage_dir and self._storage_dir is not None:
            shutil.rmtree(self._storage_dir, ignore_errors=True)
            self._storage_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"<RegistryServer {where}>"

    # -- internals ------------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Write what the config refers to (an htpasswd file, say) once the work directory exists."""

    def _pick_port(self) -> int:
        # Overridable in tests of the retry path.
        return _free_port()

    def _config(self, port: int) -> dict[str, Any]:
        """distribution's configuration for this server on ``port`` (extended by subclasses)."""
        http: dict[str, Any] = {
            "addr": f"127.0.0.1:{port}",
            # A fixed secret silences distribution's warning and keeps upload state valid across requests.
            "secret": secrets.token_hex(16),
            # The nonce tells our registry's answers apart from those of whatever else may have taken the
            # port between our probe and the registry's bind (another test's server, say).
            "headers": {"X-Content-Type-Options": ["nosniff"], _INSTANCE_HEADER: [self._nonce]},
        }
        config: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": self.log_level, "formatter": "text", "fields": {"service": "registry"}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": self.delete_enabled},
                "cache": {"blobdescriptor": "inmemory"},
                # The purge job walks the whole storage at start-up; a test registry lives seconds.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
        }
        return config

    def _launch(self, port: int) -> None:
        # JSON is YAML, and distribution's config loader reads it as such; no YAML writer needed.
        self.config_path.write_text(json.dumps(self._config(port), indent=2) + "\n")
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        # REGISTRY_* variables override the config file; the caller's environment must not leak into it.
        env = {key: value for key, value in os.environ.items() if not key.startswith("REGISTRY_")}
        process = subprocess.Popen(
            [str(self.binary), "serve", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.work_dir,
            preexec_fn=_die_with_parent_hook() if self.die_with_parent else None,
        )
        self._port = port
        try:
            self._wait_until_ready(process, port)
        except BaseException:
            _terminate(process)
            raise
        self._process = process

    def _wait_until_ready(self, process: subprocess.Popen[bytes], port: int) -> None:
        url = f"{self.scheme}://127.0.0.1:{port}/v2/"
        deadline = time.monotonic() + self.startup_timeout
        # Only liveness is probed here: certificate checks are the tests' business.
        with httpx.Client(verify=False, timeout=1.0, trust_env=False) as client:  # noqa: S501
            while True:
                if process.poll() is not None:
                    log = self.read_log()
                    if "address already in use" in log:
                        raise _AddressInUse
                    raise RegistryStartError(
                        f"registry exited with status {process.returncode} before answering {url}\n"
                        f"{self._log_tail()}"
                    )
                try:
                    answer = client.get(url)
                except httpx.TransportError:
                    pass
                else:
                    # Any HTTP answer (200, or 401 with auth) from our own process means it serves.
                    if answer.headers.get(_INSTANCE_HEADER) == self._nonce:
                        return
                    raise _AddressInUse
                if time.monotonic() > deadline:
                    raise RegistryStartError(
                        f"registry did not answer {url} within {self.startup_timeout:g} s\n{self._log_tail()}"
                    )
                time.sleep(0.02)

    def _log_tail(self, lines: int = 40) -> str:
        tail = self.read_log().splitlines()[-lines:]
        return f"--- {self.log_path} (last {len(tail)} lines) ---\n" + "\n".join(tail)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
