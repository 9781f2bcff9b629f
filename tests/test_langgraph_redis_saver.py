"""celerygraph_langgraph.LangGraphRedisSaver: LangGraph's own conformance suite, and a real
LangGraph graph that interrupts and resumes on it, all on a private Redis."""

from __future__ import annotations

import asyncio
import operator
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, TypedDict

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from celerygraph_langgraph import LangGraphRedisSaver
from celerygraph_langgraph.list_deltas import base_of
from graphdef.checkpoint.keys import b64
from tests.redis_server import RedisServer, redis_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as running:
        yield running


def test_conformance_every_capability_passes(server: RedisServer) -> None:
    @checkpointer_test(name="LangGraphRedisSaver")
    async def factory() -> AsyncIterator[LangGraphRedisSaver]:
        server.flush()
        yield LangGraphRedisSaver(server.client())

    report = asyncio.run(validate(factory))
    failures = {
        name: result.failures for name, result in report.results.items() if not result.passed
    }
    assert failures == {}
    assert set(report.results) == {cap.value for cap in ALL_CAPABILITIES}
    assert all(result.detected for result in report.results.values())


class State(TypedDict):
    log: Annotated[list[str], operator.add]


def _approval_graph(saver: LangGraphRedisSaver):  # type: ignore[no-untyped-def]
    def draft(state: State) -> State:
        return {"log": ["draft"]}

    def approve(state: State) -> State:
        answer = interrupt({"question": "ship it?"})
        return {"log": [f"approved:{answer}"]}

    builder = StateGraph(State)
    builder.add_node("draft", draft)
    builder.add_node("approve", approve)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "approve")
    builder.add_edge("approve", END)
    return builder.compile(checkpointer=saver)


def test_langgraph_graph_interrupts_resumes_and_keeps_history(server: RedisServer) -> None:
    server.flush()
    graph = _approval_graph(LangGraphRedisSaver(server.client()))
    config = {"configurable": {"thread_id": "t-1"}}

    first = graph.invoke({"log": ["start"]}, config)
    assert first["log"] == ["start", "draft"]
    assert first["__interrupt__"][0].value == {"question": "ship it?"}
    assert graph.get_state(config).next == ("approve",)

    done = graph.invoke(Command(resume="yes"), config)
    assert done["log"] == ["start", "draft", "approved:yes"]
    assert graph.get_state(config).next == ()

    history = list(graph.get_state_history(config))
    assert [s.values.get("log", []) for s in history][:2] == [
        ["start", "draft", "approved:yes"],
        ["start", "draft"],
    ]
    assert history[-1].metadata["source"] == "input"


def test_langgraph_graph_async_and_storage_grows_with_what_changed(server: RedisServer) -> None:
    server.flush()
    client = server.client()
    graph = _approval_graph(LangGraphRedisSaver(client))
    config = {"configurable": {"thread_id": "t-async"}}

    async def run() -> list[str]:
        await graph.ainvoke({"log": ["start"]}, config)
        done = await graph.ainvoke(Command(resume="ok"), config)
        return done["log"]

    assert asyncio.run(run()) == ["start", "draft", "approved:ok"]
    # Each version of a channel is stored once, however many checkpoints read it.
    saver = LangGraphRedisSaver(client)
    read = [
        f"{version}:{channel}"
        for found in saver.list(config)
        for channel, version in found.checkpoint["channel_versions"].items()
    ]
    fields = [f.decode() for key in client.scan_iter(match="cg:{t-async}:lg:blob:*")
              for f in client.hkeys(key)]
    assert sorted(fields) == sorted(set(read))
    assert len(fields) < len(read)


def test_values_never_pickled_and_thread_keys_share_one_hash_tag(server: RedisServer) -> None:
    server.flush()
    client = server.client()
    graph = _approval_graph(LangGraphRedisSaver(client))
    graph.invoke({"log": ["x"]}, {"configurable": {"thread_id": "tag-me"}})
    keys = [k.decode() for k in client.scan_iter(match="*tag-me*")]
    assert keys and all(k.startswith("cg:{tag-me}:lg:") for k in keys)
    for key in keys:
        if client.type(key) == b"hash":
            for value in client.hvals(key):
                assert not value.startswith(b"\x80")  # pickle's protocol marker


_READ_IN_A_FRESH_PROCESS = """
import sys
from celerygraph_langgraph import LangGraphRedisSaver
from graphdef.checkpoint.keys import b64
saver = LangGraphRedisSaver.from_url(sys.argv[1])
found = saver.get_tuple({"configurable": {"thread_id": "chat", "checkpoint_ns": ""}})
messages = found.checkpoint["channel_values"]["messages"]
print(type(messages[-1]).__name__, messages[-1].content)
"""


def test_a_fresh_process_reads_langchain_messages_a_graph_stored(server: RedisServer) -> None:
    """Resuming is often done by another process than the one that wrote the thread: it must
    decode LangChain's messages without having encoded any."""
    from langchain_core.messages import AIMessage
    from langgraph.graph import MessagesState

    server.flush()

    def reply(state: MessagesState) -> dict[str, list[AIMessage]]:
        return {"messages": [AIMessage("hello back")]}

    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    graph = builder.compile(checkpointer=LangGraphRedisSaver.from_url(server.url))
    graph.invoke({"messages": [("user", "hello")]}, {"configurable": {"thread_id": "chat"}})

    out = subprocess.run(
        [sys.executable, "-c", _READ_IN_A_FRESH_PROCESS, server.url],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    assert out.stdout.strip() == "AIMessage hello back"


def test_delete_thread_leaves_no_key_and_no_run_index_entry(server: RedisServer) -> None:
    server.flush()
    client = server.client()
    saver = LangGraphRedisSaver(client)
    graph = _approval_graph(saver)
    config = {"configurable": {"thread_id": "{odd}~id", "run_id": "run-1"}}
    graph.invoke({"log": ["x"]}, config)
    assert client.smembers("cg:lg:run:{" + b64("run-1") + "}") == {b"{odd}~id"}

    saver.copy_thread("{odd}~id", "copy")
    assert graph.get_state({"configurable": {"thread_id": "copy"}}).next == ("approve",)
    saver.delete_thread("{odd}~id")
    saver.delete_thread("copy")
    assert client.keys("*") == []


def test_prune_and_delete_for_runs_drop_the_blobs_nothing_reads(server: RedisServer) -> None:
    server.flush()
    client = server.client()
    saver = LangGraphRedisSaver(client)
    graph = _approval_graph(saver)
    for run in ("run-a", "run-b"):
        config = {"configurable": {"thread_id": run, "run_id": run}}
        graph.invoke({"log": ["x"]}, config)
        graph.invoke(Command(resume="y"), config)

    def stored(thread: str) -> set[str]:
        return {f.decode() for key in client.scan_iter(match=f"cg:{{{thread}}}:lg:blob:*")
                for f in client.hkeys(key)}

    def with_bases(thread: str, fields: set[str]) -> set[str]:
        """`fields` and every blob their list deltas are built on (`list_deltas`)."""
        (key,) = client.scan_iter(match=f"cg:{{{thread}}}:lg:blob:*")
        out, pending = set(), list(fields)
        while pending:
            field = pending.pop()
            out.add(field)
            base = base_of(client.hget(key, field) or b"")
            if base is not None and base not in out:
                pending.append(base)
        return out

    saver.prune(["run-a"], strategy="keep_latest")
    (latest,) = list(saver.list({"configurable": {"thread_id": "run-a"}}))
    read = {f"{v}:{c}" for c, v in latest.checkpoint["channel_versions"].items()}
    assert stored("run-a") == with_bases("run-a", read)
    assert with_bases("run-a", read) != read  # the grown log is stored as deltas
    assert graph.get_state({"configurable": {"thread_id": "run-a"}}).values["log"] == [
        "x", "draft", "approved:y"
    ]

    saver.delete_for_runs(["run-b"])
    assert list(saver.list({"configurable": {"thread_id": "run-b"}})) == []
    assert stored("run-b") == set()


def _appender(saver: LangGraphRedisSaver):  # type: ignore[no-untyped-def]
    """A node that loops on itself, appending a kilobyte each step, `steps` times."""

    class Grow(TypedDict):
        log: Annotated[list[str], operator.add]
        steps: int

    def grow(state: Grow) -> dict[str, object]:
        return {"log": [f"{len(state['log']):04}" + "x" * 1020]}

    builder = StateGraph(Grow)
    builder.add_node("grow", grow)
    builder.add_edge(START, "grow")
    builder.add_conditional_edges(
        "grow", lambda s: "grow" if len(s["log"]) < s["steps"] else END)
    return builder.compile(checkpointer=saver)


def blob_bytes(client, thread: str) -> int:  # type: ignore[no-untyped-def]
    return sum(len(v) for key in client.scan_iter(match=f"cg:{{{thread}}}:lg:blob:*")
               for v in client.hvals(key))


def test_a_growing_list_is_stored_as_the_items_appended(server: RedisServer) -> None:
    server.flush()
    client = server.client()
    graph = _appender(LangGraphRedisSaver(client))
    config = {"configurable": {"thread_id": "grow"}}
    final = graph.invoke({"log": [], "steps": 60}, config)["log"]
    assert len(final) == 60
    # Whole copies at every step would be 60 * 30 KB on average; deltas store each kB once
    # (plus the task writes, stored apart).
    assert blob_bytes(client, "grow") < 3 * 1024 * 60
    fresh = _appender(LangGraphRedisSaver(client))  # a process that never wrote the thread
    history = list(fresh.get_state_history(config))
    assert history[0].values["log"] == final
    assert [len(s.values.get("log", [])) for s in history] == sorted(
        (len(s.values.get("log", [])) for s in history), reverse=True)
    assert all(s.values["log"] == final[:len(s.values["log"])] for s in history
               if "log" in s.values)


def test_a_delta_never_points_at_a_deleted_base(server: RedisServer) -> None:
    server.flush()
    client = server.client()
    writer = LangGraphRedisSaver(client)
    graph = _appender(writer)
    config = {"configurable": {"thread_id": "stale"}}
    first = graph.invoke({"log": [], "steps": 5}, config)["log"]
    # Another process deletes the thread; this one still remembers what it stored there.
    LangGraphRedisSaver(client).delete_thread("stale")
    again = graph.invoke({"log": first, "steps": 7}, config)["log"]
    assert len(again) == 7
    assert _appender(LangGraphRedisSaver(client)).get_state(config).values["log"] == again
