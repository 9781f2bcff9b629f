"""The savers, stores and cache on a real Redis Cluster (3 masters): the same conformance
suites the single-server backends pass, so that a CROSSSLOT or MOVED anywhere fails here.

One cluster serves the module; each test empties it first (it is private to this module).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from celerygraph_langgraph.redis_saver import LangGraphRedisSaver
from celerygraph_langgraph.redis_store import LangGraphRedisStore
from graphdef.cache.redis import RedisCache
from graphdef.checkpoint.redis import RedisSaver
from graphdef.redis_client import connect
from graphdef.store.redis import RedisStore
from scheduler.deadlines import SHARDS, run_member, shard_of
from scheduler.records import RunRecord, RunStatus
from scheduler.resources import Resources
from scheduler.settings import Settings
from scheduler.store import RunStore
from scheduler.sweeper import Sweeper
from tests import test_langgraph_redis_store as lgstore
from tests.recording_app import RecordingApp
from tests.redis_cluster import RedisClusterProcesses, redis_cluster
from tests.saver_conformance import SaverConformance
from tests.store_conformance import MakeStore, StoreConformance
from tests.test_caches import Backend, CacheConformance


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterProcesses]:
    with redis_cluster() as running:
        yield running


@pytest.fixture
def empty(cluster: RedisClusterProcesses) -> RedisClusterProcesses:
    cluster.flush()
    return cluster


class TestRedisSaverOnCluster(SaverConformance):
    @pytest.fixture
    def saver(self, empty: RedisClusterProcesses) -> Iterator[RedisSaver]:
        with RedisSaver.from_url(empty.url) as saver:
            yield saver


class TestRedisSaverWithTtlOnCluster(SaverConformance):
    @pytest.fixture
    def saver(self, empty: RedisClusterProcesses) -> Iterator[RedisSaver]:
        with RedisSaver.from_url(empty.url, ttl=600, prefix="app:*cg") as saver:
            yield saver


def _stores(make: Any) -> Iterator[MakeStore]:
    made: list[Any] = []

    def store(**kwargs: Any) -> Any:
        made.append(make(prefix=f"t{len(made)}", **kwargs))
        return made[-1]

    yield store
    for each in made:
        each.close()


class TestRedisStoreOnCluster(StoreConformance):
    @pytest.fixture
    def make_store(self, empty: RedisClusterProcesses) -> Iterator[MakeStore]:
        yield from _stores(lambda **kw: RedisStore(empty.url, **kw))


class TestLangGraphRedisStoreOnCluster(lgstore.TestLangGraphRedisStore):
    @pytest.fixture
    def make_store(self, empty: RedisClusterProcesses) -> Iterator[MakeStore]:
        yield from _stores(lambda **kw: LangGraphRedisStore(empty.url, **kw))


class TestRedisCacheOnCluster(CacheConformance):
    @pytest.fixture
    def backend(self, empty: RedisClusterProcesses) -> Iterator[Backend]:
        cache: RedisCache = RedisCache(empty.url)

        def advance(seconds: float) -> None:
            time.sleep(seconds * 2 + 0.5)  # Redis's own clock: wait well past the TTL

        yield Backend(cache, advance)
        cache.close()


def test_langgraph_conformance_on_cluster(cluster: RedisClusterProcesses) -> None:
    """LangGraph's own checkpointer conformance suite, every capability, on the cluster."""
    @checkpointer_test(name="LangGraphRedisSaver on a cluster")
    async def factory() -> AsyncIterator[LangGraphRedisSaver]:
        cluster.flush()
        yield LangGraphRedisSaver.from_url(cluster.url)

    report = asyncio.run(validate(factory))
    failures = {
        name: result.failures for name, result in report.results.items() if not result.passed
    }
    assert failures == {}
    assert set(report.results) == {cap.value for cap in ALL_CAPABILITIES}


def test_run_store_keys_and_indexes_on_cluster(empty: RedisClusterProcesses) -> None:
    """A run's life in the run store on the cluster: its active-runs entry (sharded),
    threads listed by a SCAN over every master, and a finished thread's keys expired."""
    store = RunStore(connect(empty.url))
    threads = [f"t{i}" for i in range(12)]  # spread over the shards and the masters
    for thread_id in threads:
        store.create_run(RunRecord(thread_id, "r", graph="g", status=RunStatus.QUEUED),
                         {"n": 1})
    assert sorted(store.active_runs()) == sorted((t, "r") for t in threads)
    assert store.threads() == sorted(threads)
    for thread_id in threads:
        assert store.claim_thread(thread_id, "r")
        assert store.end_run(thread_id, "r", RunStatus.DONE, streaming=True)
        assert store.active_run(thread_id) is None
    assert store.active_run_count() == 0
    store.expire_thread("t3", 100)
    keys = [k for k in store.r.scan_iter(match="cg:{t3}:*")]
    assert keys and all(0 < store.r.ttl(k) <= 100 for k in keys)


def _sweeper_on(url: str) -> tuple[Sweeper, RunStore]:
    settings = Settings(broker_url="memory://", store_url=url)
    res = Resources.connect(settings)
    res.loaded = True
    return Sweeper(res, RecordingApp()), res.store


def test_the_sweeper_retires_what_a_create_left_half_written(
        empty: RedisClusterProcesses) -> None:
    """A create that died after the run's first look and active-runs entry (the deadlines
    shard's slot) and before the record (the thread's slot): the look finds no run and
    retires the entry, and the look itself goes."""
    sweeper, store = _sweeper_on(empty.url)
    with store.r.pipeline(transaction=False) as pipe:
        store.deadlines.look_by("half", "r", 0, pipe)
        pipe.sadd(store.deadlines.key(shard_of("half"), "active-runs"), "half\x00r")
        pipe.execute()
    assert store.active_runs() == [("half", "r")]
    sweeper.sweep(range(SHARDS))
    assert store.active_runs() == []
    assert store.r.zscore(store.deadlines.due_key_of_thread("half"),
                          run_member("half", "r")) is None


@pytest.mark.parametrize("status", [RunStatus.DONE, RunStatus.INTERRUPTED])
def test_the_sweeper_retires_a_run_whose_end_died_before_leaving_the_index(
        empty: RedisClusterProcesses, status: RunStatus) -> None:
    """An end that stored the run's status and freed its thread (one transaction, the
    thread's slot), then died before the active-runs SREM (another slot): the look the end
    pushed first finds the run ended, or paused (the fault storm found one left listed),
    and retires it."""
    sweeper, store = _sweeper_on(empty.url)
    store.create_run(RunRecord("ended", "r", graph="g", status=RunStatus.RUNNING), None)
    assert store.claim_thread("ended", "r")
    due_key, member = store.deadlines.due_key_of_thread("ended"), run_member("ended", "r")
    store.r.zrem(due_key, member)  # a look that found leases watching all: no look left
    assert store.end_run("ended", "r", status)
    # As if the process died between the transaction and the SREM: still listed. The look
    # end_run pushed is due within FIRST_LOOK_MS; made due now rather than waited for.
    store.r.sadd(store.deadlines.key(shard_of("ended"), "active-runs"), "ended\x00r")
    assert store.r.zscore(due_key, member) is not None
    store.deadlines.look_by("ended", "r", 0)
    sweeper.sweep(range(SHARDS))
    assert store.active_runs() == []
