"""Idle cost that does not grow with running work (issue 12, item 1), counted by Redis.

- one process's liveness keeps any number of leases with one command per beat, also while
  other threads hold the GIL (the per-lease refresh it replaces could not: at 1,000 parked
  nodes leases lapsed and nodes ran twice);
- a sweep reads only what is due: with every task kept by a live process, a pass is one
  `ZRANGEBYSCORE` per shard, however many runs are active;
- a process that stops beating loses its leases at the next sweep, and its tasks are sent
  again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import redis

from graphdef.checkpoint.redis import RedisSaver
from scheduler.deadlines import SHARDS, held_member, holder_member, run_member, shard_of
from scheduler.leases import Heartbeat, liveness
from scheduler.records import RunRecord, RunStatus
from scheduler.resources import Resources
from scheduler.settings import Settings
from scheduler.store import RunStore
from scheduler.sweeper import Sweeper
from tests.recording_app import RecordingApp
from tests.redis_server import redis_server

LEASE = 1.0


@pytest.fixture
def server() -> Iterator[redis.Redis]:
    with redis_server() as srv:
        yield srv


def commands(client: redis.Redis) -> int:
    """Commands Redis ran since the last CONFIG RESETSTAT, besides INFO and CONFIG."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items()
               if k not in ("cmdstat_info",) and not k.startswith("cmdstat_config"))


def spin(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(2000))  # pure Python: holds the GIL between switch intervals


def test_one_beat_keeps_many_leases_while_threads_hold_the_gil(server):
    client = server.client()
    store = RunStore(client)
    owners = {f"task-{i}": f"owner-{i}" for i in range(300)}
    stop = threading.Event()
    spinners = [threading.Thread(target=spin, args=(stop,)) for _ in range(2)]
    with ExitStack() as held:
        for name, owner in owners.items():
            assert store.acquire_lease("t", name, owner, LEASE, run_id=f"run-of-{name}")
            held.enter_context(Heartbeat(store, "t", f"run-of-{name}", name, owner, LEASE))
        for t in spinners:
            t.start()
        try:
            time.sleep(LEASE)  # adopted after a sixth of a lifetime
            client.config_resetstat()
            time.sleep(4 * LEASE)  # four lifetimes: a fresh lease would have lapsed by now
            spent = commands(client)
        finally:
            stop.set()
            for t in spinners:
                t.join()
        # Read once the spinners stopped (each round trip would wait its turn for the GIL).
        kept = {name: client.get(store.key("t", "lease", name)) for name in owners}
        ttls = {client.pttl(store.key("t", "lease", name)) for name in owners}
    assert kept == {name: owner.encode() for name, owner in owners.items()}
    assert ttls == {-1}, "adopted leases outlive their own expiry"
    # Three beats a lifetime, one command each, for all 300 leases (and the reads above).
    assert spent <= 4 * 3 + 6, f"{spent} commands in four lifetimes"
    # Released at the end of the blocks, and forgotten by the process's liveness.
    assert not client.keys(store.key("t", "lease", "*"))
    live = liveness(store)
    shard_key = store.deadlines.key
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
            client.exists(shard_key(k, "held", live.holder)) for k in range(SHARDS)):
        time.sleep(0.05)
    assert not any(client.zscore(shard_key(k, "due"), holder_member(live.holder))
                   for k in range(SHARDS))


def _sweeper(url: str, lease: float) -> tuple[Sweeper, Resources, RecordingApp]:
    settings = Settings(broker_url=url, store_url=url, lease_seconds=lease)
    saver = RedisSaver.from_url(url)
    res = Resources(settings, saver, RunStore(saver.client), loaded=True)
    app = RecordingApp()
    return Sweeper(res, app), res, app


def test_a_sweep_reads_only_what_is_due_and_buries_a_silent_process(server):
    client = server.client()
    sweeper, res, app = _sweeper(server.url, lease=1.0)
    store, index = res.store, res.store.deadlines
    runs = [(f"thread-{i}", f"run-{i}") for i in range(200)]
    holder = "elsewhere:1:dead"
    held = []
    for thread_id, run_id in runs:
        store.create_run(RunRecord(thread_id, run_id, graph="g", status=RunStatus.RUNNING),
                         None)
        store.open_step(thread_id, run_id, "cp", {"task": {"node": "n", "queue": "nodes"}}, {})
        store.mark_sent(thread_id, run_id, "cp")
        assert store.acquire_lease(thread_id, "task", "owner", 1.0, run_id=run_id)
        held.append((thread_id, run_id, "task", "owner"))
    # The process adopted them all: listed in its `held` set, then without an expiry.
    listed = [held_member(*h) for h in held]
    assert all(store.adopt_leases(
        [(t, "task", "owner") for t, _ in runs],
        listing=lambda pipe: index.hold(holder, index.clock.now_ms() + 60_000, listed,
                                        pipe=pipe)))
    # Every run is looked at once (as it would be a lifetime after its lease was taken):
    # all its work is kept by a live process, so the look forgets it.
    for thread_id, run_id in runs:
        index.look_by(thread_id, run_id, 0)
    sweeper.sweep(range(SHARDS))
    assert sum(client.zcard(index.key(k, "due")) for k in range(SHARDS)) == 1  # the holder

    client.config_resetstat()
    for _ in range(5):
        sweeper.sweep(range(SHARDS))
    assert commands(client) == 5 * SHARDS, "a pass is one read per shard"
    assert app.sent == []

    # The process stops beating: its deadline passes. The next pass revokes its leases and
    # looks at their runs; by the one after, their tasks have been sent again (a task is
    # sent once its dispatch is older than the grace of one lease lifetime).
    client.zadd(index.key(shard_of(holder), "due"), {holder_member(holder): 0})
    time.sleep(1.05)
    sweeper.sweep(range(SHARDS))
    assert not client.keys(store.key("*", "lease", "task"))
    assert not client.exists(index.key(shard_of(holder), "held", holder))
    sweeper.sweep(range(SHARDS))
    resent = [args[0] for name, args in app.sent if name == "celerygraph.run_node"]
    assert sorted(resent) == sorted(t for t, _ in runs), "each task sent again, once"
    assert all(client.zscore(index.due_key_of_thread(t), run_member(t, r)) is not None
               for t, r in runs), "each run is looked at again, to see its task picked up"


def test_a_worker_wider_than_its_redis_pool_waits_for_a_connection(server):
    """A threads worker runs more nodes at once than its pool has connections (1,000 parked
    nodes finishing together): they wait for a connection rather than fail and run again."""
    from scheduler.resources import POOL_CONNECTIONS

    res = Resources.connect(Settings(broker_url=server.url, store_url=server.url))
    errors: list[BaseException] = []

    def hold_a_connection() -> None:
        try:
            res.store.r.blpop(["nothing-here"], timeout=0.3)
        except redis.RedisError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hold_a_connection)
               for _ in range(POOL_CONNECTIONS + 50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_start_waiting_in_a_busy_queue_is_not_sent_again(server):
    """1,000 runs submitted at once wait in the scheduler queue longer than a lease: a start
    no driver took yet is sent again only once that queue is empty (a copy per run and per
    look would only lengthen it), one a driver took and lost is sent again at once."""
    client = server.client()
    sweeper, res, app = _sweeper(server.url, lease=0.2)
    store = res.store
    for run_id in ("waiting", "driven"):
        store.create_run(RunRecord("t", run_id, graph="g", status=RunStatus.QUEUED), None)
    assert store.acquire_lease("t", "run-driven", "a-start-that-died", 0.2, run_id="driven")
    client.delete(store.key("t", "lease", "run-driven"))
    client.rpush("scheduler", "a start message ahead of them")
    time.sleep(0.25)
    queued = {r: store.run("t", r).updated_at for r in ("waiting", "driven")}

    def sent_again() -> set[str]:  # a start sent again marks its run updated
        return {r for r, at in queued.items() if store.run("t", r).updated_at != at}

    assert sweeper.look("t", "waiting") is not None
    assert sweeper.look("t", "driven") is not None
    assert sent_again() == {"driven"} and len(app.sent) == 1
    client.delete("scheduler")
    sweeper.look("t", "waiting")
    assert sent_again() == {"driven", "waiting"} and len(app.sent) == 2
