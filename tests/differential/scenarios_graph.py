"""Scenarios for the graph API: edges, branches, Send, Command, streams, state kinds, errors."""

from __future__ import annotations

import dataclasses
import operator
from typing import Annotated, Any, TypedDict

from .observe import Counts, history, outcome, snapshot, stream_steps


class LogState(TypedDict):
    log: Annotated[list, operator.add]


class LoopState(TypedDict):
    count: int
    log: Annotated[list, operator.add]


class RouteState(TypedDict):
    route: str
    log: Annotated[list, operator.add]


class ValueState(TypedDict):
    value: int
    log: Annotated[list, operator.add]


class MapState(TypedDict):
    items: list
    results: Annotated[list, operator.add]


@dataclasses.dataclass
class DataState:
    count: int = 0
    log: Annotated[list, operator.add] = dataclasses.field(default_factory=list)


def logger(counts: Counts, name: str):
    """A node that counts its calls and appends its name to ``log``."""

    def node(state: Any) -> dict[str, Any]:
        counts.hit(name)
        return {"log": [name]}

    return node


def silent(counts: Counts, name: str):
    """A node that counts its calls and updates nothing."""

    def node(state: Any) -> dict[str, Any]:
        counts.hit(name)
        return {}

    return node


def chain_builder(api, counts: Counts, names: str = "abc"):
    """START -> names[0] -> ... -> names[-1] -> END, each a ``logger`` node."""
    builder = api.StateGraph(LogState)
    for name in names:
        builder.add_node(name, logger(counts, name))
    builder.add_edge(api.START, names[0])
    for source, target in zip(names, names[1:], strict=False):
        builder.add_edge(source, target)
    builder.add_edge(names[-1], api.END)
    return builder


def thread(thread_id: str = "t") -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def scenario_chain(api, tmp_path):
    counts = Counts()
    graph = chain_builder(api, counts).compile()
    return {
        "invoke": graph.invoke({"log": ["in"]}),
        "updates": list(graph.stream({"log": []}, stream_mode="updates")),
        "counts": counts.as_dict(),
    }


def scenario_add_sequence(api, tmp_path):
    counts = Counts()
    builder = api.StateGraph(LogState)
    builder.add_sequence([(name, logger(counts, name)) for name in ("one", "two", "three")])
    builder.add_edge(api.START, "one")
    graph = builder.compile()
    return {
        "values": list(graph.stream({"log": []}, stream_mode="values")),
        "counts": counts.as_dict(),
    }


def scenario_parallel_reducer_order(api, tmp_path):
    # Nodes are added in non-alphabetical order. LangGraph applies a superstep's writes in
    # task-path order: edge-triggered tasks by node name, then Send tasks in Send order.
    # get_state().next lists Send tasks first, then nodes in add_node order.
    counts = Counts()

    def fan_out(state):
        return [api.Send("mid", {"log": ["sent"]}), api.Send("beta", {"log": ["sent"]})]

    builder = api.StateGraph(LogState)
    for name in ("start", "zeta", "alpha", "mid", "beta", "join"):
        builder.add_node(name, logger(counts, name))
    builder.add_edge(api.START, "start")
    builder.add_conditional_edges("start", fan_out, ["mid", "beta"])
    for branch in ("zeta", "mid", "alpha"):
        builder.add_edge("start", branch)
        builder.add_edge(branch, "join")
    graph = builder.compile(checkpointer=api.InMemorySaver(), interrupt_before=["join"])
    config = thread()
    return {
        "steps": stream_steps(graph, {"log": []}, config),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def scenario_join_edge_vs_separate_edges(api, tmp_path):
    observations = {}
    for variant in ("join", "separate"):
        counts = Counts()
        builder = api.StateGraph(LogState)
        for name in ("a", "b", "b2", "c", "d"):
            builder.add_node(name, logger(counts, name))
        builder.add_edge(api.START, "a")
        builder.add_edge("a", "b")
        builder.add_edge("b", "b2")
        builder.add_edge("a", "c")
        if variant == "join":
            builder.add_edge(["b2", "c"], "d")
        else:
            builder.add_edge("b2", "d")
            builder.add_edge("c", "d")
        graph = builder.compile()
        observations[variant] = {
            "invoke": graph.invoke({"log": []}),
            "counts": counts.as_dict(),
        }
    return observations


def route_builder(api, counts: Counts, router, path_map=None):
    """START -> decide -(router)-> left | right | END; left and right have no out-edges."""
    builder = api.StateGraph(RouteState)
    for name in ("decide", "left", "right"):
        builder.add_node(name, logger(counts, name))
    builder.add_edge(api.START, "decide")
    builder.add_conditional_edges("decide", router, path_map)
    return builder


def scenario_conditional_edges_with_path_map(api, tmp_path):
    counts = Counts()
    path_map = {"go_left": "left", "go_right": "right", "stop": api.END}
    graph = route_builder(api, counts, lambda state: state["route"], path_map).compile()
    return {
        route: graph.invoke({"route": route, "log": []})
        for route in ("go_left", "go_right", "stop")
    } | {"counts": counts.as_dict()}


def scenario_conditional_edges_without_path_map(api, tmp_path):
    counts = Counts()

    def router(state):
        return api.END if state["route"] == "end" else state["route"]

    graph = route_builder(api, counts, router).compile()
    return {
        route: graph.invoke({"route": route, "log": []}) for route in ("left", "right", "end")
    } | {"counts": counts.as_dict()}


def scenario_conditional_edge_returns_list(api, tmp_path):
    counts = Counts()
    graph = route_builder(api, counts, lambda state: ["right", "left"]).compile()
    return {
        "invoke": graph.invoke({"route": "", "log": []}),
        "steps": stream_steps(graph, {"route": "", "log": []}),
        "counts": counts.as_dict(),
    }


def scenario_loop_until_counter(api, tmp_path):
    counts = Counts()

    def step(state):
        counts.hit("step")
        return {"count": state["count"] + 1, "log": [state["count"]]}

    builder = api.StateGraph(LoopState)
    builder.add_node("step", step)
    builder.add_edge(api.START, "step")
    builder.add_conditional_edges("step", lambda state: api.END if state["count"] >= 3 else "step")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    config = thread()
    return {
        "values": list(graph.stream({"count": 0, "log": []}, config, stream_mode="values")),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def scenario_recursion_limit(api, tmp_path):
    counts = Counts()

    def step(state):
        counts.hit("step")
        return {"count": state["count"] + 1}

    builder = api.StateGraph(LoopState)
    builder.add_node("step", step)
    builder.add_edge(api.START, "step")
    builder.add_edge("step", "step")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    config = thread() | {"recursion_limit": 5}
    return {
        "invoke": outcome(lambda: graph.invoke({"count": 0, "log": []}, config)),
        "state": snapshot(graph, config),
        "history_steps": [entry[:3] for entry in history(graph, config)],
        "counts": counts.as_dict(),
    }


def map_reduce_builder(api, counts: Counts, fan_out_from):
    """``work`` squares one item per Send; ``collect`` runs after all of them."""

    def work(arg):
        counts.hit("work")
        return {"results": [arg["item"] ** 2]}

    def fan_out(state):
        return [api.Send("work", {"item": item}) for item in state["items"]]

    builder = api.StateGraph(MapState)
    builder.add_node("work", work)
    builder.add_node("collect", silent(counts, "collect"))
    builder.add_conditional_edges(fan_out_from, fan_out, ["work"])
    builder.add_edge("work", "collect")
    return builder


def scenario_send_map_reduce(api, tmp_path):
    counts = Counts()
    builder = map_reduce_builder(api, counts, "split")
    builder.add_node("split", silent(counts, "split"))
    builder.add_edge(api.START, "split")
    graph = builder.compile()
    return {
        "invoke": graph.invoke({"items": list(range(10)), "results": []}),
        "counts": counts.as_dict(),
    }


def scenario_send_from_start(api, tmp_path):
    counts = Counts()
    graph = map_reduce_builder(api, counts, api.START).compile(checkpointer=api.InMemorySaver())
    config = thread()
    return {
        "steps": stream_steps(graph, {"items": [3, 1, 2], "results": []}, config),
        # LangGraph: the input checkpoint (step -1) shows only reducer channels' defaults,
        # not the input, which is still a pending write of the __start__ task.
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def scenario_command_goto(api, tmp_path):
    counts = Counts()

    def route(state):
        counts.hit("route")
        goto = {
            "single": "c",
            "list": ["c", "b"],
            "send": api.Send("c", {"route": "sent", "log": ["payload"]}),
        }[state["route"]]
        return api.Command(update={"log": ["route"]}, goto=goto)

    def c(state):
        counts.hit("c")
        return {"log": [f"c saw {state['route']}"]}

    builder = api.StateGraph(RouteState)
    builder.add_node("route", route)
    builder.add_node("b", logger(counts, "b"))
    builder.add_node("c", c)
    builder.add_edge(api.START, "route")
    graph = builder.compile()
    return {
        mode: graph.invoke({"route": mode, "log": []}) for mode in ("single", "list", "send")
    } | {"counts": counts.as_dict()}


def scenario_command_parent_from_subgraph(api, tmp_path):
    counts = Counts()

    def child(state):
        counts.hit("child")
        return api.Command(graph=api.Command.PARENT, goto="after", update={"log": ["child"]})

    sub_builder = api.StateGraph(LogState)
    sub_builder.add_node("child", child)
    sub_builder.add_node("unreached", logger(counts, "unreached"))
    sub_builder.add_edge(api.START, "child")
    sub_builder.add_edge("child", "unreached")

    builder = api.StateGraph(LogState)
    builder.add_node("sub", sub_builder.compile())
    builder.add_node("after", logger(counts, "after"))
    builder.add_node("static_next", logger(counts, "static_next"))
    builder.add_edge(api.START, "sub")
    builder.add_edge("sub", "static_next")
    graph = builder.compile()
    # LangGraph: the parent's static edge out of "sub" still fires, so "after" and
    # "static_next" both run; the child's update is applied once.
    return {"invoke": graph.invoke({"log": []}), "counts": counts.as_dict()}


def scenario_stream_modes(api, tmp_path):
    counts = Counts()
    chain = chain_builder(api, counts).compile()
    builder = api.StateGraph(LogState)
    for name in ("a", "b", "c", "d"):
        builder.add_node(name, logger(counts, name))
    builder.add_edge(api.START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("a", "c")
    builder.add_edge(["b", "c"], "d")
    parallel = builder.compile()
    return {
        "chain_updates": list(chain.stream({"log": ["in"]}, stream_mode="updates")),
        "chain_values": list(chain.stream({"log": ["in"]}, stream_mode="values")),
        "chain_multiple": list(chain.stream({"log": ["in"]}, stream_mode=["updates", "values"])),
        "parallel_values": list(parallel.stream({"log": ["in"]}, stream_mode="values")),
        "parallel_steps": stream_steps(parallel, {"log": ["in"]}),
        "counts": counts.as_dict(),
    }


def scenario_subgraph_shared_keys(api, tmp_path):
    counts = Counts()

    class SubState(TypedDict):
        log: Annotated[list, operator.add]
        inner: str

    def sub_one(state):
        counts.hit("sub_one")
        return {"inner": "secret", "log": ["sub_one"]}

    def sub_two(state):
        counts.hit("sub_two")
        return {"log": [f"sub_two saw {state['inner']}"]}

    sub_builder = api.StateGraph(SubState)
    sub_builder.add_sequence([("sub_one", sub_one), ("sub_two", sub_two)])
    sub_builder.add_edge(api.START, "sub_one")

    builder = api.StateGraph(LogState)
    builder.add_sequence([("a", logger(counts, "a")), ("sub", sub_builder.compile())])
    builder.add_edge(api.START, "a")
    graph = builder.compile()
    # The subgraph's update is its whole "log" ("a" included), which the parent's reducer
    # appends: LangGraph's result holds "a" twice.
    streamed = graph.stream({"log": []}, stream_mode="updates", subgraphs=True)
    return {
        "invoke": graph.invoke({"log": []}),
        # Namespaces carry task ids ("sub:<id>"); keep the node names only.
        "subgraph_updates": [
            (tuple(part.split(":")[0] for part in namespace), chunk)
            for namespace, chunk in streamed
        ],
        "counts": counts.as_dict(),
    }


def scenario_messages_state(api, tmp_path):
    counts = Counts()

    def reply(state):
        counts.hit("reply")
        last = state["messages"][-1]
        return {
            "messages": [
                {"role": "assistant", "content": f"echo {last.content}"},
                {"role": "user", "content": "edited", "id": "first"},
            ]
        }

    builder = api.StateGraph(api.MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(api.START, "reply")
    graph = builder.compile()
    user = {"role": "user", "content": "hi", "id": "first"}
    return {
        "invoke": graph.invoke({"messages": [user, {"role": "user", "content": "there"}]}),
        "add_messages": api.add_messages([user], [{"role": "assistant", "content": "reply"}]),
        "counts": counts.as_dict(),
    }


def scenario_dataclass_state(api, tmp_path):
    counts = Counts()

    def bump(state: DataState):
        counts.hit("bump")
        return {"count": state.count + 1, "log": [f"saw {state.count}"]}

    builder = api.StateGraph(DataState)
    builder.add_sequence([("first", bump), ("second", bump)])
    builder.add_edge(api.START, "first")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    config = thread()
    return {
        "invoke": graph.invoke(DataState(count=5), config),
        "state": snapshot(graph, config),
        "counts": counts.as_dict(),
    }


def scenario_update_to_unknown_key(api, tmp_path):
    counts = Counts()

    def bad(state):
        counts.hit("bad")
        return {"not_a_key": 1}

    builder = api.StateGraph(LogState)
    builder.add_node("bad", bad)
    builder.add_edge(api.START, "bad")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    config = thread()
    return {
        # LangGraph silently drops unknown keys, in a node's update and in the input.
        "invoke": outcome(lambda: graph.invoke({"log": []}, config)),
        "state": snapshot(graph, config),
        "unknown_input_key": outcome(lambda: graph.invoke({"log": [], "other": 1}, thread("2"))),
        "counts": counts.as_dict(),
    }


def scenario_concurrent_writes_to_last_value(api, tmp_path):
    counts = Counts()

    def writer(value):
        def node(state):
            counts.hit(f"writer{value}")
            return {"value": value}

        return node

    builder = api.StateGraph(ValueState)
    builder.add_node("one", writer(1))
    builder.add_node("two", writer(2))
    builder.add_edge(api.START, "one")
    builder.add_edge(api.START, "two")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    config = thread()
    return {
        "invoke": outcome(lambda: graph.invoke({"value": 0, "log": []}, config)),
        # LangGraph: get_state re-applies the saved writes and raises the same error.
        "state": outcome(lambda: snapshot(graph, config)),
        "counts": counts.as_dict(),
    }


def scenario_empty_input(api, tmp_path):
    # LangGraph: invoke(None) on a finished thread returns its values and runs nothing.
    counts = Counts()
    graph = chain_builder(api, counts).compile(checkpointer=api.InMemorySaver())
    return {
        "without_checkpointer": outcome(lambda: chain_builder(api, counts).compile().invoke(None)),
        "new_thread": outcome(lambda: graph.invoke(None, thread())),
        "finished_thread": outcome(
            lambda: (graph.invoke({"log": []}, thread("done")), graph.invoke(None, thread("done")))
        ),
        "counts": counts.as_dict(),
    }


def scenario_node_raises_value_error(api, tmp_path):
    counts = Counts()

    def boom(state):
        counts.hit("boom")
        raise ValueError("boom")

    builder = api.StateGraph(LogState)
    builder.add_sequence([("a", logger(counts, "a")), ("boom", boom), ("c", logger(counts, "c"))])
    builder.add_edge(api.START, "a")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    config = thread()
    return {
        "invoke": outcome(lambda: graph.invoke({"log": []}, config)),
        "state": snapshot(graph, config),
        "history": history(graph, config),
        "resume_still_fails": outcome(lambda: graph.invoke(None, config)),
        "counts": counts.as_dict(),
    }
