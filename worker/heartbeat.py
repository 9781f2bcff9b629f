"""Keeps a running task's lease alive; when the process dies, the lease expires in seconds."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

import redis

from worker.store import RunStore

log = logging.getLogger(__name__)


class Heartbeat:
    """Refresh a lease every third of its lifetime until the `with` block ends."""

    def __init__(self, store: RunStore, thread_id: str, name: str, owner: str, seconds: float):
        self.store = store
        self.thread_id = thread_id
        self.name = name
        self.owner = owner
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{name}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.store.refresh_lease(self.thread_id, self.name, self.owner, self.seconds)
            except redis.RedisError as exc:
                # A blip (Redis restarting) must not end the heartbeat: the lease would
                # lapse and the sweeper would run the node a second time beside this one.
                log.warning("lease refresh of %s failed (%r); retrying", self.name, exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.store.release_lease(self.thread_id, self.name, self.owner)
