"""A saver in Redis, shared by every worker and scheduler of a distributed deployment.

Key layout (``P`` is the prefix, ``T`` the thread's hash tag, ``N`` an encoded namespace):

- ``P:{T}:keys``          set of every other key of the thread (for TTL, prune and delete)
- ``P:{T}:cps:N``         sorted set of checkpoint ids, all score 0, so ordered as text (= age)
- ``P:{T}:cp:N``          hash, three fields per checkpoint: ``c:<id>`` -> checkpoint row
                          (serde bytes, no values), ``m:<id>`` -> metadata (serde bytes),
                          ``r:<id>`` -> JSON ``{"p": parent id, "f": [blob fields]}``; and
                          ``l:<version>:<channel>`` -> digest of that version's newest blob
- ``P:{T}:blob:N``        hash ``<version>:<digest>:<channel>`` -> blob record (``_blob_record``)
- ``P:{T}:writes:N:<id>`` hash ``<idx>:<task id>`` -> pending write record (one per checkpoint)

A checkpoint's row, metadata and refs and its channels' newest digests share one hash, so
that a put writes them with one ``HSET`` and a load reads them with one ``HMGET`` (Redis
counts a script's commands one by one: four hashes cost three commands more per step). A
field's kind is its first letter, so no checkpoint id or channel name can make two fields
one.

Every key of a thread carries the same ``{T}`` hash tag, so a thread lives in one Redis Cluster
slot and every script and transaction below touches one slot. Scripts reach the thread's keys
listed in its ``keys`` set (or derived from the thread prefix) without declaring each of them;
Redis allows that for keys of the declared keys' slot.

Writes are atomic: ``put`` reads what it depends on under WATCH and writes in one MULTI/EXEC
(retrying if another writer touched the namespace's blobs meanwhile); ``put_writes``, ``prune``
and ``delete_thread`` are single Lua scripts. Everything a call stores is encoded before Redis
is touched, so a value the serde rejects stores nothing. Values only pass through the serde:
nothing here unpickles.
"""

from __future__ import annotations

import builtins
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from redis.exceptions import WatchError

from graphdef.checkpoint.base import (
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    Config,
    PreparedPut,
    StoredCheckpoint,
    StoredWrite,
    Target,
    checkpoint_config,
    list_bounds,
    load_json,
    metadata_matches,
)
from graphdef.checkpoint.delta import (
    DELTA,
    EMPTY,
    FULL,
    Blob,
    BlobRef,
    CorruptStorageError,
    PendingBlob,
)
from graphdef.checkpoint.keys import (
    DEFAULT_PREFIX,
    b64,
    check_prefix,
    glob_escape,
    thread_prefix,
    threads_matching,
    unb64,
)
from graphdef.errors import StaleCheckpointError
from graphdef.redis_client import connect
from graphdef.serde import SerializerProtocol

__all__ = ["RedisSaver"]

_KIND_CODE = {EMPTY: b"e", FULL: b"f", DELTA: b"d"}
_CODE_KIND = {code[0]: kind for kind, code in _KIND_CODE.items()}
_SEQ_WIDTH = 12  # digits of the insertion counter that starts a pending write record
_LIST_BATCH = 100
_WRITES_PER_SLICE = 1000  # writes a put_writes script reads and sets per command
_FAST_PUT_MAX_BLOBS = 1000  # a put storing more blobs goes the WATCH way

# Re-expires every key of a thread (``refresh``), shared by the scripts that write.
REFRESH_FN = """
local function refresh(index, ms)
  if ms > 0 then
    for _, key in ipairs(redis.call('SMEMBERS', index)) do
      redis.call('PEXPIRE', key, ms)
    end
    redis.call('PEXPIRE', index, ms)
  end
end
"""

# KEYS[1] thread index; ARGV[1] ttl in ms.
_TOUCH_LUA = REFRESH_FN + "refresh(KEYS[1], tonumber(ARGV[1]))\nreturn 1\n"

# Saves one checkpoint's pending writes: the writes hash, the thread index, and the triples
# (field, '1' to overwrite an existing value, record) in ARGV[first..last]. A new field gets the
# next insertion number; an overwritten one keeps its number, so reads keep the order tasks
# first wrote in. The first memo wins: a field already there is left alone unless flagged.
# One read of the fields and one HSET, whatever the number of writes (one HSETNX for a lone
# write that must not overwrite); the hash is listed in the thread's index by the call that
# creates it (a hash that exists is listed already). `fresh`: the caller knows the hash is
# empty (no read). A function, so that a script of the scheduler's that saves a memo with
# other writes (`scheduler.store`) runs the same code.
PUT_WRITES_FN = f"""
local function put_writes(writes, index, first, last, fresh)
  local seq = fresh and 0 or redis.call('HLEN', writes)
  local created = seq == 0
  -- In slices: Lua's unpack takes a few thousand values at most.
  for from = first, last, 3 * {_WRITES_PER_SLICE} do
    local to = math.min(last, from + 3 * {_WRITES_PER_SLICE} - 1)
    local fields = {{}}
    for i = from, to, 3 do fields[#fields + 1] = ARGV[i] end
    if not created and #fields == 1 and ARGV[from + 1] ~= '1' then
      -- One write that must not overwrite (most of a fan-out's tasks): one HSETNX.
      local record = string.format('%0{_SEQ_WIDTH}d', seq) .. ARGV[from + 2]
      seq = seq + redis.call('HSETNX', writes, fields[1], record)
      fields = {{}}
    end
    local old = (created or #fields == 0) and {{}} or redis.call('HMGET', writes, unpack(fields))
    local set = {{}}
    for j, field in ipairs(fields) do
      local i = from + (j - 1) * 3
      if not old[j] then
        set[#set + 1] = field
        set[#set + 1] = string.format('%0{_SEQ_WIDTH}d', seq) .. ARGV[i + 2]
        seq = seq + 1
      elseif ARGV[i + 1] == '1' then
        set[#set + 1] = field
        set[#set + 1] = string.sub(old[j], 1, {_SEQ_WIDTH}) .. ARGV[i + 2]
      end
    end
    if #set > 0 then redis.call('HSET', writes, unpack(set)) end
  end
  if created then redis.call('SADD', index, writes) end
end
"""

# KEYS[1] writes hash, KEYS[2] thread index; ARGV[1] ttl in ms (0: none), then the triples.
_PUT_WRITES_LUA = (
    REFRESH_FN
    + PUT_WRITES_FN
    + """
put_writes(KEYS[1], KEYS[2], 2, #ARGV, false)
refresh(KEYS[2], tonumber(ARGV[1]))
return 1
"""
)

# The put of a checkpoint whose parent is the namespace's head and whose channel refs the
# writer already knows (`_RefsCache`), or of a namespace's first checkpoint: checks and
# writes in one script, no WATCH round trips. KEYS[k..k+3]: cps, cp, blob, index, then at k+4
# the guard key if `guarded`. ARGV[a..]: ttl in ms, expected head ('' for
# none), guard value, checkpoint id, checkpoint, metadata, refs row, the number of delta bases
# that must be stored and those blob fields, then (blob field, record, latest field, digest)
# per blob, to ARGV[last]. Returns 'ok'; 'guard' (the guard key holds another value);
# {'head', newest id}; or 'base' (a delta base is gone: the caller puts the slow way); every
# check is made before the first write. A blob field names its content (version, digest,
# channel), so a full or empty record written over one already stored changes nothing, and
# all of them go in one HSET; a delta is set only where none is (HSETNX): written over a
# stored record, it could make a delta chain through a newer base loop back on itself (a
# fork's put of a version an older lineage stored, based on the newest blob of its channel).
# A namespace with a head has its keys in the index
# already (its first put listed them). A function, for the scheduler's scripts that write a
# checkpoint with other writes (`scheduler.store`).
PUT_CHILD_OF_HEAD_FN = """
local function put_child_of_head(k, guarded, a, last)
  local cps, cp, blobs, index = unpack(KEYS, k, k + 3)
  if guarded and redis.call('GET', KEYS[k + 4]) ~= ARGV[a + 2] then return 'guard' end
  local newest = redis.call('ZREVRANGE', cps, 0, 0)
  if (newest[1] or '') ~= ARGV[a + 1] then return {'head', newest[1] or false} end
  local bases = tonumber(ARGV[a + 7])
  for i = a + 8, a + 7 + bases do
    if redis.call('HEXISTS', blobs, ARGV[i]) == 0 then return 'base' end
  end
  if ARGV[a + 1] == '' then redis.call('SADD', index, cps, cp, blobs) end
  local id = ARGV[a + 3]
  local fields = {'c:' .. id, ARGV[a + 4], 'm:' .. id, ARGV[a + 5], 'r:' .. id, ARGV[a + 6]}
  local whole = {}
  for i = a + 8 + bases, last, 4 do
    if string.byte(ARGV[i + 1]) == 100 then  -- 'd': a delta keeps the record stored first
      redis.call('HSETNX', blobs, ARGV[i], ARGV[i + 1])
    else
      whole[#whole + 1] = ARGV[i]
      whole[#whole + 1] = ARGV[i + 1]
    end
    fields[#fields + 1] = ARGV[i + 2]
    fields[#fields + 1] = ARGV[i + 3]
  end
  if #whole > 0 then redis.call('HSET', blobs, unpack(whole)) end
  redis.call('HSET', cp, unpack(fields))
  redis.call('ZADD', cps, 0, id)
  return 'ok'
end
"""

_PUT_CHILD_OF_HEAD_LUA = (
    REFRESH_FN
    + PUT_CHILD_OF_HEAD_FN
    + """
local done = put_child_of_head(1, KEYS[5] ~= nil, 1, #ARGV)
if done == 'ok' then refresh(KEYS[4], tonumber(ARGV[1])) end
return done
"""
)

# Pushes the blobs a field's delta chain needs, and reads the blob fields of a refs row
# (checking its shape); shared by load and prune.
_CHAIN = """
local function chain(blobs, stack, visit)
  local seen = {}
  while #stack > 0 do
    local field = table.remove(stack)
    if not seen[field] then
      seen[field] = true
      local blob = redis.call('HGET', blobs, field)
      if blob then
        visit(field, blob)
        local base = string.match(blob, '^d([^|]*)|')
        local channel = string.match(field, '^[^:]*:[^:]*:(.*)$')
        if base and channel then  -- else malformed: the Python side reports it
          stack[#stack + 1] = base .. ':' .. channel
        end
      end
    end
  end
  return seen
end

-- The blob fields a refs row names, or nil and what is wrong with the row.
local function heads(row)
  local ok, doc = pcall(cjson.decode, row)
  if not ok then return nil, 'are not JSON' end
  if type(doc) ~= 'table' then return nil, 'are not an object' end
  local fields = doc['f']
  if type(fields) ~= 'table' then return nil, 'have no list of blob fields' end
  local stack = {}
  for i, field in ipairs(fields) do
    if type(field) ~= 'string' then return nil, 'name a blob field that is not a string' end
    stack[i] = field
  end
  return stack
end
"""

# KEYS cps, cp, blob; ARGV[1] checkpoint id ('' = newest), ARGV[2] writes key
# prefix. Returns false (no such checkpoint), {'corrupt', what is wrong, id}, or
# {'ok', id, checkpoint, metadata, refs, {field, blob, ...}, writes}. The newest id of the
# index without a checkpoint row is corrupt, not an empty thread (a runner would start over).
_LOAD_LUA = (
    _CHAIN
    + """
local id = ARGV[1]
local indexed = id == ''
if indexed then
  local newest = redis.call('ZREVRANGE', KEYS[1], 0, 0)
  if #newest == 0 then return false end
  id = newest[1]
end
local row = redis.call('HMGET', KEYS[2], 'c:' .. id, 'm:' .. id, 'r:' .. id)
local checkpoint, metadata, refs = row[1], row[2], row[3]
if not checkpoint then
  if indexed then return {'corrupt', 'is the newest in the index but has no row', id} end
  return false
end
if not metadata then return {'corrupt', 'has no metadata', id} end
if not refs then return {'corrupt', 'has no channel refs', id} end
local stack, why = heads(refs)
if not stack then return {'corrupt', 'has channel refs that ' .. why, id} end
local found = {}
chain(KEYS[3], stack, function(field, blob)
  found[#found + 1] = field
  found[#found + 1] = blob
end)
local writes = redis.call('HGETALL', ARGV[2] .. id)
if ARGV[3] and ARGV[3] ~= '' then
  -- Only these tasks' writes (fields are '<idx>:<task id>') and their calls' (whose task
  -- path, in the record's header line, holds the caller's id): a worker running one task
  -- of a wide superstep must not fetch every other task's memo.
  local wanted, ids = {}, {}
  for tid in string.gmatch(ARGV[3], '[^,]+') do
    wanted[tid] = true
    ids[#ids + 1] = tid
  end
  local kept = {}
  for i = 1, #writes, 2 do
    local keep = wanted[string.match(writes[i], '^[^:]*:(.*)$')]
    if not keep then
      local header = string.match(writes[i + 1], '^[^\\n]*')
      for _, tid in ipairs(ids) do
        if string.find(header, tid, 1, true) then keep = true end
      end
    end
    if keep then
      kept[#kept + 1] = writes[i]
      kept[#kept + 1] = writes[i + 1]
    end
  end
  writes = kept
end
return {'ok', id, checkpoint, metadata, refs, found, writes}
"""
)

# KEYS[1] thread index; ARGV[1] keep_last, ARGV[2] thread key prefix, ARGV[3] optional
# comma-separated checkpoint ids to drop instead of all but the newest keep_last. Returns 1,
# or {'corrupt', what is wrong, id} (and changes nothing) when a kept refs row is malformed.
_PRUNE_LUA = (
    _CHAIN
    + """
local index, keep, tp = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local chosen = {}
for id in string.gmatch(ARGV[3] or '', '[^,]+') do chosen[#chosen + 1] = id end
local marker = tp .. 'cps:'
-- First every namespace's plan, so that a malformed refs row stops the prune before it
-- deletes anything.
local plans = {}
for _, cps in ipairs(redis.call('SMEMBERS', index)) do
  if string.sub(cps, 1, #marker) == marker then
    local ns = string.sub(cps, #marker + 1)
    local doomed = chosen
    if #chosen == 0 then doomed = redis.call('ZRANGE', cps, 0, -keep - 1) end
    local dropped = {}
    for _, id in ipairs(doomed) do dropped[id] = true end
    local kept = {}
    local rows = redis.call('HGETALL', tp .. 'cp:' .. ns)
    local latest = {}
    for i = 1, #rows, 2 do
      local id = string.match(rows[i], '^r:(.*)$')
      if string.sub(rows[i], 1, 2) == 'l:' then
        latest[#latest + 1] = string.sub(rows[i], 3)
        latest[#latest + 1] = rows[i + 1]
      end
      if id and not dropped[id] then
        local fields, why = heads(rows[i + 1])
        if not fields then return {'corrupt', 'has channel refs that ' .. why, id} end
        for _, field in ipairs(fields) do kept[#kept + 1] = field end
      end
    end
    plans[#plans + 1] = {cps, ns, doomed, kept, latest}
  end
end
for _, plan in ipairs(plans) do
  local cps, ns, doomed, kept, entries = plan[1], plan[2], plan[3], plan[4], plan[5]
  do
    local blobs, cp = tp .. 'blob:' .. ns, tp .. 'cp:' .. ns
    for _, id in ipairs(doomed) do
      redis.call('ZREM', cps, id)
      redis.call('HDEL', cp, 'c:' .. id, 'm:' .. id, 'r:' .. id)
      local writes = tp .. 'writes:' .. ns .. ':' .. id
      redis.call('DEL', writes)
      redis.call('SREM', index, writes)
    end
    local live = chain(blobs, kept, function() end)
    local remaining = {}
    for _, field in ipairs(redis.call('HKEYS', blobs)) do
      if live[field] then
        local version, digest, channel = string.match(field, '^([^:]*):([^:]*):(.*)$')
        if version then remaining[version .. ':' .. channel] = digest end
      else
        redis.call('HDEL', blobs, field)
      end
    end
    for i = 1, #entries, 2 do
      local version, channel = string.match(entries[i], '^([^:]*):(.*)$')
      if version and not live[version .. ':' .. entries[i + 1] .. ':' .. channel] then
        if remaining[entries[i]] then
          redis.call('HSET', cp, 'l:' .. entries[i], remaining[entries[i]])
        else
          redis.call('HDEL', cp, 'l:' .. entries[i])
        end
      end
    end
  end
end
return 1
"""
)

# KEYS[1] thread index.
_DELETE_LUA = """
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  redis.call('DEL', key)
end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS[1] thread index; ARGV[1] thread key prefix. Sums the payload hashes' value lengths (of
# a `cp` hash, not its newest-digest fields: bookkeeping, not payload).
_STORED_BYTES_LUA = """
local tp = ARGV[1]
local counted = {cp = true, blob = true, writes = true}
local total = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local kind = string.match(string.sub(key, #tp + 1), '^(%a+):')
  if kind and counted[kind] then
    for _, field in ipairs(redis.call('HKEYS', key)) do
      if kind ~= 'cp' or string.sub(field, 1, 2) ~= 'l:' then
        total = total + redis.call('HSTRLEN', key, field)
      end
    end
  end
end
return total
"""


# ------------------------------------------------------------------------------- key names


def _ns_part(ns: str) -> str:
    # base64url has no ':' or braces; a single '_' is never base64 of a non-empty text.
    return b64(ns) if ns else "_"


def _ns_of_part(part: str) -> str:
    return "" if part == "_" else unb64(part)


def _row_field(checkpoint_id: str) -> str:
    """A checkpoint's row field in its namespace's `cp` hash."""
    return f"c:{checkpoint_id}"


def _meta_field(checkpoint_id: str) -> str:
    """A checkpoint's metadata field in its namespace's `cp` hash."""
    return f"m:{checkpoint_id}"


def _refs_field(checkpoint_id: str) -> str:
    """A checkpoint's channel refs field in its namespace's `cp` hash."""
    return f"r:{checkpoint_id}"


def _latest_field(version: int, channel: str) -> str:
    """The field of the digest of `channel`'s newest blob of `version`, in the `cp` hash."""
    return f"l:{version}:{channel}"


def _blob_field(channel: str, ref: BlobRef) -> str:
    return f"{ref[0]}:{ref[1]}:{channel}"


_BLOB_FIELD = re.compile(r"(-?[0-9]+):([^:]*):(.*)", re.DOTALL)
_DELTA_BASE = re.compile(rb"(-?[0-9]+):([^:]*)", re.DOTALL)
_WRITE_FIELD = re.compile(rb"(-?[0-9]+):(.*)", re.DOTALL)


def _canonical_int(text: str) -> int | None:
    """The int ``text`` spells the way ``str(int)`` does, else None (``05``, ``-0``)."""
    value = int(text)
    return value if str(value) == text else None


def _parse_blob_field(field: Any) -> tuple[str, BlobRef]:
    """``<version>:<digest>:<channel>``, as ``_blob_field`` writes it."""
    found = _BLOB_FIELD.fullmatch(field) if isinstance(field, str) else None
    version = None if found is None else _canonical_int(found[1])
    if found is None or version is None:
        raise CorruptStorageError(f"malformed value blob field {field!r} in channel refs")
    return found[3], (version, found[2])


def _parse_refs(raw: bytes) -> tuple[str | None, dict[str, BlobRef]]:
    """(parent id, channel refs) of a refs row ``{"p": parent id, "f": [blob fields]}``."""
    doc = load_json(raw, "channel refs")
    if not isinstance(doc, dict) or "p" not in doc or "f" not in doc:
        raise CorruptStorageError(f"channel refs are not a {{p, f}} object: {raw[:200]!r}")
    parent, fields = doc["p"], doc["f"]
    if not (parent is None or isinstance(parent, str)) or not isinstance(fields, list):
        raise CorruptStorageError(f"malformed channel refs: {raw[:200]!r}")
    return parent, dict(_parse_blob_field(field) for field in fields)


def _refs_row(parent: str | None, refs: dict[str, BlobRef]) -> bytes:
    """A checkpoint's refs row, as ``_parse_refs`` reads it."""
    return orjson.dumps({"p": parent,
                         "f": [_blob_field(channel, ref) for channel, ref in refs.items()]})


def _lost_lease(target: Target, guard: tuple[str, str]) -> StaleCheckpointError:
    return StaleCheckpointError(
        f"thread {target.thread_id!r}: {guard[0]!r} no longer holds {guard[1]!r}; the writer "
        "lost its lease")


def _moved_head(target: Target, head: str | None, expected: str | None) -> StaleCheckpointError:
    return StaleCheckpointError(
        f"thread {target.thread_id!r} namespace {target.ns!r}: newest checkpoint is {head!r}, "
        f"expected {expected!r}")


def _decode_id(raw: bytes, key: str) -> str:
    """A checkpoint id stored in ``key`` (ids are text: non-UTF-8 bytes are corrupt)."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise CorruptStorageError(f"checkpoint id {raw!r} in {key!r} is not UTF-8") from None


def _shown_id(raw: bytes) -> str:
    """A stored checkpoint id for an error message: the text, or the bytes if not UTF-8."""
    try:
        return repr(raw.decode())
    except UnicodeDecodeError:
        return repr(raw)


def _blob_record(blob: Blob) -> bytes:
    """``<kind>[<base version>:<base digest>]|<data>``; the Lua chain walk reads the base."""
    base = f"{blob.base_version}:{blob.base_digest}".encode() if blob.kind == DELTA else b""
    return _KIND_CODE[blob.kind] + base + b"|" + blob.data


def _parse_blob_record(channel: str, ref: BlobRef, record: bytes) -> Blob:
    kind = _CODE_KIND.get(record[0]) if record else None
    sep = record.find(b"|")
    if kind is None or sep < 0:
        raise CorruptStorageError(f"malformed value blob {ref} of channel {channel!r}")
    header = record[1:sep]
    base_version = base_digest = None
    if kind == DELTA:
        found = _DELTA_BASE.fullmatch(header)
        try:
            if found is not None:
                base_version = _canonical_int(found[1].decode())
                base_digest = found[2].decode()
        except UnicodeDecodeError:
            base_version = None
        if base_version is None:
            raise CorruptStorageError(
                f"malformed delta base {header!r} in value blob {ref} of channel {channel!r}"
            )
    elif header:
        raise CorruptStorageError(f"malformed value blob {ref} of channel {channel!r}")
    return Blob(channel, ref[0], ref[1], kind, record[sep + 1 :], base_version, base_digest)


def _parse_write(field: bytes, record: bytes) -> tuple[bytes, StoredWrite]:
    """(insertion number, write) of a pending write stored as ``field`` -> ``record``:
    ``<idx>:<task id>`` -> ``<insertion number><JSON [channel, task path]>\n<data>``."""
    found = _WRITE_FIELD.fullmatch(field)
    try:
        task_id = None if found is None else found[2].decode()
        idx = None if found is None else _canonical_int(found[1].decode())
    except UnicodeDecodeError:
        task_id = None
    if task_id is None or idx is None:
        raise CorruptStorageError(f"malformed pending write field {field!r}")
    seq = record[:_SEQ_WIDTH]
    newline = record.find(b"\n", _SEQ_WIDTH)
    if len(seq) < _SEQ_WIDTH or not seq.isdigit() or newline < 0:
        raise CorruptStorageError(f"malformed pending write record of {field!r}")
    header = load_json(record[_SEQ_WIDTH:newline], f"header of pending write {field!r}")
    if not (
        isinstance(header, list) and len(header) == 2 and all(isinstance(h, str) for h in header)
    ):
        raise CorruptStorageError(f"header of pending write {field!r} is not [channel, path]")
    return seq, (task_id, idx, header[0], record[newline + 1 :])


@dataclass(frozen=True)
class HeadPut:
    """A checkpoint put on a known head, as `PUT_CHILD_OF_HEAD_FN`'s keys (4) and arguments
    (ttl, head, guard value: left empty, for the caller to fill, then the rest)."""

    keys: list[str]
    args: list[Any]
    prepared: PreparedPut
    refs: dict[str, BlobRef]
    head: str | None


@dataclass(frozen=True)
class PreparedWrites:
    """Pending writes as `PUT_WRITES_FN` takes them: the writes hash and the thread index,
    and the (field, overwrite flag, record) triples."""

    keys: list[str]
    triples: list[Any]


@dataclass(frozen=True)
class _Keys:
    """The keys of one thread and namespace."""

    thread: str  # P:{T}:
    index: str
    cps: str
    cp: str  # rows, metadata, refs and newest digests (`_row_field` and its siblings)
    blob: str
    writes: str  # prefix: + checkpoint id

    @property
    def namespace_keys(self) -> tuple[str, ...]:
        return (self.cps, self.cp, self.blob)


class _RefsCache:
    """The channel refs of checkpoints this process wrote or read, by (thread, namespace,
    id): the next put of a chain names its parent's refs without reading them back.

    A checkpoint id is written once with one content (ids are new per checkpoint), so an
    entry is true for as long as the checkpoint is stored; the put that relies on one checks
    in its script that the parent is still the namespace's head, hence still stored.
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._refs: OrderedDict[tuple[str, str, str], dict[str, BlobRef]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, thread_id: str, ns: str, checkpoint_id: str) -> dict[str, BlobRef] | None:
        with self._lock:
            refs = self._refs.get((thread_id, ns, checkpoint_id))
            if refs is not None:
                self._refs.move_to_end((thread_id, ns, checkpoint_id))
            return refs

    def put(self, thread_id: str, ns: str, checkpoint_id: str,
            refs: dict[str, BlobRef]) -> None:
        with self._lock:
            self._refs[(thread_id, ns, checkpoint_id)] = refs
            self._refs.move_to_end((thread_id, ns, checkpoint_id))
            while len(self._refs) > self.size:
                self._refs.popitem(last=False)

    def forget_thread(self, thread_id: str) -> None:
        with self._lock:
            for key in [k for k in self._refs if k[0] == thread_id]:
                del self._refs[key]


# ---------------------------------------------------------------------------------- saver


class RedisSaver(BaseCheckpointSaver):
    """Checkpoints in Redis (standalone, or a Cluster: a thread's keys share one slot).

    ``ttl`` (seconds) re-expires every key of a thread on each ``put`` and ``put_writes``,
    so a thread disappears ``ttl`` after its last write. ``prefix`` namespaces the keys.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        serde: SerializerProtocol | None = None,
        ttl: float | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        super().__init__(serde=serde)
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        if isinstance(url_or_client, str):
            self._client: redis.Redis = connect(url_or_client)
            self._owns_client = True
        else:
            self._client, self._owns_client = url_or_client, False
        kwargs = getattr(self._client, "get_connection_kwargs", dict)()
        if kwargs.get("decode_responses"):
            raise ValueError("RedisSaver needs a client with decode_responses=False")
        self.prefix = check_prefix(prefix)
        self.ttl = ttl
        self._ttl_ms = 0 if ttl is None else max(1, round(ttl * 1000))
        register = self._client.register_script
        self._touch = register(_TOUCH_LUA)
        self._put_writes = register(_PUT_WRITES_LUA)
        self._load_script = register(_LOAD_LUA)
        self._prune = register(_PRUNE_LUA)
        self._delete = register(_DELETE_LUA)
        self._stored_bytes = register(_STORED_BYTES_LUA)
        self._put_child_of_head = register(_PUT_CHILD_OF_HEAD_LUA)
        self._known_refs = _RefsCache()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisSaver:
        """A saver with its own client for ``url`` (e.g. ``redis://:password@host:6379/0``)."""
        return cls(url, **kwargs)

    @property
    def client(self) -> redis.Redis:
        return self._client

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> RedisSaver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ keys

    def _thread_prefix(self, thread_id: str) -> str:
        return thread_prefix(self.prefix, thread_id)

    def _keys(self, thread_id: str, ns: str) -> _Keys:
        tp = self._thread_prefix(thread_id)
        part = _ns_part(ns)
        return _Keys(
            thread=tp,
            index=tp + "keys",
            cps=f"{tp}cps:{part}",
            cp=f"{tp}cp:{part}",
            blob=f"{tp}blob:{part}",
            writes=f"{tp}writes:{part}:",
        )

    def _threads(self) -> list[str]:
        """Every thread with stored keys under this prefix."""
        pattern = glob_escape(f"{self.prefix}:{{") + "*}:keys"
        keys = [raw.decode(errors="replace")
                for raw in self._client.scan_iter(match=pattern, count=1000)]
        threads = threads_matching(keys, self.prefix, ":keys")
        return sorted(threads)

    def _namespaces(self, thread_ids: Sequence[str]) -> list[tuple[str, str]]:
        pipe = self._client.pipeline(transaction=False)
        for thread_id in thread_ids:
            pipe.smembers(self._keys(thread_id, "").index)
        found = []
        for thread_id, members in zip(thread_ids, pipe.execute(), strict=True):
            marker = self._thread_prefix(thread_id) + "cps:"
            for member in members:
                key = member.decode(errors="replace")
                if key.startswith(marker):
                    try:
                        found.append((thread_id, _ns_of_part(key[len(marker) :])))
                    except ValueError:  # binascii.Error, UnicodeDecodeError
                        raise CorruptStorageError(
                            f"thread {thread_id!r} lists a malformed key {member!r}"
                        ) from None
        return found

    # ------------------------------------------------------------------------------ read

    def head(self, thread_id: str, ns: str = "") -> str | None:
        """Id of the newest checkpoint of the thread's namespace, or None."""
        cps = self._keys(str(thread_id), ns).cps
        newest = self._client.zrevrange(cps, 0, 0)
        return _decode_id(newest[0], cps) if newest else None

    def queue_head(self, pipe: redis.client.Pipeline, thread_id: str, ns: str = ""
                   ) -> Callable[[Any], str | None]:
        """Queue `head`'s read on the caller's `pipe`; the function that makes its reply the
        id. For a caller that sends something else first anyway."""
        cps = self._keys(str(thread_id), ns).cps
        pipe.zrevrange(cps, 0, 0)
        return lambda newest: _decode_id(newest[0], cps) if newest else None

    def get_tuple(self, config: Config) -> CheckpointTuple | None:
        target = Target.of(config)
        return self._load(target.thread_id, target.ns, target.checkpoint_id)

    def get_tuple_for_tasks(self, config: Config,
                            task_ids: Sequence[str]) -> CheckpointTuple | None:
        """`get_tuple` with only these tasks' pending writes (task ids hold no commas)."""
        target = Target.of(config)
        return self._load(target.thread_id, target.ns, target.checkpoint_id,
                          only_tasks=",".join(task_ids))

    def queue_load_for_tasks(self, pipe: redis.client.Pipeline, config: Config,
                             task_ids: Sequence[str]
                             ) -> Callable[[Any], CheckpointTuple | None]:
        """Queue `get_tuple_for_tasks`'s read on the caller's `pipe` (by EVALSHA: a server
        that lacks the script answers NoScriptError, which the caller treats as nothing
        read); the function that makes its reply the tuple. For a caller that reads other
        things first anyway: the checkpoint comes in the same round trip."""
        target = Target.of(config)
        keys = self._keys(target.thread_id, target.ns)
        pipe.evalsha(self._load_script.sha, 3, keys.cps, keys.cp, keys.blob,
                     target.checkpoint_id or "", keys.writes, ",".join(task_ids))
        return lambda found: self._loaded(target.thread_id, target.ns, found)

    def _load(
        self, thread_id: str, ns: str, checkpoint_id: str | None, metadata: Any = None,
        only_tasks: str = "",
    ) -> CheckpointTuple | None:
        keys = self._keys(thread_id, ns)
        found = self._load_script(
            keys=[keys.cps, keys.cp, keys.blob],
            args=[checkpoint_id or "", keys.writes, only_tasks],
        )
        return self._loaded(thread_id, ns, found, metadata)

    def _loaded(self, thread_id: str, ns: str, found: Any, metadata: Any = None
                ) -> CheckpointTuple | None:
        """The tuple of the load script's reply `found`."""
        keys = self._keys(thread_id, ns)
        if not found:
            return None
        if found[0] == b"corrupt":
            _, what, raw_id = found
            raise CorruptStorageError(
                f"checkpoint {_shown_id(raw_id)} of thread {thread_id!r} namespace {ns!r}"
                f" {what.decode(errors='replace')}"
            )
        _, raw_id, checkpoint, raw_metadata, raw_refs, flat_blobs, flat_writes = found
        parent_id, refs = _parse_refs(raw_refs)
        loaded_id = _decode_id(raw_id, keys.cps)
        self._known_refs.put(thread_id, ns, loaded_id, dict(refs))
        row = StoredCheckpoint(
            thread_id,
            ns,
            loaded_id,
            parent_id,
            checkpoint,
            raw_metadata,
            self._encode_refs(refs),
        )
        records = {flat_blobs[i]: flat_blobs[i + 1] for i in range(0, len(flat_blobs), 2)}

        def lookup(channel: str, ref: BlobRef) -> Blob | None:
            field = _blob_field(channel, ref).encode(errors="surrogatepass")
            record = records.get(field)
            return None if record is None else _parse_blob_record(channel, ref, record)

        writes = [
            _parse_write(flat_writes[i], flat_writes[i + 1]) for i in range(0, len(flat_writes), 2)
        ]
        writes.sort(key=lambda w: w[0])
        if metadata is None:
            metadata = self._decode_metadata(raw_metadata)
        return self._to_tuple(row, metadata, lookup, [w for _, w in writes])

    def list(
        self,
        config: Config | None,
        *,
        filter: dict[str, Any] | None = None,
        before: Config | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        thread_id, ns, checkpoint_id, before_id = list_bounds(config, before)
        if limit is not None and limit <= 0:
            return
        if thread_id is not None and ns is not None:
            namespaces = [(thread_id, ns)]
        else:
            namespaces = self._namespaces([thread_id] if thread_id is not None else self._threads())
        pipe = self._client.pipeline(transaction=False)
        for t, n in namespaces:
            cps = self._keys(t, n).cps
            if checkpoint_id is not None:
                pipe.zscore(cps, checkpoint_id)
            else:
                top = "+" if before_id is None else f"({before_id}"
                if limit is not None and not filter:
                    pipe.zrevrangebylex(cps, top, "-", start=0, num=limit)
                else:
                    pipe.zrevrangebylex(cps, top, "-")
        rows: list[tuple[str, str, str]] = []
        for (t, n), found in zip(namespaces, pipe.execute(), strict=True):
            if checkpoint_id is not None:
                if found is not None and (before_id is None or checkpoint_id < before_id):
                    rows.append((checkpoint_id, t, n))
            else:
                cps = self._keys(t, n).cps
                rows.extend((_decode_id(raw, cps), t, n) for raw in found)
        rows.sort(reverse=True)
        for start in range(0, len(rows), _LIST_BATCH):
            batch = rows[start : start + _LIST_BATCH]
            metadatas: list[Any] = [None] * len(batch)
            if filter:
                pipe = self._client.pipeline(transaction=False)
                for cid, t, n in batch:
                    pipe.hget(self._keys(t, n).cp, _meta_field(cid))
                metadatas = [
                    None if raw is None else self._decode_metadata(raw) for raw in pipe.execute()
                ]
            for (cid, t, n), metadata in zip(batch, metadatas, strict=True):
                if limit is not None and limit <= 0:
                    return
                if filter and (metadata is None or not metadata_matches(metadata, filter)):
                    continue
                loaded = self._load(t, n, cid, metadata)
                if loaded is None:  # pruned or deleted since it was listed
                    continue
                yield loaded
                if limit is not None:
                    limit -= 1

    # ----------------------------------------------------------------------------- write

    def put(
        self,
        config: Config,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: dict[str, int],
    ) -> Config:
        return self._put(config, checkpoint, metadata, new_versions, check_head=False)

    def put_if_head(
        self,
        config: Config,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: dict[str, int],
        expected_head: str | None,
        guard: tuple[str, str] | None = None,
    ) -> Config:
        """``put``, but only while the newest checkpoint of the config's thread and namespace
        is ``expected_head`` (None: there is none) and, with ``guard`` (key, value), while
        that key of the thread holds that value (a writer's lease: one whose lease lapsed
        writes nothing); otherwise raise ``StaleCheckpointError`` and store nothing. The
        checks and the write are one atomic step."""
        return self._put(
            config, checkpoint, metadata, new_versions, check_head=True, expected=expected_head,
            guard=guard,
        )

    def _put(
        self,
        config: Config,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: dict[str, int],
        *,
        check_head: bool,
        expected: str | None = None,
        guard: tuple[str, str] | None = None,
    ) -> Config:
        prepared = self._prepare_put(config, checkpoint, metadata, new_versions)
        target = prepared.target
        keys = self._keys(target.thread_id, target.ns)
        if guard is not None and not guard[0].startswith(keys.thread):
            raise ValueError(f"guard key {guard[0]!r} is not a key of the thread")
        if check_head and expected == target.checkpoint_id:
            done = self._put_on_known_head(keys, prepared, expected, guard)
            if done is not None:
                return done
        watched = [keys.blob, keys.cp] + ([keys.cps] if check_head else [])
        if guard is not None:
            watched.append(guard[0])
        with self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(*watched)
                    if guard is not None and pipe.get(guard[0]) != guard[1].encode():
                        raise _lost_lease(target, guard)
                    if check_head:
                        newest = pipe.zrevrange(keys.cps, 0, 0)
                        head = _decode_id(newest[0], keys.cps) if newest else None
                        if head != expected:
                            raise _moved_head(target, head, expected)
                    blobs, refs = self._resolve(pipe, keys, prepared)
                    pipe.multi()
                    self._queue_put(pipe, keys, prepared, blobs, refs)
                    pipe.execute()
                    break
                except WatchError:
                    continue  # another writer changed the namespace: read again
        return self._stored(prepared, blobs, refs)

    def _stored(self, prepared: PreparedPut, blobs: Sequence[PendingBlob],
                refs: dict[str, BlobRef]) -> Config:
        """What a put tells the caches once its checkpoint is stored; the put's config."""
        target = prepared.target
        for pending in blobs:
            self.codec.remember(target.thread_id, target.ns, pending)
        self._known_refs.put(target.thread_id, target.ns, prepared.checkpoint_id, refs)
        return checkpoint_config(target.thread_id, target.ns, prepared.checkpoint_id)

    def _put_on_known_head(self, keys: _Keys, prepared: PreparedPut, head: str | None,
                           guard: tuple[str, str] | None) -> Config | None:
        """A put on the head whose refs this process knows, or the first of its namespace
        (`head` None), in one script (no WATCH, MULTI and reads first: a chain of steps pays
        one round trip per checkpoint); None when it cannot go this way (refs not known, a
        channel left to look up, a delta base gone), and the caller puts the WATCH way."""
        put = self._head_put(keys, prepared, head)
        if put is None:
            return None
        found = self._put_child_of_head(
            keys=[*put.keys, *([guard[0]] if guard is not None else [])],
            args=[*put.args[:2], guard[1] if guard is not None else "", *put.args[3:]],
        )
        return self.finish_head_put(put, found, guard)

    def prepare_head_put(self, config: Config, checkpoint: Checkpoint,
                         metadata: CheckpointMetadata, new_versions: dict[str, int],
                         head: str | None) -> HeadPut | None:
        """`put_if_head` on `head`, prepared to run as `PUT_CHILD_OF_HEAD_FN` inside a
        caller's own script (with writes of its own, in one atomic step), then handed to
        `finish_head_put`; None when it cannot go that way (see `_put_on_known_head`)."""
        prepared = self._prepare_put(config, checkpoint, metadata, new_versions)
        if prepared.target.checkpoint_id != head:
            return None
        return self._head_put(self._keys(prepared.target.thread_id, prepared.target.ns),
                              prepared, head)

    def _head_put(self, keys: _Keys, prepared: PreparedPut, head: str | None) -> HeadPut | None:
        target = prepared.target
        parent_refs = {} if head is None else self._known_refs.get(target.thread_id,
                                                                   target.ns, head)
        if parent_refs is None or len(prepared.blobs) > _FAST_PUT_MAX_BLOBS:
            return None
        unknown: list[str] = []

        def latest(channel: str, version: int) -> str | None:
            unknown.append(channel)
            return None

        refs = prepared.refs(prepared.blobs, parent_refs, latest)
        if unknown:
            return None
        bases = [_blob_field(p.channel, p.requires) for p in prepared.blobs
                 if p.requires is not None]
        stored: list[Any] = []
        for pending in prepared.blobs:
            blob = pending.blob
            if blob is not None:
                stored += [_blob_field(blob.channel, blob.ref), _blob_record(blob),
                           _latest_field(blob.version, blob.channel), blob.digest]
        return HeadPut(
            keys=[keys.cps, keys.cp, keys.blob, keys.index],
            args=[self._ttl_ms, head or "", "", prepared.checkpoint_id, prepared.checkpoint,
                  prepared.metadata, _refs_row(head, refs), len(bases), *bases, *stored],
            prepared=prepared, refs=refs, head=head)

    def finish_head_put(self, put: HeadPut, found: Any,
                        guard: tuple[str, str] | None = None) -> Config | None:
        """What `PUT_CHILD_OF_HEAD_FN` returned, made the put's result: its config once stored
        (the caches learn it), None for a delta base gone (put the slow way), or the
        `StaleCheckpointError` of a moved head or a lost `guard`."""
        target = put.prepared.target
        if found == b"base":
            return None
        if found == b"guard" and guard is not None:
            raise _lost_lease(target, guard)
        if isinstance(found, list):
            newest = found[1]
            cps = put.keys[0]
            raise _moved_head(target, None if newest is None else _decode_id(newest, cps),
                              put.head)
        return self._stored(put.prepared, put.prepared.blobs, put.refs)

    def _resolve(
        self, pipe: redis.client.Pipeline, keys: _Keys, prepared: PreparedPut
    ) -> tuple[list[PendingBlob], dict[str, BlobRef]]:
        """Under WATCH: which delta bases are still stored, and the new checkpoint's refs."""
        target = prepared.target
        reads = self._client.pipeline(transaction=False)
        for pending in prepared.blobs:
            if pending.requires is not None:
                reads.hexists(keys.blob, _blob_field(pending.channel, pending.requires))
        if target.checkpoint_id is not None:
            reads.hget(keys.cp, _refs_field(target.checkpoint_id))
        found = iter(reads.execute())
        blobs = [
            p if p.requires is None or next(found) else self.codec.without_base(p)
            for p in prepared.blobs
        ]
        parent_refs: dict[str, BlobRef] = {}
        if target.checkpoint_id is not None:
            raw = next(found)
            if raw is not None:
                parent_refs = _parse_refs(raw)[1]

        def latest(channel: str, version: int) -> str | None:
            digest = pipe.hget(keys.cp, _latest_field(version, channel))  # immediate: watching
            return None if digest is None else digest.decode()

        return blobs, prepared.refs(blobs, parent_refs, latest)

    def _queue_put(
        self,
        pipe: redis.client.Pipeline,
        keys: _Keys,
        prepared: PreparedPut,
        blobs: Sequence[PendingBlob],
        refs: dict[str, BlobRef],
    ) -> None:
        cid = prepared.checkpoint_id
        fields: dict[str, bytes | str] = {
            _row_field(cid): prepared.checkpoint, _meta_field(cid): prepared.metadata,
            _refs_field(cid): _refs_row(prepared.target.checkpoint_id, refs)}
        for pending in blobs:
            blob = pending.blob
            if blob is not None:
                pipe.hsetnx(keys.blob, _blob_field(blob.channel, blob.ref), _blob_record(blob))
                fields[_latest_field(blob.version, blob.channel)] = blob.digest
        pipe.hset(keys.cp, mapping=fields)
        pipe.zadd(keys.cps, {cid: 0})
        pipe.sadd(keys.index, *keys.namespace_keys)
        if self._ttl_ms:
            self._touch(keys=[keys.index], args=[self._ttl_ms], client=pipe)

    def put_writes(
        self,
        config: Config,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        prepared = self.prepare_writes(config, writes, task_id, task_path)
        if prepared is not None:
            self.write_prepared(prepared)

    def write_prepared(self, prepared: PreparedWrites) -> None:
        """Store writes `prepare_writes` made ready, as `put_writes` does."""
        self._put_writes(keys=prepared.keys, args=[self._ttl_ms, *prepared.triples])

    def prepare_writes(self, config: Config, writes: Sequence[tuple[str, Any]], task_id: str,
                       task_path: str = "") -> PreparedWrites | None:
        """`put_writes`, prepared to run as `PUT_WRITES_FN` inside a caller's own script;
        None when there is nothing to store."""
        target, encoded = self._prepare_writes_for(config, writes)
        if not encoded:
            return None
        keys = self._keys(target.thread_id, target.ns)
        triples: list[Any] = []
        for idx, channel, data in encoded:
            header = orjson.dumps([channel, task_path])  # JSON has no raw newline
            triples += [f"{idx}:{task_id}", "1" if idx < 0 else "0", header + b"\n" + data]
        return PreparedWrites(keys=[keys.writes + target.checkpoint_id, keys.index],
                              triples=triples)

    @property
    def ttl_ms(self) -> int:
        """The lifetime its scripts give a thread's keys on each write (0: none)."""
        return self._ttl_ms

    # ------------------------------------------------------------------------- retention

    def delete_thread(self, thread_id: str) -> None:
        self._delete(keys=[self._keys(str(thread_id), "").index])
        self.codec.forget_thread(str(thread_id))
        self._known_refs.forget_thread(str(thread_id))

    def copy_thread(self, thread_id: str, new_thread_id: str) -> None:
        """Copy every checkpoint, blob and pending write of `thread_id` to `new_thread_id`,
        a thread with nothing stored (ValueError otherwise): the Agent Server's thread copy.

        Stored bytes never name their thread (only key names do), so keys are copied
        whole (`DUMP`/`RESTORE`, Redis' own format: nothing here unpickles) under the new
        thread's names. The source is read in one transaction watched on its key index, a
        snapshot no concurrent `put` can tear (its keys share one slot); the copy is written
        in one transaction on the new thread's slot.
        """
        source = self._keys(str(thread_id), "")
        target = self._keys(str(new_thread_id), "")
        if self._client.exists(target.index):
            raise ValueError(f"thread {new_thread_id!r} already has checkpoints")
        members: list[str] = []

        def snapshot(pipe: Any) -> None:
            members[:] = sorted(m.decode() for m in pipe.smembers(source.index))
            pipe.multi()
            for key in members:
                pipe.dump(key)

        values = self._client.transaction(snapshot, source.index)
        dumped = [(key, value) for key, value in zip(members, values, strict=True)
                  if value is not None]
        if not dumped:
            return
        renamed = [(target.thread + key[len(source.thread):], value) for key, value in dumped
                   if key.startswith(source.thread)]
        with self._client.pipeline(transaction=True) as pipe:
            for key, value in renamed:
                pipe.restore(key, self._ttl_ms, value)
            pipe.sadd(target.index, *[key for key, _ in renamed])
            if self._ttl_ms:
                pipe.pexpire(target.index, self._ttl_ms)
            pipe.execute()

    def prune(self, thread_id: str, *, keep_last: int) -> None:
        if keep_last < 1:
            raise ValueError("keep_last must be at least 1; use delete_thread to drop a thread")
        keys = self._keys(str(thread_id), "")
        self._pruned(thread_id, self._prune(keys=[keys.index], args=[keep_last, keys.thread]))

    def checkpoint_ids(self, thread_id: str, ns: str = "") -> builtins.list[str]:
        """Ids of the namespace's checkpoints, oldest first."""
        return [i.decode() for i in self._client.zrange(self._keys(str(thread_id), ns).cps, 0, -1)]

    def drop_checkpoints(self, thread_id: str, checkpoint_ids: list[str]) -> None:
        """Delete these checkpoints (and their writes, and blobs nothing else needs)."""
        if checkpoint_ids:
            keys = self._keys(str(thread_id), "")
            args = [1, keys.thread, ",".join(checkpoint_ids)]
            self._pruned(thread_id, self._prune(keys=[keys.index], args=args))

    @staticmethod
    def _pruned(thread_id: str, result: Any) -> None:
        """Raise what the prune script found corrupt (it then changed nothing)."""
        if isinstance(result, list) and result and result[0] == b"corrupt":
            _, what, raw_id = result
            raise CorruptStorageError(
                f"checkpoint {_shown_id(raw_id)} of thread {thread_id!r}"
                f" {what.decode(errors='replace')}; nothing was pruned"
            )

    def stored_bytes(self, thread_id: str | None = None) -> int:
        threads = self._threads() if thread_id is None else [str(thread_id)]
        total = 0
        for thread in threads:
            keys = self._keys(thread, "")
            total += int(self._stored_bytes(keys=[keys.index], args=[keys.thread]))
        return total
