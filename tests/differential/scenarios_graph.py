"""Scenarios for the graph API: edges, branches, Send, Command, streams, state kinds, errors."""

from __future__ import annotations

import dataclasses
import operator
from typing import Annotated, Any, TypedDict

import pydantic

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


def scenario_default_recursion_limit_allows_a_long_loop(api, tmp_path):
    """No `recursion_limit` given: LangGraph 1.x's default lets a loop of 60 supersteps end
    on its own (an older default of 25 stopped it with GraphRecursionError)."""
    counts = Counts()

    def step(state):
        counts.hit("step")
        return {"count": state["count"] + 1}

    builder = api.StateGraph(LoopState)
    builder.add_node("step", step)
    builder.add_edge(api.START, "step")
    builder.add_conditional_edges("step", lambda state: api.END if state["count"] >= 60 else "step")
    graph = builder.compile()
    return {"output": graph.invoke({"count": 0, "log": []}), "counts": counts.as_dict()}


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


# ---- schemas, messages, streams and builder shortcuts ----------------------------------------


class ModelState(pydantic.BaseModel):
    count: int = 0
    name: str = "anon"
    log: Annotated[list, operator.add] = []


def scenario_pydantic_state(api, tmp_path):
    counts = Counts()

    def bump(state: ModelState):
        counts.hit("bump")
        assert isinstance(state, ModelState)
        return {"count": state.count + 1, "log": [f"{state.name}:{state.count}"]}

    builder = api.StateGraph(ModelState)
    builder.add_sequence([("first", bump), ("second", bump)])
    builder.add_edge(api.START, "first")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    return {
        "dict_input": graph.invoke({"count": 5}, thread("dict")),
        "model_input": graph.invoke(ModelState(name="bob"), thread("model")),
        "state": snapshot(graph, thread("model")),
        "history": history(graph, thread("model")),
        "invalid_input": outcome(lambda: graph.invoke({"count": "many"}, thread("bad"))),
        "counts": counts.as_dict(),
    }


class Overall(TypedDict):
    question: str
    answer: str


class Private(TypedDict):
    secret: str


def scenario_private_state_from_type_hints(api, tmp_path):
    # LangGraph reads a node's input schema from its first parameter's annotation, and adds
    # that schema's keys to the graph's channels: "secret" is passed from think to reveal.
    counts = Counts()

    def think(state: Overall) -> Private:
        counts.hit("think")
        return {"secret": f"about {state['question']}"}

    def reveal(state: Private) -> Overall:
        counts.hit("reveal")
        return {"answer": f"secret was {state['secret']}"}

    builder = api.StateGraph(Overall)
    builder.add_sequence([("think", think), ("reveal", reveal)])
    builder.add_edge(api.START, "think")
    graph = builder.compile()
    return {"invoke": graph.invoke({"question": "q"}), "counts": counts.as_dict()}


def scenario_messages_remove_and_replace(api, tmp_path):
    from langchain_core.messages import RemoveMessage

    counts = Counts()

    def trim(state):
        counts.hit("trim")
        first, second = state["messages"][:2]
        return {
            "messages": [
                RemoveMessage(id=first.id),
                {"role": "assistant", "content": "rewritten", "id": second.id},
                ("assistant", "a (role, content) tuple is one message"),
            ]
        }

    def wipe(state):
        counts.hit("wipe")
        return {
            "messages": [
                RemoveMessage(id="__remove_all__"),
                {"role": "user", "content": "fresh", "id": "fresh"},
            ]
        }

    history_in = [
        {"role": "user", "content": "one", "id": "1"},
        {"role": "ai", "content": "two", "id": "2"},
        {"role": "user", "content": "three", "id": "3"},
    ]
    builder = api.StateGraph(api.MessagesState)
    builder.add_node("trim", trim)
    builder.add_edge(api.START, "trim")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    wiping = api.StateGraph(api.MessagesState)
    wiping.add_sequence([("trim", trim), ("wipe", wipe)])
    wiping.add_edge(api.START, "trim")
    return {
        "invoke": graph.invoke({"messages": history_in}, thread()),
        "kept_ids": [m.id for m in graph.get_state(thread()).values["messages"] if len(m.id) < 3],
        "remove_unknown_id": outcome(
            lambda: graph.invoke({"messages": [RemoveMessage(id="nope")]}, thread("x"))
        ),
        "remove_all": wiping.compile().invoke({"messages": history_in}),
        "tuple_update": api.add_messages([], ("assistant", "hello")),
        "counts": counts.as_dict(),
    }


def scenario_stream_updates_and_values_with_subgraphs(api, tmp_path):
    counts = Counts()
    sub_builder = chain_builder(api, counts, ["s1", "s2"])
    builder = api.StateGraph(LogState)
    builder.add_sequence(
        [("a", logger(counts, "a")), ("sub", sub_builder.compile()), ("c", logger(counts, "c"))]
    )
    builder.add_edge(api.START, "a")
    graph = builder.compile()

    def node_names(namespace):
        return tuple(part.split(":")[0] for part in namespace)

    chunks = graph.stream({"log": []}, stream_mode=["updates", "values"], subgraphs=True)
    values = graph.stream({"log": []}, stream_mode="values", subgraphs=True)
    return {
        "multiple_modes": [(node_names(ns), mode, chunk) for ns, mode, chunk in chunks],
        "values": [(node_names(ns), chunk) for ns, chunk in values],
        "counts": counts.as_dict(),
    }


def overwrite_type(api):
    if api.name == "langgraph":
        from langgraph.types import Overwrite
    else:
        from graphdef import Overwrite
    return Overwrite


def scenario_overwrite_bypasses_reducer(api, tmp_path):
    overwrite = overwrite_type(api)
    counts = Counts()

    def reset(state):
        counts.hit("reset")
        return {"log": overwrite(["reset"])}

    def reset_by_command(state):
        counts.hit("reset_by_command")
        return api.Command(update={"log": overwrite(value=["command"])})

    builder = api.StateGraph(LogState)
    builder.add_sequence([("a", logger(counts, "a")), ("reset", reset), ("b", logger(counts, "b"))])
    builder.add_edge(api.START, "a")
    sequence = builder.compile(checkpointer=api.InMemorySaver())

    def parallel(*nodes):
        builder = api.StateGraph(LogState)
        for name, node in nodes:
            builder.add_node(name, node)
            builder.add_edge(api.START, name)
        return builder.compile()

    both = parallel(("add", logger(counts, "add")), ("reset", reset))
    two = parallel(("reset", reset), ("reset_by_command", reset_by_command))
    return {
        "sequence": sequence.invoke({"log": ["in"]}, thread()),
        "history": history(sequence, thread()),
        "with_a_parallel_append": both.invoke({"log": ["in"]}),
        "two_overwrites_in_one_step": outcome(lambda: two.invoke({"log": []})),
        "update_state": outcome(
            lambda: (
                sequence.update_state(thread(), {"log": overwrite(["manual"])}),
                sequence.get_state(thread()).values,
            )[1]
        ),
        "counts": counts.as_dict(),
    }


def scenario_entry_and_finish_points(api, tmp_path):
    counts = Counts()
    plain = api.StateGraph(RouteState)
    for name in ("a", "b", "unused"):
        plain.add_node(name, logger(counts, name))
    plain.set_entry_point("a")
    plain.add_edge("a", "b")
    plain.set_finish_point("b")

    mapped = api.StateGraph(RouteState)
    for name in ("a", "b"):
        mapped.add_node(name, logger(counts, name))
        mapped.set_finish_point(name)
    mapped.set_conditional_entry_point(lambda s: s["route"], {"x": "a", "y": "b", "z": api.END})

    fan = api.StateGraph(RouteState)
    for name in ("a", "b"):
        fan.add_node(name, logger(counts, name))
    fan.set_conditional_entry_point(lambda s: ["b", "a"])
    return {
        "plain": plain.compile().invoke({"log": [], "route": ""}),
        "mapped": {r: mapped.compile().invoke({"log": [], "route": r}) for r in "xyz"},
        "fan": fan.compile().invoke({"log": [], "route": ""}),
        "counts": counts.as_dict(),
    }


def scenario_command_goto_list_with_sends(api, tmp_path):
    counts = Counts()

    def route(state):
        counts.hit("route")
        return api.Command(
            update={"log": ["route"]},
            goto=[
                "b",
                api.Send("c", {"log": ["payload"], "route": "first"}),
                api.Send("c", {"log": [], "route": "second"}),
                api.END,
            ],
        )

    def c(state):
        counts.hit("c")
        return {"log": [f"c:{state['route']}:{len(state['log'])}"]}

    builder = api.StateGraph(RouteState)
    builder.add_node("route", route)
    builder.add_node("b", logger(counts, "b"))
    builder.add_node("c", c)
    builder.add_node("after", logger(counts, "after"))
    builder.add_edge(api.START, "route")
    builder.add_edge("b", "after")
    builder.add_edge("c", "after")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    return {
        "steps": stream_steps(graph, {"log": [], "route": ""}, thread()),
        "history": history(graph, thread()),
        "counts": counts.as_dict(),
    }


def scenario_recursion_limit_boundary(api, tmp_path):
    # A chain of 3 nodes needs recursion_limit 4: at 3, LangGraph runs all three nodes and
    # still raises. A resumed run gets a fresh budget.
    counts = Counts()
    observations: dict[Any, Any] = {}
    for limit in (2, 3, 4):
        graph = chain_builder(api, counts).compile(checkpointer=api.InMemorySaver())
        config = thread(str(limit)) | {"recursion_limit": limit}
        observations[limit] = {
            "invoke": outcome(lambda: graph.invoke({"log": []}, config)),  # noqa: B023
            "state": snapshot(graph, config),
        }
    graph = chain_builder(api, counts, "wxyz").compile(
        checkpointer=api.InMemorySaver(), interrupt_before=["y"]
    )
    config = thread("resumed") | {"recursion_limit": 2}
    observations["resumed"] = [
        outcome(lambda: graph.invoke({"log": []}, config)),
        outcome(lambda: graph.invoke(None, config)),
        snapshot(graph, config),
    ]
    observations["counts"] = counts.as_dict()
    return observations
