"""InMemoryStore: the store for tests and single-process programs.

Values are kept encoded (`graphdef.serde`), so what a caller gets back never shares
objects with what it put and a value the other stores would reject is rejected here too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from graphdef.store.query import Record
from graphdef.store.records import RecordStore, Ref, Write, decode_value


@dataclass
class _Entry:
    data: bytes
    vectors: dict[str, list[float]]
    created_at: datetime
    updated_at: datetime
    ttl_seconds: float | None
    expires_at: float | None


class InMemoryStore(RecordStore):
    """A dict of namespaces, each a dict of items, both in insertion order."""

    def __init__(
        self, *, index: Mapping[str, Any] | None = None, ttl: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(index=index, ttl=ttl)
        self._data: dict[tuple[str, ...], dict[str, _Entry]] = {}
        self._lock = threading.RLock()

    def _live(self, namespace: tuple[str, ...], key: str, now: float) -> _Entry | None:
        items = self._data.get(namespace)
        entry = items.get(key) if items else None
        if entry is not None and entry.expires_at is not None and entry.expires_at <= now:
            self._remove(namespace, key)
            return None
        return entry

    def _remove(self, namespace: tuple[str, ...], key: str) -> None:
        items = self._data.get(namespace, {})
        items.pop(key, None)
        if not items:
            self._data.pop(namespace, None)

    @staticmethod
    def _record(ns: tuple[str, ...], key: str, entry: _Entry, vectors: bool) -> Record:
        return Record(ns, key, decode_value(entry.data), entry.created_at, entry.updated_at,
                      dict(entry.vectors) if vectors else {})

    @staticmethod
    def _refresh(entry: _Entry, now: float) -> None:
        if entry.ttl_seconds is not None:
            entry.expires_at = now + entry.ttl_seconds

    def _read(self, refs: list[Ref], refresh: list[bool]) -> list[Record | None]:
        now = time.time()
        found: list[Record | None] = []
        with self._lock:
            for (ns, key), touch in zip(refs, refresh, strict=True):
                entry = self._live(ns, key, now)
                if entry is not None and touch:
                    self._refresh(entry, now)
                found.append(None if entry is None else self._record(ns, key, entry, False))
        return found

    def _candidates(self, prefix: tuple[str, ...], *, with_vectors: bool) -> list[Record]:
        now = time.time()
        with self._lock:
            refs = [(ns, key) for ns, items in self._data.items()
                    if ns[: len(prefix)] == prefix for key in items]
            live = [(ns, key, self._live(ns, key, now)) for ns, key in refs]
            return [self._record(ns, key, e, with_vectors) for ns, key, e in live if e]

    def _namespaces(self, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        self._sweep()
        with self._lock:
            return [ns for ns in self._data if ns[: len(prefix)] == prefix]

    def _write(self, writes: list[Write]) -> None:
        now = time.time()
        stamp = datetime.now(UTC)
        with self._lock:
            for w in writes:
                if w.data is None:
                    self._remove(w.namespace, w.key)
                    continue
                old = self._live(w.namespace, w.key, now)
                self._data.setdefault(w.namespace, {})[w.key] = _Entry(
                    w.data, w.vectors or {}, old.created_at if old else stamp, stamp,
                    w.ttl_seconds, None if w.ttl_seconds is None else now + w.ttl_seconds,
                )

    def _touch(self, refs: list[Ref]) -> None:
        now = time.time()
        with self._lock:
            for ns, key in refs:
                entry = self._live(ns, key, now)
                if entry is not None:
                    self._refresh(entry, now)

    def _sweep(self) -> int:
        now = time.time()
        with self._lock:
            expired = [(ns, key) for ns, items in self._data.items()
                       for key, e in items.items()
                       if e.expires_at is not None and e.expires_at <= now]
            for ns, key in expired:
                self._remove(ns, key)
        return len(expired)
