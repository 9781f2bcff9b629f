"""Routing on real workers: a node sent to a queue runs only on the worker consuming it.

Two `celery -A worker worker` processes, one with `-Q nodes` and one with `-Q gpu`, and a
scheduler. Every node records the Celery node name and the process group it ran in; each
worker is the leader of its own process group, so the group names the worker for certain.
"""

from __future__ import annotations

import json

import pytest

from tests.cluster import Cluster, RedisServer

GRAPH = "tests.routed_graphs:routed"


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url,
                      CELERYGRAPH_GRAPHS="tests.routed_graphs")
    try:
        cluster.start("cpu", queues="nodes")
        cluster.start("gpu", queues="gpu")
        cluster.start_scheduler()
        yield cluster
    finally:
        cluster.stop()


def placements(cluster: Cluster, redis_server: RedisServer, thread_id: str) -> dict[str, set]:
    """Which worker (by the name `cluster` started it under) ran each node of the thread."""
    by_group = {proc.pid: name for name, proc in cluster.procs.items()}
    out: dict[str, set] = {}
    for raw in redis_server.client().lrange(f"where:{thread_id}", 0, -1):
        rec = json.loads(raw)
        worker = by_group.get(rec["pgid"], f"unknown pgid {rec['pgid']}")
        # The Celery node name agrees with the process group: `-n <name>@%h`.
        assert rec["hostname"].split("@", 1)[0] == worker, rec
        out.setdefault(rec["node"], set()).add(worker)
    return out


def test_node_with_a_queue_runs_only_on_the_worker_consuming_it(cluster, redis_server):
    client = cluster.client()
    for i in range(3):
        thread = f"route-{i}"
        result = client.submit(GRAPH, {"log": []}, thread_id=thread).result(timeout=30)
        assert sorted(result["log"][:2]) == ["heavy", "light"]
        assert result["log"][2:] == ["report"]
        assert placements(cluster, redis_server, thread) == {
            "light": {"cpu"}, "heavy": {"gpu"}, "report": {"cpu"},
        }


def test_routes_given_at_submit_override_the_default_queue(cluster, redis_server):
    client = cluster.client()
    handle = client.submit(GRAPH, {"log": []}, thread_id="route-map", routes={"light": "gpu"})
    assert handle.result(timeout=30)["log"][2:] == ["report"]
    assert placements(cluster, redis_server, "route-map") == {
        "light": {"gpu"}, "heavy": {"gpu"}, "report": {"cpu"},
    }


def test_routes_given_at_submit_override_the_nodes_own_queue(cluster, redis_server):
    client = cluster.client()
    handle = client.submit(GRAPH, {"log": []}, thread_id="route-back", routes={"heavy": "nodes"})
    handle.result(timeout=30)
    assert placements(cluster, redis_server, "route-back") == {
        "light": {"cpu"}, "heavy": {"cpu"}, "report": {"cpu"},
    }


def test_compile_time_routes_set_node_queues():
    from tests.routed_graphs import _routed

    graph = _routed(routes={"light": "gpu", "heavy": "nodes"})
    assert graph.nodes["light"].queue == "gpu"
    assert graph.nodes["heavy"].queue == "nodes"
    with pytest.raises(ValueError, match="unknown node 'nope'"):
        _routed(routes={"nope": "gpu"})
