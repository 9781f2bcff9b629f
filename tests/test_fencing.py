"""Two schedulers advancing the same superstep at once: exactly one writes the next checkpoint.

The race is forced: both advances are called directly (no run lease), from two threads
released together, against a private Redis. The loser's compare-and-set on the thread's
head fails, so it stores nothing and dispatches nothing.
"""

from __future__ import annotations

import threading

import pytest

from graphdef.checkpoint.redis import RedisSaver
from scheduler import registry
from scheduler.driver import Driver
from scheduler.fencing import FencedSaver
from scheduler.resources import Resources
from scheduler.runs import create_run
from scheduler.settings import Settings
from scheduler.store import RunStore
from tests.embedded_graphs import approval
from tests.recording_app import RecordingApp
from tests.redis_server import redis_server
from worker.node import execute_node


@pytest.fixture
def resources():
    with redis_server() as server:
        settings = Settings(broker_url=server.url, store_url=server.url)
        saver = RedisSaver.from_url(server.url)
        yield Resources(settings, saver, RunStore(saver.client), loaded=True)


def test_concurrent_advances_of_one_step_write_one_checkpoint(resources, monkeypatch):
    registry.register("tests.embedded_graphs:approval", approval)
    app = RecordingApp()
    run_id = create_run(resources.store, graph="tests.embedded_graphs:approval",
                        run_input={"log": []}, thread_id="fence", validate=False)
    assert Driver(resources, app).start("fence", run_id).status == "running"
    # The first dispatched superstep runs `prepare`; run it here, as a worker would.
    [(_, args)] = [s for s in app.sent if s[0] == "celerygraph.run_node"]
    thread_id, _, checkpoint_id, task_id, path = args
    assert execute_node(resources, thread_id, run_id, checkpoint_id, task_id, path)
    head_before = resources.saver.head("fence")
    history_before = len(resources.saver.checkpoint_ids("fence"))

    gate = threading.Barrier(2)
    # Hold both advances just before their checkpoint write, so both planned from the same
    # head: only the compare-and-set can keep them apart.
    both_planned = threading.Barrier(2)
    put = FencedSaver.put

    def put_when_both_planned(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if kwargs.get("metadata", args[2] if len(args) > 2 else {}).get("source") == "loop":
            both_planned.wait(timeout=10)
        return put(self, *args, **kwargs)

    monkeypatch.setattr(FencedSaver, "put", put_when_both_planned)
    outcomes: list[str] = []

    def advance() -> None:
        driver = Driver(resources, app)
        gate.wait()
        outcomes.append(driver.advance("fence", run_id, checkpoint_id).status)

    app.sent.clear()
    threads = [threading.Thread(target=advance) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(outcomes) == ["running", "stale"]
    ids = resources.saver.checkpoint_ids("fence")
    assert len(ids) == history_before + 1 and ids[-2] == head_before
    # Only the winner dispatched the next superstep (`ask`), once.
    dispatched = [a for name, a in app.sent if name == "celerygraph.run_node"]
    assert len(dispatched) == 1 and dispatched[0][2] == ids[-1]
