"""Graphs written for LangGraph run on real `celery worker` processes unchanged: the
workers' CELERYGRAPH_GRAPHS module (tests/langgraph_graphs.py) imports only LangGraph, and
the registry converts its graphs when it loads it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.cluster import ROOT, Cluster


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url,
                      graphs="tests.langgraph_graphs")
    cluster.start("lgworker", concurrency=2)
    cluster.start_scheduler()
    yield cluster
    cluster.stop()


def runs(redis_server, thread_id: str) -> dict[str, int]:
    found = redis_server.client().hgetall(f"runs:{thread_id}")
    return {k.decode(): int(v) for k, v in sorted(found.items())}


def test_the_workers_publish_the_modules_langgraph_graphs(cluster):
    graphs = cluster.client().store.published_graphs()
    assert {"tests.langgraph_graphs:review", "tests.langgraph_graphs:review_builder",
            "tests.langgraph_graphs:doubled"} <= set(graphs)
    assert "tests.langgraph_graphs:saver" not in graphs


def test_send_retry_interrupt_and_command_on_workers(cluster, redis_server):
    client = cluster.client()
    handle = client.submit("tests.langgraph_graphs:review", {"items": [3, 1, 2], "scores": []},
                           thread_id="lg-review")
    assert handle.wait(timeout=60) == "interrupted"
    assert [i.value for i in handle.result()["__interrupt__"]] == [
        {"question": "publish?", "total": 60}]
    assert client.get_state("lg-review").next == ("approve",)
    resumed = client.resume("lg-review", "ship")
    assert resumed.result(timeout=60) == {
        "items": [3, 1, 2], "scores": [30, 10, 20], "verdict": "published [10, 20, 30]"}
    # score 3 failed once and was retried; approve ran again on resume; nothing else re-ran.
    assert runs(redis_server, "lg-review") == {
        "approve": 2, "publish": 1, "score 1": 1, "score 2": 1, "score 3": 2}
    finished = [e.data for e in handle.events() if e.type == "task_finished"]
    assert {e["worker"].split("@")[0] for e in finished} == {"lgworker"}


def test_the_uncompiled_builder_runs_too(cluster, redis_server):
    client = cluster.client()
    handle = client.submit("tests.langgraph_graphs:review_builder",
                           {"items": [1], "scores": []}, thread_id="lg-builder")
    assert handle.wait(timeout=60) == "interrupted"
    assert client.resume("lg-builder", "hold").result(timeout=60) == {
        "items": [1], "scores": [10], "verdict": "hold"}


def test_an_entrypoint_and_its_tasks_on_workers(cluster, redis_server):
    handle = cluster.client().submit("tests.langgraph_graphs:doubled", [1, 2, 3],
                                     thread_id="lg-doubled")
    assert handle.result(timeout=60) == [2, 4, 6]
    assert runs(redis_server, "lg-doubled") == {
        "double 1": 1, "double 2": 1, "double 3": 1, "doubled": 1}


GRAPH_WITH_ERROR_HANDLER = '''
from typing import TypedDict
from langgraph.graph import START, StateGraph

class State(TypedDict):
    x: int

builder = StateGraph(State)
builder.add_node("risky", lambda state: {"x": 1}, error_handler=lambda state: {"x": 0})
builder.add_edge(START, "risky")
graph = builder.compile()
'''


def test_a_langgraph_graph_that_does_not_convert_stops_the_worker(redis_server, tmp_path: Path):
    module = "cg_lg_unconvertible"
    (tmp_path / f"{module}.py").write_text(GRAPH_WITH_ERROR_HANDLER)
    env = {
        **os.environ,
        "CELERYGRAPH_BROKER_URL": redis_server.url,
        "CELERYGRAPH_STORE_URL": redis_server.url,
        "CELERYGRAPH_GRAPHS": module,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "-n",
         f"lg-bad-{uuid.uuid4().hex[:6]}@%h", "-c", "1", "--without-gossip",
         "--without-mingle", "--loglevel", "INFO"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    said = (f"graph module {module!r} (CELERYGRAPH_GRAPHS): 'builder' does not convert: "
            "ConversionError: node 'risky': error_handler is not supported")
    assert out.count(said) == 1, out
    assert " ready." not in out, out


def test_the_cluster_graph_object_of_a_langgraph_graph(cluster):
    """Client.graph loads the module in the producer too, converting it as the workers do."""
    from graphdef import Command

    graph = cluster.client().graph("tests.langgraph_graphs:review")
    config = {"configurable": {"thread_id": "lg-object"}}
    chunks = list(graph.stream({"items": [2], "scores": []}, config, stream_mode="updates"))
    assert chunks[0] == {"score": {"scores": [20]}}
    assert [i.value for i in chunks[-1]["__interrupt__"]] == [
        {"question": "publish?", "total": 20}]
    assert graph.get_state(config).next == ("approve",)
    assert graph.invoke(Command(resume="ship"), config)["verdict"] == "published [20]"
