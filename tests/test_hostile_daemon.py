"""Hostile inputs to the daemon's HTTP side (the scenarios are in ``tests/hostile/daemon.py``).

1. Signed bodies that would crash an unbounded JSON parser (200,000 levels of nesting, as JSON and inside a
   form-encoded payload; a 5,000-digit number) sent to ``python -m image_updater run``: 400 each, counted as
   ``malformed`` in ``/metrics``, ``/healthz`` answers, and a valid webhook afterwards still makes a commit.
2. Chunked uploads, a missing ``Content-Length``, a head or a body that never finishes: 411 and 408, each
   counted in ``image_updater_webhook_requests_total`` (``length_required``, ``timeout``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.registry import require_registry_binary
from tests.hostile.daemon import deep_signed_webhooks, slow_and_unframed_webhooks_are_counted


@pytest.mark.slow
def test_signed_deeply_nested_webhooks_get_400_are_counted_and_the_daemon_works_on(tmp_path: Path) -> None:
    require_registry_binary()
    figures = deep_signed_webhooks(tmp_path)
    # hang-only bounds: each answer takes well under a second, the whole daemon stays small
    assert figures["slowest_hostile_answer_seconds"] < 30, figures
    assert figures["webhook_to_commit_seconds"] < 120, figures
    assert figures["peak_rss_mib"] < 512, figures


def test_chunked_unframed_and_slow_webhooks_are_answered_and_counted(tmp_path: Path) -> None:
    figures = slow_and_unframed_webhooks_are_counted(tmp_path)
    assert figures["seconds"] < 60, figures
