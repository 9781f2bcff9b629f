"""User-created assistants as the Agent Server keeps them: a current record and every
version it had, in Redis as JSON (never pickle).

Two hashes under one hash tag (`<prefix>:{assistants}:latest`, `...:versions`), so that a
transaction touching both stays in one Redis Cluster slot: `latest` maps an assistant id
to the assistant as `GET /assistants/{id}` returns it, `versions` maps `<id>/<version>`
to that version. Assistants are few (configurations, not conversations), so search reads
the `latest` hash whole. Writes are optimistic transactions (`WATCH`), so two updates of
one assistant at once give two versions, never one lost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import orjson
import redis

Assistant = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _version_of(assistant: Assistant) -> Assistant:
    """The version entry of an assistant record, the reference server's fields."""
    return {k: assistant[k] for k in ("assistant_id", "version", "graph_id", "config",
                                      "context", "metadata", "name", "description")} | {
        "created_at": assistant["updated_at"]}


class AssistantRecords:
    """User-created assistants on the run store's Redis."""

    def __init__(self, r: redis.Redis, prefix: str) -> None:
        self.r = r
        self.latest_key = f"{prefix}:{{assistants}}:latest"
        self.versions_key = f"{prefix}:{{assistants}}:versions"

    def get(self, assistant_id: str) -> Assistant | None:
        raw = self.r.hget(self.latest_key, assistant_id)
        return cast(Assistant, orjson.loads(cast(bytes, raw))) if raw else None

    def all(self) -> list[Assistant]:
        raw = cast(dict[bytes, bytes], self.r.hgetall(self.latest_key))
        return [orjson.loads(v) for v in raw.values()]

    def create(self, assistant: Assistant) -> Assistant | None:
        """Store a new assistant (its version 1); None, nothing written, if its id exists."""
        now = _now()
        record = {**assistant, "version": 1, "created_at": now, "updated_at": now}
        assistant_id = record["assistant_id"]
        created: list[bool] = []

        def attempt(pipe: redis.client.Pipeline) -> None:
            created.clear()
            if pipe.hexists(self.latest_key, assistant_id):
                return
            pipe.multi()
            pipe.hset(self.latest_key, assistant_id, orjson.dumps(record))
            pipe.hset(self.versions_key, f"{assistant_id}/1", orjson.dumps(_version_of(record)))
            created.append(True)

        self.r.transaction(attempt, self.latest_key)
        return record if created else None

    def _rewrite(self, assistant_id: str, change: Any) -> Assistant | None:
        """Apply `change(current) -> (new record, new version entry or None)` atomically;
        None if the assistant does not exist."""
        written: list[Assistant] = []

        def attempt(pipe: redis.client.Pipeline) -> None:
            written.clear()
            raw = pipe.hget(self.latest_key, assistant_id)
            if not raw:
                return
            record, version = change(orjson.loads(cast(bytes, raw)), pipe)
            pipe.multi()
            pipe.hset(self.latest_key, assistant_id, orjson.dumps(record))
            if version is not None:
                pipe.hset(self.versions_key, f"{assistant_id}/{version['version']}",
                          orjson.dumps(version))
            written[:] = [record]

        self.r.transaction(attempt, self.latest_key)
        return written[0] if written else None

    def update(self, assistant_id: str, fields: Assistant) -> Assistant | None:
        """A new version with `fields` changed (metadata merged), made the latest."""
        def change(current: Assistant, pipe: redis.client.Pipeline
                   ) -> tuple[Assistant, Assistant]:
            newest = max(self._version_numbers(assistant_id, pipe), default=0)
            metadata = {**current["metadata"], **fields.get("metadata", {})}
            record = {**current, **fields, "metadata": metadata, "version": newest + 1,
                      "updated_at": _now()}
            return record, _version_of(record)

        return self._rewrite(assistant_id, change)

    def set_latest(self, assistant_id: str, version: int) -> Assistant | None:
        """Make a stored version the current one; KeyError if the assistant has no such
        version, None if there is no such assistant."""
        entry = self.version(assistant_id, version)

        def change(current: Assistant, pipe: redis.client.Pipeline
                   ) -> tuple[Assistant, None]:
            if entry is None:
                raise KeyError(version)
            kept = {k: entry[k] for k in ("graph_id", "config", "context", "metadata",
                                          "name", "description", "version")}
            return {**current, **kept, "updated_at": _now()}, None

        return self._rewrite(assistant_id, change)

    def version(self, assistant_id: str, version: int) -> Assistant | None:
        raw = self.r.hget(self.versions_key, f"{assistant_id}/{version}")
        return cast(Assistant, orjson.loads(cast(bytes, raw))) if raw else None

    def _version_numbers(self, assistant_id: str, r: Any) -> list[int]:
        fields = cast(list[bytes], r.hkeys(self.versions_key))
        prefix = f"{assistant_id}/".encode()
        return [int(f[len(prefix):]) for f in fields if f.startswith(prefix)]

    def versions(self, assistant_id: str) -> list[Assistant]:
        """Every version of the assistant, newest first."""
        numbers = sorted(self._version_numbers(assistant_id, self.r), reverse=True)
        if not numbers:
            return []
        raw = cast(list[bytes], self.r.hmget(self.versions_key,
                                             [f"{assistant_id}/{n}" for n in numbers]))
        return [orjson.loads(v) for v in raw if v]

    def delete(self, assistant_id: str) -> bool:
        """Drop the assistant and its versions; False if it did not exist."""
        numbers = self._version_numbers(assistant_id, self.r)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hdel(self.latest_key, assistant_id)
            if numbers:
                pipe.hdel(self.versions_key, *[f"{assistant_id}/{n}" for n in numbers])
            removed = pipe.execute()[0]
        return bool(removed)
