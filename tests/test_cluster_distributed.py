"""Distributed runs with the store on a real Redis Cluster (3 masters started here), on real
`celery worker` processes: the distributed suite's core tests, the HTTP server's through
`langgraph-sdk`, and a worker SIGKILLed mid-node. The broker is a plain Redis: Celery has no
Redis Cluster transport.

The tests are those of `tests.test_distributed`, `tests.test_server_api`,
`tests.test_server_runs` and `tests.test_crash`, run again here with `redis_server`
standing for the cluster (its URL, and a cluster client for what the tests read), so that
each keeps one source.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from langgraph_sdk.client import SyncLangGraphClient

from tests import test_crash as crash
from tests import test_distributed as dist
from tests import test_server_api as api
from tests import test_server_runs as runs
from tests.cluster import Cluster, RedisServer
from tests.redis_cluster import RedisClusterProcesses, redis_cluster
from tests.server import server_fixtures
from tests.test_hostile_messages import wait_until


class ClusterStore:
    """What the distributed tests take as `redis_server`: the store's URL and a client."""

    def __init__(self, cluster: RedisClusterProcesses) -> None:
        self.cluster = cluster
        self.url = cluster.url

    def client(self) -> redis.Redis:
        return self.cluster.client()  # type: ignore[return-value]


@pytest.fixture(scope="module")
def store_cluster() -> Iterator[RedisClusterProcesses]:
    with redis_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def redis_server(store_cluster: RedisClusterProcesses) -> ClusterStore:
    return ClusterStore(store_cluster)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("broker"))
    yield server
    server.stop()


cluster, url, client = server_fixtures(
    "worker1", own_broker=True, CELERYGRAPH_MAX_VALUE_BYTES="200000",
    CELERYGRAPH_GRAPHS="tests.dist_graphs,tests.server_graphs")


test_chain_with_parallel_branches_and_join = dist.test_chain_with_parallel_branches_and_join
test_nodes_on_workers_get_the_graphs_store = dist.test_nodes_on_workers_get_the_graphs_store
test_context_reaches_workers_and_their_cache_is_shared = (
    dist.test_context_reaches_workers_and_their_cache_is_shared)
test_send_fan_out = dist.test_send_fan_out
test_edit_then_approve_through_the_client = dist.test_edit_then_approve_through_the_client
test_failed_node_fails_run_and_resume_reruns_only_it = (
    dist.test_failed_node_fails_run_and_resume_reruns_only_it)
test_unknown_graph_is_rejected_before_anything_is_stored = (
    dist.test_unknown_graph_is_rejected_before_anything_is_stored)
test_busy_thread_enqueues_second_submission = dist.test_busy_thread_enqueues_second_submission
test_async_nodes_and_routes_run_on_workers = dist.test_async_nodes_and_routes_run_on_workers


test_assistants_are_the_published_graphs = api.test_assistants_are_the_published_graphs
test_thread_lifecycle = api.test_thread_lifecycle
test_run_wait_then_state_history_and_edit = api.test_run_wait_then_state_history_and_edit
test_store_items = api.test_store_items
test_streamed_interrupt_resumed_by_command = runs.test_streamed_interrupt_resumed_by_command
test_every_stream_mode_and_subgraphs = runs.test_every_stream_mode_and_subgraphs
test_join_stream_reconnects_mid_run_with_last_event_id = (
    runs.test_join_stream_reconnects_mid_run_with_last_event_id)
test_double_texting_enqueue = runs.test_double_texting_enqueue
test_deleting_a_busy_thread_cancels_its_runs = runs.test_deleting_a_busy_thread_cancels_its_runs
test_async_client = runs.test_async_client


def test_active_runs_index_empties_once_runs_end(cluster: Cluster) -> None:
    """The active-runs index is sharded beside the sweep's shards, outside the thread's
    transaction: a run leaves it just after its end is stored, and every run the tests
    above ended has left it."""
    client = cluster.client()
    handle = client.submit("tests.dist_graphs:chain", {"log": []}, thread_id="active-1")
    assert handle.result(timeout=60) == {"log": ["a", "b", "slow", "d"]}
    wait_until("the index is empty", lambda: client.store.active_runs() == [])
    assert client.store.active_run_count() == 0


def test_sigkill_worker_mid_node_on_cluster_store(tmp_path: Path) -> None:
    """A worker SIGKILLed mid-node: the node runs again elsewhere, re-sent by the sweeper
    (the Redis broker keeps the dead worker's message for an hour), and every task that
    finished before the kill ran once. A cluster and a broker of its own, so that no other
    test's sweeper or worker takes part."""
    with redis_cluster() as store:
        broker = RedisServer(tmp_path / "broker")
        running = Cluster(tmp_path / "cluster", store.url, broker.url)
        try:
            running.start("w1")
            running.start("w2")
            running.start_scheduler()
            crash.kill_worker_mid_node(running, ClusterStore(store), "crash-cluster",
                                       redispatch_expected=True)
        finally:
            running.stop()
            broker.stop()


def test_a_cron_fires_with_beat_on_the_cluster_store(cluster: Cluster,
                                                     client: SyncLangGraphClient) -> None:
    """RedBeat keeps the schedule on the cluster (`scheduler.beat.redbeat_connection`):
    a cron made through the server fires at its next minute and its run succeeds."""
    cluster.start_beat("beat-on-cluster")
    try:
        thread_id = client.threads.create()["thread_id"]
        cron = client.crons.create_for_thread(thread_id, "tests.dist_graphs:chain",
                                              schedule="* * * * *", input={"log": []})
        wait_until("the cron's first run", lambda: bool(client.runs.list(thread_id)),
                   timeout=150)
        client.crons.delete(cron["cron_id"])
        found = client.runs.list(thread_id)
    finally:
        cluster.kill("beat-on-cluster")
    client.runs.join(thread_id, found[0]["run_id"])
    assert client.runs.get(thread_id, found[0]["run_id"])["status"] == "success"
