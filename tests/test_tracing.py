"""OpenTelemetry traces of distributed runs, read from the SDK's in-memory exporter.

The runs go through a real Celery WorkController (`in_process_cluster`: node and scheduler
tasks on the threads pool of this process, messages through a private Redis broker), so
the exporter sees the spans of every task while the trace context travels only the way it
does between hosts: in message headers and in the run record. A worker whose exporter
cannot reach its collector is a real `celery worker` process.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypedDict

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from graphdef import END, START, StateGraph
from scheduler import registry
from scheduler.localcluster import free_port
from tests.cluster import Cluster
from tests.differential.distributed_api import InProcessCluster, in_process_cluster

WAIT = 30.0
EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """The test process's tracer provider (global and set once per process, so the rest of
    the session traces too) with the in-memory exporter."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    return EXPORTER


@pytest.fixture(scope="module")
def cluster(spans: InMemorySpanExporter) -> Iterator[InProcessCluster]:
    with in_process_cluster() as cluster:
        yield cluster


def note(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def node(state: dict[str, Any]) -> dict[str, Any]:
        return {"log": [name]}

    return node


class State(TypedDict):
    log: Annotated[list[str], operator.add]


def diamond() -> Any:
    """a and b in one superstep (a message each), then c and d, each the lone next task and
    so run in place by the worker that finished the step before."""
    builder = StateGraph(State)
    for name in "abcd":
        builder.add_node(name, note(name))
    builder.add_edge(START, "a")
    builder.add_edge(START, "b")
    builder.add_edge(["a", "b"], "c")
    builder.add_edge("c", "d")
    builder.add_edge("d", END)
    return builder.compile()


def run_spans(exporter: InMemorySpanExporter, run_id: str,
              until: Callable[[list[ReadableSpan]], bool]) -> list[ReadableSpan]:
    deadline = time.monotonic() + WAIT
    while True:
        found = [s for s in exporter.get_finished_spans()
                 if (s.attributes or {}).get("celerygraph.run_id") == run_id]
        if until(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_run_is_one_trace_of_superstep_and_node_spans(cluster, spans):
    ref = cluster.next_ref()
    registry.register(ref, diamond())
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("producer request") as request:
        handle = cluster.client.submit(ref, {"log": []}, thread_id="traced-1")
    assert handle.result(timeout=WAIT) == {"log": ["a", "b", "c", "d"]}
    found = run_spans(spans, handle.id, lambda s: sum(
        x.name.startswith("celerygraph.node") for x in s) == 4)

    [run] = [s for s in found if s.name == "celerygraph.run"]
    assert run.parent is None, "a run is a trace of its own"
    assert [link.context.span_id for link in run.links] == [
        request.get_span_context().span_id], "linked to the span that submitted it"
    assert {s.context.trace_id for s in found} == {run.context.trace_id}
    assert run.attributes["celerygraph.thread_id"] == "traced-1"
    assert run.attributes["celerygraph.graph"] == ref

    steps = {s.context.span_id: s for s in found if s.name == "celerygraph.superstep"}
    assert len(steps) == 3  # [a, b], [c], [d]
    for step in steps.values():
        assert step.parent is not None and step.parent.span_id == run.context.span_id
        assert step.parent.is_remote, "parented on the context stored in the run record"

    nodes = {s.attributes["celerygraph.node"]: s for s in found
             if s.name.startswith("celerygraph.node")}
    assert set(nodes) == {"a", "b", "c", "d"}
    for name, node in nodes.items():
        attributes = node.attributes or {}
        assert node.name == f"celerygraph.node {name}"
        assert attributes["celerygraph.thread_id"] == "traced-1"
        assert attributes["celerygraph.run_id"] == handle.id
        assert attributes["celerygraph.task_id"]
        assert attributes["celerygraph.outcome"] == "finished"
        # Each node is a child of the superstep that dispatched it: through the message's
        # headers (a, b), or handed over in process with the task kept to run here (c, d).
        parent = steps[node.parent.span_id]
        assert parent.attributes["celerygraph.checkpoint_id"] == \
            attributes["celerygraph.checkpoint_id"]
    assert nodes["a"].parent.span_id == nodes["b"].parent.span_id
    assert len({nodes[n].parent.span_id for n in "acd"}) == 3


def test_a_failed_node_is_a_failed_span(cluster, spans):
    def boom(state: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("no")

    builder = StateGraph(State)
    builder.add_node("boom", boom)
    builder.add_edge(START, "boom")
    builder.add_edge("boom", END)
    ref = cluster.next_ref()
    registry.register(ref, builder.compile())
    handle = cluster.client.submit(ref, {"log": []}, thread_id="traced-2")
    with pytest.raises(Exception, match="no"):
        handle.result(timeout=WAIT)
    found = run_spans(spans, handle.id,
                      lambda s: any(x.name == "celerygraph.node boom" for x in s))
    [node] = [s for s in found if s.name == "celerygraph.node boom"]
    assert node.attributes["celerygraph.outcome"] == "failed"
    assert node.status.status_code == StatusCode.ERROR


def test_an_exporter_that_cannot_connect_is_logged_and_the_worker_runs_nodes(
        redis_server, tmp_path):
    closed = free_port()  # nothing listens there
    cluster = Cluster(
        tmp_path, redis_server.url,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{closed}",
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
        OTEL_BSP_SCHEDULE_DELAY="50",
    )
    try:
        cluster.start("traced-worker", concurrency=2)
        cluster.start_scheduler("traced-scheduler")
        handle = cluster.client().submit("tests.dist_graphs:single", {"log": []},
                                         thread_id="exporter-down")
        assert handle.result(timeout=60) == {"log": ["one"]}
        expected = "traces: could not export"
        deadline = time.monotonic() + WAIT
        while expected not in cluster.log("traced-worker"):
            assert time.monotonic() < deadline, cluster.log("traced-worker")[-3000:]
            time.sleep(0.2)
        line = next(x for x in cluster.log("traced-worker").splitlines() if expected in x)
        assert f"http://127.0.0.1:{closed}" in line and "nodes run as usual" in line
    finally:
        cluster.stop()
