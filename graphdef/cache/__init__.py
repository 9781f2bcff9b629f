"""Node and task caches (LangGraph's `langgraph.cache`): `compile(cache=...)` and a node's
`cache_policy` let a node whose input was seen before skip running and reuse its writes."""

from graphdef.cache.base import BaseCache
from graphdef.cache.keys import CacheKey
from graphdef.cache.memory import InMemoryCache

__all__ = ["BaseCache", "CacheKey", "InMemoryCache"]
