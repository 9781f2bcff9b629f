"""Leases: who works on a task or a run right now. A holder keeps its lease alive with a
heartbeat; when its process dies, the lease expires in seconds and the work is taken over.

One refresher thread per process serves every lease the process holds: a thread started
per task (and per advance) cost more than a short node itself on a busy machine.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from types import TracebackType

import redis

from scheduler.store import RunStore

log = logging.getLogger(__name__)


def new_owner() -> str:
    """A lease holder's id: which host and process holds it, unique per holding."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_lease(run_id: str) -> str:
    """The lease a driver holds while it starts or advances a run (tasks' are their ids)."""
    return f"run-{run_id}"


class Heartbeat:
    """Refresh a lease every third of its lifetime until the `with` block ends, then release
    it; with `hand_over`, a block that ends without an error leaves the release to the
    caller's next write (`RunStore.finish_task`), one round trip less."""

    def __init__(self, store: RunStore, thread_id: str, name: str, owner: str, seconds: float,
                 *, hand_over: bool = False):
        self.hand_over = hand_over
        self.store = store
        self.thread_id = thread_id
        self.name = name
        self.owner = owner
        self.seconds = seconds

    def refresh(self) -> None:
        try:
            self.store.refresh_lease(self.thread_id, self.name, self.owner, self.seconds)
        except redis.RedisError as exc:
            # A blip (Redis restarting) must not end the heartbeat: the lease would lapse
            # and the sweeper would run the node a second time beside this one.
            log.warning("lease refresh of %s failed (%r); retrying", self.name, exc)

    def __enter__(self) -> Heartbeat:
        _refresher().add(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _refresher().remove(self)
        if exc_type is None and self.hand_over:
            return
        self.store.release_lease(self.thread_id, self.name, self.owner)


class _Refresher:
    """The process's heartbeat thread: refreshes each registered lease when it is due."""

    def __init__(self) -> None:
        self._due: dict[int, tuple[Heartbeat, float]] = {}
        self._changed = threading.Condition()
        threading.Thread(target=self._run, name="celerygraph-heartbeat", daemon=True).start()

    def add(self, beat: Heartbeat) -> None:
        with self._changed:
            self._due[id(beat)] = (beat, time.monotonic() + beat.seconds / 3)
            self._changed.notify()

    def remove(self, beat: Heartbeat) -> None:
        with self._changed:
            self._due.pop(id(beat), None)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [beat for beat, at in self._due.values() if at <= now]
                for beat in due:
                    self._due[id(beat)] = (beat, now + beat.seconds / 3)
                if not due:
                    soonest = min((at for _, at in self._due.values()), default=now + 1.0)
                    self._changed.wait(soonest - now)
                    continue
            for beat in due:
                beat.refresh()


_lock = threading.Lock()
_by_pid: dict[int, _Refresher] = {}


def _refresher() -> _Refresher:
    """This process's refresher; a forked child (prefork pool) starts its own."""
    pid = os.getpid()
    with _lock:
        refresher = _by_pid.get(pid)
        if refresher is None:
            _by_pid.clear()
            refresher = _by_pid[pid] = _Refresher()
        return refresher
