"""yamledit: parsing with positions, quoting rules, byte-exact span edits, verification; worktree: reading
and atomic writes.

Golden cases compare whole files byte for byte; every rendered scalar is also read back by independent
YAML readers (ruamel with libyaml and pure, YAML 1.1 and 1.2, and PyYAML) to prove it means the new value.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from image_updater import yamledit
from image_updater.errors import YamlEditError
from image_updater.worktree import edit_file, read_text, write_atomic
from image_updater.yamledit import (
    MAX_DEPTH,
    Edit,
    ParsedFile,
    YamlParseError,
    apply_edits,
    apply_verified,
    parse_yaml,
    plain_needs_quotes,
    render_scalar,
    scalar_span,
)

PARSERS = ["c", "pure"]


# ------------------------------------------------------------------------------------------- helpers


def scalars(parsed: ParsedFile) -> Iterator[ScalarNode]:
    """Every distinct scalar node (keys included), in document order."""
    seen: set[int] = set()

    def walk(node: Any) -> Iterator[ScalarNode]:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            yield node
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                yield from walk(key)
                yield from walk(value)
        elif isinstance(node, SequenceNode):
            for item in node.value:
                yield from walk(item)

    for document in parsed.documents:
        yield from walk(document)


def find(parsed: ParsedFile, value: str) -> ScalarNode:
    found = [node for node in scalars(parsed) if node.value == value]
    assert len(found) == 1, f"{value!r} found {len(found)} times"
    return found[0]


def edit(text: str, changes: dict[str, str], *, parser: str = "auto") -> str:
    """Edit the scalars whose current values are the keys of ``changes`` (each unique in the file)."""
    parsed = parse_yaml(text, filename="t.yaml", parser=parser)  # type: ignore[arg-type]
    edits = [Edit(*scalar_span(find(parsed, old)), new) for old, new in changes.items()]
    return apply_verified(parsed, edits, filename="t.yaml")


def _ruamel(version: tuple[int, int] | None, pure: bool) -> Callable[[str], Any]:
    def load(text: str) -> Any:
        reader = YAML(typ="safe", pure=pure)
        if version is not None:
            reader.version = version
        return reader.load(text)

    return load


READERS: dict[str, Callable[[str], Any]] = {
    "ruamel-libyaml": _ruamel(None, pure=False),
    "ruamel-pure-1.2": _ruamel(None, pure=True),
    "ruamel-pure-1.1": _ruamel((1, 1), pure=True),
    "pyyaml-1.1": lambda text: pyyaml.load(text, Loader=pyyaml.SafeLoader),
}
if hasattr(pyyaml, "CSafeLoader"):
    READERS["pyyaml-libyaml"] = lambda text: pyyaml.load(text, Loader=pyyaml.CSafeLoader)


def assert_reads_back(rendered: str, value: str) -> None:
    for name, load in READERS.items():
        for document in (f"k: {rendered}\n", f"- {rendered}\n", f"{{k: {rendered}}}\n"):
            if (
                document.startswith("{")
                and not rendered.startswith(('"', "'"))
                and ("?" in rendered or ":" in rendered)
            ):
                continue  # libyaml ends flow plain scalars at ":" and "?"; apply_verified quotes those
            loaded = load(document)
            got = loaded[0] if isinstance(loaded, list) else loaded["k"]
            assert got == value and isinstance(got, str), (name, document, got)


# ------------------------------------------------------------------------------------- render_scalar

DIGEST = "sha256:" + "0123456789abcdef" * 4

# (original source text, new value, expected rendering) — plain kept where it reads as the same string.
PLAIN_KEPT = [
    "nginx",
    "nginx:1.10",
    "1.2.3",
    "v1.10",
    "1.10-alpine",
    "1.2.3-rc.1+build.5",
    "registry.example.com:5000/team/app:1.0",
    f"ghcr.io/org/repo@{DIGEST}",
    f"nginx:1.25.3@{DIGEST}",
    "localhost:5000/app",
    "a#b",
    "a:b",
    "x y",
    "latest",
    "CONTAINER_IMAGES_TAG",
    "yes-please",
    "no1",
    "ON1",
    "nano",
    "inf",
    "nan",
    "Infinity",
    "2024-01-01-abc",
    "20240101-abc",
    "1e3f",
    "sha-1e3f",
    "0x1G",
    "0b102",
    "1.2e",
    "ffff",
    "Null-ish",
    "café:1",
    "+",
    "a~",
    "a%b",
    "a@b",
    "a!b&c*d",
    "a|b>c",
    "a'b\"c",
    "a-",
    "a?",
]

# Values that some YAML 1.1 or 1.2 reader takes for a number, boolean, null or timestamp.
NON_STRING = [
    "1", "12", "0", "00", "-1", "+1", "1.9", "1.10", "1.0", "10.0", "0.1", "1.", ".5", "+.5", "-.5", "._5",
    "0362525", "0777", "08", "09", "1_000", "1__0", "1_0.5",
    "1e3", "1E3", "1e+3", "1.5e-3", "-1e3", "+1.2E10",
    "0x1F", "0X1f", "0x_1", "-0x1", "0o17", "0O17", "0b101", "0B1_0", "+0b1", "0x1p-2", "0x1.8p1",
    "1:20", "190:20:30", "-1:20", "1:20.5",
    ".inf", ".Inf", ".INF", "+.inf", "-.inf", ".nan", ".NaN", ".NAN", "+inf", "-Infinity", "+NaN", "-nan",
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False",
    "FALSE", "on", "On", "ON", "off", "Off", "OFF",
    "~", "null", "Null", "NULL", "=", "<<",
    "2024-01-01", "2024-1-2", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5",
    "2001-12-15T02:59:43.1Z", "2001-12-15 2:59:43.10", "2024-01-01T10:00:00Z",
]  # fmt: skip

# Values that cannot be plain for syntax reasons.
NOT_PLAIN = [
    "", " a", "a ", "a: b", "a:", "a #b", "a\tb", "a\nb", "a\rb", "a\x85b", "a\u2028b", "a\ufeffb",
    "-x", "- x", "-", "--", "---", "--- x", "...", "...x", "?x", "? x", ":x", ",x", "a,b", "[x", "a[b", "x]",
    "{x", "a}b", "#x", "&x", "*x", "!x", "|x", ">x", "'x", '"x', "%x", "@x", "`x", "\x00", "\x7f", "a\x1bb",
]  # fmt: skip


@pytest.mark.parametrize("value", PLAIN_KEPT)
def test_plain_stays_plain(value: str) -> None:
    assert not plain_needs_quotes(value)
    assert render_scalar("nginx:1.9", value) == value
    assert_reads_back(value, value)


@pytest.mark.parametrize("value", NON_STRING + NOT_PLAIN)
def test_plain_is_double_quoted_when_it_would_not_read_as_the_string(value: str) -> None:
    assert plain_needs_quotes(value)
    rendered = render_scalar("1.9", value)
    assert rendered.startswith('"') and rendered.endswith('"')
    assert_reads_back(rendered, value)


@pytest.mark.filterwarnings("ignore::ruamel.yaml.error.MantissaNoDotYAML1_1Warning")
@pytest.mark.parametrize("value", NON_STRING)
def test_non_string_vectors_are_really_non_strings_somewhere(value: str) -> None:
    # Guards the vector table itself: each value is read as a non-string by at least one reader, or is a
    # spelling Go's YAML libraries (kubectl, kustomize, Flux) read as a number.
    go_only = {"0O17", "0B1_0", "0X1f", "0x1p-2", "0x1.8p1", "+inf", "-Infinity", "+NaN", "-nan", "2024-1-2"}
    types = set()
    for name, load in READERS.items():
        try:
            types.add((name, type(load(f"k: {value}\n")["k"]).__name__))
        except Exception:  # a reader that resolves a timestamp it cannot construct: not a string either
            types.add((name, "error"))
    assert (value in go_only) != any(kind != "str" for _, kind in types), types


SINGLE = [
    ("'x'", "nginx:1.10", "'nginx:1.10'"),
    ("'1.9'", "1.10", "'1.10'"),
    ("'x'", "it's", "'it''s'"),
    ("'x'", "''", "''''''"),
    ("'x'", "", "''"),
    ("'x'", " a ", "' a '"),
    ("'x'", 'a"b\\c', "'a\"b\\c'"),
    ("'x'", "a: b #c", "'a: b #c'"),
    ("'x'", "café ✓ 🐳", "'café ✓ 🐳'"),
    ("'multi\n  line'", "one", "'one'"),
    # single quotes have no escapes: a line break or control character needs double quotes
    ("'x'", "a\nb", '"a\\nb"'),
    ("'x'", "a\tb", '"a\\tb"'),
    ("'x'", "a\x00b", '"a\\0b"'),
]

DOUBLE = [
    ('"x"', "nginx:1.10", '"nginx:1.10"'),
    ('"1.9"', "1.10", '"1.10"'),
    ('"x"', "", '""'),
    ('"x"', 'a"b', '"a\\"b"'),
    ('"x"', "a\\b", '"a\\\\b"'),
    ('"x"', "it's", '"it\'s"'),
    ('"x"', "café ✓ 🐳", '"café ✓ 🐳"'),
    ('"x"', "\x00\x07\x08\t\n\x0b\x0c\r\x1b", '"\\0\\a\\b\\t\\n\\v\\f\\r\\e"'),
    ('"x"', "\x01\x7f\x9f", '"\\x01\\x7f\\x9f"'),
    ('"x"', "\x85\u2028\u2029", '"\\N\\L\\P"'),
    ('"x"', "\ufeff\ufffe", '"\\ufeff\\ufffe"'),
    ('"x"', "\xa0", '"\xa0"'),
    ('"a\\tb"', "one", '"one"'),
]


@pytest.mark.parametrize(("original", "value", "expected"), SINGLE + DOUBLE)
def test_quoted_styles_are_kept_with_escapes(original: str, value: str, expected: str) -> None:
    rendered = render_scalar(original, value)
    assert rendered == expected
    assert_reads_back(rendered, value)


@pytest.mark.parametrize("original", ["|\n  image: x:1\n", "|-\n  x", ">\n  x\n", ">+\n  x", "|2\n   x"])
def test_block_scalars_are_refused(original: str) -> None:
    with pytest.raises(YamlEditError, match="block scalar"):
        render_scalar(original, "nginx:1.10")


@pytest.mark.parametrize("original", ["*alias", "&anchor x", "!!str x", ""])
def test_text_that_is_not_a_scalar_is_refused(original: str) -> None:
    with pytest.raises(YamlEditError, match="not the text of a scalar"):
        render_scalar(original, "nginx:1.10")


# ----------------------------------------------------------------------------------------- parse_yaml


@pytest.mark.parametrize("parser", PARSERS)
def test_spans_marks_and_styles(parser: str) -> None:
    text = (
        "\ufeff# banner\r\n"
        "a: plain # c\r\n"
        "b: 'single'\r\n"
        'c: "double"\r\n'
        "d: &anchor !!str  tagged\r\n"
        "e: &anchor2\r\n"
        "  # between the anchor and its scalar\r\n"
        "  'on the next line'\r\n"
        "f: [flow, {g: 'x'}]\r\n"
        "h: |\r\n"
        "  block\r\n"
        "i: 🐳 # a character outside the BMP before later spans\r\n"
        "j: after\r\n"
    )
    parsed = parse_yaml(text, filename="t.yaml", parser=parser)  # type: ignore[arg-type]
    assert parsed.parser == parser
    assert parsed.text is text
    expected = {
        "plain": ("plain", 1, None),
        "single": ("'single'", 2, "'"),
        "double": ('"double"', 3, '"'),
        "tagged": ("tagged", 4, None),
        "on the next line": ("'on the next line'", 7, "'"),
        "flow": ("flow", 8, None),
        "x": ("'x'", 8, "'"),
        "block\n": ("|\r\n  block\r\n", 9, "|"),
        "🐳": ("🐳", 11, None),
        "after": ("after", 12, None),
    }
    for value, (source, line, style) in expected.items():
        node = find(parsed, value)
        start, end = scalar_span(node)
        assert text[start:end] == source
        assert node.start_mark.line == line
        assert (node.style or None) == style


@pytest.mark.parametrize("parser", PARSERS)
def test_documents_and_null_documents(parser: str) -> None:
    text = "# banner\n---\na: 1\n...\n---\n...\n--- ~\n---\nb: 2\n--- null\n---\n- x\n"
    parsed = parse_yaml(text, filename="t.yaml", parser=parser)  # type: ignore[arg-type]
    assert [type(doc).__name__ for doc in parsed.documents] == ["MappingNode", "MappingNode", "SequenceNode"]
    assert parse_yaml("", filename="t.yaml").documents == []
    assert parse_yaml("# only a comment\n", filename="t.yaml").documents == []


def test_tags_are_not_resolved_implicitly() -> None:
    for parser in PARSERS:
        parsed = parse_yaml("a: 1.10\nb: !!int 3\nc: !custom x\n", filename="t.yaml", parser=parser)  # type: ignore[arg-type]
        assert find(parsed, "1.10").tag == "tag:yaml.org,2002:str"
        assert find(parsed, "3").tag == "tag:yaml.org,2002:int"
        assert find(parsed, "x").tag == "!custom"


def test_libyaml_rejects_colons_in_flow_plain_scalars_and_the_pure_parser_takes_over() -> None:
    text = "containers: [{name: a, image: nginx:1.0}]\n"
    with pytest.raises(YamlParseError):
        parse_yaml(text, filename="t.yaml", parser="c")
    parsed = parse_yaml(text, filename="t.yaml")
    assert parsed.parser == "pure"
    assert find(parsed, "nginx:1.0").start_mark.index == text.index("nginx:1.0")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a: 1\nb: [1, 2\nc: 3\n", 3, "not valid YAML"),
        ("a:\n  b: 1\n c: 2\n", 3, "not valid YAML"),
        ("a: b: c\n", 1, "mapping values are not allowed"),
        ("a: 1\n\tb: 2\n", 2, "not valid YAML"),
        ("a: 'unterminated\n", 2, "not valid YAML"),
        ("a: *nowhere\n", 1, "undefined alias"),
        ("a: 1\nb: 2\na: 3\n", 3, "duplicate mapping key 'a'"),
        ("x:\n  - {k: 1, k: 2}\n", 2, "duplicate mapping key 'k'"),
        ("a: &x [*x]\n", 1, "recursive alias"),
        ("a: 1\nb: \x00\n", 2, "character U\\+0000 is not allowed"),
        # A Helm template: `{{ .Values.x }}` happens to be a flow mapping, `{{- include` is not YAML.
        (
            'spec:\n  replicas: {{ .Values.replicas }}\n  template:\n{{- include "x" . | nindent 4 }}\n',
            5,
            "not valid YAML",
        ),
    ],
)
def test_parse_errors_name_the_file_and_line(text: str, line: int, message: str) -> None:
    for parser in ("auto", *PARSERS):
        with pytest.raises(YamlParseError, match=message) as caught:
            parse_yaml(text, filename="apps/web.yaml", parser=parser)  # type: ignore[arg-type]
        assert caught.value.filename == "apps/web.yaml"
        assert caught.value.line == line
        assert str(caught.value).startswith(f"apps/web.yaml:{line}: ")


def test_merge_keys_may_repeat() -> None:
    text = "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: *a\n  <<: *b\n"
    for parser in PARSERS:
        parse_yaml(text, filename="t.yaml", parser=parser)  # type: ignore[arg-type]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_nesting_is_refused_without_crashing(depth: int) -> None:
    # libyaml's composer recurses on the C stack: 100,000 levels would kill the process.
    text = "a: " + "[" * depth + "]" * depth + "\n"
    for parser in ("auto", *PARSERS):
        with pytest.raises(YamlParseError, match="nesting deeper than"):
            parse_yaml(text, filename="deep.yaml", parser=parser)  # type: ignore[arg-type]
    block = "".join(" " * level + "k:\n" for level in range(MAX_DEPTH + 2))
    with pytest.raises(YamlParseError, match=r"deep.yaml:\d+: refused: nesting"):
        parse_yaml(block, filename="deep.yaml")


def test_nesting_up_to_the_limit_is_accepted() -> None:
    depth = MAX_DEPTH - 2
    parsed = parse_yaml("a: " + "[" * depth + "x" + "]" * depth + "\n", filename="t.yaml")
    assert find(parsed, "x").value == "x"


def test_alias_bombs_are_refused() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 9):
        aliases = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    bomb = "\n".join(lines) + "\n"
    for parser in PARSERS:
        with pytest.raises(YamlParseError, match="alias references"):
            parse_yaml(bomb, filename="bomb.yaml", parser=parser)  # type: ignore[arg-type]
    many = "a: &a x\nb: [" + ", ".join(["*a"] * (yamledit.MAX_ALIASES + 1)) + "]\n"
    with pytest.raises(YamlParseError, match="alias references"):
        parse_yaml(many, filename="many.yaml")


def test_size_cap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(yamledit, "MAX_YAML_CHARS", 100)
    with pytest.raises(YamlParseError, match=r"big.yaml: refused: 101 characters"):
        parse_yaml("#" * 101, filename="big.yaml")
    path = tmp_path / "big.yaml"
    path.write_text("#" * 101)
    with pytest.raises(YamlEditError, match="101 bytes is over"):
        read_text(path)


def test_shared_nodes_are_reported() -> None:
    text = (
        "defaults: &defaults\n"
        "  image: &img nginx:1.9\n"
        "  pullPolicy: IfNotPresent\n"
        "web:\n"
        "  <<: *defaults\n"
        "sidecar:\n"
        "  image: *img\n"
        "own:\n"
        "  image: &unused redis:7\n"
    )
    for parser in PARSERS:
        parsed = parse_yaml(text, filename="t.yaml", parser=parser)  # type: ignore[arg-type]
        assert parsed.is_shared(find(parsed, "nginx:1.9"))
        assert parsed.is_shared(find(parsed, "IfNotPresent"))
        assert not parsed.is_shared(find(parsed, "redis:7"))
        assert not parsed.is_shared(find(parsed, "web"))
        assert not parse_yaml("a: nginx\n", filename="t.yaml").shared


# ------------------------------------------------------------------------------------- golden edits

GOLDEN: list[tuple[str, str, dict[str, str], str]] = [
    (
        "comments-blank-lines-sequences",
        "# Banner comment before the first document marker\n"
        "#   with an indented second line\n"
        "\n"
        "---\n"
        "# leading comment\n"
        "apiVersion: apps/v1   # trailing\n"
        "kind: Deployment\n"
        "metadata:\n"
        "  name: web   # name\n"
        "\n"
        "\n"
        "spec:\n"
        "  template:\n"
        "    spec:\n"
        "      containers:\n"
        "        # before the first container\n"
        "        - name: web # eol\n"
        '          image: nginx:1.9 # {"$imagepolicy": "flux-system:web"}\n'
        "          # after image\n"
        "\n"
        "        - name: side\n"
        "          image: 'busybox:1.36'    # single\n"
        "      initContainers:\n"
        "      - name: init   # zero-indented sequence\n"
        '        image: "alpine:3.18"  # double\n'
        "...\n"
        "# trailing comment after the document end\n",
        {"nginx:1.9": "nginx:1.10", "busybox:1.36": "busybox:1.37", "alpine:3.18": "alpine:3.19"},
        "# Banner comment before the first document marker\n"
        "#   with an indented second line\n"
        "\n"
        "---\n"
        "# leading comment\n"
        "apiVersion: apps/v1   # trailing\n"
        "kind: Deployment\n"
        "metadata:\n"
        "  name: web   # name\n"
        "\n"
        "\n"
        "spec:\n"
        "  template:\n"
        "    spec:\n"
        "      containers:\n"
        "        # before the first container\n"
        "        - name: web # eol\n"
        '          image: nginx:1.10 # {"$imagepolicy": "flux-system:web"}\n'
        "          # after image\n"
        "\n"
        "        - name: side\n"
        "          image: 'busybox:1.37'    # single\n"
        "      initContainers:\n"
        "      - name: init   # zero-indented sequence\n"
        '        image: "alpine:3.19"  # double\n'
        "...\n"
        "# trailing comment after the document end\n",
    ),
    (
        "flow-collections",
        "spec:\n"
        "  containers: [{name: a, image: nginx}, {name: b, image: 'redis:7.0'}, {name: c, image: \"x:1\"}]\n"
        "  sidecars: {first: {image: envoy:v1.27}}\n"
        "images: [memcached, quay.io/org/app:1.0]\n",
        {
            "nginx": "nginx:1.25",
            "redis:7.0": "redis:7.2",
            "x:1": "x:2",
            "envoy:v1.27": "envoy:v1.28",
            "memcached": "memcached:1.6",
            "quay.io/org/app:1.0": "quay.io/org/app:1.1",
        },
        "spec:\n"
        "  containers: [{name: a, image: \"nginx:1.25\"}, {name: b, image: 'redis:7.2'},"
        ' {name: c, image: "x:2"}]\n'
        "  sidecars: {first: {image: envoy:v1.28}}\n"
        'images: ["memcached:1.6", quay.io/org/app:1.1]\n',
    ),
    (
        "crlf-bom-no-final-newline-tabs-in-comments",
        "\ufeff# BOM, CRLF\tand tabs\r\n"
        "kind: Pod # tab\tin the comment\r\n"
        "spec:\r\n"
        "  containers:\r\n"
        "  - name: app\r\n"
        "    image: ghcr.io/org/app:v1.2.3 #\ttabs\tin\tcomment\t\r\n"
        '    args: ["--x"]',
        {"ghcr.io/org/app:v1.2.3": "ghcr.io/org/app:v1.10.0"},
        "\ufeff# BOM, CRLF\tand tabs\r\n"
        "kind: Pod # tab\tin the comment\r\n"
        "spec:\r\n"
        "  containers:\r\n"
        "  - name: app\r\n"
        "    image: ghcr.io/org/app:v1.10.0 #\ttabs\tin\tcomment\t\r\n"
        '    args: ["--x"]',
    ),
    (
        "documents-and-block-scalar",
        "--- # first\n"
        "kind: ConfigMap\n"
        "data:\n"
        "  script: |\n"
        "    image: x:1\n"
        "    echo done\n"
        "  folded: >-\n"
        "    image: x:1\n"
        "...\n"
        "---\n"
        "kind: Pod\n"
        "spec:\n"
        "  containers:\n"
        "  - image: x:1\n"
        "...\n",
        {"x:1": "x:2"},
        "--- # first\n"
        "kind: ConfigMap\n"
        "data:\n"
        "  script: |\n"
        "    image: x:1\n"
        "    echo done\n"
        "  folded: >-\n"
        "    image: x:1\n"
        "...\n"
        "---\n"
        "kind: Pod\n"
        "spec:\n"
        "  containers:\n"
        "  - image: x:2\n"
        "...\n",
    ),
    (
        "anchors-and-aliases",
        "defaults: &defaults\n"
        "  image: &img nginx:1.9   # anchored\n"
        "  pullPolicy: IfNotPresent\n"
        "web:\n"
        "  <<: *defaults\n"
        "sidecar:\n"
        "  image: *img\n"
        "tagged: !!str &t 'v1'\n",
        {"nginx:1.9": "nginx:1.10", "v1": "v2"},
        "defaults: &defaults\n"
        "  image: &img nginx:1.10   # anchored\n"
        "  pullPolicy: IfNotPresent\n"
        "web:\n"
        "  <<: *defaults\n"
        "sidecar:\n"
        "  image: *img\n"
        "tagged: !!str &t 'v2'\n",
    ),
    (
        "numeric-looking-tags",
        "images:\n"
        "- name: app\n"
        "  newTag: 1.9\n"
        "- name: other\n"
        "  newTag: '1.9.1'\n"
        "- name: third\n"
        '  newTag: "v1"\n'
        "- name: fourth\n"
        "  newTag: latest\n"
        "- name: fifth\n"
        "  newTag: 2023.01\n",
        {"1.9": "1.10", "1.9.1": "1.10", "v1": "2024-01-01", "latest": "0362525", "2023.01": "2024.02.1"},
        "images:\n"
        "- name: app\n"
        '  newTag: "1.10"\n'
        "- name: other\n"
        "  newTag: '1.10'\n"
        "- name: third\n"
        '  newTag: "2024-01-01"\n'
        "- name: fourth\n"
        '  newTag: "0362525"\n'
        "- name: fifth\n"
        "  newTag: 2024.02.1\n",
    ),
    (
        "digests-and-escapes",
        f"a: nginx:1.9@{DIGEST}\nb: \"quote\\\"d \\\\ x\"\nc: 'it''s'\nd: multi\n  line plain\n",
        {
            f"nginx:1.9@{DIGEST}": f"nginx:1.10@{DIGEST}",
            'quote"d \\ x': 'new"\\',
            "it's": "it's'",
            "multi line plain": "one",
        },
        f"a: nginx:1.10@{DIGEST}\nb: \"new\\\"\\\\\"\nc: 'it''s'''\nd: one\n",
    ),
]


# Originals libyaml rejects (plain scalars with ':' inside flow collections): only the pure parser runs.
LIBYAML_REJECTS = {"flow-collections"}


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    ("name", "original", "changes", "expected"), GOLDEN, ids=[case[0] for case in GOLDEN]
)
def test_golden_edits(name: str, original: str, changes: dict[str, str], expected: str, parser: str) -> None:
    if parser == "c" and name in LIBYAML_REJECTS:
        with pytest.raises(YamlParseError):
            parse_yaml(original, filename="t.yaml", parser="c")
        return
    result = edit(original, changes, parser=parser)
    assert result.encode() == expected.encode()


def test_tab_before_a_comment() -> None:
    # YAML allows it; ruamel's pure scanner does not, libyaml does (so "auto" handles such files).
    text = "kind: Pod\t# tab before the comment\nimage: nginx:1.9\t#\tx\n"
    with pytest.raises(YamlParseError):
        parse_yaml(text, filename="t.yaml", parser="pure")
    assert (
        edit(text, {"nginx:1.9": "nginx:1.10"})
        == "kind: Pod\t# tab before the comment\nimage: nginx:1.10\t#\tx\n"
    )


def test_flow_plain_scalar_gains_quotes_only_when_it_gains_a_colon() -> None:
    text = "a: {image: nginx, other: x:1, q: 'y'}\nb: nginx\n"
    changes = {"nginx": "nginx:1.25", "x:1": "x:2", "y": "y:1"}
    parsed = parse_yaml(text, filename="t.yaml")
    spans = [scalar_span(node) for node in scalars(parsed) if node.value == "nginx"]
    edits = [Edit(*span, "nginx:1.25") for span in spans] + [
        Edit(*scalar_span(find(parsed, old)), new) for old, new in changes.items() if old != "nginx"
    ]
    expected = "a: {image: \"nginx:1.25\", other: x:2, q: 'y:1'}\nb: nginx:1.25\n"
    assert apply_verified(parsed, edits, filename="t.yaml") == expected
    assert parse_yaml(expected, filename="t.yaml").parser == "pure"  # x:2 was there before: style kept
    assert apply_edits(text, edits, filename="t.yaml") == expected  # what a dry-run diff shows


def test_only_the_spans_change() -> None:
    text = "a: nginx:1.9 # x\nb: [redis:7]\n"
    parsed = parse_yaml(text, filename="t.yaml")
    first, second = find(parsed, "nginx:1.9"), find(parsed, "redis:7")
    edits = [Edit(*scalar_span(second), "redis"), Edit(*scalar_span(first), "nginx")]
    assert apply_edits(text, edits, filename="t.yaml") == "a: nginx # x\nb: [redis]\n"


def test_edit_that_changes_nothing() -> None:
    text = "a: nginx:1.9\n"
    parsed = parse_yaml(text, filename="t.yaml")
    assert (
        apply_verified(
            parsed, [Edit(*scalar_span(find(parsed, "nginx:1.9")), "nginx:1.9")], filename="t.yaml"
        )
        == text
    )
    assert apply_verified(parsed, [], filename="t.yaml") == text


REFUSAL_TEXT = "a: nginx:1.9\nscript: |\n  image: x:1\nb: *alias\n"
IMAGE = REFUSAL_TEXT.index("nginx:1.9")
BLOCK = REFUSAL_TEXT.index("|")
ALIAS = REFUSAL_TEXT.index("*alias")


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ([Edit(IMAGE, IMAGE + 9, "x"), Edit(IMAGE + 2, IMAGE + 5, "y")], r"t.yaml:1: overlapping edits"),
        ([Edit(IMAGE, IMAGE + 9, "x"), Edit(IMAGE, IMAGE + 9, "x")], r"t.yaml:1: overlapping edits"),
        ([Edit(IMAGE, IMAGE, "x")], "empty or outside"),
        ([Edit(-1, 2, "x")], "empty or outside"),
        ([Edit(30, 400, "x")], "empty or outside"),
        (
            [Edit(IMAGE, IMAGE + 9, "x", original="nginx:1.8")],
            r"t.yaml:1: expected 'nginx:1.8' .* file changed",
        ),
        ([Edit(BLOCK, BLOCK + 8, "x")], r"t.yaml:2: .*block scalar"),
        ([Edit(ALIAS, ALIAS + 6, "x")], r"t.yaml:4: .*not the text of a scalar"),
    ],
)
def test_apply_edits_refusals(edits: list[Edit], message: str) -> None:
    with pytest.raises(YamlEditError, match=message):
        apply_edits(REFUSAL_TEXT, edits, filename="t.yaml")


def test_verification_refuses_spans_that_are_not_one_scalar() -> None:
    text = "a: [x, y]\nb: c\n"
    parsed = parse_yaml(text, filename="t.yaml")
    cases = [
        ([Edit(text.index("x"), text.index("y") + 1, "z")], r"t.yaml:1: refused: .*changed its shape"),
        ([Edit(text.index("["), text.index("]") + 1, "z")], r"t.yaml:1: refused: .*changed its kind"),
        (
            [Edit(text.index("b:"), text.index("b:") + 2, "bb")],
            r"t.yaml: refused: the edited text would not parse",
        ),
        ([Edit(text.index("c"), len(text), "c")], r"t.yaml:2: refused: .*not the span of a scalar"),
    ]
    for edits, message in cases:
        with pytest.raises(YamlEditError, match=message):
            apply_verified(parsed, edits, filename="t.yaml")
    # A key is a scalar too: renaming one is a legitimate edit.
    assert apply_verified(parsed, [Edit(0, 1, "a: b")], filename="t.yaml") == '"a: b": [x, y]\nb: c\n'


def test_verification_refuses_an_edit_of_part_of_a_scalar() -> None:
    text = "a: nginx:1.9\nb: nginx\n"
    parsed = parse_yaml(text, filename="t.yaml")
    start = text.index("1.9")
    with pytest.raises(YamlEditError, match=r"t.yaml:1: refused: .*not the span of a scalar|changed"):
        apply_verified(parsed, [Edit(start, start + 3, "1.10")], filename="t.yaml")


def test_block_scalar_edit_is_refused_and_its_content_untouched() -> None:
    text = "data:\n  script: |\n    image: x:1\nimage: x:1\n"
    parsed = parse_yaml(text, filename="t.yaml")
    block = find(parsed, "image: x:1\n")
    with pytest.raises(YamlEditError, match="block scalar"):
        apply_verified(parsed, [Edit(*scalar_span(block), "y")], filename="t.yaml")
    assert edit(text, {"x:1": "x:2"}) == "data:\n  script: |\n    image: x:1\nimage: x:2\n"


# ----------------------------------------------------------------------------------------------- I/O


def test_read_text_keeps_crlf_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_bytes(b"\xef\xbb\xbfa: 1\r\nb: 2\r")
    assert read_text(path) == "\ufeffa: 1\r\nb: 2\r"


def test_read_text_refuses_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(YamlEditError, match=r"latin1.yaml:2: not UTF-8 \(byte offset 11\)"):
        read_text(path)
    with pytest.raises(YamlEditError, match="cannot read"):
        read_text(tmp_path / "missing.yaml")


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755])
def test_write_atomic_keeps_mode_and_bytes(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "a.yaml"
    path.write_bytes(b"old\n")
    path.chmod(mode)
    write_atomic(path, "\ufeffa: 1\r\nb: 2", root=tmp_path)
    assert path.read_bytes() == b"\xef\xbb\xbfa: 1\r\nb: 2"
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert sorted(os.listdir(tmp_path)) == ["a.yaml"]


def test_write_atomic_creates_a_new_file_with_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "new.yaml", "a: 1\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.yaml").stat().st_mode) == 0o640


def test_write_atomic_refuses_symlinks_out_of_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "repo", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    target = outside / "secret.yaml"
    target.write_text("a: 1\n")
    (root / "link.yaml").symlink_to(target)
    (root / "dirlink").symlink_to(outside, target_is_directory=True)
    for path in (
        root / "link.yaml",
        root / "dirlink" / "secret.yaml",
        root / ".." / "outside" / "secret.yaml",
    ):
        with pytest.raises(YamlEditError, match="outside"):
            write_atomic(path, "a: 2\n", root=root)
        with pytest.raises(YamlEditError, match="outside"):
            edit_file(path, [Edit(3, 4, "2")], root=root)
    assert target.read_text() == "a: 1\n"
    assert sorted(os.listdir(outside)) == ["secret.yaml"]


def test_write_atomic_follows_symlinks_inside_root(tmp_path: Path) -> None:
    (tmp_path / "real.yaml").write_text("a: 1\n")
    (tmp_path / "link.yaml").symlink_to("real.yaml")
    write_atomic(tmp_path / "link.yaml", "a: 2\n", root=tmp_path)
    assert (tmp_path / "link.yaml").is_symlink()
    assert (tmp_path / "real.yaml").read_text() == "a: 2\n"


def test_write_atomic_leaves_no_temp_file_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("a: 1\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(YamlEditError, match=r"a\.yaml: cannot write: Input/output error"):
        write_atomic(path, "a: 2\n", root=tmp_path)
    monkeypatch.undo()
    assert path.read_text() == "a: 1\n"
    assert sorted(os.listdir(tmp_path)) == ["a.yaml"]

    directory = tmp_path / "dir.yaml"
    directory.mkdir()
    with pytest.raises(YamlEditError, match="cannot write"):
        write_atomic(directory, "a: 2\n", root=tmp_path)
    with pytest.raises(YamlEditError, match="cannot be encoded"):
        write_atomic(path, "a: \udc80\n", root=tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["a.yaml", "dir.yaml"]
    assert os.listdir(directory) == []


def test_write_atomic_where_no_temp_file_can_be_created(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(YamlEditError, match="cannot write"):
        write_atomic(tmp_path / "plain-file" / "a.yaml", "a: 2\n", root=tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["plain-file"]


def test_edit_file_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "apps" / "web.yaml"
    path.parent.mkdir()
    original = b"# c\r\nspec:\r\n  image: nginx:1.9 # keep\r\n"
    path.write_bytes(original)
    path.chmod(0o640)
    text = read_text(path)
    span = scalar_span(find(parse_yaml(text, filename="x"), "nginx:1.9"))
    edit_file(path, [Edit(*span, "nginx:1.10", original="nginx:1.9")], root=tmp_path)
    assert path.read_bytes() == b"# c\r\nspec:\r\n  image: nginx:1.10 # keep\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640

    # A stale edit (the file changed since the plan) is refused and nothing is written.
    before = path.read_bytes()
    with pytest.raises(YamlEditError, match=r"apps/web.yaml:3: expected 'nginx:1.9'"):
        edit_file(path, [Edit(*span, "nginx:1.11", original="nginx:1.9")], root=tmp_path)
    # A span that is not a scalar fails verification; nothing is written.
    with pytest.raises(YamlEditError, match="refused"):
        edit_file(path, [Edit(0, 5, "x")], root=tmp_path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["web.yaml"]


def test_edit_file_reports_a_broken_file_and_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("a: [1\nimage: nginx:1.9\n")
    with pytest.raises(YamlParseError, match=r"^broken.yaml:\d+: not valid YAML"):
        edit_file(path, [Edit(13, 22, "nginx:1.10")], root=tmp_path)
    assert path.read_text() == "a: [1\nimage: nginx:1.9\n"
