"""The lock files (requirements/*.lock, written by scripts/lock.sh) cover pyproject.toml: every dependency of
the package, of its test extra, of the lint group and of the build backend is pinned to one exact version
that satisfies pyproject's range, with sha256 hashes (pip --require-hashes), and the locks agree on the
packages they share."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;(?P<marker>[^\\]*))?")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}\b")


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    hashes: int
    line: int


def parse_lock(path: Path) -> dict[str, list[Pin]]:
    """Pins by normalized name (a universal lock may pin a name twice under exclusive markers)."""
    pins: dict[str, list[Pin]] = {}
    current: tuple[str, Version, int] | None = None
    hashes = 0

    def close() -> None:
        if current is not None:
            pins.setdefault(current[0], []).append(Pin(current[0], current[1], hashes, current[2]))

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        if match and not raw.startswith((" ", "\t")):
            close()
            current, hashes = (canonicalize_name(match["name"]), Version(match["version"]), number), 0
        elif line.startswith("--hash="):
            assert current is not None, f"{path.name}:{number}: a hash before any pin"
            hashes += len(_HASH.findall(line))
        else:
            pytest.fail(f"{path.name}:{number}: not an exact pin or a hash: {raw!r}")
    close()
    return pins


RUNTIME = parse_lock(LOCKS / "runtime.lock")
TEST = parse_lock(LOCKS / "test.lock")
BUILD = parse_lock(LOCKS / "build.lock")


def requirements(section: str) -> list[Requirement]:
    if section == "runtime":
        texts = PYPROJECT["project"]["dependencies"]
    elif section == "test":
        texts = PYPROJECT["project"]["optional-dependencies"]["test"]
    elif section == "lint":
        texts = PYPROJECT["dependency-groups"]["lint"]
    else:
        texts = PYPROJECT["build-system"]["requires"]
    return [Requirement(text) for text in texts]


CASES = [
    ("runtime", "runtime.lock", RUNTIME),
    ("runtime", "test.lock", TEST),
    ("test", "test.lock", TEST),
    ("lint", "test.lock", TEST),
    ("build", "build.lock", BUILD),
]


@pytest.mark.parametrize(("section", "lock_name", "lock"), CASES, ids=[f"{s}-{n}" for s, n, _ in CASES])
def test_every_dependency_is_pinned_within_its_range(
    section: str, lock_name: str, lock: dict[str, list[Pin]]
) -> None:
    assert requirements(section), section
    for requirement in requirements(section):
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{lock_name}: {requirement.name} ({section}) is not pinned"
        for pin in lock[name]:
            assert requirement.specifier.contains(pin.version, prereleases=True), (
                f"{lock_name}:{pin.line}: {name}=={pin.version} is outside pyproject's {requirement}"
            )


@pytest.mark.parametrize("lock_name", ["runtime.lock", "test.lock", "build.lock"])
def test_every_pin_is_exact_and_hashed(lock_name: str) -> None:
    lock = parse_lock(LOCKS / lock_name)
    assert lock, lock_name
    for pins in lock.values():
        for pin in pins:
            assert pin.hashes >= 1, f"{lock_name}:{pin.line}: {pin.name}=={pin.version} has no sha256 hash"
    assert "image-updater" not in lock, f"{lock_name} pins the project itself"


def test_the_locks_agree_where_they_overlap() -> None:
    """setup.sh installs test.lock with build.lock into one venv, the image runtime.lock: same versions."""
    for other_name, other in (("runtime.lock", RUNTIME), ("build.lock", BUILD)):
        for name, pins in other.items():
            if name in TEST:
                mine = sorted(str(p.version) for p in pins)
                theirs = sorted(str(p.version) for p in TEST[name])
                assert mine == theirs, f"{name}: {other_name} pins {mine}, test.lock {theirs}"
    assert set(RUNTIME) <= set(TEST), f"test.lock lacks {sorted(set(RUNTIME) - set(TEST))}"


def test_parse_lock_rejects_what_is_not_a_pin(tmp_path: Path) -> None:
    bad = tmp_path / "bad.lock"
    bad.write_text("httpx>=0.27 \\\n    --hash=sha256:" + "0" * 64 + "\n", encoding="utf-8")
    with pytest.raises(pytest.fail.Exception, match="not an exact pin"):
        parse_lock(bad)
    unhashed = tmp_path / "unhashed.lock"
    unhashed.write_text("httpx==0.28.1\n    # via image-updater\n", encoding="utf-8")
    assert parse_lock(unhashed)["httpx"][0].hashes == 0
