"""`/threads`: create (with `if_exists`), get, search, count, patch metadata, delete, copy,
prune; the thread's state (now, at a checkpoint, edited) and history.

A thread exists once created through the API (`ApiRecords`); its runs, checkpoints and
status come from the cluster's run store and saver. Reading state needs the graph's code
(a snapshot is built from its channels), so the server loads the modules of
CELERYGRAPH_GRAPHS as workers do.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graphdef.errors import InvalidUpdateError
from scheduler.records import RunRecord
from scheduler.server import encode, views
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
    paged,
    query_flag,
    query_int,
    reject_unknown,
    unsupported,
)

THREAD_STATUSES = ("idle", "busy", "interrupted", "error")


def latest_run(backend: Backend, thread_id: str) -> RunRecord | None:
    runs = backend.client.store.runs_of(thread_id)
    return backend.client.store.run(thread_id, runs[-1]) if runs else None


def graph_ref(backend: Backend, thread_id: str, metadata: dict[str, Any]) -> str | None:
    """The graph a thread's state is read with: its latest run's, else its metadata's."""
    latest = latest_run(backend, thread_id)
    ref = latest.graph if latest is not None else metadata.get("graph_id")
    return ref if isinstance(ref, str) else None


def visible(backend: Backend, record: dict[str, Any]) -> bool:
    """Whether the request's key may see the thread (a limited key: its graph's only)."""
    return not limited() or may_use(graph_ref(backend, record["thread_id"],
                                              record["metadata"]))


def require_thread(backend: Backend, thread_id: str) -> dict[str, Any]:
    """The thread's record; 404 if unknown, or of a graph the request's key may not use."""
    check_uuid(thread_id, "thread ID")
    record = backend.records.thread(thread_id)
    if record is None or not visible(backend, record):
        raise not_found(f"Thread {thread_id!r}")
    return record


def thread_view(backend: Backend, record: dict[str, Any]) -> dict[str, Any]:
    thread_id = record["thread_id"]
    store = backend.client.store
    latest = latest_run(backend, thread_id)
    values: Any = None
    interrupts: dict[str, list[dict[str, Any]]] = {}
    ref = graph_ref(backend, thread_id, record["metadata"])
    if ref is not None and backend.client.saver.head(thread_id) is not None:
        snapshot = backend.graph(ref).get_state({"configurable": {"thread_id": thread_id}})
        values = snapshot.values
        interrupts = {t.id: [{"id": i.id, "value": i.value} for i in t.interrupts]
                      for t in snapshot.tasks if t.interrupts}
    return {
        "thread_id": thread_id,
        "created_at": views.iso(record["created_at"]),
        "updated_at": views.iso(record["updated_at"]),
        "state_updated_at": views.iso(latest.updated_at if latest else record["updated_at"]),
        "metadata": record["metadata"],
        "config": {},
        "status": views.thread_status(latest, store.active_run(thread_id)),
        "values": values,
        "interrupts": interrupts,
    }


# ---- threads ------------------------------------------------------------------------------

CREATE_FIELDS = frozenset({"thread_id", "metadata", "if_exists", "supersteps", "ttl"})


def _create(backend: Backend, payload: dict[str, Any]) -> dict[str, Any]:
    reject_unknown(payload, CREATE_FIELDS, "POST /threads")
    for name in ("supersteps", "ttl"):
        if payload.get(name) is not None:
            raise unsupported(name)
    thread_id = field(payload, "thread_id", str) or str(uuid.uuid4())
    check_uuid(thread_id, "thread ID")
    metadata = field(payload, "metadata", dict, {})
    if_exists = choice(payload, "if_exists", ("raise", "do_nothing"), "raise")
    if not backend.records.create_thread(thread_id, metadata) and if_exists == "raise":
        raise ApiError(409, f"Thread {thread_id!r} already exists")
    return thread_view(backend, require_thread(backend, thread_id))


async def create(request: Request) -> JSONResponse:
    return JSONResponse(await blocking(_create, backend_of(request), await body(request)))


async def get(request: Request) -> JSONResponse:
    backend = backend_of(request)

    def read() -> dict[str, Any]:
        return thread_view(backend, require_thread(backend, request.path_params["thread_id"]))

    return JSONResponse(await blocking(read))


async def patch(request: Request) -> JSONResponse:
    backend = backend_of(request)
    payload = await body(request)

    def update() -> dict[str, Any]:
        reject_unknown(payload, frozenset({"metadata", "ttl"}), "PATCH /threads/{thread_id}")
        if payload.get("ttl") is not None:
            raise unsupported("ttl")
        thread_id = request.path_params["thread_id"]
        require_thread(backend, thread_id)
        backend.records.update_metadata(thread_id, field(payload, "metadata", dict, {}))
        return thread_view(backend, require_thread(backend, thread_id))

    return JSONResponse(await blocking(update))


def delete_thread(backend: Backend, thread_id: str) -> None:
    """Cancel the thread's runs that have not ended (the active one and any queued behind
    it), then drop its checkpoints and its record."""
    require_thread(backend, thread_id)
    store = backend.client.store
    for run_id in store.runs_of(thread_id):
        run = store.run(thread_id, run_id)
        if run is not None and not run.status.terminal:
            backend.client.cancel(thread_id, run_id)
    backend.client.saver.delete_thread(thread_id)
    backend.records.delete_thread(thread_id)


async def delete(request: Request) -> Response:
    await blocking(delete_thread, backend_of(request), request.path_params["thread_id"])
    return Response(status_code=204)


SEARCH_FIELDS = frozenset({"metadata", "values", "status", "ids", "limit", "offset",
                           "sort_by", "sort_order", "select", "extract"})


def _search(backend: Backend, payload: dict[str, Any], where: str) -> list[dict[str, Any]]:
    reject_unknown(payload, SEARCH_FIELDS, where)
    for name in ("select", "extract"):
        if payload.get(name):
            raise unsupported(name)
    metadata = field(payload, "metadata", dict, {})
    values = field(payload, "values", dict, {})
    status = choice(payload, "status", THREAD_STATUSES, None)
    ids = field(payload, "ids", list)
    sort_by = str(choice(payload, "sort_by",
                         ("thread_id", "status", "created_at", "updated_at"), "created_at"))
    descending = choice(payload, "sort_order", ("asc", "desc"), "desc") == "desc"
    found = []
    for thread_id in ids if ids is not None else backend.records.thread_ids():
        record = backend.records.thread(str(thread_id))
        if record is None or any(record["metadata"].get(k) != v for k, v in metadata.items()):
            continue
        if not visible(backend, record):
            continue
        view = thread_view(backend, record)
        if status is not None and view["status"] != status:
            continue
        current = view["values"] if isinstance(view["values"], dict) else {}
        if any(current.get(k) != v for k, v in values.items()):
            continue
        found.append(view)
    found.sort(key=lambda v: v[sort_by] or "", reverse=descending)
    return found


async def search(request: Request) -> JSONResponse:
    payload = await body(request)
    window = paged(payload)
    found = await blocking(_search, backend_of(request), payload, "POST /threads/search")
    return JSONResponse(found[window])


async def count(request: Request) -> JSONResponse:
    payload = await body(request)
    payload.pop("limit", None)
    payload.pop("offset", None)
    return JSONResponse(len(await blocking(_search, backend_of(request), payload,
                                           "POST /threads/count")))


# ---- state --------------------------------------------------------------------------------

def _state(backend: Backend, thread_id: str, conf: dict[str, Any], subgraphs: bool
           ) -> dict[str, Any]:
    record = require_thread(backend, thread_id)
    ref = graph_ref(backend, thread_id, record["metadata"])
    graph = backend.served_graph(ref) if ref is not None else None
    if graph is None or backend.client.saver.head(thread_id) is None:
        if conf.get("checkpoint_id"):
            raise not_found(f"Checkpoint {conf['checkpoint_id']!r}")
        return views.empty_state()
    config = {"configurable": {**conf, "thread_id": thread_id}}
    if conf.get("checkpoint_id") and backend.client.saver.get_tuple(
            {"configurable": {"checkpoint_ns": "", **config["configurable"]}}) is None:
        raise not_found(f"Checkpoint {conf['checkpoint_id']!r}")
    snapshot = graph.get_state(config, subgraphs=subgraphs)
    return views.thread_state(snapshot)


async def get_state(request: Request) -> JSONResponse:
    conf = {}
    if "checkpoint_id" in request.path_params:
        conf["checkpoint_id"] = request.path_params["checkpoint_id"]
    return JSONResponse(await blocking(_state, backend_of(request),
                                       request.path_params["thread_id"], conf,
                                       query_flag(request, "subgraphs")))


async def get_state_at(request: Request) -> JSONResponse:
    payload = await body(request)
    reject_unknown(payload, frozenset({"checkpoint", "subgraphs"}),
                   "POST /threads/{thread_id}/state/checkpoint")
    checkpoint = field(payload, "checkpoint", dict, {})
    return JSONResponse(await blocking(_state, backend_of(request),
                                       request.path_params["thread_id"], checkpoint,
                                       bool(field(payload, "subgraphs", bool, False))))


def _update_state(backend: Backend, thread_id: str, payload: dict[str, Any]
                  ) -> dict[str, Any]:
    reject_unknown(payload, frozenset({"values", "as_node", "checkpoint", "checkpoint_id"}),
                   "POST /threads/{thread_id}/state")
    record = require_thread(backend, thread_id)
    ref = graph_ref(backend, thread_id, record["metadata"])
    if ref is None:
        raise ApiError(400, f"Thread {thread_id!r} has no graph yet: run it once before "
                       "editing its state")
    conf: dict[str, Any] = {**field(payload, "checkpoint", dict, {}), "thread_id": thread_id}
    checkpoint_id = field(payload, "checkpoint_id", str)
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
    as_node = field(payload, "as_node", str)
    graph = backend.served_graph(ref)
    try:
        written = graph.update_state({"configurable": conf}, payload.get("values"), as_node)
    except InvalidUpdateError as exc:
        raise ApiError(422, str(exc)) from exc
    backend.records.touch(thread_id)
    state = views.thread_state(graph.get_state({"configurable": {"thread_id": thread_id}}))
    backend.records.publish_state_update(
        thread_id, encode.dumps({"state": state, "thread_id": thread_id}),
        backend.settings.stream_max_len, backend.settings.stream_ttl)
    return {"checkpoint": views.checkpoint(written)}


async def update_state(request: Request) -> JSONResponse:
    return JSONResponse(await blocking(_update_state, backend_of(request),
                                       request.path_params["thread_id"], await body(request)))


def _history(backend: Backend, thread_id: str, limit: int, before: Any,
             metadata: dict[str, Any] | None, conf: dict[str, Any]) -> list[dict[str, Any]]:
    record = require_thread(backend, thread_id)
    ref = graph_ref(backend, thread_id, record["metadata"])
    if ref is None:
        return []
    if isinstance(before, str):
        before = {"configurable": {"checkpoint_id": before}}
    elif isinstance(before, dict) and "configurable" not in before:
        before = {"configurable": before}
    config = {"configurable": {**conf, "thread_id": thread_id}}
    states = backend.served_graph(ref).get_state_history(config, filter=metadata or None,
                                                         before=before, limit=limit)
    return [views.thread_state(s) for s in states]


async def history(request: Request) -> JSONResponse:
    backend = backend_of(request)
    thread_id = request.path_params["thread_id"]
    if request.method == "GET":
        limit = query_int(request, "limit", 10)
        found = await blocking(_history, backend, thread_id, limit,
                               request.query_params.get("before"), None, {})
        return JSONResponse(found)
    payload = await body(request)
    reject_unknown(payload, frozenset({"limit", "before", "metadata", "checkpoint"}),
                   "POST /threads/{thread_id}/history")
    found = await blocking(_history, backend, thread_id, field(payload, "limit", int, 10),
                           payload.get("before"), field(payload, "metadata", dict),
                           field(payload, "checkpoint", dict, {}))
    return JSONResponse(found)


def _copy(backend: Backend, thread_id: str) -> dict[str, Any]:
    """A new thread with the thread's metadata and a copy of its checkpoints (not its
    runs). An unknown thread is a 409, as the reference server answers it."""
    check_uuid(thread_id, "thread ID")
    record = backend.records.thread(thread_id)
    if record is None:
        raise ApiError(409, f"Thread {thread_id!r} not found: nothing to copy")
    new_id = str(uuid.uuid4())
    backend.client.saver.copy_thread(thread_id, new_id)
    try:
        backend.records.create_thread(new_id, record["metadata"])
    except BaseException:
        backend.client.saver.delete_thread(new_id)
        raise
    return thread_view(backend, require_thread(backend, new_id))


async def copy(request: Request) -> JSONResponse:
    return JSONResponse(await blocking(_copy, backend_of(request),
                                       request.path_params["thread_id"]))


def _prune(backend: Backend, payload: dict[str, Any]) -> dict[str, int]:
    """`delete`: delete the threads (as DELETE does each); `keep_latest`: drop every
    checkpoint of each idle thread but its newest (what an open interrupt still needs is
    kept). Unknown threads are skipped, busy ones too under `keep_latest`; the answer
    counts what was pruned."""
    reject_unknown(payload, frozenset({"thread_ids", "strategy"}), "POST /threads/prune")
    thread_ids = field(payload, "thread_ids", list)
    if thread_ids is None:
        raise ApiError(422, "thread_ids is required")
    strategy = choice(payload, "strategy", ("delete", "keep_latest"), "delete")
    for thread_id in thread_ids:
        if not isinstance(thread_id, str):
            raise ApiError(422, "thread_ids must be a list of thread IDs")
        check_uuid(thread_id, "thread ID")
    pruned = 0
    for thread_id in dict.fromkeys(thread_ids):
        if backend.records.thread(thread_id) is None:
            continue
        if strategy == "delete":
            delete_thread(backend, thread_id)
        elif backend.client.store.active_run(thread_id) is not None:
            continue
        elif backend.client.saver.head(thread_id) is not None:
            backend.client.saver.prune(thread_id, keep_last=1)
        pruned += 1
    return {"pruned_count": pruned}


async def prune(request: Request) -> JSONResponse:
    return JSONResponse(await blocking(_prune, backend_of(request), await body(request)))


routes = [
    Route("/threads", create, methods=["POST"]),
    Route("/threads/search", search, methods=["POST"]),
    Route("/threads/count", count, methods=["POST"]),
    Route("/threads/prune", prune, methods=["POST"]),
    Route("/threads/{thread_id}", get, methods=["GET"]),
    Route("/threads/{thread_id}", patch, methods=["PATCH"]),
    Route("/threads/{thread_id}", delete, methods=["DELETE"]),
    Route("/threads/{thread_id}/state", get_state, methods=["GET"]),
    Route("/threads/{thread_id}/state", update_state, methods=["POST"]),
    Route("/threads/{thread_id}/state/checkpoint", get_state_at, methods=["POST"]),
    Route("/threads/{thread_id}/state/{checkpoint_id}", get_state, methods=["GET"]),
    Route("/threads/{thread_id}/history", history, methods=["GET", "POST"]),
    Route("/threads/{thread_id}/copy", copy, methods=["POST"]),
]
