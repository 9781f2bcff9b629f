"""A LangGraph ``BaseStore`` over graphdef's ``RedisStore``: our Redis layout from real LangGraph.

``graph.compile(store=LangGraphRedisStore.from_url(url))`` gives nodes (``store`` parameter,
``get_store()``, ``runtime.store``) long-term memory in plain Redis. Every operation goes
through ``RedisStore.batch``, so the key layout, the TTL handling, the filters and the ranking
are graphdef's, and an item written here is the same item a celerygraph worker's
``RedisStore`` on the same prefix reads. What this module adds is the translation at the door:
LangGraph's op and item classes in, LangGraph's classes and errors out, and LangGraph's
embedders (a provider string, a sync or an async function, an ``Embeddings``) turned into what
graphdef's index calls.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterable, Mapping
from typing import Any

import redis
from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)
from langgraph.store.base.embed import ensure_embeddings

from celerygraph_langgraph.serde_types import register_langgraph_types
from graphdef.checkpoint.keys import DEFAULT_PREFIX
from graphdef.store import base as ours
from graphdef.store.redis import RedisStore

__all__ = ["LangGraphRedisStore"]

# The event loop of the `abatch` call running on this thread, if any: embedding then awaits
# the embedder's async methods on that loop, as LangGraph's own stores do in `abatch`.
_CALLER_LOOP: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "celerygraph_langgraph_caller_loop", default=None
)


class _Embedder:
    """LangGraph's ``index["embed"]`` as graphdef's index calls it (``embed_documents``,
    ``embed_query``). ``ensure_embeddings`` gives LangGraph's meaning to each form; a sync
    ``batch`` then calls the sync methods (an async-only function raises there, as in
    LangGraph), while ``abatch`` runs the async ones on its caller's loop, which is free: it
    is awaiting the thread that embeds."""

    def __init__(self, embed: Any) -> None:
        self._embeddings = ensure_embeddings(embed)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        loop = _CALLER_LOOP.get()
        if loop is None:
            return self._embeddings.embed_documents(texts)
        coro = self._embeddings.aembed_documents(texts)
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def embed_query(self, text: str) -> list[float]:
        loop = _CALLER_LOOP.get()
        if loop is None:
            return self._embeddings.embed_query(text)
        return asyncio.run_coroutine_threadsafe(self._embeddings.aembed_query(text), loop).result()


def _index_config(index: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if index is None:
        return None
    return {**index, "embed": _Embedder(index.get("embed"))}


def _to_ours(op: Op) -> ours.Op:
    """LangGraph's op -> graphdef's, field by field (the two are separate NamedTuples)."""
    if isinstance(op, GetOp):
        return ours.GetOp(op.namespace, op.key, op.refresh_ttl)
    if isinstance(op, SearchOp):
        return ours.SearchOp(op.namespace_prefix, op.filter, op.limit, op.offset, op.query,
                             op.refresh_ttl)
    if isinstance(op, PutOp):
        return ours.PutOp(op.namespace, op.key, op.value, op.index, op.ttl)
    if isinstance(op, ListNamespacesOp):
        conditions = tuple(ours.MatchCondition(c.match_type, c.path)
                           for c in op.match_conditions or ())
        return ours.ListNamespacesOp(conditions, op.max_depth, op.limit, op.offset)
    raise ValueError(f"Unknown operation type: {type(op)}")


def _to_theirs(result: ours.Result) -> Result:
    """graphdef's result -> LangGraph's: items become LangGraph's classes, so ``==`` and
    ``isinstance`` work in LangGraph programs; namespace tuples pass as they are."""
    if isinstance(result, list):
        return [_item(r) if isinstance(r, ours.Item) else r for r in result]  # type: ignore[return-value]
    return None if result is None else _item(result)


def _item(item: ours.Item) -> Item:
    if isinstance(item, ours.SearchItem):
        return SearchItem(item.namespace, item.key, item.value, item.created_at,
                          item.updated_at, item.score)
    return Item(value=item.value, key=item.key, namespace=item.namespace,
                created_at=item.created_at, updated_at=item.updated_at)


class LangGraphRedisStore(BaseStore):
    """Items in Redis, for ``compile(store=...)``; ``index`` and ``ttl`` as LangGraph's
    ``IndexConfig`` and ``TTLConfig`` (minutes), with graphdef's ``RedisStore`` limits."""

    supports_ttl = True

    def __init__(
        self, url_or_client: str | redis.Redis, *, index: Mapping[str, Any] | None = None,
        ttl: Mapping[str, Any] | None = None, prefix: str = DEFAULT_PREFIX,
    ) -> None:
        register_langgraph_types()
        # The same store a celerygraph worker builds on this Redis and prefix: one set of items.
        self.graphdef_store = RedisStore(url_or_client, index=_index_config(index), ttl=ttl,
                                         prefix=prefix)
        self.ttl_config = self.graphdef_store.ttl_config  # LangGraph put/get/search defaults
        self.index_config = None if index is None else dict(index)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> LangGraphRedisStore:
        """A store on its own client, closed by ``close()`` or ``with``."""
        return cls(url, **kwargs)

    def close(self) -> None:
        self.graphdef_store.close()

    def __enter__(self) -> LangGraphRedisStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        converted = [_to_ours(op) for op in ops]
        try:
            results = self.graphdef_store.batch(converted)
        except ours.InvalidNamespaceError as err:
            raise InvalidNamespaceError(str(err)) from err
        return [_to_theirs(result) for result in results]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """``batch`` on a worker thread (redis-py is blocking), embedding with the async
        methods on this loop."""
        ops = list(ops)
        token = _CALLER_LOOP.set(asyncio.get_running_loop())
        try:
            return await asyncio.to_thread(self.batch, ops)
        finally:
            _CALLER_LOOP.reset(token)

    def sweep_ttl(self) -> int:
        """Delete expired items now; how many (reads never return them either way)."""
        return self.graphdef_store.sweep_ttl()

