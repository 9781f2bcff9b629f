"""celerygraph_langgraph.LangGraphRedisStore on real LangGraph, on a private Redis: our store
conformance suite on it, then again with every call made from inside a LangGraph node that
reaches the store with ``get_store()``; real graphs that share memory across threads, with
LangGraph's three ways into the store; LangGraph's embedder forms; and the items shared with
graphdef's RedisStore, which a celerygraph worker uses.

LangGraph publishes no store test suite (``langgraph-checkpoint-conformance`` covers
checkpointers only; its store tests live in its repository, for its own stores), so the
differential checks against its stores are in ``test_langgraph_store_differential.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import operator
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypedDict

import langgraph.store.base as langgraph_ops
import pytest
from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore, Item, SearchItem
from langgraph.store.memory import InMemoryStore

from celerygraph_langgraph import LangGraphRedisSaver, LangGraphRedisStore
from graphdef.store.redis import RedisStore
from tests.redis_server import RedisServer, redis_server
from tests.store_conformance import INDEX, MakeStore, StoreConformance, embed


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as running:
        yield running


def _raised(call: Callable[[], Any]) -> tuple[str, str]:
    try:
        call()
    except Exception as error:  # the error is the observation
        return type(error).__name__, str(error)
    raise AssertionError("no error raised")


class TestLangGraphRedisStore(StoreConformance):
    ops = langgraph_ops

    @staticmethod
    def calls(store: LangGraphRedisStore) -> Any:
        """What the suite calls: the store itself here."""
        return store

    @pytest.fixture
    def make_store(self, server: RedisServer) -> Iterator[MakeStore]:
        server.flush()
        made: list[LangGraphRedisStore] = []

        def make(**kwargs: Any) -> Any:
            made.append(LangGraphRedisStore(server.url, prefix=f"t{len(made)}", **kwargs))
            return self.calls(made[-1])

        yield make
        for store in made:
            store.close()

    def test_provider_string_embedder(self, make_store: MakeStore) -> None:
        """LangGraph's meaning: ``init_embeddings`` loads the provider (it needs the
        ``langchain`` package, absent here), with LangGraph's own error when it cannot."""
        index = {**INDEX, "embed": "openai:text-embedding-3-small"}
        assert _raised(lambda: make_store(index=index)) == _raised(
            lambda: InMemoryStore(index=index))  # type: ignore[arg-type]


class _State(TypedDict, total=False):
    call: tuple[str, tuple[Any, ...], dict[str, Any]]
    result: Any


class InGraph:
    """A store whose every method runs inside a LangGraph node, on the store the node gets
    from ``get_store()``: the suite then sees the store as LangGraph hands it to nodes."""

    def __init__(self, store: LangGraphRedisStore) -> None:
        def call(state: _State) -> _State:
            name, args, kwargs = state["call"]
            return {"result": getattr(get_store(), name)(*args, **kwargs)}

        async def acall(state: _State) -> _State:
            name, args, kwargs = state["call"]
            return {"result": await getattr(get_store(), name)(*args, **kwargs)}

        self._store = store
        self._sync, self._async = (_one_node_graph(node, store) for node in (call, acall))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if inspect.iscoroutinefunction(method):
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                done = await self._async.ainvoke({"call": (name, args, kwargs)})
                return done["result"]

            return run_async

        def run(*args: Any, **kwargs: Any) -> Any:
            return self._sync.invoke({"call": (name, args, kwargs)})["result"]

        return run


def _one_node_graph(node: Callable[..., Any], store: BaseStore) -> Any:
    builder = StateGraph(_State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    return builder.compile(store=store)


class TestLangGraphRedisStoreInGraph(TestLangGraphRedisStore):
    calls = InGraph


# ---------------------------------------------------------------------------- real graphs


class Memo(TypedDict):
    user: str
    facts: list[str]
    notes: Annotated[list[Any], operator.add]


def _memory_graph(saver: LangGraphRedisSaver, store: BaseStore) -> Any:
    def remember(state: Memo, store: BaseStore) -> dict[str, Any]:  # injected by name
        for i, fact in enumerate(state["facts"]):
            store.put((state["user"], "memories"), f"m{i}", {"text": fact, "n": i})
        return {"notes": [f"remembered {len(state['facts'])}"]}

    def recall(state: Memo) -> dict[str, Any]:
        found = get_store().search((state["user"],), filter={"n": {"$gte": 1}}, limit=5)
        return {"notes": [[item.value["text"] for item in found]]}

    def count(state: Memo, runtime: Runtime) -> dict[str, Any]:
        assert runtime.store is not None
        everything = runtime.store.search((state["user"],), limit=100)
        return {"notes": [len(everything)]}

    builder = StateGraph(Memo)
    for name, fn in (("remember", remember), ("recall", recall), ("count", count)):
        builder.add_node(name, fn)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "recall")
    builder.add_edge("recall", "count")
    return builder.compile(checkpointer=saver, store=store)


def test_graph_threads_share_memory_with_celerygraph(server: RedisServer) -> None:
    """Two threads of a LangGraph graph (checkpoints in our saver) share the user's memory;
    the items are the ones graphdef's RedisStore reads on the same Redis and prefix."""
    server.flush()
    with LangGraphRedisStore.from_url(server.url) as store:
        graph = _memory_graph(LangGraphRedisSaver(server.client()), store)
        first = graph.invoke({"user": "ada", "facts": ["tea", "cats"], "notes": []},
                             {"configurable": {"thread_id": "t1"}})
        second = graph.invoke({"user": "ada", "facts": ["", "", "rain"], "notes": []},
                              {"configurable": {"thread_id": "t2"}})
        assert first["notes"] == ["remembered 2", ["cats"], 2]
        assert second["notes"] == ["remembered 3", ["", "rain"], 3]
        item = store.get(("ada", "memories"), "m2")
        assert type(item) is Item and item.value == {"text": "rain", "n": 2}
        assert all(type(i) is SearchItem for i in store.search(("ada",)))
    with RedisStore(server.url) as ours:  # what a celerygraph worker's store sees
        assert [i.value["text"] for i in ours.search(("ada",))] == ["", "", "rain"]
        ours.put(("bo", "memories"), "m1", {"text": "from a worker", "n": 1})
    with LangGraphRedisStore.from_url(server.url) as store:
        graph = _memory_graph(LangGraphRedisSaver(server.client()), store)
        done = graph.invoke({"user": "bo", "facts": [], "notes": []},
                            {"configurable": {"thread_id": "t3"}})
        assert done["notes"] == ["remembered 0", ["from a worker"], 1]


async def _async_embed(texts: list[str]) -> list[list[float]]:
    await asyncio.sleep(0)
    return embed(texts)


def _ranking_graph(store: BaseStore) -> Any:
    async def remember(state: Memo, store: BaseStore) -> dict[str, Any]:
        for i, fact in enumerate(state["facts"]):
            await store.aput(("pets",), f"p{i}", {"text": fact})
        return {}

    async def ask(state: Memo) -> dict[str, Any]:
        found = await get_store().asearch(("pets",), query="dog", limit=3)
        return {"notes": [(i.key, round(i.score or 0.0, 6)) for i in found]}

    builder = StateGraph(Memo)
    builder.add_node("remember", remember)
    builder.add_node("ask", ask)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "ask")
    return builder.compile(store=store)


def test_async_embedder_in_async_graph_as_langgraph(server: RedisServer) -> None:
    """An async embed function works under LangGraph's async API (awaited on the caller's
    loop) and fails the sync one with LangGraph's error: both as its InMemoryStore does."""
    server.flush()
    index = {**INDEX, "embed": _async_embed}
    theirs = InMemoryStore(index=index)  # type: ignore[arg-type]
    facts = ["cat", "dog dog", "fish dog", "bird"]
    with LangGraphRedisStore.from_url(server.url, index=index) as ours:
        results = [asyncio.run(_ranking_graph(store).ainvoke(
            {"user": "u", "facts": facts, "notes": []})) for store in (theirs, ours)]
        assert results[0] == results[1]
        assert [key for key, _ in results[1]["notes"]] == ["p1", "p2", "p0"]
        assert _raised(lambda: ours.put(("a",), "k", {"text": "cat"})) == _raised(
            lambda: theirs.put(("a",), "k", {"text": "cat"}))
        assert ours.get(("a",), "k") is None


def test_embeddings_object_and_fields_override(server: RedisServer) -> None:
    """A LangChain ``Embeddings`` object, and a put's own ``index`` fields, rank as in
    LangGraph's InMemoryStore."""
    from langchain_core.embeddings import Embeddings

    class Words(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return embed(texts)

        def embed_query(self, text: str) -> list[float]:
            return embed([text])[0]

    server.flush()
    index = {**INDEX, "embed": Words()}
    found = []
    with LangGraphRedisStore.from_url(server.url, index=index) as ours:
        for store in (InMemoryStore(index=index), ours):  # type: ignore[arg-type]
            store.put(("n",), "a", {"text": "cat", "body": "fish"}, index=["body"])
            store.put(("n",), "b", {"text": "cat cat"})
            store.put(("n",), "c", {"text": "fish"}, index=False)
            found.append([(i.key, i.score and round(i.score, 6))
                          for i in store.search(("n",), query="fish")])
    assert found[0] == found[1]
    assert found[1][0] == ("a", 1.0) and [key for key, _ in found[1]] == ["a", "b", "c"]
