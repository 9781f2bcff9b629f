"""One `batch` for every backend: validation, embedding, TTL and search semantics live here,
and a backend only reads and writes records.

Within a batch, reads see the store as it was before the batch's puts (LangGraph's
InMemoryStore does the same), and several puts to one key keep the last. Values are
encoded with `graphdef.serde` before anything is written, so a value the serde rejects
stores nothing and no backend ever pickles.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from graphdef import serde
from graphdef.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchOp,
    TTLConfig,
    validate_op,
)
from graphdef.store.index import Index
from graphdef.store.query import Record, check_filter, list_namespaces, literal_prefix, search

Ref = tuple[tuple[str, ...], str]

_TTL_KEYS = frozenset({"refresh_on_read", "default_ttl", "omit_expired", "sweep_interval_minutes"})


@dataclass
class Write:
    """A put (`data` is the serde-encoded value) or a delete (`data` None)."""

    namespace: tuple[str, ...]
    key: str
    data: bytes | None
    vectors: dict[str, list[float]] | None = None  # None: not indexed
    ttl_seconds: float | None = None


def check_ttl_config(config: Mapping[str, Any] | None) -> TTLConfig | None:
    """Expired items are never returned and are removed when next touched (Redis expires
    them itself), so there is no sweeper to schedule: asking for one is an error."""
    if config is None:
        return None
    unknown = sorted(set(config) - _TTL_KEYS)
    if unknown:
        raise ValueError(f"ttl options not supported: {', '.join(unknown)}")
    if config.get("sweep_interval_minutes") is not None:
        raise ValueError(
            "ttl['sweep_interval_minutes'] is not supported: expired items are never "
            "returned and are deleted when next touched; call store.sweep_ttl() to reclaim "
            "space from items nobody reads"
        )
    check_ttl(config.get("default_ttl"))
    return TTLConfig(**config)  # type: ignore[typeddict-item]


def check_ttl(ttl: Any) -> float | None:
    """A TTL in minutes -> seconds."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0 \
            or not math.isfinite(ttl):
        raise ValueError(f"ttl must be a positive number of minutes or None, got {ttl!r}")
    return float(ttl) * 60.0


class RecordStore(BaseStore):
    """A store over a backend of records; subclasses implement the five primitives."""

    supports_ttl = True

    def __init__(
        self, *, index: Mapping[str, Any] | None = None, ttl: Mapping[str, Any] | None = None
    ) -> None:
        self.index = Index(index) if index is not None else None
        self.index_config = dict(index) if index is not None else None
        self.ttl_config = check_ttl_config(ttl)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        for op in ops:
            validate_op(op)
            if isinstance(op, SearchOp):
                check_filter(op.filter)
        writes = self._prepare_writes([op for op in ops if isinstance(op, PutOp)])
        results: list[Result] = [None] * len(ops)
        gets = [(i, op) for i, op in enumerate(ops) if isinstance(op, GetOp)]
        if gets:
            found = self._read([(op.namespace, op.key) for _, op in gets],
                               [op.refresh_ttl for _, op in gets])
            for (i, _), record in zip(gets, found, strict=True):
                results[i] = None if record is None else Item(
                    value=record.value, key=record.key, namespace=record.namespace,
                    created_at=record.created_at, updated_at=record.updated_at)
        for i, op in enumerate(ops):
            if isinstance(op, SearchOp):
                results[i] = self._search(op)
            elif isinstance(op, ListNamespacesOp):
                results[i] = list_namespaces(op, self._namespaces(literal_prefix(op)))
        if writes:
            self._write(writes)
        return results

    def _search(self, op: SearchOp) -> list:
        ranked = bool(op.query) and self.index is not None
        candidates = self._candidates(op.namespace_prefix, with_vectors=ranked)
        query_vector = self.index.embed_query(op.query) if ranked else None  # type: ignore[union-attr, arg-type]
        found = search(op, candidates, query_vector)
        if op.refresh_ttl and found:
            self._touch([(item.namespace, item.key) for item in found])
        return found

    def _prepare_writes(self, puts: list[PutOp]) -> list[Write]:
        last: dict[Ref, PutOp] = {}
        for op in puts:
            last.pop((op.namespace, op.key), None)
            last[(op.namespace, op.key)] = op
        writes = []
        pending: list[tuple[Write, str, str]] = []
        for op in last.values():
            if op.value is None:
                writes.append(Write(op.namespace, op.key, None))
                continue
            where = f"store value {'/'.join(op.namespace)}/{op.key}"
            write = Write(op.namespace, op.key, serde.dumps(dict(op.value), root=where),
                          ttl_seconds=check_ttl(op.ttl))
            if self.index is not None and op.index is not False:
                write.vectors = {}
                fields = None if op.index is None else list(op.index)
                for path, text in self.index.item_texts(dict(op.value), fields):
                    pending.append((write, path, text))
            writes.append(write)
        if pending and self.index is not None:
            vectors = self.index.embed_texts([text for _, _, text in pending])
            for (write, path, _), vector in zip(pending, vectors, strict=True):
                assert write.vectors is not None
                write.vectors[path] = vector
        return writes

    def sweep_ttl(self) -> int:
        """Delete expired items now; how many. Reads never return them either way."""
        return self._sweep()

    # ---- the backend ---------------------------------------------------------------------

    @abstractmethod
    def _read(self, refs: list[Ref], refresh: list[bool]) -> list[Record | None]:
        """The live records at `refs`, refreshing the TTL of those with `refresh`."""

    @abstractmethod
    def _candidates(self, prefix: tuple[str, ...], *, with_vectors: bool) -> list[Record]:
        """Live records under `prefix`, in namespace then key insertion order."""

    @abstractmethod
    def _namespaces(self, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        """Namespaces with live items that start with `prefix`."""

    @abstractmethod
    def _write(self, writes: list[Write]) -> None:
        """Apply puts and deletes; a put keeps an existing item's `created_at`."""

    @abstractmethod
    def _touch(self, refs: list[Ref]) -> None:
        """Restart the TTL of these items (those that have one)."""

    @abstractmethod
    def _sweep(self) -> int:
        """Delete expired items; how many."""


def decode_value(data: bytes) -> dict[str, Any]:
    value = serde.loads(data)
    if not isinstance(value, dict):
        raise serde.SerdeError(f"stored store value is not a dict: {type(value).__name__}")
    return value
