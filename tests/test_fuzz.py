"""Fuzzing the pure core with hypothesis (issue 7, part 4): nothing but our own errors, edits stay in place.

For arbitrary and for grammar-shaped input:

- ``parse_reference`` raises only ``InvalidReference``; what it accepts prints back to itself and re-parses
  to the same value, with a tag that obeys the OCI grammar;
- ``parse_policy`` (any text, any modifiers of any type) raises only ``InvalidPolicy``/``ConfigError``;
- ``parse_range`` raises only ``InvalidRange``; its canonical text parses to a range with the same meaning;
- ``select`` (``read_tags`` + ``Policy.choose``/``explain``) raises only ``ConfigError`` for malformed input
  and picks only a tag that was offered and obeys the OCI grammar, the same one ``explain`` puts first;
- discovery on generated manifests, Flux markers, kustomizations and policy files never raises (problems are
  error entries), and every target's span holds the value it reports;
- rewriting every discovered target with an arbitrary new value either raises ``YamlEditError`` or changes
  nothing outside the targets' spans, and the edited text parses again.

Example counts are modest here (``IMAGE_UPDATER_FUZZ_EXAMPLES``, default 60); ``bench/fuzz.py`` runs the same
properties with large counts. Regexes are generated without nested repetition: a user's own catastrophic
regex is documented as the user's (docs/reliability.md); globs, which registry tags could exploit, are tested
against crafted tags in test_hostile_inputs.py.
"""

from __future__ import annotations

import itertools
import os
import re
import string
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from image_updater.commands.select import read_tags
from image_updater.discover import discover_files
from image_updater.errors import (
    ConfigError,
    ImageUpdaterError,
    InvalidPolicy,
    InvalidReference,
    YamlEditError,
)
from image_updater.policies import MODIFIERS, parse_policy
from image_updater.references import is_valid_tag, parse_reference
from image_updater.versions import InvalidRange, InvalidVersion, parse_range, parse_version
from image_updater.yamledit import Edit, apply_verified, parse_yaml

EXAMPLES = int(os.environ.get("IMAGE_UPDATER_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# ------------------------------------------------------------------------------------------ strategies

any_text = st.text(max_size=60)
ref_alphabet = string.ascii_letters + string.digits + "._-/:@[]" + "sha256"
reference_like = st.one_of(
    any_text,
    st.text(alphabet=ref_alphabet, max_size=60),
    st.builds(
        lambda reg, path, tag, digest: reg + path + tag + digest,
        st.sampled_from(["", "docker.io/", "ghcr.io/", "localhost:5000/", "127.0.0.1:5000/", "[::1]:5000/",
                         "Registry.Example.com/", "a..b/", ":5000/"]),
        st.text(alphabet=string.ascii_lowercase + string.digits + "._-/", min_size=0, max_size=30),
        st.one_of(st.just(""), st.text(alphabet=string.ascii_letters + string.digits + "._-:#\n ",
                                        max_size=20).map(lambda t: ":" + t)),
        st.one_of(st.just(""), st.text(alphabet="0123456789abcdef", min_size=60, max_size=66).map(
            lambda h: "@sha256:" + h)),
    ),
)

tag_text = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9._-]{0,20}\Z"),
    st.from_regex(r"\Av?[0-9]{1,3}(\.[0-9]{1,3}){0,2}(-(alpha|beta|rc|alpine|slim)[.0-9]{0,3})?\Z"),
    st.text(max_size=20),
)

versions = st.from_regex(r"\Av?([0-9]{1,2}|[xX*])(\.([0-9]{1,2}|[xX*])){0,2}(-(rc|beta)\.[0-9])?\Z")
operators = st.sampled_from(["", "=", "!=", ">", ">=", "<", "<=", "~", "^", "~>", " >= ", "= "])
comparator = st.builds(lambda op, v: op + v, operators, versions)
conjunction = st.lists(comparator, min_size=1, max_size=3).flatmap(
    lambda cs: st.sampled_from([" ", ", ", ","]).map(lambda sep: sep.join(cs))
)
hyphen = st.builds(lambda a, b: f"{a} - {b}", versions, versions)
range_text = st.one_of(
    st.lists(st.one_of(conjunction, hyphen), min_size=1, max_size=3).map(" || ".join),
    st.text(alphabet="<>=!~^|, -.vxX*0123456789", max_size=25),
    any_text,
)
concrete_versions = st.from_regex(r"\A[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}(-(rc|beta)\.[0-9])?\Z")

# regexes without nested repetition: alternation, classes, anchors, one level of ? * +
safe_regex = st.lists(
    st.sampled_from(["a", "b", "1", r"\d", r"\.", "[a-c]", "[0-9]+", "^", "$", "|", "(?P<v>", ")", ".", "-",
                     "rc", "x?", "y*", "(", "[", "\\"]),
    max_size=8,
).map("".join)
globs = st.text(alphabet="ab1.*?[]!-\\", max_size=10)
policy_text = st.one_of(
    st.builds(lambda r: "semver:" + r, range_text),
    st.builds(lambda g: "glob:" + g, globs),
    st.builds(lambda r: "regex:" + r, safe_regex),
    st.sampled_from(["alphabetical", "alphabetical:desc", "numerical", "numerical:asc", "numerical:desc",
                     "newest", "digest", "digest:1.0", "alphabetical:sideways", "newest:x", "semver:",
                     "glob:", "digest:bad tag", "SEMVER:^1", " semver : ~1.2 "]),
    any_text,
)
modifier_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True), any_text,
    st.lists(st.one_of(any_text, st.integers()), max_size=3),
    st.sampled_from(["1h", "7d", "-1s", "1x", "true", "99999999999d"]),
    safe_regex, st.sampled_from(["$1", "${v}", "$v", "${", "$9"]),
)
modifiers = st.dictionaries(
    st.one_of(st.sampled_from([*MODIFIERS, "min-age", "pin-digest", "flavor", "platform"]), any_text),
    modifier_values, max_size=3,
)
# select's stdin: tags, sometimes followed by a (possibly malformed) build time
stdin_lines = st.lists(
    st.builds(lambda tag, time: tag + time, tag_text, st.one_of(
        st.just(""), st.just(" 2024-05-01T12:00:00Z"), st.just("\t2024-13-01T00:00:00Z"),
        st.datetimes(timezones=st.just(UTC)).map(lambda d: " " + d.isoformat().replace("+00:00", "Z")),
        any_text.map(lambda t: " " + t),
    )),
    max_size=12,
)


def assert_ours(exc: BaseException, *allowed: type[BaseException]) -> None:
    assert isinstance(exc, allowed or (ImageUpdaterError,)), f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------------------ parsers


@FUZZ
@given(reference_like)
def test_reference_parser_raises_only_invalid_reference_and_round_trips(text: str) -> None:
    try:
        ref = parse_reference(text)
    except Exception as exc:
        assert_ours(exc, InvalidReference)
        return
    assert str(ref) == text
    assert parse_reference(str(ref)) == ref
    assert ref.tag is None or is_valid_tag(ref.tag)


@FUZZ
@given(policy_text, modifiers)
def test_policy_parser_raises_only_invalid_policy(text: str, mods: dict[Any, Any]) -> None:
    try:
        policy = parse_policy(text, mods)
    except Exception as exc:
        assert_ours(exc, InvalidPolicy, ConfigError)
        return
    assert str(policy).split(":", 1)[0] in ("semver", "glob", "regex", "alphabetical", "numerical", "newest",
                                            "digest")


@FUZZ
@given(range_text, st.lists(concrete_versions, max_size=8))
def test_range_parser_raises_only_invalid_range_and_its_canonical_text_means_the_same(
    text: str, probes: list[str]
) -> None:
    try:
        parsed = parse_range(text)
    except Exception as exc:
        assert_ours(exc, InvalidRange)
        return
    again = parse_range(parsed.text)
    assert again.text == parsed.text
    for probe in probes:
        key = parse_version(probe).key
        assert parsed.contains(key) == again.contains(key) == parsed.matcher()(key), (text, probe)


@FUZZ
@given(tag_text)
def test_version_parser_raises_only_invalid_version(text: str) -> None:
    try:
        parse_version(text)
    except Exception as exc:
        assert_ours(exc, InvalidVersion)


# ------------------------------------------------------------------------------------------ select


@FUZZ
@given(policy_text, modifiers, stdin_lines, st.one_of(st.none(), tag_text))
def test_select_chooses_only_an_offered_valid_tag(
    text: str, mods: dict[Any, Any], lines: list[str], current: str | None
) -> None:
    try:
        policy = parse_policy(text, mods)
        infos = read_tags(lines)
    except Exception as exc:
        assert_ours(exc, ConfigError)
        return
    now = datetime(2025, 1, 1, tzinfo=UTC)
    chosen = policy.choose(infos, current, now)
    verdicts = policy.explain(infos, current, now)
    assert len(verdicts) == len(infos)
    if chosen is None:
        assert all(v.status.value != "chosen" for v in verdicts)
        return
    assert chosen in infos and is_valid_tag(chosen.tag)
    assert verdicts[0].status.value == "chosen" and verdicts[0].tag == chosen.tag
    assert chosen.tag.lower() != "latest" or "latest" in text.lower()


# ------------------------------------------------------------------------------------ discovery and edits

good_images = st.builds(
    lambda reg, path, tag: reg + path + tag,
    st.sampled_from(["", "docker.io/", "ghcr.io/acme/", "registry.example.com:5000/"]),
    st.sampled_from(["web", "team/web", "library/nginx"]),
    st.one_of(st.just(""), st.from_regex(r"\A:[A-Za-z0-9_][A-Za-z0-9._-]{0,12}\Z"),
              st.just(":1.0@sha256:" + "a" * 64)),
)
hostile_scalars = st.sampled_from(
    ["'quoted:1.0'", '"dq:1.0"', "1.10", "yes", "~", "*alias", "&anchor x", "!tag x", "|", ">", "{a: b}",
     "[1, 2]", "- x", "# c", "a: b", ""]
)
# mostly images a policy can target (so that edits get exercised), sometimes anything at all
yaml_scalar = st.one_of(good_images, good_images, good_images, reference_like, hostile_scalars)
good_policies = st.sampled_from(["semver:^1", "semver:>=0.1 <3", "glob:*", "numerical", "alphabetical",
                                 "regex:^v?[0-9]", "newest", "digest"])
policy_values = st.one_of(good_policies, good_policies, policy_text, st.sampled_from(["true", "false"]))


def quote(value: str, style: int) -> str:
    if style == 0:
        return value
    if style == 1:
        return "'" + value.replace("'", "''") + "'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@st.composite
def manifests(draw: st.DrawFn, targeted: bool = False) -> str:
    """A Deployment with annotations, or a kustomization, or a policy file, or Helm values, in random style.

    ``targeted``: a Deployment whose annotation surely targets its image (only the styles vary)."""
    kind = 0 if targeted else draw(st.integers(0, 4))
    image = quote(draw(good_images if targeted else yaml_scalar), draw(st.integers(0, 2)))
    policy = quote(draw(good_policies if targeted else policy_values), draw(st.integers(1, 2)))
    name = "web" if targeted else draw(st.sampled_from(["web", "web", "app", "x-1", "we b", ""]))
    indent = draw(st.sampled_from(["  ", "    "]))
    marker = draw(st.sampled_from([
        "", '  # {"$imagepolicy": "apps:web"}', '  # {"$imagepolicy": "apps:web:tag"}',
        '  # {"$imagepolicy": "web"}', "  # comment", '  # {"$imagepolicy": }',
    ]))
    if kind == 0:
        prefix = "image-updater.io/" if targeted else draw(st.sampled_from(
            ["image-updater.io/", "image-updater.io/", "fluxcd.io/", "flux.weave.works/", "filter.fluxcd.io/"]
        ))
        key = "policy.web" if targeted else draw(st.sampled_from(
            [f"policy.{name}", f"policy.{name}", "policy", f"tag.{name}", "automated", "locked",
             f"exclude.{name}", f"min-age.{name}", name]))
        i = indent
        return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n{i}name: {quote(name, 1)}\n"
                f"{i}annotations:\n"
                f"{i}{i}{prefix}{key}: {policy}\nspec:\n{i}template:\n{i}{i}spec:\n{i}{i}{i}containers:\n"
                f"{i}{i}{i}- name: {quote(name, 2)}\n{i}{i}{i}  image: {image}{marker}\n")
    if kind == 1:
        tag = quote(draw(tag_text), draw(st.integers(0, 2)))
        return (f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n"
                f"- name: {image}\n  newTag: {tag}{marker}\n")
    if kind == 2:
        target = quote(draw(st.sampled_from(["apps/**", "../x", "/etc", "*.yaml", "[", "apps/web.yaml"])), 1)
        return (f"apiVersion: image-updater.io/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: web\n"
                f"  namespace: apps\nspec:\n  image: {image}\n  policy: {policy}\n"
                f"  targets:\n  - path: {target}\n")
    if kind == 3:
        tag = quote(draw(tag_text), draw(st.integers(0, 2)))
        return f"image:\n  repository: {image}\n  tag: {tag}{marker}\nsidecarImage: {image}\n"
    container = f"{{name: {quote(name, 2)}, image: {image}}}"
    return f"{{kind: Deployment, spec: {{containers: [{container}]}}}}{marker}\n"


@st.composite
def trees(draw: st.DrawFn, targeted: bool = False) -> list[tuple[str, str]]:
    files = draw(st.lists(manifests(), min_size=0 if targeted else 1, max_size=4))
    if targeted:
        files.insert(0, draw(manifests(targeted=True)))
    noise = draw(st.one_of(st.just(""), any_text))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    names = ["apps/web.yaml", "apps/kustomization.yaml", "policies/web.yaml", "values.yaml"]
    out = [(names[i % len(names)] if i < len(names) else f"more/{i}.yaml", text.replace("\n", newline))
           for i, text in enumerate(files)]
    if noise:
        out.append(("noise.yaml", noise))
    return out


@FUZZ
@given(trees())
def test_discovery_never_raises_and_spans_hold_the_reported_values(files: list[tuple[str, str]]) -> None:
    discovery = discover_files(files)  # any exception fails the test
    texts = dict(files)
    for target in discovery.targets:
        raw = texts[target.file][target.start : target.end]
        assert target.value in raw, (raw, target.value)
    for error in discovery.errors:
        assert error.file is None or error.file in texts


@FUZZ
@given(trees(targeted=True), st.lists(st.one_of(tag_text, reference_like, any_text), min_size=1, max_size=4))
def test_edits_change_nothing_outside_the_target_spans(
    files: list[tuple[str, str]], new_values: list[str]
) -> None:
    discovery = discover_files(files)
    texts = dict(files)
    by_file: dict[str, list[Edit]] = {}
    for i, target in enumerate(discovery.targets):
        value = new_values[i % len(new_values)]
        if target.part == "reference" and is_valid_tag(value):
            value = target.image.with_tag(value)  # what the planner writes for a whole reference
        by_file.setdefault(target.file, []).append(Edit(target.start, target.end, value))
    assume(by_file)
    for file, edits in by_file.items():
        text = texts[file]
        spans = sorted((e.start, e.end) for e in edits)
        if any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
            continue  # two targets on one scalar (a name and a tag marker): the planner never does this
        try:
            parsed = parse_yaml(text, filename=file)
            new_text = apply_verified(parsed, edits, filename=file)
        except Exception as exc:
            assert_ours(exc, YamlEditError)
            continue
        # the text outside the spans is byte for byte the same, in order; only the spans were rewritten
        pieces, previous = [], 0
        for start, end in spans:
            pieces += [re.escape(text[previous:start]), "(.*?)"]
            previous = end
        pattern = "".join(pieces) + re.escape(text[previous:])
        match = re.fullmatch(pattern, new_text, re.DOTALL)
        assert match is not None, (text, new_text)
        parse_yaml(new_text, filename=file)
