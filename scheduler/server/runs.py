"""`/threads/{thread_id}/runs` and `/runs`: runs in the background, streamed (SSE) or
waited on; joined, joined as a stream (resumed with `Last-Event-ID`), cancelled, listed;
stateless runs on a thread of their own.

Every run goes through the cluster graph object (`ClusterGraph.submit`), so a run started
here is the run `Client().graph(ref)` starts: the same checks before anything is stored,
the same busy-thread policies (`multitask_strategy`, whose default here is the reference
server's `enqueue`), the same Redis stream. What the API keeps of the request (assistant,
metadata, arguments) is written first and removed again if the run is refused, so an
error leaves nothing behind.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from graphdef.types import Command, Send
from scheduler import webhooks
from scheduler.driver import roll_back
from scheduler.records import SETTLED, RunRecord, RunStatus
from scheduler.resources import Resources
from scheduler.server import encode, sse, views
from scheduler.server.auth import limited, may_use
from scheduler.server.backend import Backend, backend_of
from scheduler.server.http import (
    ApiError,
    JSONResponse,
    blocking,
    body,
    check_uuid,
    choice,
    field,
    not_found,
    query_flag,
    query_int,
    reject_unknown,
    unsupported,
)
from scheduler.server.threads import require_thread

RUN_FIELDS = frozenset({
    "assistant_id", "input", "command", "config", "context", "metadata", "stream_mode",
    "stream_subgraphs", "stream_resumable", "interrupt_before", "interrupt_after",
    "feedback_keys", "webhook", "checkpoint", "checkpoint_id", "checkpoint_during",
    "multitask_strategy", "if_not_exists", "on_disconnect", "on_completion", "after_seconds",
    "durability", "strict_resume", "langsmith_tracer",
})
# Parameters the SDK can send that this server does not implement, and why.
UNSUPPORTED = {
    "feedback_keys": "LangSmith feedback is not part of celerygraph",
    "langsmith_tracer": "LangSmith tracing is not part of celerygraph (see Traces)",
    "strict_resume": "a resume with nothing pending is always an error here",
}
STRATEGIES = ("reject", "enqueue", "interrupt", "rollback")


@dataclass(frozen=True)
class Started:
    thread_id: str
    run_id: str
    selection: sse.Selection
    cancel_on_disconnect: bool
    # False for a run whose graph is no longer served: its stream is only its `error`
    # event, with no `metadata` before it, as the reference streams such a run.
    announced: bool = True


def _goto(raw: Any) -> Any:
    if isinstance(raw, list):
        return [_goto(g) for g in raw]
    if isinstance(raw, dict):
        if not isinstance(raw.get("node"), str):
            raise ApiError(422, "command.goto as an object must be {\"node\", \"input\"}")
        return Send(raw["node"], raw.get("input"))
    if isinstance(raw, str):
        return raw
    raise ApiError(422, "command.goto must be a node name, a {node, input} object or a list")


def _command(raw: dict[str, Any]) -> Command[Any]:
    reject_unknown(raw, frozenset({"resume", "update", "goto"}), "command")
    return Command(resume=raw.get("resume"), update=raw.get("update"),
                   goto=_goto(raw["goto"]) if raw.get("goto") is not None else ())


def _run_config(payload: dict[str, Any], thread_id: str, run_id: str,
                assistant: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """The run's config as the reference server makes it: the assistant's, the request's
    over it (`configurable` merged key by key) with the run's ids in `configurable`, and
    the run's merged `metadata`, so its nodes, their `messages` chunks and its checkpoints
    carry what the run's record shows (and `run_attempt`, always 1: a run here is never
    started over)."""
    requested = field(payload, "config", dict, {})
    if requested.get("configurable") and payload.get("context"):
        raise ApiError(400, "Cannot specify both configurable and context. Prefer setting "
                       "context alone.")
    config = {**assistant["config"], **requested}
    conf = {**(assistant["config"].get("configurable") or {}),
            **(requested.get("configurable") or {})}
    conf.update(field(payload, "checkpoint", dict, {}))
    if field(payload, "checkpoint_id", str):
        conf["checkpoint_id"] = payload["checkpoint_id"]
    conf.update(run_id=run_id, thread_id=thread_id, graph_id=assistant["graph_id"],
                assistant_id=assistant["assistant_id"])
    config["configurable"] = conf
    config["metadata"] = {**metadata, "run_attempt": 1}
    return config


def run_metadata(assistant: dict[str, Any], thread: dict[str, Any] | None,
                 requested: dict[str, Any]) -> dict[str, Any]:
    """A run's metadata as the reference server makes it: the assistant's, then the
    thread's (an existing thread's only, with its new `graph_id` and `assistant_id`), then
    the request's (its config's `metadata`, then `metadata`); `assistant_id` is always the
    run's assistant, whatever the request says."""
    ids = {"graph_id": assistant["graph_id"], "assistant_id": assistant["assistant_id"]}
    on_thread = {**thread["metadata"], **ids} if thread is not None else {}
    return {**assistant["metadata"], **on_thread, **requested,
            "assistant_id": assistant["assistant_id"]}


def _interrupt_nodes(payload: dict[str, Any], name: str) -> list[str] | str | None:
    """`interrupt_before`/`interrupt_after`: `"*"` or a list of node names."""
    value = payload.get(name)
    if value is None or value == "*":
        return value
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise ApiError(422, f"{name} must be \"*\" or a list of node names")
    return value


def check_request(payload: dict[str, Any], where: str) -> None:
    """What refuses a run request before anything is read or stored (crons check theirs
    with it too)."""
    reject_unknown(payload, RUN_FIELDS, where)
    for name, why in UNSUPPORTED.items():
        if payload.get(name) not in (None, False):
            raise unsupported(name, why)
    if payload.get("after_seconds"):
        raise unsupported("after_seconds", "runs start at once")
    if payload.get("input") is not None and payload.get("command") is not None:
        raise ApiError(422, "Pass input or command, not both")
    if payload.get("webhook") is not None:
        webhooks.check_url(field(payload, "webhook", str))


def start(backend: Backend, thread_id: str | None, payload: dict[str, Any], where: str
          ) -> Started:
    """Check the request, record it and start the run; on any error nothing is left."""
    check_request(payload, where)
    asked = field(payload, "assistant_id", str)
    if asked is None:
        raise ApiError(422, "assistant_id is required")
    refs = backend.graph_refs()  # one read of the published graphs for both uses
    assistant = backend.assistant(asked, refs)
    ref = assistant["graph_id"]
    # A user-created assistant whose graph the workers no longer publish: its run is
    # stored and its start fails it, as the reference creates and fails such a run.
    served = ref in refs
    selection = sse.Selection(sse.api_modes(payload.get("stream_mode", "values")),
                              bool(field(payload, "stream_subgraphs", bool, False)))
    field(payload, "stream_resumable", bool)  # checked only: every run's stream resumes here
    strategy = cast(str, choice(payload, "multitask_strategy", STRATEGIES, "enqueue"))
    if_not_exists = choice(payload, "if_not_exists", ("create", "reject"), "reject")
    on_completion = choice(payload, "on_completion", ("delete", "keep"),
                           "keep" if thread_id else "delete")
    on_disconnect = choice(payload, "on_disconnect", ("cancel", "continue"), "continue")
    durability = choice(payload, "durability", ("sync", "async", "exit"), None)
    if durability is None and payload.get("checkpoint_during") is False:
        durability = "exit"
    command = field(payload, "command", dict)
    run_input = _command(command) if command is not None else payload.get("input")
    requested_context = field(payload, "context", dict)
    context = ({**assistant["context"], **(requested_context or {})}
               if assistant["context"] or requested_context is not None else None)
    interrupts = {name: _interrupt_nodes(payload, name)
                  for name in ("interrupt_before", "interrupt_after")}
    webhook = field(payload, "webhook", str)
    requested_metadata = {**(field(payload, "config", dict, {}).get("metadata") or {}),
                          **field(payload, "metadata", dict, {})}
    new_thread = {"graph_id": ref, "assistant_id": assistant["assistant_id"],
                  **requested_metadata}

    created = False
    existing: dict[str, Any] | None = None
    if thread_id is None:
        if command is not None and command.get("resume") is not None:
            raise ApiError(400, "You must provide a thread_id when resuming.")
        thread_id = str(uuid.uuid4())
        if on_completion == "keep":
            created = backend.records.create_thread(thread_id, new_thread)
    else:
        check_uuid(thread_id, "thread ID")
        existing = backend.records.thread(thread_id)
        if existing is not None and limited():
            require_thread(backend, thread_id)  # 404 for another graph's thread
        if existing is None:
            if if_not_exists != "create":
                raise not_found(f"Thread {thread_id!r}")
            created = backend.records.create_thread(thread_id, new_thread)
    run_id = str(uuid.uuid4())
    metadata = run_metadata(assistant, existing, requested_metadata)
    config = _run_config(payload, thread_id, run_id, assistant, metadata)
    kwargs = {k: payload.get(k) for k in ("input", "command", "stream_subgraphs",
                                          "checkpoint_id", "durability", "webhook")}
    kwargs.update(interrupts, config=config, context=context,
                  stream_mode=sorted(selection.modes))
    backend.records.put_run(thread_id, run_id, {
        "assistant_id": assistant["assistant_id"],
        "metadata": metadata,
        "multitask_strategy": strategy, "kwargs": kwargs})
    try:
        if webhook is not None:
            # Queued before the run starts: a server that dies right after starting it
            # has queued the webhook already (the task waits for the run to settle).
            webhooks.enqueue(backend.client.app, backend.settings.scheduler_queue,
                             thread_id, run_id, webhook)
        backend.graph(ref).submit(run_input, config, stream_mode=selection.graph_modes,
                                  subgraphs=selection.subgraphs, durability=durability,
                                  context=context, multitask_strategy=strategy, run_id=run_id,
                                  require_graph=served, **interrupts)
    except BaseException:
        backend.records.delete_run(thread_id, run_id)
        if created:
            backend.records.delete_thread(thread_id)
        raise
    if existing is not None:
        backend.records.update_metadata(thread_id, {"graph_id": ref, "assistant_id":
                                                    assistant["assistant_id"]})
    return Started(thread_id, run_id, selection, on_disconnect == "cancel", served)


def run_view(backend: Backend, thread_id: str, run_id: str) -> dict[str, Any]:
    run = backend.client.store.run(thread_id, run_id)
    info = backend.records.run(thread_id, run_id)
    if run is None or info is None:
        raise not_found(f"Run {run_id!r}")
    return views.run_view(run, info)


def _paths(started: Started, tail: str) -> dict[str, str]:
    """Where a client reconnects (`Location`): the run under its thread, a stateless run's
    too (the reference server's `/runs/{run_id}/...` has no route to reconnect to)."""
    base = f"/threads/{started.thread_id}/runs/{started.run_id}"
    return {"Location": f"{base}/{tail}", "Content-Location": base}


# ---- background runs ----------------------------------------------------------------------

async def create(request: Request) -> JSONResponse:
    backend = backend_of(request)
    thread_id = request.path_params.get("thread_id")
    started = await blocking(start, backend, thread_id, await body(request),
                             f"POST {request.url.path}")
    view = await blocking(run_view, backend, started.thread_id, started.run_id)
    return JSONResponse(view, headers={"Content-Location": _paths(started, "")[
        "Content-Location"]})


async def create_batch(request: Request) -> JSONResponse:
    backend = backend_of(request)
    raw = await request.body()
    try:
        payloads = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(422, f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(payloads, list) or not all(isinstance(p, dict) for p in payloads):
        raise ApiError(422, "POST /runs/batch takes a list of run objects")
    out = []
    for payload in payloads:
        started = await blocking(start, backend, None, payload, "POST /runs/batch")
        out.append(await blocking(run_view, backend, started.thread_id, started.run_id))
    return JSONResponse(out)


# ---- streaming ------------------------------------------------------------------------------

def _streaming(backend: Backend, started: Started, after: str | None,
               headers: dict[str, str], *, metadata: bool) -> StreamingResponse:
    """The run's events after `after` (None: none at all, its stream ended)."""
    async def body_() -> AsyncIterator[bytes]:
        if after is None:
            return
        finished = False
        try:
            async for chunk in sse.events(backend, started.thread_id, started.run_id,
                                          started.selection, after, metadata=metadata):
                yield chunk
            finished = True
        finally:
            if not finished and started.cancel_on_disconnect:
                # The client went away (on_disconnect="cancel"): a quick Redis write.
                backend.client.cancel(started.thread_id, started.run_id)

    return StreamingResponse(body_(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", **headers})


async def stream(request: Request) -> StreamingResponse:
    backend = backend_of(request)
    thread_id = request.path_params.get("thread_id")
    payload = await body(request)
    async with sse.reader_warmed(backend):
        started = await blocking(start, backend, thread_id, payload,
                                 f"POST {request.url.path}")
    return _streaming(backend, started, sse.START, _paths(started, "stream"),
                      metadata=started.announced)


async def join_stream(request: Request) -> StreamingResponse:
    """A run's stream after `Last-Event-ID` (`-1`: all of it), or without one from now on;
    `stream_mode` (one, or a JSON list) narrows it to some of the run's modes."""
    backend = backend_of(request)
    thread_id, run_id = request.path_params["thread_id"], request.path_params["run_id"]
    info = await blocking(_run_info, backend, thread_id, run_id)
    raw = request.query_params.get("stream_mode")
    modes = frozenset(info["kwargs"].get("stream_mode") or ["values"])
    if raw:
        asked = sse.api_modes(orjson.loads(raw) if raw.startswith("[") else raw)
        modes = modes & asked
    started = Started(thread_id, run_id, sse.Selection(
        modes, bool(info["kwargs"].get("stream_subgraphs"))),
        query_flag(request, "cancel_on_disconnect"))
    last = (request.headers.get("last-event-id") or "").strip()
    replay = last in sse.FROM_THE_START
    if replay:
        after: str | None = sse.START
    elif last:
        if not sse.EVENT_ID.fullmatch(last):
            raise ApiError(422, f"Last-Event-ID {last!r} is no event id of this server")
        after = last
    else:
        after = await sse.live_position(backend, thread_id, run_id)
    return _streaming(backend, started, after,
                      {"Location": f"/threads/{thread_id}/runs/{run_id}/stream",
                       "Content-Location": f"/threads/{thread_id}/runs/{run_id}"},
                      metadata=replay)


def _run_info(backend: Backend, thread_id: str, run_id: str) -> dict[str, Any]:
    """What the API kept of a run's request; a stateless run's thread (no API thread) is
    found through its runs."""
    check_uuid(thread_id, "thread ID")
    check_uuid(run_id, "run ID")
    info = backend.records.run(thread_id, run_id)
    run = backend.client.store.run(thread_id, run_id)
    if info is None or run is None:
        require_thread(backend, thread_id)
        raise not_found(f"Run {run_id!r}")
    if not may_use(run.graph):
        raise not_found(f"Run {run_id!r}")
    return info


# ---- waiting ----------------------------------------------------------------------------------

async def _settled(backend: Backend, thread_id: str, run_id: str
                   ) -> AsyncIterator[RunRecord | None]:
    """None while the run works (once a second or so), then its settled record."""
    store = backend.client.store
    key = store.key(thread_id, "events", run_id)
    last = "0-0"
    while True:
        run = await blocking(store.run, thread_id, run_id)
        if run is not None and run.status.settled:
            yield run
            return
        settled = False
        while not settled:
            reply = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
                         await backend.aredis.xread({key: last}, block=1000, count=100))
            if not reply:
                yield None
                continue
            for _, entries in reply:
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    settled = settled or fields.get(b"type", b"").decode() in SETTLED


def result(backend: Backend, run: RunRecord) -> Any:
    """What waiting on a run returns: its output (with `__interrupt__` when it paused), or
    `{"__error__": {"error", "message"}}` if it failed; a cancelled run, the thread's values."""
    if run.status in (RunStatus.FAILED, RunStatus.REJECTED):
        error = run.error or {"type": "Error", "message": ""}
        return {"__error__": {"error": error["type"], "message": error["message"]}}
    output = backend.client.store.output(run.thread_id, run.run_id)
    if output is None and backend.client.saver.head(run.thread_id) is not None:
        output = backend.graph(run.graph).get_state(
            {"configurable": {"thread_id": run.thread_id}}).values
    return output if output is not None else {}


def _result_response(backend: Backend, thread_id: str, run_id: str,
                     headers: dict[str, str]) -> StreamingResponse:
    """The run's result once it settles; a newline every few seconds meanwhile keeps
    proxies from closing the connection (JSON parsers skip it), as the reference does."""
    async def body_() -> AsyncIterator[bytes]:
        quiet_since = time.monotonic()
        async for run in _settled(backend, thread_id, run_id):
            if run is None:
                if time.monotonic() - quiet_since >= sse.HEARTBEAT_SECONDS:
                    quiet_since = time.monotonic()
                    yield b"\n"
                continue
            yield encode.dumps(await blocking(result, backend, run))

    return StreamingResponse(body_(), media_type="application/json", headers=headers)


async def wait(request: Request) -> StreamingResponse:
    backend = backend_of(request)
    thread_id = request.path_params.get("thread_id")
    started = await blocking(start, backend, thread_id, await body(request),
                             f"POST {request.url.path}")
    headers = _paths(started, "join")
    return _result_response(backend, started.thread_id, started.run_id, headers)


async def join(request: Request) -> StreamingResponse:
    backend = backend_of(request)
    thread_id, run_id = request.path_params["thread_id"], request.path_params["run_id"]
    await blocking(_run_info, backend, thread_id, run_id)
    return _result_response(backend, thread_id, run_id, {
        "Location": f"/threads/{thread_id}/runs/{run_id}/join",
        "Content-Location": f"/threads/{thread_id}/runs/{run_id}"})


# ---- reading, cancelling ------------------------------------------------------------------------

async def get(request: Request) -> JSONResponse:
    backend = backend_of(request)
    thread_id, run_id = request.path_params["thread_id"], request.path_params["run_id"]
    await blocking(_run_info, backend, thread_id, run_id)
    return JSONResponse(await blocking(run_view, backend, thread_id, run_id))


def _list(backend: Backend, thread_id: str, status: str | None, limit: int, offset: int
          ) -> list[dict[str, Any]]:
    require_thread(backend, thread_id)
    store = backend.client.store
    found = []
    for run_id in reversed(store.runs_of(thread_id)):
        run = store.run(thread_id, run_id)
        info = backend.records.run(thread_id, run_id)
        if run is None or info is None:
            continue
        view = views.run_view(run, info)
        if status is None or view["status"] == status:
            found.append(view)
    return found[offset:offset + limit]


async def list_runs(request: Request) -> JSONResponse:
    if request.query_params.getlist("select"):
        raise unsupported("select")
    status = request.query_params.get("status")
    found = await blocking(_list, backend_of(request), request.path_params["thread_id"], status,
                           query_int(request, "limit", 10), query_int(request, "offset", 0))
    return JSONResponse(found)


def cancel_run(backend: Backend, thread_id: str, run_id: str, action: str) -> None:
    """Stop the run after the tasks already running (`interrupt`: what it finished stays),
    or stop it and discard the checkpoints it wrote (`rollback`)."""
    run = backend.client.store.run(thread_id, run_id)
    if run is None or run.status.terminal:
        return
    if action == "rollback" and backend.client.store.active_run(thread_id) == run_id:
        res = Resources(backend.settings, backend.client.saver, backend.client.store)
        roll_back(res, backend.client.send, thread_id, run_id, by="api-cancel")
    else:
        backend.client.cancel(thread_id, run_id)


async def cancel(request: Request) -> Response:
    backend = backend_of(request)
    thread_id, run_id = request.path_params["thread_id"], request.path_params["run_id"]
    action = choice(dict(request.query_params), "action", ("interrupt", "rollback"),
                    "interrupt")
    await blocking(_run_info, backend, thread_id, run_id)
    await blocking(cancel_run, backend, thread_id, run_id, cast(str, action))
    if not query_flag(request, "wait"):
        return Response(status_code=202)
    return _result_response(backend, thread_id, run_id, {
        "Location": f"/threads/{thread_id}/runs/{run_id}/join",
        "Content-Location": f"/threads/{thread_id}/runs/{run_id}"})


def _cancel_many(backend: Backend, payload: dict[str, Any], action: str) -> None:
    reject_unknown(payload, frozenset({"thread_id", "run_ids", "status"}), "POST /runs/cancel")
    status = choice(payload, "status", ("pending", "running", "all"), None)
    store = backend.client.store
    if status is not None:
        if payload.get("thread_id") or payload.get("run_ids"):
            raise ApiError(422, "When providing a 'status', 'thread_id' and 'run_ids' must "
                           "be omitted")
        for thread_id, run_id in store.active_runs():
            run = store.run(thread_id, run_id)
            if run is None or backend.records.run(thread_id, run_id) is None:
                continue
            if not may_use(run.graph):
                continue
            state = views.run_status(run)
            if status == "all" or state == status:
                cancel_run(backend, thread_id, run_id, action)
        return
    thread_id = field(payload, "thread_id", str)
    run_ids = field(payload, "run_ids", list, [])
    if thread_id is None:
        raise ApiError(422, "thread_id and run_ids, or status, are required")
    require_thread(backend, thread_id)
    for run_id in run_ids:
        _run_info(backend, thread_id, str(run_id))
    for run_id in run_ids:
        cancel_run(backend, thread_id, str(run_id), action)


async def cancel_many(request: Request) -> Response:
    action = choice(dict(request.query_params), "action", ("interrupt", "rollback"),
                    "interrupt")
    await blocking(_cancel_many, backend_of(request), await body(request), cast(str, action))
    return Response(status_code=204)


def _delete(backend: Backend, thread_id: str, run_id: str) -> None:
    """Forget a run that has ended or paused; one still pending or running is a 409 (cancel
    it first). The checkpoints it wrote stay in the thread's history."""
    _run_info(backend, thread_id, run_id)
    run = backend.client.store.run(thread_id, run_id)
    if run is not None and not run.status.settled:
        raise ApiError(409, f"Run {run_id!r} is {views.run_status(run)}: cancel it before "
                       "deleting it")
    backend.client.store.forget_run(thread_id, run_id)
    backend.client.store.retire(thread_id, run_id)
    backend.records.delete_run(thread_id, run_id)


async def delete(request: Request) -> Response:
    await blocking(_delete, backend_of(request), request.path_params["thread_id"],
                   request.path_params["run_id"])
    return Response(status_code=204)


routes = [
    Route("/runs", create, methods=["POST"]),
    Route("/runs/stream", stream, methods=["POST"]),
    Route("/runs/wait", wait, methods=["POST"]),
    Route("/runs/batch", create_batch, methods=["POST"]),
    Route("/runs/cancel", cancel_many, methods=["POST"]),
    Route("/threads/{thread_id}/runs", create, methods=["POST"]),
    Route("/threads/{thread_id}/runs", list_runs, methods=["GET"]),
    Route("/threads/{thread_id}/runs/stream", stream, methods=["POST"]),
    Route("/threads/{thread_id}/runs/wait", wait, methods=["POST"]),
    Route("/threads/{thread_id}/runs/{run_id}", get, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}", delete, methods=["DELETE"]),
    Route("/threads/{thread_id}/runs/{run_id}/join", join, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}/stream", join_stream, methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}/cancel", cancel, methods=["POST"]),
]
