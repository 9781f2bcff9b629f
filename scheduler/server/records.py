"""What the HTTP API keeps beside the run store: threads as the Agent Server has them
(created explicitly, with metadata) and each API run's request (its assistant, metadata and
arguments, which `GET /runs/{id}` returns).

A thread's record lives under the thread's hash tag (`cg:{<thread>}:api:thread`), beside
its checkpoints and runs, so deleting a thread touches one Redis Cluster slot. Listing
threads needs one global index, a sorted set by creation time (`cg:api:threads`); it is the
one key here that is not per thread (a sharded index is for later, see the README).

The index is in a slot of its own on Redis Cluster, so it is never in a transaction with a
thread's record. Its entry is written before a thread's record and removed after it: a
process that dies between the two leaves an entry without a record, never a record without
its entry. Readers skip such an entry (`thread` is None for it; search already does), and a
later create of that id reuses it. Nothing removes one that is never created again: an
entry costs a read per search, and removing entries whose record is missing would also
remove a create in progress, which leaves a thread unlisted.
"""

from __future__ import annotations

import time
from typing import Any, cast

import orjson

from scheduler.store import RunStore


class ApiRecords:
    """Thread records and API run requests, on the run store's Redis."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.r = store.r
        self.index = f"{store.prefix}:api:threads"

    def _thread_key(self, thread_id: str) -> str:
        return self.store.key(thread_id, "api", "thread")

    def _run_key(self, thread_id: str, run_id: str) -> str:
        return self.store.key(thread_id, "api", "run", run_id)

    # ---- threads ----------------------------------------------------------------------------

    def create_thread(self, thread_id: str, metadata: dict[str, Any]) -> bool:
        """Record a new thread; False (nothing written) if it exists."""
        key = self._thread_key(thread_id)
        now = time.time()
        self.r.zadd(self.index, {thread_id: now}, nx=True)
        if not self.r.hsetnx(key, "created_at", orjson.dumps(now)):
            return False
        self.r.hset(key, mapping={"updated_at": orjson.dumps(now),
                                  "metadata": orjson.dumps(metadata)})
        return True

    def thread(self, thread_id: str) -> dict[str, Any] | None:
        """`{"thread_id", "created_at", "updated_at", "metadata"}`, or None if unknown."""
        raw = cast(dict[bytes, bytes], self.r.hgetall(self._thread_key(thread_id)))
        if not raw or b"created_at" not in raw:
            return None
        fields = {k.decode(): orjson.loads(v) for k, v in raw.items()}
        return {"thread_id": thread_id, "created_at": fields["created_at"],
                "updated_at": fields.get("updated_at", fields["created_at"]),
                "metadata": fields.get("metadata") or {}}

    def update_metadata(self, thread_id: str, metadata: dict[str, Any]) -> None:
        """Merge `metadata` into the thread's (the Agent Server's PATCH semantics)."""
        current = self.thread(thread_id)
        merged = {**(current["metadata"] if current else {}), **metadata}
        self.r.hset(self._thread_key(thread_id),
                    mapping={"metadata": orjson.dumps(merged),
                             "updated_at": orjson.dumps(time.time())})

    def touch(self, thread_id: str) -> None:
        self.r.hset(self._thread_key(thread_id), "updated_at", orjson.dumps(time.time()))

    def delete_thread(self, thread_id: str) -> None:
        self.r.delete(self._thread_key(thread_id), self.state_updates_key(thread_id))
        self.r.zrem(self.index, thread_id)

    def state_updates_key(self, thread_id: str) -> str:
        """The Redis stream of the thread's state edits through the API, which its thread
        stream (`state_update` mode) reads beside its runs' streams: same hash tag."""
        return self.store.key(thread_id, "api", "state-updates")

    def publish_state_update(self, thread_id: str, event: bytes, max_len: int, ttl: float
                             ) -> None:
        """Append an encoded `state_update` event; the stream lives `ttl` seconds after its
        newest edit, as a run's stream lives after the run."""
        key = self.state_updates_key(thread_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.xadd(key, {"d": event}, maxlen=max_len, approximate=True)
        pipe.expire(key, max(1, int(ttl)))
        pipe.execute()

    def thread_ids(self, newest_first: bool = True) -> list[str]:
        ids = self.r.zrange(self.index, 0, -1, desc=newest_first)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    # ---- runs --------------------------------------------------------------------------------

    def put_run(self, thread_id: str, run_id: str, info: dict[str, Any]) -> None:
        self.r.set(self._run_key(thread_id, run_id), orjson.dumps(info))

    def run(self, thread_id: str, run_id: str) -> dict[str, Any] | None:
        raw = self.r.get(self._run_key(thread_id, run_id))
        return cast(dict[str, Any], orjson.loads(cast(bytes, raw))) if raw else None

    def delete_run(self, thread_id: str, run_id: str) -> None:
        self.r.delete(self._run_key(thread_id, run_id))
