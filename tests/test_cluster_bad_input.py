"""A store of the wrong kind is refused where a process starts, storing nothing: a Redis
Cluster reached by a single-node URL, a single server reached by a cluster URL, a Redis
that may evict keys; and a Redis Cluster given as Celery's broker."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from graphdef.redis_client import StoreConfigError, check_store, connect
from scheduler.client import Client
from scheduler.localcluster import ROOT
from scheduler.settings import Settings
from tests.cluster import RedisServer
from tests.redis_cluster import RedisClusterProcesses, redis_cluster


@pytest.fixture(scope="module")
def store_cluster() -> Iterator[RedisClusterProcesses]:
    with redis_cluster() as running:
        yield running


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "plain")
    yield server
    server.stop()


def keys_on(cluster: RedisClusterProcesses) -> int:
    total = 0
    for node in cluster.nodes:
        with node.client() as client:
            total += int(client.dbsize())
    return total


def test_a_cluster_reached_by_a_single_node_url_is_refused(
        store_cluster: RedisClusterProcesses, plain: RedisServer) -> None:
    store_cluster.flush()
    single = store_cluster.nodes[0].url
    with pytest.raises(StoreConfigError, match=r"reaches a Redis Cluster node.*redis\+cluster://"):
        Client(Settings(broker_url=plain.url, store_url=single))
    assert keys_on(store_cluster) == 0


def test_a_single_server_reached_by_a_cluster_url_is_refused(plain: RedisServer) -> None:
    url = plain.url.replace("redis://", "redis+cluster://", 1)
    with pytest.raises(StoreConfigError, match=r"not one \(cluster_enabled:0\).*redis://"):
        Client(Settings(broker_url=plain.url, store_url=url))
    with plain.client() as client:
        assert client.dbsize() == 0


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_a_redis_that_may_evict_keys_is_refused(plain: RedisServer, policy: str) -> None:
    with plain.client() as client:
        client.config_set("maxmemory-policy", policy)
    with pytest.raises(StoreConfigError, match=f"maxmemory-policy {policy}.*noeviction"):
        Client(Settings(broker_url=plain.url, store_url=plain.url))
    with plain.client() as client:
        assert client.dbsize() == 0


def test_one_evicting_cluster_master_is_enough_to_refuse(
        store_cluster: RedisClusterProcesses) -> None:
    last = store_cluster.nodes[-1]
    with last.client() as node:
        node.config_set("maxmemory-policy", "volatile-lru")
    try:
        with pytest.raises(StoreConfigError, match="maxmemory-policy volatile-lru"):
            check_store(connect(store_cluster.url), store_cluster.url)
    finally:
        with last.client() as node:
            node.config_set("maxmemory-policy", "noeviction")
    check_store(connect(store_cluster.url), store_cluster.url)


@pytest.mark.parametrize("app", ["worker", "scheduler"])
def test_worker_and_scheduler_stop_as_they_start_on_a_wrong_store(
        store_cluster: RedisClusterProcesses, plain: RedisServer, app: str) -> None:
    """Exit status 1 and the reason, before `ready`: not a worker that takes tasks and gets
    MOVED for the threads of two masters out of three."""
    store_cluster.flush()
    env = {
        **os.environ,
        "CELERYGRAPH_BROKER_URL": plain.url,
        "CELERYGRAPH_STORE_URL": store_cluster.nodes[0].url,
        "CELERYGRAPH_GRAPHS": "tests.dist_graphs",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", app, "worker", "-n",
         f"wrong-store-{uuid.uuid4().hex[:6]}@%h", "-c", "1", "--without-gossip",
         "--without-mingle", "--loglevel", "INFO"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "reaches a Redis Cluster node" in out and " ready." not in out, out
    assert keys_on(store_cluster) == 0


def test_the_cli_says_what_is_wrong(store_cluster: RedisClusterProcesses,
                                    plain: RedisServer) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "CELERYGRAPH_BROKER_URL": plain.url,
           "CELERYGRAPH_STORE_URL": store_cluster.nodes[0].url}
    done = subprocess.run([sys.executable, "-m", "scheduler.cli", "threads"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "StoreConfigError" in done.stderr and "redis+cluster://" in done.stderr


def test_a_cluster_broker_url_is_refused() -> None:
    with pytest.raises(ValueError, match="Celery cannot use a Redis Cluster as its broker"):
        Settings.from_env({"CELERYGRAPH_BROKER_URL": "redis+cluster://127.0.0.1:7000/0"})


@pytest.mark.parametrize("url", ["redis+cluster:///0", "redis+cluster://:pw@127.0.0.1:1,nohost/0"])
def test_a_malformed_cluster_url_is_refused_without_showing_its_password(url: str) -> None:
    with pytest.raises(StoreConfigError) as raised:
        connect(url)
    assert "pw" not in str(raised.value)


def test_an_unreachable_store_is_not_taken_for_a_wrong_one(plain: RedisServer) -> None:
    """A single server that does not answer yet: the process starts (its Redis may come up
    after it), and the first command fails as any command would."""
    url = plain.url
    plain.stop()
    client = Client(Settings(broker_url=url, store_url=url))
    with pytest.raises(redis.ConnectionError):
        client.store.active_run_count()
