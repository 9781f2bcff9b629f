"""A saver in process memory, for tests and one-shot runs.

It still serializes everything it stores, so its stored bytes are real (for storage
benchmarks), non-serializable state fails here just as it would on SQLite or Redis, and a
caller mutating a value after ``put`` cannot change what was saved.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

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

_BlobKey = tuple[str, str, str, int, str]  # (thread, ns, channel, version, digest)


class _Write(NamedTuple):
    channel: str
    task_path: str
    data: bytes


class InMemorySaver(BaseCheckpointSaver):
    def __init__(self, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self._lock = threading.RLock()
        # (thread, ns) -> checkpoint id -> row
        self._checkpoints: dict[tuple[str, str], dict[str, StoredCheckpoint]] = {}
        self._blobs: dict[_BlobKey, Blob] = {}
        # (thread, ns, checkpoint id) -> (task id, idx) -> write, in insertion order
        self._writes: dict[tuple[str, str, str], dict[tuple[str, int], _Write]] = {}

    def get_tuple(self, config: Config) -> CheckpointTuple | None:
        target = Target.of(config)
        with self._lock:
            rows = self._checkpoints.get((target.thread_id, target.ns)) or {}
            checkpoint_id = target.checkpoint_id or max(rows, default=None)
            row = rows.get(checkpoint_id) if checkpoint_id else None
            return None if row is None else self._load(row)

    def list(
        self,
        config: Config | None,
        *,
        filter: dict[str, Any] | None = None,
        before: Config | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        thread_id, ns, checkpoint_id, before_id = list_bounds(config, before)
        with self._lock:
            rows = [
                row
                for (t, n), by_id in self._checkpoints.items()
                if (thread_id is None or t == thread_id) and (ns is None or n == ns)
                for row in by_id.values()
                if (checkpoint_id is None or row.checkpoint_id == checkpoint_id)
                and (before_id is None or row.checkpoint_id < before_id)
            ]
        rows.sort(key=lambda r: (r.checkpoint_id, r.thread_id, r.ns), reverse=True)
        for row in rows:
            if limit is not None and limit <= 0:
                return
            metadata = self._decode_metadata(row.metadata)
            if metadata_matches(metadata, filter):
                with self._lock:
                    yield self._load(row, metadata)
                if limit is not None:
                    limit -= 1

    def _load(self, row: StoredCheckpoint, metadata: Any = None) -> CheckpointTuple:
        writes = self._writes.get((row.thread_id, row.ns, row.checkpoint_id)) or {}
        return self._to_tuple(
            row,
            self._decode_metadata(row.metadata) if metadata is None else metadata,
            lambda channel, ref: self._blobs.get((row.thread_id, row.ns, channel, *ref)),
            [(task_id, idx, w.channel, w.data) for (task_id, idx), w in writes.items()],
        )

    def put(
        self,
        config: Config,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: dict[str, int],
    ) -> Config:
        prepared = self._prepare_put(config, checkpoint, metadata, new_versions)
        target = prepared.target
        with self._lock:
            # Everything that can fail happens before the first mutation.
            blobs = [self._with_base(target, p) for p in prepared.blobs]
            refs = self._encode_refs(self._refs(prepared, blobs))
            for pending in blobs:
                if pending.blob is not None:
                    key = (target.thread_id, target.ns, pending.channel, *pending.ref)
                    self._blobs.setdefault(key, pending.blob)
            rows = self._checkpoints.setdefault((target.thread_id, target.ns), {})
            rows[prepared.checkpoint_id] = StoredCheckpoint(
                target.thread_id,
                target.ns,
                prepared.checkpoint_id,
                target.checkpoint_id,
                prepared.checkpoint,
                prepared.metadata,
                refs,
            )
        for pending in blobs:
            self.codec.remember(target.thread_id, target.ns, pending)
        return checkpoint_config(target.thread_id, target.ns, prepared.checkpoint_id)

    def _with_base(self, target: Target, pending: PendingBlob) -> PendingBlob:
        required = pending.requires
        if required is None:
            return pending
        if (target.thread_id, target.ns, pending.channel, *required) in self._blobs:
            return pending
        return self.codec.without_base(pending)

    def _refs(self, prepared: PreparedPut, blobs: Sequence[PendingBlob]) -> dict:
        target = prepared.target
        parent = None
        if target.checkpoint_id is not None:
            parent = self._checkpoints.get((target.thread_id, target.ns), {}).get(
                target.checkpoint_id
            )

        def latest(channel: str, version: int) -> str | None:
            # The newest blob of that version: dicts keep insertion order.
            found = None
            for thread_id, ns, ch, v, digest in self._blobs:
                if (thread_id, ns, ch, v) == (target.thread_id, target.ns, channel, version):
                    found = digest
            return found

        parent_refs = self._decode_refs(parent.refs) if parent is not None else {}
        return prepared.refs(blobs, parent_refs, latest)

    def put_writes(
        self,
        config: Config,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        target, encoded = self._prepare_writes_for(config, writes)
        with self._lock:
            stored = self._writes.setdefault(
                (target.thread_id, target.ns, target.checkpoint_id), {}
            )
            for idx, channel, data in encoded:
                if idx < 0 or (task_id, idx) not in stored:
                    stored[(task_id, idx)] = _Write(channel, task_path, data)

    def delete_thread(self, thread_id: str) -> None:
        with self._lock:
            for store in (self._checkpoints, self._blobs, self._writes):
                for key in [k for k in store if k[0] == thread_id]:
                    del store[key]
        self.codec.forget_thread(thread_id)

    def prune(self, thread_id: str, *, keep_last: int) -> None:
        if keep_last < 1:
            raise ValueError("keep_last must be at least 1; use delete_thread to drop a thread")
        with self._lock:
            heads = []
            for (t, ns), rows in self._checkpoints.items():
                if t != thread_id:
                    continue
                for checkpoint_id in sorted(rows, reverse=True)[keep_last:]:
                    del rows[checkpoint_id]
                    self._writes.pop((t, ns, checkpoint_id), None)
                for row in rows.values():
                    refs = self._decode_refs(row.refs)
                    heads.extend((ns, channel, *ref) for channel, ref in refs.items())
            bases = {key[1:]: blob.base for key, blob in self._blobs.items() if key[0] == thread_id}
            live = live_blobs(heads, bases)
            for key in [k for k in self._blobs if k[0] == thread_id and k[1:] not in live]:
                del self._blobs[key]

    def stored_bytes(self, thread_id: str | None = None) -> int:
        with self._lock:
            total = sum(
                len(row.checkpoint) + len(row.metadata) + len(row.refs)
                for (t, _), rows in self._checkpoints.items()
                if thread_id is None or t == thread_id
                for row in rows.values()
            )
            total += sum(
                len(blob.data)
                for key, blob in self._blobs.items()
                if thread_id is None or key[0] == thread_id
            )
            total += sum(
                len(write.data)
                for key, writes in self._writes.items()
                if thread_id is None or key[0] == thread_id
                for write in writes.values()
            )
        return total


# LangGraph's older name, so that programs using it port by changing imports only.
MemorySaver = InMemorySaver
