"""A real HTTP server on loopback that takes webhooks, refusing each run's first attempts
(500) so the tests see the retries, or holding the first one until the test releases it
(to kill the sender mid-POST)."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records every POST; answers 500 to the first `failures` attempts per run id. With
    `hold_first`, the first POST waits for `release` (`holding` says it arrived), then is
    taken (recorded, answered 200)."""

    def __init__(self, failures: int = 2, hold_first: bool = False) -> None:
        self.failures = failures
        self.hold_first = hold_first
        self.holding = threading.Event()
        self.release = threading.Event()
        self.attempts: dict[str, int] = defaultdict(int)
        self.accepted: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                if receiver.hold_first and not receiver.holding.is_set():
                    receiver.holding.set()
                    receiver.release.wait()
                with receiver.lock:
                    receiver.attempts[body["run_id"]] += 1
                    ok = receiver.attempts[body["run_id"]] > receiver.failures
                    if ok:
                        receiver.accepted.append(
                            {"body": body, "key": self.headers.get("Idempotency-Key")})
                try:
                    self.send_response(200 if ok else 500)
                    self.end_headers()
                except OSError:
                    pass  # the sender died mid-POST (the crash test): it was taken anyway

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
