"""A run's stream chunks in Redis: one Redis stream per run, written by every process that
works on the run, read by any number of consumers from any id.

Why one stream per run and no pub/sub: a stream is both the live feed (`XREAD BLOCK`
wakes a blocked reader the moment an entry lands, sub-millisecond on loopback) and the
replay log (every entry keeps an id; a consumer that reconnects reads on from the last id
it saw, so it gets the rest exactly once, with no gap and no duplicate). Pub/sub would add
a second channel whose messages a disconnected consumer loses anyway. The key carries the
thread's hash tag, so a run's chunks sit in its thread's Redis Cluster slot.

Four kinds of entry:

- a chunk (`k=c`): namespace, mode, payload (the serde's JSON, never pickle), and the task
  and attempt that produced it (empty for chunks of the run itself: `values`,
  `checkpoints`, a step's `tasks` starts);
- a batch (`k=b`): the chunks a running task streamed while the previous batch was being
  written, in order, with their task and attempt. A model's tokens come faster than one
  Redis round trip each; a batch is one `XADD` whatever its size. A batch's chunks have ids
  `<entry id>/<index>`, and reading on from one of them skips the rest of its entry. A
  model call's tokens share their metadata: a batch stores it with the call's first token
  there, and the later ones name that token's index (`batch_fields`);
- an abandoned attempt (`k=a`): a task ran again because the attempt before it died (its
  worker was killed, its lease lapsed). Chunks of that task with another attempt, earlier
  in the stream, came from the dead attempt; the task's `updates` and `tasks` result come
  once, from the attempt that saved its result;
- the end (`k=e`): the run's status and, if it failed, its error. Nothing follows.

Who writes what, and why each chunk lands once:

- A worker streams what a node produces while it runs (tokens, custom data, subgraph
  chunks) as it comes, tagged with its attempt. A task's closing chunks (its `updates` and
  `tasks` result) are written with `publish_once` under a key naming the task, after its
  result (memo) is saved: a re-run that finds the memo writes them again under the same
  key, and the second write is a no-op. So a worker killed between the memo and the chunk
  loses nothing, and one killed after both adds nothing.
- A driver (a start or an advance) writes the run's own chunks under keys naming the
  checkpoint they follow from (`publish_once`): before it writes the next checkpoint, and
  before it dispatches a step or ends the run. A driver that dies and is repeated plans the
  same chunks from the same checkpoint, and the keys drop the repeats.

Retention: a stream keeps at most `max_len` entries (oldest trimmed first, approximately,
as `XADD MAXLEN ~` does) and, once its run settles, lives `ttl` seconds.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import orjson
import redis

from graphdef import serde
from graphdef.errors import revive_error
from scheduler.records import RunRecord

Chunk = tuple[tuple[str, ...], str, Any]

CHUNK = b"c"
BATCH = b"b"
ABANDONED = b"a"
END = b"e"

DEFAULT_MAX_LEN = 100_000
DEFAULT_TTL = 3600.0

# KEYS: the stream, the set of published keys. ARGV: the key, max length, then the
# entries' fields as JSON objects. One script: the check and the entries land together.
# Publishes the entries ARGV[first..last] (JSON lists of field, value pairs) to `stream`,
# capped near `max_len`, unless `key` is in the `published` set; 1 if they landed, else 0.
# A function, so that a script of the run store's that publishes a step's chunks together
# with the step's other writes (`RunStore.advance_kept`) runs the same code.
PUBLISH_ONCE_FN = """
local function publish_once(stream, published, max_len, key, first, last)
  if redis.call('SADD', published, key) == 0 then return 0 end
  for i = first, last do
    local entry = cjson.decode(ARGV[i])
    local args = {stream, 'MAXLEN', '~', max_len, '*'}
    for _, pair in ipairs(entry) do table.insert(args, pair[1]); table.insert(args, pair[2]) end
    redis.call('XADD', unpack(args))
  end
  return 1
end
"""
_PUBLISH_ONCE = PUBLISH_ONCE_FN + """
return publish_once(KEYS[1], KEYS[2], ARGV[2], ARGV[1], 3, #ARGV)
"""

ERROR_TAG = "__cg_error__"


@dataclass(frozen=True)
class StreamPart:
    """One entry of a run's stream, decoded.

    `kind`: `chunk`, `abandoned` or `end`. A chunk has `ns`, `mode` and `data` (and `task`,
    `attempt` when a task produced it); an abandoned marker has `task` and `attempt` (the
    attempt that replaces the dead one); an end has `status` and, on failure, `error`.
    """

    id: str
    kind: str
    ns: tuple[str, ...] = ()
    mode: str = ""
    data: Any = None
    task: str = ""
    attempt: str = ""
    status: str = ""
    error: dict[str, Any] | None = None


def _portable(value: Any) -> Any:
    """`value` with exceptions (a failed task's `tasks` payload) as tagged error records:
    the serde stores no exception, and a consumer revives them by name, never by import."""
    if isinstance(value, BaseException):
        record: dict[str, Any] = {"type": type(value).__name__, "message": str(value)}
        if all(isinstance(a, str | int | float | bool) or a is None for a in value.args):
            record["args"] = list(value.args)
        return {ERROR_TAG: record}
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(_portable(v) for v in value)
    return value


def _revived(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and ERROR_TAG in value:
            return revive_error(value[ERROR_TAG])
        return {k: _revived(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revived(v) for v in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(_revived(v) for v in value)
    return value


def _encoded(chunk: Chunk) -> bytes:
    """A chunk as one JSON array `[ns, mode, payload]`, encoded when it is emitted: a node
    that changes an object after streaming it does not change what was streamed."""
    ns, mode, payload = chunk
    data = _portable(payload) if mode in ("tasks", "debug") else payload
    return serde.dumps([list(ns), mode, data], root=f"stream[{mode}]")


@dataclass(frozen=True)
class LiveChunk:
    """A chunk a running task streams, encoded as it is emitted. A `messages` chunk keeps
    its metadata apart (`meta`): every token of one model call carries the same metadata,
    most of a token's bytes, and a batch stores it once (`batch_fields`)."""

    head: bytes  # `[ns, mode, payload` of a chunk, without the closing bracket
    meta: bytes | None = None


class LiveEncoder:
    """Encodes a running task's chunks. A model call's tokens share one metadata object
    (as in-process, where each token's chunk holds that same dict), encoded once here: the
    metadata is built by the messages handler when the call starts and no one changes it."""

    def __init__(self) -> None:
        self._meta: tuple[Any, bytes] | None = None

    def encode(self, chunk: Chunk) -> LiveChunk:
        ns, mode, payload = chunk
        if mode != "messages" or not (isinstance(payload, tuple) and len(payload) == 2):
            return LiveChunk(_encoded(chunk)[:-1])
        message, meta = payload
        if self._meta is None or self._meta[0] is not meta:
            self._meta = (meta, serde.dumps(meta, root="stream[messages].metadata"))
        head = serde.dumps([list(ns), mode, message], root="stream[messages]")[:-1]
        return LiveChunk(head, self._meta[1])


def chunk_fields(chunk: Chunk, task: str = "", attempt: str = "") -> dict[str, bytes | str]:
    return {"k": "c", "d": _encoded(chunk), "t": task, "a": attempt}


def batch_fields(chunks: Sequence[LiveChunk], task: str, attempt: str
                 ) -> dict[str, bytes | str]:
    """A batch entry: its chunks as one JSON array. A `messages` chunk is `[ns, mode,
    message, metadata]`, its metadata the index of the batch's earlier chunk with the same
    metadata when there is one: a batch is decoded whole, even when read on from its
    middle, so a reference never points outside what the reader decodes."""
    items: list[bytes] = []
    first_with: dict[bytes, int] = {}
    for index, chunk in enumerate(chunks):
        if chunk.meta is None:
            items.append(chunk.head + b"]")
            continue
        earlier = first_with.setdefault(chunk.meta, index)
        tail = chunk.meta if earlier == index else str(earlier).encode()
        items.append(chunk.head + b"," + tail + b"]")
    return {"k": "b", "d": b"[" + b",".join(items) + b"]", "t": task, "a": attempt}


def _chunk_part(part_id: str, item: list[Any], task: str, attempt: str) -> StreamPart:
    ns, mode, data = item
    if mode in ("tasks", "debug"):
        data = _revived(data)
    return StreamPart(part_id, "chunk", ns=tuple(ns), mode=mode, data=data, task=task,
                      attempt=attempt)


def _batch_items(items: list[Any]) -> list[list[Any]]:
    """A batch's chunks as `[ns, mode, payload]`, with each `messages` chunk's metadata put
    back (shared by the chunks that name the same: one dict, as in-process)."""
    out: list[list[Any]] = []
    for item in items:
        if len(item) == 4:
            meta = item[3]
            if type(meta) is int:
                if not 0 <= meta < len(out) or len(items[meta]) != 4:
                    raise ValueError(f"batch chunk names the metadata of chunk {meta}")
                meta = out[meta][2][1]
            item = [item[0], item[1], (item[2], meta)]
        out.append(item)
    return out


def decode(entry_id: bytes | str, fields: dict[bytes, bytes], skip: int = -1
           ) -> list[StreamPart]:
    """An entry's parts; of a batch, those after index `skip`."""
    entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    kind = fields.get(b"k", CHUNK)
    task = fields.get(b"t", b"").decode()
    attempt = fields.get(b"a", b"").decode()
    if kind == ABANDONED:
        return [StreamPart(entry, "abandoned", task=task, attempt=attempt)]
    if kind == END:
        error = fields.get(b"err")
        return [StreamPart(entry, "end", status=fields.get(b"s", b"").decode(),
                           error=orjson.loads(error) if error else None)]
    if kind == BATCH:
        items = _batch_items(serde.loads(fields[b"d"]))
        return [_chunk_part(f"{entry}/{i}", item, task, attempt)
                for i, item in enumerate(items) if i > skip]
    return [_chunk_part(entry, serde.loads(fields[b"d"]), task, attempt)]


def encode_entries(entries: Sequence[dict[str, bytes | str]]) -> list[bytes]:
    """Stream entries as `PUBLISH_ONCE_FN` takes them: each a JSON list of field, value."""
    return [orjson.dumps([[k, v.decode() if isinstance(v, bytes) else v]
                          for k, v in fields.items()]) for fields in entries]


class ChunkStream:
    """One run's stream: appending entries, and reading them from an id."""

    def __init__(self, client: redis.Redis, key: str, published_key: str,
                 max_len: int = DEFAULT_MAX_LEN) -> None:
        self.r = client
        self.key = key
        self.published_key = published_key
        self.max_len = max_len
        self._publish_once = client.register_script(_PUBLISH_ONCE)

    def append(self, entries: Sequence[dict[str, bytes | str]]) -> None:
        """Entries in one round trip, in order."""
        if not entries:
            return
        with self.r.pipeline(transaction=False) as pipe:
            for fields in entries:
                pipe.xadd(self.key, fields, maxlen=self.max_len, approximate=True)  # type: ignore[arg-type]
            pipe.execute()

    def publish_once(self, key: str, entries: Sequence[dict[str, bytes | str]]) -> bool:
        """Entries under `key`, unless something was already published under it; one
        script, so a repeat publishes nothing at all. True when these landed."""
        if not entries:
            return False
        return bool(self._publish_once(keys=[self.key, self.published_key],
                                       args=[key, self.max_len, *encode_entries(entries)]))

    def abandon(self, task: str, attempt: str) -> None:
        self.append([{"k": "a", "t": task, "a": attempt}])

    def read(self, after: str = "0-0", block_ms: int | None = None,
             count: int = 1000) -> list[StreamPart]:
        """Parts after id `after` (an entry's, or `<entry>/<index>` of a batch's chunk);
        with `block_ms`, wait that long for the first one."""
        entry, skip = split_id(after)
        if skip is not None:
            parts = rest_of_entry(self.r.xrange(self.key, entry, entry), skip)
            if parts:
                return parts
        return parts_of_reply(self.r.xread({self.key: entry}, block=block_ms, count=count))


Entry = tuple[bytes, dict[bytes, bytes]]


def split_id(after: str) -> tuple[str, int | None]:
    """A part id as the entry to read after and, for a batch's chunk, its index in it."""
    entry, _, index = after.partition("/")
    return entry, int(index) if index else None


def rest_of_entry(found: Any, skip: int) -> list[StreamPart]:
    """The parts after index `skip` of the entry an `XRANGE` of one id found."""
    return [part for entry_id, fields in cast(list[Entry], found)
            for part in decode(entry_id, fields, skip=skip)]


def parts_of_reply(reply: Any) -> list[StreamPart]:
    """The parts of an `XREAD` reply on one stream (RESP2: [(stream, [entry, ...])])."""
    return [part for _, entries in cast(list[tuple[bytes, list[Entry]]], reply or ())
            for entry_id, fields in entries for part in decode(entry_id, fields)]


def stream_is_over(run: RunRecord, stream_exists: bool) -> bool:
    """After a read of `run`'s stream found nothing new: whether nothing more will come,
    though no end entry was read. The run settled and never streamed, or its stream is gone
    (it outlived `CELERYGRAPH_STREAM_TTL`)."""
    return run.status.settled and (not run.stream_modes or not stream_exists)


def end_fields(status: str, error: dict[str, Any] | None) -> dict[str, bytes | str]:
    fields: dict[str, bytes | str] = {"k": "e", "s": status}
    if error is not None:
        fields["err"] = orjson.dumps(error)
    return fields


class LiveSender:
    """Sends one task attempt's chunks to its run's stream as they come, from a thread of
    its own that writes everything queued so far in one round trip: a model's tokens are
    not each a round trip on the node's thread."""

    def __init__(self, stream: ChunkStream, task: str, attempt: str) -> None:
        self.stream = stream
        self.task = task
        self.attempt = attempt
        self._cond = threading.Condition()
        self._pending: deque[LiveChunk] = deque()
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None  # from the first chunk on

    def send(self, chunks: Sequence[LiveChunk]) -> None:
        with self._cond:
            self._pending.extend(chunks)
            if self._thread is None:
                self._thread = threading.Thread(target=self._send_loop, daemon=True,
                                                name="celerygraph-stream")
                self._thread.start()
            self._cond.notify_all()

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    return
                batch = list(self._pending)
                self._pending.clear()
                self._busy = True
            try:
                self.stream.append([batch_fields(batch, self.task, self.attempt)])
            except redis.RedisError as exc:
                self._error = exc
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every chunk sent so far is in the stream; raise what writing failed on."""
        with self._cond:
            while self._pending or self._busy:
                self._cond.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        """Stop the thread, once it wrote what it has."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()


class Publisher:
    """What one loop streams, on the way to its run's stream.

    A loop calls `wake` whenever it queued a chunk (from any thread). While a worker runs a
    task (`streaming_task`) its chunks go out live (`LiveSender`) until the task saves its
    result; otherwise (a driver, or a task's closing chunks) they wait for `publish_once`.
    """

    def __init__(self, stream: ChunkStream, drain: Callable[[], list[Chunk]]) -> None:
        self.stream = stream
        self.drain = drain
        self.task = ""
        self.attempt = ""
        # What `publish_once` keeps instead of publishing, while it `hold`s: (key, entries).
        self.held: list[tuple[str, list[dict[str, bytes | str]]]] | None = None
        self._sender: LiveSender | None = None  # while the task streams live
        self._encoder = LiveEncoder()
        # Taking chunks from the loop and handing them to the sender is one step against
        # the task's result being saved: a chunk goes live before it, or waits for
        # `publish_once` after it, never into a sender that stopped.
        self._lock = threading.Lock()

    def wake(self) -> None:
        with self._lock:
            if self._sender is None:
                return
            encoded = [self._encoder.encode(c) for c in self.drain()]
            if encoded:
                self._sender.send(encoded)

    def flush(self) -> None:
        """Wait until every chunk the task streamed so far is in the stream."""
        self.wake()
        sender = self._sender
        if sender is not None:
            sender.flush()

    # A `graphdef.loop.SaveListener`: a task's chunks so far land before its result is
    # saved; what its saving emits (its `updates`, its `tasks` result) waits for
    # `publish_once`, after the result is safe.

    def saving(self, task_id: str) -> None:
        self.flush()

    def saved(self, task_id: str) -> None:
        """The task's result is safe: what follows is its closing chunks, published once."""
        with self._lock:
            sender, self._sender = self._sender, None
        if sender is not None:
            sender.close()

    @contextmanager
    def streaming_task(self, task_id: str, attempt: str, key: str) -> Iterator[None]:
        """Stream one task's chunks live, tagged with its `attempt`, then its closing chunks
        under `key` once it saved its result; if it never did (its process is going down
        with an error), what it streamed is flushed as it is."""
        self.task, self.attempt = task_id, attempt
        sender = self._sender = LiveSender(self.stream, task_id, attempt)
        try:
            yield
        finally:
            try:
                if self._sender is sender:
                    self.flush()
                else:
                    self.publish_once(key)
            finally:
                self.saved(task_id)
                self.task, self.attempt = "", ""

    def publish_once(self, key: str, extra: Sequence[dict[str, bytes | str]] = ()) -> None:
        """What the loop queued, and `extra` entries after it, under `key` (see the module's
        docstring); tagged with the current task, if any. While `hold`ing, kept instead."""
        entries = [chunk_fields(c, self.task, self.attempt) for c in self.drain()]
        if self.held is not None:
            if entries or extra:
                self.held.append((key, [*entries, *extra]))
            return
        self.stream.publish_once(key, [*entries, *extra])

    def hold(self) -> None:
        """Keep what `publish_once` would publish, in order (`held`), for a script that
        publishes it together with the writes it must not come before: a kept task's
        closing chunks with its memo, a step's with its checkpoint (`RunStore.advance_kept`).
        Live chunks go out as ever."""
        self.held = []

    def take_held(self, key_prefix: str) -> list[tuple[str, list[dict[str, bytes | str]]]]:
        """Stop holding: what was held under keys starting with `key_prefix`, in order, for
        the caller's script to publish; the rest is dropped (what a repeated advance emits
        and publishes again)."""
        held, self.held = self.held or [], None
        return [(key, entries) for key, entries in held if key.startswith(key_prefix)]

    def before_checkpoint(self, parent: str | None) -> None:
        """A driver's chunks of a step, just before the checkpoint that follows `parent` is
        written; a task streaming live (one run in place on the driver's loop, writing a
        subgraph's checkpoints) keeps streaming as it does."""
        if self._sender is None:
            self.publish_once(f"put:{parent}")

    def discard(self) -> None:
        """Drop what the loop queued: chunks a repeated plan of a step emits again."""
        self.drain()

