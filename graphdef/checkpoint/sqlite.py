"""A saver in one SQLite file: the embedded default, needing nothing but the stdlib.

Several processes may share the file (WAL mode; writers wait on ``busy_timeout`` instead of
failing) and threads may share a saver (one lock per connection). Every call runs in one
transaction, so readers never see half of a ``put`` and a failed call stores nothing.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from graphdef.checkpoint.base import (
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    Config,
    PreparedPut,
    StoredCheckpoint,
    Target,
    checkpoint_config,
    list_bounds,
    metadata_matches,
)
from graphdef.checkpoint.delta import Blob, PendingBlob, live_blobs
from graphdef.serde import SerializerProtocol

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    parent_id TEXT,
    checkpoint BLOB NOT NULL,
    metadata BLOB NOT NULL,
    refs BLOB NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE TABLE IF NOT EXISTS blobs (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    channel TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    kind TEXT NOT NULL,
    data BLOB NOT NULL,
    base_version INTEGER,
    base_digest TEXT,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version, digest)
);
CREATE TABLE IF NOT EXISTS writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
"""

_ROW_COLUMNS = "thread_id, checkpoint_ns, checkpoint_id, parent_id, checkpoint, metadata, refs"

# Follows delta bases from the blobs a checkpoint refers to, loading a whole chain at once.
_CHAIN_SQL = """
WITH RECURSIVE chain(channel, version, digest) AS (
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
    FROM json_each(:heads)
    UNION
    SELECT b.channel, b.base_version, b.base_digest
    FROM chain AS c JOIN blobs AS b
      ON b.thread_id = :thread AND b.checkpoint_ns = :ns AND b.channel = c.channel
     AND b.version = c.version AND b.digest = c.digest
    WHERE b.kind = 'delta'
)
SELECT b.channel, b.version, b.digest, b.kind, b.data, b.base_version, b.base_digest
FROM chain AS c JOIN blobs AS b
  ON b.thread_id = :thread AND b.checkpoint_ns = :ns AND b.channel = c.channel
 AND b.version = c.version AND b.digest = c.digest
"""

_HAS_BLOB = """
SELECT 1 FROM blobs
WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ? AND digest = ?
"""


class SqliteSaver(BaseCheckpointSaver):
    def __init__(
        self,
        conn: str | os.PathLike[str] | sqlite3.Connection,
        *,
        serde: SerializerProtocol | None = None,
    ) -> None:
        """Open (or create) a database file, or use ``conn``, which is then switched to
        autocommit mode because the saver manages its own transactions."""
        super().__init__(serde=serde)
        if isinstance(conn, sqlite3.Connection):
            self._conn, self._owns_conn = conn, False
        else:
            path = os.fspath(conn)
            self._conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
            self._owns_conn = True
        self._conn.isolation_level = None
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA busy_timeout = 30000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode survives a process crash; only a power loss can drop the
            # last commits, never corrupt the file.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            with self._transaction(write=True) as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], *, serde: SerializerProtocol | None = None
    ) -> SqliteSaver:
        return cls(path, serde=serde)

    @classmethod
    @contextlib.contextmanager
    def from_conn_string(
        cls, conn_string: str, *, serde: SerializerProtocol | None = None
    ) -> Iterator[SqliteSaver]:
        """LangGraph's spelling: `with SqliteSaver.from_conn_string("file.db") as saver:`."""
        with cls(conn_string, serde=serde) as saver:
            yield saver

    def close(self) -> None:
        if self._owns_conn:
            with self._lock:
                self._conn.close()

    def __enter__(self) -> SqliteSaver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
        # instead of one failing when it upgrades from a read.
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # ---------------------------------------------------------------------------------- read

    def get_tuple(self, config: Config) -> CheckpointTuple | None:
        target = Target.of(config)
        sql = f"SELECT {_ROW_COLUMNS} FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ?"
        params: list[Any] = [target.thread_id, target.ns]
        if target.checkpoint_id:
            sql += " AND checkpoint_id = ?"
            params.append(target.checkpoint_id)
        else:
            sql += " ORDER BY checkpoint_id DESC LIMIT 1"
        with self._transaction(write=False) as db:
            found = db.execute(sql, params).fetchone()
            if found is None:
                return None
            row = StoredCheckpoint(*found)
            return self._load(db, row, self._decode_metadata(row.metadata))

    def list(
        self,
        config: Config | None,
        *,
        filter: dict[str, Any] | None = None,
        before: Config | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        thread_id, ns, checkpoint_id, before_id = list_bounds(config, before)
        clauses, params = [], []
        for clause, value in (
            ("thread_id = ?", thread_id),
            ("checkpoint_ns = ?", ns),
            ("checkpoint_id = ?", checkpoint_id),
            ("checkpoint_id < ?", before_id),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_ROW_COLUMNS} FROM checkpoints {where}"
        sql += " ORDER BY checkpoint_id DESC, thread_id DESC, checkpoint_ns DESC"
        if limit is not None and not filter:
            sql += " LIMIT ?"
            params.append(limit)
        with self._transaction(write=False) as db:
            rows = [StoredCheckpoint(*r) for r in db.execute(sql, params).fetchall()]
        for row in rows:
            if limit is not None and limit <= 0:
                return
            metadata = self._decode_metadata(row.metadata)
            if metadata_matches(metadata, filter):
                with self._transaction(write=False) as db:
                    loaded = self._load(db, row, metadata)
                yield loaded
                if limit is not None:
                    limit -= 1

    def _load(
        self, db: sqlite3.Connection, row: StoredCheckpoint, metadata: Any
    ) -> CheckpointTuple:
        heads = [[channel, *ref] for channel, ref in self._decode_refs(row.refs).items()]
        found = db.execute(
            _CHAIN_SQL,
            {"heads": orjson.dumps(heads).decode(), "thread": row.thread_id, "ns": row.ns},
        )
        blobs = {(r[0], r[1], r[2]): Blob(*r) for r in found}
        writes = db.execute(
            "SELECT task_id, idx, channel, data FROM writes"
            " WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ? ORDER BY rowid",
            (row.thread_id, row.ns, row.checkpoint_id),
        ).fetchall()
        return self._to_tuple(
            row, metadata, lambda channel, ref: blobs.get((channel, *ref)), writes
        )

    # --------------------------------------------------------------------------------- write

    def put(
        self,
        config: Config,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: dict[str, int],
    ) -> Config:
        prepared = self._prepare_put(config, checkpoint, metadata, new_versions)
        target = prepared.target
        with self._transaction(write=True) as db:
            blobs = [self._with_base(db, target, p) for p in prepared.blobs]
            db.executemany(
                "INSERT OR IGNORE INTO blobs (thread_id, checkpoint_ns, channel, version, digest,"
                " kind, data, base_version, base_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        target.thread_id,
                        target.ns,
                        b.channel,
                        b.version,
                        b.digest,
                        b.kind,
                        b.data,
                        b.base_version,
                        b.base_digest,
                    )
                    for b in (p.blob for p in blobs)
                    if b is not None
                ],
            )
            refs = self._encode_refs(self._refs(db, prepared, blobs))
            db.execute(
                f"INSERT OR REPLACE INTO checkpoints ({_ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    target.thread_id,
                    target.ns,
                    prepared.checkpoint_id,
                    target.checkpoint_id,
                    prepared.checkpoint,
                    prepared.metadata,
                    refs,
                ),
            )
        for pending in blobs:
            self.codec.remember(target.thread_id, target.ns, pending)
        return checkpoint_config(target.thread_id, target.ns, prepared.checkpoint_id)

    def _with_base(
        self, db: sqlite3.Connection, target: Target, pending: PendingBlob
    ) -> PendingBlob:
        required = pending.requires
        if required is None:
            return pending
        params = (target.thread_id, target.ns, pending.channel, *required)
        if db.execute(_HAS_BLOB, params).fetchone() is not None:
            return pending
        return self.codec.without_base(pending)

    def _refs(
        self, db: sqlite3.Connection, prepared: PreparedPut, blobs: Sequence[PendingBlob]
    ) -> dict:
        target = prepared.target
        parent_refs = {}
        if target.checkpoint_id is not None:
            found = db.execute(
                "SELECT refs FROM checkpoints"
                " WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                (target.thread_id, target.ns, target.checkpoint_id),
            ).fetchone()
            if found is not None:
                parent_refs = self._decode_refs(found[0])

        def latest(channel: str, version: int) -> str | None:
            found = db.execute(
                "SELECT digest FROM blobs WHERE thread_id = ? AND checkpoint_ns = ?"
                " AND channel = ? AND version = ? ORDER BY rowid DESC LIMIT 1",
                (target.thread_id, target.ns, channel, version),
            ).fetchone()
            return None if found is None else found[0]

        return prepared.refs(blobs, parent_refs, latest)

    def put_writes(
        self,
        config: Config,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        # `task_path` is accepted for LangGraph's signature but not stored: a superstep's
        # writes are applied in the order of the paths its re-planned tasks carry.
        target, encoded = self._prepare_writes_for(config, writes)
        key = (target.thread_id, target.ns, target.checkpoint_id, task_id)
        insert = (
            "INSERT INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel,"
            " data) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        # An upsert keeps the row (and so its rowid, which orders reads) in place.
        overwrite = (
            " ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE"
            " SET channel = excluded.channel, data = excluded.data"
        )
        keep = " ON CONFLICT DO NOTHING"
        with self._transaction(write=True) as db:
            for idx, channel, data in encoded:
                db.execute(
                    insert + (overwrite if idx < 0 else keep),
                    (*key, idx, channel, data),
                )

    def delete_thread(self, thread_id: str) -> None:
        with self._transaction(write=True) as db:
            for table in ("checkpoints", "blobs", "writes"):
                db.execute(f"DELETE FROM {table} WHERE thread_id = ?", (thread_id,))
        self.codec.forget_thread(thread_id)

    def prune(self, thread_id: str, *, keep_last: int) -> None:
        if keep_last < 1:
            raise ValueError("keep_last must be at least 1; use delete_thread to drop a thread")
        with self._transaction(write=True) as db:
            namespaces = [
                ns
                for (ns,) in db.execute(
                    "SELECT DISTINCT checkpoint_ns FROM checkpoints WHERE thread_id = ?",
                    (thread_id,),
                )
            ]
            for ns in namespaces:
                dropped = db.execute(
                    "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND"
                    " checkpoint_ns = ? ORDER BY checkpoint_id DESC LIMIT -1 OFFSET ?",
                    (thread_id, ns, keep_last),
                ).fetchall()
                for table in ("checkpoints", "writes"):
                    db.executemany(
                        f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_ns = ?"
                        " AND checkpoint_id = ?",
                        [(thread_id, ns, checkpoint_id) for (checkpoint_id,) in dropped],
                    )
            heads = [
                (ns, channel, *ref)
                for ns, refs in db.execute(
                    "SELECT checkpoint_ns, refs FROM checkpoints WHERE thread_id = ?", (thread_id,)
                )
                for channel, ref in self._decode_refs(refs).items()
            ]
            stored = db.execute(
                "SELECT rowid, checkpoint_ns, channel, version, digest, base_version, base_digest"
                " FROM blobs WHERE thread_id = ?",
                (thread_id,),
            ).fetchall()
            bases = {
                (ns, channel, version, digest): None if base_v is None else (base_v, base_d)
                for _, ns, channel, version, digest, base_v, base_d in stored
            }
            live = live_blobs(heads, bases)
            db.executemany(
                "DELETE FROM blobs WHERE rowid = ?",
                [(rowid,) for rowid, *key, _, _ in stored if tuple(key) not in live],
            )

    def stored_bytes(self, thread_id: str | None = None) -> int:
        where, params = ("WHERE thread_id = ?", (thread_id,)) if thread_id is not None else ("", ())
        total = 0
        with self._transaction(write=False) as db:
            for table, size in (
                ("checkpoints", "LENGTH(checkpoint) + LENGTH(metadata) + LENGTH(refs)"),
                ("blobs", "LENGTH(data)"),
                ("writes", "LENGTH(data)"),
            ):
                total += db.execute(
                    f"SELECT COALESCE(SUM({size}), 0) FROM {table} {where}", params
                ).fetchone()[0]
        return total
