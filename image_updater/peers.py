"""Forwarding a received webhook to the other replicas of a sharded daemon (an edge: HTTP out).

A Service hands a registry's push notification to any one replica; that replica acts on the sources it owns
and forwards the same body once to every other peer, each of which acts on its own. The forwarded request
carries the same authentication the daemon checks (an ``X-Hub-Signature-256`` HMAC of the body with the shared
webhook secret) and ``X-Image-Updater-Forwarded: 1``, so the receiver never forwards it again. Forwarding runs
in background tasks with a bounded timeout: the answer to the sender never waits for it, and a peer that is
down costs one logged line and one counted error per webhook, never a retry storm.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence

import httpx

from image_updater.sharding import FORWARDED_HEADER

__all__ = ["FORWARD_TIMEOUT", "Forwarder"]

log = logging.getLogger("image_updater.peers")

FORWARD_TIMEOUT = 5.0
MAX_IN_FLIGHT = 64  # forwards under way at once; more are dropped (and counted) rather than queued


class Forwarder:
    """Sends webhook bodies to ``peers`` (base URLs, this replica's own left out by the caller)."""

    def __init__(
        self, peers: Sequence[str], secret: str, *, on_result: Callable[[str], None] | None = None,
        timeout: float = FORWARD_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.peers = list(peers)
        self._secret = secret.encode()
        self._on_result = on_result or (lambda _result: None)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False, transport=transport, trust_env=False,
        )
        self._tasks: set[asyncio.Task[None]] = set()

    def forward(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Start sending ``body`` to every peer; returns at once. ``headers`` keys are lower case."""
        if not self.peers:
            return
        out = {
            "Content-Type": headers.get("content-type", "application/json"),
            "X-Hub-Signature-256": "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest(),
            FORWARDED_HEADER: "1",
        }
        for peer in self.peers:
            if len(self._tasks) >= MAX_IN_FLIGHT:
                log.warning("webhook not forwarded to %s: %d forwards already under way", peer, MAX_IN_FLIGHT)
                self._on_result("error")
                continue
            task = asyncio.get_running_loop().create_task(self._send(peer, body, out), name=f"forward:{peer}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, peer: str, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            response = await self._client.post(f"{peer}/webhook", content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            log.warning("webhook not forwarded to %s: %s", peer, type(exc).__name__)
            self._on_result("error")
            return
        if response.status_code >= 300:
            log.warning("webhook forwarded to %s: refused with HTTP %d", peer, response.status_code)
            self._on_result("refused")
        else:
            log.debug("webhook forwarded to %s: HTTP %d", peer, response.status_code)
            self._on_result("ok")

    async def drain(self, timeout: float = FORWARD_TIMEOUT) -> None:
        """Wait (bounded) for the forwards under way; used by tests and at shutdown."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        await self._client.aclose()
