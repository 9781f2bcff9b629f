"""The store behind Redis Sentinel (`redis+sentinel://`): a master, a replica and a sentinel
started here, real `celery worker` processes and a scheduler; the broker is a plain Redis
of its own. Runs work through the sentinel's master, and go on across a failover: the
master SIGKILLed mid-node, the replica promoted, the run finished on it with every task
that had finished before the kill run once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redbeat import RedBeatSchedulerEntry  # type: ignore[import-untyped]

from graphdef.checkpoint.base import empty_checkpoint
from graphdef.checkpoint.redis import RedisSaver
from graphdef.redis_client import StoreConfigError, connect, mask_password
from scheduler import beat
from scheduler.celery_app import make_app
from scheduler.settings import Settings
from scheduler.streams import StreamPart
from tests import test_crash as crash
from tests import test_distributed as dist
from tests import test_server_api as api
from tests import test_server_runs as runs
from tests.cluster import Cluster, RedisServer
from tests.redis_sentinel import SERVICE, SentinelGroup, redis_sentinel
from tests.server import server_fixtures
from tests.test_hostile_messages import wait_until


class SentinelStore:
    """What the distributed tests take as `redis_server`: the store's URL and a client."""

    def __init__(self, group: SentinelGroup) -> None:
        self.group = group
        self.url = group.url

    def client(self) -> redis.Redis:
        return connect(self.url)


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    with redis_sentinel() as running:
        yield running


@pytest.fixture(scope="module")
def redis_server(group: SentinelGroup) -> SentinelStore:
    return SentinelStore(group)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("broker"))
    yield server
    server.stop()


cluster, url, client = server_fixtures(
    "worker1", own_broker=True, CELERYGRAPH_GRAPHS="tests.dist_graphs,tests.server_graphs")


test_chain_with_parallel_branches_and_join = dist.test_chain_with_parallel_branches_and_join
test_send_fan_out = dist.test_send_fan_out
test_edit_then_approve_through_the_client = dist.test_edit_then_approve_through_the_client


# The HTTP server reads streams with the asyncio client, through the sentinel too.
test_run_wait_then_state_history_and_edit = api.test_run_wait_then_state_history_and_edit
test_streamed_interrupt_resumed_by_command = runs.test_streamed_interrupt_resumed_by_command


def test_the_saver_writes_to_the_master_the_sentinel_names(group: SentinelGroup) -> None:
    saver = RedisSaver(group.url)
    config = {"configurable": {"thread_id": "sentinel-saver", "checkpoint_ns": ""}}
    saver.put(config, empty_checkpoint(), {"source": "input", "step": -1}, {})
    master = next(s for s in group.servers() if s.port == group.master_port())
    with master.client() as direct:
        assert any(b"sentinel-saver" in key for key in direct.keys("*"))


@pytest.mark.parametrize("url", [
    f"redis+sentinel://127.0.0.1:1/{SERVICE}/0/extra",
    "redis+sentinel://127.0.0.1:1",
    f"redis+sentinel://127.0.0.1/{SERVICE}",
])
def test_a_malformed_sentinel_url_is_refused(url: str) -> None:
    with pytest.raises(StoreConfigError):
        connect(url)


def test_a_sentinel_password_option_is_not_shown() -> None:
    shown = mask_password(
        f"redis+sentinel://:pw@127.0.0.1:1/{SERVICE}?sentinel_password=secret&db=1")
    assert "pw" not in shown and "secret" not in shown and "db=1" in shown


def test_a_failover_mid_node_loses_no_finished_task(tmp_path: Path) -> None:
    """SIGKILL the master while a node sleeps: the sentinel promotes the replica, and the
    run finishes on it. The tasks that finished before the kill ran once (their memos were
    on the replica: the group waits for the replica before the kill, as `min-replicas` or
    `WAIT` would); the node that was running ran again, as after a lost lease."""
    with redis_sentinel() as running_group:
        store = SentinelStore(running_group)
        broker = RedisServer(tmp_path / "broker")
        running = Cluster(tmp_path / "cluster", store.url, broker.url)
        try:
            running.start("w1")
            running.start_scheduler()
            client = running.client()
            handle = client.submit("tests.dist_graphs:chain", {"log": [], "sleep": 2.0},
                                   thread_id="failover-1", stream_mode="updates")
            streamed: list[StreamPart] = []
            reader = threading.Thread(
                target=lambda: streamed.extend(handle.stream(timeout=90)), daemon=True)
            reader.start()
            crash.wait_for_start(store, "failover-1", "slow")
            killed_at = time.monotonic()
            running_group.kill_master_and_wait_for_failover()
            assert handle.result(timeout=90)["log"] == ["a", "b", "slow", "d"]
            reader.join(timeout=30)
            # The stream was read through the failover: every node's update, once.
            updates = [next(iter(p.data)) for p in streamed
                       if p.kind == "chunk" and p.mode == "updates"]
            assert sorted(updates) == ["a", "b", "d", "slow"], streamed
            assert streamed[-1].kind == "end"
            runs = crash.runs_per_task(store, "failover-1")
            assert runs["a"] == [1] and runs["b"] == [1] and runs["d"] == [1], runs
            assert runs["slow"] in ([1], [2]), runs
            assert time.monotonic() - killed_at < 60
            # The store goes on taking runs on the new master.
            again = client.submit("tests.dist_graphs:chain", {"log": []}, thread_id="failover-2")
            assert again.result(timeout=60)["log"] == ["a", "b", "slow", "d"]
        finally:
            running.stop()
            broker.stop()


def test_beat_keeps_crons_behind_the_sentinel(group: SentinelGroup, cluster: Cluster) -> None:
    """RedBeat reaches the master through the sentinel (`scheduler.beat.redbeat_connection`):
    an entry the server saves is read back by RedBeat's own client, and a beat process
    starts on the store and takes its lock there."""
    settings = Settings.from_env({**cluster.env})
    app = make_app(settings)
    beat.save_entry(app, "sentinel-cron", "*/5 * * * *", None, "scheduler", True)
    entry = RedBeatSchedulerEntry.from_key(f"{beat.KEY_PREFIX}cron:sentinel-cron", app=app)
    assert (entry.name, entry.enabled) == ("cron:sentinel-cron", True)
    beat.delete_entry(app, "sentinel-cron")
    cluster.start_beat("beat-on-sentinel")
    try:
        lock = f"{beat.KEY_PREFIX}:lock"
        wait_until("beat's lock", lambda: bool(connect(group.url).exists(lock)))
    finally:
        cluster.kill("beat-on-sentinel")
