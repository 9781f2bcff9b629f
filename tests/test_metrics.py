"""Prometheus metrics scraped from real `celery worker` processes while runs go.

The node worker runs the prefork pool with two children: its counters are written by the
children and summed by the main process that serves `/metrics` (multiprocess mode), so a
count that moves here crossed processes. The scheduler runs the threads pool. Run counts
are summed over both, since which process starts or ends a run is not fixed.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scheduler.localcluster import free_port
from tests.cluster import Cluster, RedisServer
from tests.test_crash import (  # noqa: F401 - rabbit_queues is a fixture
    RABBITMQ_URL,
    rabbit_queues,
    wait_for_start,
    worker_running,
)

WAIT = 30.0  # bound on waiting for an endpoint to answer or a sample to appear

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url)
    cluster.ports = {"worker": free_port(), "scheduler": free_port()}
    try:
        cluster.start("metrics-worker", concurrency=2,
                      env=metrics_env(cluster.workdir, cluster.ports["worker"]))
        cluster.start_scheduler("metrics-scheduler",
                                env=metrics_env(cluster.workdir, cluster.ports["scheduler"]))
        yield cluster
    finally:
        cluster.stop()


def metrics_env(workdir: Path, port: int) -> dict[str, str]:
    """A process's metrics port, and its samples' directory under the test's own (the
    default, a fresh temporary directory removed at exit, would outlive a SIGKILL)."""
    directory = workdir / f"metrics-{port}"
    directory.mkdir(parents=True)
    return {"CELERYGRAPH_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(directory)}


def scrape(port: int) -> Samples:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            break
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def both(cluster: Cluster) -> Samples:
    out: Samples = {}
    for port in cluster.ports.values():
        for key, value in scrape(port).items():
            out[key] = out.get(key, 0.0) + value
    return out


def eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, "metrics did not reach the expected values"
        time.sleep(0.2)


GRAPH = "tests.dist_graphs:chain"


def test_counters_move_while_a_run_goes(cluster):
    before = both(cluster)
    client = cluster.client()
    handle = client.submit(GRAPH, {"log": [], "sleep": 1.5}, thread_id="metrics-1")
    # While `slow` sleeps the run is active, and both processes report the gauges they read
    # when scraped.
    eventually(lambda: handle.info()["status"] == "running")
    during = scrape(cluster.ports["worker"])
    assert ("celerygraph_queue_depth", frozenset({("queue", "nodes")})) in during
    assert ("celerygraph_queue_depth", frozenset({("queue", "scheduler")})) in during
    assert total(during, "celerygraph_active_runs") >= 1
    assert "celerygraph_active_runs" in {n for n, _ in scrape(cluster.ports["scheduler"])}

    assert handle.result(timeout=60)["log"] == ["a", "b", "slow", "d"]

    def moved() -> bool:
        after = both(cluster)
        def grew(name: str, **labels: str) -> float:
            return total(after, name, **labels) - total(before, name, **labels)
        return (grew("celerygraph_runs_started_total", graph=GRAPH) >= 1
                and grew("celerygraph_runs_ended_total", graph=GRAPH, status="done") >= 1
                and grew("celerygraph_supersteps_total", graph=GRAPH) >= 3
                and all(grew("celerygraph_node_duration_seconds_count", graph=GRAPH,
                             node=node, outcome="finished") >= 1
                        for node in ("a", "b", "slow", "d")))

    eventually(moved)
    after = scrape(cluster.ports["worker"])
    # `slow` slept 1.5 s: its duration is in the histogram's upper buckets, not the first.
    assert total(after, "celerygraph_node_duration_seconds_bucket", node="slow", le="0.005") \
        < total(after, "celerygraph_node_duration_seconds_bucket", node="slow", le="+Inf")
    assert total(after, "celerygraph_active_runs") == 0
    # One of the two processes holds the sweeper's lease and times its sweeps.
    assert total(both(cluster), "celerygraph_sweep_duration_seconds_count") > 0


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_queue_depth_counts_the_messages_no_worker_took(broker, request, tmp_path):
    """With no node worker up, the run's start waits in the node queue (`runs.start_queue`);
    no driver takes it, so the sweeper sends it to the scheduler too, whose start sends the
    first superstep's messages to the node queue: the scheduler reads them from the broker
    when scraped (LLEN; a passive queue_declare)."""
    server = RedisServer(tmp_path / "redis")
    if broker == "redis":
        queues = {"nodes": "nodes", "scheduler": "scheduler"}
        cluster = Cluster(tmp_path / "cluster", server.url)
    else:
        queues = request.getfixturevalue("rabbit_queues")
        cluster = Cluster(tmp_path / "cluster", server.url, broker_url=RABBITMQ_URL,
                          CELERYGRAPH_NODE_QUEUE=queues["nodes"],
                          CELERYGRAPH_SCHEDULER_QUEUE=queues["scheduler"])
    port = free_port()
    try:
        cluster.start_scheduler("depth-scheduler", env=metrics_env(tmp_path, port))
        cluster.client().submit("tests.dist_graphs:chain", {"log": []}, thread_id="waits")
        eventually(lambda: total(scrape(port), "celerygraph_queue_depth",
                                 queue=queues["nodes"]) == 3)  # the start, a and b
        assert total(scrape(port), "celerygraph_active_runs") == 1
    finally:
        cluster.stop()
        server.stop()


def test_the_sweeper_counts_a_lapsed_lease_and_its_redispatch(tmp_path):
    """SIGKILL the worker running `slow`: a surviving process's sweeper finds its lease
    lapsed and sends it again, and counts both."""
    server = RedisServer(tmp_path / "redis")
    cluster = Cluster(tmp_path / "cluster", server.url)
    ports = {name: free_port() for name in ("sweep-w1", "sweep-w2", "sweep-scheduler")}
    try:
        for name in ("sweep-w1", "sweep-w2"):
            cluster.start(name, env=metrics_env(tmp_path, ports[name]))
        cluster.start_scheduler("sweep-scheduler",
                                env=metrics_env(tmp_path, ports["sweep-scheduler"]))
        handle = cluster.client().submit("tests.dist_graphs:chain", {"log": [], "sleep": 2.0},
                                         thread_id="swept")
        victim = worker_running(cluster, wait_for_start(server, "swept", "slow"))
        cluster.kill(victim)
        assert handle.result(timeout=60)["log"] == ["a", "b", "slow", "d"]
        survivors = [port for name, port in ports.items() if name != victim]
        samples = [scrape(port) for port in survivors]
        assert sum(total(s, "celerygraph_lease_expiries_total") for s in samples) >= 1
        assert sum(total(s, "celerygraph_redispatches_total", kind="node")
                   for s in samples) >= 1
    finally:
        cluster.stop()
        server.stop()


def test_a_taken_metrics_port_is_logged_and_the_worker_still_runs_nodes(tmp_path):
    """Two processes on one host given the same port: the second says so and works on."""
    server = RedisServer(tmp_path / "redis")
    cluster = Cluster(tmp_path / "cluster", server.url)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            cluster.start("metrics-port-taken", env=metrics_env(tmp_path, port))
            cluster.start_scheduler("metrics-port-taken-scheduler")
            handle = cluster.client().submit("tests.dist_graphs:single", {"log": []},
                                             thread_id="port-taken")
            assert handle.result(timeout=60) == {"log": ["one"]}
            log = cluster.log("metrics-port-taken")
            assert f"metrics: cannot listen on port {port} (CELERYGRAPH_METRICS_PORT)" in log
            assert "runs nodes as usual" in log
        finally:
            cluster.stop()
            server.stop()


def test_an_unusable_multiprocess_dir_is_logged_and_the_worker_still_runs_nodes(tmp_path):
    server = RedisServer(tmp_path / "redis")
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    cluster = Cluster(tmp_path / "cluster", server.url)
    try:
        cluster.start("metrics-bad-dir", env={"CELERYGRAPH_METRICS_PORT": str(free_port()),
                                              "PROMETHEUS_MULTIPROC_DIR": str(not_a_dir)})
        cluster.start_scheduler("metrics-bad-dir-scheduler")
        handle = cluster.client().submit("tests.dist_graphs:single", {"log": []},
                                         thread_id="bad-dir")
        assert handle.result(timeout=60) == {"log": ["one"]}
        log = cluster.log("metrics-bad-dir")
        assert "metrics: cannot write samples to PROMETHEUS_MULTIPROC_DIR" in log
        assert str(not_a_dir) in log
    finally:
        cluster.stop()
        server.stop()
