"""InMemoryCache: a process-local cache, LangGraph's `langgraph.cache.memory.InMemoryCache`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from graphdef.cache.base import BaseCache, ValueT
from graphdef.cache.keys import FullKey, Namespace
from graphdef.serde import SerializerProtocol


class InMemoryCache(BaseCache[ValueT]):
    """Encoded values in a dict, expired when read past their TTL.

    `clock` (seconds) is what TTLs count against; tests pass their own to expire entries
    without waiting.
    """

    def __init__(
        self, *, serde: SerializerProtocol | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(serde=serde)
        self._clock = clock
        self._data: dict[Namespace, dict[str, tuple[bytes, float | None]]] = {}
        self._lock = threading.Lock()

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        now = self._clock()
        found: dict[FullKey, ValueT] = {}
        with self._lock:
            for ns, key in keys:
                entry = self._data.get(tuple(ns), {}).get(key)
                if entry is None:
                    continue
                data, expiry = entry
                if expiry is not None and now >= expiry:
                    del self._data[tuple(ns)][key]
                    continue
                found[(ns, key)] = self.serde.loads(data)
        return found

    def set(self, pairs: Mapping[FullKey, tuple[ValueT, int | None]]) -> None:
        now = self._clock()
        encoded = {
            (tuple(ns), key): (self.serde.dumps(value, root="cached value"),
                               None if ttl is None else now + ttl)
            for (ns, key), (value, ttl) in pairs.items()
        }
        with self._lock:
            for (ns, key), entry in encoded.items():
                self._data.setdefault(ns, {})[key] = entry

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        with self._lock:
            if namespaces is None:
                self._data.clear()
            for ns in namespaces or ():
                self._data.pop(tuple(ns), None)
