"""A run hands its saver, stream and resume state to subgraphs outside the config, so user
code never sees engine internals in a node's config or in what a checkpoint records."""

import operator
from typing import Annotated, Any, TypedDict

import graphdef
from graphdef import Command, InMemorySaver, StateGraph, get_config, interrupt


class State(TypedDict):
    log: Annotated[list, operator.add]


def _engine_keys(config: dict[str, Any]) -> list[str]:
    return [k for k in config.get("configurable", {}) if k.startswith("__")]


def test_node_configs_and_checkpoints_hold_no_engine_keys() -> None:
    seen: list[dict[str, Any]] = []

    def inner_node(state: State, config: dict[str, Any]) -> dict[str, Any]:
        seen.append(config)
        return {"log": [interrupt("ok?")]}

    inner = StateGraph(State).add_node("inner_node", inner_node)
    inner.set_entry_point("inner_node")
    sub = inner.compile()

    @graphdef.task
    def step(n: int) -> int:
        seen.append(get_config())
        return n

    @graphdef.entrypoint()
    def flow(n: int) -> int:
        return step(n).result()

    def outer_node(state: State, config: dict[str, Any]) -> dict[str, Any]:
        seen.append(config)
        flow.invoke(1)
        return sub.invoke(state, config)

    outer = StateGraph(State).add_node("outer_node", outer_node)
    outer.set_entry_point("outer_node")
    saver = InMemorySaver()
    graph = outer.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "t"}}

    list(graph.stream({"log": []}, config, subgraphs=True, stream_mode=["values", "updates"]))
    result = graph.invoke(Command(resume="yes"), config)

    assert result["log"] == ["yes"]
    assert len(seen) == 5  # the outer and the subgraph node twice, the memoized task once
    assert [k for c in seen for k in _engine_keys(c)] == []
    for snapshot in graph.get_state_history(config):
        assert _engine_keys(snapshot.config) == []
        assert not [k for k in snapshot.metadata if k.startswith("__")]
