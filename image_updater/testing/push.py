"""Push images to a registry through its HTTP API, without docker: what the tests, demo and benchmarks need.

Every tag gets a real image: a gzipped tar layer, a config blob (``created``, ``architecture``, ``os``,
``variant``, labels, the layer's ``diff_id``) and an OCI image manifest; a multi-platform tag gets one
manifest per platform under an OCI image index. Docker schema 2 media types are available too, so the
registry client is tested against both families.

Facts about distribution 2.8 this module relies on: a manifest PUT must carry its media type as
Content-Type; a monolithic blob upload is ``POST /blobs/uploads/`` then ``PUT <Location>&digest=...`` and the
Location's ``_state`` parameter must survive (httpx's ``params=`` would replace the query, hence
``URL.copy_add_param``); ``DELETE`` needs a digest, never a tag; ``tags/list`` ignores ``?n=``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import ssl
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

import httpx

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

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

MediaTypes = Literal["oci", "docker"]
_TYPES: dict[str, tuple[str, str, str, str]] = {
    # family: (manifest, index, config, layer)
    "oci": (OCI_MANIFEST, OCI_INDEX, OCI_CONFIG, OCI_LAYER),
    "docker": (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_CONFIG, DOCKER_LAYER),
}


class PushError(RuntimeError):
    """The registry refused or failed a request; the message names method, URL, status and body."""

    def __init__(self, response: httpx.Response, what: str) -> None:
        self.status_code = response.status_code
        body = response.text[:500]
        request = response.request
        super().__init__(f"{what}: {request.method} {request.url} -> {response.status_code} {body}".rstrip())


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/amd64``, ``linux/arm64/v8``, ``linux/arm/v7``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform must be os/arch[/variant]: {text!r}")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def as_dict(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes
    digest: str

    @classmethod
    def of(cls, media_type: str, data: bytes) -> Blob:
        return cls(media_type, data, "sha256:" + hashlib.sha256(data).hexdigest())

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry serves it."""

    media_type: str
    digest: str
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


def rfc3339(moment: datetime) -> str:
    """UTC, ``Z`` suffix, fractional seconds only when present (as docker and buildkit write ``created``)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _layer(content: bytes, name: str) -> tuple[bytes, str]:
    """A deterministic gzipped tar holding one file; returns (blob, diff_id of the uncompressed tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def _dumps(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


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


class ImagePusher:
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
        self.url = url.rstrip("/")
        self.media_types: MediaTypes = media_types
        self._credentials = (username, password or "") if username is not None else None
        tls: ssl.SSLContext | bool = verify
        if ca_file is not None:
            tls = ssl.create_default_context(cafile=str(ca_file))
        self._tls = tls
        self._timeout = timeout
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        # One httpx.Client per thread: sharing one sync client between threads lost connections under load
        # ("Bad file descriptor" from httpcore after ~100,000 requests), and a client per thread still keeps
        # its connections alive.
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()
        self._scheme: str | None = None  # "basic" or "bearer" once a challenge was seen
        self._bearer: dict[str, str] = {}
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self.token_fetches = 0
        """How many tokens this pusher fetched (for tests of the token issuer)."""

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    @property
    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(
                verify=self._tls, timeout=self._timeout, trust_env=False, limits=self._limits
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- pushing --------------------------------------------------------------------------------------------

    def push(
        self,
        repository: str,
        tag: str,
        *,
        created: datetime | None = None,
        platforms: Sequence[str] = ("linux/amd64",),
        annotations: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        media_types: MediaTypes | None = None,
    ) -> str:
        """Push ``repository:tag``; return the manifest digest (the index digest for several platforms).

        ``created=None`` pushes an image without a build time (the config has no ``created``), which policies
        ordering by build time must rank below every dated image. ``annotations`` go on the top-level
        manifest or index (OCI only).
        """
        family = media_types or self.media_types
        manifest_type, index_type, _, _ = _TYPES[family]
        if annotations and family == "docker":
            raise ValueError("Docker schema 2 manifests carry no annotations; use media_types='oci'")
        if not platforms:
            raise ValueError("at least one platform is needed")
        parsed = [Platform.parse(p) for p in platforms]
        single = len(parsed) == 1
        entries = []
        for platform in parsed:
            layer_data, diff_id = _layer(f"{repository}:{tag} {platform}\n".encode(), "image-updater-test")
            layer = Blob.of(_TYPES[family][3], layer_data)
            self._upload_blob(repository, layer, check_exists=True)
            config = _config_blob(family, repository, tag, platform, created, labels, [diff_id])
            self._upload_blob(repository, config, check_exists=True)
            manifest = _image_manifest(family, config, [layer], annotations if single else None)
            if single:
                return self._put_manifest(repository, tag, manifest_type, manifest)
            digest = self._put_manifest(repository, None, manifest_type, manifest)
            entries.append(
                {
                    "mediaType": manifest_type,
                    "digest": digest,
                    "size": len(manifest),
                    "platform": platform.as_dict(),
                }
            )
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": index_type, "manifests": entries}
        if annotations:
            index["annotations"] = dict(annotations)
        return self._put_manifest(repository, tag, index_type, _dumps(index))

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
        manifest_type = _TYPES[family][0]
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
            _scopes(repository, "pull"),
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
            _scopes(repository, "pull"),
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
                "GET", url, _scopes(repository, "pull"), what=f"list tags of {repository}"
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
            _scopes(repository, "delete"),
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

    def _upload_blob(self, repository: str, blob: Blob, *, check_exists: bool) -> None:
        scopes = _scopes(repository, "pull,push")
        if check_exists:
            head = self._request(
                "HEAD",
                f"{self.url}/v2/{repository}/blobs/{blob.digest}",
                scopes,
                expected=(200, 404),
                what=f"check blob {blob.digest} in {repository}",
            )
            if head.status_code == 200:
                return
        started = self._request(
            "POST",
            f"{self.url}/v2/{repository}/blobs/uploads/",
            scopes,
            expected=(202,),
            what=f"start upload to {repository}",
        )
        location = started.url.join(started.headers["Location"]).copy_add_param("digest", blob.digest)
        self._request(
            "PUT",
            location,
            scopes,
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
            expected=(201,),
            what=f"upload blob {blob.digest} to {repository}",
        )

    def _mount_blob(self, repository: str, digest: str, source: str) -> None:
        url = httpx.URL(
            f"{self.url}/v2/{repository}/blobs/uploads/", params={"mount": digest, "from": source}
        )
        response = self._request(
            "POST",
            url,
            (*_scopes(repository, "pull,push"), *_scopes(source, "pull")),
            expected=(201, 202),
            what=f"mount blob {digest} from {source} into {repository}",
        )
        if response.status_code == 202:
            # The registry declined the mount and opened an upload instead; a plain upload is not possible
            # here without the data, so report it rather than leave an image without its layer.
            raise PushError(response, f"registry refused to mount {digest} from {source} into {repository}")

    def _put_manifest(self, repository: str, reference: str | None, media_type: str, content: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        self._request(
            "PUT",
            f"{self.url}/v2/{repository}/manifests/{reference or digest}",
            _scopes(repository, "pull,push"),
            content=content,
            headers={"Content-Type": media_type},
            expected=(201,),
            what=f"put manifest {repository}:{reference or digest}",
        )
        return digest

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
            raise PushError(response, what)
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
                raise PushError(response, "fetch token")
            body = response.json()
            token = body.get("token") or body.get("access_token")
            if not token:
                raise PushError(response, "token response without a token")
            # Renew a little early so a token never expires between our check and the registry's.
            lifetime = float(body.get("expires_in") or 60)
            self._tokens[key] = (token, time.monotonic() + max(lifetime - 5, 1))
            self.token_fetches += 1
            return f"Bearer {token}"


def _config_blob(
    family: MediaTypes,
    repository: str,
    tag: str,
    platform: Platform,
    created: datetime | None,
    labels: Mapping[str, str] | None,
    diff_ids: list[str],
) -> Blob:
    config: dict[str, Any] = {}
    if created is not None:
        config["created"] = rfc3339(created)
    config.update(platform.as_dict())
    config["config"] = {"Labels": dict(labels)} if labels else {}
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    # The history line names the image, so two tags with the same build time still differ in digest.
    history: dict[str, str] = {"created_by": f"image-updater test push {repository}:{tag} {platform}"}
    if created is not None:
        history["created"] = rfc3339(created)
    config["history"] = [history]
    return Blob.of(_TYPES[family][2], _dumps(config))


def _image_manifest(
    family: MediaTypes, config: Blob, layers: Sequence[Blob], annotations: Mapping[str, str] | None
) -> bytes:
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": _TYPES[family][0],
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return _dumps(manifest)


def _bulk_jobs(
    images: Mapping[str, Mapping[str, datetime | None] | Iterable[str]],
) -> dict[str, list[tuple[str, datetime | None]]]:
    return {
        repo: list(tags.items()) if isinstance(tags, Mapping) else [(tag, None) for tag in tags]
        for repo, tags in images.items()
    }


def _bulk_layer(family: MediaTypes) -> tuple[Blob, str]:
    data, diff_id = _layer(b"image-updater shared benchmark layer\n", "image-updater-test")
    return Blob.of(_TYPES[family][3], data), diff_id


def _bulk_image(
    family: MediaTypes,
    repository: str,
    tag: str,
    platform: Platform,
    created: datetime | None,
    layer: Blob,
    diff_id: str,
) -> tuple[Blob, bytes]:
    config = _config_blob(family, repository, tag, platform, created, None, [diff_id])
    return config, _image_manifest(family, config, [layer], None)


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
            manifest_blob = Blob.of(_TYPES[media_types][0], manifest)
            put_blob(manifest_blob)
            link(repo_dir, "_manifests", "revisions", manifest_blob.digest)
            tag_dir = os.path.join(repo_dir, "_manifests", "tags", tag)
            link(tag_dir, "index", manifest_blob.digest)
            write(os.path.join(tag_dir, "current", "link"), manifest_blob.digest.encode())
            pushed[tag] = manifest_blob.digest
    return results


def _scopes(repository: str, actions: str) -> tuple[str, ...]:
    return (f"repository:{repository}:{actions}",)
