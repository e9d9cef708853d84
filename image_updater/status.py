"""The status page and status API (DESIGN "Status page and status API"): what the daemon did and decided.

``StatusBoard`` keeps the last ``PASSES_KEPT`` passes and the last outcome of every source; the daemon
records each pass outcome (``record``) from its tasks and the HTTP side reads ``snapshot()`` (a lock keeps
the two apart). The data comes from the one pass ``Result`` the daemon keeps: updates, unchanged targets,
errors and the verdicts the resolve step kept (``Result.explained``), never from a second registry request.

``make_page_handler`` answers ``GET``/``HEAD`` of ``/`` (HTML), ``/api/v1/status`` (JSON) and
``/images/<repository>`` (one image's explain table) for whatever HTTP server calls it; ``render_plan_html``
renders ``plan --format html`` with the same templates. Pure: no network, no files (the templates are read
through Jinja2's package loader). Names, paths, tags and messages come from repositories and registries: the
templates autoescape them and ``printable`` escapes their control characters; source URLs are shown without
credentials (``errors.redact``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape

from image_updater.errors import redact
from image_updater.plan import Change, ErrorEntry, Explained, Result, Unchanged
from image_updater.printable import printable

__all__ = [
    "PASSES_KEPT",
    "PageHandler",
    "PassRecord",
    "SourceInfo",
    "StatusBoard",
    "make_page_handler",
    "render_plan_html",
    "view_of_result",
]

PASSES_KEPT = 20

# (status, headers, body) or None: not one of this handler's paths
Answer = tuple[int, list[tuple[str, str]], bytes]
PageHandler = Callable[[str, str, Mapping[str, str]], Awaitable[Answer | None]]


class PassRecord(Protocol):
    """What the board needs of one pass (``image_updater.writeback.SourceOutcome`` has these fields; the
    daemon's ``PassOutcome`` adds the images the source tracks)."""

    @property
    def source(self) -> str: ...
    @property
    def result(self) -> Result: ...
    @property
    def commit(self) -> str | None: ...
    @property
    def pushed(self) -> bool: ...
    @property
    def error(self) -> str | None: ...
    @property
    def duration(self) -> float: ...


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """A configured source as the status page shows it; ``url`` is redacted when shown."""

    name: str
    url: str
    branch: str


@dataclass(frozen=True, slots=True)
class _Pass:
    source: str
    started: datetime
    duration: float
    result: str  # success | updated | errors | failed
    commit: str | None
    updates: int
    errors: int
    error: str | None
    # pull-request mode: {"number", "url", "branch", "action"} per update branch
    pull_requests: tuple[dict[str, Any], ...] = ()


def _links(outcome: PassRecord) -> tuple[dict[str, Any], ...]:
    """``outcome.pull_requests`` (``writeback.SourceOutcome``; other records may lack it) as plain dicts."""
    links: Any = getattr(outcome, "pull_requests", ())
    return tuple(
        {"number": int(link.number), "url": str(link.url), "branch": str(link.branch),
         "action": str(link.action)}
        for link in links
    )


def _label(outcome: PassRecord) -> str:
    if outcome.error is not None:
        return "failed"
    if outcome.result.errors:
        return "errors"
    return "updated" if outcome.pushed else "success"


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class StatusBoard:
    """The last passes and the last outcome per source; thread-safe (passes record, the HTTP side reads)."""

    def __init__(self, sources: Iterable[SourceInfo], *, secrets: Sequence[str] = ()) -> None:
        self._sources = {s.name: s for s in sources}
        self._secrets = tuple(secrets)  # values never to show, even inside a message (tokens from env)
        self._lock = threading.Lock()
        self._passes: deque[_Pass] = deque(maxlen=PASSES_KEPT)
        self._last: dict[str, tuple[PassRecord, _Pass]] = {}
        # per source, what the last passes that planned saw: (result, pushed) layers, the newest first; a
        # focused pass (a webhook's, over the pushed images only) adds a layer over the others' images
        self._results: dict[str, list[tuple[Result, bool]]] = {}
        self._next: dict[str, datetime] = {}
        self._version = 0  # changes with every record and next-pass time: rendered pages are cached by it
        self._shard: tuple[int, int, frozenset[str]] | None = None  # (ordinal, replicas, owned sources)

    @property
    def version(self) -> int:
        """A number that changes whenever what ``snapshot`` returns may have changed."""
        with self._lock:
            return self._version

    def record(self, outcome: PassRecord, started: datetime, *, focused: bool = False) -> None:
        """One finished pass of ``outcome.source`` that started at ``started``; ``focused``: the pass looked
        at some images only (the others keep what the earlier passes saw)."""
        entry = _Pass(
            source=outcome.source, started=started, duration=float(outcome.duration), result=_label(outcome),
            commit=outcome.commit, updates=len(outcome.result.updates), errors=len(outcome.result.errors),
            error=outcome.error, pull_requests=_links(outcome),
        )
        with self._lock:
            self._version += 1
            if outcome.source not in self._sources:
                self._sources[outcome.source] = SourceInfo(outcome.source, "", "")
            self._passes.append(entry)
            self._last[outcome.source] = (outcome, entry)
            result = outcome.result
            if outcome.error is None or result.updates or result.unchanged or result.errors:
                # a failed sync plans nothing: the images stay as the last pass that planned saw them
                layers = [(result, outcome.pushed)]
                if focused:
                    seen = _images_of(result)
                    for older, pushed in self._results.get(outcome.source, []):
                        rest = _without(older, seen)
                        if rest.updates or rest.unchanged or rest.errors:
                            layers.append((rest, pushed))
                self._results[outcome.source] = layers

    def set_shard(self, ordinal: int, replicas: int, owned: Iterable[str]) -> None:
        """This replica is shard ``ordinal`` of ``replicas`` and owns ``owned`` (others: shown only)."""
        with self._lock:
            self._version += 1
            self._shard = (ordinal, replicas, frozenset(owned))

    def set_next_pass(self, source: str, when: datetime | None) -> None:
        with self._lock:
            self._version += 1
            if when is None:
                self._next.pop(source, None)
            else:
                self._next[source] = when

    def _redact(self, text: str | None) -> str | None:
        return None if text is None else redact(text, *self._secrets)

    def snapshot(self) -> dict[str, Any]:
        """DESIGN's status JSON: shard, sources, images, errors, passes (newest first)."""
        with self._lock:
            sources = list(self._sources.values())
            last = dict(self._last)
            passes = list(self._passes)
            upcoming = dict(self._next)
            results = dict(self._results)
            shard = self._shard
        out_sources = []
        for info in sources:
            outcome, entry = last.get(info.name, (None, None))
            out_sources.append({
                "name": info.name,
                "url": self._redact(info.url),
                "branch": info.branch,
                "owned": shard is None or info.name in shard[2],
                "last_pass": self._pass_dict(entry) if entry is not None else None,
                "next_pass": _iso(upcoming.get(info.name)),
                "last_error": self._redact(outcome.error) if outcome is not None else None,
            })
        view = _images_and_errors(
            [(name, result, pushed) for name, layers in results.items() for result, pushed in layers],
            self._redact,
        )
        return {
            "shard": None if shard is None else {
                "ordinal": shard[0], "replicas": shard[1],
                "sources": [info.name for info in sources if info.name in shard[2]],
            },
            "sources": out_sources,
            "images": view["images"],
            "errors": view["errors"],
            "passes": [self._pass_dict(p) for p in reversed(passes)],
        }

    def _pass_dict(self, entry: _Pass) -> dict[str, Any]:
        return {
            "source": entry.source, "started": _iso(entry.started), "duration_s": round(entry.duration, 3),
            "result": entry.result, "commit": entry.commit,
            "pull_request": dict(entry.pull_requests[0]) if entry.pull_requests else None,
            "pull_requests": [dict(link) for link in entry.pull_requests],
            "updates": entry.updates, "errors": entry.errors, "error": self._redact(entry.error),
        }


def _images_of(result: Result) -> set[str]:
    items: list[Change | Unchanged] = [*result.updates, *result.unchanged]
    return {i.image for i in items} | {e.image for e in result.errors if e.image} | {
        x.image for x in result.explained}


def _without(result: Result, images: set[str]) -> Result:
    """``result`` without what concerns ``images``, and without file-level errors (a newer pass has those)."""
    return Result(
        updates=tuple(c for c in result.updates if c.image not in images),
        unchanged=tuple(u for u in result.unchanged if u.image not in images),
        errors=tuple(e for e in result.errors if e.image is not None and e.image not in images),
        explained=tuple(x for x in result.explained if x.image not in images),
    )


def _images_and_errors(
    results: Sequence[tuple[str | None, Result, bool]], clean: Callable[[str | None], str | None]
) -> dict[str, Any]:
    """Images (grouped by name and policy) and errors of ``(source, result, pushed)`` triples."""
    images: dict[tuple[str, str], dict[str, Any]] = {}
    errors: list[dict[str, Any]] = []
    explained: dict[tuple[str, str], Explained] = {}

    def entry(image: str, policy: str, origin: str | None) -> dict[str, Any]:
        return images.setdefault((image, policy), {
            "image": image, "policy": policy, "origin": origin, "targets": [], "current": [], "chosen": None,
            "candidates": [], "considered": 0, "error": None,
        })

    for source, result, pushed in results:
        for found in result.explained:
            explained.setdefault((found.image, found.policy), found)
        items: list[Change | Unchanged] = [*result.updates, *result.unchanged]
        for item in items:
            row = entry(item.image, item.policy, item.origin)
            row["targets"].append({"source": source, "file": item.file, "line": item.line})
            if isinstance(item, Change):
                current = item.new_tag if pushed else item.old_tag
                row["chosen"] = item.new_tag
            else:
                assert isinstance(item, Unchanged)
                current = item.old_tag
                row["chosen"] = item.old_tag
            if current is not None and current not in row["current"]:
                row["current"].append(current)
        for error in result.errors:
            errors.append({
                "source": source, "file": error.file, "line": error.line, "image": error.image,
                "message": clean(error.message),
            })
    # an image whose every target failed has no row yet: the errors name it, the images list shows it too
    for source, result, _ in results:
        for error in result.errors:
            _attach_error(images, explained, error, source, clean)
    for (image, policy), row in images.items():
        kept = explained.get((image, policy))
        if kept is not None:
            row["candidates"] = [c.to_dict() for c in kept.candidates]
            row["considered"] = kept.considered
    ordered = [images[key] for key in sorted(images)]
    errors.sort(key=lambda e: (e["source"] or "", e["file"] or "", e["line"] or 0, e["message"] or ""))
    return {"images": ordered, "errors": errors}


def _attach_error(
    images: dict[tuple[str, str], dict[str, Any]], explained: Mapping[tuple[str, str], Explained],
    error: ErrorEntry, source: str | None, clean: Callable[[str | None], str | None],
) -> None:
    if error.image is None:
        return
    rows = [row for (image, _), row in images.items() if image == error.image]
    if not rows:
        # every target of the image failed: the resolve step's record names its policy and origin
        known = [found for (image, _), found in explained.items() if image == error.image]
        policy = known[0].policy if known else None
        rows = [images.setdefault((error.image, policy or ""), {
            "image": error.image, "policy": policy, "origin": known[0].origin if known else None,
            "targets": [], "current": [], "chosen": None, "candidates": [], "considered": 0, "error": None,
        })]
    for row in rows:
        target = {"source": source, "file": error.file, "line": error.line}
        if error.file is not None and target not in row["targets"]:
            row["targets"].append(target)
        row["error"] = row["error"] or clean(error.message)
        if not row["current"]:
            found = explained.get((error.image, row["policy"] or ""))
            if found is not None and found.current_tag is not None:
                row["current"].append(found.current_tag)


def view_of_result(result: Result) -> dict[str, Any]:
    """The status JSON's images and errors for one ``Result`` (``plan --format html``): no sources."""
    view = _images_and_errors([(None, result, False)], lambda text: text)
    return {"shard": None, "sources": [], "images": view["images"], "errors": view["errors"], "passes": []}


# -- HTML ---------------------------------------------------------------------------------------------

_ENV = Environment(
    loader=PackageLoader("image_updater", "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_ENV.filters["p"] = lambda value: "-" if value is None else printable(str(value))


def _css() -> str:
    source, _, _ = _ENV.loader.get_source(_ENV, "status.css")  # type: ignore[union-attr]
    return source


_CSS = _css()
_CSS_HASH = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
CSP = (f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'none'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")


def _render(template: str, **context: Any) -> str:
    context.setdefault("live", True)
    return _ENV.get_template(template).render(css=_CSS, csp=CSP, **context)


def render_status_html(snapshot: Mapping[str, Any], *, refresh: int | None = 30) -> str:
    """The status page for a ``snapshot()`` (``refresh``: seconds between reloads, none for a file)."""
    return _render("status.html", s=snapshot, refresh=refresh, title="image-updater status", live=True)


def render_image_html(snapshot: Mapping[str, Any], repository: str) -> str | None:
    """One image's page (its targets and explain table), or None when the snapshot has no such image."""
    rows = [i for i in snapshot["images"] if i["image"] == repository]
    if not rows:
        return None
    errors = [e for e in snapshot["errors"] if e["image"] == repository]
    return _render("image.html", image=repository, rows=rows, errors=errors,
                   title=f"{printable(repository)} - image-updater")


def render_plan_html(result: Result, *, generated: datetime | None = None) -> str:
    """``plan --format html``: one self-contained page (inline CSS, no script) of a dry run's Result; a file
    opened from disk gets no headers, so the page carries its Content-Security-Policy in a meta element."""
    view = view_of_result(result)
    return _render(
        "status.html", s=view, refresh=None, title="image-updater plan", live=False,
        generated=_iso(generated), updates=result.updates, skipped=result.skipped,
    )


# -- the handler --------------------------------------------------------------------------------------

_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
]
_HTML = "text/html; charset=utf-8"
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


def _authorized(headers: Mapping[str, str], token: str) -> bool:
    value = headers.get("authorization", "")
    scheme, _, credentials = value.strip().partition(" ")
    credentials = credentials.strip()
    expected = token.encode()
    if scheme.lower() == "bearer":
        return hmac.compare_digest(credentials.encode(), expected)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except ValueError:
            return False
        _user, sep, password = decoded.partition(b":")
        return bool(sep) and hmac.compare_digest(password, expected)
    hmac.compare_digest(b"", expected)  # the same work whatever the request says
    return False


def make_page_handler(board: StatusBoard, status_token: str | None) -> PageHandler:
    """The status page's handler: ``await handler(method, path_with_query, lowercased_headers)``.

    Answers ``/``, ``/api/v1/status`` and ``/images/<repository>``; None for any other path (the server
    answers those). ``status_token`` set: 401 unless ``Authorization: Bearer <token>`` or HTTP basic with
    any user and the token as password.
    """

    async def handler(
        method: str, path: str, headers: Mapping[str, str]
    ) -> Answer | None:
        route = urlsplit(path).path
        if route not in ("/", "/api/v1/status") and not route.startswith("/images/"):
            return None
        if method not in ("GET", "HEAD"):
            return _answer(405, _TEXT, b"method not allowed\n", method, [("Allow", "GET, HEAD")])
        if status_token and not _authorized(headers, status_token):
            challenge = 'Bearer realm="image-updater", Basic realm="image-updater"'
            return _answer(401, _TEXT, b"unauthorized\n", method, [("WWW-Authenticate", challenge)])
        version = board.version
        if cached_version[0] != version:
            cache.clear()
            cached_version[0] = version
        page = cache.get(route)
        if page is None:
            # rendering 1,000 images takes tens of milliseconds: off the event loop, once per board change
            page = await asyncio.to_thread(_render_route, board, route)
            if len(cache) < _MAX_CACHED_PAGES:
                cache[route] = page
        status, content_type, body = page
        return _answer(status, content_type, body, method)

    cache: dict[str, tuple[int, str, bytes]] = {}  # route -> the page rendered for cached_version
    cached_version = [-1]
    return handler


_MAX_CACHED_PAGES = 256


def _render_route(board: StatusBoard, route: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of one of the handler's routes, from a fresh snapshot."""
    snapshot = board.snapshot()
    if route == "/api/v1/status":
        return 200, _JSON, json.dumps(snapshot, indent=2, ensure_ascii=False).encode() + b"\n"
    if route == "/":
        return 200, _HTML, render_status_html(snapshot).encode()
    repository = unquote(route[len("/images/"):])
    page = render_image_html(snapshot, repository)
    if page is None:
        missing = _render("missing.html", image=repository, title="unknown image - image-updater")
        return 404, _HTML, missing.encode()
    return 200, _HTML, page.encode()


def _answer(
    status: int, content_type: str, body: bytes, method: str, extra: Sequence[tuple[str, str]] = ()
) -> Answer:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *_HEADERS, *extra]
    return status, headers, b"" if method == "HEAD" else body
