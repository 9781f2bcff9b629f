"""`/runs/crons` and `/threads/{thread_id}/runs/crons`: runs on a schedule, as the Agent
Server has them (create for a thread or stateless, search, count, update, delete).

A cron is checked as its runs will be (the same checks as `POST /threads/{id}/runs`, the
assistant resolved, the thread found) before anything is stored; then its record is written
and its beat entry added (`scheduler.beat`). Beat fires `celerygraph.fire_cron`, which
starts the run through `scheduler.server.runs.start`, the path `POST .../runs` takes.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler import beat
from scheduler.server import runs, views
from scheduler.server.backend import Backend, assistant_id, backend_of
from scheduler.server.cron_store import CronStore
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
    reject_unknown,
)
from scheduler.server.threads import require_thread

CRON_ONLY = frozenset({"schedule", "end_time", "enabled", "timezone", "on_run_completed"})
RUN_PART = frozenset({
    "assistant_id", "input", "config", "metadata", "context", "interrupt_before",
    "interrupt_after", "checkpoint_during", "webhook", "multitask_strategy", "stream_mode",
    "stream_subgraphs", "stream_resumable", "durability",
})
UPDATABLE = (CRON_ONLY | RUN_PART) - {"assistant_id", "checkpoint_during",
                                      "multitask_strategy"}
# A cron's fields, in the order the reference gives them; what `select` may name.
FIELDS = ("cron_id", "assistant_id", "thread_id", "on_run_completed", "end_time", "schedule",
          "timezone", "created_at", "updated_at", "user_id", "payload", "next_run_date",
          "metadata", "enabled")
SORT_KEYS = ("cron_id", "assistant_id", "thread_id", "next_run_date", "end_time",
             "created_at", "updated_at")


def crons_of(backend: Backend) -> CronStore:
    return CronStore(backend.client.store)


def _end_time(raw: Any) -> float | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ApiError(422, "end_time must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ApiError(422, f"Invalid end_time {raw!r}: {exc}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _check_cron(backend: Backend, record: dict[str, Any], where: str) -> None:
    """Everything that would refuse the cron's runs, refused now: the schedule (422), the
    timezone, the run's own fields as `POST .../runs` checks them, the assistant (404/422)."""
    try:
        beat.parse(record["schedule"])
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    try:
        beat.zone(field(record, "timezone", str))
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    payload = record["payload"]
    runs.check_request(payload, where)
    backend.graph_of(payload["assistant_id"])


def view(backend: Backend, record: dict[str, Any]) -> dict[str, Any]:
    """The cron as the reference returns it, with its next tick."""
    ref = backend.graph_of(record["payload"]["assistant_id"])
    now = datetime.now(UTC)
    end = record.get("end_time")
    upcoming = beat.next_tick(beat.parse(record["schedule"]), now,
                              beat.zone(record.get("timezone")))
    if end is not None and upcoming is not None and upcoming.timestamp() > end:
        upcoming = None
    return {
        "cron_id": record["cron_id"],
        "assistant_id": assistant_id(ref),
        "thread_id": record["thread_id"],
        "on_run_completed": record.get("on_run_completed"),
        "end_time": views.iso(end),
        "schedule": record["schedule"],
        "timezone": record.get("timezone"),
        "created_at": views.iso(record["created_at"]),
        "updated_at": views.iso(record["updated_at"]),
        "payload": record["payload"],
        "user_id": None,
        "next_run_date": (upcoming.astimezone(UTC).isoformat() if upcoming is not None
                          else None),
        "metadata": record.get("metadata") or {},
        "enabled": record.get("enabled", True),
    }


def _save(backend: Backend, record: dict[str, Any]) -> None:
    """Write the record, then the beat entry; the record is removed again if beat's
    entry cannot be written, so a failed create stores nothing."""
    crons_of(backend).put(record, record["created_at"])
    try:
        beat.save_entry(backend.client.app, record["cron_id"], record["schedule"],
                        record.get("timezone"),
                        backend.settings.scheduler_queue, record.get("enabled", True))
    except BaseException:
        crons_of(backend).delete(record["cron_id"])
        raise


def _create(backend: Backend, thread_id: str | None, payload: dict[str, Any], where: str
            ) -> dict[str, Any]:
    known = CRON_ONLY | RUN_PART
    if thread_id is not None:
        known = known - {"on_run_completed"}
    reject_unknown(payload, known, where)
    schedule = field(payload, "schedule", str)
    if schedule is None:
        raise ApiError(422, "schedule is required")
    if field(payload, "assistant_id", str) is None:
        raise ApiError(422, "assistant_id is required")
    if thread_id is not None:
        check_uuid(thread_id, "thread ID")
        require_thread(backend, thread_id)
    now = time.time()
    record = {
        "cron_id": str(uuid.uuid4()),
        "thread_id": thread_id,
        "schedule": schedule,
        "timezone": field(payload, "timezone", str),
        "end_time": _end_time(payload.get("end_time")),
        "enabled": field(payload, "enabled", bool, True),
        "on_run_completed": (None if thread_id is not None else choice(
            payload, "on_run_completed", ("delete", "keep"), "delete")),
        "metadata": field(payload, "metadata", dict, {}),
        "payload": {k: v for k, v in payload.items() if k in RUN_PART},
        "created_at": now,
        "updated_at": now,
        "scheduled_at": now,
    }
    _check_cron(backend, record, where)
    _save(backend, record)
    return view(backend, record)


async def create(request: Request) -> JSONResponse:
    thread_id = request.path_params.get("thread_id")
    return JSONResponse(await blocking(_create, backend_of(request), thread_id,
                                       await body(request), f"POST {request.url.path}"))


def _require(backend: Backend, cron_id: str) -> dict[str, Any]:
    check_uuid(cron_id, "cron ID")
    record = crons_of(backend).get(cron_id)
    if record is None or not visible(backend, record):
        raise not_found(f"Cron {cron_id!r}")
    return record


def visible(backend: Backend, record: dict[str, Any]) -> bool:
    """Whether the caller's key may see the cron: its assistant resolves for that key, and
    its thread, if it has one, was not deleted (the next tick deletes it)."""
    thread_id = record.get("thread_id")
    if thread_id is not None and backend.records.thread(thread_id) is None:
        return False
    try:
        backend.graph_of(record["payload"]["assistant_id"])
    except ApiError:
        return False
    return True


def _update(backend: Backend, cron_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    reject_unknown(payload, UPDATABLE, "PATCH /runs/crons/{cron_id}")
    record = _require(backend, cron_id)
    if record["thread_id"] is not None and payload.get("on_run_completed") is not None:
        raise ApiError(422, "on_run_completed applies to stateless crons only")
    updated = {**record, "payload": dict(record["payload"]), "updated_at": time.time()}
    for name, value in payload.items():
        if name in RUN_PART:
            if value is not None:
                updated["payload"][name] = value
        elif name == "end_time":
            updated["end_time"] = _end_time(value)
        elif value is not None:
            updated[name] = value
    if "metadata" in payload and payload["metadata"] is not None:
        updated["metadata"] = field(payload, "metadata", dict, {})
    field(updated, "schedule", str)
    field(updated, "enabled", bool)
    if updated["on_run_completed"] is not None:
        choice(updated, "on_run_completed", ("delete", "keep"), None)
    if (updated["schedule"], updated.get("timezone")) != (record["schedule"],
                                                          record.get("timezone")):
        updated["scheduled_at"] = updated["updated_at"]  # no earlier tick of it fires
    _check_cron(backend, updated, "PATCH /runs/crons/{cron_id}")
    _save(backend, updated)
    return view(backend, updated)


async def update(request: Request) -> JSONResponse:
    return JSONResponse(await blocking(_update, backend_of(request),
                                       request.path_params["cron_id"], await body(request)))


def _delete(backend: Backend, cron_id: str) -> None:
    _require(backend, cron_id)
    beat.delete_entry(backend.client.app, cron_id)
    crons_of(backend).delete(cron_id)


async def delete(request: Request) -> Response:
    await blocking(_delete, backend_of(request), request.path_params["cron_id"])
    return Response(status_code=204)


SEARCH_FIELDS = frozenset({"assistant_id", "thread_id", "enabled", "metadata", "limit",
                           "offset", "sort_by", "sort_order", "select"})


def _search(backend: Backend, payload: dict[str, Any], where: str) -> list[dict[str, Any]]:
    reject_unknown(payload, SEARCH_FIELDS, where)
    assistant = field(payload, "assistant_id", str)
    ref = backend.graph_of(assistant) if assistant is not None else None
    thread_id = field(payload, "thread_id", str)
    enabled = field(payload, "enabled", bool)
    metadata = field(payload, "metadata", dict, {})
    sort_by = cast(str, choice(payload, "sort_by", SORT_KEYS, "created_at"))
    descending = choice(payload, "sort_order", ("asc", "desc"), "desc") == "desc"
    found = []
    for record in crons_of(backend).all():
        if not visible(backend, record):
            continue
        item = view(backend, record)
        if ref is not None and item["assistant_id"] != assistant_id(ref):
            continue
        if thread_id is not None and item["thread_id"] != thread_id:
            continue
        if enabled is not None and item["enabled"] != enabled:
            continue
        if any(item["metadata"].get(k) != v for k, v in metadata.items()):
            continue
        found.append(item)
    found.sort(key=lambda v: v[sort_by] or "", reverse=descending)
    return found


async def search(request: Request) -> JSONResponse:
    payload = await body(request)
    window = paged(payload)
    select = field(payload, "select", list)
    if select is not None and not set(select) <= set(FIELDS):
        raise ApiError(422, f"Invalid select columns: "
                       f"{[c for c in select if c not in FIELDS]}. Expected: {list(FIELDS)}")
    found = (await blocking(_search, backend_of(request), payload,
                            "POST /runs/crons/search"))[window]
    return JSONResponse([{k: c[k] for k in select} for c in found] if select else found)


async def count(request: Request) -> JSONResponse:
    payload = await body(request)
    reject_unknown(payload, SEARCH_FIELDS - {"select"}, "POST /runs/crons/count")
    return JSONResponse(len(await blocking(_search, backend_of(request), payload,
                                           "POST /runs/crons/count")))


routes = [
    Route("/runs/crons", create, methods=["POST"]),
    Route("/runs/crons/search", search, methods=["POST"]),
    Route("/runs/crons/count", count, methods=["POST"]),
    Route("/runs/crons/{cron_id}", update, methods=["PATCH"]),
    Route("/runs/crons/{cron_id}", delete, methods=["DELETE"]),
    Route("/threads/{thread_id}/runs/crons", create, methods=["POST"]),
]
