"""A saver in one SQLite file: the embedded default, needing nothing but the stdlib.

Several processes may share the file (WAL mode; writers wait on ``busy_timeout`` instead of
failing) and threads may share a saver (one lock per connection). Every call runs in one
transaction, so readers never see half of a ``put`` and a failed call stores nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
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
from graphdef.checkpoint.delta import Blob, CorruptStorageError, PendingBlob, live_blobs
from graphdef.serde import SerializerProtocol

# The tables are clustered on their primary keys (WITHOUT ROWID): a rowid table keeps a
# second B-tree, a copy of every key, for the same lookups. `seq` orders one checkpoint's
# writes (and one channel version's blobs) by insertion, as a rowid did. New files get 8 KiB
# pages, whose clustered rows hold about 2 KB; a value that would not fit goes to `payloads`
# (a rowid table, where a page holds 8 KB) and its row keeps the `payload` id, so a 3 KB
# value does not waste most of an overflow page. Ids in UUID form (every id graphdef makes)
# are stored as their 16 bytes.
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
){clustering};
CREATE TABLE IF NOT EXISTS blobs (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    channel TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    kind TEXT NOT NULL,
    data BLOB,
    base_version INTEGER,
    base_digest TEXT,
    seq INTEGER NOT NULL,
    payload INTEGER,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version, digest)
){clustering};
CREATE TABLE IF NOT EXISTS writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    data BLOB,
    seq INTEGER NOT NULL,
    payload INTEGER,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
){clustering};
CREATE TABLE IF NOT EXISTS payloads (
    id INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
"""
_PAGE_SIZE = 8192
# `PRAGMA user_version` of a file in this layout; an earlier release's files have 0 and keep
# their rowid tables and text ids (their `seq` and `payload` columns are added on open).
_LAYOUT = 2
# What every checkpoint row and refs document repeats: deflate's preset dictionary for them.
_ROW_WORDS = (
    b'{"v":1,"ts":"T00:00:00.000000+00:00","channel_versions":{"versions_seen":'
    b'{"updated_channels":["__start__":[1,"branch:to:'
)
_MAX_ROW_BYTES = 1 << 26
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# A stored value, as a row's `data` or, when that row would not fit its page, in `payloads`.
_DATA = "COALESCE({t}.data, (SELECT p.data FROM payloads AS p WHERE p.id = {t}.payload))"

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
SELECT b.channel, b.version, b.digest, b.kind,
       COALESCE(b.data, (SELECT p.data FROM payloads AS p WHERE p.id = b.payload)),
       b.base_version, b.base_digest
FROM chain AS c JOIN blobs AS b
  ON b.thread_id = :thread AND b.checkpoint_ns = :ns AND b.channel = c.channel
 AND b.version = c.version AND b.digest = c.digest
"""

_INSERT_BLOB = """
INSERT OR IGNORE INTO blobs (thread_id, checkpoint_ns, channel, version, digest, kind, data,
                             base_version, base_digest, seq, payload)
SELECT :thread, :ns, :channel, :version, :digest, :kind, :data, :base_version, :base_digest,
       COALESCE(MAX(seq), 0) + 1, :payload
FROM blobs WHERE thread_id = :thread AND checkpoint_ns = :ns AND channel = :channel
             AND version = :version
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
            # Takes effect only on a file with no tables yet (before WAL is switched on).
            self._conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode survives a process crash; only a power loss can drop the
            # last commits, never corrupt the file.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            with self._transaction(write=True) as db:
                fresh = db.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'checkpoints'").fetchone() is None
                page_size = db.execute("PRAGMA page_size").fetchone()[0]
                # A file another component created first (a SqliteStore's) may have smaller
                # pages, on which clustered rows of a few hundred bytes would overflow.
                clustered = page_size >= _PAGE_SIZE
                schema = _SCHEMA.format(clustering=" WITHOUT ROWID" if clustered else "")
                for statement in schema.split(";"):
                    if statement.strip():
                        db.execute(statement)
                if fresh:
                    db.execute(f"PRAGMA user_version = {_LAYOUT}")
                else:
                    _upgrade_older_layout(db)
                layout = db.execute("PRAGMA user_version").fetchone()[0]
                clustered = "WITHOUT ROWID" in db.execute(
                    "SELECT sql FROM sqlite_master WHERE name = 'writes'").fetchone()[0]
        self._id: Callable[[str | None], Any] = _pack_id if layout == _LAYOUT else _same
        # The checkpoint row and its refs, our own JSON, are deflated in this layout.
        self._deflate: Callable[[bytes], bytes] = _deflate if layout == _LAYOUT else bytes
        self._inflate: Callable[[Any], Any] = _inflate if layout == _LAYOUT else _same
        # The largest value kept in its clustered row (the key columns take the rest).
        self._inline: int | None = (
            (page_size - 12) * 64 // 255 - 23 - 256 if clustered and layout == _LAYOUT
            else None)

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
            params.append(self._id(target.checkpoint_id))
        else:
            sql += " ORDER BY checkpoint_id DESC LIMIT 1"
        with self._transaction(write=False) as db:
            found = db.execute(sql, params).fetchone()
            if found is None:
                return None
            row = self._stored(found)
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
            ("checkpoint_id = ?", self._id(checkpoint_id)),
            ("checkpoint_id < ?", self._id(before_id)),
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
            rows = [self._stored(r) for r in db.execute(sql, params).fetchall()]
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
        writes = [
            (_unpack_id(task_id), idx, channel, data)
            for task_id, idx, channel, data in db.execute(
                f"SELECT task_id, idx, channel, {_DATA.format(t='writes')} FROM writes"
                " WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ? ORDER BY seq",
                (row.thread_id, row.ns, self._id(row.checkpoint_id)),
            )
        ]
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
            for b in (p.blob for p in blobs):
                if b is None:
                    continue
                data, payload = self._spill(db, b.data)
                inserted = db.execute(_INSERT_BLOB, {
                    "thread": target.thread_id, "ns": target.ns, "channel": b.channel,
                    "version": b.version, "digest": b.digest, "kind": b.kind, "data": data,
                    "base_version": b.base_version, "base_digest": b.base_digest,
                    "payload": payload,
                }).rowcount
                if not inserted:
                    _drop_payloads(db, [payload])
            found = self._refs(db, prepared, blobs)
            # In the checkpoint's channel order, so that its versions can be read back from
            # the refs in that order (below).
            channel_refs = {c: found[c] for c in prepared.channel_versions if c in found}
            refs = self._encode_refs(channel_refs)
            row = prepared.checkpoint
            if [(c, r[0]) for c, r in channel_refs.items()] == list(
                    prepared.channel_versions.items()):
                # Every version is in the refs already: store it once (`_to_tuple` rebuilds).
                doc = orjson.loads(row)
                del doc["channel_versions"]
                row = orjson.dumps(doc)
            db.execute(
                f"INSERT OR REPLACE INTO checkpoints ({_ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    target.thread_id,
                    target.ns,
                    self._id(prepared.checkpoint_id),
                    self._id(target.checkpoint_id),
                    self._deflate(row),
                    prepared.metadata,
                    self._deflate(refs),
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
                (target.thread_id, target.ns, self._id(target.checkpoint_id)),
            ).fetchone()
            if found is not None:
                parent_refs = self._decode_refs(self._inflate(found[0]))

        def latest(channel: str, version: int) -> str | None:
            found = db.execute(
                "SELECT digest FROM blobs WHERE thread_id = ? AND checkpoint_ns = ?"
                " AND channel = ? AND version = ? ORDER BY seq DESC LIMIT 1",
                (target.thread_id, target.ns, channel, version),
            ).fetchone()
            return None if found is None else found[0]

        return prepared.refs(blobs, parent_refs, latest)

    def _stored(self, row: Sequence[Any]) -> StoredCheckpoint:
        thread_id, ns, checkpoint_id, parent_id, checkpoint, metadata, refs = row
        return StoredCheckpoint(
            thread_id, ns, _unpack_id(checkpoint_id), _unpack_id(parent_id),
            self._inflate(checkpoint), metadata, self._inflate(refs),
        )

    def _spill(self, db: sqlite3.Connection, data: bytes) -> tuple[bytes | None, int | None]:
        """(what the row's `data` holds, its `payloads` id): a value too big for its row
        goes to `payloads`."""
        if self._inline is None or len(data) <= self._inline:
            return data, None
        cursor = db.execute("INSERT INTO payloads (data) VALUES (?)", (data,))
        return None, cursor.lastrowid

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
        key = (target.thread_id, target.ns, self._id(target.checkpoint_id), self._id(task_id))
        insert = (
            "INSERT INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel,"
            " data, seq, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        # An upsert keeps the row (and so its `seq`, which orders reads) in place.
        overwrite = (
            " ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE"
            " SET channel = excluded.channel, data = excluded.data, payload = excluded.payload"
        )
        keep = " ON CONFLICT DO NOTHING"
        with self._transaction(write=True) as db:
            seq = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM writes"
                " WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                key[:3],
            ).fetchone()[0]
            for idx, channel, data in encoded:
                seq += 1
                replaced = db.execute(
                    "SELECT payload FROM writes WHERE thread_id = ? AND checkpoint_ns = ?"
                    " AND checkpoint_id = ? AND task_id = ? AND idx = ?", (*key, idx),
                ).fetchone()
                if replaced is not None and idx >= 0:
                    continue  # the first writer's value stays
                inline, payload = self._spill(db, data)
                db.execute(
                    insert + (overwrite if idx < 0 else keep),
                    (*key, idx, channel, inline, seq, payload),
                )
                if replaced is not None:
                    _drop_payloads(db, [replaced[0]])

    def delete_thread(self, thread_id: str) -> None:
        with self._transaction(write=True) as db:
            for table in ("blobs", "writes"):
                _drop_payloads(db, [p for (p,) in db.execute(
                    f"SELECT payload FROM {table} WHERE thread_id = ?", (thread_id,))])
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
                for (checkpoint_id,) in dropped:
                    _drop_payloads(db, [p for (p,) in db.execute(
                        "SELECT payload FROM writes WHERE thread_id = ? AND checkpoint_ns = ?"
                        " AND checkpoint_id = ?", (thread_id, ns, checkpoint_id))])
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
                for channel, ref in self._decode_refs(self._inflate(refs)).items()
            ]
            stored = db.execute(
                "SELECT checkpoint_ns, channel, version, digest, base_version, base_digest,"
                " payload FROM blobs WHERE thread_id = ?",
                (thread_id,),
            ).fetchall()
            bases = {
                (ns, channel, version, digest): None if base_v is None else (base_v, base_d)
                for ns, channel, version, digest, base_v, base_d, _ in stored
            }
            live = live_blobs(heads, bases)
            dead = [row for row in stored if tuple(row[:4]) not in live]
            _drop_payloads(db, [row[6] for row in dead])
            db.executemany(
                "DELETE FROM blobs WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ?"
                " AND version = ? AND digest = ?",
                [(thread_id, *row[:4]) for row in dead],
            )

    def stored_bytes(self, thread_id: str | None = None) -> int:
        where, params = ("WHERE thread_id = ?", (thread_id,)) if thread_id is not None else ("", ())
        total = 0
        with self._transaction(write=False) as db:
            for table, size in (
                ("checkpoints", "LENGTH(checkpoint) + LENGTH(metadata) + LENGTH(refs)"),
                ("blobs", f"LENGTH({_DATA.format(t='blobs')})"),
                ("writes", f"LENGTH({_DATA.format(t='writes')})"),
            ):
                total += db.execute(
                    f"SELECT COALESCE(SUM({size}), 0) FROM {table} {where}", params
                ).fetchone()[0]
        return total


def _upgrade_older_layout(db: sqlite3.Connection) -> None:
    """A file made by an earlier release has rowid tables without `seq` and `payload`: number
    their rows in rowid (insertion) order, once, so that both layouts read the same way."""
    for table in ("blobs", "writes"):
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if "seq" not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN seq INTEGER")
            db.execute(f"UPDATE {table} SET seq = rowid")
        if "payload" not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN payload INTEGER")


def _pack_id(value: str | None) -> str | bytes | None:
    """An id as stored: its 16 bytes when it is a UUID in canonical form, else as it is. The
    bytes of such ids sort as their text does."""
    if value is not None and _UUID.match(value):
        return uuid.UUID(value).bytes
    return value


def _unpack_id(value: Any) -> Any:
    if not isinstance(value, bytes):
        return value
    if len(value) != 16:
        raise CorruptStorageError(f"stored id {value!r} is neither text nor 16 bytes")
    return str(uuid.UUID(bytes=value))


def _same(value: Any) -> Any:
    """What an earlier release's file stores as it is: ids as text, rows as plain JSON."""
    return value


def _deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=_ROW_WORDS)
    return packer.compress(data) + packer.flush()


def _inflate(data: Any) -> bytes:
    """A stored checkpoint row or its refs as JSON; CorruptStorageError if they do not
    inflate (within a bound no real row comes near)."""
    if not isinstance(data, bytes):
        raise CorruptStorageError(f"a checkpoint row column holds {type(data).__name__}")
    unpacker = zlib.decompressobj(-15, zdict=_ROW_WORDS)
    try:
        out = unpacker.decompress(data, _MAX_ROW_BYTES)
    except zlib.error as exc:
        raise CorruptStorageError(f"a checkpoint row column does not inflate: {exc}") from exc
    if unpacker.unconsumed_tail or not unpacker.eof:
        raise CorruptStorageError("a checkpoint row column is truncated or too large")
    return out


def _drop_payloads(db: sqlite3.Connection, ids: Sequence[int | None]) -> None:
    db.executemany("DELETE FROM payloads WHERE id = ?", [(i,) for i in ids if i is not None])
