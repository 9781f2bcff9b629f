"""Flower as a real process against the cluster's broker: node tasks by `<graph>.<node>`.

Flower builds its task list from the events workers and publishers send (task-sent,
-received, -started, -succeeded). A node task is sent as `celerygraph.run_node` with
`shadow="<graph>.<node>"`; the worker names the request after the shadow, so its events,
and Flower, show `chain.a`. Events published before Flower subscribed are lost (they are
broadcast, not queued), so the tests first wait until Flower demonstrably receives them.
The cluster runs with `CELERYGRAPH_CHAIN_IN_PLACE=0`, the setting for one Flower row per node
(by default a lone next task runs inside the task that finished the step before it).
"""

from __future__ import annotations

import ast
import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from scheduler.localcluster import free_port
from scheduler.protocol import NODE_TASK
from tests.cluster import Cluster

AUTH = "ops:s3cret"


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url,
                      CELERYGRAPH_CHAIN_IN_PLACE="0")
    try:
        cluster.port = free_port()
        cluster.start_flower(cluster.port, AUTH)
        cluster.start("worker1", concurrency=2)
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


def tasks_of(cluster: Cluster, run_id: str) -> dict[str, dict[str, Any]]:
    """Flower's tasks whose arguments mention the run, by Celery task id."""
    status, tasks = get(cluster, "/api/tasks")
    assert status == 200, tasks
    return {uuid: t for uuid, t in tasks.items()
            if run_id in (t.get("args") or "") + (t.get("kwargs") or "")}


def node_tasks(found: dict[str, dict[str, Any]], thread_id: str,
               run_id: str) -> dict[str, dict[str, Any]]:
    """The node tasks among them: arguments (thread id, run id, checkpoint id, task id, ...)."""
    out = {}
    for uuid, task in found.items():
        args = ast.literal_eval(task.get("args") or "()")
        if len(args) >= 4 and tuple(args[:2]) == (thread_id, run_id):
            out[uuid] = {**task, "checkpoint_id": args[2], "task_id": args[3]}
    return out


def wait_for_nodes(cluster: Cluster, thread_id: str, run_id: str, count: int,
                   timeout: float = 10) -> dict[str, dict[str, Any]]:
    """Flower's node tasks of the run, once it lists `count` of them, all succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = node_tasks(tasks_of(cluster, run_id), thread_id, run_id)
        settled = all(t["state"] == "SUCCESS" for t in nodes.values())
        if (len(nodes) >= count and settled) or time.monotonic() > deadline:
            return nodes
        time.sleep(0.2)


@pytest.fixture(scope="module")
def flower_listening(cluster):
    """Run tiny graphs until one shows up in Flower: from then on it captures every event."""
    client = cluster.client()
    for i in range(40):
        thread = f"warm-{i}"
        handle = client.submit("tests.dist_graphs:single", {"log": []}, thread_id=thread)
        handle.result(timeout=30)
        if wait_for_nodes(cluster, thread, handle.id, 1, timeout=1):
            return
    listed = [(t["name"], t["args"]) for t in get(cluster, "/api/tasks")[1].values()]
    raise AssertionError(f"Flower lists no node task of a run; it lists {listed[:5]}\n"
                         f"{cluster.log('flower')[-3000:]}")


@pytest.fixture(scope="module")
def chain_run(cluster, flower_listening):
    """One run of `chain` (nodes a, b, slow, d) and what Flower lists for it."""
    client = cluster.client()
    handle = client.submit("tests.dist_graphs:chain", {"log": []}, thread_id="flower-1")
    assert handle.result(timeout=30) == {"log": ["a", "b", "slow", "d"]}
    nodes = wait_for_nodes(cluster, "flower-1", handle.id, 4)
    # What the scheduler dispatched: Celery task id -> the shadow name it sent it with.
    dispatched = {}
    for checkpoint_id in {t["checkpoint_id"] for t in nodes.values()}:
        for task_id, info in client.store.step_tasks("flower-1", handle.id,
                                                     checkpoint_id).items():
            dispatched[f"{handle.id[:8]}-{task_id}"] = info["shadow"]
    return handle, nodes, dispatched, tasks_of(cluster, handle.id)


def test_node_tasks_show_with_run_thread_worker_and_every_event(chain_run):
    handle, nodes, dispatched, everything = chain_run
    assert sorted(dispatched.values()) == ["chain.a", "chain.b", "chain.d", "chain.slow"]
    assert set(nodes) == set(dispatched), (sorted(nodes), sorted(dispatched))
    for task in nodes.values():
        assert task["state"] == "SUCCESS", task
        # The thread and the run are the node task's first two arguments.
        assert task["args"].startswith(f"['flower-1', '{handle.id}', "), task["args"]
        assert task["worker"].startswith("worker1@"), task
        assert task["routing_key"] == "nodes", task
        # sent (by the scheduler), received, started, succeeded (by the worker): all on.
        assert all(task[e] for e in ("sent", "received", "started", "succeeded")), task
    # The scheduler's start task is listed by its name, on the scheduler worker. The node
    # task that completes a step advances the run itself: no advance task in between.
    by_name = {t["name"]: t for t in everything.values()}
    assert by_name["celerygraph.start_run"]["worker"].startswith("scheduler@")
    assert "'thread_id': 'flower-1'" in by_name["celerygraph.start_run"]["kwargs"]
    assert "celerygraph.advance" not in by_name


def test_sent_events_carry_the_shadow_name():
    """Stock Celery names task-sent events after the registered task, ignoring `shadow=`."""
    from worker import app

    message = app.amqp.as_task_v2("probe", NODE_TASK, args=[], kwargs={}, shadow="g.n",
                                  create_sent_event=True)
    assert message.sent_event["name"] == "g.n"


def test_node_tasks_are_listed_by_graph_and_node(chain_run):
    """Each node task is listed under the `<graph>.<node>` shadow the scheduler gave it.

    The worker's task-received event names a task after its shadow; the publisher's
    task-sent event does too only because of `scheduler.amqp.ShadowNamedAMQP`. Without it,
    Flower (merging events in arrival order) renamed about one node task in five back to
    `celerygraph.run_node`.
    """
    _, nodes, dispatched, _ = chain_run
    wrong = {uuid: t["name"] for uuid, t in nodes.items() if t["name"] != dispatched[uuid]}
    assert not wrong, wrong


def test_unauthenticated_requests_are_refused(cluster):
    assert get(cluster, "/api/tasks", auth=None)[0] == 401
    assert get(cluster, "/api/workers", auth=None)[0] == 401
    assert get(cluster, "/api/tasks", auth="ops:wrong")[0] == 401
    assert get(cluster, "/api/tasks")[0] == 200
