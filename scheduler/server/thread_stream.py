"""`GET /threads/{thread_id}/stream`: a thread's runs as they happen, on one SSE stream, as
the reference server's thread stream (`client.threads.join_stream`).

Modes (the query parameter `stream_modes`, comma-separated, as the reference reads it; the
SDK sends `stream_mode`, which the reference ignores and which is honoured here, unless
`stream_modes` is given too):

- `run_modes` (the default): each run's events as its own stream gives them (the modes it
  was created with), after a `metadata` event `{"run_id", "attempt"}` as it starts, and a
  `metadata` event `{"status": "run_done", "run_id"}` once it ended;
- `lifecycle`: only those two `metadata` events of each run;
- `state_update`: `{"state", "thread_id"}` for each `POST /threads/{thread_id}/state`.

Reading: the runs' Redis streams and the thread's stream of state edits
(`ApiRecords.state_updates_key`) in one `XREAD` (they share the thread's hash tag, so one
Redis Cluster slot); runs started later are found by looking at the thread's runs again
about once a second. A client that joins without `Last-Event-ID` gets what comes after it
joined (a run that had not streamed yet, from its start); with one, every stream's entries
after that id (`-1`: everything still kept, every run from its start). Event ids are the
entries' ids, which one Redis server's clock orders across streams, so reading every
stream on from an id gives what came after it. Two entries of two runs written in the same
millisecond can share an id; a client that reconnects between them misses the second.
Every event carries an id of its own, as the reference's do, so a reconnect after any of
them goes on after it: a run's start `metadata` has the id just before its first entry's
(`just_before`: no entry of its stream falls between them), a failed run's `error` its end
entry's, and the `run_done` after that error the end entry's sub-id `<end>/0` (after the
`error`, before any later entry); a run's `run_done` after no `error` has its end entry's.

The stream stays open while the client listens, as the reference's does; it ends once the
thread is deleted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis.asyncio
from redis.typing import KeyT, StreamIdT
from starlette.requests import Request
from starlette.responses import StreamingResponse

from scheduler.records import RunRecord, RunStatus
from scheduler.server import sse
from scheduler.server.backend import Backend, backend_of
from scheduler.server.http import ApiError, blocking
from scheduler.server.messages import MessageAccumulator
from scheduler.server.threads import require_thread
from scheduler.streams import (
    END,
    StreamPart,
    decode,
    parts_of_reply,
    rest_of_entry,
    split_id,
)

THREAD_MODES = ("run_modes", "lifecycle", "state_update")
# The largest sequence number of a Redis stream id (`<ms>-<seq>`).
MAX_SEQ = 2**64 - 1
FAILED = (RunStatus.FAILED, RunStatus.REJECTED)
QUERY_PARAMS = frozenset({"stream_mode", "stream_modes"})
# How often the thread's runs are looked at again for new ones, in seconds.
DISCOVER_SECONDS = 1.0
BLOCK_MS = 1000


def thread_modes(request: Request) -> frozenset[str]:
    """The modes asked: `stream_modes` (comma-separated), else the SDK's `stream_mode`
    (repeated, or comma-separated); unknown query parameters and modes are a 422."""
    extra = sorted(set(request.query_params) - QUERY_PARAMS)
    if extra:
        raise ApiError(422, f"Unknown query parameter(s) for GET /threads/{{thread_id}}/"
                       f"stream: {', '.join(extra)}")
    name = "stream_modes" if "stream_modes" in request.query_params else "stream_mode"
    modes = [mode.strip() for raw in request.query_params.getlist(name)
             for mode in raw.split(",") if mode.strip()]
    for mode in modes:
        if mode not in THREAD_MODES:
            raise ApiError(422, f"Invalid stream mode: {mode!r}; expected one of "
                           f"{list(THREAD_MODES)}")
    return frozenset(modes or ["run_modes"])


def just_before(event_id: str) -> str:
    """The stream id just before an entry's (of a batch's chunk: before its entry); a run's
    start `metadata` has the one before its first entry."""
    ms, _, seq = split_id(event_id)[0].partition("-")
    return f"{ms}-{int(seq) - 1}" if int(seq) else f"{int(ms) - 1}-{MAX_SEQ}"


@dataclass
class RunFeed:
    """One run of the thread as the thread stream gives it."""

    run_id: str
    selection: sse.Selection
    announce: bool  # its start `metadata` is still to come (read from its start)
    error_sent: bool = False  # its `error` reached the consumer before it reconnected
    messages: MessageAccumulator = field(default_factory=MessageAccumulator)


def _selection(info: dict[str, Any] | None, run: RunRecord) -> sse.Selection:
    """What the run's own stream gives: its request's modes, or for a run not started
    through the API the modes it streams."""
    if info is not None:
        kwargs = info["kwargs"]
        return sse.Selection(frozenset(kwargs.get("stream_mode") or ["values"]),
                             bool(kwargs.get("stream_subgraphs")))
    modes = {"messages-tuple" if m == "messages" else m for m in run.stream_modes}
    return sse.Selection(frozenset(modes & set(sse.API_MODES)), False)


class ThreadStream:
    """The SSE body of one consumer of a thread's stream."""

    def __init__(self, backend: Backend, thread_id: str, modes: frozenset[str],
                 after: str | None) -> None:
        self.backend = backend
        self.thread_id = thread_id
        self.modes = modes
        self.after = after
        self.state_key = backend.records.state_updates_key(thread_id)
        self.cursors: dict[str, str] = {}  # stream key -> id read up to
        self.feeds: dict[str, RunFeed] = {}  # a run's stream key -> its feed
        self.seen: set[str] = set()  # run ids looked at already

    async def events(self) -> AsyncIterator[bytes]:
        r = self.backend.aredis
        self.cursors[self.state_key] = await self._state_start(r)
        await self._discover(joining=True)
        looked_at = quiet_since = time.monotonic()
        while True:
            sent = False
            for key, event_id, part in await self._read(r):
                for out in self._frames(key, event_id, part):
                    sent = True
                    yield out
            now = time.monotonic()
            if now - looked_at >= DISCOVER_SECONDS:
                looked_at = now
                if await blocking(self.backend.records.thread, self.thread_id) is None:
                    return
                await self._discover(joining=False)
                for out in await self._drop_gone():
                    sent = True
                    yield out
            if sent:
                quiet_since = now
            elif now - quiet_since >= sse.HEARTBEAT_SECONDS:
                quiet_since = now
                yield sse.HEARTBEAT

    # ---- which streams, from where -----------------------------------------------------------

    async def _state_start(self, r: redis.asyncio.Redis) -> str:
        if self.after is not None:
            return split_id(self.after)[0]
        newest = await r.xrevrange(self.state_key, "+", "-", count=1)
        return cast(bytes, newest[0][0]).decode() if newest else sse.START

    async def _discover(self, *, joining: bool) -> None:
        """Take in the thread's runs not seen yet."""
        store = self.backend.client.store
        run_ids = await blocking(store.runs_of, self.thread_id)
        for run_id in run_ids:
            if run_id in self.seen:
                continue
            self.seen.add(run_id)
            run = await blocking(store.run, self.thread_id, run_id)
            if run is None:
                continue
            key = store.key(self.thread_id, "chunks", run_id)
            if joining and run.status.settled and not await self.backend.aredis.exists(key):
                continue  # over, and its stream expired: nothing of it is to come
            selection = _selection(
                await blocking(self.backend.records.run, self.thread_id, run_id), run)
            found = await self._run_start(key, selection, fresh=not joining)
            if found is None:
                continue
            start, error_sent = found
            feed = RunFeed(run_id, selection, announce=start == sse.START,
                           error_sent=error_sent)
            self.feeds[key], self.cursors[key] = feed, start
            if not feed.announce and "messages" in feed.selection.modes:
                await sse.prime(self.backend, self.thread_id, run_id, feed.selection, start,
                                feed.messages)

    async def _run_start(self, key: str, selection: sse.Selection, *, fresh: bool
                         ) -> tuple[str, bool] | None:
        """Where a run's stream is read from, and whether the consumer had its `error`
        already: the start for a run that began after the consumer joined (or whose start
        `metadata` comes after `Last-Event-ID`), else where the consumer is (just before
        the end entry for a consumer that had the `error` but not the `run_done`); None
        for a run whose `run_done` the consumer had (nothing of it is to come)."""
        if fresh:
            return sse.START, False
        r = self.backend.aredis
        newest = cast(list[tuple[bytes, dict[bytes, bytes]]],
                      await r.xrevrange(key, "+", "-", count=1))
        if self.after is None:
            if not newest:
                return sse.START, False
            return None if newest[0][1].get(b"k") == END else (newest[0][0].decode(), False)
        first = cast(list[tuple[bytes, dict[bytes, bytes]]],
                     await r.xrange(key, "-", "+", count=1))
        if not first or sse.id_order(self.after) < sse.id_order(
                just_before(first[0][0].decode())):
            return sse.START, False
        newest_id, fields = newest[0][0].decode(), newest[0][1]
        if fields.get(b"k") != END:
            return self.after, False
        end = decode(newest_id, fields)[0]
        if sse.id_order(self._done_id(newest_id, selection, end)) <= sse.id_order(self.after):
            return None
        if self.after == newest_id and self._error(selection, end) is not None:
            return just_before(newest_id), True
        return self.after, False

    async def _drop_gone(self) -> list[bytes]:
        """Runs that settled without an end entry left to read (their stream expired):
        they are done; a `run_done` without an id says so."""
        store = self.backend.client.store
        out = []
        for key, feed in list(self.feeds.items()):
            run = await blocking(store.run, self.thread_id, feed.run_id)
            if run is not None and not run.status.settled:
                continue
            if run is None or not await self.backend.aredis.exists(key):
                out += self._done(key, None)
        return out

    # ---- reading ------------------------------------------------------------------------------

    async def _read(self, r: redis.asyncio.Redis) -> list[tuple[str, str, StreamPart | bytes]]:
        """New entries of every stream followed, in id order, each as (stream key, id,
        entry): a run's as a part, a state edit as its encoded event."""
        found: list[tuple[str, str, StreamPart | bytes]] = []
        plain: dict[KeyT, StreamIdT] = {}
        for key, after in self.cursors.items():
            entry, skip = split_id(after)
            if skip is not None:
                rest = rest_of_entry(await r.xrange(key, entry, entry), skip)
                found += [(key, p.id, p) for p in rest]
            plain[key] = entry
        reply = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None,
                     await r.xread(plain,
                                   block=None if found else BLOCK_MS, count=1000))
        for raw_key, entries in reply or ():
            key = raw_key.decode()
            if key == self.state_key:
                found += [(key, entry_id.decode(), fields[b"d"])
                          for entry_id, fields in entries]
            else:
                found += [(key, p.id, p) for p in parts_of_reply([(raw_key, entries)])]
        return sorted(found, key=lambda item: sse.id_order(item[1]))

    def _frames(self, key: str, event_id: str, part: StreamPart | bytes) -> list[bytes]:
        if key not in self.cursors:  # its run's end was read already in this batch
            return []
        self.cursors[key] = event_id
        if isinstance(part, bytes):
            if "state_update" not in self.modes:
                return []
            return [sse.frame("state_update", orjson.loads(part), event_id)]
        feed = self.feeds[key]
        out = self._started(feed, event_id)
        if part.kind == "end":
            return out + self._done(key, part)
        if "run_modes" in self.modes:
            out += sse.frames(part, feed.selection, feed.messages)
        return out

    def _started(self, feed: RunFeed, first: str | None) -> list[bytes]:
        """A run's start `metadata`, before its first entry `first` (as the reference
        sends it when the run starts, not when it is queued), with the id just before it."""
        if not feed.announce:
            return []
        feed.announce = False
        return self._lifecycle(sse.frame("metadata", {"run_id": feed.run_id, "attempt": 1},
                                         None if first is None else just_before(first)))

    def _error(self, selection: sse.Selection, end: StreamPart) -> tuple[str, Any] | None:
        """The `error` event a failed run's end gives this consumer (under `run_modes`)."""
        if "run_modes" not in self.modes or end.status not in FAILED:
            return None
        return selection.event(end)

    def _done_id(self, end_id: str, selection: sse.Selection, end: StreamPart) -> str:
        """The id of a run's `run_done`: after the `error` (the end entry's id) if this
        consumer gets one, else the end entry's."""
        return f"{end_id}/0" if self._error(selection, end) is not None else end_id

    def _done(self, key: str, end: StreamPart | None) -> list[bytes]:
        """A run's end: a failed run's `error` (under `run_modes`), then `run_done`; the
        run's stream is no longer read."""
        feed = self.feeds.pop(key)
        del self.cursors[key]
        out = self._started(feed, None if end is None else end.id)
        if end is None:
            return out + self._lifecycle(sse.frame(
                "metadata", {"status": "run_done", "run_id": feed.run_id}))
        error = self._error(feed.selection, end)
        if error is not None and not feed.error_sent:
            out.append(sse.frame(*error, end.id))
        return out + self._lifecycle(sse.frame(
            "metadata", {"status": "run_done", "run_id": feed.run_id},
            self._done_id(end.id, feed.selection, end)))

    def _lifecycle(self, event: bytes) -> list[bytes]:
        return [event] if self.modes & {"run_modes", "lifecycle"} else []


async def join(request: Request) -> StreamingResponse:
    backend = backend_of(request)
    thread_id = request.path_params["thread_id"]
    modes = thread_modes(request)
    await blocking(require_thread, backend, thread_id)
    last = (request.headers.get("last-event-id") or "").strip()
    after: str | None = None
    if last in sse.FROM_THE_START:
        after = sse.START
    elif last:
        if not sse.EVENT_ID.fullmatch(last):
            raise ApiError(422, f"Last-Event-ID {last!r} is no event id of this server")
        after = last
    stream = ThreadStream(backend, thread_id, modes, after)
    return StreamingResponse(stream.events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})
