"""RedisCache: the distributed backend's node cache, on plain Redis, Cluster-ready.

Key layout (``P`` the prefix, ``T`` base64url of the namespace's labels joined by NUL):

- ``P:cache:ns``          set of every ``T``, so that `clear()` finds them without a SCAN
- ``P:cache:{T}:idx``     sorted set of the namespace's keys by expiry time (ms; +inf for
                          none), so that `clear(namespaces)` finds its values, and trimmed
                          of expired keys on every write so it does not grow with them
- ``P:cache:{T}:v:key``   the value, serde bytes, expired by Redis itself (``PX``)

A namespace's keys carry the hash tag ``{T}``: they live in one Redis Cluster slot, and a
write touches one slot (the global set is written by a separate command). Values pass
only through the serializer (`graphdef.serde` by default); nothing unpickles.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from graphdef.cache.base import BaseCache, ValueT
from graphdef.cache.keys import FullKey, Namespace
from graphdef.checkpoint.keys import DEFAULT_PREFIX, b64, check_prefix
from graphdef.redis_client import connect
from graphdef.serde import SerializerProtocol


class RedisCache(BaseCache[ValueT]):
    """A cache every worker process shares; see the module for its keys."""

    def __init__(
        self, url_or_client: str | redis.Redis, *, prefix: str = DEFAULT_PREFIX,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if isinstance(url_or_client, str):
            self._client: redis.Redis = connect(url_or_client)
            self._owns_client = True
        else:
            self._client, self._owns_client = url_or_client, False
        self.prefix = f"{check_prefix(prefix)}:cache"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _tag(self, ns: Namespace) -> str:
        return f"{self.prefix}:{{{b64(chr(0).join(ns))}}}"

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        by_ns: dict[Namespace, list[str]] = defaultdict(list)
        for ns, key in keys:
            by_ns[tuple(ns)].append(key)
        pipe = self._client.pipeline(transaction=False)
        for ns, ns_keys in by_ns.items():
            tag = self._tag(ns)
            pipe.mget([f"{tag}:v:{key}" for key in ns_keys])
        found: dict[FullKey, ValueT] = {}
        for (ns, ns_keys), values in zip(by_ns.items(), pipe.execute(), strict=True):
            for key, data in zip(ns_keys, values, strict=True):
                if data is not None:
                    found[(ns, key)] = self.serde.loads(data)
        return found

    def set(self, pairs: Mapping[FullKey, tuple[ValueT, int | None]]) -> None:
        now_ms = int(time.time() * 1000)
        by_ns: dict[Namespace, list[tuple[str, bytes, int | None]]] = defaultdict(list)
        for (ns, key), (value, ttl) in pairs.items():
            data = self.serde.dumps(value, root="cached value")
            by_ns[tuple(ns)].append((key, data, ttl))
        for ns, entries in by_ns.items():
            tag = self._tag(ns)
            pipe = self._client.pipeline(transaction=True)
            pipe.zremrangebyscore(f"{tag}:idx", "-inf", now_ms)
            for key, data, ttl in entries:
                ttl_ms = None if ttl is None else max(1, int(ttl * 1000))
                pipe.set(f"{tag}:v:{key}", data, px=ttl_ms)
                expiry: float = float("inf") if ttl_ms is None else now_ms + ttl_ms
                pipe.zadd(f"{tag}:idx", {key: expiry})
            pipe.execute()
            self._client.sadd(f"{self.prefix}:ns", tag)

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        if namespaces is None:
            tags = [t.decode() for t in self._client.smembers(f"{self.prefix}:ns")]
        else:
            tags = [self._tag(tuple(ns)) for ns in namespaces]
        for tag in tags:
            keys: list[Any] = self._client.zrange(f"{tag}:idx", 0, -1)
            pipe = self._client.pipeline(transaction=True)
            for key in keys:
                pipe.delete(f"{tag}:v:{key.decode()}")
            pipe.delete(f"{tag}:idx")
            pipe.execute()
            self._client.srem(f"{self.prefix}:ns", tag)
