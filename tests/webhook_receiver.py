"""A real HTTP server on loopback that takes webhooks, refusing each run's first attempts
(500) so the tests see the retries."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records every POST; answers 500 to the first `failures` attempts per run id."""

    def __init__(self, failures: int = 2) -> None:
        self.failures = failures
        self.attempts: dict[str, int] = defaultdict(int)
        self.accepted: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                with receiver.lock:
                    receiver.attempts[body["run_id"]] += 1
                    ok = receiver.attempts[body["run_id"]] > receiver.failures
                    if ok:
                        receiver.accepted.append(
                            {"body": body, "key": self.headers.get("Idempotency-Key")})
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def for_run(self, run_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [a for a in self.accepted if a["body"]["run_id"] == run_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
