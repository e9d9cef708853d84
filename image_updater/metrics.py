"""Prometheus metrics of the daemon, in a registry of their own.

A dedicated ``CollectorRegistry`` (never prometheus_client's global one) keeps the exposition limited to what
this module defines and lets tests create as many independent ``Metrics`` as they like. Every name starts
with ``image_updater_``; ``docs/deployment.md`` lists them with their labels.

Label values stay bounded: sources come from the config, registries from the images the config's
repositories use, outcomes and kinds from the fixed sets below.
"""

from __future__ import annotations

from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from image_updater import __version__

__all__ = ["CONTENT_TYPE", "ERROR_KINDS", "PASS_OUTCOMES", "WEBHOOK_RESULTS", "Metrics"]

# The classic text format: every Prometheus version (and every other scraper) parses it, and our metric
# names need none of the newer format's escaping. prometheus_client >= 0.22 would announce 1.0.0.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

PassOutcomeLabel = Literal["success", "errors", "failed", "abandoned"]
# success: the pass completed without any error; errors: it completed but reported error entries (a file
# that does not parse, an image its registry could not answer); failed: the source itself failed (git sync
# or push) or the pass raised; abandoned: stopped by a shutdown before it could push.
PASS_OUTCOMES: Final = ("success", "errors", "failed", "abandoned")

ErrorKind = Literal["source", "image", "file", "pass"]
# source: git sync/push of a source failed; image: an error entry naming an image (registry failure,
# invalid policy); file: an error entry naming only a file (YAML that does not parse); pass: the pass
# raised an unexpected exception.
ERROR_KINDS: Final = ("source", "image", "file", "pass")

WebhookResult = Literal[
    "accepted", "ignored", "unauthorized", "malformed", "too_large", "length_required", "timeout",
    "bad_request", "method_not_allowed", "disabled", "unavailable", "throttled", "error",
]
# Every answer to /webhook: accepted (202, passes started), ignored (200, authentic but nothing to do),
# unauthorized (401), malformed (400: an authenticated body that is not a notification, too deep or too
# long), too_large (413 body, 431 head), length_required (411: chunked or no Content-Length), timeout (408:
# head or body too slow), bad_request (400/505: the request itself, e.g. a duplicate Content-Length),
# method_not_allowed (405), disabled (404: no secret configured), unavailable (503: shutting down), error
# (500: a bug in the handler).
WEBHOOK_RESULTS: Final = (
    "accepted", "ignored", "unauthorized", "malformed", "too_large", "length_required", "timeout",
    "bad_request", "method_not_allowed", "disabled", "unavailable", "throttled", "error",
)

# Passes range from well under a second (nothing changed, everything cached) to minutes (first clone of a
# large repository, slow registries): the default buckets stop at 10 s.
_DURATION_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Metrics:
    """All metrics of one daemon; ``render()`` produces the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Gauge(
            "image_updater_build_info", "Always 1; the version label says which build is running.",
            ["version"], registry=r,
        )
        self.info.labels(version=__version__).set(1)
        self.passes = Counter(
            "image_updater_passes_total", "Passes over a source, by outcome.", ["source", "outcome"],
            registry=r,
        )
        self.pass_duration = Histogram(
            "image_updater_pass_duration_seconds", "Wall-clock duration of one pass over a source.",
            ["source"], buckets=_DURATION_BUCKETS, registry=r,
        )
        self.passes_running = Gauge(
            "image_updater_pass_in_progress", "1 while a pass over the source is running.", ["source"],
            registry=r,
        )
        self.updates_committed = Counter(
            "image_updater_updates_committed_total", "Image references changed by pushed commits.",
            ["source"], registry=r,
        )
        self.registry_requests = Counter(
            "image_updater_registry_requests_total",
            "HTTP requests to container registries, by registry and status code (or error class).",
            ["registry", "status"], registry=r,
        )
        self.errors = Counter(
            "image_updater_errors_total", "Errors reported by passes, by kind (source, image, file, pass).",
            ["kind"], registry=r,
        )
        self.last_success = Gauge(
            "image_updater_last_success_timestamp_seconds",
            "Unix time at which the last pass over the source completed without a source-level failure.",
            ["source"], registry=r,
        )
        self.images_tracked = Gauge(
            "image_updater_images_tracked", "Distinct image repositories the source's last pass looked at.",
            ["source"], registry=r,
        )
        self.webhooks = Counter(
            "image_updater_webhook_requests_total", "Requests to /webhook, by result.", ["result"],
            registry=r,
        )
        self.shard_info = Gauge(
            "image_updater_shard_info",
            "Always 1; which shard (ordinal of replicas) this replica is. Join on instance to label others.",
            ["ordinal", "replicas"], registry=r,
        )
        self.shard_sources = Gauge(
            "image_updater_shard_sources", "Configured sources this replica owns (and schedules).",
            registry=r,
        )
        self.webhook_forwards = Counter(
            "image_updater_webhook_forwards_total",
            "Webhooks forwarded to the other replicas, by result (ok, refused, error).", ["result"],
            registry=r,
        )
        for forward_result in ("ok", "refused", "error"):
            self.webhook_forwards.labels(result=forward_result)
        self.notifications = Counter(
            "image_updater_notifications_total", "Notifications after passes, by channel type and result.",
            ["type", "result"], registry=r,
        )
        # Pre-create the fixed label sets so that rate() and absent() work from the first scrape on.
        for kind in ERROR_KINDS:
            self.errors.labels(kind=kind)
        for result in WEBHOOK_RESULTS:
            self.webhooks.labels(result=result)

    def set_shard(self, ordinal: int, replicas: int, owned: int) -> None:
        """Which shard this replica is and how many sources it owns."""
        self.shard_info.clear()
        self.shard_info.labels(ordinal=str(ordinal), replicas=str(replicas)).set(1)
        self.shard_sources.set(owned)

    def add_source(self, source: str) -> None:
        """Create the per-source series with zero values, so dashboards show every configured source."""
        for outcome in PASS_OUTCOMES:
            self.passes.labels(source=source, outcome=outcome)
        self.pass_duration.labels(source=source)
        self.passes_running.labels(source=source).set(0)
        self.updates_committed.labels(source=source)

    def registry_request(self, registry: str, status: int | str) -> None:
        """Count one registry HTTP request; the registry client calls this for every request it sends."""
        self.registry_requests.labels(registry=registry, status=str(status)).inc()

    def pass_finished(
        self, source: str, outcome: PassOutcomeLabel, duration: float, *, updates_committed: int = 0,
        images: int | None = None, success_at: float | None = None,
    ) -> None:
        self.passes.labels(source=source, outcome=outcome).inc()
        self.pass_duration.labels(source=source).observe(duration)
        if updates_committed:
            self.updates_committed.labels(source=source).inc(updates_committed)
        if images is not None:
            self.images_tracked.labels(source=source).set(images)
        if success_at is not None:
            self.last_success.labels(source=source).set(success_at)

    def error(self, kind: ErrorKind, count: int = 1) -> None:
        if count:
            self.errors.labels(kind=kind).inc(count)

    def webhook(self, result: WebhookResult) -> None:
        self.webhooks.labels(result=result).inc()

    def add_notification_type(self, channel_type: str) -> None:
        """Create a configured channel type's series with zero values."""
        for result in ("sent", "failed"):
            self.notifications.labels(type=channel_type, result=result)

    def notification(self, channel_type: str, result: str) -> None:
        """Count one notification: ``result`` is ``sent`` or ``failed`` (after its retries)."""
        self.notifications.labels(type=channel_type, result=result).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
