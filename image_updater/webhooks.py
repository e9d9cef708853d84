"""Registry push notifications: authenticate a webhook request and read which images were pushed.

Pure functions, no I/O. Four payload shapes are understood, recognised by their keys:

* the CNCF distribution registry's notification envelope: ``{"events": [{"action": "push", "target":
  {"repository", "tag", "url"}, "request": {"host"}}]}``; blob pushes and pushes by digest carry no tag and
  are ignored, as are other actions (pull, delete, mount);
* Docker Hub: ``{"push_data": {"tag"}, "repository": {"repo_name"}}``;
* Harbor: ``{"type": "PUSH_ARTIFACT", "event_data": {"resources": [{"resource_url": "host/ns/repo:tag"}]}}``
  (also Harbor 1.x ``pushImage`` and the CloudEvents form ``harbor.artifact.pushed`` with ``data``);
* GitHub ``package`` (and the older ``registry_package``) events for container packages on ghcr.io:
  ``package.namespace``, ``package.name``, ``package.package_version.container_metadata.tag.name``.

A request is authentic when it carries the shared secret in one of these ways (compared in constant time):
``X-Hub-Signature-256: sha256=<hex>`` or ``X-Signature-256: sha256=<hex>`` (HMAC-SHA256 of the raw body,
GitHub style), ``Authorization: Bearer <secret>`` (distribution's configurable headers, Harbor's auth
header), or a ``token=<secret>`` query parameter for senders that can set neither (Docker Hub).

Bodies are bounded before they are parsed: at most ``max_bytes`` (the HTTP server's body limit) and at
most ``MAX_DEPTH`` nested arrays/objects, measured by a linear scan outside strings, so ``json.loads``
never recurses deeper than that (a signed body nested 200,000 levels deep would otherwise exhaust the
interpreter's recursion limit). Every refusal is a ``MalformedWebhook``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any
from urllib.parse import parse_qs, urlsplit

from image_updater.errors import InvalidReference, MalformedWebhook
from image_updater.references import DOCKER_HUB, normalise_registry, parse_reference

__all__ = [
    "GHCR", "MAX_BYTES", "MAX_DEPTH", "MalformedWebhook", "PushEvent", "authenticate", "nesting_depth",
    "parse_push_events",
]

GHCR = "ghcr.io"

_HARBOR_PUSH_TYPES = frozenset({"PUSH_ARTIFACT", "pushImage", "harbor.artifact.pushed"})
_GITHUB_ACTIONS = frozenset({"published", "updated"})
_FORM = "application/x-www-form-urlencoded"

# The notification formats nest fewer than ten levels (GitHub's package events are the deepest); 64 leaves
# room for senders' extra fields and keeps json.loads, which recurses once per level, far from the
# interpreter's recursion limit.
MAX_DEPTH = 64
MAX_BYTES = 1 << 20  # the HTTP server's default body limit
# A JSON string, whose content is not structure; an unterminated one runs to the end, as for json.loads.
# This regex cannot fail once it found a quote, so it never rescans: linear in the length of the text.
_STRING = re.compile(r'"[^"\\]*(?:\\.?[^"\\]*)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


@dataclass(frozen=True, slots=True)
class PushEvent:
    """One pushed tag. ``registry`` is None when the sender did not say which host it answers on."""

    registry: str | None
    repository: str  # normalised path, e.g. "library/nginx"
    tag: str | None
    sender: str  # "distribution", "dockerhub", "harbor" or "github"

    @property
    def name(self) -> str:
        """``registry/repository`` as in ``ImageReference.name``, or just the repository."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.name, "tag": self.tag, "sender": self.sender}


def authenticate(secret: str, body: bytes, headers: Mapping[str, str], query: str = "") -> bool:
    """True when the request proves knowledge of ``secret``; ``headers`` keys are lower case.

    Every offered credential is checked; one valid credential is enough. An empty secret never matches.
    """
    if not secret:
        return False
    key = secret.encode()
    ok = False
    for name in ("x-hub-signature-256", "x-signature-256"):
        value = headers.get(name)
        if value is not None:
            algo, _, digest = value.strip().partition("=")
            expected = hmac.new(key, body, hashlib.sha256).hexdigest()
            # lower-case: some senders write the hex digest in upper case
            offered = digest.strip().lower().encode()
            ok |= algo.lower() == "sha256" and hmac.compare_digest(offered, expected.encode())
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.strip().partition(" ")
        ok |= scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key)
    if query:
        for token in parse_qs(query, keep_blank_values=True).get("token", []):
            ok |= hmac.compare_digest(token.encode(), key)
    return ok


def parse_push_events(
    body: bytes, content_type: str | None = None, *, max_bytes: int = MAX_BYTES
) -> list[PushEvent]:
    """The pushed tags a notification announces; ``[]`` for notifications about something else.

    Raises ``MalformedWebhook`` for a body that is not a JSON object of a known shape, or whose fields
    have the wrong types or name an invalid repository. A form-encoded body (GitHub's other content type)
    carries the JSON in its ``payload`` field. A body over ``max_bytes`` or nesting deeper than
    ``MAX_DEPTH`` is refused before it is parsed.
    """
    if len(body) > max_bytes:
        raise MalformedWebhook(f"the body is {len(body)} bytes long; at most {max_bytes} are accepted")
    if content_type is not None and content_type.split(";")[0].strip().lower() == _FORM:
        try:
            payloads = parse_qs(body.decode("ascii"), strict_parsing=True).get("payload", [])
        except (UnicodeDecodeError, ValueError):
            payloads = []
        if len(payloads) != 1:
            raise MalformedWebhook("a form-encoded body must carry one 'payload' field")
        body = payloads[0].encode()
    try:
        # what json.loads does with bytes (UTF-8, -16 or -32), so that the depth scan sees the same text
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except UnicodeDecodeError as exc:
        raise MalformedWebhook(f"the body is not JSON: {exc}") from exc
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise MalformedWebhook(f"the body nests {depth} levels deep; at most {MAX_DEPTH} are accepted")
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and an integer longer than Python converts (4,300 digits)
        raise MalformedWebhook(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedWebhook("the body is not a JSON object")
    if "events" in data:
        return _distribution(data)
    if "push_data" in data:
        return _docker_hub(data)
    if "package" in data or "registry_package" in data:
        return _github(data)
    if "type" in data and ("event_data" in data or "specversion" in data):
        return _harbor(data)
    if "zen" in data and "hook_id" in data:  # GitHub's ping when a webhook is created
        return []
    raise MalformedWebhook("not a distribution, Docker Hub, Harbor or GitHub package notification")


def nesting_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in ``text``, not counting brackets inside JSON strings.

    Linear in the length of ``text`` and iterative. For a text that is not valid JSON the figure is never
    below the depth ``json.loads`` reaches before it finds the error: up to there both read the same strings.
    """
    brackets = _NOT_BRACKETS.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, map(ord, brackets))), default=0)


def _get(obj: Any, *path: str, kind: type | tuple[type, ...] = str, required: bool = True) -> Any:
    """``obj[path[0]][path[1]]...`` checked for type; None when absent and not required."""
    where = ".".join(path)
    for key in path:
        if not isinstance(obj, dict):
            raise MalformedWebhook(f"{where}: expected an object around {key!r}")
        if key not in obj or obj[key] is None:
            if required:
                raise MalformedWebhook(f"{where} is missing")
            return None
        obj = obj[key]
    if not isinstance(obj, kind):
        raise MalformedWebhook(f"{where} has the wrong type")
    return obj


def _event(registry: str | None, repository: str, tag: str | None, sender: str) -> PushEvent:
    repository = repository.strip("/")
    try:
        ref = parse_reference(f"{registry}/{repository}" if registry else repository)
    except InvalidReference as exc:
        raise MalformedWebhook(f"invalid repository {repository!r}: {exc}") from exc
    if registry is None:
        # Without a host, parse_reference would read a leading "docker.io"-less path as Docker Hub and add
        # "library/"; the sender's repository path is what we match on, so keep it as sent.
        return PushEvent(None, repository.lower(), tag or None, sender)
    return PushEvent(ref.registry, ref.repository, tag or None, sender)


def _distribution(data: dict[str, Any]) -> list[PushEvent]:
    events = _get(data, "events", kind=list)
    found: list[PushEvent] = []
    for event in events:
        if not isinstance(event, dict):
            raise MalformedWebhook("events[] must hold objects")
        if event.get("action") != "push":
            continue
        repository = _get(event, "target", "repository")
        tag = _get(event, "target", "tag", required=False)
        if not tag:  # a blob, or a manifest pushed by digest: no new tag to consider
            continue
        host = _get(event, "request", "host", required=False)
        if not host:
            url = _get(event, "target", "url", required=False)
            host = urlsplit(url).netloc if url else None
        found.append(_event(host or None, repository, tag, "distribution"))
    return found


def _docker_hub(data: dict[str, Any]) -> list[PushEvent]:
    repo_name = _get(data, "repository", "repo_name")
    tag = _get(data, "push_data", "tag", required=False)
    return [_event(DOCKER_HUB, repo_name, tag, "dockerhub")]


def _harbor(data: dict[str, Any]) -> list[PushEvent]:
    kind = _get(data, "type")
    if kind not in _HARBOR_PUSH_TYPES:
        return []
    payload = data.get("data") if "specversion" in data else data.get("event_data")
    resources = _get({"r": payload}, "r", "resources", kind=list)
    found: list[PushEvent] = []
    for resource in resources:
        url = _get({"r": resource}, "r", "resource_url")
        try:
            ref = parse_reference(url)
        except InvalidReference as exc:
            raise MalformedWebhook(f"invalid resource_url {url!r}: {exc}") from exc
        tag = ref.tag or _get({"r": resource}, "r", "tag", required=False)
        found.append(PushEvent(normalise_registry(ref.registry), ref.repository, tag or None, "harbor"))
    return found


def _github(data: dict[str, Any]) -> list[PushEvent]:
    key = "package" if "package" in data else "registry_package"
    action = data.get("action")
    if action is not None and action not in _GITHUB_ACTIONS:
        return []
    package = _get(data, key, kind=dict)
    kind = str(package.get("package_type") or package.get("ecosystem") or "").lower()
    if kind not in ("container", "docker"):
        return []
    namespace = _get(package, "namespace", required=False) or _get(package, "owner", "login")
    name = _get(package, "name")
    tag = _get(package, "package_version", "container_metadata", "tag", "name", required=False)
    # ghcr.io names are lower case whatever the GitHub owner's spelling
    return [_event(GHCR, f"{namespace}/{name}".lower(), tag, "github")]
