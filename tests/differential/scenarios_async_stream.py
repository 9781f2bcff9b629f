"""Scenarios for the async API and every stream mode: async nodes, edges and tasks, batches,
the async state API; `custom`, `messages`, `tasks`, `checkpoints` and `debug` payloads,
alone and in lists, with subgraph namespaces.

Payloads carry ids and timestamps that legitimately differ; ``scrub`` replaces every
uuid-shaped id with ``<id>`` and drops timestamps, so what is compared is the shape and
every other value.
"""

from __future__ import annotations

import asyncio
import operator
import re
import threading
import time
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from .observe import Counts, history, outcome, snapshot, stream_steps
from .scenarios_graph import LogState, chain_builder, logger, thread

UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b[0-9a-f]{32}\b"
)

# Not run on the distributed backend: the async API and stream modes are in-process here
# (the distributed backend's streaming is another issue).
NOT_DISTRIBUTED = (
    "the async API and stream modes beyond values/updates are in-process only; the "
    "distributed backend's streaming is a separate issue"
)


class MessagesLog(TypedDict):
    messages: Annotated[list, operator.add]
    log: Annotated[list, operator.add]


# Payload keys left out of comparisons: timestamps.
SCRUBBED_KEYS = frozenset(("timestamp",))


def scrub(value: Any) -> Any:
    """``value`` with ids replaced by ``<id>``, timestamps dropped, exceptions as text."""
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items() if k not in SCRUBBED_KEYS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub(v) for v in value)
    if isinstance(value, str):
        return UUID.sub("<id>", value)
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if hasattr(value, "content") and hasattr(value, "type"):
        return {"message": value.type, "content": value.content, "has_id": bool(value.id)}
    return value


def names(namespace: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(part.split(":")[0] for part in namespace)


def fake_model(text: str) -> GenericFakeChatModel:
    """A chat model that streams ``text`` token by token (split on spaces)."""
    return GenericFakeChatModel(messages=iter([AIMessage(content=text)]))


def async_logger(counts: Counts, name: str):
    async def node(state):
        counts.hit(name)
        await asyncio.sleep(0)
        return {"log": [name]}

    return node


def async_chain(api, counts: Counts, names_: str = "abc"):
    builder = api.StateGraph(LogState)
    for name in names_:
        builder.add_node(name, async_logger(counts, name))
    builder.add_edge(api.START, names_[0])
    for source, target in zip(names_, names_[1:], strict=False):
        builder.add_edge(source, target)
    return builder


async def collect(stream) -> list:
    return [chunk async for chunk in stream]


# ---- async API --------------------------------------------------------------------------------


def scenario_async_ainvoke_chain(api, tmp_path):
    counts = Counts()
    graph = async_chain(api, counts).compile(checkpointer=api.InMemorySaver())
    config = thread()
    result = asyncio.run(graph.ainvoke({"log": ["in"]}, config))
    return {
        "result": result,
        "state": snapshot(graph, config),
        "history": history(graph, config),
        "counts": counts.as_dict(),
    }


def scenario_async_astream_updates_values(api, tmp_path):
    counts = Counts()
    graph = async_chain(api, counts).compile()
    chunks = asyncio.run(collect(graph.astream({"log": []}, stream_mode=["updates", "values"])))
    single = asyncio.run(collect(graph.astream({"log": []})))
    return {"chunks": chunks, "values": single, "counts": counts.as_dict()}


def scenario_async_parallel_nodes_run_concurrently(api, tmp_path):
    # Each branch waits until the other has started: only concurrent tasks finish.
    counts = Counts()
    started: dict[str, asyncio.Event] = {}

    def branch(name: str, other: str):
        async def node(state):
            counts.hit(name)
            started.setdefault(name, asyncio.Event()).set()
            try:
                await asyncio.wait_for(started.setdefault(other, asyncio.Event()).wait(), 5)
            except TimeoutError:
                return {"log": [f"{name} ran alone"]}
            return {"log": [f"{name} saw {other}"]}

        return node

    builder = api.StateGraph(LogState)
    builder.add_node("left", branch("left", "right"))
    builder.add_node("right", branch("right", "left"))
    builder.add_node("join", async_logger(counts, "join"))
    builder.add_edge(api.START, "left")
    builder.add_edge(api.START, "right")
    builder.add_edge(["left", "right"], "join")
    graph = builder.compile()
    return {"result": asyncio.run(graph.ainvoke({"log": []})), "counts": counts.as_dict()}


def scenario_async_conditional_edge(api, tmp_path):
    counts = Counts()

    async def route(state):
        await asyncio.sleep(0)
        return "right" if len(state["log"]) > 1 else "left"

    builder = api.StateGraph(LogState)
    for name in ("decide", "left", "right"):
        builder.add_node(name, async_logger(counts, name))
    builder.add_edge(api.START, "decide")
    builder.add_conditional_edges("decide", route, ["left", "right"])
    graph = builder.compile()
    return {
        "short": asyncio.run(graph.ainvoke({"log": []})),
        "long": asyncio.run(graph.ainvoke({"log": ["x"]})),
        "sync_invoke": outcome(lambda: graph.invoke({"log": []})),
        "counts": counts.as_dict(),
    }


def scenario_async_node_under_sync_invoke(api, tmp_path):
    counts = Counts()
    graph = async_chain(api, counts, "ab").compile()
    sync_graph = chain_builder(api, counts, "xy").compile()
    return {
        "invoke": outcome(lambda: graph.invoke({"log": []})),
        "stream": outcome(lambda: list(graph.stream({"log": []}, stream_mode="updates"))),
        "sync_nodes_under_ainvoke": asyncio.run(sync_graph.ainvoke({"log": []})),
        "counts": counts.as_dict(),
    }


def scenario_async_abatch_and_batch(api, tmp_path):
    counts = Counts()

    def maybe_fail(state):
        counts.hit("maybe_fail")
        if "boom" in state["log"]:
            raise ValueError("boom")
        return {"log": ["ok"]}

    builder = api.StateGraph(LogState)
    builder.add_node("maybe_fail", maybe_fail)
    builder.add_edge(api.START, "maybe_fail")
    graph = builder.compile()
    inputs = [{"log": ["a"]}, {"log": ["boom"]}, {"log": ["c"]}]
    batch = graph.batch(inputs, return_exceptions=True)
    abatch = asyncio.run(graph.abatch(inputs, return_exceptions=True))
    return {
        "batch": [scrub(item) for item in batch],
        "abatch": [scrub(item) for item in abatch],
        # One at a time, the failing input last, so every input runs before the error.
        "batch_raises": outcome(
            lambda: graph.batch(inputs[:2], {"max_concurrency": 1})),
        "abatch_ok": asyncio.run(graph.abatch([inputs[0], inputs[2]])),
        "counts": counts.as_dict(),
    }


def scenario_async_state_api(api, tmp_path):
    counts = Counts()
    graph = async_chain(api, counts).compile(
        checkpointer=api.InMemorySaver(), interrupt_before=["c"]
    )
    config = thread()

    async def run():
        first = await graph.ainvoke({"log": []}, config)
        state = await graph.aget_state(config)
        await graph.aupdate_state(config, {"log": ["edited"]})
        after_update = await graph.aget_state(config)
        resumed = await graph.ainvoke(None, config)
        steps = [
            (s.metadata["source"], s.metadata["step"], tuple(s.next), s.values)
            async for s in graph.aget_state_history(config)
        ]
        return {
            "first": first,
            "paused_next": tuple(state.next),
            "after_update": (after_update.values, tuple(after_update.next)),
            "resumed": resumed,
            "history": steps,
        }

    return {**asyncio.run(run()), "counts": counts.as_dict()}


def scenario_async_interrupt_and_resume(api, tmp_path):
    counts = Counts()

    async def ask(state):
        counts.hit("ask")
        return {"log": [api.interrupt("ok?")]}

    builder = api.StateGraph(LogState)
    builder.add_node("ask", ask)
    builder.add_node("after", logger(counts, "after"))
    builder.add_edge(api.START, "ask")
    builder.add_edge("ask", "after")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    config = thread()

    async def run():
        first = await graph.ainvoke({"log": []}, config)
        chunks = await collect(graph.astream(api.Command(resume="yes"), config,
                                             stream_mode="updates"))
        return {"first": first, "resumed": chunks}

    return {**asyncio.run(run()), "state": snapshot(graph, config), "counts": counts.as_dict()}


def scenario_async_functional_api(api, tmp_path):
    counts = Counts()
    started: dict[int, asyncio.Event] = {}

    @api.task
    async def square(x):
        counts.hit(f"square {x}")
        started.setdefault(x, asyncio.Event()).set()
        other = 2 if x == 1 else 1
        try:
            await asyncio.wait_for(started.setdefault(other, asyncio.Event()).wait(), 5)
        except TimeoutError:
            return -1
        return x * x

    @api.task
    def double(x):
        counts.hit(f"double {x}")
        return 2 * x

    @api.entrypoint(checkpointer=api.InMemorySaver())
    async def main(items, *, previous=None):
        counts.hit("main")
        squares = await asyncio.gather(*(square(x) for x in items))
        doubled = await double(sum(squares))
        answer = api.interrupt({"total": doubled})
        return {"squares": squares, "doubled": doubled, "answer": answer, "previous": previous}

    config = thread()

    async def run():
        first = await main.ainvoke([1, 2], config)
        resumed = await main.ainvoke(api.Command(resume="fine"), config)
        return {"first": first, "resumed": resumed}

    return {
        **asyncio.run(run()),
        "sync_invoke": outcome(lambda: main.invoke([1, 2], thread("sync"))),
        "history": [entry[:3] for entry in history(main, config)],
        "counts": counts.as_dict(),
    }


def scenario_async_subgraph_stream(api, tmp_path):
    counts = Counts()
    sub = async_chain(api, counts, "st").compile()
    builder = api.StateGraph(LogState)
    builder.add_node("a", async_logger(counts, "a"))
    builder.add_node("sub", sub)
    builder.add_edge(api.START, "a")
    builder.add_edge("a", "sub")
    graph = builder.compile()
    chunks = asyncio.run(collect(graph.astream(
        {"log": []}, stream_mode=["updates", "values"], subgraphs=True)))
    return {
        "chunks": [(names(ns), mode, chunk) for ns, mode, chunk in chunks],
        "counts": counts.as_dict(),
    }


def scenario_with_config_binds_defaults(api, tmp_path):
    counts = Counts()
    graph = chain_builder(api, counts, "ab").compile(checkpointer=api.InMemorySaver())
    bound = graph.with_config({"configurable": {"thread_id": "bound"}})
    bound.invoke({"log": ["x"]})
    return {
        "bound_state": snapshot(graph, thread("bound")),
        "again": bound.invoke({"log": ["y"]}),
        "recursion": outcome(
            lambda: chain_builder(api, counts, "abc").compile().with_config(
                recursion_limit=2).invoke({"log": []})
        ),
        "counts": counts.as_dict(),
    }


# ---- stream modes -----------------------------------------------------------------------------


def scenario_stream_custom_from_nodes(api, tmp_path):
    counts = Counts()

    def with_writer(state, writer):
        counts.hit("with_writer")
        writer({"progress": 50})
        return {"log": ["w"]}

    def with_getter(state):
        counts.hit("with_getter")
        api.get_stream_writer()("plain text")
        return {"log": ["g"]}

    builder = api.StateGraph(LogState)
    builder.add_node("with_writer", with_writer)
    builder.add_node("with_getter", with_getter)
    builder.add_edge(api.START, "with_writer")
    builder.add_edge("with_writer", "with_getter")
    graph = builder.compile()
    return {
        "custom": list(graph.stream({"log": []}, stream_mode="custom")),
        "with_updates": list(graph.stream({"log": []}, stream_mode=["custom", "updates"])),
        "not_asked": graph.invoke({"log": []}),
        "counts": counts.as_dict(),
    }


def scenario_stream_custom_from_task(api, tmp_path):
    counts = Counts()

    @api.task
    def work(x):
        counts.hit("work")
        api.get_stream_writer()({"working on": x})
        return x + 1

    @api.entrypoint(checkpointer=api.InMemorySaver())
    def main(x, writer):
        counts.hit("main")
        writer("started")
        return work(x).result()

    chunks = main.stream(1, thread("a"), stream_mode=["custom", "updates"], subgraphs=True)
    plain = main.stream(1, thread("b"), stream_mode="custom")
    return {
        "chunks": [(names(ns), mode, chunk) for ns, mode, chunk in chunks],
        "plain": list(plain),
        "counts": counts.as_dict(),
    }


def scenario_stream_custom_in_subgraph(api, tmp_path):
    counts = Counts()

    def inner(state):
        counts.hit("inner")
        api.get_stream_writer()({"inner": True})
        return {"log": ["inner"]}

    sub_builder = api.StateGraph(LogState)
    sub_builder.add_node("inner", inner)
    sub_builder.add_edge(api.START, "inner")
    builder = api.StateGraph(LogState)
    builder.add_node("sub", sub_builder.compile())
    builder.add_edge(api.START, "sub")
    graph = builder.compile()
    return {
        "without_subgraphs": list(graph.stream({"log": []}, stream_mode="custom")),
        "with_subgraphs": [
            (names(ns), chunk)
            for ns, chunk in graph.stream({"log": []}, stream_mode="custom", subgraphs=True)
        ],
        "counts": counts.as_dict(),
    }


def messages_graph(api, counts: Counts, text: str = "hello big world"):
    model = fake_model(text)

    def call_model(state):
        counts.hit("call_model")
        reply = model.invoke(state["messages"])
        return {"messages": [reply], "log": ["called"]}

    builder = api.StateGraph(MessagesLog)
    builder.add_node("call_model", call_model)
    builder.add_edge(api.START, "call_model")
    return builder


def scenario_stream_messages_tokens(api, tmp_path):
    counts = Counts()
    graph = messages_graph(api, counts).compile(checkpointer=api.InMemorySaver())
    chunks = graph.stream(
        {"messages": [("user", "hi")], "log": []}, thread(), stream_mode="messages"
    )
    return {"chunks": scrub(list(chunks)), "counts": counts.as_dict()}


def scenario_stream_messages_node_output(api, tmp_path):
    counts = Counts()

    def reply(state):
        counts.hit("reply")
        return {"messages": [AIMessage(content="done", id="reply-1")], "log": ["r"]}

    def echo(state):
        counts.hit("echo")
        return {"messages": state["messages"][-1:]}

    builder = api.StateGraph(MessagesLog)
    builder.add_node("reply", reply)
    builder.add_node("echo", echo)
    builder.add_edge(api.START, "reply")
    builder.add_edge("reply", "echo")
    graph = builder.compile()
    chunks = graph.stream(
        {"messages": [AIMessage(content="input", id="in-1")], "log": []},
        {"metadata": {"user_key": "u"}},
        stream_mode="messages",
    )
    return {"chunks": scrub(list(chunks)), "counts": counts.as_dict()}


def scenario_stream_messages_in_subgraph(api, tmp_path):
    counts = Counts()
    sub = messages_graph(api, counts, "from the subgraph").compile()
    builder = api.StateGraph(MessagesLog)
    builder.add_node("outer", sub)
    builder.add_edge(api.START, "outer")
    graph = builder.compile()
    given = {"messages": [("user", "hi")], "log": []}
    with_sub = graph.stream(given, stream_mode=["messages", "updates"], subgraphs=True)
    sub2 = messages_graph(api, counts, "filtered out").compile()
    builder2 = api.StateGraph(MessagesLog)
    builder2.add_node("outer", sub2)
    builder2.add_edge(api.START, "outer")
    without_sub = builder2.compile().stream(given, stream_mode="messages")
    return {
        "with_subgraphs": scrub([(names(ns), mode, chunk) for ns, mode, chunk in with_sub]),
        "without_subgraphs": scrub(list(without_sub)),
        "counts": counts.as_dict(),
    }


def scenario_stream_messages_async_model(api, tmp_path):
    counts = Counts()
    model = fake_model("async tokens here")

    async def call_model(state):
        counts.hit("call_model")
        reply = await model.ainvoke(state["messages"])
        return {"messages": [reply]}

    builder = api.StateGraph(MessagesLog)
    builder.add_node("call_model", call_model)
    builder.add_edge(api.START, "call_model")
    graph = builder.compile()
    chunks = asyncio.run(collect(graph.astream(
        {"messages": [("user", "hi")], "log": []}, stream_mode=["messages", "values"])))
    return {"chunks": scrub(chunks), "counts": counts.as_dict()}


def scenario_stream_messages_arrive_while_model_runs(api, tmp_path):
    # The node returns only once the caller has received a token: tokens must reach the
    # caller while the node is still running, not after it returns.
    counts = Counts()
    seen_token = threading.Event()
    model = fake_model("one two three")

    def call_model(state):
        counts.hit("call_model")
        reply = model.invoke(state["messages"])
        live = seen_token.wait(timeout=10)
        return {"messages": [reply], "log": ["live" if live else "after the node"]}

    builder = api.StateGraph(MessagesLog)
    builder.add_node("call_model", call_model)
    builder.add_edge(api.START, "call_model")
    graph = builder.compile()
    received = []
    for mode, chunk in graph.stream(
        {"messages": [("user", "hi")], "log": []}, stream_mode=["messages", "values"]
    ):
        if mode == "messages":
            seen_token.set()
        received.append((mode, scrub(chunk)))
    return {"received": received, "counts": counts.as_dict()}


def scenario_stream_tasks_mode(api, tmp_path):
    counts = Counts()

    def fan_out(state):
        return [api.Send("work", {"log": [n]}) for n in (1, 2)]

    def ask(state):
        counts.hit("ask")
        return {"log": [api.interrupt("go?")]}

    builder = api.StateGraph(LogState)
    builder.add_node("start", logger(counts, "start"))
    builder.add_node("work", logger(counts, "work"))
    builder.add_node("ask", ask)
    builder.add_edge(api.START, "start")
    builder.add_conditional_edges("start", fan_out, ["work"])
    builder.add_edge("work", "ask")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    config = thread()
    first = scrub(list(graph.stream({"log": []}, config, stream_mode="tasks")))
    resumed = scrub(list(graph.stream(api.Command(resume="yes"), config, stream_mode="tasks")))
    return {
        "first": sorted(first, key=repr),
        "resumed": resumed,
        "counts": counts.as_dict(),
    }


def scenario_stream_checkpoints_mode(api, tmp_path):
    counts = Counts()
    sub = chain_builder(api, counts, ["s1"]).compile()

    def ask(state):
        counts.hit("ask")
        return {"log": [api.interrupt("go?")]}

    builder = api.StateGraph(LogState)
    builder.add_node("a", logger(counts, "a"))
    builder.add_node("sub", sub)
    builder.add_node("ask", ask)
    builder.add_edge(api.START, "a")
    builder.add_edge("a", "sub")
    builder.add_edge("sub", "ask")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    config = thread()
    first = list(graph.stream({"log": []}, config, stream_mode="checkpoints"))
    resumed = list(graph.stream(api.Command(resume="yes"), config, stream_mode="checkpoints"))
    no_saver = list(chain_builder(api, counts, "x").compile().stream(
        {"log": []}, stream_mode="checkpoints"))
    return {
        "first": scrub(first),
        "resumed": scrub(resumed),
        "no_saver": no_saver,
        "counts": counts.as_dict(),
    }


def scenario_stream_debug_mode(api, tmp_path):
    counts = Counts()
    graph = chain_builder(api, counts, "ab").compile(checkpointer=api.InMemorySaver())
    chunks = list(graph.stream({"log": []}, thread(), stream_mode="debug"))
    return {"chunks": scrub(chunks), "counts": counts.as_dict()}


def scenario_stream_every_mode_with_subgraphs(api, tmp_path):
    counts = Counts()
    model = fake_model("sub says hi")

    def inner(state):
        counts.hit("inner")
        api.get_stream_writer()("inner custom")
        reply = model.invoke(state["messages"])
        return {"messages": [reply], "log": ["inner"]}

    sub_builder = api.StateGraph(MessagesLog)
    sub_builder.add_node("inner", inner)
    sub_builder.add_edge(api.START, "inner")

    def first(state, writer):
        counts.hit("first")
        writer("outer custom")
        return {"log": ["first"]}

    builder = api.StateGraph(MessagesLog)
    builder.add_node("first", first)
    builder.add_node("sub", sub_builder.compile())
    builder.add_edge(api.START, "first")
    builder.add_edge("first", "sub")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    modes = ["values", "updates", "custom", "messages", "tasks", "checkpoints", "debug"]
    chunks = graph.stream(
        {"messages": [("user", "hi")], "log": []}, thread(), stream_mode=modes,
        subgraphs=True,
    )
    return {
        "chunks": scrub([(names(ns), mode, chunk) for ns, mode, chunk in chunks]),
        "counts": counts.as_dict(),
    }


def scenario_stream_failing_step_yields_siblings_first(api, tmp_path):
    counts = Counts()
    ok_done = threading.Event()

    def ok(state):
        counts.hit("ok")
        api.get_stream_writer()("ok wrote")
        ok_done.set()
        return {"log": ["ok"]}

    def bad(state):
        counts.hit("bad")
        ok_done.wait(timeout=10)
        time.sleep(0.1)  # lets ok's writes be saved first; not a measured duration
        raise ValueError("bad node")

    builder = api.StateGraph(LogState)
    builder.add_node("ok", ok)
    builder.add_node("bad", bad)
    builder.add_edge(api.START, "ok")
    builder.add_edge(api.START, "bad")
    graph = builder.compile()
    seen: list = []
    try:
        for chunk in graph.stream({"log": []}, stream_mode=["updates", "custom", "tasks"]):
            seen.append(scrub(chunk))
    except ValueError as error:
        seen.append(("raised", str(error)))
    finished = [c for c in seen if c[0] != "tasks" or "result" in c[1]]
    started = sorted((c for c in seen if c[0] == "tasks" and "result" not in c[1]), key=repr)
    return {"started": started, "then": finished, "counts": counts.as_dict()}


def scenario_stream_unknown_mode(api, tmp_path):
    counts = Counts()
    graph = chain_builder(api, counts, "a").compile()
    return {
        "unknown": outcome(lambda: list(graph.stream({"log": []}, stream_mode="bogus"))),
        "in_list": outcome(
            lambda: list(graph.stream({"log": []}, stream_mode=["values", "bogus"]))),
        "counts": counts.as_dict(),
    }


def scenario_node_config_metadata(api, tmp_path):
    counts = Counts()
    seen: dict[str, Any] = {}
    keys = ("langgraph_step", "langgraph_node", "langgraph_triggers", "langgraph_path",
            "langgraph_checkpoint_ns", "thread_id", "user_key")

    def record(name: str):
        def node(state, config):
            counts.hit(name)
            metadata = config["metadata"]
            seen[name] = scrub({k: metadata.get(k) for k in keys})
            return {"log": [name]}

        return node

    def fan_out(state):
        return [api.Send("sent", {"log": []})]

    builder = api.StateGraph(LogState)
    builder.add_node("pulled", record("pulled"))
    builder.add_node("sent", record("sent"))
    builder.add_edge(api.START, "pulled")
    builder.add_conditional_edges("pulled", fan_out, ["sent"])
    graph = builder.compile(checkpointer=api.InMemorySaver())
    graph.invoke({"log": []}, {**thread(), "metadata": {"user_key": "u"}})
    return {"metadata": seen, "counts": counts.as_dict()}


def scenario_stream_modes_in_steps(api, tmp_path):
    counts = Counts()
    graph = async_chain(api, counts, "ab").compile()
    return {
        "sync_over_async_graph": outcome(lambda: stream_steps(graph, {"log": []})),
        "counts": counts.as_dict(),
    }


def _peak_of_sends(api, work) -> Any:
    builder = api.StateGraph(LogState)
    builder.add_node("work", work)
    builder.add_conditional_edges(
        api.START, lambda s: [api.Send("work", {"log": [i]}) for i in range(6)], ["work"]
    )
    builder.add_edge("work", api.END)
    return builder.compile()


def scenario_max_concurrency_limits_a_steps_tasks(api, tmp_path):
    # Tasks pair up at a barrier, then hold their place a while: with the limit, never
    # more than two at once (and two do meet); without it, the pool's default.
    lock = threading.Lock()
    active, peak = [0], [0]

    def enter() -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])

    def leave() -> None:
        with lock:
            active[0] -= 1

    pairs = threading.Barrier(2, timeout=5)

    def work(state):
        enter()
        pairs.wait()
        time.sleep(0.05)
        leave()
        return {"log": state["log"]}

    slots = asyncio.Semaphore(6)

    async def awork(state):
        async with slots:
            enter()
            await asyncio.sleep(0.05)
            leave()
        return {"log": state["log"]}

    seen = {}
    for label, node, run in (
        ("sync", work, lambda g, c: g.invoke({"log": []}, c)),
        ("async", awork, lambda g, c: asyncio.run(g.ainvoke({"log": []}, c))),
    ):
        peak[0] = 0
        out = run(_peak_of_sends(api, node), {"max_concurrency": 2})
        seen[label] = (sorted(out["log"]), peak[0])
    peak[0] = 0
    asyncio.run(_peak_of_sends(api, awork).ainvoke({"log": []}))
    seen["async unlimited"] = peak[0]
    return seen
