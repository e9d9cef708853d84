"""Signed commits: prepare a private signing key under the cache dir and tell git how to use it.

``prepare(signing, cache_dir)`` runs at start (daemon start, ``run --once``, ``apply --commit``). It never
touches the user's keyring or agent:

- openpgp: the armored secret key is imported into ``<cache_dir>/signing/gnupg`` (0700), its fingerprint
  found, and a test signature made through the same ``gpg.program`` wrapper git will use. The wrapper runs
  ``gpg --batch --pinentry-mode loopback`` and, when a passphrase is configured, feeds it on file
  descriptor 3 from an environment variable set only for the ``git commit`` process (never a file).
- ssh: the private key is copied to ``<cache_dir>/signing/ssh_key`` (0600); a passphrase, if configured, is
  removed from that private copy with ``ssh-keygen -p`` (ssh-keygen -Y sign cannot take one
  non-interactively); the public key is derived with ``ssh-keygen -y`` and a test ``-Y sign`` made.

Any failure is a ``ConfigError`` naming the setting (``commit.signing.key_env`` ...), never the secret.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from image_updater.envnames import shown_env_name
from image_updater.errors import ConfigError
from image_updater.settings import SigningSettings

__all__ = ["Signer", "prepare", "signer_for"]

PASSPHRASE_VAR = "IMAGE_UPDATER_SIGNING_PASSPHRASE"
_TIMEOUT = 60.0
_SETTING = "commit.signing"

_GPG_WRAPPER = """#!/bin/sh
# image-updater: git's gpg.program; batch mode, loopback pinentry, private GNUPGHOME (set by the caller)
if [ -n "${IMAGE_UPDATER_SIGNING_PASSPHRASE+x}" ]; then
    exec "$IMAGE_UPDATER_GPG" --batch --no-tty --pinentry-mode loopback --passphrase-fd 3 "$@" 3<<EOF
$IMAGE_UPDATER_SIGNING_PASSPHRASE
EOF
fi
exec "$IMAGE_UPDATER_GPG" --batch --no-tty --pinentry-mode loopback "$@"
"""


@dataclass(frozen=True, slots=True)
class Signer:
    """What ``git commit`` needs to sign: ``-c`` config pairs, the key for ``-S`` and extra environment."""

    format: str
    key: str  # the fingerprint (openpgp) or the private key file (ssh)
    config: tuple[tuple[str, str], ...]
    env: tuple[tuple[str, str], ...]
    public_key: str  # armored OpenPGP public key or the ``ssh-ed25519 AAAA...`` line

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(value for name, value in self.env if name == PASSPHRASE_VAR)

    def commit_args(self) -> list[str]:
        """The ``-c k=v`` arguments placed before ``commit``."""
        args: list[str] = []
        for key, value in self.config:
            args += ["-c", f"{key}={value}"]
        return args


_cache: dict[tuple[str, str], Signer] = {}


def signer_for(
    signing: SigningSettings | None,
    cache_dir: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
) -> Signer | None:
    """The prepared signer (``prepare`` once per process and configuration), or None without signing."""
    if signing is None:
        return None
    key = (str(Path(cache_dir).expanduser()), signing.model_dump_json())
    signer = _cache.get(key)
    if signer is None:
        signer = _cache[key] = prepare(signing, cache_dir, environ)
    return signer


def prepare(
    signing: SigningSettings, cache_dir: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> Signer:
    """Set the key up in ``<cache_dir>/signing`` and make a test signature; ConfigError when unusable."""
    environ = os.environ if environ is None else environ
    material = _key_material(signing, environ)
    passphrase = None
    if signing.passphrase_env is not None:
        passphrase = environ.get(signing.passphrase_env)
        if not passphrase:
            raise ConfigError(
                f"{_SETTING}.passphrase_env: environment variable {shown_env_name(signing.passphrase_env)} "
                "is empty or unset"
            )
    where = _key_setting(signing)
    home = Path(cache_dir).expanduser() / "signing"
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        if signing.format == "openpgp":
            return _prepare_openpgp(material, passphrase, home, where)
        return _prepare_ssh(material, passphrase, home, where)
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot prepare the signing key in {home}: {exc.strerror or exc}"
        ) from None


def _key_setting(signing: SigningSettings) -> str:
    if signing.key_env is not None:
        return f"{_SETTING}.key_env ({shown_env_name(signing.key_env)})"
    return f"{_SETTING}.key_file ({signing.key_file})"


def _key_material(signing: SigningSettings, environ: Mapping[str, str]) -> bytes:
    if signing.key_env is not None:
        value = environ.get(signing.key_env, "")
        if not value.strip():
            raise ConfigError(
                f"{_SETTING}.key_env: environment variable {shown_env_name(signing.key_env)} "
                "is empty or unset"
            )
        return value.encode() if value.endswith("\n") else (value + "\n").encode()
    assert signing.key_file is not None
    try:
        data = signing.key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{_SETTING}.key_file: cannot read {signing.key_file}: {exc.strerror}") from None
    if not data.strip():
        raise ConfigError(f"{_SETTING}.key_file: {signing.key_file} is empty")
    return data


def _run(
    args: list[str],
    *,
    env: Mapping[str, str],
    where: str,
    what: str,
    stdin: bytes = b"",
    secrets: tuple[str, ...] = (),
) -> bytes:
    try:
        proc = subprocess.run(
            args,
            input=stdin,
            capture_output=True,
            env=dict(env),
            timeout=_TIMEOUT,
            start_new_session=True,
            check=False,
        )
    except FileNotFoundError:
        raise ConfigError(f"{where}: {args[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{where}: {what} timed out after {_TIMEOUT:g}s") from None
    if proc.returncode != 0:
        raise ConfigError(f"{where}: {what} failed: {_detail(proc.stderr, secrets)}")
    return proc.stdout


def _detail(stderr: bytes, secrets: tuple[str, ...]) -> str:
    text = stderr.decode("utf-8", "replace")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    lines = [line.strip() for line in text.splitlines() if line.strip() and "-----" not in line]
    return "; ".join(lines[-4:]) or "no message"


def _tool_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C",
        "LANGUAGE": "C",
        "SSH_ASKPASS": "",
        "SSH_ASKPASS_REQUIRE": "never",
    }
    env.update(extra)
    return env


# -- openpgp ----------------------------------------------------------------------------------------------


def _prepare_openpgp(material: bytes, passphrase: str | None, home: Path, where: str) -> Signer:
    gpg = shutil.which("gpg")
    if gpg is None:
        raise ConfigError(f"{where}: gpg is not installed")
    gnupg = home / "gnupg"
    gnupg.mkdir(mode=0o700, exist_ok=True)
    os.chmod(gnupg, 0o700)
    gnupg = _socket_safe(gnupg, where)
    wrapper = home / "gpg-wrapper"
    _write(wrapper, _GPG_WRAPPER.encode(), 0o700)
    base = {"GNUPGHOME": str(gnupg), "IMAGE_UPDATER_GPG": gpg}
    env = _tool_env(base)
    secrets = (passphrase,) if passphrase else ()
    # which key is it? (--show-keys reads the packet without importing)
    listing = _run(
        [gpg, "--batch", "--no-tty", "--with-colons", "--import-options", "show-only", "--import"],
        env=env,
        where=where,
        what="reading the OpenPGP key",
        stdin=material,
    ).decode("utf-8", "replace")
    fingerprints = _secret_fingerprints(listing)
    if not fingerprints:
        raise ConfigError(f"{where}: not an OpenPGP secret key (an armored 'PRIVATE KEY BLOCK' is needed)")
    fpr = fingerprints[0]
    _run(
        [gpg, "--batch", "--no-tty", "--import"],
        env=env,
        where=where,
        what="importing the OpenPGP key",
        stdin=material,
    )
    public = _run(
        [gpg, "--batch", "--no-tty", "--armor", "--export", fpr],
        env=env,
        where=where,
        what="exporting the public key",
    ).decode()
    sign_env = dict(base)
    if passphrase:
        sign_env[PASSPHRASE_VAR] = passphrase
    # the test signature goes through the wrapper exactly as git calls it
    _run(
        [str(wrapper), "--status-fd=2", "-bsau", fpr],
        env=_tool_env(sign_env),
        where=where,
        what="test signature (wrong passphrase or unusable key?)",
        stdin=b"image-updater test\n",
        secrets=secrets,
    )
    return Signer(
        format="openpgp",
        key=fpr,
        config=(("gpg.format", "openpgp"), ("gpg.openpgp.program", str(wrapper)), ("user.signingKey", fpr)),
        env=tuple(sorted(sign_env.items())),
        public_key=public,
    )


# gpg-agent's sockets live in GNUPGHOME (S.gpg-agent.browser is the longest name): a Unix socket path has at
# most 107 bytes, and without /run/user/<uid> gpg has nowhere else to put them
_SOCKET_ROOM = 107 - len("/S.gpg-agent.browser")


def _socket_safe(gnupg: Path, where: str) -> Path:
    """``gnupg``, or a short private link to it when its sockets' paths would be too long for gpg-agent."""
    if len(os.fsencode(gnupg)) <= _SOCKET_ROOM:
        return gnupg
    import hashlib

    links = Path(tempfile.gettempdir()) / f"image-updater-gnupg-{os.getuid()}"
    try:
        links.mkdir(mode=0o700, exist_ok=True)
        info = links.lstat()
        if info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o077:
            raise ConfigError(f"{where}: {links} is not a private directory of this user")
        link = links / hashlib.sha256(os.fsencode(gnupg)).hexdigest()[:16]
        if not (link.is_symlink() and Path(os.readlink(link)) == gnupg):
            link.unlink(missing_ok=True)
            link.symlink_to(gnupg, target_is_directory=True)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot make a short path for the GnuPG home: {exc.strerror}") from None
    return link


def _secret_fingerprints(listing: str) -> list[str]:
    fprs: list[str] = []
    in_secret = False
    for line in listing.splitlines():
        fields = line.split(":")
        if fields[0] in ("sec", "pub"):
            in_secret = fields[0] == "sec"
        elif fields[0] == "fpr" and in_secret and len(fields) > 9:
            fprs.append(fields[9])
            in_secret = False
    return fprs


# -- ssh --------------------------------------------------------------------------------------------------


def _prepare_ssh(material: bytes, passphrase: str | None, home: Path, where: str) -> Signer:
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise ConfigError(f"{where}: ssh-keygen is not installed")
    if b"PRIVATE KEY" not in material:
        raise ConfigError(f"{where}: not an SSH private key (an OpenSSH 'PRIVATE KEY' file is needed)")
    key = home / "ssh_key"
    env = _tool_env({})
    secrets = (passphrase,) if passphrase else ()
    with tempfile.TemporaryDirectory(dir=home, prefix=".key.") as tmp:
        staged = Path(tmp) / "key"
        _write(staged, material, 0o600)
        if passphrase:
            # -Y sign cannot take a passphrase: decrypt the private copy (it never leaves the 0700 dir)
            _run(
                [keygen, "-q", "-p", "-P", passphrase, "-N", "", "-f", str(staged)],
                env=env,
                where=where,
                what="decrypting the SSH key (wrong passphrase?)",
                secrets=secrets,
            )
        public = (
            _run(
                [keygen, "-y", "-P", "", "-f", str(staged)],
                env=env,
                where=where,
                what="reading the SSH key (garbage, or a passphrase that passphrase_env does not give?)",
                secrets=secrets,
            )
            .decode()
            .strip()
        )
        os.replace(staged, key)
    _write(home / "ssh_key.pub", (public + "\n").encode(), 0o644)
    probe = home / ".probe"
    _write(probe, b"image-updater test\n", 0o600)
    try:
        _run(
            [keygen, "-Y", "sign", "-n", "git", "-f", str(key), str(probe)],
            env=env,
            where=where,
            what="test signature",
        )
    finally:
        probe.unlink(missing_ok=True)
        Path(f"{probe}.sig").unlink(missing_ok=True)
    return Signer(
        format="ssh",
        key=str(key),
        config=(("gpg.format", "ssh"), ("gpg.ssh.program", keygen), ("user.signingKey", str(key))),
        env=(),
        public_key=public,
    )


def _write(path: Path, content: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
