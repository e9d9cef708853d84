"""The distribution registry of the tests: the demo's launcher plus Basic/token auth, TLS and notifications.

Tests and benchmarks talk to the same registry binary users run in production, so the registry client is
exercised against real HTTP semantics (auth challenges, digests, content types) instead of a hand-written
imitation. :class:`RegistryServer` extends :class:`image_updater.demo.registry.RegistryServer` (free port,
own storage, config and log, dies with its parent) with what only the tests need.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from image_updater.demo import registry as _launcher
from image_updater.demo.registry import DEFAULT_REGISTRY_BINARY, StrPath
from image_updater.errors import RegistryStartError

if TYPE_CHECKING:
    from tests.servers.token_issuer import TokenAuth

__all__ = [
    "DEFAULT_REGISTRY_BINARY",
    "RegistryServer",
    "RegistryStartError",
    "StrPath",
    "TLSFiles",
    "make_tls_files",
    "write_htpasswd",
]


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a throw-away CA and of a server certificate it signed (for 127.0.0.1 and localhost)."""

    ca_file: Path
    """The CA certificate: what a client passes as ``ca_file`` to trust the server."""
    cert_file: Path
    """The server certificate followed by its chain (for the server's TLS config)."""
    key_file: Path
    """The server's private key."""

    @property
    def server_pair(self) -> tuple[Path, Path]:
        """``(cert_file, key_file)``: what ``RegistryServer(tls=...)`` and ``TokenIssuer(tls=...)`` take."""
        return (self.cert_file, self.key_file)


def make_tls_files(
    directory: StrPath, hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
) -> TLSFiles:
    """Create a trustme CA and a server certificate for ``hosts`` as ``ca.pem``, ``cert.pem``, ``key.pem``.

    trustme is a test-only dependency, hence the import inside the function.
    """
    import trustme

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(*hosts)
    files = TLSFiles(
        ca_file=directory / "ca.pem", cert_file=directory / "cert.pem", key_file=directory / "key.pem"
    )
    ca.cert_pem.write_to_path(str(files.ca_file))
    # The chain goes into one file: leaf first, as Go's tls.LoadX509KeyPair expects.
    with open(files.cert_file, "wb") as out:
        for blob in cert.cert_chain_pems:
            out.write(blob.bytes())
    cert.private_key_pem.write_to_path(str(files.key_file))
    return files


def write_htpasswd(path: StrPath, users: Mapping[str, str]) -> Path:
    """Write an htpasswd file with bcrypt hashes, the only kind distribution accepts.

    Uses ``htpasswd -Bbn`` (apache2-utils); without it, libc's bcrypt through the stdlib ``crypt`` module.
    """
    lines = []
    htpasswd = shutil.which("htpasswd")
    for user, password in users.items():
        if ":" in user:
            raise ValueError(f"htpasswd user names cannot contain ':': {user!r}")
        if htpasswd:
            # Cost 5 (the minimum) keeps each authenticated request cheap; this is a test registry.
            done = subprocess.run(
                [htpasswd, "-Bbn", "-C", "5", user, password], capture_output=True, text=True, check=True
            )
            lines.append(done.stdout.strip())
        else:
            lines.append(f"{user}:{_crypt_bcrypt(password)}")
    target = Path(path)
    target.write_text("\n".join(lines) + "\n")
    return target


def _crypt_bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # stdlib up to 3.12; only the fallback needs it

    if crypt.METHOD_BLOWFISH not in crypt.methods:
        raise RuntimeError("neither the htpasswd binary (apache2-utils) nor libc bcrypt is available")
    # bcrypt is what distribution requires; ruff's S324 flags every crypt method alike.
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32))


class RegistryServer(_launcher.RegistryServer):
    """A ``docker-registry serve`` process on 127.0.0.1 with temporary filesystem storage.

    Takes every option of the demo's launcher (``delete_enabled``, ``work_dir``, ``storage_dir``, ``port``,
    ``binary``, ``startup_timeout``, ``log_level``, ``die_with_parent``) and:

    - ``htpasswd``: ``{user: password}`` enables Basic auth (mutually exclusive with ``token_auth``).
    - ``tls``: ``(cert_file, key_file)`` or :class:`TLSFiles` serves https.
    - ``token_auth``: a :class:`~tests.servers.token_issuer.TokenAuth` enables the Bearer token flow.
    - ``notify_url`` (+ ``notify_headers``): distribution posts its push/pull events there.
    """

    def __init__(
        self,
        *,
        htpasswd: Mapping[str, str] | None = None,
        tls: tuple[StrPath, StrPath] | TLSFiles | None = None,
        token_auth: TokenAuth | None = None,
        notify_url: str | None = None,
        notify_headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        if htpasswd is not None and token_auth is not None:
            raise ValueError("a registry uses either htpasswd or token auth, not both")
        super().__init__(**options)
        self.htpasswd = dict(htpasswd) if htpasswd is not None else None
        self.tls: tuple[Path, Path] | None = None
        if isinstance(tls, TLSFiles):
            self.tls = tls.server_pair
        elif tls is not None:
            self.tls = (Path(tls[0]), Path(tls[1]))
        self.token_auth = token_auth
        self.notify_url = notify_url
        self.notify_headers = dict(notify_headers or {})

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def _prepare(self) -> None:
        if self.htpasswd is not None:
            write_htpasswd(self.work_dir / "htpasswd", self.htpasswd)

    def _config(self, port: int) -> dict[str, Any]:
        config = super()._config(port)
        if self.tls is not None:
            config["http"]["tls"] = {"certificate": str(self.tls[0]), "key": str(self.tls[1])}
        if self.htpasswd is not None:
            config["auth"] = {
                "htpasswd": {"realm": "image-updater-test", "path": str(self.work_dir / "htpasswd")}
            }
        elif self.token_auth is not None:
            config["auth"] = {
                "token": {
                    "realm": self.token_auth.realm,
                    "service": self.token_auth.service,
                    "issuer": self.token_auth.issuer,
                    "rootcertbundle": str(self.token_auth.rootcertbundle),
                }
            }
        if self.notify_url is not None:
            config["notifications"] = {
                "endpoints": [
                    {
                        "name": "image-updater-test",
                        "url": self.notify_url,
                        "headers": {name: [value] for name, value in self.notify_headers.items()},
                        "timeout": "2s",
                        "threshold": 5,
                        "backoff": "500ms",
                    }
                ]
            }
        return config
