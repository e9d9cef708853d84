"""Registries behind a proxy named by the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY): real
registries, a real forward proxy (tests/servers/forward_proxy.py: absolute-form for HTTP, CONNECT for HTTPS).

The registry client speaks to httpcore's pools itself (image_updater.registry.wire), so the proxy rules
that httpx's ``trust_env`` used to apply are ours to keep: these tests hold them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from image_updater.plan import Resolution, ResolveKey
from image_updater.policies import parse_policy
from image_updater.registry import RegistryClient, RegistryOptions, RetryPolicy, resolve
from image_updater.registry.wire import Url, _environment_proxies, bypasses_proxy
from tests.fixtures.registry import RegistryFactory
from tests.servers import ImagePusher, RegistryServer, TLSFiles
from tests.servers.forward_proxy import ForwardProxy

T = TypeVar("T")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
                   "http_proxy", "https_proxy", "all_proxy", "no_proxy")
SECRET = "pr0xy-Pa55-c4nary"


@pytest.fixture(autouse=True)
def _clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxy() -> Any:
    with ForwardProxy() as started:
        yield started


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def resolve_tag(tmp_path: Path, image: str, *options: RegistryOptions) -> Resolution:
    key = ResolveKey(image, parse_policy("semver:*"), None)

    async def scenario() -> Resolution:
        async with RegistryClient(options, docker_config=tmp_path / "none.json",
                                  retry=RetryPolicy(2, 0.001, 0.01)) as client:
            return (await resolve(client, [key]))[key]

    return run(scenario())


def test_plain_http_registry_through_http_proxy(
    registry: RegistryServer, pusher: ImagePusher, proxy: ForwardProxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pusher.push("team/app", "1.2.0")
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    options = RegistryOptions(prefix=registry.host, insecure=True)
    result = resolve_tag(tmp_path, f"{registry.host}/team/app", options)
    assert result.tag == "1.2.0", result.error
    # absolute-form requests through the proxy: the tag list (semver needs nothing else)
    assert ("GET", f"http://{registry.host}/v2/team/app/tags/list?n=1000") in proxy.seen


def test_no_proxy_bypasses_and_lower_case_wins(
    registry: RegistryServer, pusher: ImagePusher, proxy: ForwardProxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pusher.push("team/app", "1.0.0")
    options = RegistryOptions(prefix=registry.host, insecure=True)
    monkeypatch.setenv("http_proxy", proxy.url())
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there: must not be used
    monkeypatch.setenv("NO_PROXY", "example.com, 127.0.0.0/8")
    assert resolve_tag(tmp_path, f"{registry.host}/team/app", options).tag == "1.0.0"
    assert proxy.seen == []  # bypassed by the CIDR entry
    monkeypatch.setenv("NO_PROXY", "example.com")
    assert resolve_tag(tmp_path, f"{registry.host}/team/app", options).tag == "1.0.0"
    assert proxy.seen  # lower-case http_proxy, not the dead HTTP_PROXY


def test_tls_registry_through_connect_tunnel(
    registry_factory: RegistryFactory, tls_ca: TLSFiles, proxy: ForwardProxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = registry_factory(tls=tls_ca)
    with ImagePusher(server.url, ca_file=str(tls_ca.ca_file)) as pusher:
        pusher.push("secure/app", "2.0.0")
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    options = RegistryOptions(prefix=server.host, ca_file=str(tls_ca.ca_file))
    result = resolve_tag(tmp_path, f"{server.host}/secure/app", options)
    assert result.tag == "2.0.0", result.error
    assert ("CONNECT", server.host) in proxy.seen  # TLS end to end: the proxy saw only the tunnel
    assert all(method == "CONNECT" for method, _ in proxy.seen)


def test_proxy_credentials_are_sent_and_never_shown(
    registry: RegistryServer, pusher: ImagePusher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    pusher.push("team/app", "1.0.0")
    options = RegistryOptions(prefix=registry.host, insecure=True)
    with ForwardProxy(credentials=("ops", SECRET)) as guarded:
        monkeypatch.setenv("ALL_PROXY", guarded.url(f"ops:{SECRET}"))
        assert resolve_tag(tmp_path, f"{registry.host}/team/app", options).tag == "1.0.0"
        assert guarded.refused == 0
        monkeypatch.setenv("ALL_PROXY", guarded.url("ops:wrong-" + SECRET))
        refused = resolve_tag(tmp_path, f"{registry.host}/team/app", options)
    assert refused.tag is None and refused.error is not None
    assert "407" in refused.error and registry.host in refused.error
    assert SECRET not in refused.error


def test_unreachable_proxy_is_an_unreachable_registry(
    registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://ops:{SECRET}@127.0.0.1:9")
    options = RegistryOptions(prefix=registry.host, insecure=True)
    result = resolve_tag(tmp_path, f"{registry.host}/team/app", options)
    assert result.error is not None and "cannot connect" in result.error
    assert "through the proxy" in result.error
    assert SECRET not in result.error


@pytest.mark.parametrize(
    ("url", "no_proxy", "bypassed"),
    [
        ("https://ghcr.io/v2/", "*", True),
        ("https://ghcr.io/v2/", "", False),
        ("https://ghcr.io/v2/", "ghcr.io", True),
        ("https://ghcr.io/v2/", ".ghcr.io", True),
        ("https://pkg.ghcr.io/v2/", "ghcr.io", True),
        ("https://notghcr.io/v2/", "ghcr.io", False),
        ("https://ghcr.io/v2/", "ghcr.io:443", True),
        ("https://ghcr.io/v2/", "ghcr.io:5000", False),
        ("http://10.1.2.3:5000/v2/", "10.0.0.0/8", True),
        ("http://10.1.2.3:5000/v2/", "10.1.2.3", True),
        ("http://10.1.2.3:5000/v2/", "10.1.2.3:5000", True),
        ("http://10.1.2.3:5000/v2/", "11.0.0.0/8, junk/99", False),
        ("http://[::1]:5000/v2/", "::1", True),
        ("http://[::1]:5000/v2/", "[::1]:5000", True),
        ("https://registry.example.com./v2/", "example.com", True),
        ("https://example.com/v2/", " , *.example.com", True),
    ],
)
def test_no_proxy_rules(url: str, no_proxy: str, bypassed: bool) -> None:
    assert bypasses_proxy(Url.parse(url), no_proxy) is bypassed


def test_environment_proxies_lower_case_first_and_empty_is_unset() -> None:
    found = _environment_proxies({
        "HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128", "HTTP_PROXY": "",
        "NO_PROXY": "localhost", "FTP_PROXY": "ftp://x", "PATH": "/bin",
    })
    assert found == {"https": "http://lower:3128", "no": "localhost"}
