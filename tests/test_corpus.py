"""Every image field of the real-world corpus, rewritten byte-exactly.

``tests/data/corpus/images.json`` lists each image field of 46 public manifests, Helm values files, compose
files and kustomizations (file, key path, line, exact source text, quote style, byte offset). For every
file and both parsers, all listed fields are rewritten at once (a plausible new reference or tag, and a
numeric-looking one that must gain quotes); the test proves that exactly those bytes changed, that the file
still parses and that each field now reads as its new value. The same edits go through ``edit_file`` on a
copy of the file. A Helm template (not YAML) is reported by ``parse_yaml`` and never touched.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from image_updater.worktree import edit_file, read_text
from image_updater.yamledit import (
    Edit,
    ParsedFile,
    YamlParseError,
    apply_edits,
    apply_verified,
    parse_yaml,
    render_scalar,
    scalar_span,
)

# A byte-exact copy of the real-world files, kept in the repository (origins and licences: SOURCES.md there).
CORPUS = Path(__file__).resolve().parent / "data" / "corpus"
NEW_DIGEST = "sha256:" + "e" * 64
QUOTES = {"plain": None, "single": "'", "double": '"'}


@cache
def index() -> dict[str, Any]:
    path = CORPUS / "images.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _files(parsed: bool) -> list[str]:
    return sorted(name for name, entry in index()["files"].items() if entry["parsed"] == parsed)


YAML_FILES = _files(parsed=True)
NOT_YAML = _files(parsed=False)


def test_the_corpus_is_what_the_tests_expect() -> None:
    files = index()["files"]
    assert len(files) == 46
    assert sum(len(entry["images"]) for entry in files.values()) == 197
    assert NOT_YAML == ["stefanprodan__podinfo/charts__podinfo__templates__deployment.yaml"]
    for name, entry in files.items():
        data = (CORPUS / name).read_bytes()
        assert len(data) == entry["bytes"], name
        for image in entry["images"]:
            assert (
                data[image["byte_offset"] : image["byte_offset"] + image["byte_length"]]
                == image["raw"].encode()
            )


def new_value(image: dict[str, Any], variant: str) -> str:
    """A plausible replacement: the same reference with tag 9.9.9, or a numeric-looking ``1.10``."""
    if variant == "numeric":
        return "1.10"
    key = image["path"].rsplit(".", 1)[-1]
    value: str = image["value"]
    if key in ("tag", "newTag", "version"):
        return "9.9.9"
    if key in ("digest", "sha", "newDigest"):
        return NEW_DIGEST
    if key == "registry":
        return "registry.example.com:5000"
    # A reference (image, repository, name, newName): keep the spelling, replace or add the tag.
    base, _, digest = value.partition("@")
    slash = base.rfind("/")
    colon = base.rfind(":")
    if colon > slash:
        base = base[:colon]
    return f"{base}:9.9.9" + (f"@{NEW_DIGEST}" if digest else "")


def scalar_nodes(parsed: ParsedFile) -> dict[tuple[int, int], ScalarNode]:
    found: dict[tuple[int, int], ScalarNode] = {}
    stack: list[Any] = list(parsed.documents)
    while stack:
        node = stack.pop()
        if isinstance(node, ScalarNode):
            found[scalar_span(node)] = node
        elif isinstance(node, MappingNode):
            stack.extend(item for pair in node.value for item in pair)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return found


def plan(name: str, variant: str) -> tuple[str, bytes, list[Edit], bytes]:
    """The file's text and bytes, its edits (character spans) and the expected new bytes (from bytes)."""
    entry = index()["files"][name]
    data = (CORPUS / name).read_bytes()
    text = read_text(CORPUS / name)
    edits: list[Edit] = []
    expected = bytearray()
    position = 0
    for image in sorted(entry["images"], key=lambda image: image["byte_offset"]):
        start = len(data[: image["byte_offset"]].decode("utf-8"))
        end = start + len(image["raw"])
        value = new_value(image, variant)
        edits.append(Edit(start, end, value, original=image["raw"]))
        expected += data[position : image["byte_offset"]]
        rendered = render_scalar(image["raw"], value)
        quote = QUOTES[image["style"]]
        if quote is not None:
            assert rendered[0] == rendered[-1] == quote, (name, image["path"], rendered)
        elif variant == "numeric":
            assert rendered == '"1.10"', (name, image["path"], rendered)
        else:
            assert rendered == value, (name, image["path"], rendered)
        expected += rendered.encode("utf-8")
        position = image["byte_offset"] + image["byte_length"]
    expected += data[position:]
    return text, data, edits, bytes(expected)


@pytest.mark.parametrize("variant", ["reference", "numeric"])
@pytest.mark.parametrize("parser", ["c", "pure"])
@pytest.mark.parametrize("name", YAML_FILES)
def test_every_image_field_is_rewritten_byte_exactly(name: str, parser: str, variant: str) -> None:
    entry = index()["files"][name]
    text, _, edits, expected = plan(name, variant)
    parsed = parse_yaml(text, filename=name, parser=parser)  # type: ignore[arg-type]
    assert parsed.parser == parser

    # The listed fields are exactly scalar nodes of the composed tree, with the listed value, line and style.
    nodes = scalar_nodes(parsed)
    for image, one in zip(
        sorted(entry["images"], key=lambda image: image["byte_offset"]), edits, strict=True
    ):
        node = nodes[(one.start, one.end)]
        assert node.value == image["value"]
        assert node.start_mark.line + 1 == image["line"]
        assert (node.style or None) == QUOTES[image["style"]]

    new_text = apply_edits(text, edits, filename=name)
    assert new_text.encode("utf-8") == expected  # everything outside the spans, byte for byte
    assert apply_verified(parsed, edits, filename=name) == new_text

    reparsed = parse_yaml(new_text, filename=name, parser=parser)
    new_nodes = scalar_nodes(reparsed)
    shift = 0
    for one in edits:
        rendered = render_scalar(text[one.start : one.end], one.value)
        start = one.start + shift
        assert new_nodes[(start, start + len(rendered))].value == one.value
        shift += len(rendered) - (one.end - one.start)
    assert len(new_nodes) == len(nodes)


@pytest.mark.parametrize("name", [name for name in YAML_FILES if index()["files"][name]["images"]])
def test_edit_file_on_a_copy(name: str, tmp_path: Path) -> None:
    copy = tmp_path / Path(name).name
    shutil.copyfile(CORPUS / name, copy)
    _, data, edits, expected = plan(name, "reference")
    edit_file(copy, edits, root=tmp_path)
    assert copy.read_bytes() == expected
    assert expected != data
    assert sorted(path.name for path in tmp_path.iterdir()) == [copy.name]


@pytest.mark.parametrize("name", NOT_YAML)
def test_a_helm_template_is_reported_and_never_touched(name: str, tmp_path: Path) -> None:
    entry = index()["files"][name]
    text = read_text(CORPUS / name)
    for parser in ("auto", "c", "pure"):
        with pytest.raises(YamlParseError, match=rf"^{name}:\d+: not valid YAML") as caught:
            parse_yaml(text, filename=name, parser=parser)
        assert caught.value.line is not None and caught.value.line >= 1

    # Even an edit aimed at the line a naive scan finds is refused, and the file keeps every byte.
    copy = tmp_path / "deployment.yaml"
    shutil.copyfile(CORPUS / name, copy)
    scan = entry["fallback_line_scan"][0]
    start = text.index(scan["text"])
    with pytest.raises(YamlParseError):
        edit_file(copy, [Edit(start, start + len(scan["text"]), "nginx:1.25")], root=tmp_path)
    assert copy.read_bytes() == (CORPUS / name).read_bytes()
