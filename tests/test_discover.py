"""Discovery unit tests: annotations (native, Flux v1), Flux HelmRelease values shapes, setter markers,
policy files and Flux ImagePolicy objects, precedence between origins, the prefilter and resolve keys.
The golden trees (test_golden.py) cover the same ground end to end with byte-exact files."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from image_updater.discover import Discovery, Target, discover_files
from image_updater.discover._globs import InvalidGlob, compile_path_glob
from image_updater.errors import InvalidPolicy
from image_updater.policies import Status, TagInfo, parse_policy


def d(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def deployment(annotations: str = "", containers: str = "- name: app\n  image: ghcr.io/acme/app:v1.0.0\n",
               kind: str = "Deployment") -> str:
    ann = textwrap.indent(d(annotations), "    ") if annotations else ""
    return (
        f"apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: web\n  namespace: shop\n"
        + (f"  annotations:\n{ann}" if ann else "")
        + "spec:\n  template:\n    spec:\n      containers:\n"
        + textwrap.indent(d(containers), "      ")
    )


def policy_file(name: str, image: str, policy: str, targets: str = "", namespace: str | None = None,
                extra: str = "") -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    out = (f"apiVersion: image-updater.io/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: {name}{ns}\n"
           f"spec:\n  image: {image}\n  policy: '{policy}'\n")
    if extra:
        out += textwrap.indent(d(extra), "  ")
    if targets:
        out += "  targets:\n" + textwrap.indent(d(targets), "    ")
    return out


def targets(discovery: Discovery) -> list[tuple[str, int, str | None, str, str, str]]:
    return [(t.file, t.line, t.container, t.value, str(t.policy), t.origin) for t in discovery.targets]


def messages(discovery: Discovery) -> list[str]:
    return [e.message for e in discovery.errors]


# -- native annotations ----------------------------------------------------------------------------------


def test_native_policy_applies_to_every_container_and_per_container_wins() -> None:
    text = deployment(
        """
        image-updater.io/policy: semver:^1
        image-updater.io/policy.sidecar: glob:main-*
        image-updater.io/exclude.sidecar: main-bad*
        """,
        """
        - name: app
          image: ghcr.io/acme/app:v1.0.0
        - name: sidecar
          image: ghcr.io/acme/sidecar:main-1
        """,
    )
    found = discover_files({"d.yaml": text})
    assert targets(found) == [
        ("d.yaml", 15, "app", "ghcr.io/acme/app:v1.0.0", "semver:^1", "annotation"),
        ("d.yaml", 17, "sidecar", "ghcr.io/acme/sidecar:main-1", "glob:main-*", "annotation"),
    ]
    sidecar = found.targets[1]
    assert "main-bad*" in sidecar.policy.exclude
    assert found.targets[0].resource == "Deployment/shop/web"
    assert sidecar.policy_source == "d.yaml:8"


TWO_CONTAINERS = """
- name: web
  image: ghcr.io/acme/web:v1.0.0-alpine
- name: other
  image: ghcr.io/acme/other:v1.0.0
"""


def test_container_modifiers_apply_under_the_workload_wide_policy() -> None:
    text = deployment(
        """
        image-updater.io/policy: semver:^1
        image-updater.io/exclude: v1.9*
        image-updater.io/pin-digest.web: "true"
        image-updater.io/exclude.web: v1.5*
        image-updater.io/min-age.web: 2h
        image-updater.io/platforms.web: linux/arm64
        image-updater.io/flavour.web: alpine
        image-updater.io/filter.web: ^v(?P<v>.*)$
        image-updater.io/extract.web: $v
        image-updater.io/prerelease.web: "true"
        """,
        TWO_CONTAINERS,
    )
    found = discover_files({"d.yaml": text})
    assert found.errors == ()
    web, other = found.targets
    assert (web.container, other.container) == ("web", "other")
    assert web.policy == parse_policy("semver:^1", {
        "pin-digest": "true", "exclude": "v1.5*", "min-age": "2h", "platforms": "linux/arm64",
        "flavour": "alpine", "filter": "^v(?P<v>.*)$", "extract": "$v", "prerelease": "true",
    })
    # the container's exclude replaces the workload-wide one; the other container keeps the workload's
    assert "v1.9*" not in web.policy.exclude
    assert other.policy == parse_policy("semver:^1", {"exclude": "v1.9*"})
    assert web.needs_digest and not other.needs_digest
    assert web.policy_source == other.policy_source == "d.yaml:7"


def test_container_modifiers_apply_under_flux_v1_policies_too() -> None:
    text = deployment(
        """
        fluxcd.io/automated: "true"
        fluxcd.io/tag.web: semver:~1.0
        image-updater.io/pin-digest.web: "true"
        image-updater.io/min-age.other: 1h
        """,
        TWO_CONTAINERS,
    )
    found = discover_files({"d.yaml": text})
    assert found.errors == ()
    assert [(t.container, t.policy) for t in found.targets] == [
        ("web", parse_policy("semver:~1.0", {"pin-digest": "true"})),
        ("other", parse_policy("glob:*", {"min-age": "1h"})),
    ]


def test_container_modifier_naming_a_missing_container_is_an_error() -> None:
    text = deployment(
        """
        image-updater.io/policy: semver:^1
        image-updater.io/pin-digest.wbe: "true"
        """,
        TWO_CONTAINERS,
    )
    found = discover_files({"d.yaml": text})
    assert [(e.file, e.line) for e in found.errors] == [("d.yaml", 8)]
    assert "image-updater.io/pin-digest.wbe names container 'wbe'" in found.errors[0].message
    assert [t.policy for t in found.targets] == [parse_policy("semver:^1")] * 2


def test_native_annotation_mistakes_are_errors_at_their_line() -> None:
    text = deployment(
        """
        image-updater.io/automated: "maybe"
        image-updater.io/policy.app: semver:^1
        image-updater.io/polciy: semver:^1
        image-updater.io/policy.nope: semver:^1
        image-updater.io/min-age.app: forever
        """
    )
    found = discover_files({"d.yaml": text})
    lines = sorted((e.line, e.message.split(":")[0]) for e in found.errors)
    assert [line for line, _ in lines] == [7, 9, 10, 11]
    assert "unknown annotation image-updater.io/polciy" in messages(found)[1]
    assert "names container 'nope'" in " ".join(messages(found))
    # the invalid min-age makes the app's policy invalid: no target, never "match all"
    assert found.targets == ()


def test_every_policy_and_modifier_mistake_is_reported_at_once() -> None:
    text = deployment(
        """
        image-updater.io/policy: semver:^^1
        image-updater.io/min-age: forever
        image-updater.io/pin-digest.web: maybe
        image-updater.io/exclude.web: "[x"
        image-updater.io/policy.other: glob:[y
        image-updater.io/platforms.other: linux/
        image-updater.io/filter.other: (unclosed
        image-updater.io/extract.other: $1
        image-updater.io/flavour: a b
        image-updater.io/prerelease.web: "true"
        """,
        TWO_CONTAINERS,
    )
    found = discover_files({"d.yaml": text})
    assert found.targets == ()
    got = [(e.file, e.line, e.message.split(":")[0]) for e in found.errors]
    assert got == [
        ("d.yaml", 7, "annotation image-updater.io/policy"),
        ("d.yaml", 8, "annotation image-updater.io/min-age"),
        ("d.yaml", 9, "annotation image-updater.io/pin-digest.web"),
        ("d.yaml", 10, "annotation image-updater.io/exclude.web"),
        ("d.yaml", 11, "annotation image-updater.io/policy.other"),
        ("d.yaml", 12, "annotation image-updater.io/platforms.other"),
        ("d.yaml", 13, "annotation image-updater.io/filter.other"),
        # extract.other is right as such; with its filter broken it is not judged again
        ("d.yaml", 15, "annotation image-updater.io/flavour"),
    ]
    assert "invalid policy 'semver:^^1'" in found.errors[0].message
    assert "invalid pin-digest 'maybe'" in found.errors[2].message


def test_a_wrong_combination_is_reported_at_the_modifier_for_each_container_once() -> None:
    text = deployment(
        """
        image-updater.io/policy: semver:^1
        image-updater.io/filter.web: ^v(?P<ver>.*)$
        image-updater.io/extract: $ver
        """,
        TWO_CONTAINERS,
    )
    found = discover_files({"d.yaml": text})
    # web's filter has the group; other has no filter at all
    assert [t.container for t in found.targets] == ["web"]
    assert [(e.line, e.message) for e in found.errors] == [
        (9, "annotation image-updater.io/extract: invalid extract '$ver': extract needs a filter regex "
            "(for container other)"),
    ]


def test_flux_pattern_and_native_modifier_mistakes_are_both_reported() -> None:
    text = deployment(
        """
        fluxcd.io/automated: "true"
        fluxcd.io/tag.web: glob:[x
        image-updater.io/min-age.web: soon
        image-updater.io/platforms.other: nope
        """,
        TWO_CONTAINERS,
    )
    found = discover_files({"d.yaml": text})
    assert found.targets == ()
    assert [(e.line, e.message.split(":")[0]) for e in found.errors] == [
        (8, "annotation fluxcd.io/tag.web"),
        (9, "annotation image-updater.io/min-age.web"),
        (10, "annotation image-updater.io/platforms.other"),
    ]


def test_container_without_policy_is_reported_once_the_workload_opts_in() -> None:
    text = deployment(
        "image-updater.io/policy.app: semver:^1\n",
        """
        - name: app
          image: ghcr.io/acme/app:v1.0.0
        - name: other
          image: ghcr.io/acme/other:v1.0.0
        """,
    )
    found = discover_files({"d.yaml": text})
    assert [t.container for t in found.targets] == ["app"]
    assert [(s.line, s.image, s.reason) for s in found.skipped] == [
        (15, "ghcr.io/acme/other", "no policy for container other"),
    ]


@pytest.mark.parametrize(("annotation", "reason"), [
    ('image-updater.io/locked: "true"', "locked (image-updater.io/locked)"),
    ('image-updater.io/automated: "false"', 'automation disabled (image-updater.io/automated: "false")'),
    ('fluxcd.io/locked: "true"', "locked (fluxcd.io/locked)"),
    ('fluxcd.io/ignore: "true"', "ignored (fluxcd.io/ignore)"),
])
def test_blocked_workloads_skip_every_origin(annotation: str, reason: str) -> None:
    text = deployment(
        f"image-updater.io/policy: semver:^1\n{annotation}\n",
        """
        - name: app
          image: ghcr.io/acme/app:v1.0.0 # {"$imagepolicy": "app"}
        - name: other
          image: ghcr.io/acme/app:v1.0.0
        """,
    )
    found = discover_files({"d.yaml": text, "p.yaml": policy_file("app", "ghcr.io/acme/app", "semver:^1",
                                                                     "- path: d.yaml\n")})
    assert found.targets == ()
    assert [(s.line, s.reason) for s in found.skipped] == [(14, reason), (16, reason)]


# -- Flux v1 annotations ---------------------------------------------------------------------------------


def test_flux_automated_defaults_to_glob_star_and_reads_every_spelling() -> None:
    text = deployment(
        """
        fluxcd.io/automated: "true"
        fluxcd.io/tag.a: semver:~1.2
        flux.weave.works/tag.a: glob:ignored-because-fluxcd.io-wins
        filter.fluxcd.io/b: regexp:^v1\\.
        flux.weave.works/tag.c: develop-*
        """,
        """
        - {name: a, image: "ghcr.io/acme/a:1.2.0"}
        - {name: b, image: "ghcr.io/acme/b:v1.0"}
        - {name: c, image: "ghcr.io/acme/c:develop-1"}
        - {name: d, image: "ghcr.io/acme/d:main"}
        """,
    )
    found = discover_files({"d.yaml": text})
    assert [(t.container, str(t.policy)) for t in found.targets] == [
        ("a", "semver:~1.2"), ("b", "regex:^v1\\."), ("c", "glob:develop-*"), ("d", "glob:*"),
    ]
    assert found.errors == ()


def test_flux_tags_without_automation_are_skipped_not_updated() -> None:
    found = discover_files({"d.yaml": deployment("fluxcd.io/tag.app: semver:^1\n")})
    assert found.targets == ()
    assert [s.reason for s in found.skipped] == [
        'not automated (fluxcd.io/tag.app is set but no fluxcd.io/automated: "true")'
    ]


def test_flux_invalid_pattern_is_an_error_never_match_all() -> None:
    annotations = 'fluxcd.io/automated: "true"\nfluxcd.io/tag.app: glob:[x\n'
    found = discover_files({"d.yaml": deployment(annotations)})
    assert found.targets == ()
    assert [(e.line, e.message) for e in found.errors] == [
        (8, "annotation fluxcd.io/tag.app: invalid glob '[x': unclosed '['")
    ]


HELM_RELEASE = """
apiVersion: helm.fluxcd.io/v1
kind: HelmRelease
metadata:
  name: app
  namespace: demo
  annotations:
    fluxcd.io/automated: "true"
{extra}spec:
  values:
{values}"""


@pytest.mark.parametrize(("values", "expected"), [
    # the five shapes of the Flux docs, for the top-level "chart-image"
    ("image: repo/app:1.0.0\n", [("chart-image", "repo/app:1.0.0", "reference", "docker.io/repo/app")]),
    ("image: repo/app\ntag: 1.0.0\n", [("chart-image", "1.0.0", "tag", "docker.io/repo/app")]),
    ("registry: quay.io\nimage: repo/app\ntag: 1.0.0\n",
     [("chart-image", "1.0.0", "tag", "quay.io/repo/app")]),
    ("image:\n  repository: repo/app\n  tag: 1.0.0\n",
     [("chart-image", "1.0.0", "tag", "docker.io/repo/app")]),
    ("image:\n  registry: quay.io\n  repository: repo/app\n  tag: 1.0.0\n",
     [("chart-image", "1.0.0", "tag", "quay.io/repo/app")]),
    ("image:\n  registry: quay.io\n  repository: repo/app:1.0.0\n",
     [("chart-image", "repo/app:1.0.0", "reference", "quay.io/repo/app")]),
    # named images one level down
    ("cache:\n  image: redis:7.0.0\nworker:\n  image:\n    repository: acme/worker\n    tag: '2'\n",
     [("cache", "redis:7.0.0", "reference", "docker.io/library/redis"),
      ("worker", "2", "tag", "docker.io/acme/worker")]),
    # deeper images are not Flux v1 containers
    ("a:\n  b:\n    image: redis:7.0.0\n", []),
])
def test_flux_helm_release_shapes(values: str, expected: list[tuple[str, str, str, str]]) -> None:
    text = d(HELM_RELEASE).format(extra="", values=textwrap.indent(values, "    "))
    found = discover_files({"r.yaml": text})
    assert [(t.container, t.value, t.part, t.image.name) for t in found.targets] == expected
    assert found.errors == ()


def test_flux_helm_release_annotation_mappings_win() -> None:
    extra = textwrap.indent(d("""
        repository.fluxcd.io/app: deep.image.repo
        tag.fluxcd.io/app: deep.image.version
        fluxcd.io/tag.app: semver:~1.0
    """), "    ")
    values = "deep:\n  image:\n    repo: acme/app\n    version: 1.0.0\n"
    text = d(HELM_RELEASE).format(extra=extra, values=textwrap.indent(values, "    "))
    found = discover_files({"r.yaml": text})
    assert [(t.container, t.value, t.part, str(t.policy)) for t in found.targets] == [
        ("app", "1.0.0", "tag", "semver:~1.0")
    ]


# -- setter markers --------------------------------------------------------------------------------------

FLUX_POLICIES = d("""
    apiVersion: image.toolkit.fluxcd.io/v1beta2
    kind: ImageRepository
    metadata: {name: podinfo, namespace: flux-system}
    spec: {image: ghcr.io/stefanprodan/podinfo}
    ---
    apiVersion: image.toolkit.fluxcd.io/v1beta2
    kind: ImagePolicy
    metadata: {name: podinfo, namespace: flux-system}
    spec:
      imageRepositoryRef: {name: podinfo}
      policy: {semver: {range: 6.x}}
    ---
    apiVersion: image.toolkit.fluxcd.io/v1
    kind: ImagePolicy
    metadata: {name: orphan, namespace: flux-system}
    spec:
      imageRepositoryRef: {name: missing}
      policy: {alphabetical: {order: desc}}
""")


def test_marker_suffixes_and_spelling() -> None:
    values = d("""
        a: docker.io/stefanprodan/podinfo:6.0.0 # {"$imagepolicy": "flux-system:podinfo"}
        b: ghcr.io/stefanprodan/podinfo:6.0.0 # {"$imagepolicy": "flux-system:podinfo"}
        c: 6.0.0 # {"$imagepolicy": "flux-system:podinfo:tag"}
        d: ghcr.io/stefanprodan/podinfo # {"$imagepolicy": "flux-system:podinfo:name"}
        e: sha256:0000 #{"$imagepolicy":"flux-system:podinfo:digest"}
        f: "ghcr.io/stefanprodan/podinfo:6.0.0"   # {"$imagepolicy": "podinfo"}
    """)
    found = discover_files({"v.yaml": values, "flux.yaml": FLUX_POLICIES})
    rows = [(t.line, t.part, t.image.name, t.image.tag, t.write_name) for t in found.targets]
    assert rows == [
        # another repository: Flux writes the policy's image there
        (1, "reference", "ghcr.io/stefanprodan/podinfo", "6.0.0", "ghcr.io/stefanprodan/podinfo"),
        (2, "reference", "ghcr.io/stefanprodan/podinfo", "6.0.0", "ghcr.io/stefanprodan/podinfo"),
        (3, "tag", "ghcr.io/stefanprodan/podinfo", "6.0.0", "ghcr.io/stefanprodan/podinfo"),
        # :name and :digest take the current tag from the :tag marker of the same policy in the mapping
        (4, "name", "ghcr.io/stefanprodan/podinfo", "6.0.0", "ghcr.io/stefanprodan/podinfo"),
        (5, "digest", "ghcr.io/stefanprodan/podinfo", "6.0.0", "ghcr.io/stefanprodan/podinfo"),
        (6, "reference", "ghcr.io/stefanprodan/podinfo", "6.0.0", "ghcr.io/stefanprodan/podinfo"),
    ]
    assert {t.origin for t in found.targets} == {"marker"}
    assert found.targets[4].resolve_key.policy.pin_digest  # a digest field asks for the digest
    assert found.errors == ()


def test_marker_problems_are_reported_with_their_line() -> None:
    values = d("""
        a: x:1 # {"$imagepolicy": "flux-system:orphan"}
        b: x:1 # {"$imagepolicy": "nope:podinfo"}
        c: x:1 # {"$imagepolicy": "flux-system:podinfo:size"}
        d: x:1 # {"$imagepolicy": flux-system:podinfo}
        # {"$imagepolicy": "flux-system:podinfo"}
        e:  # {"$imagepolicy": "flux-system:podinfo"}
        f: |
          quoted: x:1 # {"$imagepolicy": "flux-system:podinfo"}
        g: not a reference # {"$imagepolicy": "flux-system:podinfo"}
    """)
    found = discover_files({"v.yaml": values, "flux.yaml": FLUX_POLICIES})
    assert found.targets == ()
    got = [(e.line, e.message) for e in found.errors]
    assert [line for line, _ in got] == [1, 2, 3, 4, 5, 6, 9]
    assert "ImageRepository flux-system:missing is not in the scanned tree" in got[0][1]
    assert "no policy nope:podinfo" in got[1][1]
    assert "unknown suffix 'size'" in got[2][1]
    assert "not valid JSON" in got[3][1]
    assert "does not follow a scalar value" in got[4][1]
    assert "is not an image reference" in got[6][1]


def test_marker_name_alone_must_be_unique() -> None:
    other = policy_file("podinfo", "ghcr.io/acme/podinfo", "semver:^1", namespace="apps")
    found = discover_files({"v.yaml": 'a: x:1 # {"$imagepolicy": "podinfo"}\n', "flux.yaml": FLUX_POLICIES,
                            "p.yaml": other})
    assert found.targets == ()
    assert "ambiguous" in messages(found)[0]


def test_flux_image_policy_conversion() -> None:
    text = d("""
        apiVersion: image.toolkit.fluxcd.io/v1beta2
        kind: ImageRepository
        metadata: {name: repo}
        spec:
          image: ghcr.io/acme/app
          exclusionList: ['^.*\\.sig$', '(?P<bad>-debug)$']
        ---
        apiVersion: image.toolkit.fluxcd.io/v1beta2
        kind: ImagePolicy
        metadata: {name: ts}
        spec:
          imageRepositoryRef: {name: repo}
          digestReflectionPolicy: IfNotPresent
          filterTags: {pattern: '^main-[a-f0-9]+-(?P<ts>[0-9]+)', extract: '$ts'}
          policy: {numerical: {order: asc}}
    """)
    marked = 'a: ghcr.io/acme/app:main-a-1 # {"$imagepolicy": "ts"}\n'
    found = discover_files({"p.yaml": text, "v.yaml": marked})
    (target,) = found.targets
    policy = target.policy
    assert str(policy) == "numerical:asc" and policy.pin_digest and policy.extract == "$ts"
    tags = [TagInfo(t) for t in ("main-a-1", "main-b-30-debug", "main-c-20", "main-d-3", "x.sig")]
    chosen = policy.choose(tags, current="main-a-1")
    assert chosen is not None and chosen.tag == "main-c-20"


def test_flux_exclusion_list_excludes_without_touching_the_filter_groups() -> None:
    # exclusionList regexes are their own check (RE2 has no lookahead to fold them into the filter): their
    # groups cannot shift the filter's group numbers, and the verdict names the regex that excluded
    policy = parse_policy("numerical", {"filter": "^v(?P<n>[0-9]+)-([0-9]+)", "extract": "$2"})
    policy = dataclasses.replace(policy, exclude_regex=("(a)(b)", "[(]x"))
    tags = [TagInfo(t) for t in ("v9-1", "v1-5", "v2-7ab", "v3-8(x", "w1-9")]
    assert policy.choose(tags) == TagInfo("v1-5")
    reasons = {v.tag: (v.status, v.reason) for v in policy.explain(tags)}
    assert reasons["v2-7ab"] == (Status.EXCLUDED, "matches exclusionList regex '(a)(b)'")
    assert reasons["v3-8(x"][0] is Status.INVALID  # "(" is no tag character; the grammar comes first
    semver = dataclasses.replace(parse_policy("semver:*"), exclude_regex=("-debug$",))
    assert semver.choose([TagInfo("1.0.0"), TagInfo("2.0.0-debug")], current="1.0.0") == TagInfo("1.0.0")
    assert semver.choose([TagInfo("1.0.0"), TagInfo("2.0.0-debug")], current="1.0.0-debug") is None
    with pytest.raises(InvalidPolicy, match="invalid exclusionList regex"):
        dataclasses.replace(policy, exclude_regex=("(?!x)",))


# -- policy files ----------------------------------------------------------------------------------------


def test_policy_file_targets_select_files_kinds_and_containers() -> None:
    policy = policy_file("app", "ghcr.io/acme/app", "semver:^1", """
        - path: apps/**/*.yaml
          kinds: [Deployment]
          containers: [app]
    """)
    files = {
        "policies/app.yaml": policy,
        "apps/prod/d.yaml": deployment(containers="""
            - {name: app, image: ghcr.io/acme/app:v1.0.0}
            - {name: other, image: ghcr.io/acme/app:v1.0.0}
            - {name: app2, image: ghcr.io/acme/other:v1.0.0}
        """),
        "apps/s.yaml": deployment(kind="StatefulSet"),
        "other/d.yaml": deployment(),
    }
    found = discover_files(files)
    assert [(t.file, t.container, t.origin) for t in found.targets] == [
        ("apps/prod/d.yaml", "app", "policy-file")
    ]
    assert found.targets[0].policy_source == "policies/app.yaml:1"


def test_policy_file_mistakes() -> None:
    text = d("""
        apiVersion: image-updater.io/v1alpha1
        kind: ImagePolicy
        metadata: {name: bad}
        spec:
          image: ghcr.io/acme/app
          policy: semver:^1
          exclude: {a: b}
          pin_digest: perhaps
          targets:
            - path: /etc/**
            - kinds: [Deployment]
            - {path: "a[b", colour: red}
        ---
        apiVersion: image-updater.io/v1beta9
        kind: ImagePolicy
        metadata: {name: future}
        ---
        apiVersion: image-updater.io/v1alpha1
        kind: ImagePolicy
        metadata: {name: bad}
        spec: {image: ghcr.io/acme/app, policy: "semver:^1"}
    """)
    found = discover_files({"p.yaml": text})
    got = [(e.line, e.message) for e in found.errors]
    assert [line for line, _ in got] == [7, 8, 10, 11, 12, 12, 14, 18]
    assert "exclude must be a list of strings" in got[0][1]
    assert "true or false" in got[1][1]
    assert "must be relative" in got[2][1]
    assert "needs a path" in got[3][1]
    assert "unknown field 'colour'" in got[4][1] or "unclosed" in got[4][1]
    assert "unsupported image-updater.io/v1beta9" in got[6][1]
    assert "defined twice" in got[7][1]


def test_precedence_marker_then_annotation_then_policy_file() -> None:
    files = {
        "p.yaml": policy_file("app", "ghcr.io/acme/app", "semver:^1", "- path: d.yaml\n"),
        "m.yaml": policy_file("marker", "ghcr.io/acme/app", "semver:~1.2"),
        "d.yaml": deployment(
            "image-updater.io/policy.b: semver:~1.0\n",
            """
            - {name: a, image: "ghcr.io/acme/app:v1.0.0"}
            - {name: b, image: "ghcr.io/acme/app:v1.0.0"}
            - name: c
              image: ghcr.io/acme/app:v1.0.0 # {"$imagepolicy": "marker"}
            """,
        ),
    }
    found = discover_files(files)
    assert [(t.container, str(t.policy), t.origin) for t in found.targets] == [
        ("a", "semver:^1", "policy-file"), ("b", "semver:~1.0", "annotation"), ("c", "semver:~1.2", "marker"),
    ]


def test_two_policy_files_with_different_policies_for_one_field_conflict() -> None:
    files = {
        "p.yaml": policy_file("one", "ghcr.io/acme/app", "semver:^1", "- path: '**'\n"),
        "q.yaml": policy_file("two", "ghcr.io/acme/app", "semver:~1.2", "- path: d.yaml\n"),
        "d.yaml": deployment(),
    }
    found = discover_files(files)
    assert found.targets == ()
    assert messages(found) == [
        "conflicting policies for this field: semver:^1 (p.yaml:1), semver:~1.2 (q.yaml:1)"
    ]


def test_policy_dirs_contribute_definitions_only() -> None:
    found = discover_files(
        {"d.yaml": deployment()},
        extra_policy_files=[("/etc/policies/app.yaml",
                             policy_file("app", "ghcr.io/acme/app", "semver:^1", "- path: '*.yaml'\n"))],
    )
    assert [(t.file, t.policy_source) for t in found.targets] == [("d.yaml", "/etc/policies/app.yaml:1")]


# -- parsing, prefilter, aliases, keys --------------------------------------------------------------------


def test_prefilter_skips_files_that_cannot_hold_targets() -> None:
    files = {f"cm{i}.yaml": f"kind: ConfigMap\ndata: {{image: 'nginx:1.{i}'}}\n" for i in range(5)}
    files["broken.yaml"] = "a: [unclosed\n"  # never parsed: no error
    files["d.yaml"] = deployment("image-updater.io/policy: semver:^1\n")
    found = discover_files(files)
    assert found.files_scanned == 7 and found.files_parsed == 1
    assert found.errors == () and len(found.targets) == 1


def test_unparsable_file_with_a_hint_is_an_error_and_others_proceed() -> None:
    files = {"bad.yaml": "metadata:\n  annotations:\n    image-updater.io/policy: semver:^1\n  - oops\n",
             "d.yaml": deployment("image-updater.io/policy: semver:^1\n")}
    found = discover_files(files)
    assert [e.file for e in found.errors] == ["bad.yaml"]
    assert found.errors[0].message.startswith("not parsed, left untouched")
    assert [t.file for t in found.targets] == ["d.yaml"]


@pytest.mark.parametrize("broken_policy", [
    policy_file("app", "ghcr.io/acme/app", "semver:^1", "- path: 'apps/*.yaml'\n") + "  oops: [\n",
    policy_file("app", "ghcr.io/acme/app", "semver:^^1", "- path: 'apps/*.yaml'\n"),
    policy_file("app", "ghcr.io/acme/app", "semver:^1", "- path: 'apps/[z-a].yaml'\n"),
])
def test_a_broken_file_is_reported_even_when_the_policy_file_targeting_it_is_broken_too(
    broken_policy: str,
) -> None:
    values = "app:\n  image:\n    repository: ghcr.io/acme/app\n    tag: 1.0.0\n  - oops\n"
    found = discover_files({"policies/app.yaml": broken_policy, "apps/values.yaml": values})
    assert sorted({e.file or "" for e in found.errors}) == ["apps/values.yaml", "policies/app.yaml"], found
    for error in found.errors:
        # the entry carries file and line; the message does not say them again
        assert error.file is not None and error.file not in error.message, error
    (values_error,) = [e for e in found.errors if e.file == "apps/values.yaml"]
    assert values_error.line == 5
    assert values_error.message.startswith("not parsed, left untouched: not valid YAML: "), values_error


def test_a_broken_policy_file_reaches_only_the_files_its_targets_name() -> None:
    """A policy file whose targets still read (only its policy is wrong) makes the files they name parsed, so
    their own problems show; a broken file elsewhere (a Helm template, say) is not reported because of it.
    Without readable targets (a misspelt key), any file could have been meant."""
    broken = "app:\n  image:\n    repository: ghcr.io/acme/app\n    tag: 1.0.0\n  - oops\n"
    files = {"apps/values.yaml": broken, "charts/x/templates/deployment.yaml": broken}
    bad_policy = policy_file("app", "ghcr.io/acme/app", "semver:^^1", "- path: 'apps/*.yaml'\n")
    found = discover_files({"policies/app.yaml": bad_policy, **files})
    assert sorted({e.file or "" for e in found.errors}) == ["apps/values.yaml", "policies/app.yaml"], found
    misspelt = policy_file("app", "ghcr.io/acme/app", "semver:^1", "- path: 'apps/*.yaml'\n").replace(
        "targets:", "taregts:"
    )
    found = discover_files({"policies/app.yaml": misspelt, **files})
    assert sorted({e.file or "" for e in found.errors}) == [
        "apps/values.yaml", "charts/x/templates/deployment.yaml", "policies/app.yaml",
    ], found.errors


def test_container_behind_an_alias_is_an_error() -> None:
    text = d("""
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Pod
          metadata:
            name: a
            annotations: {image-updater.io/policy: "semver:^1"}
          spec:
            containers:
            - &c {name: app, image: "ghcr.io/acme/app:v1.0.0"}
        - apiVersion: v1
          kind: Pod
          metadata:
            name: b
            annotations: {image-updater.io/policy: "semver:^1"}
          spec:
            containers: [*c]
    """)
    found = discover_files({"l.yaml": text})
    assert found.targets == ()
    assert [(e.line, e.image) for e in found.errors] == [(11, "ghcr.io/acme/app")]
    assert "alias" in found.errors[0].message


def test_resolve_keys() -> None:
    text = deployment(
        "image-updater.io/policy: semver:^1\nimage-updater.io/policy.d: digest\n",
        """
        - {name: a, image: "ghcr.io/acme/app"}
        - {name: b, image: "ghcr.io/acme/app:v1.0.0@sha256:%s"}
        - {name: c, image: "ghcr.io/acme/app:v1.0.0"}
        - {name: d, image: "ghcr.io/acme/app"}
        """ % ("0" * 64),
    )
    keys = [t.resolve_key for t in discover_files({"d.yaml": text}).targets]
    assert [(k.image, k.current_tag, str(k.policy), k.policy.pin_digest) for k in keys] == [
        ("ghcr.io/acme/app", "latest", "semver:^1", False),
        ("ghcr.io/acme/app", "v1.0.0", "semver:^1", True),
        ("ghcr.io/acme/app", "v1.0.0", "semver:^1", False),
        ("ghcr.io/acme/app", "latest", "digest", False),
    ]
    assert keys[0] != keys[1] and keys[2] in set(keys)


def test_helm_map_tag_and_digest_resolve_together() -> None:
    values = "image:\n  repository: acme/app\n  tag: v1.0.0\n  digest: sha256:%s\n" % ("0" * 64)
    found = discover_files({"values.yaml": values, "p.yaml": policy_file("a", "acme/app", "semver:^1",
                                                                             "- path: values.yaml\n")})
    tag, digest = found.targets
    assert (tag.part, digest.part) == ("tag", "digest")
    assert tag.resolve_key == digest.resolve_key and tag.resolve_key.policy.pin_digest


EMPTY_TAG = "tag is empty; set it to the current tag to let image-updater manage it"


@pytest.mark.parametrize("parser", ["c", "pure"])
@pytest.mark.parametrize(("values", "line"), [
    ("image: {repository: ghcr.io/acme/app, tag: }\n", 1),
    ("image: {repository: ghcr.io/acme/app, tag: null}\n", 1),
    ("image:\n  repository: ghcr.io/acme/app\n  tag:\n", 3),
    ("image:\n  repository: ghcr.io/acme/app\n  tag: null\n", 3),
    ("image:\n  repository: ghcr.io/acme/app\n  tag: ~\n", 3),
    ("image:\n  repository: ghcr.io/acme/app\n  tag: &t\n", 3),
    ("image:\n  repository: ghcr.io/acme/app\n  tag: # pinned by the chart\n", 3),
    ("image:\n  registry: ghcr.io\n  repository: acme/app\n  tag:\n  digest:\n", 4),
    # Flux v1's `image: repo` with a sibling `tag`: writing `repo:<tag>` would double the tag
    ("image: ghcr.io/acme/app\ntag:\n", 2),
    ("image:\n  repository: ghcr.io/acme/app\n  tag:", 3),  # no final newline
])
def test_an_empty_helm_tag_is_skipped_and_the_file_still_updates(
    values: str, line: int, parser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from image_updater.discover import _discover
    from image_updater.yamledit import parse_yaml

    monkeypatch.setattr(_discover, "parse_yaml", lambda text, filename: parse_yaml(
        text, filename=filename, parser=parser))  # type: ignore[arg-type]
    text = values + "\nworker:\n  image: ghcr.io/acme/app:v1.0.0\n"
    found = discover_files({"values.yaml": text, "p.yaml": policy_file(
        "app", "ghcr.io/acme/app", "semver:^1", "- path: values.yaml\n")})
    assert found.errors == ()
    assert [(t.line, t.value) for t in found.targets] == [(text.count("\n"), "ghcr.io/acme/app:v1.0.0")]
    assert all(t.start < t.end for t in found.targets)
    assert [(s.file, s.line, s.image, s.reason) for s in found.skipped] == [
        ("values.yaml", line, "ghcr.io/acme/app", EMPTY_TAG)
    ]


def test_an_empty_tag_under_flux_v1_annotations_is_skipped() -> None:
    extra = textwrap.indent(d("""
        repository.fluxcd.io/app: deep.image.repo
        tag.fluxcd.io/app: deep.image.version
    """), "    ")
    values = "image:\n  repository: acme/chart\n  tag:\ndeep:\n  image:\n    repo: acme/app\n    version:\n"
    text = d(HELM_RELEASE).format(extra=extra, values=textwrap.indent(values, "    "))
    found = discover_files({"r.yaml": text})
    assert found.targets == () and found.errors == ()
    assert [(s.line, s.image, s.reason) for s in found.skipped] == [
        (14, "acme/chart", EMPTY_TAG), (18, "acme/app", EMPTY_TAG),
    ]


def test_a_quoted_empty_tag_is_a_string_and_written() -> None:
    # `tag: ""` (the chart's appVersion) is a value of its own that can be overwritten: a target
    values = 'image:\n  repository: ghcr.io/acme/app\n  tag: ""\n'
    found = discover_files({"values.yaml": values, "p.yaml": policy_file(
        "app", "ghcr.io/acme/app", "semver:^1", "- path: values.yaml\n")})
    assert [(t.line, t.value, t.part, t.end - t.start) for t in found.targets] == [(3, "", "tag", 2)]


def test_an_empty_kustomize_new_tag_or_marked_value_is_never_a_target() -> None:
    kustomization = "images:\n- name: ghcr.io/acme/app\n  newTag:\n"
    marked = 'app:\n  tag: # {"$imagepolicy": "flux-system:podinfo:tag"}\n  other: 1\n'
    found = discover_files({
        "kustomization.yaml": kustomization, "v.yaml": marked, "flux.yaml": FLUX_POLICIES,
        "p.yaml": policy_file("app", "ghcr.io/acme/app", "semver:^1", "- path: '*.yaml'\n"),
    })
    assert found.targets == ()
    assert [(s.file, s.line) for s in found.skipped] == [("kustomization.yaml", 2)]
    assert [(e.file, e.line, e.message) for e in found.errors] == [
        ("v.yaml", 2, "setter marker on an empty value")
    ]


def test_target_is_a_frozen_value() -> None:
    (target,) = discover_files({"d.yaml": deployment("image-updater.io/policy: semver:^1\n")}).targets
    assert isinstance(target, Target)
    with pytest.raises(AttributeError):
        target.line = 3  # type: ignore[misc]


@pytest.mark.parametrize(("glob", "yes", "no"), [
    ("apps/**", ["apps/a.yaml", "apps/x/y/z.yml"], ["apps.yaml", "other/apps/a.yaml"]),
    ("**/kustomization.yaml", ["kustomization.yaml", "a/b/kustomization.yaml"], ["a/kustomization.yml"]),
    ("apps/*/values.yaml", ["apps/x/values.yaml"], ["apps/x/y/values.yaml"]),
    ("apps", ["apps/a.yaml"], ["appsx/a.yaml"]),
    ("./a/[!b]?.yaml", ["a/cd.yaml"], ["a/bd.yaml", "a/c/d.yaml"]),
    (".", ["x.yaml", "a/b.yaml"], []),
])
def test_path_globs(glob: str, yes: list[str], no: list[str]) -> None:
    pattern = compile_path_glob(glob)
    assert all(pattern.matches(p) for p in yes)
    assert not any(pattern.matches(p) for p in no)


@pytest.mark.parametrize("glob", ["", "/abs/**", "../up", "a/../b", "a[b", "apps/[z-a]*.yaml", "x" * 1025])
def test_invalid_path_globs(glob: str) -> None:
    with pytest.raises(InvalidGlob):
        compile_path_glob(glob)


def test_markers_quoted_in_comments_or_strings() -> None:
    values = d("""
        # documentation: write  image: x:1 # {"$imagepolicy": "flux-system:nothing"}
        a: "ghcr.io/stefanprodan/podinfo:6.0.0" # note # {"$imagepolicy": "flux-system:nothing"}
        b: "say #hi" # {"$imagepolicy": "flux-system:podinfo:tag"}
    """)
    found = discover_files({"v.yaml": values, "flux.yaml": FLUX_POLICIES})
    assert found.errors == ()
    assert [(t.line, t.value, t.part) for t in found.targets] == [(3, "say #hi", "tag")]


def test_no_route_emits_a_target_with_an_empty_span(monkeypatch: pytest.MonkeyPatch) -> None:
    # the last guard: even if a finder took an empty scalar for a value (as libyaml's "" plain style once
    # made every finder do), discovery reports it as skipped instead of planning an edit apply must refuse
    from image_updater.discover import _markers

    monkeypatch.setattr(_markers, "scalar", lambda node: node.value if node is not None else None)
    marked = 'app:\n  tag: # {"$imagepolicy": "flux-system:podinfo:tag"}\n  other: 1\n'
    found = discover_files({"v.yaml": marked, "flux.yaml": FLUX_POLICIES})
    assert found.targets == () and found.errors == ()
    assert [(s.file, s.line, s.reason) for s in found.skipped] == [("v.yaml", 2, EMPTY_TAG)]


def test_an_extract_no_policy_uses_is_still_judged() -> None:
    text = deployment(
        """
        image-updater.io/automated: "true"
        image-updater.io/filter.web: ^v(?P<ver>.*)$
        image-updater.io/extract.web: $version
        image-updater.io/extract.other: $1
        """,
        TWO_CONTAINERS,
    )
    found = discover_files({"d.yaml": text})
    assert found.targets == ()
    assert [(e.line, e.message) for e in found.errors] == [
        (9, "annotation image-updater.io/extract.web: invalid extract '$version': filter has no group named "
            "'version'"),
        (10, "annotation image-updater.io/extract.other: invalid extract '$1': extract needs a filter regex"),
    ]
