"""Argo CD Image Updater's renaming forms (issue 12): an image with a ``kustomize.image-name`` (0.x) or
``manifestTargets.kustomize.name`` (1.x) is written as AIU writes it: ``<name>=<image>:<tag>`` in an override
file (new or existing), ``newName``/``newTag`` on the kustomization entry ``name: <name>`` (inserted in
``kustomize edit set image``'s key order, or edited in place); and the exact text of new override files
(Helm parameters sorted by name, go-yaml's quoting of a tag that reads as a number, digests).

tests/golden_aiu/aiu-rename/original is committed to a real git repository, planned and applied against the
real registry fixture, and must then equal aiu-rename/expected as a whole tree, byte for byte.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from image_updater.cli import main
from image_updater.discover import discover_files
from image_updater.plan import Resolution, build_plan
from image_updater.yamledit import Edit, apply_verified, parse_yaml
from tests.servers import ImagePusher, RegistryServer
from tests.test_aiu import APP, GOLDEN, ORIGIN, PLACEHOLDER, checkout, isolated, run_once, tree

__all__ = ["isolated"]  # the autouse fixture of test_aiu: no config, cache or docker config of the user

DIGEST = "sha256:" + "ab" * 32


def test_renaming_forms_and_new_override_files_are_written_as_aiu_writes_them(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ImagePusher(registry.url) as pusher:
        pusher.push_many("acme/web", ["1.0.0", "1.0.9", "1.10.0", "2.0.0"])
        pusher.push_many("acme/ui", ["1.2.3", "1.4.0"])
        pusher.push_many("acme/num", ["1.9", "1.10"])
        digests = pusher.push_many("acme/cache", ["stable", "edge"])
    root = checkout(GOLDEN / "aiu-rename" / "original", tmp_path / "repo", registry.host)
    web = f"{registry.host}/acme/web"

    assert main(["plan", str(root), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["errors"] == [] and data["skipped"] == []
    # lines: a replaced scalar's line in the file as it is; an inserted one's where it goes in its entry
    assert sorted((u["file"], u["line"], u["old"], u["new"], u.get("action"), u["origin"])
                  for u in data["updates"]) == [
        ("apps/chartnum/.argocd-source-chartnum.yaml", 7, "", "1.10", "create", "aiu-annotation"),
        ("apps/crd/kustomization.yaml", 3, "", web, "insert", "aiu-imageupdater"),
        ("apps/crd/kustomization.yaml", 3, "1.0.0", "1.10.0", None, "aiu-imageupdater"),
        ("apps/crdnew/.argocd-source-crdnew.yaml", 3, "", f"acme/legacy-web={web}:1.10.0", "create",
         "aiu-imageupdater"),
        ("apps/hdigest/.argocd-source-hdigest.yaml", 7, "", f"stable@{digests['stable']}", "create",
         "aiu-annotation"),
        ("apps/hdigest/.argocd-source-hdigest.yaml", 13, "", "1.10.0", "create", "aiu-annotation"),
        ("apps/kdigest/.argocd-source-kdigest.yaml", 3, "",
         f"{registry.host}/acme/cache:stable@{digests['stable']}", "create", "aiu-annotation"),
        ("apps/kgain/kustomization.yaml", 5, "", web, "insert", "aiu-annotation"),
        ("apps/kgain/kustomization.yaml", 5, "1.0.0", "1.10.0", None, "aiu-annotation"),
        ("apps/kgain/kustomization.yaml", 7, "", f"{registry.host}/acme/ui", "insert", "aiu-annotation"),
        ("apps/kgain/kustomization.yaml", 8, "", "1.4.0", "insert", "aiu-annotation"),
        ("apps/khas/kustomization.yaml", 5, "1.0.0", "1.10.0", None, "aiu-annotation"),
        ("apps/khas/kustomization.yaml", 7, f"{registry.host}/mirror/ui", f"{registry.host}/acme/ui", None,
         "aiu-annotation"),
        ("apps/khas/kustomization.yaml", 8, "1.2.3", "1.4.0", None, "aiu-annotation"),
        ("apps/newrename/.argocd-source-newrename.yaml", 3, "", f"acme/legacy-web={web}:1.10.0", "create",
         "aiu-annotation"),
        ("apps/oldrename/.argocd-source-oldrename.yaml", 3, f"acme/legacy-web={web}:1.0.0",
         f"acme/legacy-web={web}:1.10.0", None, "aiu-annotation"),
    ]
    assert main(["apply", str(root)]) == 0
    capsys.readouterr()
    expected = {name: text.replace(PLACEHOLDER.encode(), registry.host.encode())
                .replace(b"@DIGEST", b"@" + digests["stable"].encode())
                for name, text in tree(GOLDEN / "aiu-rename" / "expected").items()}
    assert tree(root) == expected
    # a second pass finds every value in place: nothing more to rename or insert
    assert main(["plan", str(root), "--format", "json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["updates"] == [] and again["errors"] == []


def _apply(files: dict[str, str], file: str, tag: str = "1.10", digest: str | None = None) -> str:
    found = discover_files(files, repo_url=ORIGIN)
    assert found.errors == () and found.skipped == ()
    result = build_plan(found, {t.resolve_key: Resolution(tag=tag, digest=digest) for t in found.targets})
    edits = [Edit(c.start, c.end, c.new, insert=c.insert) for c in result.updates if c.file == file]
    return apply_verified(parse_yaml(files.get(file, ""), filename=file), edits, filename=file)


RENAME = "    argocd-image-updater.argoproj.io/web.kustomize.image-name: acme/old-web\n"


def test_an_existing_override_file_without_the_entry_gains_the_renaming_entry() -> None:
    override = "kustomize:\n  images:\n  - other:1\n"
    files = {"argo/app.yaml": APP.format(namespace="argocd", extra=RENAME),
             "apps/web/.argocd-source-web.yaml": override}
    assert _apply(files, "apps/web/.argocd-source-web.yaml") == (
        override + "  - acme/old-web=r.example/acme/web:1.10\n")


def test_an_override_entry_aliased_to_the_image_keeps_its_alias_without_the_setting() -> None:
    # AIU would write `r.example/acme/web:1.10`, dropping the alias and with it kustomize's replacement of
    # acme/old-web; the entry keeps what it says
    override = "kustomize:\n  images:\n  - acme/old-web=r.example/acme/web:1.0\n"
    files = {"argo/app.yaml": APP.format(namespace="argocd", extra=""),
             "apps/web/.argocd-source-web.yaml": override}
    assert _apply(files, "apps/web/.argocd-source-web.yaml") == (
        "kustomize:\n  images:\n  - acme/old-web=r.example/acme/web:1.10\n")


def test_an_override_entry_of_another_image_under_the_name_gets_the_tracked_image_appended() -> None:
    # AIU merges override entries by the image after `=`: r.example/mirror/web is not the tracked image
    override = "kustomize:\n  images:\n  - r.example/acme/web=r.example/mirror/web:1.0.0\n"
    files = {"argo/app.yaml": APP.format(namespace="argocd", extra=""),
             "apps/web/.argocd-source-web.yaml": override}
    assert _apply(files, "apps/web/.argocd-source-web.yaml") == override + "  - r.example/acme/web:1.10\n"


def test_a_flow_kustomization_entry_gains_new_name_and_new_tag_in_order() -> None:
    extra = RENAME + ("    argocd-image-updater.argoproj.io/write-back-method: git\n"
                      "    argocd-image-updater.argoproj.io/write-back-target: kustomization\n")
    kustomization = "images:\n- {name: acme/old-web}\n"
    files = {"argo/app.yaml": APP.format(namespace="argocd", extra=extra),
             "apps/web/kustomization.yaml": kustomization}
    assert _apply(files, "apps/web/kustomization.yaml") == (
        'images:\n- {name: acme/old-web, newName: r.example/acme/web, newTag: "1.10"}\n')


def test_a_renamed_kustomization_entry_with_the_digest_strategy_gets_its_digest() -> None:
    extra = RENAME.replace("web.kustomize", "web.update-strategy: digest\n"
                           "    argocd-image-updater.argoproj.io/web.kustomize") + (
        "    argocd-image-updater.argoproj.io/write-back-method: git\n"
        "    argocd-image-updater.argoproj.io/write-back-target: kustomization\n")
    app = APP.format(namespace="argocd", extra=extra).replace("acme/web:1.x", "acme/web:stable")
    kustomization = "images:\n- name: acme/old-web\n  newTag: stable@sha256:" + "cd" * 32 + "\n"
    files = {"argo/app.yaml": app, "apps/web/kustomization.yaml": kustomization}
    out = _apply(files, "apps/web/kustomization.yaml", tag="stable", digest=DIGEST)
    assert out == f"images:\n- name: acme/old-web\n  newName: r.example/acme/web\n  newTag: stable@{DIGEST}\n"


def test_the_digest_strategy_on_a_bare_renamed_entry_inserts_new_name_new_tag_and_digest_in_order() -> None:
    extra = RENAME.replace("web.kustomize", "web.update-strategy: digest\n"
                           "    argocd-image-updater.argoproj.io/web.kustomize") + (
        "    argocd-image-updater.argoproj.io/write-back-method: git\n"
        "    argocd-image-updater.argoproj.io/write-back-target: kustomization\n")
    app = APP.format(namespace="argocd", extra=extra).replace("acme/web:1.x", "acme/web:stable")
    files = {"argo/app.yaml": app, "apps/web/kustomization.yaml": "images:\n  - name: acme/old-web # x\n"}
    out = _apply(files, "apps/web/kustomization.yaml", tag="stable", digest=DIGEST)
    # kyaml's field order for AIU's types.Image: name, newName, newTag, digest
    assert out == ("images:\n  - name: acme/old-web # x\n    newName: r.example/acme/web\n"
                   f"    newTag: stable\n    digest: {DIGEST}\n")


GIT_KUSTOMIZATION = ("    argocd-image-updater.argoproj.io/write-back-method: git\n"
                     "    argocd-image-updater.argoproj.io/write-back-target: kustomization\n")


@pytest.mark.parametrize(("extra", "expected"), [
    # AIU's `kustomize edit set image acme/old-web=r.example/acme/web:1.10`: name, newName, newTag
    (RENAME, "- name: other\n  newTag: 1.0\n- name: acme/old-web\n  newName: r.example/acme/web\n"
             '  newTag: "1.10"\n'),
    ("", '- name: other\n  newTag: 1.0\n- name: r.example/acme/web\n  newTag: "1.10"\n'),
])
def test_force_update_appends_an_entry_the_kustomization_lacks(extra: str, expected: str) -> None:
    force = "    argocd-image-updater.argoproj.io/web.force-update: \"true\"\n"
    files = {"argo/app.yaml": APP.format(namespace="argocd", extra=extra + force + GIT_KUSTOMIZATION),
             "apps/web/kustomization.yaml": "images:\n- name: other\n  newTag: 1.0\n"}
    assert _apply(files, "apps/web/kustomization.yaml") == "images:\n" + expected
    # without force-update AIU leaves an image alone that the Application does not run: so do we
    files["argo/app.yaml"] = APP.format(namespace="argocd", extra=extra + GIT_KUSTOMIZATION)
    found = discover_files(files, repo_url=ORIGIN)
    assert found.targets == () and found.skipped == () and found.errors == ()


def test_force_update_without_an_images_list_is_reported() -> None:
    force = "    argocd-image-updater.argoproj.io/web.force-update: \"true\"\n"
    files = {"argo/app.yaml": APP.format(namespace="argocd", extra=force + GIT_KUSTOMIZATION),
             "apps/web/kustomization.yaml": "resources: [a.yaml]\n"}
    found = discover_files(files, repo_url=ORIGIN)
    assert found.targets == ()
    assert [(s.file, s.reason) for s in found.skipped] == [(
        "apps/web/kustomization.yaml",
        "Application argocd/web: no images entry named r.example/acme/web: the kustomization has no "
        "non-empty images list to add it to")]


def test_run_once_commits_the_renaming_forms_and_the_new_override_files(
    registry: RegistryServer, tmp_path: Path, bare_repo: Any
) -> None:
    with ImagePusher(registry.url) as pusher:
        pusher.push_many("acme/web", ["1.0.0", "1.0.9", "1.10.0", "2.0.0"])
        pusher.push_many("acme/ui", ["1.2.3", "1.4.0"])
        pusher.push_many("acme/num", ["1.9", "1.10"])
        digests = pusher.push_many("acme/cache", ["stable", "edge"])
    url = str(tmp_path / "remote" / "repo.git")

    def load(side: str) -> dict[str, str]:
        return {name: text.decode().replace(PLACEHOLDER, registry.host).replace(ORIGIN, url)
                .replace("DIGEST", digests["stable"])
                for name, text in tree(GOLDEN / "aiu-rename" / side).items()}

    original = load("original")
    bare = bare_repo(original, parent=tmp_path / "remote")
    run_once(tmp_path, url, registry)
    expected = load("expected")
    listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", "main"], cwd=bare, check=True,
                            capture_output=True, text=True).stdout.split()
    assert sorted(listed) == sorted(expected)
    for name, text in expected.items():
        shown = subprocess.run(["git", "show", f"main:{name}"], cwd=bare, check=True, capture_output=True)
        assert shown.stdout == text.encode(), name
