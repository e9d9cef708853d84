"""Registry credentials: the config's ``credentials``, Docker's ``config.json`` and credential helpers.

Lookup order for a registry host (``docker.io``, ``ghcr.io``, ``127.0.0.1:5000``):

1. the matching ``registries[].credentials`` entry: ``env:VAR`` or ``file:PATH`` holding ``user:password``,
   or ``dockerconfig:PATH`` naming a Docker config file to use instead of the default one;
2. the Docker config (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``): ``credHelpers[host]``,
   then an ``auths`` entry (base64 ``auth`` or ``username``/``password``, ``identitytoken``), then
   ``credsStore``. Docker Hub's entries live under ``https://index.docker.io/v1/``.

Helpers are run as ``docker-credential-<name> get`` with the server address on stdin, for at most
``helper_timeout`` seconds and 1 MiB of output (64 KiB of stderr). A helper that fails is reported by its exit
code and the first line of its stderr (redacted, control characters escaped, truncated), never by its stdout,
which may hold the secret; the failure is remembered for ``failure_ttl`` seconds so that a hanging helper
costs a pass one timeout, not one per image. Credentials a helper hands out may expire (ECR tokens last 12
hours), so they are kept for ``helper_ttl`` seconds only; every credential is read again after the registry
refused it (``invalidate``). Nothing here ever logs or raises a secret.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from image_updater.envnames import shown_env_name
from image_updater.errors import RegistryAuthError, _HelperFailed, _TooMuchOutput, redact
from image_updater.references import DOCKER_HUB, normalise_registry

__all__ = ["Credential", "CredentialStore", "default_docker_config", "docker_server_address"]

log = logging.getLogger(__name__)

_HUB_SERVER_ADDRESS = "https://index.docker.io/v1/"
_MAX_CONFIG_BYTES = 4 * 1024 * 1024
# A helper's answer is a few hundred bytes of JSON; anything near these is not an answer.
_MAX_HELPER_OUTPUT = 1024 * 1024
_MAX_HELPER_STDERR = 64 * 1024
_STDERR_SHOWN = 200


@dataclass(frozen=True, slots=True)
class Credential:
    """A username and secret for one registry; ``identity_token`` marks an OAuth2 refresh token."""

    username: str
    secret: str = field(repr=False)
    source: str = ""  # where it came from, for messages ("env:REG_PASS", "helper docker-credential-ecr")
    identity_token: bool = False


def default_docker_config() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (the Docker CLI's rule)."""
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def docker_server_address(registry: str) -> str:
    """The server address Docker stores a registry's credentials under (Docker Hub's is historical)."""
    return _HUB_SERVER_ADDRESS if registry == DOCKER_HUB else registry


def _config_key_host(key: str) -> str:
    """``https://index.docker.io/v1/`` -> ``docker.io``; ``http://reg:5000/v2`` -> ``reg:5000``."""
    text = key.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
            break
    return normalise_registry(text.split("/", 1)[0])


def _split_user_password(text: str, what: str) -> tuple[str, str]:
    user, sep, password = text.strip().partition(":")
    if not sep or not user:
        raise RegistryAuthError(f"{what} does not hold user:password")
    return user, password


@dataclass(slots=True)
class _Entry:
    credential: Credential | None
    expires_at: float | None  # None: until invalidated
    failure: str | None = None  # a helper's failure, raised again until the entry expires


class CredentialStore:
    """Finds and caches credentials per registry host; ``get`` never returns or raises a secret in text."""

    def __init__(
        self,
        docker_config: str | os.PathLike[str] | None = None,
        *,
        helper_ttl: float = 900.0,
        helper_timeout: float = 30.0,
        failure_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._docker_config = Path(docker_config) if docker_config is not None else None
        self._helper_ttl = helper_ttl
        self._helper_timeout = helper_timeout
        self._failure_ttl = failure_ttl
        self._clock = clock
        self._entries: dict[tuple[str, str | None], _Entry] = {}
        self._locks: dict[tuple[str, str | None], asyncio.Lock] = {}
        self._warned_helpers: set[str] = set()

    def invalidate(self, registry: str) -> None:
        """Forget what we know for ``registry`` so that the next ``get`` reads the sources again."""
        for key in [k for k in self._entries if k[0] == registry]:
            del self._entries[key]

    async def get(self, registry: str, spec: str | None = None) -> Credential | None:
        """Credentials for ``registry`` (normalised host) from ``spec`` or the Docker config; None: none."""
        key = (registry, spec)
        entry = self._entries.get(key)
        if entry is None or not self._valid(entry):
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                entry = self._entries.get(key)
                if entry is None or not self._valid(entry):
                    try:
                        entry = await self._lookup(registry, spec)
                    except _HelperFailed as exc:
                        # every image of the registry would run the failing (or hanging) helper again
                        entry = _Entry(None, self._clock() + self._failure_ttl, str(exc))
                    self._entries[key] = entry
        if entry.failure is not None:
            raise RegistryAuthError(entry.failure)
        return entry.credential

    def _valid(self, entry: _Entry) -> bool:
        return entry.expires_at is None or entry.expires_at > self._clock()

    async def _lookup(self, registry: str, spec: str | None) -> _Entry:
        if spec is not None and spec.startswith("env:"):
            var = spec[4:]
            value = os.environ.get(var)
            if value is None:
                raise RegistryAuthError(
                    f"registry {registry}: environment variable {shown_env_name(var)} is not set"
                )
            where = f"registry {registry}: environment variable {shown_env_name(var)}"
            user, password = _split_user_password(value, where)
            return _Entry(Credential(user, password, source=spec), None)
        if spec is not None and spec.startswith("file:"):
            path = Path(spec[5:]).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise RegistryAuthError(
                    f"registry {registry}: cannot read credentials file {path}: {exc.strerror}"
                ) from None
            user, password = _split_user_password(text, f"registry {registry}: credentials file {path}")
            return _Entry(Credential(user, password, source=f"file {path}"), None)
        if spec is not None and spec.startswith("dockerconfig:"):
            path = Path(spec[len("dockerconfig:") :]).expanduser()
            return await self._from_docker_config(registry, path, True)
        config = self._docker_config if self._docker_config is not None else default_docker_config()
        return await self._from_docker_config(registry, config, False)

    async def _from_docker_config(self, registry: str, path: Path, explicit: bool) -> _Entry:
        config = _read_docker_config(registry, path, explicit)
        if config is None:
            return _Entry(None, None)
        helpers = config.get("credHelpers")
        if isinstance(helpers, dict):
            for host, helper in helpers.items():
                if isinstance(host, str) and isinstance(helper, str) and _config_key_host(host) == registry:
                    credential = await self._run_helper(registry, helper, required=True)
                    return _Entry(credential, self._clock() + self._helper_ttl)
        auths = config.get("auths")
        if isinstance(auths, dict):
            for host, value in auths.items():
                if not isinstance(value, dict) or not isinstance(host, str):
                    continue
                if _config_key_host(host) != registry:
                    continue
                credential = _from_auth_entry(registry, path, value)
                if credential is not None:
                    return _Entry(credential, None)
        store = config.get("credsStore")
        if isinstance(store, str) and store:
            credential = await self._run_helper(registry, store, required=False)
            return _Entry(credential, self._clock() + self._helper_ttl)
        return _Entry(None, None)

    async def _run_helper(self, registry: str, helper: str, *, required: bool) -> Credential | None:
        program = f"docker-credential-{helper}"
        address = docker_server_address(registry)
        try:
            process = await asyncio.create_subprocess_exec(
                program, "get",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            if required:
                raise _HelperFailed(
                    f"registry {registry}: cannot run credential helper {program}: {exc.strerror}"
                ) from None
            if program not in self._warned_helpers:
                self._warned_helpers.add(program)
                log.warning(
                    "credsStore helper %s is not available (%s); continuing without it", program, exc.strerror
                )
            return None
        try:
            stdout, stderr = await asyncio.wait_for(
                _communicate(process, address.encode() + b"\n"), timeout=self._helper_timeout
            )
        except TimeoutError:
            raise _HelperFailed(
                f"registry {registry}: credential helper {program} did not answer "
                f"within {self._helper_timeout:g} s"
            ) from None
        except _TooMuchOutput as exc:
            raise _HelperFailed(
                f"registry {registry}: credential helper {program} wrote more than {exc.limit} bytes "
                f"to {exc.stream}; stopped it"
            ) from None
        finally:
            await _reap(process)
        if process.returncode != 0:
            # The helper protocol puts error messages on stdout; stdout may also hold the answer itself
            # (a helper that printed its JSON and then failed), so it is looked at but never quoted.
            said = (stdout + b"\n" + stderr).decode("utf-8", "replace").lower()
            if "credentials not found" in said:
                return None
            detail = _stderr_line(stderr, _secret_in(stdout))
            raise _HelperFailed(
                f"registry {registry}: credential helper {program} failed with exit code {process.returncode}"
                + (f": {detail}" if detail else "")
            )
        try:
            answer = json.loads(stdout)
            username, secret = answer["Username"], answer["Secret"]
            if not isinstance(username, str) or not isinstance(secret, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise _HelperFailed(
                f"registry {registry}: credential helper {program} printed no Username/Secret JSON"
            ) from None
        if username == "<token>":
            return Credential("", secret, source=f"helper {program}", identity_token=True)
        return Credential(username, secret, source=f"helper {program}")


async def _read_at_most(reader: asyncio.StreamReader | None, limit: int, stream: str) -> bytes:
    if reader is None:
        return b""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await reader.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise _TooMuchOutput(stream, limit)
        chunks.append(chunk)


async def _communicate(process: asyncio.subprocess.Process, data: bytes) -> tuple[bytes, bytes]:
    """Like ``process.communicate(data)``, but reading at most ``_MAX_HELPER_OUTPUT`` bytes per stream."""

    async def feed() -> None:
        if process.stdin is None:
            return
        try:
            process.stdin.write(data)
            await process.stdin.drain()
            process.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # a helper that does not read its stdin may still answer

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(feed())
            out = group.create_task(_read_at_most(process.stdout, _MAX_HELPER_OUTPUT, "stdout"))
            err = group.create_task(_read_at_most(process.stderr, _MAX_HELPER_STDERR, "stderr"))
    except BaseExceptionGroup as group_error:
        too_much = group_error.subgroup(_TooMuchOutput)
        if too_much is not None:
            raise too_much.exceptions[0] from None
        raise
    await process.wait()
    return out.result(), err.result()


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Make sure the helper is gone (killed if it still runs) and its exit status collected.

    What it wrote and nobody read is drained (it can be no more than a pipe's buffer once the helper is
    dead): asyncio only reports a process finished once its pipes have closed.
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()

    async def drain(reader: asyncio.StreamReader | None) -> None:
        while reader is not None and await reader.read(64 * 1024):
            pass

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5.0):
            await asyncio.gather(drain(process.stdout), drain(process.stderr))
            await process.wait()


def _secret_in(stdout: bytes) -> str | None:
    """The ``Secret`` of a helper's JSON answer, so that it can be masked wherever else it shows up."""
    try:
        answer = json.loads(stdout)
    except ValueError:
        return None
    secret = answer.get("Secret") if isinstance(answer, dict) else None
    return secret if isinstance(secret, str) else None


def _stderr_line(stderr: bytes, secret: str | None) -> str:
    """The first non-empty line of a helper's stderr, redacted, control characters escaped, truncated."""
    text = stderr.decode("utf-8", "replace")
    line = next((candidate.strip() for candidate in text.splitlines() if candidate.strip()), "")
    line = redact(line, secret)
    line = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in line
    )
    return line if len(line) <= _STDERR_SHOWN else line[: _STDERR_SHOWN - 3] + "..."


def _read_docker_config(registry: str, path: Path, explicit: bool) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        if explicit:
            raise RegistryAuthError(f"registry {registry}: docker config {path} does not exist") from None
        return None
    except OSError as exc:
        raise RegistryAuthError(
            f"registry {registry}: cannot read docker config {path}: {exc.strerror}"
        ) from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise RegistryAuthError(f"registry {registry}: docker config {path} is larger than 4 MiB")
    try:
        config = json.loads(raw)
    except ValueError:
        # the decoder's message may quote the file, and the file holds secrets: say only where it broke
        raise RegistryAuthError(f"registry {registry}: docker config {path} is not valid JSON") from None
    if not isinstance(config, dict):
        raise RegistryAuthError(f"registry {registry}: docker config {path} is not a JSON object")
    return config


def _from_auth_entry(registry: str, path: Path, value: dict[str, Any]) -> Credential | None:
    source = f"docker config {path}"
    token = value.get("identitytoken")
    if isinstance(token, str) and token:
        return Credential(str(value.get("username") or ""), token, source=source, identity_token=True)
    auth = value.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise RegistryAuthError(f"registry {registry}: auth entry in {source} is not base64") from None
        user, password = _split_user_password(decoded, f"registry {registry}: the auth entry in {source}")
        return Credential(user, password, source=source)
    name, secret = value.get("username"), value.get("password")
    if isinstance(name, str) and name and isinstance(secret, str):
        return Credential(name, secret, source=source)
    return None
