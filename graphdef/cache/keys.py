"""What a cached node result is filed under: LangGraph's namespace and a digest of the input.

The digest must be the same in every process, so that a worker finds what another one
cached: the default key is the input encoded by our serde with dict keys sorted, never
pickle (LangGraph pickles, which differs between processes for sets of strings).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from graphdef import serde

CACHE_NS_WRITES = "__pregel_ns_writes"
"""LangGraph's first namespace label for cached task writes."""

Namespace = tuple[str, ...]
FullKey = tuple[Namespace, str]


class CacheKey(NamedTuple):
    """Where one task's writes are cached, and for how long (seconds; None: forever)."""

    ns: Namespace
    key: str
    ttl: int | None


def _sorted(value: Any) -> Any:
    """Dicts as key-sorted pairs, so that equal inputs encode alike whatever their order."""
    if isinstance(value, Mapping):
        return [[k, _sorted(v)] for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))]
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def default_cache_key(*args: Any, **kwargs: Any) -> bytes:
    """The key of a node's input (or a task's arguments) when its policy names no `key_func`."""
    return serde.dumps(_sorted([list(args), kwargs]), root="cache key input")


def identifier(func: Any) -> str:
    """The function a node or task runs, as module and qualified name (LangGraph's label)."""
    func = getattr(func, "__wrapped__", func)
    module = getattr(func, "__module__", None)
    name = getattr(func, "__qualname__", None) or getattr(type(func), "__qualname__", None)
    return f"{module}.{name}" if module and name else "__dynamic__"


def cache_key(
    ns: Namespace, key_func: Callable[..., str | bytes], ttl: int | None,
    *args: Any, **kwargs: Any,
) -> CacheKey:
    """The key of one call: `key_func`'s output, hashed so that it is short and opaque."""
    raw = key_func(*args, **kwargs)
    data = raw.encode() if isinstance(raw, str) else raw
    return CacheKey(ns, hashlib.blake2b(data, digest_size=16).hexdigest(), ttl)
