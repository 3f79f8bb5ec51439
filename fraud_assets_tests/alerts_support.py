"""A loopback webhook receiver for the alert tests, and the fixture that starts one."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

SECRET_PATH = "/hooks/T0001/B0002/s3cr3t-w3bh00k-t0k3n"


@dataclass
class WebhookReceiver:
    """A loopback HTTP server that records JSON POSTs and answers with scripted statuses."""

    url: str
    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    attempts: int = 0


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """Start a receiver on 127.0.0.1 with a free port; its URL path plays the secret."""
    state: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            state.attempts += 1
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state.statuses.pop(0) if state.statuses else 200
            if status < 300:
                state.received.append(json.loads(body))
                state.paths.append(self.path)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            # The test server must not echo request paths (the secret) to stderr.
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = WebhookReceiver(url=f"http://127.0.0.1:{server.server_port}{SECRET_PATH}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
