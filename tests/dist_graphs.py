"""Graphs the distributed tests run on real worker processes (CELERYGRAPH_GRAPHS=tests.dist_graphs).

Every node counts its runs in Redis, keyed by thread and task, so a test can tell which
tasks ran how often across processes, including processes it killed.
"""

from __future__ import annotations

import asyncio
import operator
import os
import time
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

import redis

from graphdef import (
    END,
    START,
    BaseStore,
    CachePolicy,
    Runtime,
    Send,
    StateGraph,
    get_config,
    get_store,
    interrupt,
)
from graphdef.cache.redis import RedisCache
from graphdef.redis_client import connect
from graphdef.store.redis import RedisStore

_client: redis.Redis | None = None


def counter() -> redis.Redis:
    global _client
    if _client is None:
        _client = connect(os.environ["CELERYGRAPH_STORE_URL"])
    return _client


def count(name: str) -> None:
    """Count one run of the current task: `runs:<thread>` hash, field `<node>|<task ns>`."""
    conf = get_config()["configurable"]
    counter().hincrby(f"runs:{conf['thread_id']}", f"{name}|{conf['checkpoint_ns']}", 1)
    counter().rpush(f"started:{conf['thread_id']}", f"{name}|{os.getpid()}|{time.time()}")


class Log(TypedDict, total=False):
    log: Annotated[list, operator.add]
    sleep: float
    n: int


def step(name: str) -> Any:
    def node(state: Log) -> dict[str, Any]:
        count(name)
        return {"log": [name]}

    node.__name__ = name
    return node


def slow(state: Log) -> dict[str, Any]:
    count("slow")
    time.sleep(state.get("sleep", 0.0))
    return {"log": ["slow"]}


def _chain() -> Any:
    builder = StateGraph(Log)
    builder.add_node("a", step("a"))
    builder.add_node("b", step("b"))
    builder.add_node("slow", slow)
    builder.add_node("d", step("d"))
    builder.add_edge(START, "a")
    builder.add_edge(START, "b")
    builder.add_edge("a", "slow")
    builder.add_edge("b", "slow")
    builder.add_edge("slow", "d")
    builder.add_edge("d", END)
    return builder.compile()


chain = _chain()


def work(item: dict[str, Any]) -> dict[str, Any]:
    count("work")
    time.sleep(item.get("sleep", 0.0))
    return {"log": [item["i"]]}


def _fanout() -> Any:
    builder = StateGraph(Log)
    builder.add_node("work", work)
    builder.add_node("total", step("total"))
    builder.add_conditional_edges(
        START,
        lambda s: [Send("work", {"i": i, "sleep": s.get("sleep", 0.0)}) for i in range(s["n"])],
        ["work"],
    )
    builder.add_edge("work", "total")
    builder.add_edge("total", END)
    return builder.compile()


fanout = _fanout()


def ask(state: Log) -> dict[str, Any]:
    count("ask")
    answer = interrupt("approve?")
    return {"log": [f"answer:{answer}"]}


def _approval() -> Any:
    builder = StateGraph(Log)
    builder.add_node("prepare", step("prepare"))
    builder.add_node("ask", ask)
    builder.add_node("finish", step("finish"))
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "ask")
    builder.add_edge("ask", "finish")
    return builder.compile()


approval = _approval()


def boom(state: Log) -> dict[str, Any]:
    count("boom")
    raise ValueError("boom went the node")


def _failing() -> Any:
    builder = StateGraph(Log)
    builder.add_node("ok", step("ok"))
    builder.add_node("boom", boom)
    builder.add_edge(START, "ok")
    builder.add_edge(START, "boom")
    return builder.compile()


failing = _failing()


def _fails_in_place() -> Any:
    """`boom` is the lone next step after `ok`: it runs in place, in `ok`'s message."""
    builder = StateGraph(Log)
    builder.add_node("ok", step("ok"))
    builder.add_node("boom", boom)
    builder.add_edge(START, "ok")
    builder.add_edge("ok", "boom")
    return builder.compile()


fails_in_place = _fails_in_place()


def _single() -> Any:
    builder = StateGraph(Log)
    builder.add_node("one", step("one"))
    builder.add_edge(START, "one")
    return builder.compile()


single = _single()


def bloat(state: Log) -> dict[str, Any]:
    count("bloat")
    return {"log": ["x" * int(state.get("n", 0))]}


def _bloated() -> Any:
    builder = StateGraph(Log)
    builder.add_node("bloat", bloat)
    builder.add_edge(START, "bloat")
    return builder.compile()


bloated = _bloated()


# The store workers' nodes use: a RedisStore on the cluster's Redis, as a deployment would
# configure it. Nothing touches it at import, so importing this module without the variable
# set (as a test process may) stays harmless.
STORE = RedisStore(os.environ.get("CELERYGRAPH_STORE_URL", "redis://unset.invalid:1/0"),
                   prefix="test-kv")


def remember(state: Log, store: BaseStore) -> dict[str, Any]:
    count("remember")
    store.put(("visits", get_config()["configurable"]["thread_id"]), "n", {"n": state["n"]})
    return {"log": ["remembered"]}


def recall(state: Log) -> dict[str, Any]:
    found = get_store().search(("visits",), filter={"n": {"$gte": 2}})
    return {"log": [[item.namespace[1] for item in found]]}


def _remembering() -> Any:
    builder = StateGraph(Log)
    builder.add_node("remember", remember)
    builder.add_node("recall", recall)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "recall")
    return builder.compile(store=STORE)


remembering = _remembering()


# ---- async nodes and routes: a worker runs them on an event loop of its own ----------------


async def fetch(state: Log) -> dict[str, Any]:
    count("fetch")
    await asyncio.sleep(0.01)
    return {"log": ["fetched"], "n": state.get("n", 0) + 1}


async def more_or_done(state: Log) -> str:
    await asyncio.sleep(0)
    return "fetch" if state["n"] < 3 else "wrap"


def wrap(state: Log) -> dict[str, Any]:
    count("wrap")
    return {"log": ["wrapped"]}


def _asynchronous() -> Any:
    builder = StateGraph(Log)
    builder.add_node("fetch", fetch)
    builder.add_node("wrap", wrap)
    builder.add_edge(START, "fetch")
    builder.add_conditional_edges("fetch", more_or_done, ["fetch", "wrap"])
    builder.add_edge("wrap", END)
    return builder.compile()


asynchronous = _asynchronous()


@dataclass
class Caller:
    """The run context of `personal`: who the run is for."""

    user: str


# The node cache workers share, on the cluster's Redis (nothing touches it at import).
CACHE = RedisCache(os.environ.get("CELERYGRAPH_STORE_URL", "redis://unset.invalid:1/0"),
                   prefix="test-cache")


def expensive(state: Log, runtime: Runtime[Caller]) -> dict[str, Any]:
    count("expensive")
    return {"log": [f"expensive {state['n']}"]}


def greet(state: Log, runtime: Runtime[Caller]) -> dict[str, Any]:
    count("greet")
    return {"log": [f"for {runtime.context.user}"]}


def _personal() -> Any:
    builder = StateGraph(Log, context_schema=Caller)
    builder.add_node("expensive", expensive,
                     cache_policy=CachePolicy(key_func=lambda s: str(s["n"])))
    builder.add_node("greet", greet)
    builder.add_edge(START, "expensive")
    builder.add_edge("expensive", "greet")
    return builder.compile(cache=CACHE)


personal = _personal()


def talk(state: Log, writer: Any) -> dict[str, Any]:
    """Streams `n` custom chunks, `sleep` seconds apart: a node to kill mid-stream."""
    count("talk")
    for i in range(state.get("n", 0)):
        writer({"said": i})
        time.sleep(state.get("sleep", 0.0))
    return {"log": ["talked"]}


def _talker() -> Any:
    builder = StateGraph(Log)
    builder.add_node("intro", step("intro"))
    builder.add_node("talk", talk)
    builder.add_edge(START, "intro")
    builder.add_edge("intro", "talk")
    return builder.compile()


talker = _talker()


def straight_builder(length: int) -> Any:
    """`s0` -> `s1` -> ... : one node a step, every step kept and run in place."""
    builder = StateGraph(Log)
    names = [f"s{i}" for i in range(length)]
    for name in names:
        builder.add_node(name, step(name))
    for first, then in zip([START, *names], [*names, END], strict=True):
        builder.add_edge(first, then)
    return builder


straight = straight_builder(8).compile()
