"""SqliteStore: the embedded default's store, in one SQLite file (stdlib only).

It can share the file of a `SqliteSaver` (its tables are `store_*`). Several processes may
use the file (WAL, `busy_timeout`), threads may share a store (one lock per connection),
and each call is one transaction.

A namespace is stored as its labels joined by '.', which labels cannot contain, so a
prefix search is a range scan on the text: `ns = p OR p. <= ns < p/`. Similarity search
reads the vectors (JSON floats in the item's row) of the prefix's items and ranks them in
Python: cost grows with the number of items under the searched prefix.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from graphdef import serde
from graphdef.store.query import Record
from graphdef.store.records import RecordStore, Ref, Write, decode_value

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_namespaces (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS store_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    vectors BLOB,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    ttl_seconds REAL,
    expires_at REAL,
    UNIQUE (namespace, key)
);
CREATE INDEX IF NOT EXISTS store_items_expiry ON store_items (expires_at)
    WHERE expires_at IS NOT NULL
"""

_LIVE = "(i.expires_at IS NULL OR i.expires_at > :now)"
_UNDER = "(n.namespace = :p OR (n.namespace >= :p || '.' AND n.namespace < :p || '/'))"


def _text(namespace: tuple[str, ...]) -> str:
    return ".".join(namespace)


def _labels(text: str) -> tuple[str, ...]:
    return tuple(text.split("."))


class SqliteStore(RecordStore):
    """Items in a SQLite file or connection; see the module docstring for the layout."""

    def __init__(
        self, conn: str | os.PathLike[str] | sqlite3.Connection, *,
        index: Mapping[str, Any] | None = None, ttl: Mapping[str, Any] | None = None,
    ) -> None:
        """Open (or create) a database file, or use `conn`, which is switched to autocommit
        mode because the store runs its own transactions."""
        super().__init__(index=index, ttl=ttl)
        if isinstance(conn, sqlite3.Connection):
            self._conn, self._owns_conn = conn, False
        else:
            self._conn = sqlite3.connect(os.fspath(conn), check_same_thread=False, timeout=30)
            self._owns_conn = True
        self._conn.isolation_level = None
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA busy_timeout = 30000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            with self._transaction() as db:
                for statement in _SCHEMA.split(";"):
                    db.execute(statement)

    def close(self) -> None:
        if self._owns_conn:
            with self._lock:
                self._conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @staticmethod
    def _record(row: tuple[Any, ...]) -> Record:
        ns, key, value, vectors, created, updated = row
        return Record(_labels(ns), key, decode_value(value), datetime.fromisoformat(created),
                      datetime.fromisoformat(updated), serde.loads(vectors) if vectors else {})

    def _refresh(self, db: sqlite3.Connection, refs: list[Ref], now: float) -> None:
        db.executemany(
            "UPDATE store_items SET expires_at = :now + ttl_seconds WHERE namespace = :ns "
            "AND key = :key AND ttl_seconds IS NOT NULL AND expires_at > :now",
            [{"now": now, "ns": _text(ns), "key": key} for ns, key in refs],
        )

    def _read(self, refs: list[Ref], refresh: list[bool]) -> list[Record | None]:
        now = time.time()
        found: list[Record | None] = []
        with self._transaction() as db:
            for ns, key in refs:
                row = db.execute(
                    "SELECT i.namespace, i.key, i.value, NULL, i.created_at, i.updated_at "
                    f"FROM store_items i WHERE i.namespace = :ns AND i.key = :key AND {_LIVE}",
                    {"ns": _text(ns), "key": key, "now": now},
                ).fetchone()
                found.append(None if row is None else self._record(row))
            self._refresh(db, [r for r, touch in zip(refs, refresh, strict=True) if touch], now)
        return found

    def _candidates(self, prefix: tuple[str, ...], *, with_vectors: bool) -> list[Record]:
        vectors = "i.vectors" if with_vectors else "NULL"
        with self._lock:
            rows = self._conn.execute(
                f"SELECT i.namespace, i.key, i.value, {vectors}, i.created_at, i.updated_at "
                "FROM store_items i JOIN store_namespaces n ON n.namespace = i.namespace "
                f"WHERE {_LIVE} AND ({_UNDER} OR :p = '') ORDER BY n.seq, i.seq",
                {"now": time.time(), "p": _text(prefix)},
            ).fetchall()
        return [self._record(row) for row in rows]

    def _namespaces(self, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        self._sweep()
        with self._lock:
            rows = self._conn.execute(
                f"SELECT n.namespace FROM store_namespaces n WHERE {_UNDER} OR :p = ''",
                {"p": _text(prefix)},
            ).fetchall()
        return [_labels(ns) for (ns,) in rows]

    def _write(self, writes: list[Write]) -> None:
        now = time.time()
        stamp = datetime.now(UTC).isoformat()
        with self._transaction() as db:
            db.execute("DELETE FROM store_items WHERE expires_at <= ?", (now,))
            for w in writes:
                ns = _text(w.namespace)
                if w.data is None:
                    db.execute("DELETE FROM store_items WHERE namespace = ? AND key = ?",
                               (ns, w.key))
                    continue
                db.execute("INSERT OR IGNORE INTO store_namespaces (namespace) VALUES (?)",
                           (ns,))
                db.execute(
                    "INSERT INTO store_items (namespace, key, value, vectors, created_at, "
                    "updated_at, ttl_seconds, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
                    "vectors = excluded.vectors, updated_at = excluded.updated_at, "
                    "ttl_seconds = excluded.ttl_seconds, expires_at = excluded.expires_at",
                    (ns, w.key, w.data, serde.dumps(w.vectors) if w.vectors else None, stamp,
                     stamp, w.ttl_seconds,
                     None if w.ttl_seconds is None else now + w.ttl_seconds),
                )
            self._drop_empty_namespaces(db)

    @staticmethod
    def _drop_empty_namespaces(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM store_namespaces WHERE namespace NOT IN "
                   "(SELECT namespace FROM store_items)")

    def _touch(self, refs: list[Ref]) -> None:
        with self._transaction() as db:
            self._refresh(db, refs, time.time())

    def _sweep(self) -> int:
        with self._transaction() as db:
            gone = db.execute("DELETE FROM store_items WHERE expires_at <= ?",
                              (time.time(),)).rowcount
            if gone:
                self._drop_empty_namespaces(db)
        return gone
