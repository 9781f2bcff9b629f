"""Crons as the API keeps them: one JSON record each (`cg:api:cron:<id>`) and one index by
creation time (`cg:api:crons`). What beat needs to fire them lives beside, in RedBeat's own
keys (`scheduler.beat`); the record is what the fired task reads, so an update takes effect
at the next tick.

Record and index sit in different Redis Cluster slots, so they are written one after the
other, never in one transaction: a record is stored before the index lists it and unlisted
before it is deleted, and its last fired tick goes last. A crash between two of them
leaves a record no search shows or a stray tick key, never an index entry without its
record (`all` skips those anyway)."""

from __future__ import annotations

from typing import Any, cast

import orjson
import redis

from scheduler.store import RunStore

# Set the cron's last fired tick to ARGV[1] if it is later (stamps sort as they come).
CLAIM_SCRIPT = """
local last = redis.call('GET', KEYS[1])
if last and last >= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


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
        removed = self.r.delete(self._key(cron_id))
        self.r.delete(self._fired_key(cron_id))  # a crash just before leaves this key only
        return bool(removed)

    def all(self) -> list[dict[str, Any]]:
        ids = [i.decode() if isinstance(i, bytes) else str(i)
               for i in self.r.zrange(self.index, 0, -1)]
        found = []
        for cron_id in ids:
            record = self.get(cron_id)
            if record is not None:
                found.append(record)
        return found

    def claim_tick(self, cron_id: str, tick: str) -> bool:
        """True if `tick` (a UTC `%Y%m%dT%H%M` stamp) is later than every tick the cron
        fired: a duplicate beat message, or a firing that belongs to a tick fired already
        (a cron with a zone is fired on minutes that are not ticks), starts nothing. One key
        per cron, kept as long as the cron."""
        return bool(self.r.eval(CLAIM_SCRIPT, 1, self._fired_key(cron_id), tick))

    def _fired_key(self, cron_id: str) -> str:
        return f"{self._key(cron_id)}:fired"
