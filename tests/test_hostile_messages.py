"""Forged and malformed broker messages against real worker and scheduler processes.

A private redis-server is the broker and the store (never 6379). Raw messages are published
with kombu straight onto the `nodes` and `scheduler` queues, the way anyone who can write to
the broker could. Each test checks that the message ran nothing (a canary file stays absent,
no node counted a run, nothing was written to Redis for a forged run), that it was logged,
and that the worker is still alive and serving: a normal run submitted afterwards completes.

Waits poll for a log line or a state with a generous bound; no test asserts on durations.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kombu
import pytest
import redis

from tests.cluster import ROOT, Cluster, RedisServer

CANARY_MODULE = "cg_hostile_canary"
WAIT = 30.0  # bound on waiting for an event that should come within a second


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def canary_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A module that writes a flag file when imported; the cluster could import it."""
    where = tmp_path_factory.mktemp("canary")
    (where / f"{CANARY_MODULE}.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(where / 'imported')!r}).write_text('imported')\n"
        "graph = None\n"
    )
    return where


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(
    server: RedisServer, canary_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    cluster = Cluster(
        tmp_path_factory.mktemp("cluster"),
        server.url,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(canary_dir)]),
    )
    try:
        cluster.start("worker1", concurrency=1)
        cluster.start_scheduler()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    with server.client() as client:
        yield client


# ------------------------------------------------------------------------------ helpers


def publish(
    server: RedisServer,
    body: bytes,
    *,
    queue: str = "nodes",
    task: str = "celerygraph.run_node",
    content_type: str = "application/json",
    content_encoding: str = "utf-8",
    **headers: Any,
) -> str:
    """Put a raw task message on `queue`; returns its id (in the `id` header)."""
    message_id = uuid.uuid4().hex
    all_headers = {"lang": "py", "task": task, "id": message_id, "root_id": message_id,
                   "parent_id": None, "group": None, **headers}  # fmt: skip
    with kombu.Connection(server.url) as conn:
        conn.Producer().publish(
            body, exchange="", routing_key=queue, serializer=None, content_type=content_type,
            content_encoding=content_encoding, headers=all_headers,
            correlation_id=message_id,
        )  # fmt: skip
    return message_id


def task_body(args: list[Any], kwargs: dict[str, Any] | None = None) -> bytes:
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    return json.dumps([args, kwargs or {}, embed]).encode()


def wait_until(what: str, ready: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def handled(cluster: Cluster, name: str, message_id: str) -> bool:
    """The process logged the end of the message: succeeded, raised, or refused."""
    for line in cluster.log(name).splitlines():
        if message_id in line and re.search(r"succeeded|raised|Can't decode|discarded", line):
            return True
    return False


def error_lines(cluster: Cluster, name: str, needle: str) -> list[str]:
    return [
        line
        for line in cluster.log(name).splitlines()
        if needle in line and re.search(r": (WARNING|ERROR|CRITICAL)/", line)
    ]


def app_keys(raw: redis.Redis) -> set[bytes]:
    """Keys celerygraph keeps: every key but the broker's own, the sweep's index (whose sets
    come and go as runs are looked at) and leases, which a finished run's scheduler task can
    still hold for a moment after its result is visible."""
    broker = (b"nodes", b"scheduler", b"unacked", b"unacked_index", b"unacked_mutex",
              b"cg:{~sweep.", b"_kombu.binding.")  # fmt: skip
    return {k for k in raw.keys("*") if not k.startswith(broker) and b":lease:" not in k}


def node_runs(raw: redis.Redis) -> dict[bytes, dict[bytes, bytes]]:
    return {key: raw.hgetall(key) for key in raw.keys("runs:*")}


def assert_serving(cluster: Cluster, name: str = "worker1", **submit: Any) -> None:
    assert cluster.procs[name].poll() is None, cluster.log(name)[-3000:]
    thread_id = f"after-{uuid.uuid4().hex[:8]}"
    handle = cluster.client().submit("tests.dist_graphs:single", {"log": []},
                                     thread_id=thread_id, **submit)  # fmt: skip
    assert handle.result(timeout=60) == {"log": ["one"]}


class Evil:
    """Unpickling this creates the canary file (open(path, "w"))."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


# --------------------------------------------------------------------- refused content


@pytest.mark.parametrize(("queue", "name", "task"), [
    ("nodes", "worker1", "celerygraph.run_node"),
    ("scheduler", "scheduler", "celerygraph.start_run"),
])  # fmt: skip
def test_pickle_body_is_refused_never_unpickled(
    cluster: Cluster, server: RedisServer, tmp_path: Path, queue: str, name: str, task: str
) -> None:
    canary = tmp_path / "unpickled"
    body = pickle.dumps(((Evil(canary),), {}, {}))
    (opened,), _, _ = pickle.loads(body)  # the payload is live: unpickling makes the canary
    opened.close()
    assert canary.exists()
    canary.unlink()
    refusal = "Refusing to deserialize untrusted content of type pickle"
    before = cluster.log(name).count(refusal)
    publish(server, body, queue=queue, task=task,
            content_type="application/x-python-serialize", content_encoding="binary")  # fmt: skip
    wait_until("the refusal in the log", lambda: cluster.log(name).count(refusal) > before)
    assert not canary.exists(), "the pickle body was unpickled"
    assert error_lines(cluster, name, refusal)
    assert_serving(cluster)


def test_malformed_json_body_is_rejected_and_logged(
    cluster: Cluster, server: RedisServer, raw: redis.Redis
) -> None:
    before = app_keys(raw)
    message_id = publish(server, b'[["forged", {"unterminated')
    wait_until("the decode error in the log", lambda: handled(cluster, "worker1", message_id))
    assert any("Can't decode message body" in line
               for line in error_lines(cluster, "worker1", message_id))  # fmt: skip
    assert app_keys(raw) == before
    assert_serving(cluster)


def test_unregistered_task_name_is_discarded_and_logged(
    cluster: Cluster, server: RedisServer, canary_dir: Path
) -> None:
    before = len(error_lines(cluster, "worker1", "Received unregistered task"))
    publish(server, task_body(["touch /tmp/never"]), task="os.system")
    publish(server, task_body([]), task=f"{CANARY_MODULE}.graph")
    wait_until("both refusals in the log", lambda: len(
        error_lines(cluster, "worker1", "Received unregistered task")) >= before + 2)  # fmt: skip
    assert not (canary_dir / "imported").exists()
    assert_serving(cluster)


# ------------------------------------------------------------ forged node-task messages


def _forged(marker: str) -> dict[str, list[Any]]:
    return {
        "unknown thread and run": [f"{marker}-thread", f"{marker}-run", "nocp", "notask", None],
        "wrong types": [{"thread": marker}, [marker], 3.5, None, "not-a-path"],
        "ints": [1, 2, 3, 4, 5],
        "braces in the thread id": [f"{{{marker}}}", f"{marker}-run", "c", "t", None],
        "a huge thread id": [marker + "h" * 2_000_000, f"{marker}-run", "c", "t", None],
        "a forged path": [f"{marker}-thread", f"{marker}-run", "c", "t", ["__pregel_pull", "one"]],
        "too few args": [f"{marker}-thread"],
    }


FORGED_CASES = list(_forged("x"))


@pytest.mark.parametrize("case", FORGED_CASES)
def test_forged_node_task_for_unknown_runs_runs_and_writes_nothing(
    cluster: Cluster, server: RedisServer, raw: redis.Redis, case: str
) -> None:
    marker = f"forged-{uuid.uuid4().hex[:8]}"
    args = _forged(marker)[case]
    keys, runs = app_keys(raw), node_runs(raw)
    message_id = publish(server, task_body(args))
    wait_until("the worker to finish the message", lambda: handled(cluster, "worker1", message_id))
    assert node_runs(raw) == runs, "a node ran for a forged message"
    new = app_keys(raw) - keys
    assert not new, f"a forged message wrote {sorted(new)[:5]}"
    assert not [k for k in raw.keys("*") if marker.encode() in k]
    assert_serving(cluster)


FORGED_BATCHES = {
    "not a list": "x",
    "wrong shapes": [1, [2], ["t"], [3, None], {"t": None}],
    "unknown tasks": [["t1", None], ["t2", ["__pregel_push", 0]]],
}


@pytest.mark.parametrize("case", list(FORGED_BATCHES))
def test_forged_batch_of_node_tasks_runs_and_writes_nothing(
    cluster: Cluster, server: RedisServer, raw: redis.Redis, case: str
) -> None:
    marker = f"forged-{uuid.uuid4().hex[:8]}"
    args = [f"{marker}-thread", f"{marker}-run", "c", FORGED_BATCHES[case]]
    keys, runs = app_keys(raw), node_runs(raw)
    message_id = publish(server, task_body(args), task="celerygraph.run_nodes")
    wait_until("the worker to finish the message", lambda: handled(cluster, "worker1", message_id))
    assert error_lines(cluster, "worker1", f"{marker}-run"), "not logged as ignored"
    assert node_runs(raw) == runs, "a node ran for a forged message"
    assert not app_keys(raw) - keys
    assert not [k for k in raw.keys("*") if marker.encode() in k]
    assert_serving(cluster)


def test_forged_node_task_for_an_unknown_run_is_logged_as_ignored(
    cluster: Cluster, server: RedisServer
) -> None:
    marker = f"forged-{uuid.uuid4().hex[:8]}"
    message_id = publish(server, task_body(_forged(marker)["unknown thread and run"]))
    wait_until("the worker to finish the message", lambda: handled(cluster, "worker1", message_id))
    assert error_lines(cluster, "worker1", f"{marker}-run"), "not logged as ignored"


@pytest.fixture
def paused_run(cluster: Cluster) -> dict[str, Any]:
    """A real run waiting on an interrupt: its step is open, its task done."""
    client = cluster.client()
    thread_id = f"paused-{uuid.uuid4().hex[:8]}"
    handle = client.submit("tests.dist_graphs:approval", {"log": []}, thread_id=thread_id)
    assert handle.wait(timeout=60) == "interrupted"
    run = client.store.run(thread_id, handle.id)
    return run.as_dict() if run else {}


def _bogus_task(cluster: Cluster, server: RedisServer, run: dict[str, Any]) -> str:
    args = [run["thread_id"], run["run_id"], run["step"], f"bogus-{uuid.uuid4().hex[:8]}", None]
    message_id = publish(server, task_body(args))
    wait_until("the worker to finish the message", lambda: handled(cluster, "worker1", message_id))
    return args[3]


def test_forged_task_id_on_a_real_run_runs_nothing(
    cluster: Cluster, server: RedisServer, raw: redis.Redis, paused_run: dict[str, Any]
) -> None:
    thread_id, run_id = paused_run["thread_id"], paused_run["run_id"]
    runs = node_runs(raw)
    head = cluster.client().saver.head(thread_id)
    bogus = _bogus_task(cluster, server, paused_run)
    assert node_runs(raw) == runs
    assert cluster.client().saver.head(thread_id) == head
    assert cluster.client().store.run(thread_id, run_id).status == "interrupted"
    assert any("not dispatched for step" in line
               for line in error_lines(cluster, "worker1", bogus))
    assert_serving(cluster)


def test_forged_task_id_on_a_real_run_writes_nothing(
    cluster: Cluster, server: RedisServer, raw: redis.Redis, paused_run: dict[str, Any]
) -> None:
    keys = app_keys(raw)
    _bogus_task(cluster, server, paused_run)
    assert app_keys(raw) - keys == set()


# -------------------------------------------------------------- forged start-run messages


@pytest.mark.parametrize("ref", ["os:system", "subprocess:Popen", f"{CANARY_MODULE}:graph",
                                 "tests.dist_graphs", "builtins:eval"])  # fmt: skip
def test_start_run_with_a_graph_outside_the_configured_modules_fails_clearly(
    cluster: Cluster, server: RedisServer, canary_dir: Path, ref: str
) -> None:
    thread_id, run_id = f"evil-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    publish(server, task_body([], {"thread_id": thread_id, "run_id": run_id, "graph": ref,
                                   "input": {"log": []}}),
            queue="scheduler", task="celerygraph.start_run")  # fmt: skip
    store = cluster.client().store
    wait_until("the run to fail", lambda: getattr(store.run(thread_id, run_id), "status", None)
               == "failed")  # fmt: skip
    error = store.run(thread_id, run_id).error
    assert error["type"] == "UnknownGraphError"
    assert ref in error["message"] and "CELERYGRAPH_GRAPHS" in error["message"]
    kinds = [kind for _, kind, _ in store.events(thread_id, run_id)]
    assert "failed" in kinds and "started" not in kinds and "dispatched" not in kinds
    assert not (canary_dir / "imported").exists(), "the scheduler imported the graph module"
    assert store.active_run(thread_id) is None, "a failed start must free the thread"
    assert_serving(cluster)


def test_reading_a_forged_run_imports_nothing(
    cluster: Cluster, server: RedisServer, canary_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread_id, run_id = f"evil-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    ref = f"{CANARY_MODULE}:graph"
    publish(server, task_body([], {"thread_id": thread_id, "run_id": run_id, "graph": ref}),
            queue="scheduler", task="celerygraph.start_run")  # fmt: skip
    client = cluster.client()
    wait_until("the run to fail", lambda: getattr(client.store.run(thread_id, run_id),
                                                  "status", None) == "failed")
    monkeypatch.syspath_prepend(str(canary_dir))
    try:
        with pytest.raises(Exception):  # noqa: B017 - any clear refusal will do
            client.get_state(thread_id)
        assert not (canary_dir / "imported").exists(), "reading the run imported its module"
    finally:
        sys.modules.pop(CANARY_MODULE, None)
        (canary_dir / "imported").unlink(missing_ok=True)


# ------------------------------------------------------------------ poison messages

POISON = {
    "a dict body": (json.dumps({"args": []}).encode(), {}),
    "a two-item body": (json.dumps([[], {}]).encode(), {}),
    "a null body": (b"null", {}),
    "an int body": (b"5", {}),
    "a time limit that is not a number": (task_body(["x", "y", "c", "t", None]),
                                          {"timelimit": ["x", "y"]}),  # fmt: skip
    "stamps that are not a list": (task_body(["x", "y", "c", "t", None]),
                                   {"stamped_headers": 5, "stamps": "x"}),  # fmt: skip
}


def test_poison_messages_are_rejected_and_the_worker_survives(
    cluster: Cluster, server: RedisServer, raw: redis.Redis
) -> None:
    queue = "victim"
    victim = cluster.start_worker("victim", queues=queue)
    try:
        for body, headers in POISON.values():
            publish(server, body, queue=queue, **headers)
        wait_until("the victim to take every message or die", lambda: victim.poll() is not None
                   or (raw.llen(queue) == 0 and not raw.hlen("unacked")))  # fmt: skip
        time.sleep(1.0)  # let a crash that follows the last message surface (not a check)
        assert victim.poll() is None, "a poison message killed the worker"
        assert len(error_lines(cluster, "victim", "")) >= len(POISON), "rejections not logged"
        assert_serving(cluster, "victim", routes={"one": queue})
    finally:
        if cluster.procs.get("victim") is victim and victim.poll() is None:
            cluster.kill("victim")
        cluster.procs.pop("victim", None)
        raw.delete(queue)
