"""RedisStore: the distributed backend's store, on plain Redis (no modules), Cluster-ready.

Key layout (``P`` the prefix, ``R`` base64url of the namespace's first label, ``N`` the
namespace's labels joined by '.', which labels cannot contain; NUL separates a namespace
from a key, and labels cannot contain NUL either):

- ``P:kv:roots``           sorted set of every ``R`` (for searches and listings across roots)
- ``P:kv:seq``             counter giving items and namespaces their insertion order
- ``P:kv:{R}:ns``          sorted set of the root's namespaces ``N``, all score 0, so that a
                           prefix is a ``ZRANGEBYLEX`` range, never a SCAN of the keyspace
- ``P:kv:{R}:nsseq``       hash ``N`` -> insertion number of the namespace
- ``P:kv:{R}:k:N``         sorted set of the namespace's keys by insertion number
- ``P:kv:{R}:i:N\\0key``    hash: ``v`` value, ``x`` vectors (serde bytes), ``c``/``u``
                           created/updated, ``t`` TTL in ms (absent without a TTL)
- ``P:kv:{R}:exp``         sorted set ``N\\0key`` by expiry time (ms), items with a TTL only

Every key of a root carries the hash tag ``{R}``: one root lives in one Redis Cluster slot
and every script touches one slot (the two global keys are written by separate commands).
Choose the first label to spread load: ``("user-42", "memories")`` spreads users over
slots, ``("memories", "user-42")`` keeps them in one.

TTL: an item's hash expires through Redis (``PEXPIRE``), and a read refreshes it
(``refresh_on_read``); each script first drops the index entries of items that expired
(read from ``exp`` by score, so the cost is the number that expired). Similarity search
reads the values and vectors of every item under the searched prefix in one script per
root and ranks them by cosine in Python: cost grows with the items under the prefix.
Values pass only through `graphdef.serde`; nothing unpickles.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import redis

from graphdef import serde
from graphdef.checkpoint.keys import DEFAULT_PREFIX, b64, check_prefix
from graphdef.redis_client import connect
from graphdef.store.query import Record
from graphdef.store.records import RecordStore, Ref, Write, decode_value

_PRUNE = """
local function prune(base)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local gone = 0
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', base .. 'exp', '-inf', now)) do
    if redis.call('EXISTS', base .. 'i:' .. member) == 0 then
      local sep = string.find(member, '\\0', 1, true)
      local ns = string.sub(member, 1, sep - 1)
      local keys = base .. 'k:' .. ns
      redis.call('ZREM', keys, string.sub(member, sep + 1))
      if redis.call('EXISTS', keys) == 0 then
        redis.call('ZREM', base .. 'ns', ns)
        redis.call('HDEL', base .. 'nsseq', ns)
      end
      gone = gone + 1
    end
    redis.call('ZREM', base .. 'exp', member)
  end
  return {now, gone}
end
"""

# ARGV: base, created/updated stamp, then 7 per write: op (p|d), ns, key, seq, value,
# vectors ('' for none), ttl ms ('0' for none).
_WRITE_LUA = _PRUNE + """
local base, stamp = ARGV[1], ARGV[2]
local now = prune(base)[1]
for i = 3, #ARGV, 7 do
  local op, ns, key = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local member = ns .. '\\0' .. key
  local item, keys = base .. 'i:' .. member, base .. 'k:' .. ns
  if op == 'd' then
    redis.call('DEL', item)
    redis.call('ZREM', keys, key)
    redis.call('ZREM', base .. 'exp', member)
    if redis.call('EXISTS', keys) == 0 then
      redis.call('ZREM', base .. 'ns', ns)
      redis.call('HDEL', base .. 'nsseq', ns)
    end
  else
    local seq, value, vectors, ttl = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], tonumber(ARGV[i + 6])
    if redis.call('EXISTS', item) == 0 then
      redis.call('ZADD', keys, seq, key)
      redis.call('HSET', item, 'c', stamp)
    end
    redis.call('HSET', item, 'v', value, 'u', stamp)
    if vectors == '' then
      redis.call('HDEL', item, 'x')
    else
      redis.call('HSET', item, 'x', vectors)
    end
    if ttl > 0 then
      redis.call('HSET', item, 't', ttl)
      redis.call('PEXPIRE', item, ttl)
      redis.call('ZADD', base .. 'exp', now + ttl, member)
    else
      redis.call('HDEL', item, 't')
      redis.call('PERSIST', item)
      redis.call('ZREM', base .. 'exp', member)
    end
    redis.call('ZADD', base .. 'ns', 0, ns)
    redis.call('HSETNX', base .. 'nsseq', ns, seq)
  end
end
return 1
"""

# ARGV: base, then 3 per item: ns, key, refresh ('1' or '0'). Returns {v, c, u} or false each.
_READ_LUA = _PRUNE + """
local base = ARGV[1]
local now = prune(base)[1]
local out = {}
for i = 2, #ARGV, 3 do
  local member = ARGV[i] .. '\\0' .. ARGV[i + 1]
  local item = base .. 'i:' .. member
  local got = redis.call('HMGET', item, 'v', 'c', 'u', 't')
  if got[1] then
    if ARGV[i + 2] == '1' and got[4] then
      redis.call('PEXPIRE', item, got[4])
      redis.call('ZADD', base .. 'exp', now + tonumber(got[4]), member)
    end
    out[#out + 1] = {got[1], got[2], got[3]}
  else
    out[#out + 1] = false
  end
end
return out
"""

# ARGV: base, prefix N ('' for the whole root), with vectors ('1'/'0'). Returns a flat list:
# per namespace N, its insertion number, its item count, then key, seq, v, x, c, u per item.
_CANDIDATES_LUA = _PRUNE + """
local base, prefix, with_vectors = ARGV[1], ARGV[2], ARGV[3] == '1'
prune(base)
local names
if prefix == '' then
  names = redis.call('ZRANGE', base .. 'ns', 0, -1)
else
  names = redis.call('ZRANGEBYLEX', base .. 'ns', '[' .. prefix .. '.', '(' .. prefix .. '/')
  if redis.call('ZSCORE', base .. 'ns', prefix) then table.insert(names, 1, prefix) end
end
local out = {}
for _, ns in ipairs(names) do
  local keys = redis.call('ZRANGE', base .. 'k:' .. ns, 0, -1, 'WITHSCORES')
  out[#out + 1] = ns
  out[#out + 1] = redis.call('HGET', base .. 'nsseq', ns) or '0'
  out[#out + 1] = #keys / 2
  for j = 1, #keys, 2 do
    local got = redis.call('HMGET', base .. 'i:' .. ns .. '\\0' .. keys[j], 'v', 'x', 'c', 'u')
    out[#out + 1] = keys[j]
    out[#out + 1] = keys[j + 1]
    out[#out + 1] = got[1] or ''
    out[#out + 1] = (with_vectors and got[2]) or ''
    out[#out + 1] = got[3] or ''
    out[#out + 1] = got[4] or ''
  end
end
return out
"""

# ARGV: base, prefix N ('' for all). The root's namespaces with live items under it.
_NAMESPACES_LUA = _PRUNE + """
local base, prefix = ARGV[1], ARGV[2]
prune(base)
if prefix == '' then return redis.call('ZRANGE', base .. 'ns', 0, -1) end
local names = redis.call('ZRANGEBYLEX', base .. 'ns', '[' .. prefix .. '.', '(' .. prefix .. '/')
if redis.call('ZSCORE', base .. 'ns', prefix) then table.insert(names, 1, prefix) end
return names
"""

_SWEEP_LUA = _PRUNE + "return prune(ARGV[1])[2]"


def _text(namespace: tuple[str, ...]) -> str:
    return ".".join(namespace)


class RedisStore(RecordStore):
    """Items in Redis (standalone, or a Cluster: a namespace root's keys share one slot)."""

    def __init__(
        self, url_or_client: str | redis.Redis, *, index: Mapping[str, Any] | None = None,
        ttl: Mapping[str, Any] | None = None, prefix: str = DEFAULT_PREFIX,
    ) -> None:
        super().__init__(index=index, ttl=ttl)
        if isinstance(url_or_client, str):
            self._client: redis.Redis = connect(url_or_client)
            self._owns_client = True
        else:
            self._client, self._owns_client = url_or_client, False
        if getattr(self._client, "get_connection_kwargs", dict)().get("decode_responses"):
            raise ValueError("RedisStore needs a client with decode_responses=False")
        self.prefix = check_prefix(prefix)
        register = self._client.register_script
        self._write_script = register(_WRITE_LUA)
        self._read_script = register(_READ_LUA)
        self._candidates_script = register(_CANDIDATES_LUA)
        self._namespaces_script = register(_NAMESPACES_LUA)
        self._sweep_script = register(_SWEEP_LUA)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStore:
        return cls(url, **kwargs)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- keys ----------------------------------------------------------------------------

    def _base(self, root_tag: str) -> str:
        return f"{self.prefix}:kv:{{{root_tag}}}:"

    def _roots(self, prefix: tuple[str, ...]) -> list[str]:
        if prefix:
            return [b64(prefix[0])]
        return [r.decode() for r in self._client.zrange(f"{self.prefix}:kv:roots", 0, -1)]

    def _run(self, script: Any, root_tag: str, args: list[Any]) -> Any:
        base = self._base(root_tag)
        return script(keys=[base + "ns"], args=[base, *args])

    # ---- the backend ---------------------------------------------------------------------

    def _read(self, refs: list[Ref], refresh: list[bool]) -> list[Record | None]:
        by_root: dict[str, list[int]] = {}
        for i, (ns, _) in enumerate(refs):
            by_root.setdefault(b64(ns[0]) if ns else "", []).append(i)
        found: list[Record | None] = [None] * len(refs)
        for tag, positions in by_root.items():
            if not tag:
                continue
            args: list[Any] = []
            for i in positions:
                args += [_text(refs[i][0]), refs[i][1], "1" if refresh[i] else "0"]
            for i, got in zip(positions, self._run(self._read_script, tag, args), strict=True):
                if got:
                    value, created, updated = got
                    found[i] = Record(refs[i][0], refs[i][1], decode_value(value),
                                      datetime.fromisoformat(created.decode()),
                                      datetime.fromisoformat(updated.decode()))
        return found

    def _candidates(self, prefix: tuple[str, ...], *, with_vectors: bool) -> list[Record]:
        ranked: list[tuple[int, int, Record]] = []
        for tag in self._roots(prefix):
            flat = self._run(self._candidates_script, tag,
                             [_text(prefix), "1" if with_vectors else "0"])
            pos = 0
            while pos < len(flat):
                ns = tuple(flat[pos].decode().split("."))
                ns_seq, count = int(flat[pos + 1]), int(flat[pos + 2])
                pos += 3
                for _ in range(count):
                    key, seq, value, vectors, created, updated = flat[pos: pos + 6]
                    pos += 6
                    if not value:  # expired between the index read and the item read
                        continue
                    ranked.append((ns_seq, int(float(seq)), Record(
                        ns, key.decode(), decode_value(value),
                        datetime.fromisoformat(created.decode()),
                        datetime.fromisoformat(updated.decode()),
                        serde.loads(vectors) if vectors else {},
                    )))
        ranked.sort(key=lambda t: (t[0], t[1]))
        return [record for _, _, record in ranked]

    def _namespaces(self, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        found = []
        for tag in self._roots(prefix):
            for ns in self._run(self._namespaces_script, tag, [_text(prefix)]):
                found.append(tuple(ns.decode().split(".")))
        return found

    def _write(self, writes: list[Write]) -> None:
        puts = sum(1 for w in writes if w.data is not None)
        seq = self._client.incrby(f"{self.prefix}:kv:seq", puts) - puts if puts else 0
        stamp = datetime.now(UTC).isoformat()
        by_root: dict[str, list[Any]] = {}
        for w in writes:
            if not w.namespace:  # a delete in the empty namespace, where nothing is stored
                continue
            args = by_root.setdefault(b64(w.namespace[0]), [])
            if w.data is None:
                args += ["d", _text(w.namespace), w.key, 0, "", "", 0]
                continue
            seq += 1
            ttl_ms = 0 if w.ttl_seconds is None else max(1, round(w.ttl_seconds * 1000))
            args += ["p", _text(w.namespace), w.key, seq, w.data,
                     serde.dumps(w.vectors) if w.vectors else "", ttl_ms]
        if puts:
            self._client.zadd(f"{self.prefix}:kv:roots", dict.fromkeys(by_root, 0))
        for tag, args in by_root.items():
            self._run(self._write_script, tag, [stamp, *args])

    def _touch(self, refs: list[Ref]) -> None:
        self._read(refs, [True] * len(refs))

    def _sweep(self) -> int:
        return sum(int(self._run(self._sweep_script, tag, [])) for tag in self._roots(()))
