"""The sweep's index: sorted sets of deadlines, so that a sweep reads only what is due.

A sweep used to read every active run, every half second, whether anything was wrong or not:
its cost grew with the running nodes times time. Now work that can be lost leaves a deadline
here, and a sweep reads only the members whose deadline has passed. Two kinds of member:

- a **run** (`["r", thread, run]`): when the sweeper must next look at that run. A lease that
  lapses by itself (every lease starts so, `RunStore.acquire_lease`) pushes its run's look to
  no later than its expiry (`ZADD LT`), in the round trip that takes it; a look that finds the
  run still waiting on something time-bound (a start, an advance, a task in a queue, a lease
  that will lapse) sets its next look; a look that finds nothing left to watch removes it.
- a **holder** (`["h", holder]`): a worker process's liveness (`scheduler.leases.Liveness`).
  Its one heartbeat raises its deadline (`ZADD GT`) for every lease it holds, and the leases
  it adopted (made to outlive their own expiry) are listed in its `held` set. A holder whose
  deadline passed is dead: the sweeper revokes those leases and looks at their runs at once.

Scores are milliseconds on Redis's clock (`ServerClock`), so hosts with skewed clocks agree on
when a holder is dead.

**Sharded.** Members are spread over `SHARDS` shards by a CRC of their thread (runs) or holder
id (holders). A shard's keys share one hash tag, `{~sweep.<k>}`, that no thread's tag can be
(`graphdef.checkpoint.keys.thread_tag`: raw tags never start with `~`, encoded ones are
base64url, which has no `.`), so each script below touches one slot, and on Redis Cluster the
shards spread over the masters. Sweepers say they are alive in one small sorted set
(`{~sweep.peers}:sweepers`) and split the shards by rank among the live ones, so several
sweepers share the work; a sweep of a shard with nothing due is one `ZRANGEBYSCORE`. Nothing
here is in a transaction with a thread's keys: where the two must agree, the order of writes
and the claim protocol below carry it (the reasoning is at each method).

**Claims.** A sweeper that takes due members marks them (runs: a claim score some lease
lifetimes ahead, `Sweeper.sweep_shard`; holders: -1) before it looks, and settles them after:
a writer that pushes the member meanwhile (`ZADD LT` lowers a run's claim score, as every push
is at most a lifetime ahead; `ZADD GT` raises a holder's -1) changes the score, so the settle
sees it and keeps the writer's deadline instead of dropping the member. A sweeper that dies
mid-look leaves claimed runs to be looked at again when the claim score passes, and claimed
holders (-1 is always due) at the next pass.

**Growing.** Redis Cluster needs nothing more: shards are keys of their own slots, and every
command here names one shard. `SHARDS` can grow only with a drain (or with sweepers that read
the old and the new layout for a while), since it decides where a member lives.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Sequence
from typing import Any, cast

import orjson
import redis

# Fixed, not a setting: every process must put a member in the shard every sweeper reads it
# from. Each shard costs its sweeper one scan per pass (2/s at the default interval); more
# shards let more sweepers share the work, and spread the index over more cluster slots.
SHARDS = 4
# A new run's first look: about when a start that died would be sent again (after the
# default lease); sooner would only find the start still at work and cost a second look.
FIRST_LOOK_MS = 2_000
HELD_BATCH = 500  # members per script call (Lua's unpack has a stack limit)

# KEYS: due, held. ARGV: holder member, deadline, number of adds, adds..., removes...
# Raises the holder's deadline and lists (or forgets) its adopted leases in one step; a holder
# left with no adopted lease drops its entry: it needs no liveness.
_HOLD = """
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local n = tonumber(ARGV[3])
if n > 0 then redis.call('SADD', KEYS[2], unpack(ARGV, 4, 3 + n)) end
if #ARGV > 3 + n then
  redis.call('SREM', KEYS[2], unpack(ARGV, 4 + n, #ARGV))
  if redis.call('SCARD', KEYS[2]) == 0 then redis.call('ZREM', KEYS[1], ARGV[1]) end
end
return 1
"""

# KEYS: due. ARGV: now, then (member, claim score) pairs. Claims the members still due.
_CLAIM = """
local out = {}
for i = 2, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) <= tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    out[#out + 1] = ARGV[i]
  end
end
return out
"""

# KEYS: due. ARGV: the claim score, then (member, next look or '') pairs. A member still at the
# claim score takes the next look, or goes; one a writer pushed meanwhile keeps the earlier.
_SETTLE = """
for i = 2, #ARGV, 2 do
  local m, nxt = ARGV[i], ARGV[i + 1]
  local s = redis.call('ZSCORE', KEYS[1], m)
  if s and tonumber(s) == tonumber(ARGV[1]) then
    if nxt == '' then redis.call('ZREM', KEYS[1], m) else redis.call('ZADD', KEYS[1], nxt, m) end
  elseif s and nxt ~= '' then
    redis.call('ZADD', KEYS[1], 'LT', nxt, m)
  end
end
return 1
"""

# KEYS: due, held. ARGV: holder member. Forgets a dead holder once its held set is empty and
# it did not beat since it was claimed.
_RETIRE = """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == -1 and redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

def shard_of(text: str) -> int:
    """The shard of a thread (for its runs) or a holder; the same in every process."""
    return zlib.crc32(text.encode()) % SHARDS


def run_member(thread_id: str, run_id: str) -> bytes:
    return orjson.dumps(["r", thread_id, run_id])


def holder_member(holder: str) -> bytes:
    return orjson.dumps(["h", holder])


def held_member(thread_id: str, run_id: str, name: str, owner: str) -> bytes:
    """An adopted lease as its holder's `held` set lists it: enough to revoke it."""
    return orjson.dumps([thread_id, run_id, name, owner])


def parse(member: bytes) -> list[str]:
    value: list[str] = orjson.loads(member)
    return value


class ServerClock:
    """Redis's clock, read as this host's clock plus an offset measured with `TIME`.

    Holder deadlines are compared across hosts: with each host's own clock, a skew of a
    second would have a live process declared dead. The offset is measured again now and then
    (NTP steps the local clock).
    """

    REFRESH_SECONDS = 300.0

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._offset: float | None = None
        self._measured = 0.0
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return int((time.time() + self.offset()) * 1000)

    def offset(self) -> float:
        with self._lock:
            if self._offset is None or time.monotonic() - self._measured > self.REFRESH_SECONDS:
                before = time.time()
                seconds, micros = self.client.time()
                after = time.time()
                self._offset = seconds + micros / 1e6 - (before + after) / 2
                self._measured = time.monotonic()
            return self._offset


class Deadlines:
    """The sharded index on one Redis (key `prefix`); one per process and client is enough."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix
        self.clock = ServerClock(client)
        self._hold = client.register_script(_HOLD)
        self._claim = client.register_script(_CLAIM)
        self._settle = client.register_script(_SETTLE)
        self._retire = client.register_script(_RETIRE)

    def key(self, shard: int, *parts: str) -> str:
        return f"{self.prefix}:{{~sweep.{shard}}}:" + ":".join(parts)

    def due_key_of_thread(self, thread_id: str) -> str:
        return self.key(shard_of(thread_id), "due")

    # ---- runs -------------------------------------------------------------------------------

    def look_by(self, thread_id: str, run_id: str, at_ms: int,
                pipe: redis.client.Pipeline | None = None) -> None:
        """The sweeper looks at the run no later than `at_ms` (earlier if already due)."""
        (pipe or self.r).zadd(self.due_key_of_thread(thread_id),
                              {run_member(thread_id, run_id): at_ms}, lt=True)

    # ---- holders ----------------------------------------------------------------------------

    def hold(self, holder: str, deadline_ms: int, adds: Sequence[bytes] = (),
             removes: Sequence[bytes] = (), pipe: redis.client.Pipeline | None = None) -> None:
        """Beat: raise the holder's deadline; list newly adopted leases, forget released ones.
        With `pipe`, only queued there (by EVALSHA: `scripts` must be loaded).

        Adds are listed before the leases are made to outlive their expiry (`Liveness`), so a
        lease without an expiry is always in a live-or-swept holder's set.
        """
        shard = shard_of(holder)
        member = holder_member(holder)
        client = pipe or self.r
        if not adds and not removes:
            client.zadd(self.key(shard, "due"), {member: deadline_ms}, gt=True)
            return
        keys = [self.key(shard, "due"), self.key(shard, "held", holder)]
        none: Sequence[bytes] = ()
        chunks = [(adds[i:i + HELD_BATCH], none) for i in range(0, len(adds), HELD_BATCH)]
        chunks += [(none, removes[i:i + HELD_BATCH]) for i in range(0, len(removes), HELD_BATCH)]
        for chunk_adds, chunk_removes in chunks:
            args: list[bytes | int] = [member, deadline_ms, len(chunk_adds), *chunk_adds,
                                       *chunk_removes]
            if pipe is None:
                self._hold(keys=keys, args=args)
            else:
                pipe.evalsha(self._hold.sha, len(keys), *keys, *args)

    @property
    def scripts(self) -> tuple[Any, ...]:
        return (self._hold, self._claim, self._settle, self._retire)

    def held(self, shard: int, holder: str) -> list[bytes]:
        return sorted(cast(set[bytes], self.r.smembers(self.key(shard, "held", holder))))

    def forget_held(self, shard: int, holder: str, members: Sequence[bytes]) -> None:
        if members:
            self.r.srem(self.key(shard, "held", holder), *members)

    def retire(self, shard: int, holder: str) -> bool:
        """Drop a dead holder's entry once the sweeper has revoked all it held."""
        return bool(self._retire(keys=[self.key(shard, "due"), self.key(shard, "held", holder)],
                                 args=[holder_member(holder)]))

    # ---- the sweeper's side -----------------------------------------------------------------

    def due(self, shard: int, now_ms: int, limit: int) -> list[bytes]:
        """Members of the shard whose deadline passed, most overdue first."""
        return cast(list[bytes], self.r.zrangebyscore(self.key(shard, "due"), "-inf", now_ms,
                                                      start=0, num=limit))

    def claim(self, shard: int, now_ms: int, claims: dict[bytes, int]) -> list[bytes]:
        """Mark due members as being looked at (score per member); those still due."""
        if not claims:
            return []
        args: list[Any] = [now_ms]
        for member, score in claims.items():
            args += [member, score]
        return cast(list[bytes], self._claim(keys=[self.key(shard, "due")], args=args))

    def settle(self, shard: int, claim_ms: int, looks: dict[bytes, int | None]) -> None:
        """After a look: each run's next look, or None when nothing is left to watch."""
        if not looks:
            return
        args: list[Any] = [claim_ms]
        for member, at in looks.items():
            args += [member, "" if at is None else at]
        self._settle(keys=[self.key(shard, "due")], args=args)

    def sweepers(self, me: str, ttl_ms: int) -> list[str]:
        """Say `me` sweeps for `ttl_ms` more; the sweepers alive, sorted: each takes the
        shards whose number modulo their count is its rank (`Sweeper.follow_peers`).
        Entries dead for a minute are dropped on the way."""
        key = f"{self.prefix}:{{~sweep.peers}}:sweepers"
        now = self.clock.now_ms()
        with self.r.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {me: now + ttl_ms}, gt=True)
            pipe.zremrangebyscore(key, "-inf", now - 60_000)
            pipe.zrangebyscore(key, now, "+inf")
            live = pipe.execute()[-1]
        return sorted(m.decode() for m in live)

    def leave(self, me: str) -> None:
        """A sweeper that stops hands its shards over at once."""
        self.r.zrem(f"{self.prefix}:{{~sweep.peers}}:sweepers", me)
