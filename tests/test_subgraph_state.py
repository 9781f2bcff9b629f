"""Human review on every saver: a subgraph's state read and edited through its config, and
"edit, then approve" (update_state on a paused thread, then Command(resume=...)). The
differential suite checks the same flows against LangGraph on its in-memory and SQLite
savers; this runs them on graphdef's Redis saver as well."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import pytest

from graphdef import START, Command, InMemorySaver, SqliteSaver, StateGraph, interrupt
from graphdef.checkpoint.redis import RedisSaver


class Log(TypedDict):
    log: Annotated[list, operator.add]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def saver(request, tmp_path) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemorySaver()
    elif request.param == "sqlite":
        yield SqliteSaver(str(tmp_path / "review.sqlite"))
    else:
        server = request.getfixturevalue("redis_server")
        with RedisSaver(server.url) as redis_saver:
            yield redis_saver


def review(state: Log) -> dict[str, Any]:
    verdict = interrupt("ok?")
    return {"log": [f"{verdict} on {state['log']}"]}


def with_review(*before: str) -> StateGraph:
    builder = StateGraph(Log)
    steps = [(name, (lambda n: lambda s: {"log": [n]})(name)) for name in before]
    builder.add_sequence([*steps, ("review", review)])
    builder.add_edge(START, before[0])
    return builder


def thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": uuid.uuid4().hex}}


def test_edit_then_approve(saver):
    graph = with_review("draft").compile(checkpointer=saver)
    config = thread()
    graph.invoke({"log": []}, config)
    graph.update_state(config, {"log": ["edited"]})
    state = graph.get_state(config)
    assert (state.next, state.interrupts) == (("review",), ())
    assert graph.invoke(Command(resume="approved"), config) == {
        "log": ["draft", "edited", "approved on ['draft', 'edited']"]}


def test_subgraph_edit_through_its_config_then_approve(saver):
    sub = with_review("s1").compile()
    builder = StateGraph(Log)
    builder.add_sequence([("p1", lambda s: {"log": ["p1"]}), ("sub", sub)])
    builder.add_edge(START, "p1")
    graph = builder.compile(checkpointer=saver)
    config = thread()
    graph.invoke({"log": []}, config)
    sub_config = graph.get_state(config).tasks[0].state
    assert graph.get_state(sub_config).next == ("review",)
    graph.update_state(sub_config, {"log": ["edited"]})
    edited = graph.get_state(sub_config)
    assert (edited.next, edited.metadata["source"]) == (("review",), "update")
    assert set(edited.metadata["parents"]) == {""}
    assert graph.invoke(Command(resume="approved"), config)["log"][-1] == (
        "approved on ['p1', 's1', 'edited']")
