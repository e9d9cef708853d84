"""Property tests for yamledit: generated documents, arbitrary new values.

For generated manifests and Helm values with image fields in every style (plain, single, double quotes;
block or flow containers; anchors and tags; comments with tabs; CRLF; BOM; 2/4 indentation and
zero-indented sequences; document markers; missing final newline), rewriting the fields changes only their
spans, and an independent reader (ruamel's pure safe loader, constructing real data) sees documents that
differ from the originals in exactly those values. Rendering any text in any quote style reads back as
that text, and a plain scalar is never left where some YAML reader would take it for a non-string.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
import yaml as pyyaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.nodes import ScalarNode as RuamelScalarNode
from ruamel.yaml.resolver import VersionedResolver

from image_updater.yamledit import (
    Edit,
    apply_edits,
    apply_verified,
    parse_yaml,
    plain_needs_quotes,
    render_scalar,
    scalar_span,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------ strategies

registries = st.sampled_from(
    ["", "docker.io/", "ghcr.io/", "registry.example.com:5000/", "localhost:5000/", "127.0.0.1:5000/"]
)
segments = st.from_regex(r"\A[a-z0-9]{1,8}([._-][a-z0-9]{1,5})?\Z")
tags = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9._-]{0,20}\Z")
numeric_tags = st.one_of(
    st.sampled_from(["1.10", "1.9", "0362525", "1e3", "1_000", "0x1F", "2024-01-01", "yes", "on", "~", "12"]),
    st.from_regex(r"\A[-+]?[0-9]{1,4}(\.[0-9]{0,3})?([eE][-+]?[0-9]{1,2})?\Z"),
)
digests = st.from_regex(r"\Asha256:[0-9a-f]{64}\Z")


@st.composite
def references(draw: st.DrawFn) -> str:
    path = "/".join(draw(st.lists(segments, min_size=1, max_size=3)))
    tag = draw(st.one_of(st.none(), tags, numeric_tags))
    digest = draw(st.one_of(st.none(), digests))
    return draw(registries) + path + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


# Any text a scalar can hold (no surrogates): quotes, colons, hashes, line breaks, controls, emoji.
any_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)
new_values = st.one_of(references(), numeric_tags, tags, any_text)


@dataclass(frozen=True)
class Field:
    """A generated image field: its document index and key path, and its current value."""

    doc: int
    path: tuple[str | int, ...]
    value: str


@dataclass(frozen=True)
class Generated:
    text: str
    fields: tuple[Field, ...]


def scalar_source(draw: st.DrawFn, value: str, *, flow: bool) -> str:
    """Write ``value`` in a drawn style, possibly with an anchor or tag in front."""
    styles = ["single", "double"]
    if not plain_needs_quotes(value) and not (flow and ":" in value and draw(st.booleans())):
        styles.append("plain")
    style = draw(st.sampled_from(styles))
    if style == "plain":
        source = value
    elif style == "single":
        source = "'" + value.replace("'", "''") + "'"
    else:
        source = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    prefix = draw(st.sampled_from(["", "", "", "&anchor ", "!!str ", "&a !!str "]))
    return prefix + source


def comment(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["", "", " # comment", " #\ttab\tinside", '  # {"$imagepolicy": "ns:name"}']))


@st.composite
def workloads(draw: st.DrawFn) -> Generated:
    unit = " " * draw(st.sampled_from([2, 4]))
    zero_indent = draw(st.booleans())
    image = draw(references())
    flow = draw(st.booleans())
    lines = [
        "apiVersion: apps/v1" + comment(draw),
        "kind: Deployment",
        "metadata:",
        f"{unit}name: web" + comment(draw),
    ]
    if draw(st.booleans()):
        lines.append("")
    lines += ["spec:", f"{unit}template:", f"{unit * 2}spec:"]
    if flow:
        source = scalar_source(draw, image, flow=True)
        lines.append(
            f"{unit * 3}containers: [{{name: app, image: {source}}}, {{name: side, image: busybox}}]"
        )
    else:
        lines.append(f"{unit * 3}containers:" + comment(draw))
        dash = unit * 3 if zero_indent else unit * 4
        if draw(st.booleans()):
            lines.append(f"{dash}# the main container")
        lines.append(f"{dash}- name: app" + comment(draw))
        lines.append(f"{dash}  image: {scalar_source(draw, image, flow=False)}" + comment(draw))
        lines.append(f"{dash}  ports:")
        lines.append(f"{dash}  - containerPort: 8080")
        lines.append(f"{dash}- name: side")
        lines.append(f"{dash}  image: busybox:1.36")
    path = ("spec", "template", "spec", "containers", 0, "image")
    return Generated("\n".join(lines), (Field(0, path, image),))


@st.composite
def helm_values(draw: st.DrawFn) -> Generated:
    unit = " " * draw(st.sampled_from([2, 4]))
    repository = draw(references())
    tag = draw(st.one_of(tags, numeric_tags))
    lines = ["# Default values for app." + comment(draw), "replicaCount: 1", ""]
    if draw(st.booleans()):
        source_repo = scalar_source(draw, repository, flow=True)
        source_tag = scalar_source(draw, tag, flow=True)
        lines.append(f"image: {{repository: {source_repo}, tag: {source_tag}}}" + comment(draw))
    else:
        lines.append("image:" + comment(draw))
        lines.append(f"{unit}repository: {scalar_source(draw, repository, flow=False)}" + comment(draw))
        lines.append(f"{unit}pullPolicy: IfNotPresent")
        lines.append(f"{unit}tag: {scalar_source(draw, tag, flow=False)}" + comment(draw))
    lines += ["script: |", f"{unit}image: x:1", f"{unit}tag: 1.0", "after: true"]
    fields = (Field(0, ("image", "repository"), repository), Field(0, ("image", "tag"), tag))
    return Generated("\n".join(lines), fields)


@st.composite
def files(draw: st.DrawFn) -> Generated:
    """One generated document inside a drawn file layout: markers, other documents, line ends, BOM."""
    body = draw(st.one_of(workloads(), helm_values()))
    docs = [body.text]
    offset = 0
    if draw(st.booleans()):
        docs.insert(0, "apiVersion: v1\nkind: Service\nmetadata: {name: web}")
        offset = 1
    if draw(st.booleans()):
        docs.append("apiVersion: v1\nkind: ConfigMap\ndata:\n  image: not-a-target:1")
    start = draw(st.sampled_from(["", "---\n", "--- # first\n"]))
    separator = draw(st.sampled_from(["\n---\n", "\n...\n---\n", "\n--- # next\n"]))
    text = draw(st.sampled_from(["", "# banner\n", "# banner\n\n"])) + start + separator.join(docs)
    if draw(st.booleans()):
        text += "\n" + draw(st.sampled_from(["", "...\n", "# trailing\n"]))
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    if draw(st.booleans()):
        text = "\ufeff" + text
    fields = tuple(Field(field.doc + offset, field.path, field.value) for field in body.fields)
    return Generated(text, fields)


# ------------------------------------------------------------------------------------------- helpers


def load_all(text: str, *, pure: bool) -> list[Any]:
    """An independent reading: ruamel's safe loader constructs the data (no node positions involved)."""
    return list(YAML(typ="safe", pure=pure).load_all(text))


def get(data: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def put(data: Any, path: tuple[str | int, ...], value: str) -> None:
    get(data, path[:-1])[path[-1]] = value


def locate(text: str, fields: tuple[Field, ...], parser: str) -> list[tuple[int, int]]:
    """The character span of each field, found by walking the composed tree along the field's path."""
    parsed = parse_yaml(text, filename="gen.yaml", parser=parser)  # type: ignore[arg-type]
    spans = []
    for field in fields:
        node = parsed.documents[field.doc]
        for key in field.path:
            if isinstance(key, int):
                node = node.value[key]
            else:
                node = next(value for name, value in node.value if name.value == key)
        assert isinstance(node, RuamelScalarNode) and node.value == field.value
        spans.append(scalar_span(node))
    return spans


# ---------------------------------------------------------------------------------------- properties


@pytest.mark.filterwarnings("ignore::ruamel.yaml.error.ReusedAnchorWarning")  # &a twice is legal YAML
@SETTINGS
@given(generated=files(), data=st.data())
def test_an_edit_changes_only_its_span_and_value(generated: Generated, data: st.DataObject) -> None:
    text = generated.text
    libyaml_ok = True
    try:
        parse_yaml(text, filename="gen.yaml", parser="c")
    except Exception:
        libyaml_ok = False  # a plain scalar with ':' inside a flow collection; the pure parser reads it
    for parser in ["c", "pure"] if libyaml_ok else ["pure"]:
        parsed = parse_yaml(text, filename="gen.yaml", parser=parser)  # type: ignore[arg-type]
        spans = locate(text, generated.fields, parser)
        chosen = data.draw(st.lists(st.booleans(), min_size=len(spans), max_size=len(spans)).filter(any))
        edits = []
        expected = load_all(text, pure=not libyaml_ok)
        for field, span, wanted in zip(generated.fields, spans, chosen, strict=True):
            if wanted:
                value = data.draw(new_values)
                edits.append(Edit(*span, value))
                put(expected[field.doc], field.path, value)

        new_text = apply_verified(parsed, edits, filename="gen.yaml")
        assert apply_edits(text, edits, filename="gen.yaml") == new_text  # the dry run shows what is written

        # Outside the spans nothing moved: the new text is the old text between the spans, verbatim, with
        # each span replaced by its rendering (the double-quoted one inside flow collections when needed).
        ordered = sorted(edits, key=lambda edit: edit.start)
        gaps = [text[: ordered[0].start]]
        gaps += [text[one.end : two.start] for one, two in itertools.pairwise(ordered)]
        gaps.append(text[ordered[-1].end :])
        choices = [
            {render_scalar(text[one.start : one.end], one.value), render_scalar('"x"', one.value)}
            for one in ordered
        ]
        assembled = {gaps[0]}
        for gap, renderings in zip(gaps[1:], choices, strict=True):
            assembled = {done + rendering + gap for done in assembled for rendering in renderings}
        assert new_text in assembled
        for one in ordered:
            original = text[one.start : one.end]
            if original[0] in "'\"":  # quoted styles are kept (single quotes cannot hold a line break)
                assert render_scalar(original, one.value)[0] in (original[0], '"')

        # An independent reader sees exactly the new values, everything else equal.
        assert load_all(new_text, pure=not libyaml_ok) == expected
        # libyaml still accepts the file if it accepted the original (flow scalars gained quotes).
        if libyaml_ok:
            assert parse_yaml(new_text, filename="gen.yaml").parser == "c"


@SETTINGS
@given(value=any_text, style=st.sampled_from(["plain", "'x'", '"x"']))
def test_any_value_reads_back_in_every_style(value: str, style: str) -> None:
    rendered = render_scalar("x" if style == "plain" else style, value)
    if style != "plain" and rendered[0] != style[0]:
        assert style[0] == "'" and rendered[0] == '"'
    for text in (f"k: {rendered}\n", f"- {rendered} # c\n", f"--- {rendered}\n"):
        for reader in (YAML(typ="safe"), YAML(typ="safe", pure=True)):
            loaded = reader.load(text)
            got = loaded if text.startswith("---") else loaded[0] if isinstance(loaded, list) else loaded["k"]
            assert got == value
        assert pyyaml.safe_load(text) in ({"k": value}, [value], value)


_RUAMEL_RESOLVERS = {version: VersionedResolver(version=version) for version in ((1, 1), (1, 2))}
_PYYAML_RESOLVER = pyyaml.resolver.Resolver()
numberish = st.text(
    st.sampled_from("0123456789._-+:eExXoObBpPtTzZ aAfFnNlLuUyYsS~=<"), min_size=1, max_size=12
)


@SETTINGS
@given(value=st.one_of(numberish, numeric_tags, tags))
def test_plain_is_only_kept_when_every_reader_sees_a_string(value: str) -> None:
    tags = {
        f"ruamel {version}: {resolver.resolve(RuamelScalarNode, value, (True, False))}"
        for version, resolver in _RUAMEL_RESOLVERS.items()
    }
    # types-PyYAML leaves BaseResolver.resolve unannotated
    resolved = _PYYAML_RESOLVER.resolve(pyyaml.nodes.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    tags.add(f"pyyaml: {resolved}")
    if any(not tag.endswith(":str") for tag in tags):
        assert plain_needs_quotes(value), tags
    if not plain_needs_quotes(value):
        assert render_scalar("x", value) == value
        for reader in (YAML(typ="safe"), YAML(typ="safe", pure=True)):
            assert reader.load(f"k: {value}\n") == {"k": value}


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F)) | st.text())
def test_ascii_classes_decide_what_the_whole_unicode_classes_decide(value: str) -> None:
    """yamledit checks ASCII values against the ASCII parts of its character classes (compiling the whole
    classes only for other values): the answers are those of the whole classes."""
    import re

    from image_updater import yamledit

    whole_plain = re.compile(yamledit._PLAIN_CHARS + "+")
    whole_printable = re.compile(yamledit._PRINTABLE + "*")
    assert yamledit._plain_chars(value) == (whole_plain.fullmatch(value) is not None)
    assert yamledit._printable(value) == (whole_printable.fullmatch(value) is not None)
    for char in value:
        assert yamledit._printable(char) == (whole_printable.fullmatch(char) is not None)


def test_every_ascii_character_is_in_the_ascii_class_iff_in_the_whole_class() -> None:
    import re

    from image_updater import yamledit

    for code in range(0x80):
        char = chr(code)
        assert yamledit._plain_chars(char) == (re.fullmatch(yamledit._PLAIN_CHARS, char) is not None), code
        assert yamledit._printable(char) == (re.fullmatch(yamledit._PRINTABLE, char) is not None), code
