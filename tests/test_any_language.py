"""Producers in other languages: the documented raw message, from Node.js and by hand.

`examples/producers/node/start_run.js` (npm packages from its package-lock.json, installed
by `make test`) starts runs through a Redis broker and through RabbitMQ; the shell producer
that pushes the JSON envelope itself (`redis-cli LPUSH`) is played by a raw LPUSH here. A
waiter started before the message is sent waits for the run instead of failing. An
envelope kombu cannot read is refused with a logged reason instead of vanishing.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import uuid
from typing import Any

import kombu
import pytest

from scheduler.protocol import START_TASK
from tests.cluster import ROOT, Cluster

NODE_DIR = ROOT / "examples" / "producers" / "node"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
WAIT = 60.0


def node_producer(cluster: Cluster, *args: str) -> dict[str, str]:
    node = shutil.which("node")
    assert node is not None, "node is not on PATH"
    assert (NODE_DIR / "node_modules").is_dir(), (
        f"run `make test` (or `npm ci --prefix {NODE_DIR}`) to install the Node.js example")
    done = subprocess.run([node, str(NODE_DIR / "start_run.js"), *args], env=cluster.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def redis_envelope(kwargs: dict[str, Any], queue: str = "scheduler",
                   **drop: bool) -> dict[str, Any]:
    """The README's envelope for a Redis broker; `drop` leaves properties out by name."""
    task_id = str(uuid.uuid4())
    body = json.dumps([[], kwargs, {"callbacks": None, "errbacks": None, "chain": None,
                                    "chord": None}])
    properties = {
        "correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
        "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
    }
    return {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "sh", "task": START_TASK, "id": task_id, "root_id": task_id,
                    "parent_id": None, "group": None, "retries": 0, "eta": None,
                    "expires": None, "timelimit": [None, None]},
        "properties": {k: v for k, v in properties.items() if not drop.get(k)},
    }


def start_kwargs(thread_id: str, run_id: str) -> dict[str, Any]:
    return {"thread_id": thread_id, "run_id": run_id, "graph": "tests.dist_graphs:chain",
            "input": {"log": []}}


def wait_for_log(cluster: Cluster, name: str, needle: str) -> str:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for line in cluster.log(name).splitlines():
            if needle in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"{name} never logged {needle!r}:\n{cluster.log(name)[-3000:]}")


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url)
    try:
        cluster.start(f"anylang-{uuid.uuid4().hex[:6]}", concurrency=2)
        cluster.start_scheduler()
        yield cluster
    finally:
        cluster.stop()


def test_a_node_producer_starts_a_run_through_redis(cluster):
    client = cluster.client()
    waiter = client.run("node-redis", "node-redis-run")
    sent = node_producer(cluster, "tests.dist_graphs:chain", '{"log": []}', "node-redis",
                         "node-redis-run")
    assert sent == {"thread_id": "node-redis", "run_id": "node-redis-run"}
    assert waiter.wait(timeout=WAIT) == "done"
    assert waiter.result() == {"log": ["a", "b", "slow", "d"]}


def test_the_raw_envelope_pushed_by_hand_starts_a_run(cluster, redis_server):
    envelope = redis_envelope(start_kwargs("raw-lpush", "raw-lpush-run"))
    redis_server.client().lpush("scheduler", json.dumps(envelope))
    assert cluster.client().run("raw-lpush", "raw-lpush-run").result(timeout=WAIT) == {
        "log": ["a", "b", "slow", "d"]}


@pytest.mark.parametrize(("envelope", "problem"), [
    (lambda k: redis_envelope(k, delivery_tag=True),
     "properties.delivery_tag is missing or not a non-empty string"),
    (lambda k: redis_envelope(k, body_encoding=True),
     "properties.body_encoding is None; the body must be base64"),
    (lambda k: {**redis_envelope(k), "body": "not base64!"}, "body is not valid base64"),
    (lambda k: {key: v for key, v in redis_envelope(k).items() if key != "properties"},
     "properties is missing or not an object"),
])  # fmt: skip
def test_an_envelope_kombu_cannot_read_is_refused_with_a_reason(cluster, redis_server,
                                                               envelope, problem):
    thread_id = f"bad-envelope-{uuid.uuid4().hex[:6]}"
    raw = envelope(start_kwargs(thread_id, "never"))
    redis_server.client().lpush("scheduler", json.dumps(raw))
    task_id = raw["headers"]["id"]
    line = wait_for_log(cluster, "scheduler", f"id {task_id!r}")
    assert f"ERROR/MainProcess] rejecting a message on queue 'scheduler' (task " \
           f"'celerygraph.start_run', id {task_id!r}): {problem}" in line, line
    assert cluster.procs["scheduler"].poll() is None
    # The scheduler goes on serving: the next, well-formed message starts its run.
    good = redis_envelope(start_kwargs(thread_id, "after"))
    redis_server.client().lpush("scheduler", json.dumps(good))
    assert cluster.client().run(thread_id, "after").wait(timeout=WAIT) == "done"
    assert cluster.client().store.run(thread_id, "never") is None


@pytest.fixture
def rabbit_cluster(redis_server, tmp_path):
    """A cluster on the shared RabbitMQ, with queues and node names of its own."""
    suffix = uuid.uuid4().hex[:8]
    queues = {"nodes": f"cg-anylang-nodes-{suffix}", "scheduler": f"cg-anylang-sched-{suffix}"}
    try:
        with kombu.Connection(RABBITMQ_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # pragma: no cover - the machine promises RabbitMQ
        pytest.fail(f"RabbitMQ is not reachable at {RABBITMQ_URL}: {exc}")
    cluster = Cluster(tmp_path, redis_server.url, broker_url=RABBITMQ_URL,
                      CELERYGRAPH_NODE_QUEUE=queues["nodes"],
                      CELERYGRAPH_SCHEDULER_QUEUE=queues["scheduler"])
    try:
        cluster.start(f"anylang-w-{suffix}", queues=queues["nodes"])
        cluster.start(f"anylang-s-{suffix}", app="scheduler", queues=queues["scheduler"],
                      pool="threads", concurrency=2)
        yield cluster
    finally:
        cluster.stop()
        with kombu.Connection(RABBITMQ_URL) as conn:
            channel = conn.channel()
            for name in queues.values():
                channel.queue_delete(name)


def test_a_node_producer_starts_a_run_through_rabbitmq(rabbit_cluster):
    client = rabbit_cluster.client()
    waiter = client.run("node-amqp", "node-amqp-run")
    node_producer(rabbit_cluster, "tests.dist_graphs:chain", '{"log": []}', "node-amqp",
                  "node-amqp-run")
    assert waiter.result(timeout=WAIT) == {"log": ["a", "b", "slow", "d"]}


def test_the_node_producer_refuses_a_queue_nobody_declared(rabbit_cluster):
    rabbit_cluster.env["CELERYGRAPH_SCHEDULER_QUEUE"] = f"cg-nobody-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["node", str(NODE_DIR / "start_run.js"), "tests.dist_graphs:chain",
                           "{}", "t", "r"], env=rabbit_cluster.env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and "NOT_FOUND" in done.stderr, done.stderr


def test_the_readme_shows_the_message_this_test_sends():
    readme = (ROOT / "README.md").read_text()
    for field in ('"delivery_tag"', '"body_encoding": "base64"', '"task": "celerygraph.start_run"',
                  "LPUSH scheduler", "examples/producers/node/start_run.js"):
        assert field in readme, field



def test_an_envelope_that_is_not_json_is_refused_and_the_consumer_survives(cluster,
                                                                           redis_server):
    """Kombu decodes a popped envelope before any check: text that is not JSON used to raise
    out of the consumer and stop the scheduler (one bad LPUSH, one dead worker)."""
    redis_server.client().lpush("scheduler", b"this is not json {")
    line = wait_for_log(cluster, "scheduler", "its envelope is not JSON")
    assert "ERROR/MainProcess] rejecting a message on a Redis queue" in line, line
    assert cluster.procs["scheduler"].poll() is None
    thread_id = f"after-non-json-{uuid.uuid4().hex[:6]}"
    redis_server.client().lpush("scheduler", json.dumps(
        redis_envelope(start_kwargs(thread_id, "after"))))
    assert cluster.client().run(thread_id, "after").wait(timeout=WAIT) == "done"
