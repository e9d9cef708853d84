"""Insert edits (a key added to a mapping, an item appended to a sequence) and new files written from nothing:
the text produced, byte for byte, and the verification that refuses anything else."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from ruamel.yaml.nodes import MappingNode, SequenceNode

from image_updater.discover import discover_files
from image_updater.errors import YamlEditError
from image_updater.worktree import create_file
from image_updater.yamledit import (
    Edit,
    Insertion,
    apply_edits,
    apply_verified,
    item_insertion,
    key_insertion,
    parse_yaml,
)


def _entries(text: str) -> list[MappingNode]:
    images = next(v for k, v in parse_yaml(text, filename="k.yaml").documents[0].value if k.value == "images")
    return list(images.value)


def new_tag(text: str, value: str) -> str:
    parsed = parse_yaml(text, filename="k.yaml")
    images = next(v for k, v in parsed.documents[0].value if k.value == "images")
    edits = []
    for entry in images.value:
        offset, insert = key_insertion(text, entry, "newTag", ("newName", "name"))
        edits.append(Edit(offset, offset, value, insert=insert))
    return apply_verified(parsed, edits, filename="k.yaml")


@pytest.mark.parametrize(("text", "value", "expected"), [
    ("images:\n- name: a # keep\n  newName: b\n", "1.2.3",
     "images:\n- name: a # keep\n  newName: b\n  newTag: 1.2.3\n"),
    ("images:\n  - name: a\n    digest: sha256:0\n", "1.2",
     'images:\n  - name: a\n    newTag: "1.2"\n    digest: sha256:0\n'),
    ("images:\n  - name: a\n", "1.10", 'images:\n  - name: a\n    newTag: "1.10"\n'),
    ("images:\n- {name: a, newName: 'b'}  # c\n", "v1",
     "images:\n- {name: a, newName: 'b', newTag: v1}  # c\n"),
    ("images:\r\n- name: a\r\n  newName: b\r\nx: 1", "v2",
     "images:\r\n- name: a\r\n  newName: b\r\n  newTag: v2\r\nx: 1"),
    ("images:\r\n- name: a", "v3", "images:\r\n- name: a\r\n  newTag: v3"),
    ("images:\n- name: a", "0362525", 'images:\n- name: a\n  newTag: "0362525"'),
])
def test_new_tag_is_inserted_as_kustomize_writes_it(text: str, value: str, expected: str) -> None:
    assert new_tag(text, value) == expected


def test_layouts_that_cannot_take_a_key_safely_are_refused() -> None:
    text = "images:\n- name: a\n  newName: >\n    b\n"
    with pytest.raises(YamlEditError, match="one-line scalar"):
        key_insertion(text, _entries(text)[0], "newTag", ("newName", "name"))


def test_verification_refuses_an_insertion_that_does_not_add_the_key() -> None:
    text = "images:\n- name: a\n"
    parsed = parse_yaml(text, filename="k.yaml")
    offset, insert = key_insertion(text, _entries(text)[0], "newTag", ("name",))
    wrong = dataclasses.replace(insert, prefix=insert.prefix.replace("newTag", "newTog"))
    with pytest.raises(YamlEditError, match="'newTag' was not added"):
        apply_verified(parsed, [Edit(offset, offset, "1.0", insert=wrong)], filename="k.yaml")
    elsewhere = dataclasses.replace(insert, prefix="\n  other: x" + insert.prefix)
    with pytest.raises(YamlEditError, match="shape"):
        apply_verified(parsed, [Edit(offset, offset, "1.0", insert=elsewhere)], filename="k.yaml")


def _sequence(text: str, *path: str) -> SequenceNode:
    node = parse_yaml(text, filename="o.yaml").documents[0]
    for step in path:
        node = next(v for k, v in node.value if k.value == step)
    assert isinstance(node, SequenceNode)
    return node


@pytest.mark.parametrize(("text", "expected"), [
    ("kustomize:\n  images:\n  - a:1 # c\n", "kustomize:\n  images:\n  - a:1 # c\n  - b:2\n"),
    ("kustomize:\n  images:\n    -   a:1\n", "kustomize:\n  images:\n    -   a:1\n    -   b:2\n"),
    ("kustomize:\n  images: [a:1]\n", 'kustomize:\n  images: [a:1, "b:2"]\n'),
    ("kustomize:\r\n  images:\r\n  - a:1", "kustomize:\r\n  images:\r\n  - a:1\r\n  - b:2"),
])
def test_an_item_is_appended_in_the_sequences_style(text: str, expected: str) -> None:
    offset, insert = item_insertion(text, _sequence(text, "kustomize", "images"), "")
    edit = Edit(offset, offset, "b:2", insert=insert)
    assert apply_verified(parse_yaml(text, filename="o.yaml"), [edit], filename="o.yaml") == expected


def test_a_helm_parameter_is_appended_with_aius_keys() -> None:
    text = "helm:\n  parameters:\n  - name: x\n    value: y\n    forcestring: true\n"
    offset, insert = item_insertion(text, _sequence(text, "helm", "parameters"), "name: image.tag",
                                    ["value: "], "forcestring: true")
    insert = dataclasses.replace(insert, path=(0, "value"))
    parsed = parse_yaml(text, filename="o.yaml")
    assert apply_verified(parsed, [Edit(offset, offset, "1.0", insert=insert)], filename="o.yaml") == (
        text + '  - name: image.tag\n    value: "1.0"\n    forcestring: true\n')
    flow = "helm:\n  parameters:\n  - {name: x, value: y}\n"
    offset, insert = item_insertion(flow, _sequence(flow, "helm", "parameters"), "name: image.tag",
                                    ["value: "], "forcestring: true")
    insert = dataclasses.replace(insert, path=(0, "value"))
    parsed = parse_yaml(flow, filename="o.yaml")
    assert apply_verified(parsed, [Edit(offset, offset, "v1", insert=insert)], filename="o.yaml") == (
        flow + "  - {name: image.tag, value: v1, forcestring: true}\n")
    with pytest.raises(YamlEditError, match="empty sequence"):
        empty = "helm:\n  parameters: []\n"
        item_insertion(empty, _sequence(empty, "helm", "parameters"), "name: a")


NEW = Insertion(parent=-1, prefix="  - ", suffix="\n", path=("kustomize", "images", 0),
                header="kustomize:\n  images:\n")


def test_a_new_file_is_written_from_nothing_with_one_header() -> None:
    edits = [Edit(0, 0, "a:1", insert=NEW), Edit(0, 0, "b:1.10", insert=NEW)]
    assert apply_verified(parse_yaml("", filename="n.yaml"), edits, filename="n.yaml") == (
        "kustomize:\n  images:\n  - a:1\n  - b:1.10\n")
    assert apply_edits("", edits, filename="n.yaml") == "kustomize:\n  images:\n  - a:1\n  - b:1.10\n"
    wrong = dataclasses.replace(NEW, path=("kustomize", "images", 0, "value"))
    with pytest.raises(YamlEditError, match="not a scalar"):
        apply_verified(parse_yaml("", filename="n.yaml"), [Edit(0, 0, "a:1", insert=wrong)],
                       filename="n.yaml")
    with pytest.raises(YamlEditError, match="new file"):
        apply_verified(parse_yaml("x: 1\n", filename="n.yaml"), [Edit(0, 0, "a:1", insert=NEW)],
                       filename="n.yaml")


def test_create_file_refuses_existing_paths_missing_directories_and_symlinks_out(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "apps").mkdir(parents=True)
    edits = [Edit(0, 0, "a:1", insert=NEW)]
    create_file(root / "apps" / "new.yaml", edits, root=root)
    assert (root / "apps" / "new.yaml").read_text() == "kustomize:\n  images:\n  - a:1\n"
    with pytest.raises(YamlEditError, match="already there"):
        create_file(root / "apps" / "new.yaml", edits, root=root)
    os.symlink(tmp_path / "outside.yaml", root / "apps" / "dangling.yaml")
    with pytest.raises(YamlEditError, match="already there"):
        create_file(root / "apps" / "dangling.yaml", edits, root=root)
    with pytest.raises(YamlEditError, match="directory does not exist"):
        create_file(root / "nope" / "new.yaml", edits, root=root)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "out")
    with pytest.raises(YamlEditError, match="outside"):
        create_file(root / "out" / "new.yaml", edits, root=root)
    assert not (tmp_path / "outside.yaml").exists() and list((tmp_path / "elsewhere").iterdir()) == []


POLICY = """apiVersion: image-updater.io/v1alpha1
kind: ImagePolicy
metadata:
  name: web
spec:
  image: ghcr.io/acme/web
  policy: semver:^1
  targets:
    - path: "apps/**"
"""


def test_a_policy_file_target_without_new_tag_gets_an_insert_target() -> None:
    found = discover_files({
        "policies/web.yaml": POLICY,
        "apps/kustomization.yaml": "images:\n  - name: ghcr.io/acme/web\n  - name: ghcr.io/acme/web2\n",
    })
    assert [(t.file, t.line, t.start, t.part, t.insert is not None) for t in found.targets] == [
        ("apps/kustomization.yaml", 3, 34, "tag", True)]
    assert found.skipped == () and found.errors == ()


def test_an_insertion_whose_preceding_text_changed_is_refused() -> None:
    text = "images:\n- name: a\n"
    offset, insert = key_insertion(text, _entries(text)[0], "newTag", ("name",))
    changed = "images:\n- name: b\n"
    with pytest.raises(YamlEditError, match="changed since it was read"):
        apply_edits(changed, [Edit(offset, offset, "1.0", original="- name: a", insert=insert)], filename="k")
    assert apply_edits(text, [Edit(offset, offset, "1.0", original="- name: a", insert=insert)],
                       filename="k") == 'images:\n- name: a\n  newTag: "1.0"\n'


@pytest.mark.parametrize(("text", "match"), [
    ("images:\n- {}\n", "empty mapping"),
    ("images:\n- name: 'a\n    b'\n", "spans lines"),
    ("images:\n- name: a\n  newName:\n    b\n", "spans lines"),
])
def test_mappings_that_cannot_take_a_new_key_line_are_refused(text: str, match: str) -> None:
    with pytest.raises(YamlEditError, match=match):
        key_insertion(text, _entries(text)[0], "newTag", ("newName", "name"))


@pytest.mark.parametrize(("text", "match"), [
    ("kustomize:\n  images:\n  - |\n    a:1\n", "block scalar"),
    ("kustomize:\n  images:\n  -\n    a:1\n", "dash is not on its first line"),
    ("kustomize:\n  images: []\n", "empty sequence"),
])
def test_sequences_that_cannot_take_an_item_safely_are_refused(text: str, match: str) -> None:
    with pytest.raises(YamlEditError, match=match):
        item_insertion(text, _sequence(text, "kustomize", "images"), "")
