"""A LangGraph cache as graphdef's, so that a graph compiled with one keeps using it.

Entries live in the LangGraph cache itself: what LangGraph's own API does to it
(`task.clear_cache(cache)`, another graph sharing it, another process reaching the same
Redis) applies to what graphdef cached. Values are encoded by graphdef's serde before they
reach it (never pickle; the same bytes in every process): the LangGraph cache stores bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.cache.base import BaseCache as LgBaseCache

from graphdef.cache.base import BaseCache
from graphdef.cache.keys import FullKey, Namespace


class LangGraphCache(BaseCache[Any]):
    """graphdef's cache interface over a LangGraph `BaseCache` (the same one, key for key)."""

    def __init__(self, cache: LgBaseCache[Any]) -> None:
        super().__init__()
        self.cache = cache

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        return {(tuple(ns), key): self.serde.loads(data)
                for (ns, key), data in self.cache.get(keys).items()}

    def set(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        self.cache.set({key: (self.serde.dumps(value, root="cached value"), ttl)
                        for key, (value, ttl) in pairs.items()})

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        self.cache.clear(namespaces)
