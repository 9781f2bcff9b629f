"""A run's Redis stream as Server-Sent Events, the Agent Server's way.

Reading: the run's stream (`scheduler.streams`) with an asyncio Redis client, so a
connected client costs no thread while it waits (`XREAD BLOCK`). Every event carries the
stream entry's id as its SSE `id`; a client that reconnects with `Last-Event-ID` reads on
from there and gets the rest exactly once; with `Last-Event-ID: -1` the whole run again;
without one, what comes after it joined (as the reference server). Every run streams (the
reference server keeps chunks only with `stream_resumable`; ours are always in Redis for
CELERYGRAPH_STREAM_TTL after the run settles).

Events: `metadata` (`{"run_id", "attempt"}`, id `0-0`) first, then one per chunk, named
after its mode (`messages-tuple` chunks are `messages` events, as there; the `messages`
mode makes `messages/metadata`, `messages/partial` and `messages/complete` events of
them, see `scheduler.server.messages`), with `|<namespace>` appended for a subgraph's
chunks; a failed (or, started on a busy thread under `reject`, refused) run ends with an
`error` event. The stream then closes: the reference server sends no `end` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio

from scheduler.records import RunStatus
from scheduler.server import encode
from scheduler.server.backend import Backend
from scheduler.server.http import ApiError, blocking, unsupported
from scheduler.server.messages import MessageAccumulator
from scheduler.streams import END as END_KIND
from scheduler.streams import (
    StreamPart,
    parts_of_reply,
    rest_of_entry,
    split_id,
    stream_is_over,
)

# The API's stream modes and the graph's mode each one reads.
API_MODES = {"values": "values", "updates": "updates", "custom": "custom", "debug": "debug",
             "tasks": "tasks", "checkpoints": "checkpoints", "messages-tuple": "messages",
             "messages": "messages"}
# Modes the SDK can send that have no counterpart here: 422 naming them.
UNSUPPORTED_MODES = {
    "events": "LangChain's callback events (astream_events) are not recorded by the "
              "workers, which stream LangGraph's modes only",
    "tools": "a v2 event-streaming mode", "lifecycle": "a v2 event-streaming mode",
}
HEARTBEAT_SECONDS = 5.0
HEARTBEAT = b": heartbeat\r\n\r\n"
# The id before a run's first entry: the `metadata` event's, and where a replay starts.
START = "0-0"
# `Last-Event-ID` values that ask for the whole run again, `metadata` included.
FROM_THE_START = ("-1", "0")
# An id this server gave: a stream entry's, or `<entry>/<index>` of a batch's chunk.
EVENT_ID = re.compile(r"\d+-\d+(/\d+)?")


@dataclass(frozen=True)
class Selection:
    """Which of a run's chunks a consumer gets, and how they are named."""

    modes: frozenset[str]  # API modes
    subgraphs: bool

    @property
    def graph_modes(self) -> list[str]:
        """What the run streams: the asked modes, and `updates` when neither `values` nor
        `updates` is asked, so that an interrupt still reaches the client (as there)."""
        wanted = {API_MODES[m] for m in self.modes}
        if not wanted & {"values", "updates"}:
            wanted.add("updates")
        return sorted(wanted)

    def event(self, part: StreamPart) -> tuple[str, Any] | None:
        """The SSE event (name, data) for a stream entry, or None to skip it."""
        if part.kind == "end":
            if part.status in (RunStatus.FAILED, RunStatus.REJECTED):
                error = part.error or {}
                return "error", {"error": error.get("type", "Error"),
                                 "message": error.get("message", "")}
            return None
        if part.kind != "chunk" or (part.ns and not self.subgraphs):
            return None
        api_mode = "messages-tuple" if part.mode == "messages" else part.mode
        name = "messages" if part.mode == "messages" else part.mode
        if api_mode not in self.modes:
            interrupted = part.mode == "updates" and isinstance(part.data, dict) and (
                "__interrupt__" in part.data)
            if not interrupted or self.modes & {"values", "updates"}:
                return None
            name = "values"
        if part.ns:
            name = f"{name}|{'|'.join(part.ns)}"
        return name, part.data

    def accumulates(self, part: StreamPart) -> bool:
        """Whether `part` is a chunk for the `messages` mode (accumulated per consumer);
        `messages-tuple`, when asked too, has it as it is instead (as there)."""
        return (part.kind == "chunk" and part.mode == "messages" and "messages" in self.modes
                and "messages-tuple" not in self.modes and (not part.ns or self.subgraphs))


def api_modes(raw: Any) -> frozenset[str]:
    """The `stream_mode` of a request (one or a list) as checked API modes."""
    modes = [raw] if isinstance(raw, str) else raw
    if not isinstance(modes, list) or not all(isinstance(m, str) for m in modes):
        raise ApiError(422, "stream_mode must be a string or a list of strings")
    for mode in modes:
        if mode in UNSUPPORTED_MODES:
            raise unsupported(f"stream_mode={mode!r}", UNSUPPORTED_MODES[mode])
        if mode == "messages" and importlib.util.find_spec("langchain_core") is None:
            raise unsupported("stream_mode='messages'", "it accumulates LangChain message "
                              "chunks: install langchain-core beside the server (the "
                              "agents extra)")
        if mode not in API_MODES:
            raise ApiError(422, f"Unknown stream_mode {mode!r}; expected one of "
                           f"{sorted(API_MODES)}")
    return frozenset(modes or ["values"])


def frame(event: str, data: Any, event_id: str | None = None) -> bytes:
    out = b"event: " + event.encode() + b"\r\ndata: " + encode.dumps(data) + b"\r\n"
    if event_id is not None:
        out += b"id: " + event_id.encode() + b"\r\n"
    return out + b"\r\n"


async def _read(r: redis.asyncio.Redis, key: str, after: str, block_ms: int | None
                ) -> list[StreamPart]:
    """Entries after id `after` (an entry's, or `<entry>/<index>` of a batch's chunk), as
    `ChunkStream.read` reads them, without holding a thread while it blocks."""
    entry, skip = split_id(after)
    if skip is not None:
        parts = rest_of_entry(await r.xrange(key, entry, entry), skip)
        if parts:
            return parts
    return parts_of_reply(await r.xread({key: entry}, block=block_ms, count=1000))


@contextlib.asynccontextmanager
async def reader_warmed(backend: Backend) -> AsyncIterator[None]:
    """A connection for the stream's reader made ready while the body runs (a run's start,
    in a thread). A client that leaves mid-read takes its reader's connection with it (one
    with a reply pending cannot go back to the pool), so a new stream may find none idle,
    and opening one (connect, `HELLO`) stood between its start and its first `XREAD`.
    A failure here is the reader's to meet, not the start's."""
    warming = asyncio.ensure_future(backend.aredis.ping())
    try:
        yield
    finally:
        with contextlib.suppress(redis.RedisError, OSError):
            await warming


async def run_parts(backend: Backend, thread_id: str, run_id: str, after: str = "0-0"
                    ) -> AsyncIterator[StreamPart | None]:
    """The run's stream entries after `after` up to its end; None every second or so while
    nothing comes (a chance to send a heartbeat)."""
    store = backend.client.store
    key = store.key(thread_id, "chunks", run_id)
    last = after
    while True:
        parts = await _read(backend.aredis, key, last, 1000)
        for part in parts:
            last = part.id
            yield part
            if part.kind == "end":
                return
        if parts:
            continue
        run = await blocking(store.run, thread_id, run_id)
        if run is None or stream_is_over(run, bool(await backend.aredis.exists(key))):
            return
        yield None


async def events(backend: Backend, thread_id: str, run_id: str, selection: Selection,
                 after: str, *, metadata: bool) -> AsyncIterator[bytes]:
    """The run's SSE body: `metadata` first if asked (its id `START`, so a client that
    reconnects before any chunk came replays them all), the chunks' events after id
    `after` with their ids, heartbeat comments while it is quiet."""
    if metadata:
        yield frame("metadata", {"run_id": run_id, "attempt": 1}, START)
    messages = MessageAccumulator()
    if "messages" in selection.modes:
        await prime(backend, thread_id, run_id, selection, after, messages)
    quiet_since = time.monotonic()
    async for part in run_parts(backend, thread_id, run_id, after):
        if part is None:
            if time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                quiet_since = time.monotonic()
                yield HEARTBEAT
            continue
        for out in frames(part, selection, messages):
            quiet_since = time.monotonic()
            yield out


def frames(part: StreamPart, selection: Selection, messages: MessageAccumulator
           ) -> list[bytes]:
    """The SSE frames one stream entry gives a consumer (none, one, or a message's
    announcement and its chunk); `messages` accumulates that consumer's messages."""
    if selection.accumulates(part):
        *announced, (name, data) = messages.events(part.data)
        # The announcement carries no id: a client that reconnects after it but before
        # the message's chunk gets both again.
        return [*(frame(event, payload) for event, payload in announced),
                frame(name, data, part.id)]
    found = selection.event(part)
    return [] if found is None else [frame(found[0], found[1], part.id)]


def id_order(event_id: str) -> tuple[int, int, int]:
    """An event id as a sortable key: Redis entry ids come from one server's clock, so
    they order entries across streams too; a batch's chunks sort after their entry."""
    entry, index = split_id(event_id)
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0), -1 if index is None else index


async def prime(backend: Backend, thread_id: str, run_id: str, selection: Selection,
                after: str, messages: MessageAccumulator) -> None:
    """Feed `messages` the run's chunks up to id `after` (sent before a reconnect; `after`
    may be another stream's id, as a thread stream's is)."""
    if after == START:
        return
    key = backend.client.store.key(thread_id, "chunks", run_id)
    last, sent = START, id_order(after)
    while True:
        parts = await _read(backend.aredis, key, last, None)
        for part in parts:
            if id_order(part.id) > sent:
                return
            if selection.accumulates(part):
                messages.prime(part.data)
            last = part.id
        if not parts:
            return


async def live_position(backend: Backend, thread_id: str, run_id: str) -> str | None:
    """Where a consumer joining without `Last-Event-ID` starts: after the newest entry, as
    the reference server gives such a consumer only what comes after it joined; None if
    the run's stream already ended (nothing more will come)."""
    key = backend.client.store.key(thread_id, "chunks", run_id)
    newest = cast(list[tuple[bytes, dict[bytes, bytes]]],
                  await backend.aredis.xrevrange(key, "+", "-", count=1))
    if not newest:
        return START
    entry_id, fields = newest[0]
    return None if fields.get(b"k") == END_KIND else entry_id.decode()
