"""Where a run starts (`runs.start_queue`) and what a node worker does with a start that
came to its queue (`worker.tasks.start_in_place`).

A producer sends a run's start to the default node queue when a node of the graph is served
there; a worker there starts the run and runs its first task in place. These pin the choice
of queue, and that a start for no run writes nothing and one for a graph the worker does not
load goes on to the scheduler. Driven in-process against a private Redis (what would be
sent is recorded); real workers run it in `test_kept_advance`, `test_distributed` and
`test_crash` (a worker killed mid-start).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tests.dist_graphs as dist_graphs
from graphdef.checkpoint.redis import RedisSaver
from scheduler import registry
from scheduler.protocol import START_TASK
from scheduler.resources import Resources
from scheduler.runs import create_run, start_queue
from scheduler.settings import Settings
from scheduler.store import RunStore
from tests.recording_app import RecordingApp
from tests.redis_server import redis_server
from worker.tasks import start_in_place

DESCRIBED = {"nodes": ["a", "b"], "queues": {"b": "gpu"}}


@pytest.mark.parametrize(("described", "routes", "in_place", "expected"), [
    (DESCRIBED, None, True, "nodes"),  # a is served on the default queue
    (DESCRIBED, {"a": "cpu"}, True, None),  # the run routes it away: nothing is left there
    ({"nodes": ["a"], "queues": {"a": "gpu"}}, None, True, None),  # routed by the graph
    ({"nodes": ["a"], "queues": {"a": "gpu"}}, {"a": "nodes"}, True, "nodes"),
    (DESCRIBED, None, False, None),  # no chain in place: the scheduler starts runs
])  # fmt: skip
def test_a_run_starts_on_the_default_node_queue_only_when_its_graph_is_served_there(
        described: dict, routes: dict | None, in_place: bool, expected: str | None) -> None:
    settings = Settings(broker_url="redis://", store_url="redis://", node_queue="nodes",
                        chain_in_place=in_place)
    assert start_queue(described, routes, settings) == expected


@pytest.fixture
def res(monkeypatch: pytest.MonkeyPatch) -> Iterator[Resources]:
    with redis_server() as server:
        monkeypatch.setenv("CELERYGRAPH_STORE_URL", server.url)
        monkeypatch.setattr(dist_graphs, "_client", None)
        saver = RedisSaver.from_url(server.url)
        registry.register("tests.dist_graphs:single", dist_graphs.single)
        yield Resources(Settings(broker_url=server.url, store_url=server.url), saver,
                        RunStore(saver.client), loaded=True)
        monkeypatch.setattr(dist_graphs, "_client", None)


def everything(res: Resources) -> dict[bytes, bytes | None]:
    return {k: res.store.r.dump(k) for k in sorted(res.store.r.scan_iter())}


def test_a_start_for_no_run_writes_and_sends_nothing(res: Resources) -> None:
    app, before = RecordingApp(), everything(res)
    start_in_place(res, app, "no-thread", "no-run", "nodes")
    assert everything(res) == before and app.sent == []


def test_a_start_of_a_graph_not_loaded_here_goes_to_the_scheduler(res: Resources) -> None:
    run_id = create_run(res.store, graph="tests.dist_graphs:elsewhere", run_input={},
                        thread_id="elsewhere", validate=False)
    app, before = RecordingApp(), everything(res)
    start_in_place(res, app, "elsewhere", run_id, "nodes")
    assert everything(res) == before
    assert app.sent == [(START_TASK, [])]  # kwargs: the two ids (`StartRun.kwargs`)
