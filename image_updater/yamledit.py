"""Byte-exact YAML edits on text: parse with positions, replace only the characters of a scalar, verify.

Nothing is ever re-serialised. A text is *composed* (ruamel.yaml node trees with marks, never constructed
into Python objects), the caller picks scalar nodes, and ``apply_edits`` replaces exactly their character
spans in the original text. Comments, blank lines, indentation, key order, flow style, anchors, CRLF, a BOM
and a missing final newline therefore survive byte for byte: they are all outside the spans.

Parsing uses the C parser of ``ruamel.yaml.clib`` (libyaml) with a minimal composer hook and falls back to
the pure-Python parser when libyaml rejects a file (it refuses, for instance, ``{image: nginx:1.0}``, which
YAML 1.2 allows). Implicit tag resolution is skipped on purpose: it costs a Python call and a regex match
per scalar and discovery only needs the text; ``node.tag`` is the explicit tag or the default str/seq/map
tag. Use ``plain_needs_quotes`` to ask whether a plain scalar would read as a non-string.

Typical use (discovery finds the nodes, planning decides the values)::

    parsed = parse_yaml(text, filename="apps/web.yaml")
    node = ...  # a ScalarNode found in parsed.documents; check parsed.is_shared(node) for aliases
    edits = [Edit(*scalar_span(node), "nginx:1.27", original=node_text)]
    new_text = apply_verified(parsed, edits, filename="apps/web.yaml")  # what a diff shows and a write writes

Safety net: ``apply_verified`` re-parses the new text and checks that the composed trees are identical
except for the edited scalars, which must carry exactly the new values; it returns nothing otherwise.

A value with no scalar yet is an *insertion* (``Edit(offset, offset, value, insert=Insertion(...))``):
``key_insertion`` adds a key to a mapping (kustomize ``newTag``), ``item_insertion`` appends to a sequence
(an override file's entry), and a new file is an insertion into the empty text. They are verified the same
way: the parent gains exactly that key or those items, holding the new value, and nothing else changes.

This module is pure: text in, text out. Reading files, atomic writes and ``edit_file`` (read, apply,
verify, write) are in ``image_updater.worktree``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, StreamMark
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import BaseResolver, VersionedResolver

from image_updater.errors import YamlEditError, YamlParseError, _TooDeep, _TooMany

_CParser: Any
try:  # libyaml bindings; absent on PyPy or when the wheel could not be built
    import ruamel.yaml.cyaml

    _CParser = getattr(ruamel.yaml.cyaml, "CParser")  # noqa: B009 - the module does not re-export it
except ImportError:  # pragma: no cover - the test environment has the C extension
    _CParser = None

__all__ = [
    "MAX_ALIASES",
    "MAX_ALIAS_EXPANSION",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_PURE_NODES",
    "MAX_YAML_CHARS",
    "Edit",
    "Insertion",
    "ParsedFile",
    "YamlParseError",
    "apply_edits",
    "apply_verified",
    "item_insertion",
    "key_insertion",
    "parse_yaml",
    "plain_needs_quotes",
    "render_scalar",
    "scalar_span",
]

#: Files larger than this (in characters) are refused before parsing: a GitOps manifest is never this big,
#: and composing costs memory proportional to the size.
MAX_YAML_CHARS = 10 * 1024 * 1024
#: Deepest nesting accepted. libyaml's composer recurses on the C stack (about 100,000 levels crash the
#: process) and callers walk the trees recursively; real manifests (CRD schemas included) stay below 60.
MAX_DEPTH = 256
#: Most nodes composed for one file (every scalar, sequence and mapping, over all its documents). Composing
#: costs about 200 bytes and 7 µs per node: a 10 MB flow list ``[1,2,3,...]`` (5 million nodes, under the size
#: cap) would take about 1 GB and half a minute, and is refused after this many (about 100 MB at most).
#: Large real files stay well below it: a 2 MB Helm values file has about 100,000 nodes, a stream of 5,000
#: small manifests about 150,000.
MAX_NODES = 500_000
#: The same for the pure-Python parser (used when libyaml rejects a file), which takes about 100 µs per node.
MAX_PURE_NODES = 100_000
#: More alias references than this in one file is refused (an alias "bomb" or a generated monster).
MAX_ALIASES = 10_000
#: Refused when expanding every alias would visit this many nodes beyond the distinct ones: a composed tree
#: shares aliased nodes, but every consumer that walks it naively would expand them (billion laughs).
MAX_ALIAS_EXPANSION = 1_000_000

ParserName = Literal["c", "pure"]

_BOM = "\ufeff"
_STR_TAG = BaseResolver.DEFAULT_SCALAR_TAG
_SEQ_TAG = BaseResolver.DEFAULT_SEQUENCE_TAG
_MAP_TAG = BaseResolver.DEFAULT_MAPPING_TAG
_NULL_WORDS = frozenset({"", "~", "null", "Null", "NULL"})
_MERGE_KEY = "<<"
# A node property (anchor or tag) can only follow a line start, white space or a flow indicator; anything
# else (`a&b`, `Hello!`) is ordinary text. A false positive costs one extra tree walk, nothing more.
_ANCHOR_RE = re.compile(r"(?:^|[ \t\[{,])&", re.MULTILINE)
_TAG_RE = re.compile(r"(?:^|[ \t\[{,])!", re.MULTILINE)
_LINE_BREAKS = "\r\n\x85\u2028\u2029"
_FLOW_HAZARDS = ":?"


# --------------------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """A YAML file's text and its composed documents.

    ``text`` is the file as decoded (BOM and CRLF included). Marks of every node are character offsets
    into ``text`` (``start_mark.index``, ``end_mark.index``; ``start_mark.line`` is 0-based); for scalars
    with an anchor or tag the start mark points at the scalar itself, after its properties. Documents that
    would load as null (empty, ``~``, ``null``) are dropped. ``parser`` says which parser composed the file.
    ``shared`` holds the ``id()`` of every node reachable along more than one path (an anchored node that
    is aliased, and everything inside it): editing such a node changes every alias, so a target found
    there is "behind an alias".
    """

    text: str
    documents: list[Node]
    parser: ParserName = "c"
    shared: frozenset[int] = field(default=frozenset())

    def is_shared(self, node: Node) -> bool:
        """True when ``node`` is reachable through an alias as well as (or instead of) its own position."""
        return id(node) in self.shared


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace the scalar at ``text[start:end]`` (from ``scalar_span``) with the string ``value``.

    ``value`` is the new scalar value, unquoted; ``render_scalar`` decides how to write it. ``original``,
    when given, is the exact source text the caller saw at that span: the edit is refused if the text has
    changed since (a stale plan must not overwrite the wrong characters).
    """

    start: int
    end: int
    value: str
    original: str | None = None  # for an insertion: the text right before ``start``, checked the same way
    insert: Insertion | None = None  # set: insert at ``start`` (== ``end``) instead of replacing a span


@dataclass(frozen=True, slots=True)
class Insertion:
    """How an insert ``Edit`` (``start == end``) adds a value that has no scalar yet.

    The text written at the offset is ``header`` (once per offset: the first insertion there writes it),
    ``prefix``, the value rendered as a plain scalar (double-quoted when it would not read as a string, or
    in a flow collection when it holds ``:``/``?``), and ``suffix``. Verification: ``parent`` is the
    ``start_mark.index`` of the mapping that gains the key ``key`` (whose value must then read as the new
    value), or of the sequence that gains ``items`` items at its end (the value at ``path`` inside them,
    the first step counting from the first of them), every other node of the tree unchanged; or ``-1`` for
    a new file (the old text is empty): the one new document must hold the value at ``path`` (keys and
    sequence indexes from the root).
    """

    parent: int
    prefix: str
    suffix: str = ""
    key: str | None = None
    path: tuple[str | int, ...] = ()
    header: str = ""
    flow: bool = False
    items: int = 1  # new file: sequence items this insertion writes; the first int in ``path`` counts from
    # the first of them (the insertions before it in the same file wrote the items before)
    rank: int = 0  # insertions at one offset are written in rank order (``newName`` before ``newTag``)


# -------------------------------------------------------------------------------------------- parsing


def _descend(composer: Any, parent: Any) -> None:
    composer._depth += 1
    if composer._depth > MAX_DEPTH:
        raise _TooDeep(parent.start_mark.line if parent is not None else None)
    composer._nodes += 1
    if composer._nodes > MAX_PURE_NODES:
        raise _TooMany(MAX_PURE_NODES)


if _CParser is not None:

    class _CComposer(_CParser):  # type: ignore[misc]
        """libyaml's composer with the cheapest possible resolver hooks (three Python calls per node)."""

        def __init__(self, text: str) -> None:
            _CParser.__init__(self, text)
            self._depth = 0
            self._nodes = 0

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is ScalarNode:
                return _STR_TAG
            return _MAP_TAG if kind is MappingNode else _SEQ_TAG

        def descend_resolver(self, parent: Any, index: Any) -> None:
            # Called for every node, before it is composed: the depth and node budget checks are inlined
            # rather than shared with _PureResolver.
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _TooDeep(parent.start_mark.line if parent is not None else None)
            self._nodes += 1
            if self._nodes > MAX_NODES:
                raise _TooMany(MAX_NODES)

        def ascend_resolver(self) -> None:
            self._depth -= 1


class _PureResolver(VersionedResolver):
    """Same tags as the C path (no implicit resolution) and the same depth bound."""

    def __init__(self, version: Any = None, loader: Any = None, loadumper: Any = None) -> None:
        super().__init__(version=version, loader=loader, loadumper=loadumper)
        self._depth = 0
        self._nodes = 0

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode:
            return _STR_TAG
        return _MAP_TAG if kind is MappingNode else _SEQ_TAG

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        _descend(self, current_node)

    def ascend_resolver(self) -> None:
        self._depth -= 1


def _compose_c(body: str) -> list[Node]:
    composer = _CComposer(body)
    try:
        documents: list[Node] = []
        while composer.check_node():
            documents.append(composer.get_node())
        return documents
    finally:
        composer.dispose()


def _compose_pure(body: str) -> list[Node]:
    yaml = YAML(typ="base", pure=True)
    yaml.Resolver = _PureResolver
    # Our own depth bound applies (in _PureResolver); ruamel's would raise a different error.
    yaml.max_depth = 0
    # A re-used anchor name is legal YAML; ruamel would print a warning for it.
    yaml.composer.warn_double_anchors = False
    return list(yaml.compose_all(body))


def parse_yaml(text: str, *, filename: str, parser: Literal["auto", "c", "pure"] = "auto") -> ParsedFile:
    """Compose every document of ``text``; ``YamlParseError`` (naming file and line) if it does not parse.

    ``parser="auto"`` uses libyaml and falls back to the pure parser when libyaml rejects the text;
    ``"c"``/``"pure"`` force one (for tests and comparisons). Also refused: files over ``MAX_YAML_CHARS``,
    more than ``MAX_NODES`` nodes (``MAX_PURE_NODES`` for the pure parser; checked as each node is met,
    before it is composed), nesting deeper than
    ``MAX_DEPTH``, duplicate mapping keys (Kubernetes tooling rejects them and it is
    ambiguous which one an edit should target), recursive aliases, and alias bombs (``MAX_ALIASES``,
    ``MAX_ALIAS_EXPANSION``).
    """
    if len(text) > MAX_YAML_CHARS:
        raise YamlParseError(
            f"refused: {len(text)} characters is over the {MAX_YAML_CHARS} limit", filename=filename
        )
    # libyaml's marks do not count a BOM while the pure reader's do: parse without it and shift afterwards.
    shift = 1 if text.startswith(_BOM) else 0
    body = text[shift:]
    used: ParserName = "pure"
    documents: list[Node] | None = None
    try:
        if parser != "pure" and _CParser is not None:
            try:
                documents = _compose_c(body)
                used = "c"
            except (_TooDeep, _TooMany):
                raise
            except Exception:
                # Any libyaml failure (its YAML errors, an unencodable character) gets a second opinion
                # from the pure parser, whose message is the one reported.
                if parser == "c":
                    raise
        if documents is None:
            documents = _compose_pure(body)
    except _TooMany as exc:
        which = "" if used == "c" or exc.limit == MAX_NODES else " for the pure-Python parser"
        raise YamlParseError(
            f"refused: more than {exc.limit} YAML nodes (the limit per file{which})", filename=filename
        ) from None
    except _TooDeep as exc:
        line = None if exc.line is None else exc.line + 1
        raise YamlParseError(
            f"refused: nesting deeper than {MAX_DEPTH} levels", filename=filename, line=line
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        if exc.context and exc.problem:
            problem = f"{problem} ({' '.join(str(exc.context).split())})"
        raise YamlParseError(f"not valid YAML: {problem}", filename=filename, line=line) from exc
    except ReaderError as exc:  # a character YAML does not allow anywhere, e.g. NUL or a C1 control
        line = body.count("\n", 0, max(exc.position, 0)) + 1
        raise YamlParseError(
            f"not valid YAML: character {_codepoint(exc.character)} is not allowed",
            filename=filename,
            line=line,
        ) from exc
    except Exception as exc:  # the pure parser on hostile input (RecursionError, ...)
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise YamlParseError(f"not valid YAML: {message}", filename=filename) from exc

    has_anchors = "&" in body and _ANCHOR_RE.search(body) is not None
    shared = _check_tree(documents, filename, may_alias=has_anchors)
    if shift or has_anchors or ("!" in body and _TAG_RE.search(body) is not None):
        _fix_marks(documents, body, shift, filename)
    kept = [doc for doc in documents if not _is_null_document(doc)]
    return ParsedFile(text=text, documents=kept, parser=used, shared=shared)


def _codepoint(character: object) -> str:
    code = character if isinstance(character, int) else ord(str(character)[:1] or "\0")
    return f"U+{code:04X}"


def _is_null_document(node: Node) -> bool:
    return (
        isinstance(node, ScalarNode)
        and not node.style
        and node.value in _NULL_WORDS
        and node.tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:null")
    )


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [item for pair in node.value for item in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _check_duplicate_keys(node: Any, filename: str) -> None:
    seen: set[str] = set()
    for key, _ in node.value:
        if type(key) is ScalarNode:
            value = key.value
            if value in seen and value != _MERGE_KEY:
                line = key.start_mark.line + 1
                raise YamlParseError(f"duplicate mapping key {value!r}", filename=filename, line=line)
            seen.add(value)


def _check_tree(documents: list[Node], filename: str, *, may_alias: bool) -> frozenset[int]:
    """Refuse duplicate keys, recursive aliases and alias bombs; return the ids of shared nodes."""
    if not may_alias:
        # Without anchors every node has exactly one parent: a plain walk, as cheap as it gets.
        stack = list(documents)
        while stack:
            node = stack.pop()
            kind = type(node)
            if kind is MappingNode:
                _check_duplicate_keys(node, filename)
                for key, value in node.value:
                    if type(key) is not ScalarNode:
                        stack.append(key)
                    if type(value) is not ScalarNode:
                        stack.append(value)
            elif kind is SequenceNode:
                stack.extend(child for child in node.value if type(child) is not ScalarNode)
        return frozenset()

    # Depth-first with enter/exit markers: a node still "in progress" when met again is its own ancestor.
    size: dict[int, int] = {}  # id -> nodes visited when expanding it; -1 while in progress
    refs: dict[int, int] = {}
    by_id: dict[int, Node] = {}
    work: list[tuple[Node, bool]] = [(doc, False) for doc in reversed(documents)]
    while work:
        node, leaving = work.pop()
        nid = id(node)
        if leaving:
            size[nid] = 1 + sum(size[id(child)] for child in _children(node))
            continue
        refs[nid] = refs.get(nid, 0) + 1
        if nid in size:
            if size[nid] == -1:
                line = node.start_mark.line + 1
                raise YamlParseError("refused: recursive alias", filename=filename, line=line)
            continue
        by_id[nid] = node
        if isinstance(node, ScalarNode):
            size[nid] = 1
            continue
        if isinstance(node, MappingNode):
            _check_duplicate_keys(node, filename)
        size[nid] = -1
        work.append((node, True))
        work.extend((child, False) for child in reversed(_children(node)))

    aliases = sum(count - 1 for count in refs.values())
    expanded = sum(size[id(doc)] for doc in documents)
    if aliases > MAX_ALIASES or expanded - len(size) > MAX_ALIAS_EXPANSION:
        raise YamlParseError(
            f"refused: {aliases} alias references expanding to {expanded} nodes "
            f"(limits {MAX_ALIASES} aliases, {MAX_ALIAS_EXPANSION} extra nodes)",
            filename=filename,
        )
    shared: set[int] = set()
    pending = [by_id[nid] for nid, count in refs.items() if count > 1]
    while pending:
        node = pending.pop()
        if id(node) not in shared:
            shared.add(id(node))
            pending.extend(_children(node))
    return frozenset(shared)


def _distinct_nodes(documents: list[Node]) -> Iterator[Node]:
    seen: set[int] = set()
    stack = list(documents)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(_children(node))


def _fix_marks(documents: list[Node], body: str, shift: int, filename: str) -> None:
    """Point scalar start marks past anchors/tags and shift every mark past a BOM.

    libyaml's marks are read-only objects, so corrected marks are new ``StreamMark`` objects.
    """
    for node in _distinct_nodes(documents):
        start = node.start_mark
        index, line, column = start.index, start.line, start.column
        if isinstance(node, ScalarNode) and index < len(body) and body[index] in "&!":
            index, line, column = _skip_properties(body, index, line, column)
            if index > node.end_mark.index:  # an empty scalar: nothing follows its properties
                end = node.end_mark
                index, line, column = end.index, end.line, end.column
        if shift or index != start.index:
            node.start_mark = StreamMark(filename, index + shift, line, column)
        if shift:
            end = node.end_mark
            node.end_mark = StreamMark(filename, end.index + shift, end.line, end.column)


def _skip_properties(text: str, index: int, line: int, column: int) -> tuple[int, int, int]:
    """Skip ``&anchor`` / ``!tag`` properties and the space, line breaks and comments after them."""
    n = len(text)
    while index < n and text[index] in "&!":
        if text.startswith("!<", index):
            stop = text.find(">", index)
            stop = n if stop < 0 else stop + 1
        else:
            stop = index + 1
            while stop < n and text[stop] not in " \t,[]{}" and text[stop] not in _LINE_BREAKS:
                stop += 1
        column += stop - index
        index = stop
        while index < n:
            char = text[index]
            if char in " \t":
                index += 1
                column += 1
            elif char in _LINE_BREAKS:
                index += 2 if text.startswith("\r\n", index) else 1
                line += 1
                column = 0
            elif char == "#":
                while index < n and text[index] not in _LINE_BREAKS:
                    index += 1
            else:
                break
    return index, line, column


def scalar_span(node: ScalarNode) -> tuple[int, int]:
    """The character span of a scalar in ``ParsedFile.text``: quotes included, anchor and tag excluded."""
    return node.start_mark.index, node.end_mark.index


# ------------------------------------------------------------------------------------------- rendering

# Every spelling that some YAML reader in the path (YAML 1.1: PyYAML, libyaml, go-yaml v2 as used by
# kubectl; YAML 1.2: ruamel, go-yaml v3 as used by kustomize and Flux) reads as something other than a
# string. Deliberately a superset: a needless pair of quotes is harmless, a tag read as 1.1 is not.
_NON_STRING_RE = re.compile(
    r"""
    ~ | null | Null | NULL
    | y | Y | yes | Yes | YES | n | N | no | No | NO
    | true | True | TRUE | false | False | FALSE | on | On | ON | off | Off | OFF
    | << | =                                                        # YAML 1.1 merge and value keys
    | [-+]? (?: [0-9][0-9_]* (?: \.[0-9_]* )? | \.[0-9_]+ )       # 1, 1.10, 0362525, 1_000, .5, 1.
          (?: [eE][-+]?[0-9]+ )?                                   # 1e3, 1.5E-3
    | [-+]? 0 (?: [bB][01_]+ | [oO][0-7_]+ | [xX][0-9a-fA-F_]+ )   # 0b1, 0o17, 0x1F
    | [-+]? 0[xX] [0-9a-fA-F_]* \.? [0-9a-fA-F_]* [pP][-+]?[0-9]+ # Go hex floats: 0x1p-2
    | [-+]? [0-9][0-9_]* (?: :[0-5]?[0-9] )+ (?: \.[0-9_]* )?      # YAML 1.1 base 60: 1:20, 1:20.5
    | [-+]? \. (?: inf | Inf | INF ) | \. (?: nan | NaN | NAN )
    | [-+] (?i: inf | infinity | nan )                             # Go's ParseFloat after a sign
    | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}                               # timestamps: date, optional time
      (?: (?: [Tt] | [ \t]+ ) [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2} (?: \.[0-9]* )?
          (?: [ \t]* (?: Z | [-+][0-9]{1,2} (?: :?[0-9]{2} )? ) )? )?
    """,
    re.VERBOSE,
)
# Printable characters a plain scalar may hold anywhere (no tab, line break, BOM or flow indicator); the
# position-dependent rules (first character, ": ", " #", document markers) are checked separately.
_PLAIN_CHARS = r"[ !-+\--Z\\^-z|~\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
_PLAIN_FIRST_FORBIDDEN = frozenset("-?:,[]{}#&*!|>'\"%@` ")
# Escapes for double-quoted scalars; other characters outside _PRINTABLE become \x, \u or \U escapes.
_DOUBLE_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\0": "\\0",
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
    "\x1b": "\\e",
    "\x85": "\\N",
    "\u2028": "\\L",
    "\u2029": "\\P",
}
# Characters a quoted scalar can hold literally: printable, no line break (\u2028/\u2029 are), no BOM.
_PRINTABLE = r"[\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
# Both classes with their Unicode ranges cost ~1.7 ms each to compile, at every start; most values (tags,
# digests, names) are ASCII, which their ASCII parts (the same characters below 0x80) decide alone. The
# whole classes are compiled for the first value that is not ASCII.
_PLAIN_ASCII_RE = re.compile(r"[ !-+\--Z\\^-z|~]+")
_PRINTABLE_ASCII_RE = re.compile(r"[\x20-\x7e]*")


@functools.cache
def _unicode_class(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _plain_chars(value: str) -> bool:
    """``value`` is one or more characters a plain scalar may hold anywhere (``_PLAIN_CHARS``)."""
    if value.isascii():
        return _PLAIN_ASCII_RE.fullmatch(value) is not None
    return _unicode_class(_PLAIN_CHARS + "+").fullmatch(value) is not None


def _printable(value: str) -> bool:
    """Every character of ``value`` is one a quoted scalar can hold literally (``_PRINTABLE``)."""
    if value.isascii():
        return _PRINTABLE_ASCII_RE.fullmatch(value) is not None
    return _unicode_class(_PRINTABLE + "*").fullmatch(value) is not None


def plain_needs_quotes(value: str) -> bool:
    """True when ``value`` written as a plain scalar would not read back as exactly this string.

    Either it is not valid as a plain scalar everywhere (empty, leading/trailing space, an indicator
    first, ``: `` or `` #`` inside, flow indicators, control characters) or some YAML 1.1/1.2 reader
    would resolve it to a number, boolean, null or timestamp (``1.10``, ``0362525``, ``1e3``, ``yes``,
    ``2024-01-01``).
    """
    if not value or not _plain_chars(value):
        return True
    if value[0] in _PLAIN_FIRST_FORBIDDEN or value[-1] in " :":
        return True
    if ": " in value or " #" in value or value.startswith("..."):
        return True
    return _NON_STRING_RE.fullmatch(value) is not None


def _double_quoted(value: str) -> str:
    out = []
    for char in value:
        escaped = _DOUBLE_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif _printable(char):
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def render_scalar(original: str, value: str) -> str:
    """How to write ``value`` in place of the scalar whose exact source text is ``original``.

    The original style is kept: ``'...'`` (``'`` doubled), ``"..."`` (``\\`` and ``"`` escaped, control
    characters as escapes), plain stays plain unless ``plain_needs_quotes(value)``, in which case it is
    double-quoted (the convention of Flux and kustomize users). A single-quoted scalar that would have to
    hold a line break or a non-printable character becomes double-quoted (single quotes have no escapes).
    Block scalars (``|``, ``>``), aliases and text starting with an anchor or tag are refused.
    """
    first = original[:1]
    if first in ("|", ">"):
        raise YamlEditError(f"refused to rewrite the block scalar {_clip(original)!r}")
    if first in ("*", "&", "!") or not original:
        raise YamlEditError(f"refused to rewrite {_clip(original)!r}: not the text of a scalar")
    if first == "'":
        if _printable(value):
            return "'" + value.replace("'", "''") + "'"
        return _double_quoted(value)
    if first == '"':
        return _double_quoted(value)
    return _double_quoted(value) if plain_needs_quotes(value) else value


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------- edits


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def apply_edits(text: str, edits: Sequence[Edit], *, filename: str) -> str:
    """Return ``text`` with exactly the spans of ``edits`` replaced by their rendered values.

    Spans must lie inside the text, be non-empty and must not overlap (``YamlEditError`` otherwise, naming
    file and line). Everything outside the spans is copied unchanged. Values are written by
    ``render_scalar``, with one refinement: inside a flow collection, a plain scalar whose new value gains
    a ``:`` (or ``?``) its old text did not have is double-quoted, because libyaml (PyYAML, older Go
    parsers) rejects ``{image: nginx:1.0}``; a file that already holds such a scalar keeps its style. Only
    then is the text parsed, to learn which spans lie inside flow collections.
    """
    return _apply(text, edits, filename=filename, quote=_flow_quotes(text, edits, None, filename))


def _flow_quotes(
    text: str, edits: Sequence[Edit], parsed: ParsedFile | None, filename: str
) -> frozenset[tuple[int, int]]:
    risky = {(e.start, e.end) for e in edits
             if e.insert is None and _new_flow_hazard(text[e.start : e.end], e.value)}
    if not risky:
        return frozenset()
    if parsed is None:
        try:
            parsed = parse_yaml(text, filename=filename)
        except YamlEditError:
            return frozenset()  # nothing to learn; verification refuses such a file anyway
    return _in_flow(parsed, risky)


def _apply(text: str, edits: Sequence[Edit], *, filename: str, quote: frozenset[tuple[int, int]]) -> str:
    ordered = sorted(edits, key=lambda edit: (edit.start, edit.end, edit.insert.rank if edit.insert else 0))
    pieces: list[str] = []
    position = 0
    headers: set[tuple[int, str]] = set()
    for edit in ordered:
        start, end = edit.start, edit.end
        insert = edit.insert
        if insert is not None:
            if not 0 <= start == end <= len(text) or start < position:
                raise YamlEditError(f"{filename}: insertion at {start}..{end} is outside or overlaps")
            # for an insertion, ``original`` is the text just before the offset (its line, up to there)
            if edit.original and text[max(start - len(edit.original), 0) : start] != edit.original:
                raise YamlEditError(f"{filename}:{_line_of(text, start)}: the text before character {start} "
                                    "is not what was planned; the file changed since it was read")
            rendered = _double_quoted(edit.value) if plain_needs_quotes(edit.value) or (
                insert.flow and _new_flow_hazard("", edit.value)) else edit.value
            pieces.append(text[position:start])
            if (start, insert.header) not in headers:
                headers.add((start, insert.header))
                pieces.append(insert.header)
            pieces.append(insert.prefix + rendered + insert.suffix)
            position = start
            continue
        if not 0 <= start < end <= len(text):
            raise YamlEditError(f"{filename}: edit span {start}..{end} is empty or outside the file")
        if start < position:
            raise YamlEditError(
                f"{filename}:{_line_of(text, start)}: overlapping edits at characters {start}..{end}"
            )
        original = text[start:end]
        if edit.original is not None and edit.original != original:
            raise YamlEditError(
                f"{filename}:{_line_of(text, start)}: expected {_clip(edit.original)!r} at characters "
                f"{start}..{end} but found {_clip(original)!r}; the file changed since it was read"
            )
        try:
            rendered = render_scalar(original, edit.value)
        except YamlEditError as exc:
            raise YamlEditError(f"{filename}:{_line_of(text, start)}: {exc}") from exc
        if (start, end) in quote and rendered == edit.value:
            rendered = _double_quoted(edit.value)
        pieces.append(text[position:start])
        pieces.append(rendered)
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def apply_verified(parsed: ParsedFile, edits: Sequence[Edit], *, filename: str) -> str:
    """The text to write: ``apply_edits`` on ``parsed.text``, proven before anyone writes it.

    The result is always ``apply_edits(parsed.text, edits, ...)``: a dry-run diff shows what is written.
    The new text is parsed again and compared with ``parsed``: same documents, same structure, same tags,
    styles and values everywhere, except the edited scalars, which must each be a scalar node of the
    original and now hold exactly the new value (as a string, if written plain). Raises ``YamlEditError``
    and returns nothing if any check fails.
    """
    text = parsed.text
    new_text = _apply(text, edits, filename=filename, quote=_flow_quotes(text, edits, parsed, filename))
    if new_text == text:
        return new_text
    try:
        reparsed = parse_yaml(new_text, filename=filename)
    except YamlEditError as exc:
        raise YamlEditError(f"{filename}: refused: the edited text would not parse: {exc}") from exc
    _compare(parsed, reparsed, edits, filename)
    return new_text


def _new_flow_hazard(original: str, value: str) -> bool:
    # libyaml ends a plain scalar inside a flow collection at ':' or '?' followed by anything.
    return any(char in value and char not in original for char in _FLOW_HAZARDS)


def _in_flow(parsed: ParsedFile, spans: set[tuple[int, int]]) -> frozenset[tuple[int, int]]:
    """Those of ``spans`` that are scalars inside a flow collection."""
    found: set[tuple[int, int]] = set()
    stack: list[tuple[Any, bool]] = [(doc, False) for doc in parsed.documents]
    seen: set[int] = set()
    while stack:
        node, in_flow = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            if in_flow and scalar_span(node) in spans:
                found.add(scalar_span(node))
            continue
        in_flow = in_flow or bool(node.flow_style)
        stack.extend((child, in_flow) for child in _children(node))
    return frozenset(found)


def _check_inserted(node: Any, value: str, fail: Any, where: Any) -> None:
    if not isinstance(node, ScalarNode):
        raise fail(where, f"the inserted value {_clip(value)!r} is not a scalar")
    if node.value != value:
        raise fail(where, f"the inserted scalar reads {_clip(node.value)!r}, not {_clip(value)!r}")
    if not node.style and plain_needs_quotes(node.value):
        raise fail(where, f"the plain scalar {_clip(node.value)!r} would not read as a string")


def _at_path(node: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(node, SequenceNode) or step >= len(node.value):
                return None
            node = node.value[step]
        else:
            if not isinstance(node, MappingNode):
                return None
            node = next((v for k, v in node.value if isinstance(k, ScalarNode) and k.value == step), None)
    return node


def _compare(old: ParsedFile, new: ParsedFile, edits: Sequence[Edit], filename: str) -> None:
    wanted = {(edit.start, edit.end): edit.value for edit in edits if edit.insert is None}
    matched: set[tuple[int, int]] = set()
    keyed: dict[int, dict[str, str]] = {}
    created = [edit for edit in edits if edit.insert is not None and edit.insert.parent < 0]

    def fail(node: Any, why: str) -> YamlEditError:
        line = node.start_mark.line + 1 if node is not None else 1
        return YamlEditError(f"{filename}:{line}: refused: after the edit {why}; the file was not written")

    appended: dict[int, list[Edit]] = {}
    for edit in edits:
        insert = edit.insert
        if insert is not None and insert.parent >= 0 and insert.key is None:
            appended.setdefault(insert.parent, []).append(edit)
        elif insert is not None and insert.parent >= 0 and insert.key is not None:
            if insert.key in keyed.setdefault(insert.parent, {}):
                raise YamlEditError(f"{filename}: refused: two insertions add the key {insert.key!r}")
            keyed[insert.parent][insert.key] = edit.value
    if created:
        if old.text.strip() or old.documents or len(new.documents) != 1 or len(created) != len(edits):
            raise YamlEditError(f"{filename}: refused: a new file must be one document written from nothing")
        base = 0
        root = new.documents[0]
        for edit in created:
            insert = edit.insert
            assert insert is not None
            steps = list(insert.path)
            first = next((i for i, step in enumerate(steps) if isinstance(step, int)), None)
            if first is not None:
                sequence = _at_path(root, tuple(steps[:first]))
                steps[first] = int(steps[first]) + base
                base += insert.items
                if not isinstance(sequence, SequenceNode) or len(sequence.value) < base:
                    raise fail(root, "a sequence of the new file lacks the inserted items")
            _check_inserted(_at_path(root, tuple(steps)), edit.value, fail, root)
        return
    if len(old.documents) != len(new.documents):
        raise YamlEditError(f"{filename}: refused: the edit changed the number of documents")
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Any, Any]] = list(zip(old.documents, new.documents, strict=True))
    while stack:
        before, after = stack.pop()
        pair = (id(before), id(after))
        if pair in seen:
            continue
        seen.add(pair)
        if type(before) is not type(after) or before.tag != after.tag:
            raise fail(before, "a node changed its kind or tag")
        if isinstance(before, ScalarNode):
            span = scalar_span(before)
            if span in wanted:
                matched.add(span)
                if after.value != wanted[span]:
                    got, want = _clip(after.value), _clip(wanted[span])
                    raise fail(before, f"the scalar reads {got!r}, not {want!r}")
                if not after.style and plain_needs_quotes(after.value):
                    raise fail(before, f"the plain scalar {_clip(after.value)!r} would not read as a string")
            elif after.value != before.value or (after.style or None) != (before.style or None):
                raise fail(before, f"the unedited scalar {_clip(before.value)!r} changed")
            continue
        added = keyed.pop(before.start_mark.index, None) if isinstance(before, MappingNode) else None
        if added is not None:
            kept = []
            for key, value in after.value:
                name = key.value if isinstance(key, ScalarNode) else None
                if name in added and not any(isinstance(k, ScalarNode) and k.value == name
                                             for k, _v in before.value):
                    _check_inserted(value, added.pop(name), fail, before)
                else:
                    kept.append((key, value))
            if added:
                raise fail(before, f"the key {next(iter(added))!r} was not added")
            after = MappingNode(after.tag, kept, after.start_mark, after.end_mark,
                                flow_style=after.flow_style)
        items = appended.pop(before.start_mark.index, None) if isinstance(before, SequenceNode) else None
        if items is not None:
            base = len(before.value)
            if len(after.value) != base + sum(e.insert.items for e in items if e.insert is not None):
                raise fail(before, "the sequence did not gain exactly the inserted items")
            for edit in items:
                assert edit.insert is not None
                steps = list(edit.insert.path) or [0]
                steps[0] = int(steps[0]) + base
                base += edit.insert.items
                _check_inserted(_at_path(after, tuple(steps)), edit.value, fail, before)
            after = SequenceNode(after.tag, after.value[: len(before.value)], after.start_mark,
                                 after.end_mark, flow_style=after.flow_style)
        if bool(before.flow_style) != bool(after.flow_style) or len(before.value) != len(after.value):
            raise fail(before, "a mapping or sequence changed its shape")
        stack.extend(zip(_children(before), _children(after), strict=True))
    if keyed or appended:
        raise YamlEditError(f"{filename}: refused: an insertion's parent is not a mapping of the file")
    missing = [span for span in wanted if span not in matched]
    if missing:
        start, end = missing[0]
        raise YamlEditError(
            f"{filename}:{_line_of(old.text, start)}: refused: characters {start}..{end} are not the span "
            "of a scalar node"
        )


# ------------------------------------------------------------------------------------------ insertions


def key_insertion(
    text: str, mapping: MappingNode, key: str, after: Sequence[str]
) -> tuple[int, Insertion]:
    """Where and how to add ``key: <value>`` to ``mapping`` (a node of ``text``): right after the first of
    ``after`` the mapping has (else after its last pair), in the mapping's own style: a new line at the
    indentation of its keys (the line break the file uses) for a block mapping, ``, key: value`` for a flow
    mapping. ``YamlEditError`` for layouts this cannot do safely (empty mapping, a multi-line value)."""
    if not mapping.value:
        raise YamlEditError(f"cannot add {key!r} to an empty mapping")
    keys = {k.value: (k, v) for k, v in mapping.value if isinstance(k, ScalarNode)}
    anchor = next((keys[name] for name in after if name in keys), mapping.value[-1])
    key_node, value_node = anchor
    if not isinstance(value_node, ScalarNode) or value_node.style in ("|", ">"):
        raise YamlEditError(f"cannot add {key!r} after a value that is not a one-line scalar")
    end = int(value_node.end_mark.index)
    if mapping.flow_style:
        return end, Insertion(parent=int(mapping.start_mark.index), prefix=f", {key}: ", key=key, flow=True)
    if value_node.start_mark.line != value_node.end_mark.line or key_node.start_mark.line != (
            value_node.start_mark.line):
        raise YamlEditError(f"cannot add {key!r} after a value that spans lines")
    offset = _end_of_line(text, end, repr(key))
    newline = "\r\n" if text.startswith("\r\n", offset) or (
        offset >= len(text) and "\r\n" in text) else "\n"
    indent = " " * int(mapping.value[0][0].start_mark.column)
    prefix = f"{newline}{indent}{key}: "
    return offset, Insertion(parent=int(mapping.start_mark.index), prefix=prefix, key=key)


def _end_of_line(text: str, end: int, what: str) -> int:
    """The offset of the line break (or end of text) after ``end``, past blanks and a comment."""
    offset = end
    while offset < len(text) and text[offset] in " \t":
        offset += 1
    if offset < len(text) and text[offset] == "#":
        while offset < len(text) and text[offset] not in _LINE_BREAKS:
            offset += 1
    if offset < len(text) and text[offset] not in _LINE_BREAKS:
        raise YamlEditError(f"cannot add {what}: something else follows on its line")
    return offset


def item_insertion(
    text: str, sequence: SequenceNode, first: str, rest: Sequence[str] = (), after: str = "", items: int = 1
) -> tuple[int, Insertion]:
    """Where and how to append an item to the non-empty ``sequence`` (a node of ``text``) in its own style.

    The item is written as the lines ``first`` + ``rest`` with the value after the last of them, and the text
    ``after`` following the value (``rest`` and ``after`` hold a mapping's further lines, e.g. ``["value: "]``
    and ``["forcestring: true"]``; ``after`` is a newline-separated tail). Block sequence: after the line of
    the last item, at its dash column and content indentation, with the file's line break; a last item that
    is a flow mapping makes the new one ``{k: v, ...}`` too. Flow sequence: ``, item`` after the last item.
    ``items``: how many items the text holds (``path`` of the result counts from the first of them)."""
    if not sequence.value:
        raise YamlEditError("cannot append to an empty sequence")
    last = sequence.value[-1]
    pieces = [first, *rest]
    tail = [line for line in after.split("\n") if line] if after else []
    if sequence.flow_style or (isinstance(last, MappingNode) and last.flow_style):
        if len(pieces) > 1 or tail:
            mapped = "{" + ", ".join(pieces)
            suffix = "".join(", " + line for line in tail) + "}"
        else:
            mapped, suffix = first, ""
        if sequence.flow_style:
            return int(last.end_mark.index), Insertion(
                parent=int(sequence.start_mark.index), prefix=", " + mapped, suffix=suffix, flow=True,
                items=items)
        pieces, tail, flow = [mapped], [], True
    else:
        suffix, flow = "", False
    node: Node = last
    while isinstance(node, (MappingNode, SequenceNode)) and not node.flow_style and node.value:
        node = node.value[-1][1] if isinstance(node, MappingNode) else node.value[-1]
    if isinstance(node, ScalarNode) and node.style in ("|", ">"):
        raise YamlEditError("cannot append after a block scalar")
    offset = _end_of_line(text, int(node.end_mark.index), "an item")
    line_start = max(text.rfind(c, 0, int(last.start_mark.index)) for c in "\n\r") + 1
    dash = text.rfind("-", line_start, int(last.start_mark.index))
    if dash < 0 or text[line_start:dash].strip(" "):
        raise YamlEditError("cannot append: the last item's dash is not on its first line")
    dash_col, content_col = dash - line_start, int(last.start_mark.column)
    newline = "\r\n" if text.startswith("\r\n", offset) or (offset >= len(text) and "\r\n" in text) else "\n"
    indent = newline + " " * content_col
    prefix = newline + " " * dash_col + "-" + " " * (content_col - dash_col - 1) + indent.join(pieces)
    if not flow:
        suffix = "".join(indent + line for line in tail)
    return offset, Insertion(parent=int(sequence.start_mark.index), prefix=prefix, suffix=suffix, flow=flow,
                             items=items)
