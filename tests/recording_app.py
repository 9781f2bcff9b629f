"""A Celery app that records what a driver sends instead of publishing it, for tests that
drive runs in-process and play the workers themselves."""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery


class RecordingApp(Celery):
    def __init__(self) -> None:
        super().__init__("recording")
        self.sent: list[tuple[str, list[Any]]] = []
        self.lock = threading.Lock()

    def send_task(self, name, args=None, kwargs=None, **options):  # noqa: ANN001, ANN201
        with self.lock:
            self.sent.append((name, list(args or ())))
