"""Argo CD Image Updater 0.x repositories (issue 12): Applications' annotations become policies bound to the
files AIU writes back to, and ``apply`` makes the updates AIU would make, in those files, byte for byte.

The golden tree tests/golden_aiu/<case>/original is committed to a real git repository whose ``origin`` is the
URL the Applications name, planned and applied against the real registry fixture, and must then equal
<case>/expected as a whole tree.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from image_updater.cli import main
from image_updater.discover import discover_files
from image_updater.discover._aiu import normalise_repo_url, translate_policy
from image_updater.errors import InvalidPolicy, YamlEditError
from image_updater.plan import Resolution, build_plan
from image_updater.yamledit import Edit, apply_verified, parse_yaml
from tests.servers import ImagePusher, RegistryServer

GOLDEN = Path(__file__).parent / "golden_aiu"
PLACEHOLDER = "registry.invalid:5000"
ORIGIN = "https://git.example.com/acme/deploy.git"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGE_UPDATER_CONFIG", raising=False)
    monkeypatch.setenv("IMAGE_UPDATER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def checkout(source: Path, dest: Path, host: str) -> Path:
    shutil.copytree(source, dest)
    for path in dest.rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes().replace(PLACEHOLDER.encode(), host.encode()))
    git(dest, "init", "-q", "-b", "main")
    git(dest, "remote", "add", "origin", ORIGIN)
    git(dest, "add", "-A")
    git(dest, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "tree")
    return dest


def run_once(tmp_path: Path, url: str, registry: RegistryServer) -> None:
    """``run --once`` in a child process, one source (``url``, branch main) on ``registry``; it must pass."""
    config = tmp_path / "config.yaml"
    config.write_text("\n".join([
        f"cache_dir: {tmp_path / 'cache'}", "sources:", "  - name: deploy", f"    url: {url}",
        "    branch: main", "commit:", "  author_name: Image Bot", "  author_email: bot@example.com",
        "registries:", f"  - prefix: {registry.host}", "    insecure: true",
    ]) + "\n")
    done = subprocess.run([sys.executable, "-m", "image_updater", "run", "--once", "-c", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_aiu_0x_tree_gets_aius_updates_byte_exactly(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ImagePusher(registry.url) as pusher:
        pusher.push_many("acme/web", ["1.0.0", "1.0.9", "1.2.0", "1.3.0-rc1", "2.0.0"])
        pusher.push_many("acme/api", {"build-1": T0, "build-3": T0 + 2 * DAY, "nightly-9": T0 + 5 * DAY,
                                      "broken": T0 + 6 * DAY})
        pusher.push_many("acme/ui", ["alpha", "beta", "gamma", "zz-top"])
        digests = pusher.push_many("acme/cache", ["stable", "edge"])
        pusher.push_many("acme/worker", ["2.1.0", "2.1.5", "2.2.0"])
        pusher.push_many("acme/db", ["2.0.0", "2.3.0-rc.1", "3.0.0-rc.1"])
    root = checkout(GOLDEN / "aiu-0x" / "original", tmp_path / "repo", registry.host)

    assert main(["plan", str(root), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    updates = {(u["file"], u["line"]): u for u in data["updates"]}
    assert {u["origin"] for u in data["updates"]} == {"aiu-annotation"}
    assert sorted(updates) == [
        ("apps/api/values.yaml", 4), ("apps/chart/.argocd-source-team-a_chart.yaml", 7),
        ("apps/legacyweb/.argocd-source-legacyweb.yaml", 3), ("apps/multi/base/kustomization.yaml", 5),
        ("apps/multi/base/kustomization.yaml", 6), ("apps/pinned/kustomization.yaml", 4),
        ("apps/ui/values-prod.yaml", 2), ("apps/web/kustomization.yaml", 7),
    ]
    assert updates[("apps/web/kustomization.yaml", 7)]["policy"] == "semver:1.x"
    assert updates[("apps/api/values.yaml", 4)]["policy"] == "newest"
    assert updates[("apps/ui/values-prod.yaml", 2)]["policy"] == "alphabetical:asc"
    # the digest strategy on a kustomization: AIU's `newTag: <tag>` plus an inserted `digest:` key
    pinned = updates[("apps/pinned/kustomization.yaml", 4)]
    assert (pinned["policy"], pinned["old"], pinned["new"], pinned["action"]) == (
        "digest:stable", "", digests["stable"], "insert")
    reasons = sorted(s["reason"] for s in data["skipped"])
    assert reasons == [
        "Application elsewhere: source https://git.example.com/acme/not-this-one.git is another repository",
        "Application multi: source https://git.example.com/acme/other-config.git is another repository",
    ]
    assert data["errors"] == []

    assert main(["apply", str(root)]) == 0
    capsys.readouterr()
    expected = {name: text.replace(PLACEHOLDER.encode(), registry.host.encode())
                .replace(b"DIGEST", digests["stable"].encode())
                for name, text in tree(GOLDEN / "aiu-0x" / "expected").items()}
    assert tree(root) == expected


APP = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: web
  namespace: {namespace}
  annotations:
    argocd-image-updater.argoproj.io/image-list: web=r.example/acme/web:1.x
{extra}spec:
  source:
    repoURL: https://git.example.com/acme/deploy.git
    path: apps/web
"""
KUSTOMIZATION = """images:
- name: r.example/acme/web
  newTag: 1.0.0{marker}
"""
MARKER = ' # {"$imagepolicy": "flux-system:web"}'
FLUX_POLICY = """apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata:
  name: web
  namespace: flux-system
spec:
  imageRepositoryRef:
    name: web
  policy:
    semver:
      range: ">=2.0.0"
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata:
  name: web
  namespace: flux-system
spec:
  image: r.example/acme/web
"""
GIT_TARGET = (
    "    argocd-image-updater.argoproj.io/write-back-method: git\n"
    "    argocd-image-updater.argoproj.io/write-back-target: kustomization\n"
)


def discover(extra: str = GIT_TARGET, marker: str = "", url: str | None = ORIGIN,
             more: dict[str, str] | None = None) -> object:
    files = {"argo/app.yaml": APP.format(namespace="argocd", extra=extra),
             "apps/web/kustomization.yaml": KUSTOMIZATION.format(marker=marker), **(more or {})}
    return discover_files(files, repo_url=url)


def test_a_setter_marker_wins_over_an_aiu_annotation_on_the_same_scalar() -> None:
    plain = discover_files({"argo/app.yaml": APP.format(namespace="argocd", extra=GIT_TARGET),
                            "apps/web/kustomization.yaml": KUSTOMIZATION.format(marker="")}, repo_url=ORIGIN)
    assert [(t.origin, str(t.policy)) for t in plain.targets] == [("aiu-annotation", "semver:1.x")]
    both = discover_files({"argo/app.yaml": APP.format(namespace="argocd", extra=GIT_TARGET),
                           "apps/web/kustomization.yaml": KUSTOMIZATION.format(marker=MARKER),
                           "flux/policy.yaml": FLUX_POLICY}, repo_url=ORIGIN)
    assert [(t.origin, str(t.policy)) for t in both.targets] == [("marker", "semver:>=2.0.0")]
    assert both.errors == ()


def test_an_application_without_a_git_write_back_target_gets_a_new_override_file() -> None:
    for extra in ("", "    argocd-image-updater.argoproj.io/write-back-method: argocd\n"):
        found = discover_files({"argo/app.yaml": APP.format(namespace="argocd", extra=extra),
                                "apps/web/kustomization.yaml": KUSTOMIZATION.format(marker="")},
                               repo_url=ORIGIN)
        made = [(t.file, t.part, t.value, t.insert is not None and t.insert.parent) for t in found.targets]
        assert made == [
            ("apps/web/.argocd-source-web.yaml", "reference", "", -1)]
        assert found.skipped == ()


def test_without_the_repository_url_applications_are_skipped_with_the_reason() -> None:
    found = discover_files({"argo/app.yaml": APP.format(namespace="argocd", extra=GIT_TARGET),
                            "apps/web/kustomization.yaml": KUSTOMIZATION.format(marker="")})
    assert found.targets == ()
    assert [s.reason for s in found.skipped] == [
        "Application argocd/web: the repository's own URL is unknown, so source "
        "https://git.example.com/acme/deploy.git cannot be matched"
    ]


def test_a_missing_write_back_target_file_is_an_error_naming_the_application() -> None:
    found = discover_files({"argo/app.yaml": APP.format(namespace="argocd", extra=GIT_TARGET)},
                           repo_url=ORIGIN)
    assert [(e.file, e.line, e.message) for e in found.errors] == [
        ("argo/app.yaml", 1, "Application argocd/web: write-back-target kustomization for source path "
                             "'apps/web': no such file in the tree"),
    ]


def test_a_bad_strategy_is_an_error_on_its_annotation_line() -> None:
    extra = GIT_TARGET + "    argocd-image-updater.argoproj.io/web.update-strategy: biggest\n"
    found = discover_files({"argo/app.yaml": APP.format(namespace="argocd", extra=extra),
                            "apps/web/kustomization.yaml": KUSTOMIZATION.format(marker="")}, repo_url=ORIGIN)
    assert found.targets == ()
    assert [(e.line, e.message.split(":")[0]) for e in found.errors] == [(10, "Application argocd/web")]
    assert "unknown update-strategy 'biggest'" in found.errors[0].message


@pytest.mark.parametrize(("url", "same"), [
    ("https://git.example.com/acme/deploy.git", True),
    ("https://git.example.com/acme/deploy", True),
    ("https://user@Git.Example.com/acme/deploy/", True),
    ("git@git.example.com:acme/deploy.git", True),
    ("ssh://git@git.example.com/acme/deploy", True),
    ("ssh://git@git.example.com:22/acme/deploy.git", True),
    ("https://git.example.com/acme/deploy-prod.git", False),
    ("https://git.example.org/acme/deploy.git", False),
])
def test_repository_urls_match_across_scheme_user_and_suffix(url: str, same: bool) -> None:
    assert (normalise_repo_url(url) == normalise_repo_url(ORIGIN)) is same


@pytest.mark.parametrize(("strategy", "constraint", "allow", "ignore", "expected"), [
    ("", "", None, None, "semver:*"),
    ("semver", "~1.2", None, None, "semver:~1.2"),
    ("latest", "", None, None, "newest"),
    ("newest-build", "", None, None, "newest"),
    ("name", "", None, None, "alphabetical:asc"),
    ("alphabetical", "", None, None, "alphabetical:asc"),
    ("digest", "stable", None, None, "digest:stable"),
    ("semver", "2.x-0", None, None, "semver:>=2.0.0-0 <3.0.0"),
    ("semver", "1.4.x-rc", None, None, "semver:>=1.4.0-rc <1.5.0"),
])
def test_strategies_and_their_old_names_translate(
    strategy: str, constraint: str, allow: str | None, ignore: str | None, expected: str
) -> None:
    assert str(translate_policy(strategy, constraint, allow, ignore, None)) == expected


def test_allow_ignore_and_platforms_become_modifiers() -> None:
    policy = translate_policy("semver", "", "regexp:^v1\\.", "*-debug, old", "linux/amd64, linux/arm64")
    assert policy.filter == "^v1\\."
    assert policy.exclude[-2:] == ("*-debug", "old")
    assert set(policy.platforms) == {"linux/amd64", "linux/arm64"}
    assert translate_policy("semver", "", "any", None, None).filter is None
    with pytest.raises(InvalidPolicy, match="allow-tags"):
        translate_policy("semver", "", "glob:v1*", None, None)
    with pytest.raises(InvalidPolicy, match="digest needs the tag"):
        translate_policy("digest", "", None, None, None)


def test_aiu_1x_image_updaters_select_applications_by_name_and_labels(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ImagePusher(registry.url) as pusher:
        pusher.push_many("acme/web", ["1.0.0", "1.0.9", "1.1.0-rc1", "1.2.0", "1.3.0-rc1", "2.0.0"])
        pusher.push_many("acme/api", {"build-1": T0, "build-3": T0 + 2 * DAY, "nightly-9": T0 + 5 * DAY})
        pusher.push_many("acme/ui", ["alpha", "beta", "gamma", "zz-top"])
    root = checkout(GOLDEN / "aiu-1x" / "original", tmp_path / "repo", registry.host)

    assert main(["plan", str(root), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    got = [(u["file"], u["line"], u["new_tag"], u["policy"], u["origin"]) for u in data["updates"]]
    assert got == [
        ("apps/billing/values.yaml", 3, "gamma", "alphabetical:asc", "aiu-imageupdater"),
        ("apps/legacy/kustomization.yaml", 3, "1.2.0", "semver:1.x", "aiu-imageupdater"),
        ("apps/shop-api/kustomization.yaml", 3, "build-3", "newest", "aiu-imageupdater"),
        ("apps/shop-web/kustomization.yaml", 3, "1.0.9", "semver:~1.0", "aiu-imageupdater"),
    ]
    assert data["errors"] == []

    assert main(["apply", str(root)]) == 0
    capsys.readouterr()
    expected = {name: text.replace(PLACEHOLDER.encode(), registry.host.encode())
                for name, text in tree(GOLDEN / "aiu-1x" / "expected").items()}
    assert tree(root) == expected


def test_application_wide_settings_apply_to_images_without_their_own() -> None:
    extra = GIT_TARGET + (
        "    argocd-image-updater.argoproj.io/update-strategy: alphabetical\n"
        "    argocd-image-updater.argoproj.io/ignore-tags: old-*\n"
    )
    found = discover_files({"argo/app.yaml": APP.format(namespace="argocd", extra=extra),
                            "apps/web/kustomization.yaml": KUSTOMIZATION.format(marker="")}, repo_url=ORIGIN)
    [target] = found.targets
    assert str(target.policy) == "alphabetical:asc"
    assert target.policy.exclude[-1] == "old-*"


def test_run_once_commits_aius_updates_to_a_source_whose_url_the_applications_name(
    registry: RegistryServer, tmp_path: Path, bare_repo: Any
) -> None:
    with ImagePusher(registry.url) as pusher:
        pusher.push_many("acme/web", ["1.0.0", "1.0.9", "1.2.0", "2.0.0"])
        pusher.push_many("acme/api", {"build-1": T0, "build-3": T0 + 2 * DAY})
        pusher.push_many("acme/ui", ["alpha", "gamma", "zz-top"])
    url = str(tmp_path / "remote" / "repo.git")  # the daemon's working copy has this as its origin

    def load(side: str) -> dict[str, str]:
        return {name: text.decode().replace(PLACEHOLDER, registry.host).replace(ORIGIN, url)
                for name, text in tree(GOLDEN / "aiu-1x" / side).items()}

    bare = bare_repo(load("original"), parent=tmp_path / "remote")
    assert str(bare) == url
    run_once(tmp_path, url, registry)
    for name, text in load("expected").items():
        assert git(bare, "show", f"main:{name}") == text, name
    assert len(git(bare, "log", "--format=%s", "main").splitlines()) == 2


def test_missing_newtags_and_override_files_are_inserted_and_created_byte_exactly(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ImagePusher(registry.url) as pusher:
        pusher.push_many("acme/web", ["1.0.0", "1.0.9", "1.10.0", "2.0.0"])
        pusher.push_many("acme/ui", ["1.2.3", "1.4.0"])
    root = checkout(GOLDEN / "aiu-insert" / "original", tmp_path / "repo", registry.host)

    assert main(["plan", str(root), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["errors"] == [] and data["skipped"] == []
    assert sorted((u["file"], u["line"], u["old"], u["new"], u.get("action")) for u in data["updates"]) == [
        ("apps/blk/kustomization.yaml", 7, "", "1.10.0", "insert"),
        ("apps/chart/.argocd-source-chart.yaml", 7, "", "1.10.0", "create"),
        ("apps/crlf/kustomization.yaml", 6, "", "1.10.0", "insert"),
        ("apps/flow/kustomization.yaml", 3, "", "1.0.9", "insert"),
        ("apps/hext/.argocd-source-hext.yaml", 10, "", "1.10.0", "insert"),
        ("apps/kapp/.argocd-source-team-a_kapp.yaml", 3, "", f"{registry.host}/acme/web:1.10.0", "create"),
        ("apps/kapp/.argocd-source-team-a_kapp.yaml", 4, "", f"{registry.host}/acme/ui:1.4.0", "create"),
        ("apps/kext/.argocd-source-kext.yaml", 2, "", f"{registry.host}/acme/ui:1.4.0", "insert"),
    ]
    assert main(["plan", str(root), "--format", "diff"]) == 0
    diff = capsys.readouterr().out
    new_file = ("--- /dev/null\n+++ b/apps/kapp/.argocd-source-team-a_kapp.yaml\n"
                "@@ -0,0 +1,4 @@\n+kustomize:\n")
    assert new_file in diff
    assert "--- a/apps/blk/kustomization.yaml\n" in diff and "+    newTag: 1.10.0\n" in diff
    assert main(["plan", str(root)]) == 0
    table = capsys.readouterr().out.splitlines()
    row = next(line.split() for line in table if line.startswith("apps/chart/.argocd-source-chart.yaml:7"))
    assert row[:5] == ["apps/chart/.argocd-source-chart.yaml:7", "-", "web", "(new", "file)"]
    row = next(line.split() for line in table if line.startswith("apps/blk/kustomization.yaml:7"))
    assert row[:5] == ["apps/blk/kustomization.yaml:7", "Kustomization", "web", "-", "1.10.0"]
    assert main(["apply", str(root)]) == 0
    capsys.readouterr()
    expected = {name: text.replace(PLACEHOLDER.encode(), registry.host.encode())
                for name, text in tree(GOLDEN / "aiu-insert" / "expected").items()}
    assert tree(root) == expected
    # a second pass finds every value in place
    assert main(["plan", str(root), "--format", "json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["updates"] == [] and len(again["unchanged"]) == 8


def test_run_once_commits_created_override_files_and_inserted_values(
    registry: RegistryServer, tmp_path: Path, bare_repo: Any
) -> None:
    with ImagePusher(registry.url) as pusher:
        pusher.push_many("acme/web", ["1.0.0", "1.0.9", "1.10.0", "2.0.0"])
        pusher.push_many("acme/ui", ["1.2.3", "1.4.0"])
    url = str(tmp_path / "remote" / "repo.git")

    def load(side: str) -> dict[str, str]:
        return {name: text.decode().replace(PLACEHOLDER, registry.host).replace(ORIGIN, url)
                for name, text in tree(GOLDEN / "aiu-insert" / side).items()}

    original = load("original")
    bare = bare_repo(original, parent=tmp_path / "remote")
    run_once(tmp_path, url, registry)
    expected = load("expected")
    created = sorted(set(expected) - set(original))
    assert created == ["apps/chart/.argocd-source-chart.yaml", "apps/kapp/.argocd-source-team-a_kapp.yaml"]
    listed = git(bare, "ls-tree", "-r", "--name-only", "main").split()
    assert sorted(listed) == sorted(expected)
    for name, text in expected.items():
        shown = subprocess.run(["git", "show", f"main:{name}"], cwd=bare, check=True, capture_output=True)
        assert shown.stdout == text.encode(), name
    message = git(bare, "log", "-1", "--format=%B", "main")
    assert f"apps/kapp/.argocd-source-team-a_kapp.yaml: {registry.host}/acme/ui - -> 1.4.0" in message
    assert len(git(bare, "log", "--format=%s", "main").splitlines()) == 2


def test_no_override_file_is_created_for_a_name_that_is_not_a_kubernetes_name() -> None:
    app = APP.format(namespace="argocd", extra="").replace("  name: web\n", "  name: ../../etc/web\n", 1)
    found = discover_files({"argo/app.yaml": app,
                            "apps/web/kustomization.yaml": KUSTOMIZATION.format(marker="")}, repo_url=ORIGIN)
    assert found.targets == ()
    assert [s.reason for s in found.skipped] == [
        "Application argocd/../../etc/web: the name is not a Kubernetes object name, so no override file is "
        "created"]


def test_a_missing_override_file_for_a_path_that_is_neither_chart_nor_kustomization_is_reported() -> None:
    found = discover_files({"argo/app.yaml": APP.format(namespace="argocd", extra=""),
                            "apps/web/deployment.yaml": "kind: ConfigMap\n"}, repo_url=ORIGIN)
    assert found.targets == ()
    assert [s.reason for s in found.skipped] == [
        "Application argocd/web: cannot tell whether 'apps/web' is a Helm chart or a kustomization, so the "
        "override file apps/web/.argocd-source-web.yaml is not created"]


def test_two_missing_images_are_appended_to_one_override_list_in_order() -> None:
    app = APP.format(namespace="argocd", extra="").replace(
        "web=r.example/acme/web:1.x", "web=r.example/acme/web:1.x,ui=r.example/acme/ui", 1)
    override = "kustomize:\n  images:\n  - other:1  # kept\n"
    found = discover_files({"argo/app.yaml": app, "apps/web/.argocd-source-web.yaml": override},
                           repo_url=ORIGIN)
    assert found.errors == () and found.skipped == ()
    result = build_plan(found, {t.resolve_key: Resolution(tag="1.10") for t in found.targets})
    assert [(c.line, c.new) for c in result.updates] == [(4, "r.example/acme/web:1.10"),
                                                         (5, "r.example/acme/ui:1.10")]
    edits = [Edit(c.start, c.end, c.new, insert=c.insert) for c in result.updates]
    parsed = parse_yaml(override, filename="o.yaml")
    assert apply_verified(parsed, edits, filename="o.yaml") == (
        override + "  - r.example/acme/web:1.10\n  - r.example/acme/ui:1.10\n")
    # a verification that counts: one of the two entries left out is refused
    second = edits[1].insert
    assert second is not None
    commented = dataclasses.replace(edits[1], insert=dataclasses.replace(second, prefix="  # ", suffix=""))
    with pytest.raises(YamlEditError, match="exactly the inserted items"):
        apply_verified(parsed, [edits[0], commented], filename="o.yaml")


def test_a_new_helm_override_file_with_an_image_spec_holds_one_parameter() -> None:
    app = APP.format(namespace="apps", extra=(
        "    argocd-image-updater.argoproj.io/web.helm.image-spec: web.image\n")).replace(
        "    path: apps/web\n", "    path: apps/web\n    helm: {}\n", 1)
    found = discover_files({"argo/app.yaml": app, "apps/web/Chart.yaml": "name: web\n"}, repo_url=ORIGIN)
    assert found.errors == () and found.skipped == ()
    result = build_plan(found, {t.resolve_key: Resolution(tag="1.10") for t in found.targets})
    assert [(c.file, c.line, c.new, c.created) for c in result.updates] == [
        ("apps/web/.argocd-source-apps_web.yaml", 4, "r.example/acme/web:1.10", True)]
    edits = [Edit(c.start, c.end, c.new, insert=c.insert) for c in result.updates]
    assert apply_verified(parse_yaml("", filename="n.yaml"), edits, filename="n.yaml") == (
        "helm:\n  parameters:\n  - name: web.image\n    value: r.example/acme/web:1.10\n"
        "    forcestring: true\n")


def test_the_argocd_namespace_setting_decides_the_override_files_name() -> None:
    files = {"argo/app.yaml": APP.format(namespace="gitops", extra=""),
             "apps/web/kustomization.yaml": KUSTOMIZATION.format(marker="")}
    default = discover_files(files, repo_url=ORIGIN)
    assert [t.file for t in default.targets] == ["apps/web/.argocd-source-gitops_web.yaml"]
    ours = discover_files(files, repo_url=ORIGIN, argocd_namespace="gitops")
    assert [t.file for t in ours.targets] == ["apps/web/.argocd-source-web.yaml"]


def test_migration_argocd_namespace_is_a_setting(tmp_path: Path) -> None:
    from image_updater.errors import ConfigError
    from image_updater.settings import load_settings

    config = tmp_path / "config.yaml"
    config.write_text("migration: {argocd_namespace: gitops}\n")
    assert load_settings(config, env={}).migration.argocd_namespace == "gitops"
    config.write_text("migration: {argocd_namespace: Not_A_Namespace}\n")
    with pytest.raises(ConfigError, match="argocd_namespace"):
        load_settings(config, env={})
