"""Scenarios with a run `context` read through `Runtime`: nodes, routes, subgraphs, tasks,
entrypoints, `get_runtime()` and `context_schema` coercion."""

import operator
from dataclasses import dataclass
from typing import Annotated, TypedDict

from .observe import Counts, history, outcome
from .scenarios_graph import thread


@dataclass
class Ctx:
    user: str
    tier: str = "free"


class CtxDict(TypedDict):
    user: str


class Log(TypedDict):
    log: Annotated[list, operator.add]


def info(runtime):
    """What a `Runtime` shows that both implementations agree on (ids differ)."""
    execution = runtime.execution_info
    return {
        "context": runtime.context,
        "has_store": runtime.store is not None,
        "previous": runtime.previous,
        # The last part: a distributed run's thread ids carry a prefix of the test's.
        "thread_id": execution.thread_id and execution.thread_id.split("-")[-1],
        "ns_node": execution.checkpoint_ns.split(":")[0],
        "attempt": execution.node_attempt,
        "has_ids": bool(execution.task_id) and bool(execution.checkpoint_id),
        "writer_returns": runtime.stream_writer("ignored"),
    }


def scenario_runtime_context_in_nodes(api, tmp_path):
    store = api.InMemoryStore()

    def greet(state: Log, runtime: api.Runtime[Ctx]):
        return {"log": [f"hello {runtime.context.user} ({runtime.context.tier})",
                        info(runtime)]}

    def check(state: Log, *, runtime):  # keyword-only, unannotated: injected too
        return {"log": [api.get_runtime(Ctx).context == runtime.context]}

    builder = api.StateGraph(Log, context_schema=Ctx)
    builder.add_node("greet", greet)
    builder.add_node("check", check)
    builder.add_edge(api.START, "greet")
    builder.add_edge("greet", "check")
    graph = builder.compile(checkpointer=api.InMemorySaver(), store=store)
    return {
        "dict_coerced": graph.invoke({"log": []}, thread("a"), context={"user": "ada"}),
        "dataclass": graph.invoke({"log": []}, thread("b"),
                                  context=Ctx(user="bo", tier="pro")),
        "history": history(graph, thread("b")),
    }


def scenario_runtime_without_context_and_typed_dict_schema(api, tmp_path):
    seen = []

    def node(state: Log, runtime: api.Runtime):
        seen.append(runtime.context)
        return {"log": [runtime.context]}

    builder = api.StateGraph(Log, context_schema=CtxDict)
    builder.add_node("node", node)
    builder.add_edge(api.START, "node")
    graph = builder.compile()
    return {
        "none": graph.invoke({"log": []}),
        "typed_dict_stays_dict": graph.invoke({"log": []}, context={"user": "cy"}),
        "types": [type(c).__name__ for c in seen],
    }


def scenario_runtime_in_routes_and_retries(api, tmp_path):
    attempts = Counts()

    def flaky(state: Log, runtime: api.Runtime[Ctx]):
        if attempts.hit("flaky") < 3:
            raise ConnectionError("transient")
        return {"log": [f"flaky ok on attempt {runtime.execution_info.node_attempt}"]}

    def route(state: Log, runtime: api.Runtime[Ctx]):
        return "pro" if runtime.context.tier == "pro" else "free"

    builder = api.StateGraph(Log, context_schema=Ctx)
    builder.add_node("flaky", flaky,
                     retry_policy=api.RetryPolicy(initial_interval=0.01, jitter=False))
    builder.add_node("pro", lambda state: {"log": ["pro path"]})
    builder.add_node("free", lambda state: {"log": [f"free for {api.get_runtime().context.user}"]})
    builder.add_edge(api.START, "flaky")
    builder.add_conditional_edges("flaky", route, ["pro", "free"])
    graph = builder.compile()
    first = graph.invoke({"log": []}, context=Ctx("ann", "pro"))
    second = graph.invoke({"log": []}, context=Ctx("ben"))
    return {"first": first, "second": second, "attempts": attempts.as_dict()}


def scenario_runtime_context_reaches_subgraphs(api, tmp_path):
    def inner(state: Log, runtime: api.Runtime[Ctx]):
        return {"log": [f"inner sees {runtime.context.user}", info(runtime)["ns_node"]]}

    sub_builder = api.StateGraph(Log, context_schema=Ctx)
    sub_builder.add_node("inner", inner)
    sub_builder.add_edge(api.START, "inner")
    subgraph = sub_builder.compile()

    def calls_subgraph(state: Log):
        out = subgraph.invoke({"log": []})
        return {"log": ["called:"] + out["log"]}

    builder = api.StateGraph(Log, context_schema=Ctx)
    builder.add_node("as_node", subgraph)
    builder.add_node("calls_subgraph", calls_subgraph)
    builder.add_edge(api.START, "as_node")
    builder.add_edge("as_node", "calls_subgraph")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    return {"result": graph.invoke({"log": []}, thread(), context=Ctx("dee")),
            "history": history(graph, thread())}


def scenario_runtime_in_tasks_and_entrypoint(api, tmp_path):
    counts = Counts()

    @api.task
    def label(n, runtime):
        counts.hit("label")
        return f"{runtime.context.user}:{n}"

    @api.task
    def shout(text):
        return f"{text.upper()}!{api.get_runtime().context.tier}"

    @api.entrypoint(checkpointer=api.InMemorySaver(), context_schema=Ctx)
    def main(numbers, *, runtime: api.Runtime[Ctx]):
        counts.hit("main")
        labels = [label(n).result() for n in numbers]
        return {"labels": labels, "shout": shout(labels[0]).result(),
                "previous": runtime.previous, "info": info(runtime)}

    first = main.invoke([1, 2], thread(), context={"user": "eve", "tier": "gold"})
    second = main.invoke([3], thread(), context=Ctx("fay"))
    return {"first": first, "second": second, "counts": counts.as_dict()}


def scenario_runtime_context_on_resume(api, tmp_path):
    def ask(state: Log, runtime: api.Runtime[Ctx]):
        answer = api.interrupt(f"approve for {runtime.context.user}?")
        return {"log": [f"{answer} by {runtime.context.user}"]}

    builder = api.StateGraph(Log, context_schema=Ctx)
    builder.add_node("ask", ask)
    builder.add_edge(api.START, "ask")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    paused = graph.invoke({"log": []}, thread(), context=Ctx("gus"))
    resumed = graph.invoke(api.Command(resume="yes"), thread(), context=Ctx("hal"))
    return {"paused": paused, "resumed": resumed,
            "outside": outcome(lambda: api.get_runtime())}


def scenario_runtime_stream_writer_streams_custom(api, tmp_path):
    @api.task
    def step(n, runtime):
        runtime.stream_writer({"task": n})
        return n

    def node(state: Log, runtime: api.Runtime[Ctx]):
        runtime.stream_writer(f"node for {runtime.context.user}")
        return {"log": ["done"]}

    builder = api.StateGraph(Log, context_schema=Ctx)
    builder.add_node("node", node)
    builder.add_edge(api.START, "node")
    graph = builder.compile()

    @api.entrypoint(context_schema=Ctx)
    def main(n, *, runtime):
        runtime.stream_writer("main")
        return step(n).result()

    return {
        "graph": list(graph.stream({"log": []}, stream_mode=["custom", "updates"],
                                   context=Ctx("ivy"))),
        "entrypoint": list(main.stream(3, stream_mode="custom", context=Ctx("jo"))),
        "not_streamed": graph.invoke({"log": []}, context=Ctx("kim")),
    }
