"""Signed commits (issue 11, part 4): real gpg and ssh-keygen keys, a real pass, ``git verify-commit``.

Keys are generated in the test (gpg --quick-gen-key in a temp GNUPGHOME, with and without a passphrase;
ssh-keygen -t ed25519); the pushed commit is verified with a separate, verifying setup. A missing, garbage or
wrongly-protected key is a ConfigError at start naming the setting, never echoing the secret; HOME/.gnupg
stays untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from image_updater.errors import ConfigError
from image_updater.settings import SigningSettings, load_settings
from image_updater.signing import prepare
from tests.test_writeback import DEPLOYMENT, T0, git, run_cli, run_pass_in_process, write_config

# scripts/test.sh installs gnupg and openssh-client; a bare `pytest` on a machine without them skips these,
# while CI (CI set) runs them and fails, as the sshd fixture does
_IN_CI = bool(os.environ.get("CI"))
pytestmark = [
    pytest.mark.skipif(shutil.which("gpg") is None and not _IN_CI,
                       reason="gpg is not installed (scripts/test.sh installs gnupg)"),
    pytest.mark.skipif(shutil.which("ssh-keygen") is None and not _IN_CI,
                       reason="ssh-keygen is not installed (scripts/test.sh installs openssh-client)"),
]

PASSPHRASE = "correct-horse-canary-5d1e"


@pytest.fixture
def seeded(registry: Any, pusher: Any) -> Any:
    for tag, days in [("1.0.0", 1), ("1.2.0", 3)]:
        pusher.push("team/web", tag, created=T0 + timedelta(days=days))
    return registry


@pytest.fixture
def repo_files(seeded: Any) -> dict[str, str]:
    return {"apps/deployment.yaml": DEPLOYMENT.format(host=seeded.host)}


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """HOME is a temp dir: the test checks that nothing lands in HOME/.gnupg."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GNUPGHOME", raising=False)
    yield home
    assert not (home / ".gnupg").exists(), "the user's keyring was touched"


def _gpg(home: Path, *args: str, stdin: bytes = b"") -> bytes:
    return subprocess.run(
        ["gpg", "--batch", "--no-tty", "--homedir", str(home), *args],
        input=stdin,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout


def _kill_agent(home: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)


@pytest.fixture
def openpgp_key(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """``(armored secret key, armored public key)``; with PASSPHRASE when the test's param says so."""
    passphrase: str = getattr(request, "param", "")
    home = tmp_path / "keygen"
    home.mkdir(mode=0o700)
    _gpg(
        home,
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        passphrase,
        "--quick-gen-key",
        "Image Bot <bot@example.com>",
        "ed25519",
        "sign",
        "never",
    )
    secret = _gpg(
        home, "--pinentry-mode", "loopback", "--passphrase", passphrase, "--armor", "--export-secret-keys"
    ).decode()
    public = _gpg(home, "--armor", "--export").decode()
    _kill_agent(home)
    yield secret, public


@pytest.fixture
def ssh_key(tmp_path: Path) -> tuple[Path, str]:
    key = tmp_path / "keygen-ssh" / "id_ed25519"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bot", "-f", str(key)], check=True)
    return key, (key.parent / "id_ed25519.pub").read_text().strip()


def _verify_ssh(
    bare: Path, email: str, public: str, tmp_path: Path, rev: str = "main"
) -> subprocess.CompletedProcess[str]:
    """``git verify-commit rev`` with ``email``'s SSH ``public`` key as the only allowed signer."""
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"{email} {public}\n")
    return subprocess.run(
        ["git", "-c", "gpg.format=ssh", "-c", f"gpg.ssh.allowedSignersFile={allowed}", "verify-commit", rev],
        cwd=bare, capture_output=True, text=True, check=False,
    )


def _verify_openpgp(bare: Path, public: str, tmp_path: Path) -> str:
    verifier = tmp_path / "verifier"
    verifier.mkdir(mode=0o700)
    _gpg(verifier, "--import", stdin=public.encode())
    try:
        proc = subprocess.run(
            ["git", "verify-commit", "-v", "main"],
            cwd=bare,
            capture_output=True,
            text=True,
            env={**os.environ, "GNUPGHOME": str(verifier)},
            check=False,
        )
    finally:
        _kill_agent(verifier)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def _signing_tail(fmt: str, **keys: str) -> list[str]:
    return ["  signing:", f"    format: {fmt}", *(f"    {k}: {v}" for k, v in keys.items())]


def _config(tmp_path: Path, registry: Any, bare: Path, signing: list[str]) -> Path:
    config = write_config(tmp_path, registry, str(bare))
    text = config.read_text().replace(
        "  author_email: bot@example.com\n", "  author_email: bot@example.com\n" + "\n".join(signing) + "\n"
    )
    config.write_text(text)
    return config


@pytest.mark.parametrize("openpgp_key", ["", PASSPHRASE], indirect=True, ids=["plain", "passphrase"])
def test_openpgp_signed_pass_verifies(
    tmp_path: Path,
    seeded: Any,
    bare_repo: Any,
    repo_files: dict[str, str],
    openpgp_key: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    secret, public = openpgp_key
    bare = bare_repo(repo_files)
    keys = {"key_env": "BOT_GPG_KEY"}
    monkeypatch.setenv("BOT_GPG_KEY", secret)
    if request.node.callspec.id == "passphrase":
        monkeypatch.setenv("BOT_GPG_PASS", PASSPHRASE)
        keys["passphrase_env"] = "BOT_GPG_PASS"
    config = _config(tmp_path, seeded, bare, _signing_tail("openpgp", **keys))
    try:
        outcome = run_pass_in_process(config)
    finally:
        _kill_agent(tmp_path / "cache" / "signing" / "gnupg")
    assert outcome.error is None and outcome.pushed, outcome
    out = _verify_openpgp(bare, public, tmp_path)
    assert "Good signature" in out
    gnupg = tmp_path / "cache" / "signing" / "gnupg"
    assert gnupg.stat().st_mode & 0o777 == 0o700
    assert not list((tmp_path / "cache" / "signing").glob("*pass*")), "the passphrase was written to disk"


def test_ssh_signed_pass_verifies(
    tmp_path: Path, seeded: Any, bare_repo: Any, repo_files: dict[str, str], ssh_key: tuple[Path, str]
) -> None:
    key, public = ssh_key
    bare = bare_repo(repo_files)
    config = _config(tmp_path, seeded, bare, _signing_tail("ssh", key_file=str(key)))
    outcome = run_pass_in_process(config)
    assert outcome.error is None and outcome.pushed, outcome
    proc = _verify_ssh(bare, "bot@example.com", public, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'Good "git" signature for bot@example.com' in proc.stderr
    copy = tmp_path / "cache" / "signing" / "ssh_key"
    assert copy.stat().st_mode & 0o777 == 0o600
    # the parent (the seed commit, unsigned) does not verify with the same setup: the check can fail
    parent = _verify_ssh(bare, "bot@example.com", public, tmp_path, "main~1")
    assert parent.returncode != 0


def test_ssh_key_with_passphrase_is_decrypted_into_the_private_copy(tmp_path: Path) -> None:
    key = tmp_path / "enc_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(key)], check=True)
    env = {"KEY_PASS": PASSPHRASE}
    signer = prepare(
        SigningSettings(format="ssh", key_file=key, passphrase_env="KEY_PASS"), tmp_path / "cache", env
    )
    assert signer.public_key.startswith("ssh-ed25519 ")
    assert key.read_bytes() != Path(signer.key).read_bytes(), "the user's key file was rewritten"
    with pytest.raises(ConfigError) as wrong:
        prepare(
            SigningSettings(format="ssh", key_file=key, passphrase_env="KEY_PASS"),
            tmp_path / "c2",
            {"KEY_PASS": "wrong-" + PASSPHRASE},
        )
    assert "commit.signing.key_file" in str(wrong.value) and PASSPHRASE not in str(wrong.value)
    with pytest.raises(ConfigError) as missing:
        prepare(SigningSettings(format="ssh", key_file=key), tmp_path / "c3", {})
    assert "commit.signing.key_file" in str(missing.value)


@pytest.mark.parametrize("openpgp_key", [PASSPHRASE], indirect=True, ids=["passphrase"])
def test_openpgp_wrong_or_missing_passphrase_is_a_config_error(
    tmp_path: Path, openpgp_key: tuple[str, str]
) -> None:
    secret, _ = openpgp_key
    settings = SigningSettings(format="openpgp", key_env="BOT_KEY", passphrase_env="BOT_PASS")
    for n, env in enumerate([{"BOT_KEY": secret, "BOT_PASS": "nope-" + PASSPHRASE}, {"BOT_KEY": secret}]):
        cache = tmp_path / f"cache{n}"
        try:
            with pytest.raises(ConfigError) as info:
                prepare(settings, cache, env)
        finally:
            _kill_agent(cache / "signing" / "gnupg")
        message = str(info.value)
        assert "commit.signing." in message
        assert PASSPHRASE not in message and "PRIVATE KEY" not in message


def test_garbage_or_missing_key_is_a_config_error(tmp_path: Path) -> None:
    garbage = (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nnot-a-key-canary-77\n-----END PGP PRIVATE KEY BLOCK-----\n"
    )
    for fmt in ("openpgp", "ssh"):
        settings = SigningSettings(format=fmt, key_env="BOT_KEY")
        with pytest.raises(ConfigError) as info:
            prepare(settings, tmp_path / fmt, {"BOT_KEY": garbage})
        assert "commit.signing.key_env" in str(info.value) and "canary-77" not in str(info.value)
        with pytest.raises(ConfigError, match=r"commit\.signing\.key_env.*empty or unset"):
            prepare(settings, tmp_path / fmt, {})
    with pytest.raises(ConfigError, match=r"commit\.signing\.key_file"):
        prepare(SigningSettings(format="ssh", key_file=tmp_path / "absent"), tmp_path / "x", {})


def test_exactly_one_key_source() -> None:
    for keys in ({}, {"key_env": "A", "key_file": "/k"}):
        with pytest.raises(ValueError, match="exactly one of key_file and key_env"):
            SigningSettings.model_validate({"format": "ssh", **keys})


def test_run_once_with_a_bad_key_exits_2_before_any_pass(
    tmp_path: Path, seeded: Any, bare_repo: Any, repo_files: dict[str, str]
) -> None:
    bare = bare_repo(repo_files)
    before = git("rev-parse", "main", cwd=bare)
    config = _config(tmp_path, seeded, bare, _signing_tail("openpgp", key_env="BOT_GPG_KEY"))
    assert load_settings(config).commit.signing is not None
    out = run_cli("run", "--once", "-c", str(config), env={"BOT_GPG_KEY": "garbage-canary-91"})
    assert out.returncode == 2, out.stdout + out.stderr
    assert "commit.signing.key_env" in out.stderr and "garbage-canary-91" not in out.stdout + out.stderr
    assert git("rev-parse", "main", cwd=bare) == before


def test_apply_commit_signs_too_and_a_bad_key_exits_2(
    tmp_path: Path, registry: Any, pusher: Any, bare_repo: Any, ssh_key: tuple[Path, str]
) -> None:
    from tests.test_apply_commit import setup

    key, public = ssh_key
    bare, clone, config = setup(tmp_path, registry, pusher, bare_repo)
    text = config.read_text().replace(
        "commit: {author_name: CI Bot, author_email: ci@example.com, skip_ci: true}",
        "commit: {author_name: CI Bot, author_email: ci@example.com,"
        " signing: {format: ssh, key_env: CI_KEY}}",
    )
    config.write_text(text)
    bad = run_cli("apply", str(clone), "--push", "-c", str(config), env={"CI_KEY": "garbage-canary-42"})
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "commit.signing.key_env" in bad.stderr and "garbage-canary-42" not in bad.stdout + bad.stderr
    assert git("status", "--porcelain", cwd=clone) == ""  # refused before any file was edited
    out = run_cli("apply", str(clone), "--push", "-c", str(config), env={"CI_KEY": key.read_text()})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1.0.7" in out.stdout, out.stdout + out.stderr
    proc = _verify_ssh(bare, "ci@example.com", public, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'Good "git" signature for ci@example.com' in proc.stderr
