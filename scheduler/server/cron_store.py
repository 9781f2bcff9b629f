"""Crons as the API keeps them: one JSON record each (`cg:api:cron:<id>`) and one index by
creation time (`cg:api:crons`). What beat needs to fire them lives beside, in RedBeat's own
keys (`scheduler.beat`); the record is what the fired task reads, so an update takes effect
at the next tick.

Record and index sit in different Redis Cluster slots, so they are written one after the
other, never in one transaction: a record is stored before the index lists it and unlisted
before it is deleted. A crash between the two leaves a record no search shows, never an
index entry without its record (`all` skips those anyway)."""

from __future__ import annotations

from typing import Any, cast

import orjson
import redis

from scheduler.store import RunStore


class CronStore:
    def __init__(self, store: RunStore) -> None:
        self.r: redis.Redis = store.r
        self.prefix = store.prefix
        self.index = f"{store.prefix}:api:crons"

    def _key(self, cron_id: str) -> str:
        return f"{self.prefix}:api:cron:{cron_id}"

    def put(self, record: dict[str, Any], created_at: float) -> None:
        self.r.set(self._key(record["cron_id"]), orjson.dumps(record))
        self.r.zadd(self.index, {record["cron_id"]: created_at})

    def get(self, cron_id: str) -> dict[str, Any] | None:
        raw = self.r.get(self._key(cron_id))
        return cast(dict[str, Any], orjson.loads(cast(bytes, raw))) if raw else None

    def delete(self, cron_id: str) -> bool:
        self.r.zrem(self.index, cron_id)
        return bool(self.r.delete(self._key(cron_id)))

    def all(self) -> list[dict[str, Any]]:
        ids = [i.decode() if isinstance(i, bytes) else str(i)
               for i in self.r.zrange(self.index, 0, -1)]
        found = []
        for cron_id in ids:
            record = self.get(cron_id)
            if record is not None:
                found.append(record)
        return found

    def claim_tick(self, cron_id: str, tick: str, ttl_seconds: int) -> bool:
        """True for the first firing of `tick` only: a duplicate beat message fires nothing."""
        return bool(self.r.set(f"{self._key(cron_id)}:fired:{tick}", b"1", nx=True,
                               ex=ttl_seconds))
