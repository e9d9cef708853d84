"""Real git servers for the tests and benchmarks: bare repositories, smart HTTP, sshd.

- ``make_bare_repo`` (from :mod:`image_updater.demo.bare`, which the demo uses too) / ``commit_to_bare``: a
  bare repository with an initial commit, and a commit pushed to it as "someone else" (a human racing
  image-updater).
- ``GitHttpServer``: a threaded HTTP server on 127.0.0.1 that runs ``git http-backend`` as CGI behind
  Basic auth (one user name and token), pushes enabled, every request bounded in time.
- ``SshServer``: a real ``sshd -D`` on a free 127.0.0.1 port with a throwaway host key and client key, an
  ``AuthorizedKeysFile`` of its own and a ``known_hosts`` file for the client.

Everything binds 127.0.0.1 only and is stopped by ``stop()`` (or leaving the ``with`` block).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import unquote

from image_updater.demo.bare import git, make_bare_repo, write_files

__all__ = [
    "GitHttpServer",
    "HttpRequest",
    "SshServer",
    "SshServerError",
    "commit_to_bare",
    "make_bare_repo",
]

def commit_to_bare(
    bare: str | os.PathLike[str],
    files: Mapping[str, str | bytes | None],
    *,
    message: str = "Human change",
    branch: str = "main",
) -> str:
    """Commit ``files`` (None deletes) on top of ``branch`` of ``bare`` and push it; returns the new hash."""
    with tempfile.TemporaryDirectory(prefix="bare-commit-") as tmp:
        work = Path(tmp) / "work"
        git("clone", "--quiet", "--branch", branch, str(bare), str(work))
        write_files(work, files)
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
        return git("rev-parse", "HEAD", cwd=work).strip()


# ---------------------------------------------------------------------------------------------------------
# smart HTTP


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request the HTTP git server answered (the Authorization header itself is not kept)."""

    method: str
    path: str
    user: str | None
    status: int


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: GitHttpServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _GitHandler)


class _GitHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # a stalled client does not hold a thread forever
    server: _HttpServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _user(self) -> str | None:
        """The authenticated user, "" for an anonymous request where allowed, None when refused."""
        owner = self.server.owner
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            good_user = hmac.compare_digest(user.encode(), owner.username.encode())
            good_password = hmac.compare_digest(password.encode(), owner.password.encode())
            return user if good_user and good_password else None
        return "" if owner.anonymous_read and not self._is_push() else None

    def _is_push(self) -> bool:
        return "git-receive-pack" in self.path

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        owner = self.server.owner
        body = self._body()
        user = self._user()
        path, _, query = self.path.partition("?")
        if user is None:
            owner.record(HttpRequest(self.command, path, None, 401))
            self._reply(
                401,
                {"WWW-Authenticate": 'Basic realm="git"', "Content-Type": "text/plain"},
                b"authentication required\n",
            )
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "GIT_PROJECT_ROOT": str(owner.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "safe.directory",
            "GIT_CONFIG_VALUE_0": "*",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
        }
        if user:
            env["REMOTE_USER"] = user
        for header, variable in (
            ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
            ("Git-Protocol", "GIT_PROTOCOL"),
        ):
            if self.headers.get(header):
                env[variable] = self.headers[header]
        try:
            result = subprocess.run(
                ["git", "http-backend"], input=body, capture_output=True, env=env, timeout=60, check=False
            )
        except subprocess.TimeoutExpired:
            owner.record(HttpRequest(self.command, path, user or None, 504))
            self._reply(504, {"Content-Type": "text/plain"}, b"git http-backend timed out\n")
            return
        raw = result.stdout
        split = raw.find(b"\r\n\r\n")
        head, rest = (raw[:split], raw[split + 4 :]) if split >= 0 else raw.partition(b"\n\n")[::2]
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        if result.returncode != 0 and not head:
            status, rest = 500, result.stderr
        owner.record(HttpRequest(self.command, path, user or None, status))
        self._reply(status, headers, rest)


class GitHttpServer:
    """``git http-backend`` over HTTP on 127.0.0.1 serving the bare repositories under ``root``.

    Every request needs Basic auth with ``username`` and ``password`` (a token), except reads when
    ``anonymous_read`` is set. Use as a context manager, or ``start()`` / ``stop()``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        username: str = "x-access-token",
        password: str = "test-token",
        anonymous_read: bool = False,
    ) -> None:
        self.root = Path(root)
        self.username = username
        self.password = password
        self.anonymous_read = anonymous_read
        self.requests: list[HttpRequest] = []
        self._lock = threading.Lock()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def record(self, request: HttpRequest) -> None:
        with self._lock:
            self.requests.append(request)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL; a repository ``root/<name>`` is at ``f"{url}/<name>"``."""
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, repo: str | os.PathLike[str]) -> str:
        """The URL of a bare repository given by its path (under ``root``) or its name."""
        path = Path(repo)
        relative = path.relative_to(self.root) if path.is_absolute() else path
        return f"{self.url}/{relative.as_posix()}"

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        self._server = _HttpServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="git-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------------------
# sshd


class SshServerError(RuntimeError):
    """sshd could not be started; the message carries its log."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return path.with_suffix(".pub").read_text().strip()


class SshServer:
    """A real sshd on 127.0.0.1 that lets the current user in with a throwaway key.

    ``client_key`` (private key, 0600), ``known_hosts`` (the server's host key for ``[127.0.0.1]:port``)
    and ``url_for(path)`` give a git client all it needs. sshd's log is in ``log_file``.
    """

    SSHD = "/usr/sbin/sshd"

    def __init__(self, workdir: str | os.PathLike[str], *, sshd: str | None = None) -> None:
        self.dir = Path(workdir)
        self.sshd = sshd or self.SSHD
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.port = 0
        self.client_key = self.dir / "client_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self.log_file = self.dir / "sshd.log"
        self.host_public_key = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def available(cls) -> bool:
        return Path(cls.SSHD).is_file() and shutil.which("ssh-keygen") is not None

    def url_for(self, repo: str | os.PathLike[str]) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{Path(repo).resolve().as_posix()}"

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def _prepare(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        host_key = self.dir / "host_ed25519"
        if not host_key.exists():
            _keygen(host_key, "test-host")
            client_pub = _keygen(self.client_key, "test-client")
            (self.dir / "authorized_keys").write_text(client_pub + "\n")
        self.host_public_key = host_key.with_suffix(".pub").read_text().strip()
        if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
            # privilege separation directory, normally created by the service manager
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        config = self.dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    "StrictModes no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    f"AllowUsers {self.user}",
                    "PrintMotd no",
                    "LogLevel VERBOSE",
                    "MaxStartups 50",
                    "",
                ]
            )
        )
        return config

    def start(self, timeout: float = 15.0) -> Self:
        last_log = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding
            self.port = _free_port()
            config = self._prepare()
            self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_public_key}\n")
            with self.log_file.open("wb") as log:
                self._proc = subprocess.Popen(
                    [self.sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
                )
            if self._wait_ready(timeout):
                return self
            last_log = self.log()
            self.stop()
            if "Address already in use" not in last_log:
                break
        raise SshServerError(f"sshd did not start on 127.0.0.1:{self.port}; its log:\n{last_log}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1) as sock:
                sock.settimeout(2)
                if sock.recv(64).startswith(b"SSH-"):
                    return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
