"""Distributed runs on real `celery worker` processes and a private Redis."""

from __future__ import annotations

import copy
import subprocess
import sys
import time

import pytest

from graphdef.errors import InvalidResumeError
from tests.cluster import ROOT, Cluster


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url,
                      CELERYGRAPH_MAX_VALUE_BYTES="200000")
    cluster.start("worker1", concurrency=2)
    cluster.start_scheduler()
    yield cluster
    cluster.stop()


def runs(redis_server, thread_id: str) -> dict[str, int]:
    """How often each node ran on a thread, summed over its tasks."""
    counts: dict[str, int] = {}
    for field, value in redis_server.client().hgetall(f"runs:{thread_id}").items():
        node = field.decode().split("|", 1)[0]
        counts[node] = counts.get(node, 0) + int(value)
    return counts


def test_chain_with_parallel_branches_and_join(cluster, redis_server):
    client = cluster.client()
    handle = client.submit("tests.dist_graphs:chain", {"log": []}, thread_id="chain-1")
    assert handle.result(timeout=60) == {"log": ["a", "b", "slow", "d"]}
    assert runs(redis_server, "chain-1") == {"a": 1, "b": 1, "slow": 1, "d": 1}
    history = client.get_state_history("chain-1")
    assert [(s.metadata["source"], s.metadata["step"]) for s in history] == [
        ("loop", 3), ("loop", 2), ("loop", 1), ("loop", 0), ("input", -1)
    ]
    kinds = [e.type for e in handle.events()]
    assert kinds[0] == "started" and kinds[-1] == "done"


def test_nodes_on_workers_get_the_graphs_store(cluster, redis_server):
    from graphdef.store.redis import RedisStore

    client = cluster.client()
    for thread_id, n in (("store-1", 1), ("store-2", 2), ("store-3", 3)):
        handle = client.submit("tests.dist_graphs:remembering", {"log": [], "n": n},
                               thread_id=thread_id)
        assert handle.wait(timeout=60) == "done"
    assert handle.result()["log"] == ["remembered", ["store-2", "store-3"]]
    with RedisStore(redis_server.url, prefix="test-kv") as store:
        assert store.get(("visits", "store-1"), "n").value == {"n": 1}


def test_context_reaches_workers_and_their_cache_is_shared(cluster, redis_server):
    from tests.dist_graphs import Caller

    client = cluster.client()
    outputs = []
    for thread_id, context in (("ctx-1", Caller("ada")), ("ctx-2", {"user": "bo"})):
        handle = client.submit("tests.dist_graphs:personal", {"log": [], "n": 7},
                               thread_id=thread_id, context=context)
        outputs.append(handle.result(timeout=60)["log"])
    assert outputs == [["expensive 7", "for ada"], ["expensive 7", "for bo"]]
    # The second run found `expensive`'s writes in the workers' RedisCache.
    assert runs(redis_server, "ctx-1") == {"expensive": 1, "greet": 1}
    assert runs(redis_server, "ctx-2") == {"greet": 1}


def test_send_fan_out(cluster, redis_server):
    handle = cluster.client().submit("tests.dist_graphs:fanout", {"n": 20}, thread_id="fan-1")
    result = handle.result(timeout=60)
    assert result["log"][:20] == list(range(20))
    assert runs(redis_server, "fan-1") == {"work": 20, "total": 1}


def test_interrupt_then_resume_from_another_producer_process(cluster, redis_server):
    client = cluster.client()
    handle = client.submit("tests.dist_graphs:approval", {"log": []}, thread_id="ask-1")
    assert handle.wait(timeout=60) == "interrupted"
    paused = handle.result()
    assert [i.value for i in paused["__interrupt__"]] == ["approve?"]
    assert client.get_state("ask-1").next == ("ask",)
    script = (
        "from scheduler.client import Client; from scheduler.settings import Settings;"
        f"c = Client(Settings(broker_url={redis_server.url!r}, store_url={redis_server.url!r}));"
        "print(c.resume('ask-1', 'yes').result(timeout=60))"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=90, check=True)
    assert "answer:yes" in out.stdout
    assert runs(redis_server, "ask-1") == {"prepare": 1, "ask": 2, "finish": 1}


def test_edit_then_approve_through_the_client(cluster, redis_server):
    """update_state on the workers' saver over a paused step, then Client.resume: the paused
    node runs again on the edited state and takes the answer, as in-process."""
    from tests.dist_graphs import approval

    client = cluster.client()
    client.submit("tests.dist_graphs:approval", {"log": []}, thread_id="edit-1").wait(60)
    editor = copy.copy(approval)
    editor.checkpointer = client.saver
    editor.update_state({"configurable": {"thread_id": "edit-1"}}, {"log": ["edited"]})
    assert client.get_state("edit-1").next == ("ask",)
    result = client.resume("edit-1", "yes").result(timeout=60)
    assert result == {"log": ["prepare", "edited", "answer:yes", "finish"]}
    assert runs(redis_server, "edit-1") == {"prepare": 1, "ask": 2, "finish": 1}
    with pytest.raises(InvalidResumeError, match="no pending interrupt"):
        client.resume("edit-1", "again")


def test_failed_node_fails_run_and_resume_reruns_only_it(cluster, redis_server):
    client = cluster.client()
    handle = client.submit("tests.dist_graphs:failing", {"log": []}, thread_id="fail-1")
    assert handle.wait(timeout=60) == "failed"
    assert handle.info()["error"]["type"] == "ValueError"
    state = client.get_state("fail-1")
    assert state.next == ("boom",)
    assert runs(redis_server, "fail-1") == {"ok": 1, "boom": 1}


def test_unknown_graph_is_rejected_before_anything_is_stored(cluster, redis_server):
    from scheduler.errors import UnknownGraphError

    before = sorted(redis_server.client().keys("cg:{unknown-1}*"))
    with pytest.raises(UnknownGraphError, match="no worker loads it"):
        cluster.client().submit("tests.dist_graphs:nope", {}, thread_id="unknown-1")
    assert sorted(redis_server.client().keys("cg:{unknown-1}*")) == before == []


def test_non_serializable_input_is_rejected_before_anything_is_stored(cluster, redis_server):
    from graphdef.serde import NotSerializableError

    with pytest.raises(NotSerializableError, match=r"input\['log'\]\[0\]"):
        cluster.client().submit("tests.dist_graphs:single", {"log": [object()]},
                                thread_id="bad-input-1")
    assert redis_server.client().keys("cg:{bad-input-1}*") == []


def test_resume_with_nothing_pending_is_rejected(cluster, redis_server):
    client = cluster.client()
    client.submit("tests.dist_graphs:single", {"log": []}, thread_id="done-1").result(timeout=60)
    with pytest.raises(InvalidResumeError, match="no pending interrupt"):
        client.resume("done-1", "yes")


def test_busy_thread_rejects_second_submission(cluster, redis_server):
    from scheduler.errors import ThreadBusyError

    client = cluster.client()
    first = client.submit("tests.dist_graphs:chain", {"log": [], "sleep": 1.0},
                          thread_id="busy-1")
    with pytest.raises(ThreadBusyError):
        client.submit("tests.dist_graphs:single", {"log": []}, thread_id="busy-1")
    assert first.result(timeout=60)["log"] == ["a", "b", "slow", "d"]
    assert client.store.runs_of("busy-1") == [first.id]


def test_busy_thread_enqueues_second_submission(cluster, redis_server):
    client = cluster.client()
    first = client.submit("tests.dist_graphs:chain", {"log": [], "sleep": 1.0},
                          thread_id="busy-2", on_busy="enqueue")
    second = client.submit("tests.dist_graphs:single", {"log": ["second"]},
                           thread_id="busy-2", on_busy="enqueue")
    assert first.result(timeout=60)["log"] == ["a", "b", "slow", "d"]
    # The second run starts only after the first, on the state the first left.
    assert second.result(timeout=60)["log"] == ["a", "b", "slow", "d", "second", "one"]


def test_a_run_cancelled_while_queued_never_starts(cluster, redis_server):
    """The run ahead ends and takes the next in the queue: one cancelled while it waited is
    passed over (its status stays `cancelled`), and the one behind it starts."""
    client = cluster.client()
    first = client.submit("tests.dist_graphs:chain", {"log": [], "sleep": 1.0},
                          thread_id="busy-3", on_busy="enqueue")
    cancelled = client.submit("tests.dist_graphs:single", {"log": ["cancelled"]},
                              thread_id="busy-3", on_busy="enqueue")
    last = client.submit("tests.dist_graphs:single", {"log": ["last"]},
                         thread_id="busy-3", on_busy="enqueue")
    wait_until_status(cancelled, "waiting")
    client.cancel("busy-3", cancelled.id)
    assert first.result(timeout=60)["log"] == ["a", "b", "slow", "d"]
    assert last.result(timeout=60)["log"] == ["a", "b", "slow", "d", "last", "one"]
    assert cancelled.status() == "cancelled"
    assert "started" not in [e.type for e in cancelled.events()]


def wait_until_status(handle, status: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while handle.status() != status:
        assert time.monotonic() < deadline, f"{handle} never {status}"
        time.sleep(0.02)


def test_oversized_state_fails_that_run_only(cluster, redis_server):
    client = cluster.client()
    normal = client.submit("tests.dist_graphs:chain", {"log": [], "sleep": 0.3},
                           thread_id="big-neighbour")
    big = client.submit("tests.dist_graphs:bloated", {"log": [], "n": 300_000},
                        thread_id="big-1")
    assert big.wait(timeout=60) == "failed"
    error = big.info()["error"]
    assert error["type"] == "ValueTooLargeError"
    assert "state['log']" in error["message"] and "over the limit" in error["message"]
    assert normal.result(timeout=60)["log"] == ["a", "b", "slow", "d"]
    assert client.get_state("big-1").values == {"log": [], "n": 300_000}


def test_oversized_input_is_rejected_before_anything_is_stored(cluster, redis_server):
    from graphdef.serde import ValueTooLargeError

    with pytest.raises(ValueTooLargeError, match="value at input is"):
        cluster.client().submit("tests.dist_graphs:single", {"log": ["y" * 300_000]},
                                thread_id="big-input")
    assert redis_server.client().keys("cg:{big-input}*") == []


@pytest.mark.parametrize("in_place", ["1", "0"])
def test_a_chain_of_lone_steps_runs_in_place_unless_disabled(redis_server, tmp_path, in_place):
    """With CELERYGRAPH_CHAIN_IN_PLACE (the default), the task that finishes a step runs the
    next step's lone task itself: one node message per chain. With 0, one per node."""
    cluster = Cluster(tmp_path, redis_server.url, CELERYGRAPH_CHAIN_IN_PLACE=in_place,
                      CELERYGRAPH_NODE_QUEUE=f"nodes-{in_place}",
                      CELERYGRAPH_SCHEDULER_QUEUE=f"scheduler-{in_place}")
    try:
        cluster.start("w", concurrency=1)
        cluster.start_scheduler()
        thread_id = f"in-place-{in_place}"
        handle = cluster.client().submit("tests.dist_graphs:chain", {"log": []},
                                         thread_id=thread_id)
        assert handle.result(timeout=60)["log"] == ["a", "b", "slow", "d"]
        names = sorted(received_names(cluster, "w"))
        # Step one is `a` and `b` side by side (sent); `slow` and `d` are lone steps. In
        # place, the run starts on the worker too (`runs.start_queue`); else on the scheduler.
        sent = ["a", "b"] if in_place == "1" else ["a", "b", "d", "slow"]
        start = ["celerygraph.start_and_run"] if in_place == "1" else []
        assert names == start + [f"chain.{n}" for n in sent]
        assert runs(redis_server, thread_id) == {"a": 1, "b": 1, "slow": 1, "d": 1}
        kinds = [e.type for e in handle.events()]
        assert kinds.count("dispatched") == 3 and kinds.count("task_finished") == 4, kinds
    finally:
        cluster.stop()


def received_names(cluster: Cluster, name: str) -> list[str]:
    """Shadow names of the node messages a worker received, from its log."""
    return [line.split("Task ", 1)[1].split("[", 1)[0]
            for line in cluster.log(name).splitlines() if "] received" in line]


def test_a_wide_superstep_goes_several_tasks_to_a_message(redis_server, tmp_path):
    cluster = Cluster(tmp_path, redis_server.url, CELERYGRAPH_STEP_MESSAGES="3",
                      CELERYGRAPH_NODE_QUEUE="nodes-batched",
                      CELERYGRAPH_SCHEDULER_QUEUE="scheduler-batched")
    try:
        cluster.start("w", concurrency=2)
        cluster.start_scheduler()
        handle = cluster.client().submit("tests.dist_graphs:fanout", {"n": 10},
                                         thread_id="batched")
        assert sorted(handle.result(timeout=60)["log"][:10]) == list(range(10))
        assert runs(redis_server, "batched") == {"work": 10, "total": 1}
        # The start, then 10 tasks in at most 3 messages: 4 + 4 + 2; `total` then runs in
        # place.
        assert sorted(received_names(cluster, "w")) == [
            "celerygraph.start_and_run", "fanout.work(x2)", "fanout.work(x4)", "fanout.work(x4)"]
        finished = [e for e in handle.events() if e.type == "task_finished"]
        assert len(finished) == 11 and len({e.data["task_id"] for e in finished}) == 11
    finally:
        cluster.stop()


def test_a_worker_killed_inside_a_batch_costs_only_the_task_it_was_running(redis_server,
                                                                           tmp_path):
    cluster = Cluster(tmp_path, redis_server.url, CELERYGRAPH_STEP_MESSAGES="1",
                      CELERYGRAPH_NODE_QUEUE="nodes-batch-kill",
                      CELERYGRAPH_SCHEDULER_QUEUE="scheduler-batch-kill")
    try:
        cluster.start("doomed", concurrency=1)
        cluster.start_scheduler()
        handle = cluster.client().submit("tests.dist_graphs:fanout", {"n": 6, "sleep": 0.4},
                                         thread_id="batch-kill")
        r = redis_server.client()

        def finished() -> int:
            return sum(1 for e in handle.events() if e.type == "task_finished")

        deadline = time.monotonic() + 30
        while finished() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # into the third task of the one six-task message
        cluster.kill("doomed")
        done_before = {e.data["task_id"] for e in handle.events() if e.type == "task_finished"}
        cluster.start("rescuer", concurrency=1)
        assert sorted(handle.result(timeout=60)["log"][:6]) == list(range(6))
        counts = {f.decode(): int(v) for f, v in r.hgetall("runs:batch-kill").items()
                  if f.startswith(b"work|")}
        assert len(counts) == 6 and len(done_before) >= 2
        # Tasks finished before the kill ran once; only the one it interrupted ran twice.
        assert all(n == 1 for f, n in counts.items() if any(t in f for t in done_before))
        assert sorted(counts.values())[:-1] == [1] * 5 and max(counts.values()) <= 2, counts
    finally:
        cluster.stop()


def test_async_nodes_and_routes_run_on_workers(cluster, redis_server):
    """The sync API refuses an async node, as LangGraph's does; a worker, which has no event
    loop of its own, runs the task on one."""
    handle = cluster.client().submit("tests.dist_graphs:asynchronous", {"log": [], "n": 0},
                                     thread_id="async-1")
    assert handle.result(timeout=60) == {"log": ["fetched"] * 3 + ["wrapped"], "n": 3}
    assert runs(redis_server, "async-1") == {"fetch": 3, "wrap": 1}
