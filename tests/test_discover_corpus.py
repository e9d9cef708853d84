"""Discovery on the real-world corpus (tests/data/corpus, byte-exact public manifests, values and
kustomizations): with one policy file per repository targeting every file, discovery must find exactly the
tag-bearing fields that corpus/images.json lists (made by a separate throwaway script), at the listed lines,
with the listed values; and the Helm template that is not YAML is reported, never touched.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import NotRequired, TypedDict

from image_updater.discover import discover_files
from image_updater.errors import InvalidReference
from image_updater.references import parse_reference

# A byte-exact copy of the real-world files, kept in the repository (origins and licences: SOURCES.md there).
CORPUS = Path(__file__).resolve().parent / "data" / "corpus"


class CorpusImage(TypedDict):
    """One image-like field images.json lists for a corpus file (the fields this module reads)."""

    kind: str
    path: str
    value: str
    line: int
    doc: int


class CorpusFile(TypedDict):
    """One file of images.json (the fields this module reads; ``images`` absent when it has none)."""

    path: str
    images: NotRequired[list[CorpusImage]]


def real_path(corpus_name: str, info: CorpusFile) -> str:
    """The file's path as in its repository (``fluxcd__flux/deploy/flux-deployment.yaml``): discovery
    recognises kustomization files by name, which the corpus's flattened names hide."""
    return f"{corpus_name.split('/', 1)[0]}/{info['path']}"


def corpus_index() -> dict[str, CorpusFile]:
    files: dict[str, CorpusFile] = json.loads((CORPUS / "images.json").read_text())["files"]
    return dict(files)


def corpus_files() -> dict[str, str]:
    return {
        real_path(name, info): (CORPUS / name).read_bytes().decode("utf-8")
        for name, info in sorted(corpus_index().items())
    }


def listed_fields() -> tuple[dict[tuple[str, int], str], set[str]]:
    """(file, line) -> value of every field that holds a tag (or a whole reference), and the repositories."""
    fields: dict[tuple[str, int], str] = {}
    repositories: set[str] = set()
    for name, info in corpus_index().items():
        file = real_path(name, info)
        maps: dict[tuple[int, str], dict[str, CorpusImage]] = defaultdict(dict)
        for image in info.get("images", []):
            kind, path = image["kind"], image["path"]
            if path.startswith("patches["):
                continue  # a kustomize patch's target selector: selects resources, is no image to update
            if kind in ("container", "compose", "image-string"):
                try:
                    repositories.add(parse_reference(image["value"]).name)
                except InvalidReference:
                    continue
                fields[(file, image["line"])] = image["value"]
            else:
                parent, _, member = path.rpartition(".")
                maps[(image["doc"], parent)][member] = image
        for (_doc, _parent), members in maps.items():
            if "name" in members or "newName" in members:  # kustomize images entry
                repo = members.get("newName", members.get("name"))
                assert repo is not None
                repositories.add(parse_reference(str(repo["value"])).name)
                if "newTag" in members:
                    fields[(file, int(members["newTag"]["line"]))] = str(members["newTag"]["value"])
                continue
            if "repository" not in members:
                continue
            registry = str(members["registry"]["value"]) if "registry" in members else ""
            repository = str(members["repository"]["value"])
            repositories.add(parse_reference(f"{registry}/{repository}" if registry else repository).name)
            tag = members.get("tag", members["repository"])
            fields[(file, int(tag["line"]))] = str(tag["value"])
    return fields, repositories


def test_discovery_finds_exactly_the_listed_fields() -> None:
    fields, repositories = listed_fields()
    policies = "\n---\n".join(
        f"apiVersion: image-updater.io/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: p{i}\n"
        f"spec:\n  image: {repo}\n  policy: glob:*\n  targets: [{{path: '**'}}]\n"
        for i, repo in enumerate(sorted(repositories))
    )
    discovery = discover_files(corpus_files(), extra_policy_files={"policies.yaml": policies})
    found = {(t.file, t.line): t.value for t in discovery.targets if t.part not in ("digest", "digest-hex")}
    # fields in workloads that Flux v1 annotations lock or switch off are reported as skipped instead
    skipped = {(s.file, s.line) for s in discovery.skipped}
    assert skipped == {
        ("fluxcd__flux-get-started/releases/ghost.yaml", 19),
        ("fluxcd__flux-get-started/releases/redis.yaml", 26),
        ("fluxcd__flux-get-started@d5292834/releases/ghost.yaml", 17),
    }
    # DESIGN also counts keys ending in "Image" (images.json does not): kube-prometheus-stack's thanosImage
    extra = {("prometheus-community__helm-charts/charts/kube-prometheus-stack/values.yaml", 3574): "v0.42.4"}
    assert found == {k: v for k, v in fields.items() if k not in skipped} | extra
    # every target's span holds exactly its value (plain) or its value in quotes
    texts = corpus_files()
    for target in discovery.targets:
        raw = texts[target.file][target.start : target.end]
        assert raw in (target.value, f"'{target.value}'", f'"{target.value}"')
    # Flux's own test files carry setter markers naming ImagePolicies that are not in the corpus
    marker_errors = [e for e in discovery.errors if e.message.startswith("setter marker")]
    repos = {e.file.split("/", 1)[0] for e in marker_errors if e.file}
    assert repos == {"fluxcd__image-automation-controller"}
    assert all("automation-ns:" in e.message for e in marker_errors)
    errors = [e for e in discovery.errors if e not in marker_errors]
    assert [e.file for e in errors] == ["stefanprodan__podinfo/charts/podinfo/templates/deployment.yaml"]
    assert "not parsed, left untouched" in errors[0].message


def test_the_kyverno_image_globs_are_no_targets() -> None:
    files = {k: v for k, v in corpus_files().items() if "kyverno" in k}
    policy = ("apiVersion: image-updater.io/v1alpha1\nkind: ImagePolicy\nmetadata: {name: flux}\n"
              "spec: {image: ghcr.io/fluxcd/source-controller, policy: 'semver:^1',\n"
              "       targets: [{path: '**'}]}\n")
    discovery = discover_files(files, extra_policy_files={"p.yaml": policy})
    assert discovery.targets == ()
    assert discovery.errors == ()
