"""Run coordination state in Redis: runs, thread locks, step barriers, leases, events.

Checkpoints and task memos live in the RedisSaver; this module holds what the distributed
run needs around them. Every key of a thread carries the thread's hash tag
(`graphdef.checkpoint.keys`, the same as the saver's) so that one thread's keys share a
Redis Cluster slot and each Lua script touches one slot. User data (input, output, resume
answers) goes through our serde; bookkeeping is plain JSON. Nothing here is ever unpickled.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import orjson
import redis

from graphdef import serde
from graphdef.checkpoint.keys import (
    DEFAULT_PREFIX,
    check_prefix,
    glob_escape,
    thread_prefix,
    threads_matching,
)
from graphdef.checkpoint.redis import (
    PUT_CHILD_OF_HEAD_FN,
    PUT_WRITES_FN,
    REFRESH_FN,
    HeadPut,
    PreparedWrites,
)
from graphdef.redis_client import connect, is_cluster, with_own_pool
from scheduler.deadlines import FIRST_LOOK_MS, SHARDS, Deadlines, shard_of
from scheduler.records import SETTLED, TERMINAL, RunRecord, RunStatus
from scheduler.streams import (
    DEFAULT_MAX_LEN,
    DEFAULT_TTL,
    PUBLISH_ONCE_FN,
    ChunkStream,
    encode_entries,
    end_fields,
    split_id,
)

# Counts a finished task: announces it, releases its lease if `owner` ('' to leave it alone)
# still holds it, and counts it done in its step; returns 0, 1 for the one caller that
# completed the step, or 2 when that caller also took the run's lease for `run_owner` ('' not
# to) for `ms` (the run's `started` marker was set by its start: an advance comes after one).
# One script, so the event, the release and the count land together (a lease is never free
# while its task is not yet counted), in one round trip.
#
# A task newly in the set counts itself down the step's `left` (set to `total` as the step is
# recorded, `_OPEN_STEP`): one HINCRBY, where a count compares `total` with SCARD, two. Only
# this adds to the set, so `left` is `total` minus the set's size, and exactly one caller
# takes it to 0. A repeat (not newly added) or a step recorded without `left` (before it
# existed: it goes below 0) counts as before; one whose record is gone (the run's keys were
# dropped) has its stray `left` deleted again.
_FINISH_TASK_FN = """
local function finish_task(done, step, events, lease, run_lease, task, now, payload, owner,
                           run_owner, ms)
  redis.call('XADD', events, '*', 'type', 'task_finished', 'data', payload)
  if owner ~= '' and redis.call('GET', lease) == owner then redis.call('DEL', lease) end
  local complete = false
  if redis.call('SADD', done, task) == 1 then
    local left = redis.call('HINCRBY', step, 'left', -1)
    if left > 0 then return 0 end
    complete = left == 0
  end
  if not complete then
    local total = tonumber(redis.call('HGET', step, 'total') or '-1')
    if total < 0 then
      if redis.call('HLEN', step) == 1 then redis.call('DEL', step) end
      return 0
    end
    complete = redis.call('SCARD', done) >= total
  end
  if complete and redis.call('HSETNX', step, 'advance_at', now) == 1 then
    if run_owner ~= '' and redis.call('SET', run_lease, run_owner, 'NX', 'PX', ms) then
      return 2
    end
    return 1
  end
  return 0
end
"""

# Chunk batches from ARGV[at..] (their number, the stream's length cap, then per batch its
# key, its number of entries and those): `publish_batches` publishes each once
# (`PUBLISH_ONCE_FN`) and `past_batches` only finds where they end; both return the index past
# them. For the scripts that save a task's closing chunks with its memo.
_CHUNK_BATCHES_FN = """
local function past_batches(at)
  local pos = at + 2
  for _ = 1, tonumber(ARGV[at]) do pos = pos + 2 + tonumber(ARGV[pos + 1]) end
  return pos
end
local function publish_batches(stream, published, at)
  local pos = at + 2
  for _ = 1, tonumber(ARGV[at]) do
    local count = tonumber(ARGV[pos + 1])
    publish_once(stream, published, ARGV[at + 1], ARGV[pos], pos + 2, pos + 1 + count)
    pos = pos + 2 + count
  end
  return pos
end
"""

# KEYS: done set, step hash, events stream, the task's lease, the run's lease, the memo's
# writes hash, the thread's index, the run's chunk stream and its published set. ARGV: task
# id, now, event payload, lease owner, run lease owner, its milliseconds, the saver's ttl in
# ms, the number of memo values and those (`PUT_WRITES_FN`), the number of chunk batches, the
# stream's length cap, and per batch its key, its number of entries and those. The task's
# memo and its closing chunks (a streaming run's; after the memo, as ever) land with its
# count: one round trip where they took two or three, and no crash between them.
_FINISH_TASK = (REFRESH_FN + PUT_WRITES_FN + PUBLISH_ONCE_FN + _CHUNK_BATCHES_FN
                + _FINISH_TASK_FN + """
local m = tonumber(ARGV[8])
if m > 0 then
  put_writes(KEYS[6], KEYS[7], 9, 8 + m, false)
  refresh(KEYS[7], tonumber(ARGV[7]))
end
publish_batches(KEYS[8], KEYS[9], 9 + m)
return finish_task(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[3],
                   ARGV[4], ARGV[5], ARGV[6])
""")
STEP_COMPLETED = 1
STEP_COMPLETED_AND_LEASED = 2
# The task's step was advanced by the same script that saved its memo (`advance_kept`).
STEP_ADVANCED = 3

T = TypeVar("T")

_HASH_VALUES_PER_SLICE = 1000  # Lua's unpack takes a few thousand values at most

_RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Takes a lease unless held: 0 (not taken), FIRST_START or RESTART (someone took it before,
# as its `started` marker says); shared by the scripts that take a task's lease.
_TAKE_LEASE = """
local function take_lease(lease, started, owner, ms)
  if redis.call('SET', lease, owner, 'NX', 'PX', ms) then
    if redis.call('SET', started, owner, 'GET') then return 2 end
    return 1
  end
  return 0
end
"""

_ACQUIRE_LEASE = _TAKE_LEASE + """
if KEYS[3] and redis.call('SISMEMBER', KEYS[3], ARGV[3]) == 1 then return 0 end
return take_lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
"""
FIRST_START = 1
RESTART = 2

# Takes the leases of a batch message's tasks (`run_nodes`) at once, each task its own lease
# and `started` marker as `_ACQUIRE_LEASE` takes them, so the sweeper sees each task as it
# sees a lone one. KEYS: the step's done set, then per task its lease and its started
# marker. ARGV: the leases' milliseconds, then per task its id and its owner. Returns per
# task 0 (counted done, or its lease is held), FIRST_START or RESTART. Per task one SET
# where `_ACQUIRE_LEASE` costs three and a script call: the done set is asked once
# (SMISMEMBER), and the started markers of the leases taken are read and set once (MGET,
# MSET), which gives each the grant `SET ... GET` would have.
#
# Crash reasoning. The caller pushes the run's look to the leases' expiry before this
# script, in order (`RunStore.acquire_leases`): dying between the two leaves a look that
# finds nothing to do. One script, so a lease is never taken without its started marker.
# Taken before their tasks run, the leases of a batch's later tasks are kept by the
# process's liveness from the moment they are taken (`Heartbeat.keep`), as a running
# task's is; so a worker that dies mid-batch leaves each of them to lapse (fresh) or to be
# revoked with its holder (adopted), and the sweeper sends those tasks again, started, with
# no memo: each runs once elsewhere. Tasks of the batch that finished were counted, memo
# and all, by their own `_FINISH_TASK` at their own end, and are never run again; a task
# the batch will not run after all (the message failed half-way) has its lease given back.
_ACQUIRE_LEASES = """
local n = (#ARGV - 1) / 2
local ids = {}
for i = 1, n do ids[i] = ARGV[2 * i] end
local done = redis.call('SMISMEMBER', KEYS[1], unpack(ids))
local grants, taken, markers = {}, {}, {}
for i = 1, n do
  grants[i] = 0
  if done[i] == 0 and redis.call('SET', KEYS[2 * i], ARGV[2 * i + 1], 'NX', 'PX', ARGV[1]) then
    taken[#taken + 1] = i
    markers[#markers + 1] = KEYS[2 * i + 1]
  end
end
if #taken == 0 then return grants end
local before = redis.call('MGET', unpack(markers))
local set = {}
for j, i in ipairs(taken) do
  grants[i] = before[j] and 2 or 1
  set[#set + 1] = markers[j]
  set[#set + 1] = ARGV[2 * i + 1]
end
redis.call('MSET', unpack(set))
return grants
"""
# Tasks per `_ACQUIRE_LEASES` call (Lua's unpack takes a few thousand values at most).
_LEASES_PER_SCRIPT = 500

# KEYS: the thread's active-run key, the run's record. ARGV: the run id, then the stored form
# of each settled status. Returns the outcome and the run's record as the script found it
# (empty: no such run). One script, so that a start cannot take the thread of a run that
# moved on (it dispatched a step, paused or ended) after it was freed, and the record it
# goes on with is the one the claim was judged on, read in the same round trip.
_CLAIM_TO_START = """
local run = redis.call('HGETALL', KEYS[2])
if #run == 0 or redis.call('HEXISTS', KEYS[2], 'step') == 1 then return {-1, run} end
local status = redis.call('HGET', KEYS[2], 'status')
for i = 2, #ARGV do if status == ARGV[i] then return {-1, run} end end
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return {1, run} end
if redis.call('GET', KEYS[1]) == ARGV[1] then return {1, run} end
return {0, run}
"""
CLAIMED = 1
BUSY = 0
STARTED_ALREADY = -1

# Marks a starting run running, with its `started` event. KEYS: the run's record, its events
# stream. ARGV: the number of record values n, those (field, value, ...), the event's data,
# then the stored form of each settled status. 0 (nothing written) if the run settled or
# dispatched a step meanwhile, else 1. One script, so the status and its event land together
# in one round trip (a WATCH transaction and the event took four).
_MARK_RUNNING = """
if redis.call('HEXISTS', KEYS[1], 'step') == 1 then return 0 end
local n = tonumber(ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
for i = n + 3, #ARGV do if status == ARGV[i] then return 0 end end
redis.call('HSET', KEYS[1], unpack(ARGV, 2, n + 1))
redis.call('XADD', KEYS[2], '*', 'type', 'started', 'data', ARGV[n + 2])
return 1
"""

# Appends events to `events` as one entry (`RunStore.events` reads them apart: one `XADD`
# where each event took one): their number at ARGV[first], then a (type, data) per event;
# returns the index past them. Shared by the scripts that record a step or end a run.
_ADD_EVENTS_FN = """
local function add_events(events, first)
  local count = tonumber(ARGV[first])
  local i = first + 1
  if count == 0 then return i end
  local entry = {'type', ARGV[i], 'data', ARGV[i + 1]}
  for k = 1, count - 1 do
    local at = i + 2 * k
    entry[#entry + 1] = 'type/' .. k
    entry[#entry + 1] = ARGV[at]
    entry[#entry + 1] = 'data/' .. k
    entry[#entry + 1] = ARGV[at + 1]
  end
  redis.call('XADD', events, '*', unpack(entry))
  return i + 2 * count
end
"""

# Writes a step's record from ARGV[first..]: the number of hash values n, those (field, value,
# ...) into `step`, the run's step and updated_at into `run`, then its events
# (`add_events`); returns the index past them. Shared by the scripts that open a step
# (`_OPEN_STEP`, `_ADVANCE_KEPT`), which delete the step's keys first.
_RECORD_STEP_FN = _ADD_EVENTS_FN + f"""
local function record_step(step, run, events, first)
  local n = tonumber(ARGV[first])
  local slice = {_HASH_VALUES_PER_SLICE}
  for from = first + 1, first + n, slice do
    redis.call('HSET', step, unpack(ARGV, from, math.min(first + n, from + slice - 1)))
  end
  local i = first + 1 + n
  redis.call('HSET', run, 'step', ARGV[i], 'updated_at', ARGV[i + 1])
  return add_events(events, i + 2)
end
"""

# Records a dispatched step. KEYS: step hash, done set, run record, events stream, and for a
# step whose one task the driver keeps to run in place: the run's lease, the task's lease and
# its started marker. ARGV: the number of step hash values, those (field, value, ...), the
# run's step and updated_at, the number of events, (type, data) per event, then for a kept
# task: the run lease's owner, the task lease's owner and its milliseconds. The driver's
# last write, so the run lease goes with it, and the kept task's lease is taken in the same
# step (returns its grant as `_ACQUIRE_LEASE` does; 1 when nothing is kept). The step's keys
# are deleted first even when its checkpoint is new: an advancer stalled between its put and
# this script finds the step recorded by the advance that carried on from its head, and the
# done set and `left` must start over together.
_OPEN_STEP = _TAKE_LEASE + _RECORD_STEP_FN + """
redis.call('DEL', KEYS[1], KEYS[2])
local i = record_step(KEYS[1], KEYS[3], KEYS[4], 1)
if not KEYS[5] then return 1 end
if redis.call('GET', KEYS[5]) == ARGV[i] then redis.call('DEL', KEYS[5]) end
return take_lease(KEYS[6], KEYS[7], ARGV[i + 1], ARGV[i + 2])
"""


# Why a kept task may not end its step in place, or nil: the task's lease is no longer
# `ARGV[1]`'s (KEYS[1]), or the run (KEYS[2]) is not running (`ARGV[3]`) on step `ARGV[2]`
# with no stop asked of it and no rollback under way. Shared by `_ADVANCE_KEPT` and
# `_END_KEPT`, whose comments give the reasoning.
_KEPT_GUARD_FN = """
local function kept_refused()
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'lease' end
  local run = redis.call('HMGET', KEYS[2], 'status', 'step', 'stop_requested', 'rolling_back')
  if run[1] ~= ARGV[3] or run[2] ~= ARGV[2] or (run[3] and run[3] ~= 'null')
      or (run[4] and run[4] ~= 'null') then
    return 'run'
  end
  return nil
end
"""


# Advances a run past a step of one task that its own worker kept and ran in place
# (`Driver.advance_kept`), in one script where a step otherwise takes seven round trips (the
# memo, counting the task, the run's lease, the step view, the checkpoint, the next step's
# record with the lease hand-over): the task's memo, the next checkpoint on the head, and the
# next step's record with its one task's lease taken for the same process.
#
# Fencing without the run's lease: the task's lease is the fence. While its owner holds it,
# nobody else runs or counts the task, so no other advance of this step can exist; a lease
# that lapsed (its owner stalled) and was taken or released by another fails the first check,
# and the caller falls back to saving its memo, where the first memo wins. The run must be
# running on this step with no stop asked of it and no rollback under way (`roll_back` marks
# the run before it reads which checkpoints to drop: a checkpoint put on the head between
# that read and its drop would outlive the rollback); the checkpoint goes on the head as every
# put does. Two things are not read, for the run's record answers for them: the run's lease
# (while a task of the run's step is uncounted, only a rollback takes it, and its mark is
# read), and the thread's active run (a running run holds its thread: only `end_run` frees
# it, in the transaction that ends the run, and a start's claim takes it before the run is
# marked running). Every check comes before the first write, so a refusal stores nothing, and
# a crash before the script is a crash before the memo: the task runs again.
#
# The ended step's record goes (its task was never counted in it): a sweeper that read the
# run on that step just before finds no task of it to send again, and a message for its task
# that comes late finds it not dispatched. Were the record left, the task would look lost
# (uncounted, its lease gone) and run again. The new step's keys are deleted too, in the same
# command, as `_OPEN_STEP` does, and so is the kept task's lease: the checks are behind us.
#
# The next task is new (its checkpoint is put here, on the head), so it never started: its
# lease is taken without the `started` marker key that `_ACQUIRE_LEASE` reads and sets. That
# it started (its process runs it at once) is a field of the step's record instead
# (`started_field`, in the step's one `HSET`), which the sweeper reads with the record; the
# sweeper sets the marker key before it sends a lost task again, so that the next taker of
# the lease hears it is a restart.
#
# KEYS: the task's lease, the run's record, the next step's hash and done
# set, the events stream, the next task's lease, the
# memo's writes hash, the checkpoint's 4 keys (`PUT_CHILD_OF_HEAD_FN`), the run's chunk
# stream and its published set, then the ended step's hash and done set. ARGV: the task's
# owner, the run's step as stored, the running status as stored, the next task's
# owner and its lease's milliseconds, '1' if the memo's writes hash is known to be empty
# (`KeptAdvance.memo_fresh`), then the step's values as `_OPEN_STEP` takes them (the
# number of hash values, those, the next step, updated_at, the number of events, events), the
# number of memo values and those (`PUT_WRITES_FN`), the number of chunk batches, the
# stream's length cap, and per batch its key, its number of entries and those
# (`PUBLISH_ONCE_FN`: the task's closing chunks, the step's, the next step's plan), then the
# put's arguments to the end. Returns the next task's grant as `_ACQUIRE_LEASE` does, or why
# nothing was written: 'lease', 'run', 'guard', 'base' or {'head', newest}.
_ADVANCE_KEPT = (REFRESH_FN + PUT_WRITES_FN + PUT_CHILD_OF_HEAD_FN + PUBLISH_ONCE_FN
                 + _CHUNK_BATCHES_FN + _RECORD_STEP_FN + _KEPT_GUARD_FN + """
local refused = kept_refused()
if refused then return refused end
local n = tonumber(ARGV[7])
local i = 8 + n
local events = tonumber(ARGV[i + 2])
local memo = i + 3 + 2 * events
local chunks = memo + 1 + tonumber(ARGV[memo])
local put = past_batches(chunks)
local done = put_child_of_head(8, false, put, #ARGV)
if done ~= 'ok' then return done end
if chunks > memo + 1 then
  put_writes(KEYS[7], KEYS[11], memo + 1, chunks - 1, ARGV[6] == '1')
end
refresh(KEYS[11], tonumber(ARGV[put]))
publish_batches(KEYS[12], KEYS[13], chunks)
redis.call('DEL', KEYS[3], KEYS[4], KEYS[14], KEYS[15], KEYS[1])
record_step(KEYS[3], KEYS[2], KEYS[5], 7)
if redis.call('SET', KEYS[6], ARGV[4], 'NX', 'PX', ARGV[5]) then return 1 end
return 0
""")


# Ends a run whose kept task finished its last step (`Driver.advance_kept`, when the step
# after it plans nothing), in one script where the long way takes a dozen round trips (the
# memo with the count, the run's lease, the step view, a reload, the checkpoint, the output,
# the status and event, the queue): the task's memo, the last checkpoint on the head, the
# output, the `done` status with the step's events, and the thread freed. The checks, the
# fencing and the ended step's keys are those of `_ADVANCE_KEPT` (the same reasoning); the
# writes of `end_run` land together here as they do in its transaction, so a thread is never
# free under a run still marked running. The run leaves the active-runs index after this
# (another slot on Redis Cluster), its look pushed to FIRST_LOOK_MS ahead before it, as
# `end_run` does. Returns the number of runs queued on the thread (their start follows), or
# why nothing was written as `_ADVANCE_KEPT` does. A streaming run or one with `exit`
# durability ends the long way (its stream's end entry, its compaction).
#
# KEYS: the task's lease, the run's record, its events stream, the memo's writes hash, the
# checkpoint's 4 keys (`PUT_CHILD_OF_HEAD_FN`), the run's output, the thread's active run,
# its queue of waiting runs, then the ended step's hash and done set. ARGV: the task's owner,
# the run's step as stored, the running status as stored, '1' if the memo's writes hash is
# known to be empty, the run id, the output, the number of the record's values and those
# (field, value, ...), the events (`add_events`), the number of memo values and those
# (`PUT_WRITES_FN`), then the put's arguments to the end.
_END_KEPT = (REFRESH_FN + PUT_WRITES_FN + PUT_CHILD_OF_HEAD_FN + _ADD_EVENTS_FN
             + _KEPT_GUARD_FN + """
local refused = kept_refused()
if refused then return refused end
local n = tonumber(ARGV[7])
local events = 8 + n
local memo = events + 1 + 2 * tonumber(ARGV[events])
local put = memo + 1 + tonumber(ARGV[memo])
local done = put_child_of_head(5, false, put, #ARGV)
if done ~= 'ok' then return done end
if put > memo + 1 then put_writes(KEYS[4], KEYS[8], memo + 1, put - 1, ARGV[4] == '1') end
refresh(KEYS[8], tonumber(ARGV[put]))
redis.call('DEL', KEYS[12], KEYS[13], KEYS[1])
redis.call('HSET', KEYS[2], unpack(ARGV, 8, 7 + n))
add_events(KEYS[3], events)
redis.call('SET', KEYS[9], ARGV[6])
if redis.call('GET', KEYS[10]) == ARGV[5] then redis.call('DEL', KEYS[10]) end
return redis.call('LLEN', KEYS[11])
""")


@dataclass(frozen=True)
class TaskMemo:
    """What `RunStore.finish_task` saves with the count: a task's held-back memo (None: none
    to save) and a streaming run's closing chunks of the task, with the saver's ttl."""

    writes: PreparedWrites | None
    chunks: Sequence[tuple[str, Sequence[dict[str, bytes | str]]]]
    ttl_ms: int = 0


@dataclass(frozen=True)
class KeptAdvance:
    """What `RunStore.advance_kept` writes for a kept task (`task_id`, whose lease
    `task_owner` holds) that ended its step `checkpoint_id`: its memo, the put of the next
    checkpoint, and the next step's record (as `open_step` takes it) whose one task's lease
    it takes for `next_owner`, for `seconds`."""

    checkpoint_id: str
    task_id: str
    task_owner: str
    memo: PreparedWrites | None
    put: HeadPut
    next_checkpoint_id: str
    tasks: dict[str, dict[str, Any]]
    context: dict[str, Any]
    events: Sequence[tuple[str, dict[str, Any]]]
    next_task_id: str
    next_owner: str
    seconds: float
    # A streaming run's chunks held back to go with these writes (`Publisher.hold`).
    chunks: Sequence[tuple[str, Sequence[dict[str, bytes | str]]]] = ()
    # The memo's writes hash is empty: the step's checkpoint had no pending writes when it
    # was put, and nothing but the held-back memo was written under it since (its `HLEN`
    # is then not read).
    memo_fresh: bool = False


@dataclass(frozen=True)
class KeptEnd:
    """What `RunStore.end_kept` writes for a kept task (`task_id`, whose lease `task_owner`
    holds) that finished its run's last step `checkpoint_id`: its memo, the put of the last
    checkpoint, the run's output and the step's events before the `done` one."""

    checkpoint_id: str
    task_id: str
    task_owner: str
    memo: PreparedWrites | None
    put: HeadPut
    output: Any
    events: Sequence[tuple[str, dict[str, Any]]]
    # As `KeptAdvance.memo_fresh`.
    memo_fresh: bool = False


@dataclass(frozen=True)
class HandOver:
    """What `RunStore.open_step` does for a step whose one task its driver keeps: release the
    run's lease (`run_owner` holds it) and take the task's for `task_owner`."""

    run_lease: str
    run_owner: str
    task_id: str
    task_owner: str
    seconds: float


@dataclass(frozen=True)
class LeaseWanted:
    """A lease a script takes for `owner`, for `seconds`, along with its own writes."""

    name: str
    owner: str
    seconds: float


# A lease its holder's liveness now keeps (`scheduler.leases`): it no longer lapses by itself.
_ADOPT_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PERSIST', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class StepView:
    """A run, its thread's active run, and one step (and task) of it, read together."""

    run: RunRecord | None
    # None too when not read: node tasks do not ask (`with_active`), only an advance does.
    active_run: str | None
    context: dict[str, Any]
    # Of the tasks asked about, those the step was dispatched with. (Whether one is counted
    # done is asked where it matters, as its lease is taken: `acquire_lease`.)
    dispatched: frozenset[str]


def _chunk_args(chunks: Sequence[tuple[str, Sequence[dict[str, bytes | str]]]],
                max_len: int) -> list[Any]:
    """Chunk batches as a script's arguments take them: the number of batches, the stream's
    length cap, then per batch its key, its number of entries and those."""
    args: list[Any] = [len(chunks), max_len]
    for key, entries in chunks:
        args += [key, len(entries), *encode_entries(entries)]
    return args


# A step record's field of one task's info: `task:<task id>`.
_TASK_FIELD = "task:"


def started_field(task_id: str) -> str:
    """The field of a step's record that says its task `task_id` started, for a task whose
    lease was taken as the step was recorded (`_ADVANCE_KEPT`) without a marker key."""
    return f"started:{task_id}"


def _entry_events(entry_id: bytes, fields: dict[bytes, bytes], skip: int = -1
                  ) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The events of one entry of a run's events stream, those after index `skip`."""
    entry = _str(entry_id)
    alone = b"type/1" not in fields
    k = 0
    while (kind := fields.get(b"type" if k == 0 else f"type/{k}".encode())) is not None:
        if k > skip:
            data = fields[b"data" if k == 0 else f"data/{k}".encode()]
            yield (entry if alone else f"{entry}/{k}", _str(kind), serde.loads(data))
        k += 1


def _event_payload(data: dict[str, Any]) -> bytes:
    """An event's data as stored: serde-encoded, for it can hold user values."""
    return serde.dumps(data, root="event") if data else b"{}"


class RunStore:
    """Typed access to the coordination keys; one instance per process is enough."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX,
                 max_value_bytes: int | None = None, *,
                 stream_max_len: int = DEFAULT_MAX_LEN,
                 stream_ttl: float = DEFAULT_TTL) -> None:
        self.stream_max_len = stream_max_len
        self.stream_ttl = stream_ttl
        self.r = client
        self.prefix = check_prefix(prefix)
        self.max_value_bytes = max_value_bytes
        self._finish_task = client.register_script(_FINISH_TASK)
        self._release = client.register_script(_RELEASE_IF_OWNER)
        self._adopt = client.register_script(_ADOPT_IF_OWNER)
        self._acquire = client.register_script(_ACQUIRE_LEASE)
        self._acquire_batch = client.register_script(_ACQUIRE_LEASES)
        self._claim_to_start = client.register_script(_CLAIM_TO_START)
        self._mark_running = client.register_script(_MARK_RUNNING)
        self._open_step = client.register_script(_OPEN_STEP)
        self._advance_kept = client.register_script(_ADVANCE_KEPT)
        self._end_kept = client.register_script(_END_KEPT)
        self.deadlines = Deadlines(client, self.prefix)

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX) -> RunStore:
        return cls(connect(url), prefix)

    def key(self, thread_id: str, *parts: str) -> str:
        return thread_prefix(self.prefix, thread_id) + ":".join(parts)

    # ---- runs -----------------------------------------------------------------------------

    def create_run(self, run: RunRecord, run_input: Any) -> None:
        """Store a new run's record and input together, or fail leaving nothing behind."""
        thread_id, run_id = run.thread_id, run.run_id
        encoded_input = serde.dumps(run_input, root="input")
        if self.max_value_bytes is not None and len(encoded_input) > self.max_value_bytes:
            raise serde.ValueTooLargeError("input", len(encoded_input), self.max_value_bytes)
        run.created_at = run.updated_at = time.time()
        record = run.as_dict()
        # The run's first look, no later than the record: until a start takes the run's
        # lease, it is what notices a start message that never went out or went down with
        # its scheduler. The active-runs entry goes with it, in the deadlines shard's slot
        # (not the thread's). On one Redis all of it is one transaction; on Redis Cluster
        # the two slots cannot share one, so the look goes first: a create that dies after
        # it and before the record leaves a look that finds no run, and the sweeper retires
        # the entry and drops the look.
        def look(pipe: redis.client.Pipeline) -> None:
            self.deadlines.look_by(thread_id, run_id,
                                   self.deadlines.clock.now_ms() + FIRST_LOOK_MS, pipe)
            pipe.sadd(self._active_key(thread_id), _active_member(thread_id, run_id))

        def store(pipe: redis.client.Pipeline) -> None:
            pipe.hset(self.key(thread_id, "run", run_id),
                      mapping={k: orjson.dumps(v) for k, v in record.items()})
            pipe.set(self.key(thread_id, "run", run_id, "input"), encoded_input)
            pipe.rpush(self.key(thread_id, "runs"), run_id)

        if is_cluster(self.r):
            with self.r.pipeline(transaction=False) as pipe:
                look(pipe)
                pipe.execute()
            with self.r.pipeline(transaction=True) as pipe:
                store(pipe)
                pipe.execute()
            return
        with self.r.pipeline(transaction=True) as pipe:
            look(pipe)
            store(pipe)
            pipe.execute()

    def run(self, thread_id: str, run_id: str) -> RunRecord | None:
        return _record(self.r.hgetall(self.key(thread_id, "run", run_id)))

    def update_run(self, thread_id: str, run_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        self.r.hset(self.key(thread_id, "run", run_id),
                    mapping={k: orjson.dumps(v) for k, v in fields.items()})

    def set_output(self, thread_id: str, run_id: str, output: Any) -> None:
        self.r.set(self.key(thread_id, "run", run_id, "output"), serde.dumps(output, root="output"))

    def output(self, thread_id: str, run_id: str) -> Any:
        data = self.r.get(self.key(thread_id, "run", run_id, "output"))
        return serde.loads(_raw(data)) if data is not None else None

    def runs_of(self, thread_id: str) -> list[str]:
        return [_str(r) for r in self.r.lrange(self.key(thread_id, "runs"), 0, -1)]

    def _active_key(self, thread_id: str) -> str:
        """The active-runs set a thread's runs are listed in: one per deadlines shard, in
        that shard's slot, so the index spreads over a cluster's masters with the sweep."""
        return self.deadlines.key(shard_of(thread_id), "active-runs")

    def forget_run(self, thread_id: str, run_id: str) -> None:
        """Drop a settled run's record, input, output, events and stream (the checkpoints
        it wrote stay: they are the thread's history)."""
        with self.r.pipeline(transaction=True) as pipe:
            pipe.lrem(self.key(thread_id, "runs"), 0, run_id)
            pipe.delete(*[self.key(thread_id, *parts) for parts in (
                ("run", run_id), ("run", run_id, "input"), ("run", run_id, "output"),
                ("events", run_id), ("chunks", run_id), ("chunks", run_id, "published"))])
            pipe.execute()

    def active_runs(self) -> list[tuple[str, str]]:
        with self.r.pipeline(transaction=False) as pipe:
            for shard in range(SHARDS):
                pipe.smembers(self.deadlines.key(shard, "active-runs"))
            members = [m for found in pipe.execute() for m in found]
        return [(thread, run) for thread, _, run in (_str(m).partition("\x00") for m in members)]

    def active_run_count(self) -> int:
        with self.r.pipeline(transaction=False) as pipe:
            for shard in range(SHARDS):
                pipe.scard(self.deadlines.key(shard, "active-runs"))
            return sum(int(n) for n in pipe.execute())

    def retire(self, thread_id: str, run_id: str) -> None:
        self.r.srem(self._active_key(thread_id), _active_member(thread_id, run_id))

    def threads(self) -> list[str]:
        pattern = glob_escape(f"{self.prefix}:{{") + "*}:runs"
        keys = [k.decode(errors="replace") for k in self.r.scan_iter(match=pattern, count=500)]
        return sorted(threads_matching(keys, self.prefix, ":runs"))

    def step_view(self, thread_id: str, run_id: str, checkpoint_id: str,
                  task_ids: Sequence[str] = (), *, with_context: bool = True,
                  with_active: bool = True) -> StepView:
        """Everything node tasks or an advance check before they act, in one round trip.
        `with_context=False`: the caller wrote the step's context itself and holds it (an
        advance after the task it kept), so it is not read (an empty context);
        `with_active` as `queue_step_view` takes it."""
        with self.r.pipeline(transaction=False) as pipe:
            view_of = self.queue_step_view(pipe, thread_id, run_id, checkpoint_id, task_ids,
                                           with_context=with_context, with_active=with_active)
            return view_of(pipe.execute())

    def queue_step_view(self, pipe: redis.client.Pipeline, thread_id: str, run_id: str,
                        checkpoint_id: str, task_ids: Sequence[str] = (), *,
                        with_context: bool = True, with_active: bool = True
                        ) -> Callable[[list[Any]], StepView]:
        """`step_view`'s reads queued on the caller's `pipe`, first, so that more can go in
        the same round trip; the function that makes the pipe's replies the view.
        `with_active=False`: the thread's active run is not read (None): a node task does
        not check it (its advance does, under the run's lease)."""
        step_key = self.key(thread_id, "step", run_id, checkpoint_id)
        pipe.hgetall(self.key(thread_id, "run", run_id))
        if with_active:
            pipe.get(self.key(thread_id, "active"))
        if with_context:
            pipe.hget(step_key, "context")
        if task_ids:
            # One HMGET for every task asked about: a batch's view costs a command, not one
            # a task. A task the step was dispatched with has a value.
            pipe.hmget(step_key, [_TASK_FIELD + task_id for task_id in task_ids])
        count = 1 + with_active + with_context + bool(task_ids)
        return lambda replies: _step_view(replies[:count], task_ids, with_context, with_active)

    def run_and_step(self, thread_id: str, run_id: str, checkpoint_id: str
                     ) -> tuple[RunRecord | None, dict[str, Any] | None, frozenset[str]]:
        """A run's record and its dispatched step's context (None: no such step recorded)
        and the tasks it was dispatched with, in one round trip: what a batch message's
        worker keeps of the step for its later messages (`worker.step_cache`)."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key(thread_id, "run", run_id))
            pipe.hgetall(self.key(thread_id, "step", run_id, checkpoint_id))
            raw_run, raw_step = pipe.execute()
        if not raw_step:
            return _record(raw_run), None, frozenset()
        fields, tasks = _step_record(raw_step)
        context = serde.loads(fields["context"]) if "context" in fields else {}
        return _record(raw_run), context, frozenset(tasks)

    # ---- thread lock and queue --------------------------------------------------------------

    def claim_thread(self, thread_id: str, run_id: str) -> bool:
        """Make `run_id` the thread's one active run; True if it is (or already was) ours."""
        key = self.key(thread_id, "active")
        if self.r.set(key, run_id, nx=True):
            return True
        current = self.r.get(key)
        return current is not None and _str(current) == run_id

    def claim_thread_to_start(self, thread_id: str, run_id: str,
                              then: Callable[[redis.client.Pipeline], Callable[[Any], T]]
                              ) -> tuple[int, RunRecord | None, T]:
        """`claim_thread` for a run's start: CLAIMED, BUSY (another run has the thread), or
        STARTED_ALREADY when the run dispatched a step or settled (or does not exist); with
        the run's record as the claim found it (None: no such run), and what `then` read
        after the claim in the same round trip: it queues one read on the pipe (a read, so
        that a retry after NOSCRIPT is harmless) and returns what makes its reply a value."""
        keys = [self.key(thread_id, "active"), self.key(thread_id, "run", run_id)]
        args: list[Any] = [run_id, *(orjson.dumps(s) for s in SETTLED)]
        decode: list[Callable[[Any], T]] = []

        def queue(pipe: redis.client.Pipeline) -> None:
            pipe.evalsha(self._claim_to_start.sha, len(keys), *keys, *args)
            decode[:] = [then(pipe)]

        (code, raw), after = self._pipelined(queue, self._claim_to_start)
        return int(code), _record(dict(zip(raw[::2], raw[1::2], strict=True))), decode[0](after)

    def record_base_head(self, thread_id: str, run_id: str, head: str | None
                         ) -> tuple[str | None, Any]:
        """Record the head a run's start takes its input on, unless one was recorded already;
        the recorded one, and the run's input (a start that records it next applies it: read
        in the same round trip)."""
        key = self.key(thread_id, "run", run_id)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "base_head", orjson.dumps(head))
            pipe.hget(key, "base_head")
            pipe.get(self.key(thread_id, "run", run_id, "input"))
            _, stored, run_input = pipe.execute()
        value: str | None = orjson.loads(stored)
        return value, serde.loads(_raw(run_input)) if run_input is not None else None

    def active_run(self, thread_id: str) -> str | None:
        value = self.r.get(self.key(thread_id, "active"))
        return _str(value) if value is not None else None

    def release_thread(self, thread_id: str, run_id: str) -> None:
        self._release(keys=[self.key(thread_id, "active")], args=[run_id])

    def chunk_stream(self, thread_id: str, run_id: str) -> ChunkStream:
        """The run's stream chunks (`scheduler.streams`)."""
        return ChunkStream(self.r, self.key(thread_id, "chunks", run_id),
                           self.key(thread_id, "chunks", run_id, "published"),
                           self.stream_max_len)

    def _end_stream(self, pipe: redis.client.Pipeline, thread_id: str, run_id: str,
                    status: RunStatus, error: Any) -> None:
        """Queue a streaming run's end entry and its stream's lifetime on `pipe`."""
        key = self.key(thread_id, "chunks", run_id)
        pipe.xadd(key, end_fields(status, error))  # type: ignore[arg-type]
        for name in (key, self.key(thread_id, "chunks", run_id, "published")):
            pipe.expire(name, int(self.stream_ttl))

    def end_stream(self, thread_id: str, run_id: str, status: RunStatus, error: Any) -> None:
        """End the stream of a run that never held its thread (a rejected one)."""
        with self.r.pipeline(transaction=True) as pipe:
            self._end_stream(pipe, thread_id, run_id, status, error)
            pipe.execute()

    def end_run(self, thread_id: str, run_id: str, status: RunStatus, *,
                streaming: bool = False, **data: Any) -> bool:
        """Store a run's final (or paused) status, announce it, and free its thread, at once;
        False (and nothing written) if the run already ended, e.g. it was cancelled.

        One transaction: a process dying half-way must not leave a free thread under a run
        still marked running (the next run would take the thread, and a late advance of the
        old run would act on the new run's checkpoints), nor a status without its event.
        `streaming`: the run streams chunks; its stream's end entry lands in the same
        transaction, so a consumer never waits on a run that ended.

        The run leaves the active-runs index after the transaction (another slot on Redis
        Cluster). Before it, the run's look is pushed to FIRST_LOOK_MS ahead at most: a process
        that dies between the two leaves an ended run listed as active, and that look finds
        it ended and retires it (`Sweeper.look`).
        """
        fields = _end_fields(status, data)
        payload = _event_payload(data)

        def end(pipe: redis.client.Pipeline) -> None:
            pipe.hset(self.key(thread_id, "run", run_id),
                      mapping={k: orjson.dumps(v) for k, v in fields.items()})
            pipe.xadd(self.key(thread_id, "events", run_id), {"type": status, "data": payload})
            self._release(keys=[self.key(thread_id, "active")], args=[run_id], client=pipe)
            if streaming:
                self._end_stream(pipe, thread_id, run_id, status, data.get("error"))

        self.deadlines.look_by(thread_id, run_id,
                               self.deadlines.clock.now_ms() + FIRST_LOOK_MS)
        ended = self._unless_ended(thread_id, run_id, end)
        if ended:
            self.retire(thread_id, run_id)
        return ended

    def mark_running(self, thread_id: str, run_id: str, step: int, **fields: Any) -> bool:
        """Mark a starting run `running` and add its `started` event (at `step`); False
        (nothing written) if it settled or dispatched a step meanwhile: a cancel that landed
        while it was starting is not overwritten, and a start that stalled while another took
        the run over changes nothing."""
        fields = {**fields, "status": RunStatus.RUNNING, "updated_at": time.time()}
        values = [x for k, v in fields.items() for x in (k, orjson.dumps(v))]
        return bool(self._mark_running(
            keys=[self.key(thread_id, "run", run_id), self.key(thread_id, "events", run_id)],
            args=[len(values), *values, _event_payload({"step": step}),
                  *(orjson.dumps(st) for st in SETTLED)],
        ))

    def mark_queued(self, thread_id: str, run_id: str) -> bool:
        """A waiting run's turn came: mark it `queued` for its start; False (nothing
        written) if it ended while it waited (cancelled)."""
        fields = {"status": RunStatus.QUEUED, "updated_at": time.time()}

        def queued(pipe: redis.client.Pipeline) -> None:
            pipe.hset(self.key(thread_id, "run", run_id),
                      mapping={k: orjson.dumps(v) for k, v in fields.items()})

        return self._unless_ended(thread_id, run_id, queued)

    def _unless_ended(self, thread_id: str, run_id: str,
                      write: Callable[[redis.client.Pipeline], None]) -> bool:
        """Queue `write` in a transaction that happens only if the run has not ended."""
        run_key = self.key(thread_id, "run", run_id)
        refused = False

        def guarded(pipe: redis.client.Pipeline) -> None:
            nonlocal refused
            status = pipe.hget(run_key, "status")
            refused = status is not None and orjson.loads(status) in TERMINAL
            if not refused:
                pipe.multi()
                write(pipe)

        self.r.transaction(guarded, run_key)
        return not refused

    def wait_behind_active(self, thread_id: str, run_id: str) -> None:
        """Queue a run behind the thread's active run (`on_busy="enqueue"`): it starts on the
        state that one leaves."""
        self.r.rpush(self.key(thread_id, "queue"), run_id)
        self.update_run(thread_id, run_id, status=RunStatus.WAITING)
        self.add_event(thread_id, run_id, "waiting", behind=self.active_run(thread_id))

    def requeue_front(self, thread_id: str, run_id: str) -> None:
        self.r.lpush(self.key(thread_id, "queue"), run_id)

    def unqueue(self, thread_id: str, run_id: str) -> None:
        self.r.lrem(self.key(thread_id, "queue"), 0, run_id)

    def pop_queued(self, thread_id: str) -> str | None:
        value = self.r.lpop(self.key(thread_id, "queue"))
        return _str(value) if isinstance(value, bytes | str) else None

    # ---- steps and barriers ---------------------------------------------------------------

    def open_step(
        self, thread_id: str, run_id: str, checkpoint_id: str,
        tasks: dict[str, dict[str, Any]], context: dict[str, Any],
        events: Sequence[tuple[str, dict[str, Any]]] = (), hand_over: HandOver | None = None,
    ) -> int:
        """Record a dispatched superstep: its tasks, and what workers need besides the checkpoint.

        `context` (resume flag, resume map) is serde-encoded: it can hold user answers. The
        run's `events` so far go in the same script. With `hand_over`, the run's lease is
        released and the kept task's taken there too: its grant (`acquire_lease`'s), after
        the run's look was pushed to the task lease's expiry, in order as `acquire_lease`
        does (so that a lapse is seen). Else 1.
        """
        keys = self._step_keys(thread_id, run_id, checkpoint_id)
        args = self._step_args(checkpoint_id, tasks, context, events)
        if hand_over is None:
            return int(self._open_step(keys=keys, args=args))
        keys += [self.key(thread_id, "lease", hand_over.run_lease),
                 self.key(thread_id, "lease", hand_over.task_id),
                 self.key(thread_id, "started", hand_over.task_id)]
        ms = int(hand_over.seconds * 1000)
        args += [hand_over.run_owner, hand_over.task_owner, ms]
        return self._after_look(thread_id, run_id, ms, self._open_step, keys, args)

    def _step_keys(self, thread_id: str, run_id: str, checkpoint_id: str) -> list[str]:
        """A step record's keys, as `_OPEN_STEP` takes them: its hash, its done set, the
        run's record and its events stream."""
        return [self.key(thread_id, "step", run_id, checkpoint_id),
                self.key(thread_id, "done", run_id, checkpoint_id),
                self.key(thread_id, "run", run_id), self.key(thread_id, "events", run_id)]

    @staticmethod
    def _step_args(checkpoint_id: str, tasks: dict[str, dict[str, Any]],
                   context: dict[str, Any], events: Sequence[tuple[str, dict[str, Any]]],
                   started: dict[str, str] | None = None) -> list[Any]:
        """A step record's values, as `_OPEN_STEP` takes them; `started`: tasks that start
        as the step is recorded (`_ADVANCE_KEPT`), by their lease's owner."""
        now = time.time()
        fields: list[Any] = [
            "total", len(tasks), "left", len(tasks), "opened_at", now,
            "context", serde.dumps(context, root="context"),
        ]
        for tid, info in tasks.items():
            fields += [_TASK_FIELD + tid,
                       orjson.dumps({**info, "dispatched_at": now, "attempt": 1})]
        for tid, owner in (started or {}).items():
            fields += [started_field(tid), owner]
        args: list[Any] = [len(fields), *fields, orjson.dumps(checkpoint_id), orjson.dumps(now),
                           len(events)]
        for kind, data in events:
            args += [kind, _event_payload(data)]
        return args

    def advance_kept(self, thread_id: str, run_id: str, kept: KeptAdvance) -> int | None:
        """Save a kept task's memo, the checkpoint that ends its step and the next step's
        record with its one task's lease, at once (`_ADVANCE_KEPT`, with the crash
        reasoning): the next task's grant (the saver's caches then learn the put:
        `RedisSaver.finish_head_put`), or None when nothing was written (the caller goes the
        long way: memo, count, advance under the run's lease)."""
        put = kept.put
        keys = [self.key(thread_id, "lease", kept.task_id),
                self.key(thread_id, "run", run_id),
                *self._step_keys(thread_id, run_id, kept.next_checkpoint_id)[:2],
                self.key(thread_id, "events", run_id),
                self.key(thread_id, "lease", kept.next_task_id),
                _memo_key(kept.memo, put), *put.keys,
                self.key(thread_id, "chunks", run_id),
                self.key(thread_id, "chunks", run_id, "published"),
                *self._step_keys(thread_id, run_id, kept.checkpoint_id)[:2]]
        ms = int(kept.seconds * 1000)
        memo = kept.memo.triples if kept.memo is not None else []
        chunks = _chunk_args(kept.chunks, self.stream_max_len)
        args = [kept.task_owner, orjson.dumps(kept.checkpoint_id),
                orjson.dumps(RunStatus.RUNNING), kept.next_owner, ms,
                "1" if kept.memo_fresh else "0",
                *self._step_args(kept.next_checkpoint_id, kept.tasks, kept.context,
                                 kept.events, {kept.next_task_id: kept.next_owner}),
                len(memo), *memo, *chunks, *put.args]
        [found] = self._after_look_each(thread_id, run_id, ms, self._advance_kept,
                                        [(keys, args)])
        return found if isinstance(found, int) else None

    def end_kept(self, thread_id: str, run_id: str, kept: KeptEnd) -> int | None:
        """End a run whose kept task finished its last step, with the task's memo and the
        last checkpoint, at once (`_END_KEPT`, with the crash reasoning): the number of runs
        queued on the thread, or None when nothing was written (the caller goes the long
        way, as for `advance_kept`)."""
        put = kept.put
        keys = [self.key(thread_id, "lease", kept.task_id),
                self.key(thread_id, "run", run_id),
                self.key(thread_id, "events", run_id),
                _memo_key(kept.memo, put), *put.keys,
                self.key(thread_id, "run", run_id, "output"),
                self.key(thread_id, "active"),
                self.key(thread_id, "queue"),
                *self._step_keys(thread_id, run_id, kept.checkpoint_id)[:2]]
        done = {"output": kept.output, "interrupts": []}
        values = [x for k, v in _end_fields(RunStatus.DONE, done).items()
                  for x in (k, orjson.dumps(v))]
        events = [*kept.events, (RunStatus.DONE, done)]
        memo = kept.memo.triples if kept.memo is not None else []
        args = [kept.task_owner, orjson.dumps(kept.checkpoint_id),
                orjson.dumps(RunStatus.RUNNING), "1" if kept.memo_fresh else "0", run_id,
                serde.dumps(kept.output, root="output"), len(values), *values,
                len(events), *(x for kind, data in events for x in (kind, _event_payload(data))),
                len(memo), *memo, *put.args]
        [queued] = self._after_look_each(thread_id, run_id, FIRST_LOOK_MS, self._end_kept,
                                         [(keys, args)])
        if not isinstance(queued, int):
            return None
        self.retire(thread_id, run_id)
        return queued

    def mark_sent(self, thread_id: str, run_id: str, checkpoint_id: str) -> None:
        """Every task of the step reached the broker (a dispatch can die half-way)."""
        self.r.hset(self.key(thread_id, "step", run_id, checkpoint_id), "sent", 1)

    def note_redispatch(self, thread_id: str, run_id: str, checkpoint_id: str, task_id: str,
                        info: dict[str, Any], started: bool) -> None:
        """The sweeper sends a lost task again with `info`; one that `started` has its
        `started` marker key set (a kept task's was a field of its step's record), so that
        whoever takes its lease next hears it is a restart (`_ACQUIRE_LEASE`)."""
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(thread_id, "step", run_id, checkpoint_id), _TASK_FIELD + task_id,
                      orjson.dumps(info))
            if started:
                pipe.set(self.key(thread_id, "started", task_id), "sweeper", nx=True)
            pipe.execute()

    def note_readvance(self, thread_id: str, run_id: str, checkpoint_id: str,
                       at: float) -> None:
        """The sweeper sent the step's advance again at `at`: the next try waits from then."""
        self.r.hset(self.key(thread_id, "step", run_id, checkpoint_id), "advance_at", at)

    def finish_task(self, thread_id: str, run_id: str, checkpoint_id: str, task_id: str,
                    lease_owner: str | None = None, run_lease: LeaseWanted | None = None,
                    memo: TaskMemo | None = None, **event: Any) -> int:
        """Announce a finished task, release its lease if `lease_owner` still holds it, and
        count it, at once; with `memo`, its writes (and a streaming run's closing chunks)
        are saved in the same script.

        STEP_COMPLETED for exactly one caller once the step is complete: the one that
        advances it; STEP_COMPLETED_AND_LEASED when it also took the run's lease for
        `run_lease.owner`; else 0.

        The run's look is pushed to the run lease's expiry after the script took it, not
        before as `acquire_lease` does (a task that does not complete its step, most of a
        fan-out's, would pay for a look it does not need). Dying in between leaves a look
        due anyway: the task's own lease pushed one to its expiry when it was taken, still
        pending unless the lease was adopted, and releasing an adopted lease pushes one
        first (`Heartbeat`). That look finds the run's lease, then the step complete and not
        advanced, and sends the advance again.
        """
        memo = memo or TaskMemo(None, ())
        writes = memo.writes
        keys = [self.key(thread_id, "done", run_id, checkpoint_id),
                self.key(thread_id, "step", run_id, checkpoint_id),
                self.key(thread_id, "events", run_id),
                self.key(thread_id, "lease", task_id),
                # Keys a call does not use are named all the same (the script leaves them
                # alone), in the thread's slot like every key of the script.
                self.key(thread_id, "lease", run_lease.name if run_lease else task_id),
                *(writes.keys if writes is not None else [self.key(thread_id, "writes")] * 2),
                self.key(thread_id, "chunks", run_id),
                self.key(thread_id, "chunks", run_id, "published")]
        ms = int(run_lease.seconds * 1000) if run_lease else 0
        triples = writes.triples if writes is not None else []
        args: list[Any] = [task_id, time.time(), _event_payload({"task_id": task_id, **event}),
                           lease_owner or "", run_lease.owner if run_lease else "", ms,
                           memo.ttl_ms, len(triples), *triples,
                           *_chunk_args(memo.chunks, self.stream_max_len)]
        done = int(self._finish_task(keys=keys, args=args))
        if done == STEP_COMPLETED_AND_LEASED:
            self.deadlines.look_by(thread_id, run_id, self.deadlines.clock.now_ms() + ms)
        return done

    def done_count(self, thread_id: str, run_id: str, checkpoint_id: str) -> int:
        return int(self.r.scard(self.key(thread_id, "done", run_id, checkpoint_id)))

    # ---- leases ---------------------------------------------------------------------------

    def acquire_lease(self, thread_id: str, name: str, owner: str, seconds: float,
                      unless_done: tuple[str, str] | None = None, *, run_id: str) -> int:
        """Take the named lease of run `run_id` unless a live holder has it.

        0 if not taken; else FIRST_START, or RESTART when it was taken before (a task that
        may have left writes). With `unless_done` (run, checkpoint), never for a task that
        step already counts done.

        The lease lapses after `seconds` unless its process's liveness adopts it
        (`scheduler.leases`). So that a lapse is seen, the run's look is pushed to no later
        than the expiry, in the same round trip and before the lease is taken: dying between
        the two leaves a look that finds nothing to do, never a lease no look watches.
        """
        keys = [self.key(thread_id, "lease", name), self.key(thread_id, "started", name)]
        if unless_done is not None:
            keys.append(self.key(thread_id, "done", *unless_done))
        ms = int(seconds * 1000)
        return self._after_look(thread_id, run_id, ms, self._acquire, keys, [owner, ms, name])

    def acquire_leases(self, thread_id: str, run_id: str, checkpoint_id: str,
                       owners: Sequence[tuple[str, str]], seconds: float) -> list[int]:
        """`acquire_lease` for each (task, owner) of a batch of step `checkpoint_id`'s tasks,
        at once (`_ACQUIRE_LEASES`, with the crash reasoning): each grant, in order. The
        run's look is pushed once, to the leases' expiry, before any is taken."""
        if not owners:
            return []
        done = self.key(thread_id, "done", run_id, checkpoint_id)
        ms = int(seconds * 1000)
        calls: list[tuple[list[str], list[Any]]] = []
        for at in range(0, len(owners), _LEASES_PER_SCRIPT):
            keys: list[str] = [done]
            args: list[Any] = [ms]
            for task_id, owner in owners[at:at + _LEASES_PER_SCRIPT]:
                keys += [self.key(thread_id, "lease", task_id),
                         self.key(thread_id, "started", task_id)]
                args += [task_id, owner]
            calls.append((keys, args))
        replies = self._after_look_each(thread_id, run_id, ms, self._acquire_batch, calls)
        return [int(grant) for reply in replies for grant in reply]

    def _after_look(self, thread_id: str, run_id: str, ms: int, script: Any,
                    keys: list[str], args: list[Any]) -> int:
        """Run a lease-taking `script` once the run's look is pushed to no later than the
        lease's expiry, `ms` from now: dying between the two leaves a look that finds
        nothing to do, never a lease no look watches. In order (`_in_order`)."""
        return int(self._after_look_each(thread_id, run_id, ms, script, [(keys, args)])[0])

    def _after_look_each(self, thread_id: str, run_id: str, ms: int, script: Any,
                         calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """`_after_look` with the script run once per (keys, args) of `calls`, all after the
        one look; their replies."""
        expires = self.deadlines.clock.now_ms() + ms

        def look(pipe: redis.client.Pipeline) -> None:
            self.deadlines.look_by(thread_id, run_id, expires, pipe)

        def run(pipe: redis.client.Pipeline) -> None:
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)

        return self._in_order([look, run], script)[1:]

    def adopt_leases(self, leases: Sequence[tuple[str, str, str]],
                     listing: Callable[[redis.client.Pipeline], None]) -> list[bool]:
        """Make each lease (thread, name, owner) its owner still holds stop lapsing by itself;
        which were. `listing` queues, first, what lists them in the holder's `held` set
        (`Deadlines.hold`): one round trip, in that order on one connection. (On Redis
        Cluster the two go to different slots: there, list first, then adopt: `_in_order`.)
        The adoption script is only ever loaded together with the listing's, so the listing
        cannot fail as unknown to Redis while the adoptions after it run."""
        def adopt(pipe: redis.client.Pipeline) -> None:
            for thread_id, name, owner in leases:
                pipe.evalsha(self._adopt.sha, 1, self.key(thread_id, "lease", name), owner)

        done = self._in_order([listing, adopt], self._adopt, *self.deadlines.scripts)
        return [bool(d) for d in done[len(done) - len(leases):]]

    def release_lease(self, thread_id: str, name: str, owner: str) -> None:
        self._release(keys=[self.key(thread_id, "lease", name)], args=[owner])

    def revoke_leases(self, leases: Sequence[tuple[str, str, str]]) -> None:
        """Release each lease (thread, name, owner) its owner still holds: the sweeper's part
        when the owner's process stopped beating. Its writes are fenced from then on."""
        def queue(pipe: redis.client.Pipeline) -> None:
            for thread_id, name, owner in leases:
                pipe.evalsha(self._release.sha, 1, self.key(thread_id, "lease", name), owner)

        if leases:
            self._pipelined(queue, self._release)

    def _in_order(self, queues: Sequence[Callable[[redis.client.Pipeline], None]],
                  *scripts: Any) -> list[Any]:
        """Each of `queues`' commands, every one after those of the queues before it: one
        round trip on a single server (a pipeline runs in order on one connection); on Redis
        Cluster, a round trip per queue, since a pipeline there runs on each node at once
        and the queues name keys of different slots (the deadlines shard's, the thread's)."""
        if not is_cluster(self.r):
            def each(pipe: redis.client.Pipeline) -> None:
                for queue in queues:
                    queue(pipe)

            return self._pipelined(each, *scripts)
        return [reply for queue in queues for reply in self._pipelined(queue, *scripts)]

    def _pipelined(self, queue: Callable[[redis.client.Pipeline], None],
                   *scripts: Any) -> list[Any]:
        """Run `queue`'s commands in one round trip (no transaction). Scripts go by EVALSHA:
        redis-py's scripts in a pipeline ask `SCRIPT EXISTS` on every execute; a server that
        does not know them yet (first use, restart) gets `scripts` loaded, then one retry
        (what ran before the unknown script is idempotent where this is used)."""
        for attempt in (1, 2):
            with self.r.pipeline(transaction=False) as pipe:
                queue(pipe)
                try:
                    return pipe.execute()
                except redis.exceptions.NoScriptError:
                    if attempt == 2:
                        raise
                    for script in scripts:
                        self.r.script_load(script.script)
        raise AssertionError("unreachable")

    # ---- what the sweeper reads -------------------------------------------------------------

    def run_and_lease(self, thread_id: str, run_id: str, lease: str
                      ) -> tuple[RunRecord | None, int, bool]:
        """A run's record, the remaining milliseconds of its lease named `lease` (`PTTL`: -2
        none, -1 an adopted lease) and whether that lease was ever taken, in one round trip."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key(thread_id, "run", run_id))
            pipe.pttl(self.key(thread_id, "lease", lease))
            pipe.exists(self.key(thread_id, "started", lease))
            raw, ttl, started = pipe.execute()
        return _record(raw), int(ttl), bool(started)

    def step_state(self, thread_id: str, run_id: str, checkpoint_id: str
                   ) -> tuple[dict[str, str], dict[str, dict[str, Any]], set[str]]:
        """A dispatched step's bookkeeping, its tasks and the ids counted done, at once."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key(thread_id, "step", run_id, checkpoint_id))
            pipe.smembers(self.key(thread_id, "done", run_id, checkpoint_id))
            raw, done = pipe.execute()
        fields, tasks = _step_record(raw)
        info = {k: _str(v) for k, v in fields.items() if k != "context"}
        return info, {t: orjson.loads(v) for t, v in tasks.items()}, {_str(t) for t in done}

    def task_leases(self, thread_id: str, task_ids: Sequence[str]) -> dict[str, tuple[int, bool]]:
        """Per task: its lease's remaining milliseconds (`PTTL`) and whether it ever started."""
        with self.r.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.pttl(self.key(thread_id, "lease", task_id))
                pipe.exists(self.key(thread_id, "started", task_id))
            flags = pipe.execute()
        return {t: (int(ttl), bool(started))
                for t, ttl, started in zip(task_ids, flags[::2], flags[1::2], strict=True)}

    def dedicated(self) -> RunStore:
        """The same store on connections of its own: a process's heartbeat must not wait
        for (or fail on) a pool its node threads have exhausted."""
        return type(self)(with_own_pool(self.r, 4), self.prefix, self.max_value_bytes)

    # ---- events ---------------------------------------------------------------------------

    def add_event(self, thread_id: str, run_id: str, kind: str, *,
                  pipe: redis.client.Pipeline | None = None, **data: Any) -> None:
        """Append to the run's event stream; producers replay it from any id after reconnecting.

        With `pipe`, the event is only queued on that pipeline.
        """
        payload = _event_payload(data)
        (pipe or self.r).xadd(self.key(thread_id, "events", run_id),
                              {"type": kind, "data": payload})

    def events(
        self, thread_id: str, run_id: str, after: str = "0-0", block_ms: int | None = None
    ) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """The run's events after id `after`: (id, type, data). An entry holds one event or
        several written together (a step's, `record_step`). A lone event has its entry's id;
        of several, the k-th (from 0) has `<entry id>/<k>`, and reading on from one of those
        skips the events before it in its entry (as a batch's chunk ids do,
        `scheduler.streams`)."""
        key = self.key(thread_id, "events", run_id)
        entry, index = split_id(after)
        if index is not None:
            for event_id, fields in cast(list[tuple[bytes, dict[bytes, bytes]]],
                                         self.r.xrange(key, entry, entry)):
                yield from _entry_events(event_id, fields, skip=index)
        # A RESP2 reply (the protocol our clients speak): [(stream, [(id, fields), ...])].
        reply = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
                     self.r.xread({key: entry}, block=block_ms, count=1000))
        for _, entries in reply or ():
            for event_id, fields in entries:
                yield from _entry_events(event_id, fields)

    # ---- graph registry -------------------------------------------------------------------

    def publish_graphs(self, graphs: dict[str, dict[str, Any]]) -> None:
        if graphs:
            self.r.hset(f"{self.prefix}:graphs",
                        mapping={ref: orjson.dumps(info) for ref, info in graphs.items()})

    def graph_description(self, ref: str) -> dict[str, Any] | None:
        """The graph as the workers published it (`registry.describe`); None if none did."""
        raw = self.r.hget(f"{self.prefix}:graphs", ref)
        return None if raw is None else cast(dict[str, Any], orjson.loads(cast(bytes, raw)))

    def graph_nodes(self, ref: str) -> list[str] | None:
        """The nodes of a graph as the workers published it; None if none did."""
        described = self.graph_description(ref)
        return None if described is None else list(described.get("nodes", []))

    def published_graphs(self) -> list[str]:
        return sorted(_str(k) for k in self.r.hkeys(f"{self.prefix}:graphs"))

    def expire_thread(self, thread_id: str, seconds: float) -> None:
        """Give every key of a finished thread a lifetime (CELERYGRAPH_RUN_TTL)."""
        pattern = glob_escape(thread_prefix(self.prefix, thread_id)) + "*"
        for key in self.r.scan_iter(match=pattern, count=500):
            self.r.expire(key, int(seconds))


def _str(raw: bytes | str) -> str:
    """A reply as text; our clients do not decode replies (checkpoints are bytes)."""
    return raw.decode() if isinstance(raw, bytes) else raw


def _raw(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode()


def _step_view(replies: list[Any], task_ids: Sequence[str], with_context: bool,
               with_active: bool) -> StepView:
    """A `StepView` of `queue_step_view`'s replies."""
    raw, *rest = replies
    active = rest.pop(0) if with_active else None
    context = rest.pop(0) if with_context else None
    infos = rest[0] if task_ids else []
    return StepView(
        run=_record(raw),
        active_run=active.decode() if active is not None else None,
        context=serde.loads(context) if context is not None else {},
        dispatched=frozenset(t for t, info in zip(task_ids, infos, strict=True)
                             if info is not None),
    )


def _step_record(raw: dict[Any, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A step's record as stored: its own fields, and its tasks' infos (still encoded) by
    task id, from their `task:<id>` fields."""
    fields: dict[str, Any] = {}
    tasks: dict[str, Any] = {}
    for key, value in raw.items():
        name = _str(key)
        if name.startswith(_TASK_FIELD):
            tasks[name[len(_TASK_FIELD):]] = value
        else:
            fields[name] = value
    return fields, tasks


def _end_fields(status: RunStatus, data: dict[str, Any]) -> dict[str, Any]:
    """What a run's record takes when it ends with `status` (and its event's `data`)."""
    now = time.time()
    fields: dict[str, Any] = {"status": status, "finished_at": now, "updated_at": now}
    if "error" in data:
        fields["error"] = data["error"]
    return fields


def _memo_key(memo: PreparedWrites | None, put: HeadPut) -> str:
    """The writes hash a kept task's script saves `memo` in; without a memo, a key of the
    put's (the same slot) in its place, which the script then leaves alone."""
    return memo.keys[0] if memo is not None else put.keys[-1]


def _record(raw: dict[bytes | str, bytes | str]) -> RunRecord | None:
    if not raw:
        return None
    return RunRecord.from_fields({_str(k): orjson.loads(v) for k, v in raw.items()})


def _active_member(thread_id: str, run_id: str) -> str:
    return f"{thread_id}\x00{run_id}"


def new_run_id() -> str:
    return uuid.uuid4().hex
