"""``plan``, ``apply`` and ``validate`` end to end against the real registry, on a copy of a realistic GitOps
layout (tests/data/gitops: Flux v1 annotations, Flux v2 setter markers and ImagePolicies, kustomize
overlays, Helm values with policy files). ``plan`` must list exactly the expected updates with file:line,
``apply`` must change exactly those characters (byte comparison and ``git diff``), and ``validate`` must
catch every broken policy, annotation and marker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from image_updater.cli import main
from tests.servers import ImagePusher, RegistryServer

LAYOUT = Path(__file__).parent / "data" / "gitops"
PLACEHOLDER = "registry.invalid:5000"
T0 = datetime(2024, 1, 1, tzinfo=UTC)

# (file, line, old, new) with "R" for the registry: the updates the layout must produce, in order
EXPECTED = [
    ("apps/base/podinfo/deployment.yaml", 20, "R/acme/podinfo:6.5.0", "R/acme/podinfo:6.6.0"),
    ("apps/production/frontend.yaml", 15, "R/acme/frontend:main-aaa1111-100",
     "R/acme/frontend:main-bbb2222-200"),
    ("apps/production/kustomization.yaml", 11, "6.5.0", "6.6.0"),
    ("apps/production/kustomization.yaml", 15, "1.25.1", "1.25.4"),
    ("apps/production/redis-release.yaml", 19, "7.2.4", "7.2.5"),
    ("charts/cache/values.yaml", 5, "7.2.4", "7.2.5"),
    ("legacy/flux-v1/helloworld.yaml", 20, "R/acme/alpine:3.19.0", "R/acme/alpine:3.19.1"),
    ("legacy/flux-v1/helloworld.yaml", 24, "R/acme/flask:develop-v1", "R/acme/flask:develop-v2"),
]
# the exact characters each file must show after apply (original text -> new text, within the file)
EDITS = {
    "apps/base/podinfo/deployment.yaml": [("acme/podinfo:6.5.0 #", "acme/podinfo:6.6.0 #")],
    "apps/production/frontend.yaml": [('frontend:main-aaa1111-100"', 'frontend:main-bbb2222-200"')],
    "apps/production/kustomization.yaml": [("newTag: 6.5.0 #", "newTag: 6.6.0 #"),
                                           ('newTag: "1.25.1"', 'newTag: "1.25.4"')],
    "apps/production/redis-release.yaml": [("tag: 7.2.4", "tag: 7.2.5")],
    "charts/cache/values.yaml": [('tag: "7.2.4"', 'tag: "7.2.5"')],
    "legacy/flux-v1/helloworld.yaml": [("alpine:3.19.0", "alpine:3.19.1"),
                                       ("flask:develop-v1", "flask:develop-v2")],
}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGE_UPDATER_CONFIG", raising=False)
    monkeypatch.setenv("IMAGE_UPDATER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


@pytest.fixture
def gitops_registry(registry: RegistryServer) -> RegistryServer:
    with ImagePusher(registry.url) as pusher:
        pusher.push_many("acme/podinfo", ["6.5.0", "6.5.3", "6.6.0", "7.0.0"])
        pusher.push_many("acme/frontend", ["main-aaa1111-100", "main-bbb2222-200", "main-ccc3333-99"])
        pusher.push_many("acme/nginx", ["1.25.1", "1.25.4", "1.26.0"])
        pusher.push_many("acme/redis", ["7.2.4", "7.2.5", "7.4.0"])
        pusher.push_many("acme/alpine", ["3.19.0", "3.19.1", "3.20.0"])
        day = timedelta(days=1)
        pusher.push_many("acme/flask", {"develop-v1": T0, "develop-v2": T0 + 2 * day,
                                        "develop-v10": T0 + day, "master-v3": T0 + 3 * day})
        pusher.push_many("acme/locked", ["v1", "v2"])
        pusher.push_many("acme/worker", ["1.9.0", "2.0.0"])
    return registry


def checkout(tmp_path: Path, registry: RegistryServer) -> Path:
    """A copy of the layout with the test registry's address, committed to git (for ``git diff``)."""
    root = tmp_path / "repo"
    shutil.copytree(LAYOUT, root)
    for path in root.rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes().replace(PLACEHOLDER.encode(), registry.host.encode()))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "layout")
    return root


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def expected(registry: RegistryServer) -> list[tuple[str, int, str, str]]:
    return [(f, line, o.replace("R", registry.host, 1) if o.startswith("R/") else o,
             n.replace("R", registry.host, 1) if n.startswith("R/") else n) for f, line, o, n in EXPECTED]


def test_plan_lists_exactly_the_expected_updates(
    gitops_registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = checkout(tmp_path, gitops_registry)
    before = tree(root)
    code, out, _err = run(capsys, "plan", str(root), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert [(u["file"], u["line"], u["old"], u["new"]) for u in data["updates"]] == expected(gitops_registry)
    by_line = {(u["file"], u["line"]): u for u in data["updates"]}
    assert by_line[("apps/base/podinfo/deployment.yaml", 20)]["origin"] == "marker"
    assert by_line[("apps/production/kustomization.yaml", 15)]["origin"] == "policy-file"
    assert by_line[("legacy/flux-v1/helloworld.yaml", 24)] | {} == {
        "file": "legacy/flux-v1/helloworld.yaml", "line": 24, "resource": "Deployment/legacy/helloworld",
        "container": "flask", "image": f"{gitops_registry.host}/acme/flask",
        "old": f"{gitops_registry.host}/acme/flask:develop-v1",
        "new": f"{gitops_registry.host}/acme/flask:develop-v2",
        "old_tag": "develop-v1", "new_tag": "develop-v2", "policy": "glob:develop-v*", "origin": "annotation",
    }
    assert [(u["file"], u["line"], u["old"]) for u in data["unchanged"]] == [
        ("legacy/flux-v1/worker-release.yaml", 17, f"{gitops_registry.host}/acme/worker:2.0.0"),
    ]
    assert [(s["file"], s["line"], s["reason"]) for s in data["skipped"]] == [
        ("legacy/flux-v1/locked.yaml", 16, "locked (fluxcd.io/locked): waiting for the database migration"),
    ]
    assert data["errors"] == []
    assert tree(root) == before  # plan writes nothing

    code, out, _err = run(capsys, "plan", str(root))
    assert code == 0
    for file, line, _old, _new in EXPECTED:
        assert f"{file}:{line}" in out
    assert out.rstrip().endswith("8 updates in 6 files, 1 unchanged, 1 skipped")

    code, out, _err = run(capsys, "plan", str(root), "--format", "markdown")
    assert out.startswith("### image-updater: 8 updates in 6 files\n") and out.count("\n| `") == 9


def test_apply_changes_exactly_those_characters(
    gitops_registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = checkout(tmp_path, gitops_registry)
    before = tree(root)
    code, planned_diff, _err = run(capsys, "plan", str(root), "--format", "diff")
    assert code == 0
    code, _out, _err = run(capsys, "plan", str(root), "--detailed-exitcode")
    assert code == 2

    code, out, _err = run(capsys, "apply", str(root), "--format", "json")
    assert code == 0
    assert [(u["file"], u["line"], u["old"], u["new"]) for u in json.loads(out)["updates"]] == expected(
        gitops_registry
    )
    after = tree(root)
    assert sorted(after) == sorted(before)
    for name, content in before.items():
        want = content
        for old, new in EDITS.get(name, []):
            assert want.count(old.encode()) == 1, (name, old)
            want = want.replace(old.encode(), new.encode())
        assert after[name] == want, name
    numstat = git(root, "diff", "--numstat")
    assert sorted(line.split("\t")[2] for line in numstat.splitlines()) == sorted(EDITS)
    for line in numstat.splitlines():  # one line added and one removed per edit, nothing else
        added, removed, name = line.split("\t")
        assert int(added) == int(removed) == len(EDITS[name])
    # plan --format diff showed exactly what git now shows (hunks; git adds its own header lines)
    git_diff = git(root, "diff", "--no-color", "--no-prefix", "-U3")
    def hunks(text: str) -> list[str]:
        # git appends a "function" context to @@ lines and writes its own header lines
        return [line[: line.index("@@", 2) + 2] if line.startswith("@@") else line
                for line in text.splitlines() if not line.startswith(("diff --git", "index ", "---", "+++"))]
    assert hunks(planned_diff) == hunks(git_diff)

    code, out, _err = run(capsys, "plan", str(root), "--detailed-exitcode")
    assert code == 0 and out.rstrip().endswith("no updates, 9 unchanged, 1 skipped")


def test_errors_are_reported_and_everything_else_proceeds(
    gitops_registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = checkout(tmp_path, gitops_registry)
    (root / "apps" / "production" / "missing.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: missing\n  annotations:\n"
        "    image-updater.io/policy: semver:^1\nspec:\n  template:\n    spec:\n      containers:\n"
        f"      - name: app\n        image: {gitops_registry.host}/acme/not-pushed:v1.0.0\n"
    )
    (root / "apps" / "production" / "broken.yaml").write_text(
        "metadata:\n  annotations:\n    fluxcd.io/automated: 'true'\n  - oops\n"
    )
    code, out, err = run(capsys, "apply", str(root), "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert len(data["updates"]) == len(EXPECTED)
    assert [(e["file"], e["line"]) for e in data["errors"]] == [
        ("apps/production/broken.yaml", 4), ("apps/production/missing.yaml", 12),
    ]
    assert "acme/not-pushed" in data["errors"][1]["message"]
    assert "apps/production/missing.yaml:12" in err  # one log line per error on stderr
    code, _out, _err = run(capsys, "plan", str(root), "--detailed-exitcode")
    assert code == 1


def test_validate_is_clean_then_catches_every_broken_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    shutil.copytree(LAYOUT, root)
    code, out, _err = run(capsys, "validate", str(root))
    assert code == 0, out
    assert out.strip() == "14 files, 4 policies, 9 targets, 1 skipped: ok"

    (root / "policies" / "broken.yaml").write_text(
        "apiVersion: image-updater.io/v1alpha1\nkind: ImagePolicy\nmetadata: {name: broken}\n"
        "spec:\n  image: acme/app\n  policy: semver:~>1.x.garbage\n---\n"
        "apiVersion: image-updater.io/v1alpha1\nkind: ImagePolicy\nmetadata: {name: typo}\n"
        "spec:\n  image: acme/app\n  policy: glob:*\n  taregts: [{path: apps}]\n"
    )
    flux = root / "clusters" / "production" / "image-automation.yaml"
    flux.write_text(flux.read_text().replace("range: 6.x", "range: six"))
    hello = root / "legacy" / "flux-v1" / "helloworld.yaml"
    hello.write_text(hello.read_text().replace("glob:develop-v*", "regex:develop-(v"))
    frontend = root / "apps" / "production" / "frontend.yaml"
    frontend.write_text(frontend.read_text().replace("flux-system:frontend", "flux-system:frontnd"))
    config = tmp_path / "config.yaml"
    config.write_text("interval: often\n")

    code, out, _err = run(capsys, "validate", "-c", str(config), str(root))
    assert code == 2  # the config itself is invalid; everything else is still reported
    lines = out.splitlines()
    assert lines[0].startswith(f"{config}: invalid configuration")
    reported = [line.split(": ", 1)[0] for line in lines if line.startswith(("apps/", "charts/", "clusters/",
                                                                             "legacy/", "policies/"))]
    assert reported == [
        "apps/base/podinfo/deployment.yaml:20",  # marker names the broken Flux ImagePolicy
        "apps/production/frontend.yaml:15",  # marker names no policy
        "apps/production/kustomization.yaml:11",  # marker names the broken Flux ImagePolicy
        # not YAML (a Helm template): reported now that a broken policy file might have targeted it
        "charts/cache/templates/deployment.yaml:4",
        "clusters/production/image-automation.yaml:21",  # Flux ImagePolicy with an invalid range
        "legacy/flux-v1/helloworld.yaml:9",  # annotation with an invalid regex
        "policies/broken.yaml:6",  # invalid policy
        "policies/broken.yaml:14",  # unknown field
    ]
    assert "frontnd" in out and "six" in out and "develop-(v" in out and "taregts" in out
    assert lines[-1].endswith("9 problems"), out

    code, out, _err = run(capsys, "validate", str(root), "--format", "json")
    assert code == 1
    assert len(json.loads(out)["errors"]) == 8


def test_commands_work_through_the_console_script(gitops_registry: RegistryServer, tmp_path: Path) -> None:
    root = checkout(tmp_path, gitops_registry)
    script = Path(sys.executable).parent / "image-updater"
    env = {**os.environ, "IMAGE_UPDATER_CACHE_DIR": str(tmp_path / "cache"), "DOCKER_CONFIG": str(tmp_path)}
    env.pop("IMAGE_UPDATER_CONFIG", None)
    done = subprocess.run([str(script), "plan", "--detailed-exitcode", "--format", "json", str(root)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert len(json.loads(done.stdout)["updates"]) == len(EXPECTED)
    assert done.stderr == ""  # no progress output when stderr is not a terminal
    done = subprocess.run([str(script), "apply", str(root)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "8 updates in 6 files" in done.stdout
    done = subprocess.run([str(script), "plan", str(tmp_path / "nope")], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 2 and "not a directory" in done.stderr


class _Terminal:
    """A stderr stand-in that says it is a terminal and records what is drawn."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.written: list[str] = []

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.written.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_progress_only_on_a_terminal() -> None:
    import threading

    from image_updater.commands import _planning as plan_command

    pipe = _Terminal(tty=False)
    with plan_command.progress_indicator(pipe) as progress:  # type: ignore[arg-type]
        assert progress is None
    assert pipe.written == []

    terminal = _Terminal(tty=True)
    drawn = threading.Event()
    original = terminal.write

    def write(text: str) -> int:
        drawn.set()
        return original(text)

    terminal.write = write  # type: ignore[method-assign]
    ticker = plan_command._Ticker(terminal, delay=0.0)  # type: ignore[arg-type]
    ticker.start()
    ticker.update("resolving 3 images")
    assert drawn.wait(30)
    ticker.stop()
    assert any("resolving 3 images" in text for text in terminal.written)
    assert terminal.written[-1] == "\r\x1b[K"  # the status line is cleared at the end


def test_policy_dirs_from_the_config(
    gitops_registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = checkout(tmp_path, gitops_registry)
    outside = tmp_path / "shared-policies"
    outside.mkdir()
    (root / "policies" / "redis.yaml").rename(outside / "redis.yaml")
    config = tmp_path / "config.yaml"
    config.write_text(f"policy_dirs: [{outside}]\ncache_dir: {tmp_path / 'cache'}\n")
    code, out, _err = run(capsys, "plan", str(root), "--format", "json")
    assert code == 0
    assert "charts/cache/values.yaml" not in {u["file"] for u in json.loads(out)["updates"]}
    code, out, _err = run(capsys, "plan", "-c", str(config), str(root), "--format", "json")
    assert code == 0
    updates = json.loads(out)["updates"]
    assert [(u["file"], u["line"]) for u in updates] == [(f, line) for f, line, _o, _n in EXPECTED]
    redis = next(u for u in updates if u["file"] == "charts/cache/values.yaml")
    assert redis["policy"] == "semver:~7.2" and redis["origin"] == "policy-file"
    code, out, _err = run(capsys, "validate", "-c", str(config), str(root))
    assert code == 0, out
