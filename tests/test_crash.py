"""Crashes with real processes: SIGKILL a worker mid-node, or the scheduler mid-run.

Every node counts its runs in Redis per task, so after the crash the test can tell that the
killed node ran again (elsewhere, within seconds) and every task that had finished ran
exactly once.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import kombu
import pytest

from tests.cluster import Cluster, RedisServer

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.stop()


def started(redis_server, thread_id: str) -> list[tuple[str, int, float]]:
    """(node, pid, time) of every node start on the thread, in order."""
    out = []
    for raw in redis_server.client().lrange(f"started:{thread_id}", 0, -1):
        node, pid, at = raw.decode().split("|")
        out.append((node, int(pid), float(at)))
    return out


def runs_per_task(redis_server, thread_id: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for field, value in redis_server.client().hgetall(f"runs:{thread_id}").items():
        node = field.decode().split("|", 1)[0]
        out.setdefault(node, []).append(int(value))
    return {k: sorted(v) for k, v in out.items()}


def wait_for_start(redis_server, thread_id: str, node: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, pid, _ in started(redis_server, thread_id):
            if name == node:
                return pid
        time.sleep(0.02)
    raise AssertionError(f"{node} never started")


def worker_running(cluster: Cluster, pid: int) -> str:
    """The worker whose process group holds `pid` (a pool child or the worker itself)."""
    group = os.getpgid(pid)
    return next(name for name, proc in cluster.procs.items() if proc.pid == group)


def kill_worker_mid_node(cluster: Cluster, redis_server, thread_id: str, *,
                         redispatch_expected: bool) -> None:
    client = cluster.client()
    handle = client.submit("tests.dist_graphs:chain", {"log": [], "sleep": 2.0},
                           thread_id=thread_id)
    pid = wait_for_start(redis_server, thread_id, "slow")
    victim = worker_running(cluster, pid)
    cluster.kill(victim)
    killed_at = time.time()

    assert handle.result(timeout=60)["log"] == ["a", "b", "slow", "d"]
    slow_starts = [(p, at) for node, p, at in started(redis_server, thread_id) if node == "slow"]
    assert len(slow_starts) == 2
    (first_pid, _), (second_pid, second_at) = slow_starts
    assert first_pid == pid and second_pid != pid
    assert second_at - killed_at < 10, f"re-run started {second_at - killed_at:.1f} s after kill"
    # Tasks that finished before the kill ran exactly once; the killed one twice.
    assert runs_per_task(redis_server, thread_id) == {"a": [1], "b": [1], "slow": [2], "d": [1]}
    if redispatch_expected:
        # A Redis broker holds the dead worker's message for an hour: only the sweeper can
        # have sent it again. RabbitMQ redelivers at once, and either copy may win the lease.
        assert "task_redispatched" in [e.type for e in handle.events()]


def test_sigkill_worker_mid_node_redis_broker(redis_server, tmp_path):
    cluster = Cluster(tmp_path, redis_server.url)
    try:
        cluster.start("w1")
        cluster.start("w2")
        cluster.start_scheduler()
        kill_worker_mid_node(cluster, redis_server, "crash-redis", redispatch_expected=True)
    finally:
        cluster.stop()


@pytest.fixture
def rabbit_queues():
    """Queue names of this test's own on the shared RabbitMQ, deleted afterwards."""
    suffix = uuid.uuid4().hex[:8]
    names = {"nodes": f"cg-test-nodes-{suffix}", "scheduler": f"cg-test-scheduler-{suffix}"}
    try:
        with kombu.Connection(RABBITMQ_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # pragma: no cover - the machine promises RabbitMQ
        pytest.fail(f"RabbitMQ is not reachable at {RABBITMQ_URL}: {exc}")
    yield names
    with kombu.Connection(RABBITMQ_URL) as conn:
        channel = conn.channel()
        for name in names.values():
            channel.queue_delete(name)


def test_sigkill_worker_mid_node_rabbitmq_broker(redis_server, tmp_path, rabbit_queues):
    cluster = Cluster(
        tmp_path, redis_server.url, broker_url=RABBITMQ_URL,
        CELERYGRAPH_NODE_QUEUE=rabbit_queues["nodes"],
        CELERYGRAPH_SCHEDULER_QUEUE=rabbit_queues["scheduler"],
    )
    try:
        cluster.start("w1", queues=rabbit_queues["nodes"])
        cluster.start("w2", queues=rabbit_queues["nodes"])
        cluster.start("scheduler", app="scheduler", queues=rabbit_queues["scheduler"],
                      pool="threads", concurrency=4)
        kill_worker_mid_node(cluster, redis_server, "crash-rabbit", redispatch_expected=False)
    finally:
        cluster.stop()


def test_sigkill_scheduler_mid_run_then_restart(redis_server, tmp_path):
    """Node workers advance the supersteps they complete; the scheduler starts runs (and
    takes advances a worker hands it). It dies here mid-start, after writing the run's first
    checkpoint and before dispatching anything: nothing moves until a scheduler is back.
    Without chain in place the scheduler starts every run (`runs.start_queue`)."""
    cluster = Cluster(tmp_path, redis_server.url, CELERYGRAPH_CHAIN_IN_PLACE="0")
    try:
        cluster.start("w1")
        cluster.env["CELERYGRAPH_FAULTS"] = "advance_checkpointed=1"
        first = cluster.start_scheduler("scheduler1")
        cluster.env["CELERYGRAPH_FAULTS"] = ""
        handle = cluster.client().submit("tests.dist_graphs:chain", {"log": []},
                                         thread_id="sched-crash")
        deadline = time.monotonic() + 30
        while first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.poll() == -9, cluster.log("scheduler1")[-2000:]
        time.sleep(1.5)  # a lease and then some: the worker's sweeper re-sends the start
        assert handle.status() == "running" and runs_per_task(redis_server, "sched-crash") == {}
        cluster.start_scheduler("scheduler2")
        assert handle.result(timeout=60)["log"] == ["a", "b", "slow", "d"]
        assert runs_per_task(redis_server, "sched-crash") == {
            "a": [1], "b": [1], "slow": [1], "d": [1]
        }
    finally:
        cluster.stop()


def test_sigkill_worker_mid_start_then_the_scheduler_starts_it(redis_server, tmp_path):
    """A run starts on a node worker (`runs.start_queue`). One killed mid-start, after the
    run's first checkpoint and before anything was dispatched, leaves the run to the sweeper,
    which sends its start to the scheduler; that start carries on from what the dead one
    wrote, and every node runs once. (How far the scheduler got before the kill is left
    open: on a busy machine the sweeper may send the start while the worker is still
    getting to its first checkpoint, and that worker's start then dies all the same.)"""
    cluster = Cluster(tmp_path, redis_server.url)
    try:
        cluster.start_scheduler()
        cluster.env["CELERYGRAPH_FAULTS"] = "advance_checkpointed=1"
        cluster.start("w1", concurrency=1)
        cluster.env["CELERYGRAPH_FAULTS"] = ""
        handle = cluster.client().submit("tests.dist_graphs:chain", {"log": []},
                                         thread_id="start-crash")
        deadline = time.monotonic() + 30
        while "SIGKILL" not in cluster.log("w1") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "SIGKILL" in cluster.log("w1"), cluster.log("w1")[-2000:]
        assert "celerygraph.start_and_run" in cluster.log("w1")
        cluster.kill("w1")
        assert handle.record().has_base_head  # the dead start took the run's input
        cluster.start("w2")
        assert handle.result(timeout=60)["log"] == ["a", "b", "slow", "d"]
        assert runs_per_task(redis_server, "start-crash") == {
            "a": [1], "b": [1], "slow": [1], "d": [1]
        }
    finally:
        cluster.stop()


def test_concurrent_producers_on_one_thread_one_wins(redis_server, tmp_path):
    from scheduler.errors import ThreadBusyError

    cluster = Cluster(tmp_path, redis_server.url)
    try:
        cluster.start("w1")
        cluster.start_scheduler()
        barrier = threading.Barrier(4)
        outcomes: list[object] = []

        def produce(i: int) -> None:
            client = cluster.client()
            barrier.wait()
            try:
                outcomes.append(client.submit("tests.dist_graphs:single", {"log": [i]},
                                              thread_id="contended"))
            except ThreadBusyError as exc:
                outcomes.append(exc)

        workers = [threading.Thread(target=produce, args=(i,)) for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        accepted = [o for o in outcomes if not isinstance(o, ThreadBusyError)]
        assert len(accepted) == 1 and len(outcomes) == 4
        result = accepted[0].result(timeout=60)
        assert len(result["log"]) == 2 and result["log"][1] == "one"
        assert cluster.client().store.runs_of("contended") == [accepted[0].id]
    finally:
        cluster.stop()


def test_sigkill_server_mid_start(redis_server, tmp_path):
    """The HTTP server starts the runs of graphs it loads itself (`Client.start_here`). It
    dies here mid-start, after the run's first checkpoint and before anything is dispatched:
    the run's lease lapses, the scheduler's sweeper sends its start, and that start carries
    on from what the dead one wrote; every node runs exactly once."""
    from langgraph_sdk import get_sync_client

    from tests.server import API_KEYS, start_server

    cluster = Cluster(tmp_path, redis_server.url)
    try:
        cluster.start("w1")
        cluster.start_scheduler()
        url = start_server(cluster, CELERYGRAPH_FAULTS="advance_checkpointed=1")
        sdk = get_sync_client(url=url, api_key=API_KEYS[0])
        thread_id = sdk.threads.create()["thread_id"]
        with pytest.raises(Exception):  # noqa: B017, PT011 - the connection just drops
            sdk.runs.create(thread_id, "tests.dist_graphs:chain", input={"log": []})
        server = cluster.procs["server"]
        server.wait(timeout=30)
        assert server.returncode == -9, cluster.log("server")[-2000:]
        client = cluster.client()
        (run_id,) = client.store.runs_of(thread_id)
        assert client.run(thread_id, run_id).result(timeout=60)["log"] == [
            "a", "b", "slow", "d"]
        assert runs_per_task(redis_server, thread_id) == {
            "a": [1], "b": [1], "slow": [1], "d": [1]
        }
    finally:
        cluster.stop()
