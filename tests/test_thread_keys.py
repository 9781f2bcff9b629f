"""One hash tag per thread, chosen in one place (`graphdef.checkpoint.keys`) for the saver and
the run store: a thread's keys share a Redis Cluster slot whatever its id holds, and the keys
of ordinary thread ids are what they were."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

import pytest
from redis.crc import key_slot

from graphdef import END, START, StateGraph
from graphdef.checkpoint.redis import RedisSaver
from scheduler import registry
from scheduler.driver import Driver
from scheduler.protocol import NODE_TASK, NODES_TASK, NodeRef, RunNodes
from scheduler.records import RunStatus
from scheduler.resources import Resources
from scheduler.runs import create_run
from scheduler.settings import Settings
from tests.recording_app import RecordingApp
from tests.redis_server import redis_server
from worker.tasks import run_message


class Log(TypedDict, total=False):
    log: Annotated[list, operator.add]


def _graph():  # noqa: ANN202
    builder = StateGraph(Log)
    builder.add_node("a", lambda s: {"log": ["a"]})
    builder.add_node("b", lambda s: {"log": ["b"]})
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", END)
    return builder.compile()


@pytest.fixture
def res():
    with redis_server() as server:
        settings = Settings(broker_url=server.url, store_url=server.url)
        yield Resources.connect(settings)


def test_ordinary_thread_ids_keep_their_keys(res: Resources) -> None:
    assert res.store.key("order-7", "run", "r1") == "cg:{order-7}:run:r1"
    assert res.saver._keys("order-7", "").index == "cg:{order-7}:keys"


@pytest.mark.parametrize("thread_id", ["a{b}c", "}{", "~tilde", "glob*[x]?"])
def test_any_thread_id_runs_with_all_its_keys_in_one_slot(res: Resources, thread_id: str):
    registry.register("tests.test_thread_keys:graph", _graph())
    app = RecordingApp()
    run_id = create_run(res.store, graph="tests.test_thread_keys:graph", run_input={"log": []},
                        thread_id=thread_id, validate=False)
    assert Driver(res, app).start(thread_id, run_id).status == RunStatus.RUNNING
    while app.sent:
        name, args = app.sent.pop(0)
        assert name in (NODE_TASK, NODES_TASK)
        refs = (NodeRef(args[3], args[4]),) if name == NODE_TASK else tuple(
            NodeRef(t, p) for t, p in args[3])
        run_message(res, app, RunNodes(args[0], args[1], args[2], refs), run_here="nodes")
    assert res.store.run(thread_id, run_id).status == RunStatus.DONE
    assert res.store.output(thread_id, run_id) == {"log": ["a", "b"]}
    assert res.store.threads() == [thread_id]
    assert res.saver.get_tuple({"configurable": {"thread_id": thread_id}}) is not None
    # The sweep's index is sharded apart from threads (`scheduler.deadlines`).
    thread_keys = [k for k in res.store.r.keys("*")
                   if b"{" in k and not k.startswith(b"cg:{~sweep")]
    assert len(thread_keys) > 5
    assert len({key_slot(k) for k in thread_keys}) == 1, thread_keys


def test_a_saver_built_on_another_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="must not contain"):
        RedisSaver("redis://127.0.0.1:1/0", prefix="a{b}")
