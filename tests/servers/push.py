"""The tests' image pusher: the demo's (``image_updater.demo.push``) plus auth, bulk pushes, reads, deletes.

Images are built by :mod:`image_updater.demo.push`, so the demo, the tests and the benchmarks push the very
same bytes. This module adds Basic and Bearer token auth, bulk pushes for the benchmarks,
:func:`seed_storage` (the same images written straight into a storage directory), and reading and deleting
manifests and tags.

Facts about distribution 2.8 this module relies on: ``DELETE`` needs a digest, never a tag; ``tags/list``
ignores ``?n=``.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from image_updater.demo import push as _images
from image_updater.demo.push import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_ACCEPT,
    MEDIA_TYPE_FAMILIES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Blob,
    MediaTypes,
    Platform,
    make_config_blob,
    make_image_manifest,
    make_layer,
    push_error,
    repository_scopes,
    rfc3339,
)
from image_updater.errors import PushError

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "MANIFEST_ACCEPT",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "Blob",
    "ImagePusher",
    "Manifest",
    "Platform",
    "PushError",
    "rfc3339",
    "seed_storage",
]


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry serves it."""

    media_type: str
    digest: str
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)



def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="x",service="y",scope="a b"`` -> ("bearer", {...}). Quoted values may contain commas."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().strip(",").strip().lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            end = len(rest) if end < 0 else end
            params[key] = rest[i + 1 : end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
        i = rest.find(",", i)
        i = len(rest) if i < 0 else i + 1
    return scheme.lower(), params


class ImagePusher(_images.ImagePusher):
    """Push test images to the registry at ``url`` (``http://127.0.0.1:PORT``).

    Auth is learnt from the first 401: Basic with ``username``/``password``, or the Bearer token flow (the
    token is fetched from the challenge's realm, with the same credentials when given, and cached per scope
    until ``expires_in``). ``ca_file`` trusts a test CA for https registries and https token realms.
    Safe to share between threads: each thread gets its own keep-alive client (``max_connections`` each).
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        verify: bool = True,
        timeout: float = 30.0,
        max_connections: int = 16,
        media_types: MediaTypes = "oci",
    ) -> None:
        super().__init__(
            url,
            ca_file=ca_file,
            verify=verify,
            timeout=timeout,
            max_connections=max_connections,
            media_types=media_types,
        )
        self._credentials = (username, password or "") if username is not None else None
        self._scheme: str | None = None  # "basic" or "bearer" once a challenge was seen
        self._bearer: dict[str, str] = {}
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self.token_fetches = 0
        """How many tokens this pusher fetched (for tests of the token issuer)."""

    # -- pushing --------------------------------------------------------------------------------------------

    def push_many(
        self,
        repository: str,
        tags: Mapping[str, datetime | None] | Iterable[str],
        *,
        platforms: Sequence[str] = ("linux/amd64",),
        annotations: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        media_types: MediaTypes | None = None,
    ) -> dict[str, str]:
        """Push several tags (``{tag: created}``, or names without build time); return ``{tag: digest}``."""
        items = tags.items() if isinstance(tags, Mapping) else ((tag, None) for tag in tags)
        return {
            tag: self.push(
                repository,
                tag,
                created=created,
                platforms=platforms,
                annotations=annotations,
                labels=labels,
                media_types=media_types,
            )
            for tag, created in items
        }

    def push_bulk(
        self,
        images: Mapping[str, Mapping[str, datetime | None] | Iterable[str]],
        *,
        workers: int = 8,
        platform: str = "linux/amd64",
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, dict[str, str]]:
        """Push many repositories fast: ``{repo: {tag: created} or [tags]}`` -> ``{repo: {tag: digest}}``.

        For benchmarks: one layer shared by every image (uploaded once, then cross-repository mounted), one
        config per tag (distinct, so every tag has its own digest), no existence checks; three requests per
        tag over keep-alive connections, spread over ``workers`` threads; a tag whose push hits a transport
        error is pushed again (up to 3 attempts). ``progress(done, total)`` is called after every 1,000
        tags and at the end. :func:`seed_storage` writes the very same images straight into a storage
        directory, many times faster.
        """
        family = self.media_types
        manifest_type = MEDIA_TYPE_FAMILIES[family][0]
        target = Platform.parse(platform)
        jobs = _bulk_jobs(images)
        if not jobs:
            return {}
        layer, diff_id = _bulk_layer(family)
        repositories = list(jobs)
        self._upload_blob(repositories[0], layer, check_exists=True)

        def push_one(repo: str, tag: str, created: datetime | None) -> tuple[str, str, str]:
            config, manifest = _bulk_image(family, repo, tag, target, created, layer, diff_id)
            for attempt in range(3):
                try:
                    # A retry starts a new upload session; the manifest PUT is idempotent.
                    self._upload_blob(repo, config, check_exists=False)
                    return repo, tag, self._put_manifest(repo, tag, manifest_type, manifest)
                except httpx.TransportError:
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

        results: dict[str, dict[str, str]] = {repo: {} for repo in repositories}
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            mounts = [
                pool.submit(self._mount_blob, repo, layer.digest, repositories[0])
                for repo in repositories[1:]
            ]
            for mount in mounts:
                mount.result()
            pushed = [
                pool.submit(push_one, repo, tag, created)
                for repo, tags in jobs.items()
                for tag, created in tags
            ]
            for done, future in enumerate(pushed, 1):
                repo, tag, digest = future.result()
                results[repo][tag] = digest
                if progress is not None and (done % 1000 == 0 or done == len(pushed)):
                    progress(done, len(pushed))
        return results

    def retag(self, repository: str, source: str, tag: str) -> str:
        """Point ``tag`` at the manifest ``source`` (a tag or digest) refers to; return its digest."""
        manifest = self.manifest(repository, source)
        return self._put_manifest(repository, tag, manifest.media_type, manifest.content)

    # -- reading and deleting -------------------------------------------------------------------------------

    def manifest(self, repository: str, reference: str) -> Manifest:
        """GET a manifest (by tag or digest) with all four manifest media types accepted."""
        response = self._request(
            "GET",
            f"{self.url}/v2/{repository}/manifests/{reference}",
            repository_scopes(repository, "pull"),
            headers={"Accept": MANIFEST_ACCEPT},
            what=f"get manifest {repository}:{reference}",
        )
        return Manifest(
            media_type=response.headers.get("Content-Type", "").split(";")[0].strip(),
            digest=response.headers["Docker-Content-Digest"],
            content=response.content,
        )

    def digest(self, repository: str, reference: str) -> str:
        """The manifest digest of a tag, by HEAD."""
        response = self._request(
            "HEAD",
            f"{self.url}/v2/{repository}/manifests/{reference}",
            repository_scopes(repository, "pull"),
            headers={"Accept": MANIFEST_ACCEPT},
            what=f"head manifest {repository}:{reference}",
        )
        return response.headers["Docker-Content-Digest"]

    def tags(self, repository: str) -> list[str]:
        """All tags of a repository, following ``Link`` pages."""
        url: httpx.URL | None = httpx.URL(f"{self.url}/v2/{repository}/tags/list")
        found: list[str] = []
        while url is not None:
            response = self._request(
                "GET", url, repository_scopes(repository, "pull"), what=f"list tags of {repository}"
            )
            found.extend(response.json().get("tags") or [])
            following = response.links.get("next", {}).get("url")
            url = response.url.join(following) if following else None
        return found

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest (the registry needs ``delete_enabled``); its tags go with it."""
        self._request(
            "DELETE",
            f"{self.url}/v2/{repository}/manifests/{digest}",
            repository_scopes(repository, "delete"),
            expected=(202,),
            what=f"delete {repository}@{digest}",
        )

    def delete_tag(self, repository: str, tag: str) -> str:
        """Delete the manifest ``tag`` points at and return its digest.

        distribution 2.8 cannot delete a tag alone: every tag pointing at the same manifest disappears too.
        """
        digest = self.digest(repository, tag)
        self.delete_manifest(repository, digest)
        return digest

    # -- internals ------------------------------------------------------------------------------------------

    def _mount_blob(self, repository: str, digest: str, source: str) -> None:
        url = httpx.URL(
            f"{self.url}/v2/{repository}/blobs/uploads/", params={"mount": digest, "from": source}
        )
        response = self._request(
            "POST",
            url,
            (*repository_scopes(repository, "pull,push"), *repository_scopes(source, "pull")),
            expected=(201, 202),
            what=f"mount blob {digest} from {source} into {repository}",
        )
        if response.status_code == 202:
            # The registry declined the mount and opened an upload instead; a plain upload is not possible
            # here without the data, so report it rather than leave an image without its layer.
            raise push_error(response, f"registry refused to mount {digest} from {source} into {repository}")

    def _request(
        self,
        method: str,
        url: str | httpx.URL,
        scopes: tuple[str, ...],
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        expected: tuple[int, ...] = (200,),
        what: str,
    ) -> httpx.Response:
        sent = dict(headers or {})
        authorization = self._authorization(scopes, refresh=False)
        if authorization:
            sent["Authorization"] = authorization
        response = self._client.request(method, url, headers=sent, content=content)
        if response.status_code == 401 and self._learn(response, had_authorization=bool(authorization)):
            # A Bearer challenge names the scope this request needs (a HEAD asks for pull only); asking for
            # it together with ours lets the cached token serve the pushes that follow, too.
            _, params = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
            needed = tuple(dict.fromkeys((*scopes, *params.get("scope", "").split())))
            authorization = self._authorization(scopes, refresh=True, request=needed)
            if authorization:
                sent["Authorization"] = authorization
            response = self._client.request(method, url, headers=sent, content=content)
        if response.status_code not in expected:
            raise push_error(response, what)
        return response

    def _learn(self, response: httpx.Response, *, had_authorization: bool) -> bool:
        """Record the auth scheme a 401 asks for; True when a retry with credentials makes sense."""
        scheme, params = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
        with self._lock:
            if scheme == "basic" and self._credentials is not None:
                self._scheme = "basic"
                # Basic credentials that were sent and refused stay refused; only a bare request retries.
                return not had_authorization
            if scheme == "bearer" and params.get("realm"):
                # A cached token may have expired or lack a scope: one retry with a fresh token.
                self._scheme = "bearer"
                self._bearer = params
                return True
        return False

    def _authorization(
        self, scopes: tuple[str, ...], *, refresh: bool, request: tuple[str, ...] | None = None
    ) -> str | None:
        """The Authorization header for a request needing ``scopes``; a token is cached per ``scopes`` and
        fetched (for the scopes in ``request``, default ``scopes``) when missing, expired or ``refresh``."""
        if self._scheme == "basic" and self._credentials is not None:
            user, password = self._credentials
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        if self._scheme != "bearer":
            return None
        key = tuple(sorted(scopes))
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and not refresh and cached[1] > time.monotonic():
                return f"Bearer {cached[0]}"
            params: dict[str, str | list[str]] = {"scope": list(request or key)}
            if self._bearer.get("service"):
                params["service"] = self._bearer["service"]
            response = self._client.get(
                self._bearer["realm"],
                params=params,
                auth=self._credentials if self._credentials is not None else httpx.USE_CLIENT_DEFAULT,
            )
            if response.status_code != 200:
                raise push_error(response, "fetch token")
            body = response.json()
            token = body.get("token") or body.get("access_token")
            if not token:
                raise push_error(response, "token response without a token")
            # Renew a little early so a token never expires between our check and the registry's.
            lifetime = float(body.get("expires_in") or 60)
            self._tokens[key] = (token, time.monotonic() + max(lifetime - 5, 1))
            self.token_fetches += 1
            return f"Bearer {token}"


def _bulk_jobs(
    images: Mapping[str, Mapping[str, datetime | None] | Iterable[str]],
) -> dict[str, list[tuple[str, datetime | None]]]:
    return {
        repo: list(tags.items()) if isinstance(tags, Mapping) else [(tag, None) for tag in tags]
        for repo, tags in images.items()
    }


def _bulk_layer(family: MediaTypes) -> tuple[Blob, str]:
    data, diff_id = make_layer(b"image-updater shared benchmark layer\n", "image-updater-test")
    return Blob.of(MEDIA_TYPE_FAMILIES[family][3], data), diff_id


def _bulk_image(
    family: MediaTypes,
    repository: str,
    tag: str,
    platform: Platform,
    created: datetime | None,
    layer: Blob,
    diff_id: str,
) -> tuple[Blob, bytes]:
    config = make_config_blob(family, repository, tag, platform, created, None, [diff_id])
    return config, make_image_manifest(family, config, [layer], None)


def seed_storage(
    storage_dir: str | os.PathLike[str],
    images: Mapping[str, Mapping[str, datetime | None] | Iterable[str]],
    *,
    platform: str = "linux/amd64",
    media_types: MediaTypes = "oci",
) -> dict[str, dict[str, str]]:
    """Write the images :meth:`ImagePusher.push_bulk` would push straight into a registry's storage directory.

    Byte for byte the same blobs, manifests and digests, in distribution's filesystem layout
    (``docker/registry/v2/{blobs,repositories}``), without one HTTP request: for benchmark set-ups with
    100,000 tags. Pass the same directory as ``RegistryServer(storage_dir=...)``; seeding before or while the
    registry runs both work (it reads links and blobs from disk on every request). The HTTP path remains the
    one that proves the registry accepts these images; ``tests/test_registry_fixture.py`` checks that both
    paths produce identical registries.
    """
    root = os.path.join(os.fspath(storage_dir), "docker", "registry", "v2")
    target = Platform.parse(platform)
    layer, diff_id = _bulk_layer(media_types)
    made: set[str] = set()

    def write(path: str, data: bytes) -> None:
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        with open(path, "wb") as out:
            out.write(data)

    def put_blob(blob: Blob) -> None:
        hex_digest = blob.digest.split(":", 1)[1]
        write(os.path.join(root, "blobs", "sha256", hex_digest[:2], hex_digest, "data"), blob.data)

    def link(repo_dir: str, *parts: str) -> None:
        digest = parts[-1]
        write(os.path.join(repo_dir, *parts[:-1], "sha256", digest.split(":", 1)[1], "link"), digest.encode())

    put_blob(layer)
    results: dict[str, dict[str, str]] = {}
    for repo, tags in _bulk_jobs(images).items():
        repo_dir = os.path.join(root, "repositories", *repo.split("/"))
        link(repo_dir, "_layers", layer.digest)
        pushed = results.setdefault(repo, {})
        for tag, created in tags:
            config, manifest = _bulk_image(media_types, repo, tag, target, created, layer, diff_id)
            put_blob(config)
            link(repo_dir, "_layers", config.digest)
            manifest_blob = Blob.of(MEDIA_TYPE_FAMILIES[media_types][0], manifest)
            put_blob(manifest_blob)
            link(repo_dir, "_manifests", "revisions", manifest_blob.digest)
            tag_dir = os.path.join(repo_dir, "_manifests", "tags", tag)
            link(tag_dir, "index", manifest_blob.digest)
            write(os.path.join(tag_dir, "current", "link"), manifest_blob.digest.encode())
            pushed[tag] = manifest_blob.digest
    return results


