"""A webhook receiver for the notification tests: a threaded stdlib HTTP server on 127.0.0.1.

It records every POST (path, headers, body), checks ``X-Image-Updater-Signature`` against ``secret`` when one
is given, answers 500 to the first ``fail_first`` requests (``fail_first=-1``: always), and with ``hang=True``
holds every request open until ``stop()``. Stopped by ``stop()`` or leaving the ``with`` block.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

__all__ = ["Received", "Receiver"]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None  # None: no secret to check against


class Receiver:
    def __init__(self, *, secret: str | None = None, fail_first: int = 0, hang: bool = False) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.hang = hang
        self.requests: list[Received] = []
        self.arrived = threading.Condition()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                ok = None
                if receiver.secret is not None:
                    want = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                    ok = hmac.compare_digest(want, self.headers.get("X-Image-Updater-Signature", ""))
                with receiver.arrived:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body, ok))
                    n = len(receiver.requests)
                    receiver.arrived.notify_all()
                if receiver.hang:
                    receiver._release.wait(60)
                    return
                failing = receiver.fail_first < 0 or n <= receiver.fail_first
                status = 500 if failing else (401 if ok is False else 200)
                payload = b"no" if status != 200 else b"ok"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout)
            return list(self.requests)

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
