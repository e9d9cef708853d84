"""Push images to a registry through its HTTP API, without docker: what ``image-updater demo`` needs.

Every tag gets a real image: a gzipped tar layer, a config blob (``created``, ``architecture``, ``os``,
``variant``, labels, the layer's ``diff_id``) and an OCI image manifest; a multi-platform tag gets one
manifest per platform under an OCI image index. Docker schema 2 media types are available too. This pusher
is anonymous; the tests' pusher (``tests/servers/push.py``) adds Basic and Bearer token auth, bulk pushes,
reads and deletes on top of it, so the demo and the tests push byte-identical images.

Facts about distribution 2.8 this module relies on: a manifest PUT must carry its media type as
Content-Type; a monolithic blob upload is ``POST /blobs/uploads/`` then ``PUT <Location>&digest=...`` and the
Location's ``_state`` parameter must survive (httpx's ``params=`` would replace the query, hence
``URL.copy_add_param``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import ssl
import tarfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from image_updater.errors import PushError

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "MANIFEST_ACCEPT",
    "MEDIA_TYPE_FAMILIES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "Blob",
    "ImagePusher",
    "MediaTypes",
    "Platform",
    "PushError",
    "canonical_json",
    "make_config_blob",
    "make_image_manifest",
    "make_layer",
    "push_error",
    "repository_scopes",
    "rfc3339",
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
MEDIA_TYPE_FAMILIES: dict[str, tuple[str, str, str, str]] = {
    # family: (manifest, index, config, layer)
    "oci": (OCI_MANIFEST, OCI_INDEX, OCI_CONFIG, OCI_LAYER),
    "docker": (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_CONFIG, DOCKER_LAYER),
}


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


def push_error(response: httpx.Response, what: str) -> PushError:
    """The :class:`PushError` for a refused request: what was tried, method, URL, status, body's start."""
    request = response.request
    body = response.text[:500]
    return PushError(
        f"{what}: {request.method} {request.url} -> {response.status_code} {body}".rstrip(),
        status_code=response.status_code,
    )


def rfc3339(moment: datetime) -> str:
    """UTC, ``Z`` suffix, fractional seconds only when present (as docker and buildkit write ``created``)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_layer(content: bytes, name: str) -> tuple[bytes, str]:
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


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """Compact JSON, as a manifest or config blob is uploaded (its digest is over these bytes)."""
    return json.dumps(document, separators=(",", ":")).encode()


class ImagePusher:
    """Push images anonymously to the registry at ``url`` (``http://127.0.0.1:PORT``).

    ``ca_file`` trusts a private CA for https registries. Safe to share between threads: each thread gets its
    own keep-alive client (``max_connections`` each). Every request goes through :meth:`_request`, the hook
    the tests' pusher overrides to add auth.
    """

    def __init__(
        self,
        url: str,
        *,
        ca_file: str | None = None,
        verify: bool = True,
        timeout: float = 30.0,
        max_connections: int = 16,
        media_types: MediaTypes = "oci",
    ) -> None:
        self.url = url.rstrip("/")
        self.media_types: MediaTypes = media_types
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
        manifest_type, index_type, _, _ = MEDIA_TYPE_FAMILIES[family]
        if annotations and family == "docker":
            raise ValueError("Docker schema 2 manifests carry no annotations; use media_types='oci'")
        if not platforms:
            raise ValueError("at least one platform is needed")
        parsed = [Platform.parse(p) for p in platforms]
        single = len(parsed) == 1
        entries = []
        for platform in parsed:
            content = f"{repository}:{tag} {platform}\n".encode()
            layer_data, diff_id = make_layer(content, "image-updater-test")
            layer = Blob.of(MEDIA_TYPE_FAMILIES[family][3], layer_data)
            self._upload_blob(repository, layer, check_exists=True)
            config = make_config_blob(family, repository, tag, platform, created, labels, [diff_id])
            self._upload_blob(repository, config, check_exists=True)
            manifest = make_image_manifest(family, config, [layer], annotations if single else None)
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
        return self._put_manifest(repository, tag, index_type, canonical_json(index))

    # -- internals ------------------------------------------------------------------------------------------

    def _upload_blob(self, repository: str, blob: Blob, *, check_exists: bool) -> None:
        scopes = repository_scopes(repository, "pull,push")
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

    def _put_manifest(self, repository: str, reference: str | None, media_type: str, content: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        self._request(
            "PUT",
            f"{self.url}/v2/{repository}/manifests/{reference or digest}",
            repository_scopes(repository, "pull,push"),
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
        """Send one request; :class:`PushError` unless the status is one of ``expected``.

        ``scopes`` are the token scopes the request needs (``repository:NAME:ACTIONS``), for pushers that
        authenticate; this one sends no credentials.
        """
        response = self._client.request(method, url, headers=dict(headers or {}), content=content)
        if response.status_code not in expected:
            raise push_error(response, what)
        return response


def make_config_blob(
    family: MediaTypes,
    repository: str,
    tag: str,
    platform: Platform,
    created: datetime | None,
    labels: Mapping[str, str] | None,
    diff_ids: list[str],
) -> Blob:
    """The image config blob: build time (when given), platform, labels, layers, one history line."""
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
    return Blob.of(MEDIA_TYPE_FAMILIES[family][2], canonical_json(config))


def make_image_manifest(
    family: MediaTypes, config: Blob, layers: Sequence[Blob], annotations: Mapping[str, str] | None
) -> bytes:
    """An image manifest of the ``family``'s media type referring to ``config`` and ``layers``."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_FAMILIES[family][0],
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return canonical_json(manifest)


def repository_scopes(repository: str, actions: str) -> tuple[str, ...]:
    return (f"repository:{repository}:{actions}",)
