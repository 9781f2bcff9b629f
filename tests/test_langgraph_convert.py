"""What the LangGraph converter refuses, each with a ConversionError naming the part, and
what it keeps that the differential scenarios do not show (tests/differential/
test_langgraph_converted.py and test_langgraph_on_cluster.py run those).
"""

from __future__ import annotations

import operator
import sqlite3
from typing import Annotated, TypedDict

import pytest
from langgraph.cache.memory import InMemoryCache as LgInMemoryCache
from langgraph.channels.ephemeral_value import EphemeralValue
from langgraph.checkpoint.memory import InMemorySaver as LgInMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver as LgSqliteSaver
from langgraph.func import entrypoint, task
from langgraph.graph import START, StateGraph
from langgraph.pregel import NodeBuilder, Pregel
from langgraph.types import CachePolicy, Command, TracePolicy, interrupt

import graphdef
from celerygraph_langgraph import ConversionError, Saver, convert, for_cluster
from graphdef.errors import NotImplementedFeatureError
from scheduler import registry


class Log(TypedDict):
    log: Annotated[list, operator.add]


def note(name: str):
    def node(state: Log) -> dict:
        return {"log": [name]}

    return node


def one_node(**add_node) -> StateGraph:
    builder = StateGraph(Log)
    builder.add_node("only", add_node.pop("action", note("only")), **add_node)
    builder.add_edge(START, "only")
    return builder


async def slow(state: Log) -> dict:
    return {"log": ["slow"]}


@pytest.mark.parametrize(("builder", "named"), [
    (lambda: one_node(error_handler=lambda state: {"log": ["handled"]}),
     "node 'only': error_handler is not supported"),
    (lambda: one_node(action=slow, timeout=5.0), "node 'only': timeout is not supported"),
    (lambda: one_node(trace_policy=TracePolicy(process_inputs=lambda x: x)),
     "node 'only': trace_policy is not supported"),
])
def test_node_options_graphdef_lacks_are_named(builder, named):
    with pytest.raises(ConversionError, match=f"^{named}$"):
        convert(builder())


def test_a_subgraph_keeping_its_own_state_is_named():
    parent = StateGraph(Log)
    parent.add_node("sub", one_node().compile(checkpointer=True))
    parent.add_edge(START, "sub")
    with pytest.raises(ConversionError, match=r"^subgraph 'sub' > checkpointer=True"):
        convert(parent)


def test_a_checkpointer_without_counterpart_is_named_unless_one_is_given(tmp_path):
    saver = LgSqliteSaver(sqlite3.connect(tmp_path / "lg.sqlite", check_same_thread=False))
    graph = one_node().compile(checkpointer=saver)
    with pytest.raises(ConversionError, match="^checkpointer SqliteSaver has no graphdef"):
        convert(graph)
    ours = graphdef.SqliteSaver(str(tmp_path / "ours.sqlite"))
    assert convert(graph, checkpointer=ours).checkpointer is ours
    assert for_cluster(graph).checkpointer is None
    assert isinstance(convert(one_node().compile(checkpointer=LgInMemorySaver())).checkpointer,
                      graphdef.InMemorySaver)


def test_state_channels_graphdef_lacks_are_named():
    class Ephemeral(TypedDict):
        log: Annotated[list, operator.add]
        scratch: Annotated[int, EphemeralValue]

    builder = StateGraph(Ephemeral)
    builder.add_node("only", note("only"))
    builder.add_edge(START, "only")
    with pytest.raises(ConversionError,
                       match="^state key 'scratch': LangGraph channel EphemeralValue"):
        convert(builder)


class Odd(TypedDict):
    # LangGraph reads the last annotation only ("doc": no reducer); graphdef the first
    # function it finds.
    log: Annotated[list, operator.add, "doc"]


class Private(TypedDict):
    secret: str


def test_a_reducer_read_differently_is_named():
    builder = StateGraph(Odd)
    builder.add_node("only", lambda state: {"log": ["only"]})
    builder.add_edge(START, "only")
    with pytest.raises(ConversionError, match="^state key 'log': graphdef reads another"):
        convert(builder)


def test_a_route_reading_a_private_schema_is_named():
    def route(state: Private) -> str:
        return "__end__"

    builder = one_node()
    builder.add_conditional_edges("only", route)
    with pytest.raises(ConversionError,
                       match="^conditional edge 'route' from 'only': its path reads Private"):
        convert(builder)


def test_graph_wide_options_and_hand_built_pregels_are_named():
    with pytest.raises(ConversionError, match="^debug=True is not supported"):
        convert(one_node().compile(debug=True))
    by_hand = Pregel(nodes={"n": NodeBuilder().subscribe_only("a").write_to("b")},
                     channels={"a": EphemeralValue(str), "b": EphemeralValue(str)},
                     input_channels="a", output_channels="b")
    with pytest.raises(ConversionError, match="a Pregel built by hand"):
        convert(by_hand)
    with pytest.raises(ConversionError, match="^object is not a LangGraph graph"):
        convert(object())


def test_an_entrypoint_timeout_is_named_and_a_task_timeout_fails_its_run():
    @entrypoint(timeout=5.0)
    async def timed(x: int) -> int:
        return x

    with pytest.raises(ConversionError, match="^entrypoint 'timed': timeout is not supported"):
        convert(timed)

    @task(timeout=5.0)
    async def slow_task(x: int) -> int:
        return x

    @entrypoint()
    async def calls(x: int) -> int:
        return await slow_task(x)

    import asyncio

    with pytest.raises(NotImplementedFeatureError, match="@task 'slow_task': timeout"):
        asyncio.run(convert(calls).ainvoke(1))


GLOBAL_SOURCE = '''
def calls_global(state):
    return {"log": ["before"] + sub.invoke({"log": []})["log"]}

def assigns_global(state):
    global seen
    seen = sub.invoke({"log": []})
    return {}
'''


def test_a_graph_a_node_calls_from_its_globals_runs_converted():
    """The node's copy reaches the subgraph's conversion: its interrupt pauses the parent
    run and the answer resumes it (run by LangGraph, it would be a separate run)."""
    def ask(state: Log) -> dict:
        return {"log": [interrupt("sub?")]}

    namespace = {"sub": one_node(action=ask).compile()}
    exec(GLOBAL_SOURCE, namespace)  # noqa: S102 - a module's globals, made here
    builder = StateGraph(Log)
    builder.add_node("calls", namespace["calls_global"])
    builder.add_edge(START, "calls")
    graph = convert(builder.compile(checkpointer=LgInMemorySaver()))
    config = {"configurable": {"thread_id": "t"}}
    assert [i.value for i in graph.invoke({"log": []}, config)["__interrupt__"]] == ["sub?"]
    assert graph.invoke(graphdef.Command(resume="yes"), config) == {"log": ["before", "yes"]}
    assert namespace["calls_global"].__globals__ is namespace  # the user's function untouched

    assigning = StateGraph(Log)
    assigning.add_node("assigns", namespace["assigns_global"])
    assigning.add_edge(START, "assigns")
    with pytest.raises(ConversionError, match="^node 'assigns': its function assigns module"):
        convert(assigning)


def test_a_langgraph_cache_keeps_graphdefs_entries():
    cache = LgInMemoryCache()
    runs = []

    def counted(state: Log) -> dict:
        runs.append(1)
        return {"log": ["ran"]}

    graph = convert(one_node(action=counted, cache_policy=CachePolicy()).compile(cache=cache))
    assert graph.invoke({"log": []}) == graph.invoke({"log": []}) == {"log": ["ran"]}
    assert len(runs) == 1
    cache.clear()  # LangGraph's own API on its cache: graphdef's entries go with it
    graph.invoke({"log": []})
    assert len(runs) == 2


def test_a_command_to_the_parent_and_its_resume_cross_over():
    def child(state: Log) -> Command:
        return Command(graph=Command.PARENT, goto="after", update={"log": ["child"]})

    parent = StateGraph(Log)
    parent.add_node("sub", one_node(action=child).compile())
    parent.add_node("after", note("after"))
    parent.add_edge(START, "sub")
    assert convert(parent).invoke({"log": []}) == {"log": ["child", "after"]}


def test_the_registry_converts_langgraph_graphs_and_leaves_other_langgraph_objects():
    assert registry.as_graph(LgInMemorySaver()) is None
    assert registry.as_graph(Saver.MAPPED) is None
    assert isinstance(registry.as_graph(one_node()), graphdef.Pregel)
    graph = graphdef.StateGraph(Log)
    graph.add_node("only", note("only"))
    graph.add_edge(START, "only")
    compiled = graph.compile()
    assert registry.as_graph(compiled) is compiled
