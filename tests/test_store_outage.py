"""Producers following a run read through a store restart: the run store's redis-server
(this module's own, append-only so that a restart keeps what was written) is stopped while
a node runs and started again on its port, with real workers and a scheduler on a broker
of their own. `RunHandle.events(follow=True)`, `stream()` and `wait()`, each reading in a
thread of its own meanwhile, go on from where they were and miss nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from scheduler.client import Event
from scheduler.records import RunStatus
from scheduler.streams import StreamPart
from tests import test_crash as crash
from tests.cluster import Cluster, RedisServer


def test_followers_read_through_a_store_restart(tmp_path: Path) -> None:
    store = RedisServer(tmp_path / "store", appendonly=True)
    broker = RedisServer(tmp_path / "broker")
    running = Cluster(tmp_path / "cluster", store.url, broker.url)
    try:
        running.start("outage-w1")
        running.start_scheduler()
        handle = running.client().submit("tests.dist_graphs:chain", {"log": [], "sleep": 2.0},
                                          thread_id="outage-1", stream_mode="updates")
        followed: list[Event] = []
        streamed: list[StreamPart] = []
        waited: list[RunStatus] = []
        reads: list[Any] = [lambda: followed.extend(handle.events(follow=True, timeout=90)),
                            lambda: streamed.extend(handle.stream(timeout=90)),
                            lambda: waited.append(handle.wait(timeout=90))]
        readers = [threading.Thread(target=read, daemon=True) for read in reads]
        for reader in readers:
            reader.start()
        crash.wait_for_start(store, "outage-1", "slow")
        store.stop()
        time.sleep(1.0)  # every reader finds the store away, more than once
        store.start()
        for reader in readers:
            reader.join(timeout=120)
            assert not reader.is_alive()

        assert waited == [RunStatus.DONE]
        everything = list(handle.events())
        assert followed == everything[:len(followed)] and followed[-1].type == "done"
        updates = [next(iter(p.data)) for p in streamed
                   if p.kind == "chunk" and p.mode == "updates"]
        assert sorted(updates) == ["a", "b", "d", "slow"], streamed
        assert streamed[-1].kind == "end"
        assert handle.result(timeout=10)["log"] == ["a", "b", "slow", "d"]
    finally:
        running.stop()
        broker.stop()
        store.stop()
