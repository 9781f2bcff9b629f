"""`Runtime` fields graphdef fills differently from LangGraph (README, deliberate difference
10), and the field list itself, read from LangGraph's class so that a new field fails here.
The stream writer drops chunks unless the run streams `custom`, as LangGraph's does."""

from __future__ import annotations

import dataclasses
import operator
from typing import Annotated, Any, TypedDict

import langgraph.runtime
import pytest

from graphdef import Runtime, StateGraph, get_runtime
from graphdef.runtime import ExecutionInfo


class Log(TypedDict):
    log: Annotated[list, operator.add]


def test_runtime_has_langgraphs_fields() -> None:
    theirs = [f.name for f in dataclasses.fields(langgraph.runtime.Runtime)]
    assert [f.name for f in dataclasses.fields(Runtime)] == theirs
    their_info = [f.name for f in dataclasses.fields(langgraph.runtime.ExecutionInfo)]
    assert [f.name for f in dataclasses.fields(ExecutionInfo)] == their_info


def test_control_server_info_heartbeat_and_writer_are_inert() -> None:
    seen: list[Any] = []

    def node(state: Log, runtime: Runtime) -> dict[str, Any]:
        seen.append(runtime)
        return {"log": [runtime.stream_writer("chunk"), runtime.heartbeat()]}

    builder = StateGraph(Log)
    builder.add_node("node", node)
    builder.add_edge("__start__", "node")
    assert builder.compile().invoke({"log": []}) == {"log": [None, None]}
    runtime = seen[0]
    assert runtime.control is None and runtime.server_info is None  # LangGraph: a RunControl
    assert runtime.drain_requested is False and runtime.drain_reason is None


def test_merge_and_override_follow_langgraph() -> None:
    parent = Runtime(context={"user": "a"}, previous=1)
    child = parent.merge(Runtime(previous=None))
    assert child.context == {"user": "a"} and child.previous == 1
    assert parent.override(context="b").context == "b"


def test_get_runtime_outside_a_run_raises() -> None:
    with pytest.raises(RuntimeError):
        get_runtime()
