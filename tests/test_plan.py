"""The planner (targets + resolutions -> Result) and the pipeline's apply step: new values per part,
unchanged/error entries, deterministic order, per-file failure isolation, and (hypothesis) that applying a
plan changes only the planned spans."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from image_updater.checkout import Planned, apply_result, discover_directory, edited_texts
from image_updater.discover import Discovery, Part, Target, discover_files
from image_updater.plan import ErrorEntry, Resolution, Result, Skipped, build_plan, render_value
from image_updater.policies import parse_policy
from image_updater.references import parse_reference
from image_updater.yamledit import parse_yaml
from tests.planning_support import fake_digest, stub_resolve, tag_table

DIGEST = "sha256:" + "ab" * 32


def target(value: str, part: Part = "reference", policy: str = "semver:^1", image: str | None = None,
           write_name: str = "", file: str = "f.yaml", line: int = 1, **kw: object) -> Target:
    ref = parse_reference(image or value)
    return Target(
        file=file, line=line, start=0, end=len(value), resource="Deployment/app", container="app",
        image=ref, value=value, part=part, policy=parse_policy(policy), origin="annotation",
        write_name=write_name or ref.written_name, **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(("t", "resolution", "expected"), [
    (target("nginx"), Resolution("1.27.0"), "nginx:1.27.0"),
    (target("nginx:1.25"), Resolution("1.27.0"), "nginx:1.27.0"),
    (target("localhost:5000/a/b:v1"), Resolution("v2"), "localhost:5000/a/b:v2"),
    (target(f"nginx:1.25@{DIGEST}"), Resolution("1.27.0", digest=fake_digest("x", "y")),
     f"nginx:1.27.0@{fake_digest('x', 'y')}"),
    (target("nginx:1.25", policy="digest"), Resolution("1.25", digest=DIGEST), f"nginx:1.25@{DIGEST}"),
    (target("1.25", part="tag", image="nginx:1.25"), Resolution("1.27.0", digest=DIGEST), "1.27.0"),
    (target(f"1.25@{DIGEST}", part="tag-digest", image=f"nginx:1.25@{DIGEST}"),
     Resolution("1.27.0", digest=fake_digest("n", "1")), f"1.27.0@{fake_digest('n', '1')}"),
    (target(DIGEST, part="digest", image=f"nginx:1.25@{DIGEST}"),
     Resolution("1.27.0", digest=DIGEST), DIGEST),
    (target("ab" * 32, part="digest-hex", image=f"nginx:1.25@{DIGEST}"),
     Resolution("1.27.0", digest=fake_digest("n", "2")), fake_digest("n", "2").split(":")[1]),
    (target("replaced", part="name", image="index.repo.fake/updated:v1",
            write_name="index.repo.fake/updated"),
     Resolution("v1.0.1"), "index.repo.fake/updated"),
    (target("image:v1.0.0", image="index.repo.fake/updated:v1.0.0", write_name="index.repo.fake/updated"),
     Resolution("v1.0.1"), "index.repo.fake/updated:v1.0.1"),
])
def test_render_value(t: Target, resolution: Resolution, expected: str) -> None:
    assert render_value(t, resolution) == expected


def test_build_plan_changes_unchanged_and_errors_in_file_order() -> None:
    targets = (
        target("nginx:1.25", file="b.yaml", line=9),
        target("nginx:1.27.0", file="a.yaml", line=3),
        target("redis:7.0", file="a.yaml", line=1, policy="semver:~7.0"),
        target(f"nginx:1.25@{DIGEST}", file="c.yaml", line=2),
        target("ghcr.io/x/y:v1", file="c.yaml", line=5),
    )
    skipped = (Skipped(file="a.yaml", line=2, image="busybox", reason="locked"),)
    discovery = Discovery(targets=targets, skipped=skipped,
                          errors=(ErrorEntry(file="z.yaml", line=1, image=None, message="bad marker"),))
    resolutions = {
        targets[0].resolve_key: Resolution("1.27.0"),
        targets[1].resolve_key: Resolution("1.27.0"),
        targets[2].resolve_key: Resolution(),  # no tag qualifies
        targets[3].resolve_key: Resolution("1.27.0"),  # a digest was needed, none came
        targets[4].resolve_key: Resolution(error="registry ghcr.io: connection refused"),
    }
    result = build_plan(discovery, resolutions)
    assert [(c.file, c.old, c.new, c.old_tag, c.new_tag) for c in result.updates] == [
        ("b.yaml", "nginx:1.25", "nginx:1.27.0", "1.25", "1.27.0"),
    ]
    assert [(u.file, u.old) for u in result.unchanged] == [("a.yaml", "nginx:1.27.0")]
    assert result.skipped == skipped
    assert [(e.file, e.line, e.image, e.message) for e in result.errors] == [
        ("a.yaml", 1, "redis",
         "no tag of docker.io/library/redis satisfies policy semver:~7.0 (current tag 7.0)"),
        ("c.yaml", 2, "nginx", "the registry reported no digest for docker.io/library/nginx:1.27.0"),
        ("c.yaml", 5, "ghcr.io/x/y", "registry ghcr.io: connection refused"),
        ("z.yaml", 1, None, "bad marker"),
    ]
    change = result.updates[0]
    assert change.to_dict() == {
        "file": "b.yaml", "line": 9, "resource": "Deployment/app", "container": "app", "image": "nginx",
        "old": "nginx:1.25", "new": "nginx:1.27.0", "old_tag": "1.25", "new_tag": "1.27.0",
        "policy": "semver:^1", "origin": "annotation",
    }
    assert result.files == ("b.yaml",)


def test_a_missing_resolution_is_an_error_not_a_crash() -> None:
    t = target("nginx:1.25")
    result = build_plan(Discovery(targets=(t,)), {})
    assert result.errors[0].message == "docker.io/library/nginx was not resolved for policy semver:^1"


def test_pin_digest_changes_the_digest_only_when_the_tag_stays(tmp_path: Path) -> None:
    t = target(f"nginx:1.27.0@{DIGEST}")
    same = build_plan(Discovery(targets=(t,)), {t.resolve_key: Resolution("1.27.0", digest=DIGEST)})
    other = fake_digest("a", "b")
    moved = build_plan(Discovery(targets=(t,)), {t.resolve_key: Resolution("1.27.0", digest=other)})
    assert len(same.unchanged) == 1 and not same.updates
    assert moved.updates[0].new == f"nginx:1.27.0@{fake_digest('a', 'b')}"
    assert moved.updates[0].digest == fake_digest("a", "b")


DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  annotations:
    image-updater.io/policy: semver:^1
spec:
  template:
    spec:
      containers:
      - name: app
        image: ghcr.io/acme/app:v1.0.0
"""


def plan_tree(root: Path, tags: dict[str, list[str | dict[str, str]]]) -> Planned:
    discovery, texts = discover_directory(root)
    resolutions = stub_resolve(discovery.resolve_keys, tag_table(tags))
    return Planned(root, discovery, build_plan(discovery, resolutions), texts)


def test_apply_isolates_a_failing_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(DEPLOY)
    (tmp_path / "b.yaml").write_text(DEPLOY)
    planned = plan_tree(tmp_path, {"ghcr.io/acme/app": ["v1.0.0", "v1.1.0"]})
    assert len(planned.result.updates) == 2
    # b.yaml changes after planning: its update is dropped and reported, a.yaml is still written
    renamed = DEPLOY.replace("name: app\n  annotations", "name: renamed\n  annotations")
    (tmp_path / "b.yaml").write_text(renamed)
    before_b = (tmp_path / "b.yaml").read_bytes()
    applied = apply_result(tmp_path, planned)
    assert [c.file for c in applied.updates] == ["a.yaml"]
    assert [(e.file, e.line) for e in applied.errors] == [("b.yaml", 12)]
    assert "not written, 1 update(s) dropped" in applied.errors[0].message
    assert (tmp_path / "a.yaml").read_text() == DEPLOY.replace("v1.0.0", "v1.1.0")
    assert (tmp_path / "b.yaml").read_bytes() == before_b


VALUES = """\
image:
  repository: ghcr.io/acme/app
  tag:
worker:
  image: ghcr.io/acme/app:v1.0.0
sidecar:
  image: ghcr.io/acme/app:v1.0.0  # second
"""
VALUES_POLICY = """\
apiVersion: image-updater.io/v1alpha1
kind: ImagePolicy
metadata: {name: app}
spec: {image: ghcr.io/acme/app, policy: 'semver:^1', targets: [{path: values.yaml}]}
"""


def test_an_empty_helm_tag_costs_no_other_update(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text(VALUES)
    (tmp_path / "policy.yaml").write_text(VALUES_POLICY)
    planned = plan_tree(tmp_path, {"ghcr.io/acme/app": ["v1.0.0", "v1.1.0"]})
    assert [(c.line, c.new) for c in planned.result.updates] == [
        (5, "ghcr.io/acme/app:v1.1.0"), (7, "ghcr.io/acme/app:v1.1.0"),
    ]
    assert [(s.file, s.line, s.reason) for s in planned.result.skipped] == [
        ("values.yaml", 3, "tag is empty; set it to the current tag to let image-updater manage it"),
    ]
    assert edited_texts(planned)["values.yaml"][1] == VALUES.replace("v1.0.0", "v1.1.0")
    applied = apply_result(tmp_path, planned)
    assert applied.errors == ()
    assert (tmp_path / "values.yaml").read_text() == VALUES.replace("v1.0.0", "v1.1.0")


def test_an_edit_apply_refuses_drops_only_itself(tmp_path: Path) -> None:
    # a planned change that cannot be written (here: forged with an empty span; in general anything the
    # verified edit refuses) is reported on its own line; the file's other updates are still written
    text = VALUES.replace("  tag:\n", "  tag: v1.0.0\n")
    (tmp_path / "values.yaml").write_text(text)
    (tmp_path / "policy.yaml").write_text(VALUES_POLICY)
    planned = plan_tree(tmp_path, {"ghcr.io/acme/app": ["v1.0.0", "v1.1.0"]})
    first, *others = planned.result.updates
    assert first.line == 3 and len(others) == 2
    forged = dataclasses.replace(first, end=first.start, old="")
    planned = dataclasses.replace(planned, result=dataclasses.replace(
        planned.result, updates=(forged, *others)))
    expected = text.replace("app:v1.0.0", "app:v1.1.0")
    assert edited_texts(planned) == {"values.yaml": (text, expected)}
    for result in (planned, planned.result):  # with the planned texts, and re-reading the file
        (tmp_path / "values.yaml").write_text(text)
        applied = apply_result(tmp_path, result)
        assert [c.line for c in applied.updates] == [5, 7]
        assert [(e.file, e.line, e.image) for e in applied.errors] == [("values.yaml", 3, "ghcr.io/acme/app")]
        assert "not written" in applied.errors[0].message
        assert (tmp_path / "values.yaml").read_text() == expected


OLD_DIGEST, OTHER_DIGEST = "sha256:" + "1" * 64, "sha256:" + "2" * 64
KUSTOMIZATION = f"""\
images:
- name: with-digest
  newTag: v1.0.0
  digest: {OLD_DIGEST}
- name: both-pinned
  newTag: v1.0.0@{OLD_DIGEST}
  digest: {OTHER_DIGEST}
- name: empty-digest
  newTag: v1.0.0
  digest: ""
- name: tag-only
  newTag: v1.0.0
- name: digest-only
  digest: {OLD_DIGEST}
"""


@pytest.mark.parametrize("policy", ["policy: 'semver:^1', pin_digest: true", "policy: digest",
                                    "policy: 'semver:^1'"])
def test_kustomize_digest_goes_into_the_digest_field_when_there_is_one(tmp_path: Path, policy: str) -> None:
    # kustomize: a `digest` wins and `newTag` is then ignored; the digest is written once, where it counts
    (tmp_path / "kustomization.yaml").write_text(KUSTOMIZATION)
    names = ["with-digest", "both-pinned", "empty-digest", "tag-only", "digest-only"]
    (tmp_path / "policy.yaml").write_text("---\n".join(
        f"apiVersion: image-updater.io/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: {name}}}\n"
        f"spec: {{image: {name}, {policy}, targets: [{{path: kustomization.yaml}}]}}\n" for name in names
    ))
    tags: dict[str, list[str | dict[str, str]]] = {
        f"docker.io/library/{name}": ["v1.0.0", "v1.1.0", "latest"] for name in names
    }
    planned = plan_tree(tmp_path, tags)
    assert planned.result.errors == ()
    applied = apply_result(tmp_path, planned)
    assert applied.errors == ()
    tag = "v1.0.0" if policy == "policy: digest" else "v1.1.0"
    new = {name: fake_digest(f"docker.io/library/{name}", tag) for name in names}
    if policy == "policy: digest":  # no newTag: the digest of what a pull gets, `latest`
        new["digest-only"] = fake_digest("docker.io/library/digest-only", "latest")
    pins = policy != "policy: 'semver:^1'"  # without a pinning policy, digests stay where they are
    assert (tmp_path / "kustomization.yaml").read_text() == f"""\
images:
- name: with-digest
  newTag: {tag}
  digest: {new['with-digest']}
- name: both-pinned
  newTag: {tag}
  digest: {new['both-pinned']}
- name: empty-digest
  newTag: {tag}
  digest: "{new['empty-digest'] if pins else ''}"
- name: tag-only
  newTag: {tag}{'@' + new['tag-only'] if pins else ''}
- name: digest-only
  digest: {new['digest-only']}
"""


def test_apply_a_bare_result_checks_the_old_values(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(DEPLOY)
    planned = plan_tree(tmp_path, {"ghcr.io/acme/app": ["v1.0.0", "v1.1.0"]})
    (tmp_path / "a.yaml").write_text(DEPLOY.replace("v1.0.0", "v1.0.5"))
    applied = apply_result(tmp_path, planned.result)
    assert applied.updates == () and "changed since it was planned" in applied.errors[0].message
    (tmp_path / "a.yaml").write_text(DEPLOY)
    applied = apply_result(tmp_path, planned.result)
    assert [c.new for c in applied.updates] == ["ghcr.io/acme/app:v1.1.0"]


def test_apply_reports_a_file_that_vanished(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(DEPLOY)
    (tmp_path / "b.yaml").write_text(DEPLOY)
    planned = plan_tree(tmp_path, {"ghcr.io/acme/app": ["v1.0.0", "v1.1.0"]})
    (tmp_path / "a.yaml").unlink()
    applied = apply_result(tmp_path, planned)
    assert [c.file for c in applied.updates] == ["b.yaml"]
    assert [e.file for e in applied.errors] == ["a.yaml"]
    assert not (tmp_path / "a.yaml").exists()


def test_edited_texts_for_the_diff(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(DEPLOY)
    planned = plan_tree(tmp_path, {"ghcr.io/acme/app": ["v1.0.0", "v1.1.0"]})
    assert edited_texts(planned) == {"a.yaml": (DEPLOY, DEPLOY.replace("v1.0.0", "v1.1.0"))}
    assert (tmp_path / "a.yaml").read_text() == DEPLOY  # nothing written


# -- hypothesis: applying a plan changes only the planned spans, and only to the new values ----------------

_names = st.sampled_from(["nginx", "library/redis", "ghcr.io/acme/app", "localhost:5000/team/api",
                          "registry.example.com:8443/a/b/c", "docker.io/bitnami/redis"])
_tags = st.from_regex(r"v?[0-9]{1,2}\.[0-9]{1,2}(\.[0-9]{1,2})?", fullmatch=True)
_styles = st.sampled_from(["plain", "single", "double"])
_comments = st.sampled_from(["", " # keep me", "  # {\"note\": 1}"])


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    count = draw(st.integers(1, 4))
    names = [draw(_names) for _ in range(count)]
    current = [draw(_tags) for _ in range(count)]
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = ["# generated", "apiVersion: apps/v1", "kind: Deployment", "metadata:", "  name: gen",
             "  annotations:", "    image-updater.io/policy: 'glob:*'", "spec:", "  template:", "    spec:",
             "      containers:"]
    for i, (name, tag) in enumerate(zip(names, current, strict=True)):
        value = f"{name}:{tag}"
        style = draw(_styles)
        rendered = {"plain": value, "single": f"'{value}'", "double": f'"{value}"'}[style]
        lines += [f"      - name: c{i}", f"        image: {rendered}{draw(_comments)}", "        ports: [80]"]
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    return text, names, current


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents(), new_tags=st.lists(_tags, min_size=4, max_size=4))
def test_apply_changes_only_the_spans(
    tmp_path_factory: pytest.TempPathFactory, doc: tuple[str, list[str], list[str]], new_tags: list[str]
) -> None:
    text, names, _current = doc
    root = tmp_path_factory.mktemp("gen")
    (root / "d.yaml").write_bytes(text.encode())
    discovery = discover_files({"d.yaml": text})
    assert len(discovery.targets) == len(names)
    chosen = {t.resolve_key: Resolution(new_tags[i]) for i, t in enumerate(discovery.targets)}
    # two containers of one image and tag share a key: the first answer wins for both
    result = build_plan(discovery, chosen)
    applied = apply_result(root, Planned(root, discovery, result, {"d.yaml": text}))
    assert applied.errors == ()
    after = (root / "d.yaml").read_bytes().decode()
    # outside the spans, nothing moved
    position, pieces = 0, []
    for change in sorted(applied.updates, key=lambda c: c.start):
        pieces.append(text[position : change.start])
        position = change.end
    pieces.append(text[position:])
    rest = after
    for piece in pieces:
        assert piece in rest
        rest = rest[rest.index(piece) + len(piece):]
    # re-parsed, each image holds exactly its new value, everything else is as it was
    new_values = {c.line: c.new for c in applied.updates}
    after_lines = after.replace("\r\n", "\n").split("\n")
    for t in discovery.targets:
        assert new_values.get(t.line, t.value) in after_lines[t.line - 1]
    before_doc = parse_yaml(text, filename="d.yaml").documents[0]
    after_doc = parse_yaml(after, filename="d.yaml").documents[0]
    assert _strip_images(before_doc) == _strip_images(after_doc)


def _strip_images(node: object) -> object:
    """The composed tree as plain values, with container images blanked."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    if isinstance(node, ScalarNode):
        return (node.value, node.style)
    if isinstance(node, SequenceNode):
        return [_strip_images(n) for n in node.value]
    if isinstance(node, MappingNode):
        return [(k.value, "IMAGE" if k.value == "image" else _strip_images(v)) for k, v in node.value]
    raise AssertionError(node)


def test_result_is_a_value() -> None:
    assert Result().to_dict() == {"updates": [], "unchanged": [], "skipped": [], "errors": []}


def test_equal_versions_spelled_differently_follow_the_current_tag_or_go_to_the_lexically_greatest() -> None:
    """The tie rule through discovery and planning, as a pass applies it (DESIGN: policy semantics)."""
    text = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  annotations:
    image-updater.io/automated: "true"
    image-updater.io/policy: "semver:*"
spec:
  template:
    spec:
      containers:
        - name: tagless
          image: example.com/app
        - name: word
          image: example.com/app:stable
        - name: plain
          image: example.com/app:1.0.0
        - name: prefixed
          image: example.com/app:v1.0.0
"""
    discovery = discover_files({"d.yaml": text})
    assert discovery.errors == ()
    tags = tag_table({"example.com/app": ["1.2.4", "v1.2.4", "1.2", "stable"]})
    result = build_plan(discovery, stub_resolve([t.resolve_key for t in discovery.targets], tags))
    new = {c.container: c.new for c in result.updates}
    assert new == {
        "tagless": "example.com/app:v1.2.4",  # no current version to follow: lexically greatest
        "word": "example.com/app:v1.2.4",
        "plain": "example.com/app:1.2.4",  # same prefix and part count as the current tag
        "prefixed": "example.com/app:v1.2.4",
    }
