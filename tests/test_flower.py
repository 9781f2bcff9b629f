"""Flower as a real process against a cluster with default settings: a row per node run.

Flower builds its task list from the events workers and publishers send (task-sent,
-received, -started, -succeeded, -failed). A node task sent as its own message is
`celerygraph.run_node` with `shadow="<graph>.<node>"`, and Celery's events name it after
the shadow. A node run without a message of its own (the lone next step, run in place by
the worker that finished the step before; a task of a `run_nodes` batch) sends those events
itself (`worker.rows`), under the id its own message would have had. Events published
before Flower subscribed are lost (they are broadcast, not queued), so the tests first wait
until Flower demonstrably receives them.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from scheduler.localcluster import free_port
from scheduler.protocol import NODE_TASK, node_message_id, shadow_name
from tests.cluster import Cluster

AUTH = "ops:s3cret"
WAIT = 30.0  # bound on waiting for Flower to list what a finished run did


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url)
    try:
        cluster.port = free_port()
        cluster.start_flower(cluster.port, AUTH)
        cluster.start("worker1", concurrency=2)
        cluster.start("worker2", concurrency=2)
        cluster.start_scheduler()
        wait_for_flower(cluster)
        yield cluster
    finally:
        cluster.stop()


def get(cluster: Cluster, path: str, auth: str | None = AUTH) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{cluster.port}{path}")
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def wait_for_flower(cluster: Cluster, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster.procs["flower"].poll() is not None:
            raise RuntimeError(f"flower exited:\n{cluster.log('flower')[-3000:]}")
        try:
            if get(cluster, "/healthcheck", auth=None)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"flower not answering:\n{cluster.log('flower')[-3000:]}")


def rows_of(cluster: Cluster, thread_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    """Flower's rows whose arguments start with the run's thread and run ids, by Celery
    task id: node rows (a task id fourth) and batch messages (a task list fourth)."""
    status, tasks = get(cluster, "/api/tasks")
    assert status == 200, tasks
    out = {}
    for uuid, task in tasks.items():
        if run_id not in (task.get("args") or ""):
            continue
        args = ast.literal_eval(task["args"])
        if len(args) >= 4 and tuple(args[:2]) == (thread_id, run_id):
            out[uuid] = {**task, "checkpoint_id": args[2], "task_ref": args[3]}
    return out


def node_rows(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {uuid: t for uuid, t in rows.items() if isinstance(t["task_ref"], str)}


def wait_for_rows(cluster: Cluster, thread_id: str, run_id: str,
                  done: Callable[[dict[str, dict[str, Any]]], bool],
                  timeout: float = WAIT) -> dict[str, dict[str, Any]]:
    """The run's rows once `done(rows)` holds (or the bound passed: the asserts tell)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = rows_of(cluster, thread_id, run_id)
        if done(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def settled(count: int) -> Callable[[dict[str, dict[str, Any]]], bool]:
    """At least `count` node rows, none of them still received or started."""
    def check(rows: dict[str, dict[str, Any]]) -> bool:
        nodes = node_rows(rows).values()
        return len(nodes) >= count and all(t["state"] in ("SUCCESS", "FAILURE")
                                           for t in rows.values())
    return check


def dispatched(client: Any, thread_id: str, run_id: str) -> dict[str, str]:
    """What the run's steps ran, from its `task_finished` events: the Celery id of each
    task's first message (and row) -> its `<graph>.<node>` name. (Not from the steps'
    records: a kept task's step ended in one script drops its own.)"""
    graph = client.store.run(thread_id, run_id).graph
    return {node_message_id(run_id, data["task_id"]): shadow_name(graph, data["node"])
            for _, kind, data in client.store.events(thread_id, run_id)
            if kind == "task_finished"}


def run_and_list(cluster: Cluster, graph: str, run_input: dict[str, Any], thread_id: str,
                 rows: int) -> tuple[Any, dict[str, dict[str, Any]]]:
    handle = cluster.client().submit(f"tests.dist_graphs:{graph}", run_input,
                                     thread_id=thread_id)
    handle.wait(timeout=60)
    return handle, wait_for_rows(cluster, thread_id, handle.id, settled(rows))


def assert_rows_complete(rows: dict[str, dict[str, Any]], thread_id: str,
                         run_id: str) -> None:
    """Each node row: named, on a worker, with its arguments, times and runtime."""
    for task in node_rows(rows).values():
        assert task["args"].startswith(f"['{thread_id}', '{run_id}', "), task
        assert task["worker"].split("@")[0] in ("worker1", "worker2"), task
        assert task["received"] and task["started"], task
        if task["state"] == "SUCCESS":
            assert task["succeeded"] and task["runtime"] is not None, task


@pytest.fixture(scope="module")
def flower_listening(cluster):
    """Run tiny graphs until one shows up in Flower: from then on it captures every event."""
    client = cluster.client()
    for i in range(40):
        thread = f"warm-{i}"
        handle = client.submit("tests.dist_graphs:single", {"log": []}, thread_id=thread)
        handle.result(timeout=30)
        if node_rows(wait_for_rows(cluster, thread, handle.id, settled(1), timeout=1)):
            return
    listed = [(t["name"], t["args"]) for t in get(cluster, "/api/tasks")[1].values()]
    raise AssertionError(f"Flower lists no node task of a run; it lists {listed[:5]}\n"
                         f"{cluster.log('flower')[-3000:]}")


def test_every_node_of_a_chain_has_a_row_in_place_or_not(cluster, flower_listening):
    """`chain`: a and b side by side (a message each), then slow and d, each the lone next
    step, run in place by the worker that finished the step before."""
    handle, rows = run_and_list(cluster, "chain", {"log": []}, "flower-chain", 4)
    assert handle.result() == {"log": ["a", "b", "slow", "d"]}
    nodes = node_rows(rows)
    sent = dispatched(cluster.client(), "flower-chain", handle.id)
    assert sorted(sent.values()) == ["chain.a", "chain.b", "chain.d", "chain.slow"]
    assert {uuid: t["name"] for uuid, t in nodes.items()} == sent
    assert all(t["state"] == "SUCCESS" for t in nodes.values()), nodes
    assert_rows_complete(rows, "flower-chain", handle.id)
    # a and b went through the broker (sent by the start, on the nodes queue); slow and d
    # ran inside the message that finished the step before, whose id is their parent.
    by_name = {t["name"]: t for t in nodes.values()}
    for name in ("chain.a", "chain.b"):
        assert by_name[name]["sent"] and by_name[name]["routing_key"] == "nodes"
    for name in ("chain.slow", "chain.d"):
        assert not by_name[name]["sent"], by_name[name]
        assert by_name[name]["parent_id"] in nodes, by_name[name]
    # The start task is listed by its name, on a node worker (`runs.start_queue`), which
    # sent a and b; no scheduler task at all: the node task that completes a step advances
    # the run itself.
    everything = get(cluster, "/api/tasks")[1].values()
    names = {t["name"]: t for t in everything if handle.id in (t.get("kwargs") or "")
             + (t.get("args") or "")}
    start = names["celerygraph.start_and_run"]
    assert start["routing_key"] == "nodes" and not start["worker"].startswith("scheduler@")
    assert "celerygraph.start_run" not in names and "celerygraph.advance" not in names


def test_a_fan_out_and_its_gather_each_have_a_row(cluster, flower_listening):
    handle, rows = run_and_list(cluster, "fanout", {"n": 3, "log": []}, "flower-fan", 4)
    log = handle.result()["log"]
    assert sorted(log[:3]) == [0, 1, 2] and log[3:] == ["total"]
    names = sorted(t["name"] for t in node_rows(rows).values())
    assert names == ["fanout.total", "fanout.work", "fanout.work", "fanout.work"]
    assert all(t["state"] == "SUCCESS" for t in rows.values()), rows
    assert_rows_complete(rows, "flower-fan", handle.id)


def test_tasks_batched_in_one_message_each_have_a_row(cluster, flower_listening):
    """100 `Send`s go in 50 messages of two (CELERYGRAPH_STEP_MESSAGES=64): each task has
    its row, and each message one named after its node and size."""
    handle, rows = run_and_list(cluster, "fanout", {"n": 100, "log": []}, "flower-batch", 101)
    assert sorted(handle.result()["log"][:100]) == list(range(100))
    nodes = node_rows(rows)
    assert sorted(t["name"] for t in nodes.values()) == ["fanout.total"] + ["fanout.work"] * 100
    assert len({t["task_ref"] for t in nodes.values()}) == 101
    batches = [t for uuid, t in rows.items() if uuid not in nodes]
    assert [t["name"] for t in batches] == ["fanout.work(x2)"] * 50
    assert all(t["state"] == "SUCCESS" for t in rows.values()), rows
    assert_rows_complete(rows, "flower-batch", handle.id)
    # A batched task's row names the message that carried it as its parent.
    works = [t for t in nodes.values() if t["name"] == "fanout.work"]
    assert {t["parent_id"] for t in works} == {uuid for uuid in rows if uuid not in nodes}


@pytest.mark.parametrize(("graph", "in_place"), [("failing", False), ("fails_in_place", True)])
def test_a_failing_node_has_a_failed_row(cluster, flower_listening, graph, in_place):
    """`failing`: boom is a message of its own; `fails_in_place`: it runs inside ok's."""
    thread_id = f"flower-{graph}"
    handle, rows = run_and_list(cluster, graph, {"log": []}, thread_id, 2)
    assert handle.status() == "failed"
    by_name = {t["name"]: t for t in node_rows(rows).values()}
    boom = by_name[f"{graph}.boom"]
    assert boom["state"] == "FAILURE", boom
    assert "boom went the node" in boom["exception"], boom
    assert "ValueError" in boom["traceback"], boom
    assert by_name[f"{graph}.ok"]["state"] == "SUCCESS"
    assert bool(boom["sent"]) is not in_place, boom
    assert_rows_complete(rows, thread_id, handle.id)


def test_a_node_killed_mid_run_in_place_shows_both_runs(cluster, redis_server,
                                                       flower_listening):
    """slow runs in place; its worker is SIGKILLed mid-node, the sweeper sends it again, and
    the other worker runs it: Flower shows the lost run (started, on the killed worker) and
    the one that finished, each under an id of its own."""
    thread_id = "flower-kill"
    client = cluster.client()
    handle = client.submit("tests.dist_graphs:chain", {"log": [], "sleep": 2.0},
                           thread_id=thread_id)
    victim = worker_of_node(cluster, redis_server, thread_id, "slow")
    try:
        started = wait_for_rows(cluster, thread_id, handle.id, lambda rows: any(
            t["name"] == "chain.slow" and t["state"] == "STARTED" for t in rows.values()))
        cluster.kill(victim)
        assert handle.result(timeout=60)["log"] == ["a", "b", "slow", "d"]
        rows = wait_for_rows(cluster, thread_id, handle.id, lambda rows: any(
            t["name"] == "chain.d" and t["state"] == "SUCCESS" for t in rows.values()))
    finally:
        if victim not in cluster.procs:
            cluster.start(victim, concurrency=2)
    slow = sorted((t for t in node_rows(rows).values() if t["name"] == "chain.slow"),
                  key=lambda t: t["started"])
    assert [(t["state"], t["worker"].split("@")[0]) for t in slow] == [
        ("STARTED", victim), ("SUCCESS", "worker2" if victim == "worker1" else "worker1")]
    lost = next(uuid for uuid, t in started.items() if t["name"] == "chain.slow")
    assert lost in rows and rows[lost]["state"] == "STARTED"
    assert all(t["state"] == "SUCCESS" for t in node_rows(rows).values()
               if t["name"] != "chain.slow"), rows


def worker_of_node(cluster: Cluster, redis_server, thread_id: str, node: str) -> str:
    """The cluster worker whose process group runs `node` (each node logs its pid)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for raw in redis_server.client().lrange(f"started:{thread_id}", 0, -1):
            name, pid, _ = raw.decode().split("|")
            if name == node:
                group = os.getpgid(int(pid))
                return next(n for n, p in cluster.procs.items() if p.pid == group)
        time.sleep(0.02)
    raise AssertionError(f"{node} never started")


def test_sent_events_carry_the_shadow_name():
    """Stock Celery names task-sent events after the registered task, ignoring `shadow=`.
    Without `scheduler.amqp.ShadowNamedAMQP`, Flower (merging events in arrival order)
    renamed about one node task in five back to `celerygraph.run_node`."""
    from worker import app

    message = app.amqp.as_task_v2("probe", NODE_TASK, args=[], kwargs={}, shadow="g.n",
                                  create_sent_event=True)
    assert message.sent_event["name"] == "g.n"


def test_unauthenticated_requests_are_refused(cluster):
    assert get(cluster, "/api/tasks", auth=None)[0] == 401
    assert get(cluster, "/api/workers", auth=None)[0] == 401
    assert get(cluster, "/api/tasks", auth="ops:wrong")[0] == 401
    assert get(cluster, "/api/tasks")[0] == 200
