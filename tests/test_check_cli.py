"""``image-updater check`` end to end against the real registry: the --explain table, JSON, default policies,
exit codes 0/1/2, config files, and that ``check --help`` stays free of httpx."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from image_updater.cli import main
from image_updater.commands.check import default_policy
from image_updater.references import parse_reference
from image_updater.registry.cache import CACHE_FILE
from tests.fixtures.registry import RegistryFactory
from tests.servers import ImagePusher, RegistryServer

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
CANARY = "check-canary-Pw-4411"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No real Docker config, config file or cache dir leaks into these tests."""
    monkeypatch.delenv("IMAGE_UPDATER_CONFIG", raising=False)
    monkeypatch.setenv("IMAGE_UPDATER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    return tmp_path


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def docker_login(tmp_path: Path, host: str, user: str, password: str) -> None:
    directory = tmp_path / "docker"
    directory.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))


@pytest.fixture
def private_registry(registry_factory: RegistryFactory, tmp_path: Path) -> RegistryServer:
    server = registry_factory(htpasswd={"ci": CANARY})
    with ImagePusher(server.url, username="ci", password=CANARY) as pusher:
        pusher.push_many("team/app", {
            "develop-v1": T0, "develop-v2": T0 + timedelta(days=2), "develop-v3": T0 + timedelta(days=1),
            "1.0.0": T0 + timedelta(days=9), "latest": T0 + timedelta(days=9),
        })
        pusher.push("team/app", "develop-v4")  # no build time recorded
    return server


def test_explain_against_htpasswd_registry_with_docker_config_credentials(
    private_registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = private_registry.host
    docker_login(tmp_path, host, "ci", CANARY)
    code, out, err = check(capsys, f"{host}/team/app", "--policy", "glob:develop-v*", "--explain")
    assert code == 0, err
    with ImagePusher(private_registry.url, username="ci", password=CANARY) as pusher:
        digest = pusher.digest("team/app", "develop-v2")
    v2_built = "2024-03-03T12:00:00Z"
    expected = [
        f"image      {host}/team/app",
        "policy     glob:develop-v*",
        "current    latest",
        "chosen     develop-v2",
        f"built      {v2_built}",
        f"digest     {digest}",
        "platforms  linux/amd64",
        "tags       6 tags: 1 chosen, 3 lower, 1 filtered, 1 excluded",
        "",
        "   TAG               BUILT                 STATUS    REASON",
        f"*  develop-v2        {v2_built}  chosen    newest build matching glob:develop-v*",
        "   develop-v3        2024-03-02T12:00:00Z  lower     "
        f"built 2024-03-02T12:00:00Z, before develop-v2 ({v2_built})",
        "   develop-v1        2024-03-01T12:00:00Z  lower     "
        f"built 2024-03-01T12:00:00Z, before develop-v2 ({v2_built})",
        "   develop-v4        -                     lower     "
        f"build time unknown; develop-v2 was built {v2_built}",
        "   latest (current)  -                     excluded  "
        "'latest' counts only when the policy's pattern names it",
        "   1.0.0             -                     filtered  does not match glob:develop-v*",
        "",
        "* chosen; 'lower' lost on the policy's order, the others were ruled out before ranking",
    ]
    assert out == "\n".join(expected) + "\n"
    assert CANARY not in out + err


def test_json_output(
    private_registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = private_registry.host
    docker_login(tmp_path, host, "ci", CANARY)
    args = ("--policy", "glob:develop-*", "--format", "json")
    code, out, _ = check(capsys, f"{host}/team/app:develop-v1", *args)
    assert code == 0
    document = json.loads(out)
    assert list(document) == ["image", "policy", "chosen", "candidates"]
    assert document["image"] == f"{host}/team/app"
    assert document["policy"] == "glob:develop-*"
    assert document["chosen"]["tag"] == "develop-v2"
    assert document["chosen"]["created"] == "2024-03-03T12:00:00Z"
    assert document["chosen"]["digest"].startswith("sha256:")
    statuses = {c["tag"]: c["status"] for c in document["candidates"]}
    assert statuses == {"develop-v2": "chosen", "develop-v3": "lower", "develop-v1": "lower",
                        "develop-v4": "lower", "latest": "excluded", "1.0.0": "filtered"}
    assert all(set(c) == {"tag", "created", "status", "reason"} for c in document["candidates"])


def test_no_tag_qualifies_is_exit_1_with_the_reasons(
    private_registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = private_registry.host
    docker_login(tmp_path, host, "ci", CANARY)
    code, out, err = check(capsys, f"{host}/team/app:1.0.0", "--policy", "semver:>=2", "--format", "json")
    assert code == 1
    document = json.loads(out)
    assert document["chosen"] is None
    assert {c["status"] for c in document["candidates"]} == {"filtered", "excluded"}
    code, out, err = check(capsys, f"{host}/team/app", "--policy", "semver:>=2")
    assert code == 1
    assert "chosen   none: no tag qualifies" in out
    assert "no tag of" in err and "semver:>=2" in err


def test_registry_failure_is_exit_1_naming_registry_and_image(
    private_registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = private_registry.host
    docker_login(tmp_path, host, "ci", CANARY + "-wrong")
    code, out, err = check(capsys, f"{host}/team/app", "--policy", "semver:*")
    assert code == 1
    assert out == ""
    assert host in err and "team/app" in err and "401" in err
    assert CANARY not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["127.0.0.1:1/team/app", "--policy", "glob:[abc"], "glob"),
        (["127.0.0.1:1/team/app", "--policy", "semver:>=banana"], "banana"),
        (["Not/A:Valid:Ref"], "Not/A"),
    ],
)
def test_invalid_policy_or_image_is_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = check(capsys, *args)
    assert code == 2
    assert out == ""
    assert message in err


def test_invalid_config_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("registries:\n  - prefix: https://ghcr.io\n")
    code, out, err = check(capsys, "ghcr.io/acme/app", "-c", str(config))
    assert code == 2 and out == ""
    assert "prefix" in err


def test_config_file_supplies_registry_credentials_and_cache_dir(
    registry_factory: RegistryFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = registry_factory(htpasswd={"bot": CANARY})
    with ImagePusher(server.url, username="bot", password=CANARY) as pusher:
        pusher.push_many("team/perl", {"1.16-perl": T0, "1.27-perl": T0, "1.27": T0, "1.27-alpine": T0})
    monkeypatch.setenv("BOT_CREDS", f"bot:{CANARY}")
    monkeypatch.delenv("IMAGE_UPDATER_CACHE_DIR")  # the environment would win over the file
    cache_dir = tmp_path / "config-cache"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"cache_dir: {cache_dir}\n"
        f"registries:\n  - prefix: {server.host}\n    insecure: true\n    credentials: env:BOT_CREDS\n"
    )
    code, out, err = check(capsys, f"{server.host}/team/perl:1.16-perl", "-c", str(config))
    assert code == 0, err
    assert "policy     semver:>=1.16  (default for tag 1.16-perl)" in out
    assert "chosen     1.27-perl" in out
    assert (cache_dir / CACHE_FILE).exists()


def test_platform_filter_and_explain(
    registry: RegistryServer, pusher: ImagePusher, capsys: pytest.CaptureFixture[str]
) -> None:
    pusher.push("team/multi", "1.0.0", created=T0, platforms=("linux/amd64", "linux/arm64"))
    pusher.push("team/multi", "1.1.0", created=T0, platforms=("linux/amd64",))
    for minor in range(1, 10):
        pusher.push("team/multi", f"0.{minor}.0", created=T0, platforms=("linux/amd64", "linux/arm64"))
    code, out, _ = check(
        capsys, f"{registry.host}/team/multi:0.9.0", "-p", "semver:*", "--platform", "linux/arm64",
        "--explain",
    )
    assert code == 0
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line
            for line in out.splitlines() if line.startswith(("*  ", "   "))}
    assert "chosen     1.0.0" in out
    assert "chosen" in rows["1.0.0"]
    assert "platform" in rows["1.1.0"] and "lacks linux/arm64" in rows["1.1.0"]
    assert "lower" in rows["0.9.0"] and "0.9.0 < 1.0.0" in rows["0.9.0"]
    # metadata is read best-first, a batch at a time; the oldest tags were never looked at, and say so
    assert "lower" in rows["0.1.0"] and "ranks below 1.0.0; not inspected further" in rows["0.1.0"]


@pytest.mark.parametrize(
    ("reference", "policy"),
    [
        ("nginx:1.25", "semver:>=1.25"),
        ("nginx:v2.3.1", "semver:>=v2.3.1"),
        ("nginx:1.16-perl", "semver:>=1.16"),
        ("app:2.0.0-rc.1", "semver:>=2.0.0-rc.1"),
        ("app:0362525", "semver:>=0362525"),
        ("app:latest", "newest"),
        ("app", "newest"),
        ("app:main-abc123", "newest"),
    ],
)
def test_default_policy(reference: str, policy: str) -> None:
    assert default_policy(parse_reference(reference)) == policy


def test_check_help_imports_no_httpx() -> None:
    code = (
        "import sys\n"
        "from image_updater.cli import main\n"
        "try:\n    main(['check', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('httpx', 'pydantic', 'git') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "newest" in done.stdout  # the help explains the default policy
    assert done.stdout.strip().endswith("[]")
