"""Image references: Docker CLI normalisation, the tag grammar, digests, invalid inputs, formatting.

Vector tables are kept sorted by input; each row is one reference as users write it in manifests, Helm values
and kustomizations. A hypothesis property checks that formatting gives back exactly what was parsed.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from image_updater.errors import InvalidReference
from image_updater.references import (
    DOCKER_HUB,
    ImageReference,
    is_valid_tag,
    normalise_registry,
    parse_reference,
)

SHA = "sha256:" + "a" * 64
SHA_B = "sha256:" + "0123456789abcdef" * 4

# (written, registry, repository, tag, digest)
VALID = sorted(
    [
        ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", None, None),
        ("127.0.0.1:5000/team/app:1.0", "127.0.0.1:5000", "team/app", "1.0", None),
        ("Docker.IO/nginx", DOCKER_HUB, "library/nginx", None, None),
        ("REGISTRY.example.com/app:v1", "registry.example.com", "app", "v1", None),
        ("[::1]:5000/app:1", "[::1]:5000", "app", "1", None),
        ("[::1]/app", "[::1]", "app", None, None),
        ("[FE80::1]:443/app", "[fe80::1]:443", "app", None, None),
        ("a/b/c/d/e:1", DOCKER_HUB, "a/b/c/d/e", "1", None),
        ("bitnami/nginx:1.25.3-debian-11-r0", DOCKER_HUB, "bitnami/nginx", "1.25.3-debian-11-r0", None),
        ("docker.io/bitnami/redis", DOCKER_HUB, "bitnami/redis", None, None),
        ("docker.io/library/nginx:1.25", DOCKER_HUB, "library/nginx", "1.25", None),
        ("docker.io/nginx", DOCKER_HUB, "library/nginx", None, None),
        ("example.com/a__b/c--d/e.f_g:TAG_1", "example.com", "a__b/c--d/e.f_g", "TAG_1", None),
        ("gcr.io/nginx", "gcr.io", "nginx", None, None),
        ("ghcr.io/fluxcd/flux-cli:v2.2.3", "ghcr.io", "fluxcd/flux-cli", "v2.2.3", None),
        ("index.docker.io/library/nginx", DOCKER_HUB, "library/nginx", None, None),
        ("index.docker.io/nginx:1", DOCKER_HUB, "library/nginx", "1", None),
        ("localhost/app", "localhost", "app", None, None),
        ("localhost:5000/app:latest", "localhost:5000", "app", "latest", None),
        ("localhost", DOCKER_HUB, "library/localhost", None, None),
        ("localhost:5000", DOCKER_HUB, "library/localhost", "5000", None),
        ("my-registry.local:8443/ns/app@" + SHA, "my-registry.local:8443", "ns/app", None, SHA),
        ("nginx", DOCKER_HUB, "library/nginx", None, None),
        ("nginx:1.25.3-alpine", DOCKER_HUB, "library/nginx", "1.25.3-alpine", None),
        ("nginx:1.25@" + SHA, DOCKER_HUB, "library/nginx", "1.25", SHA),
        ("nginx@" + SHA_B, DOCKER_HUB, "library/nginx", None, SHA_B),
        ("public.ecr.aws/eks/aws-load-balancer-controller:v2.7.1", "public.ecr.aws",
         "eks/aws-load-balancer-controller", "v2.7.1", None),
        ("quay.io/prometheus/node-exporter:v1.7.0", "quay.io", "prometheus/node-exporter", "v1.7.0", None),
        ("registry-1.docker.io/grafana/grafana:10.2.3", DOCKER_HUB, "grafana/grafana", "10.2.3", None),
        ("registry.k8s.io/ingress-nginx/controller:v1.9.5@" + SHA, "registry.k8s.io",
         "ingress-nginx/controller", "v1.9.5", SHA),
        ("team/app:" + "x" * 128, DOCKER_HUB, "team/app", "x" * 128, None),
        ("ubuntu:22.04", DOCKER_HUB, "library/ubuntu", "22.04", None),
        ("x.y/z:_underscore-first", "x.y", "z", "_underscore-first", None),
    ]
)


@pytest.mark.parametrize(("written", "registry", "repository", "tag", "digest"), VALID)
def test_parse_valid(
    written: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(written)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ref.name == f"{registry}/{repository}"
    assert ref.effective_tag == (tag if tag is not None else "latest")


@pytest.mark.parametrize(("written", "registry", "repository", "tag", "digest"), VALID)
def test_round_trip_keeps_spelling(
    written: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    del registry, repository, tag, digest
    assert str(parse_reference(written)) == written


@pytest.mark.parametrize(
    "written",
    sorted(
        [
            "",
            " nginx",
            "-nginx",
            "/nginx",
            "UPPER/app",
            "a" * 256,
            "example.com/App:1",
            "example.com/app:",
            "example.com/app:-leading-dash",
            "example.com/app:.leading-dot",
            "example.com/app:" + "x" * 129,
            "example.com/app:a+b",
            "example.com/app:tag with space",
            "example.com/app@",
            "example.com/app@md5:abc",
            "example.com/app@sha256:" + "A" * 64,
            "example.com/app@sha256:" + "a" * 63,
            "example.com/app@sha256:" + "a" * 65,
            "example.com//app",
            "example.com/app/",
            "exa_mple.com/app",
            "-example.com/app",
            "example-.com/app",
            "example.com:port/app",
            "[::1]",
            "[zz::1]/app",
            "nginx ",
            "nginx\n",
            "nginx:1.0\n",
            "nginx:latest:1",
            "nginx__/x",
            "ngin--",
            "a/.b",
            "a/b.",
            "a/b___c",
            "a:b:c/d",
        ]
    ),
)
def test_parse_invalid(written: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(written)
    assert isinstance(info.value, ValueError)
    # the message names the input, so a report can point at it
    assert repr(written) in str(info.value)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(InvalidReference):
        parse_reference(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tag", "valid"),
    sorted(
        [
            ("", False),
            ("-1", False),
            (".1", False),
            ("0", True),
            ("1.2.3+build", False),
            ("1.2.3-rc.1", True),
            ("1.2.3_build", True),
            ("LATEST", True),
            ("_", True),
            ("a" * 128, True),
            ("a" * 129, False),
            ("a/b", False),
            ("a:b", False),
            ("caf\u00e9", False),
            ("latest", True),
            ("sha256-" + "a" * 64 + ".sig", True),
            ("v1.0\n", False),
            ("with space", False),
        ]
    ),
)
def test_is_valid_tag(tag: str, valid: bool) -> None:
    assert is_valid_tag(tag) is valid


@pytest.mark.parametrize(
    ("host", "normal"),
    sorted(
        [
            ("Docker.io", DOCKER_HUB),
            ("GHCR.IO", "ghcr.io"),
            ("docker.io", DOCKER_HUB),
            ("index.docker.io", DOCKER_HUB),
            ("localhost:5000", "localhost:5000"),
            ("registry-1.docker.io", DOCKER_HUB),
        ]
    ),
)
def test_normalise_registry(host: str, normal: str) -> None:
    assert normalise_registry(host) == normal


@pytest.mark.parametrize(
    ("written", "tag", "digest", "expected"),
    sorted(
        [
            ("127.0.0.1:5000/app", "2", None, "127.0.0.1:5000/app:2"),
            ("Docker.IO/nginx:1", "2", None, "Docker.IO/nginx:2"),
            ("docker.io/library/nginx:1.25", "1.27", None, "docker.io/library/nginx:1.27"),
            ("ghcr.io/o/app:v1@" + SHA, "v2", SHA_B, "ghcr.io/o/app:v2@" + SHA_B),
            ("index.docker.io/nginx", "1", None, "index.docker.io/nginx:1"),
            ("nginx", "1.27", None, "nginx:1.27"),
            ("nginx:1.25", "1.27", None, "nginx:1.27"),
            ("nginx:1.25@" + SHA, "1.27", None, "nginx:1.27"),
            ("nginx@" + SHA, "1.27", SHA_B, "nginx:1.27@" + SHA_B),
        ]
    ),
)
def test_with_tag_keeps_the_users_spelling(written: str, tag: str, digest: str | None, expected: str) -> None:
    new = parse_reference(written).with_tag(tag, digest)
    assert new == expected
    assert parse_reference(new).same_repository(parse_reference(written))


@pytest.mark.parametrize(("tag", "digest"), [("bad tag", None), ("", None), ("1", "sha256:short")])
def test_with_tag_refuses_invalid_values(tag: str, digest: str | None) -> None:
    with pytest.raises(InvalidReference):
        parse_reference("nginx:1").with_tag(tag, digest)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("docker.io/library/nginx", "nginx:1", True),
        ("index.docker.io/nginx", "registry-1.docker.io/library/nginx", True),
        ("GHCR.io/o/app", "ghcr.io/o/app:v1", True),
        ("ghcr.io/o/app", "ghcr.io/o/app2", False),
        ("localhost:5000/app", "localhost:5001/app", False),
        ("nginx", "bitnami/nginx", False),
        ("nginx", "gcr.io/nginx", False),
    ],
)
def test_same_repository(a: str, b: str, same: bool) -> None:
    assert parse_reference(a).same_repository(parse_reference(b)) is same
    assert parse_reference(b).same_repository(parse_reference(a)) is same


def test_reference_is_a_hashable_value() -> None:
    a, b = parse_reference("nginx:1"), parse_reference("nginx:1")
    assert a == b and hash(a) == hash(b)
    assert isinstance(a, ImageReference)
    with pytest.raises(AttributeError):
        a.tag = "2"  # type: ignore[misc]


# -- properties

_component = st.from_regex(r"[a-z0-9]{1,5}(?:(?:[._]|__|-{1,2})[a-z0-9]{1,5}){0,2}", fullmatch=True)
_host = st.one_of(
    st.just("localhost"),
    st.from_regex(r"[a-z0-9]{1,6}\.[a-z]{2,4}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{1,6}\.[a-z]{2,4}:[0-9]{1,5}", fullmatch=True),
    st.from_regex(r"127\.0\.0\.1:[0-9]{2,5}", fullmatch=True),
)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True)
_digest = st.from_regex(r"sha256:[a-f0-9]{64}", fullmatch=True)


@st.composite
def references(draw: st.DrawFn) -> str:
    host = draw(st.none() | _host)
    components = draw(st.lists(_component, min_size=1, max_size=3))
    if host is None and len(components) > 1 and "." in components[0]:
        # Docker's rule: a first segment with a dot names a registry, so it is no path component here
        components[0] = components[0].replace(".", "-")
    path = "/".join(components)
    text = f"{host}/{path}" if host else path
    if draw(st.booleans()):
        text += ":" + draw(_tag)
    if draw(st.booleans()):
        text += "@" + draw(_digest)
    return text


@settings(max_examples=200, deadline=None)
@given(references())
def test_property_parse_format_round_trip(text: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == text
    again = parse_reference(str(ref))
    assert again == ref
    # normalising twice changes nothing: the normal name parses to itself
    normal = parse_reference(ref.name)
    assert (normal.registry, normal.repository) == (ref.registry, ref.repository)


@settings(max_examples=200, deadline=None)
@given(references(), _tag)
def test_property_with_tag_changes_only_the_tag(text: str, tag: str) -> None:
    ref = parse_reference(text)
    new = parse_reference(ref.with_tag(tag))
    assert new.tag == tag and new.digest is None
    assert new.written_name == ref.written_name
    assert new.same_repository(ref)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_property_parse_never_crashes(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return
    assert str(ref) == text
