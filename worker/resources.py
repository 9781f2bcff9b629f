"""Per-process connections and loaded graphs, created lazily and again after a fork."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from graphdef.checkpoint.redis import RedisSaver
from worker import registry
from worker.settings import Settings
from worker.store import RunStore


@dataclass
class Resources:
    settings: Settings
    saver: RedisSaver
    store: RunStore
    loaded: bool = field(default=False)

    def load_graphs(self) -> None:
        if not self.loaded:
            registry.load_modules(self.settings.graph_modules)
            self.loaded = True

    def publish_graphs(self) -> None:
        self.load_graphs()
        graphs = registry.known()
        self.store.publish_graphs({ref: registry.describe(g) for ref, g in graphs.items()})


_lock = threading.Lock()
_by_pid: dict[int, Resources] = {}


def resources(settings: Settings | None = None) -> Resources:
    """This process's resources; a forked child gets fresh connections of its own."""
    pid = os.getpid()
    with _lock:
        res = _by_pid.get(pid)
        if res is None:
            settings = settings or Settings.from_env()
            saver = RedisSaver.from_url(settings.store_url)
            saver.max_value_bytes = settings.max_value_bytes
            res = Resources(settings, saver,
                            RunStore(saver.client, max_value_bytes=settings.max_value_bytes))
            _by_pid.clear()
            _by_pid[pid] = res
        return res
