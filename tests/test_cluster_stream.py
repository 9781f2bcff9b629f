"""Streaming from real worker processes: a run's chunks through its Redis stream, resumed
by id, across a worker SIGKILLed mid-stream; and the cluster graph object's contract.

What a consumer sees of a node attempt that died mid-stream (`scheduler.streams`): that
attempt's chunks as they came, then an `abandoned` marker naming the task and the attempt
that replaces it, then the new attempt's chunks; the task's `updates` chunk once, from the
attempt that saved its result.
"""

from __future__ import annotations

import time

import pytest

from graphdef import START, InMemorySaver, StateGraph
from graphdef.errors import InvalidUpdateError
from scheduler.errors import (
    ThreadBusyError,
    UnknownCheckpointError,
    UnknownGraphError,
    UnknownRunError,
)
from tests.cluster import Cluster, RedisServer
from tests.dist_graphs import Log
from tests.test_crash import runs_per_task, wait_for_start, worker_running

TALKER = "tests.dist_graphs:talker"


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def cluster(redis_server, tmp_path):
    running = Cluster(tmp_path, redis_server.url)
    try:
        running.start("w1")
        running.start("w2")
        running.start_scheduler()
        yield running
    finally:
        running.stop()


def said(parts, attempt=None):
    return [p.data["said"] for p in parts if p.kind == "chunk" and p.mode == "custom"
            and (attempt is None or p.attempt == attempt)]


def test_sigkill_mid_stream_then_resume_from_last_id(cluster, redis_server):
    client = cluster.client()
    handle = client.submit(TALKER, {"log": [], "n": 12, "sleep": 0.15}, thread_id="talk-1",
                           stream_mode=["custom", "updates", "values"])
    seen = []
    for part in handle.stream(timeout=30):
        seen.append(part)
        if len(said(seen)) == 4:
            break  # the consumer disconnects here
    pid = wait_for_start(redis_server, "talk-1", "talk")
    cluster.kill(worker_running(cluster, pid))

    # Reconnect with the last id seen: the rest, exactly once, up to the end entry.
    rest = list(handle.stream(after=seen[-1].id, timeout=60))
    everything = list(handle.stream(timeout=5))
    assert [p.id for p in seen + rest] == [p.id for p in everything]
    assert len({p.id for p in everything}) == len(everything)
    assert everything[-1].kind == "end" and everything[-1].status == "done"

    talk_task = next(p.task for p in everything if p.mode == "custom")
    abandoned = [p for p in everything if p.kind == "abandoned"]
    assert [p.task for p in abandoned] == [talk_task]
    dead = everything[0:everything.index(abandoned[0])]
    first_attempt = next(p.attempt for p in dead if p.mode == "custom")
    assert said(dead, first_attempt) == list(range(len(said(dead, first_attempt))))
    assert len(said(dead, first_attempt)) >= 4
    after = everything[everything.index(abandoned[0]):]
    assert said(after, abandoned[0].attempt) == list(range(12))
    assert said(after) == list(range(12))  # nothing of the dead attempt after its marker
    updates = [p.data for p in everything if p.mode == "updates"]
    assert updates == [{"intro": {"log": ["intro"]}}, {"talk": {"log": ["talked"]}}]
    assert [p.data for p in everything if p.mode == "values"][-1] == {
        "log": ["intro", "talked"], "n": 12, "sleep": 0.15}
    assert runs_per_task(redis_server, "talk-1") == {"intro": [1], "talk": [2]}


def test_cluster_graph_streams_like_a_local_graph(cluster):
    graph = cluster.client().graph(TALKER)
    config = {"configurable": {"thread_id": "talk-2"}}
    chunks = list(graph.stream({"log": [], "n": 3}, config,
                               stream_mode=["custom", "updates"]))
    assert chunks == [
        ("updates", {"intro": {"log": ["intro"]}}),
        ("custom", {"said": 0}), ("custom", {"said": 1}), ("custom", {"said": 2}),
        ("updates", {"talk": {"log": ["talked"]}}),
    ]
    assert graph.get_state(config).values["log"] == ["intro", "talked"]
    graph.update_state(config, {"log": ["edited"]}, as_node="talk")
    assert graph.get_state(config).values["log"] == ["intro", "talked", "edited"]
    history = list(graph.get_state_history(config))
    assert [s.metadata["source"] for s in history][:2] == ["update", "loop"]


def test_cluster_graph_bad_input_stores_nothing(cluster, redis_server):
    client = cluster.client()
    with pytest.raises(UnknownGraphError):
        client.graph("tests.dist_graphs:nope")
    graph = client.graph(TALKER)
    config = {"configurable": {"thread_id": "talk-3"}}
    with pytest.raises(ValueError, match="Unknown stream_mode 'valuez'"):
        list(graph.stream({"log": []}, config, stream_mode=["values", "valuez"]))
    with pytest.raises(ValueError, match="multitask_strategy"):
        graph.invoke({"log": []}, config, multitask_strategy="sideways")
    with pytest.raises(UnknownRunError):
        graph.update_state(config, {"log": ["x"]})
    with pytest.raises(NotImplementedError, match="max_concurrency"):
        graph.invoke({"log": []}, {**config, "max_concurrency": 2})
    assert client.store.runs_of("talk-3") == []
    assert client.saver.head("talk-3") is None

    graph.invoke({"log": [], "n": 0}, config)
    head = client.saver.head("talk-3")
    with pytest.raises(InvalidUpdateError):
        graph.update_state(config, {"nope": 1})
    assert client.saver.head("talk-3") == head


def test_busy_thread_reject_enqueue_and_update(cluster):
    graph = cluster.client().graph(TALKER)
    config = {"configurable": {"thread_id": "talk-4"}}
    first = graph.submit({"log": [], "n": 10, "sleep": 0.1}, config)
    deadline = time.monotonic() + 30
    while first.status() != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(ThreadBusyError):
        graph.invoke({"log": []}, config)
    with pytest.raises(ThreadBusyError):
        graph.update_state(config, {"log": ["x"]})
    queued = graph.submit({"log": ["again"]}, config, multitask_strategy="enqueue")
    assert queued.wait(timeout=60) == "done"
    assert first.status() == "done"
    assert graph.get_state(config).values["log"] == [
        "intro", "talked", "again", "intro", "talked"]


def test_fork_from_a_past_checkpoint_and_bad_fork_points(cluster):
    client = cluster.client()
    graph = client.graph(TALKER)
    config = {"configurable": {"thread_id": "talk-5"}}
    graph.invoke({"log": ["first"], "n": 0}, config)
    past = next(s for s in graph.get_state_history(config) if s.next == ("talk",))
    head = client.saver.head("talk-5")
    with pytest.raises(UnknownCheckpointError):
        graph.invoke(None, {"configurable": {"thread_id": "talk-5",
                                             "checkpoint_id": "no-such-checkpoint"}})
    assert client.saver.head("talk-5") == head and len(client.store.runs_of("talk-5")) == 1
    forked = graph.invoke({"log": ["fork"]}, past.config)
    assert forked == in_process_fork()
    state = graph.get_state(config)
    assert state.values["log"] == forked["log"]
    # The new head descends from the fork point, not from the first run's head.
    parents = {s.config["configurable"]["checkpoint_id"]:
               (s.parent_config or {}).get("configurable", {}).get("checkpoint_id")
               for s in graph.get_state_history(config)}
    ancestors, at = [], state.config["configurable"]["checkpoint_id"]
    while at is not None:
        ancestors.append(at)
        at = parents[at]
    assert past.config["configurable"]["checkpoint_id"] in ancestors
    assert head not in ancestors


def talker_replica():
    """`tests.dist_graphs:talker` without its chunks and counters, to run in-process."""
    builder = StateGraph(Log)
    builder.add_node("intro", lambda s: {"log": ["intro"]})
    builder.add_node("talk", lambda s: {"log": ["talked"]})
    builder.add_edge(START, "intro")
    builder.add_edge("intro", "talk")
    return builder.compile()


def with_a_node(node):
    builder = StateGraph(Log)
    builder.add_node("pre", lambda s: {"log": ["pre"]})
    builder.add_node("inner", node)
    builder.add_edge(START, "pre")
    builder.add_edge("pre", "inner")
    return builder.compile(checkpointer=InMemorySaver())


def test_cluster_graph_as_a_node_of_a_local_graph(cluster):
    graph = cluster.client().graph(TALKER)
    config = {"configurable": {"thread_id": "talk-6"}}
    assert with_a_node(graph).invoke({"log": [], "n": 1}, config) == with_a_node(
        talker_replica()).invoke({"log": [], "n": 1}, config)
    assert graph.get_state(config).values["log"] == ["pre", "intro", "talked"]


def in_process_fork():
    """The same fork in-process: what the cluster must return."""
    local = talker_replica()
    local.checkpointer = InMemorySaver()
    config = {"configurable": {"thread_id": "t"}}
    local.invoke({"log": ["first"], "n": 0}, config)
    past = next(s for s in local.get_state_history(config) if s.next == ("talk",))
    return local.invoke({"log": ["fork"]}, past.config)


SLOW_CHAIN = "tests.dist_graphs:chain"


def start_slow_run(cluster, redis_server, thread_id):
    graph = cluster.client().graph(SLOW_CHAIN)
    config = {"configurable": {"thread_id": thread_id}}
    first = graph.submit({"log": [], "sleep": 2.0}, config)
    pid = wait_for_start(redis_server, thread_id, "slow")
    return graph, config, first, pid


@pytest.mark.parametrize("kill", [False, True], ids=["", "worker-killed-during-switch"])
def test_multitask_interrupt_stops_the_active_run_at_a_boundary(cluster, redis_server, kill):
    thread_id = f"dt-interrupt-{kill}"
    graph, config, first, pid = start_slow_run(cluster, redis_server, thread_id)
    second = graph.submit({"log": ["second"], "sleep": 0.0}, config,
                          multitask_strategy="interrupt")
    if kill:
        cluster.kill(worker_running(cluster, pid))
    assert second.wait(timeout=60) == "done"
    assert first.status() == "interrupted"
    client = cluster.client()
    # The first run kept its finished supersteps and stopped before `d`.
    assert client.store.output(thread_id, first.id)["log"] == ["a", "b", "slow"]
    log = graph.get_state(config).values["log"]
    assert log[:4] == ["a", "b", "slow", "second"] and "d" in log
    assert runs_per_task(redis_server, thread_id)["slow"][-1] == (2 if kill else 1)


@pytest.mark.parametrize("kill", [False, True], ids=["", "worker-killed-during-switch"])
def test_multitask_rollback_discards_the_active_run(cluster, redis_server, kill):
    thread_id = f"dt-rollback-{kill}"
    graph, config, first, pid = start_slow_run(cluster, redis_server, thread_id)
    if kill:
        cluster.kill(worker_running(cluster, pid))
    second = graph.submit({"log": ["fresh"], "sleep": 0.0}, config,
                          multitask_strategy="rollback")
    assert second.wait(timeout=60) == "done"
    assert first.status() == "cancelled"
    assert graph.get_state(config).values["log"] == ["fresh", "a", "b", "slow", "d"]
    history = list(graph.get_state_history(config))
    # Nothing the first run wrote is left: one input checkpoint, the second run's.
    assert [s.metadata["source"] for s in history].count("input") == 1
    assert all("fresh" in s.values.get("log", []) for s in history
               if s.metadata["source"] != "input")
