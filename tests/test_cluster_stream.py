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

from graphdef.errors import InvalidUpdateError
from scheduler.errors import ThreadBusyError, UnknownGraphError, UnknownRunError
from tests.cluster import Cluster, RedisServer
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
