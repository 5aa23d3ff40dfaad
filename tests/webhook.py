"""A real HTTP endpoint that records the JSON posted to it: the escalation webhooks' receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    def __init__(self) -> None:
        self.messages: list[dict[str, object]] = []
        self.fail_next = 0  # answer this many posts with 500 first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(500)
                else:
                    receiver.messages.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    @contextmanager
    def running(self) -> Iterator[WebhookReceiver]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


@contextmanager
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver().running() as receiver:
        yield receiver
