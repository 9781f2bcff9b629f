"""Per-process connections and loaded graphs, created lazily and again after a fork."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

import redis

from graphdef.checkpoint.redis import RedisSaver
from graphdef.redis_client import check_store, connect, mask_password
from scheduler import registry
from scheduler.settings import Settings
from scheduler.store import RunStore

log = logging.getLogger(__name__)

# Connections to the store per process, shared by its threads: what redis-py's own pool has.
POOL_CONNECTIONS = 100
POOL_WAIT = 20.0  # seconds; then the store error makes Celery retry the task


@dataclass
class Resources:
    settings: Settings
    saver: RedisSaver
    store: RunStore
    loaded: bool = field(default=False)

    @classmethod
    def connect(cls, settings: Settings) -> Resources:
        """New connections to the store that `settings` names, after checking it is the
        kind of Redis the URL says and cannot evict keys (`graphdef.redis_client`): a
        `StoreConfigError` here stops a worker, scheduler, client or server as it starts.

        A thread that finds all of the pool's connections in use waits for one (up to
        POOL_WAIT seconds) instead of failing: redis-py's default pool raises past 100, and a
        threads or gevent worker wider than that (1,000 nodes parked on model calls) failed
        nodes at random, most often as many of them finished at once, and ran them again.
        """
        client = connect(settings.store_url, max_connections=POOL_CONNECTIONS,
                         blocking_timeout=POOL_WAIT)
        try:
            check_store(client, settings.store_url)
        except redis.ConnectionError:
            # Not up yet: processes may start before their Redis (compose starts them
            # together), and failed to start for no reason if this were fatal. The check is
            # then skipped for this process's life; the warning says so.
            log.warning("the store at %s does not answer yet; its form and eviction "
                        "policy were not checked", mask_password(settings.store_url))
        saver = RedisSaver(client)
        saver.max_value_bytes = settings.max_value_bytes
        store = RunStore(saver.client, max_value_bytes=settings.max_value_bytes,
                         stream_max_len=settings.stream_max_len,
                         stream_ttl=settings.stream_ttl)
        return cls(settings, saver, store)

    def load_graphs(self) -> None:
        if not self.loaded:
            registry.load_modules(self.settings.graph_modules)
            self.loaded = True

    def publish_graphs(self) -> None:
        self.load_graphs()
        graphs = registry.known()
        self.store.publish_graphs({ref: registry.describe(g) for ref, g in graphs.items()})


_lock = threading.Lock()
_pid = 0
_by_settings: dict[Settings, Resources] = {}


def resources(settings: Settings) -> Resources:
    """This process's resources for `settings`; a forked child (prefork pool) gets fresh
    connections of its own."""
    global _pid
    with _lock:
        if _pid != os.getpid():
            _by_settings.clear()
            _pid = os.getpid()
        res = _by_settings.get(settings)
        if res is None:
            res = _by_settings[settings] = Resources.connect(settings)
        return res
