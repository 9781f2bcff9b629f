"""Our records as the Agent Server's objects: runs, threads, thread states.

Statuses differ in name and grain. A run that paused on `interrupt()` is a `success` there
(the thread is `interrupted`); a run stopped by another run's `multitask_strategy=
"interrupt"` or cancelled is `interrupted`; a failed one is `error`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from graphdef.types import StateSnapshot
from scheduler.records import RunRecord, RunStatus
from scheduler.server.backend import assistant_id

_RUN_STATUS = {
    RunStatus.QUEUED: "pending",
    RunStatus.WAITING: "pending",
    RunStatus.RUNNING: "running",
    RunStatus.DONE: "success",
    RunStatus.FAILED: "error",
    RunStatus.CANCELLED: "interrupted",
    RunStatus.REJECTED: "error",
}


def iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()


def run_status(run: RunRecord) -> str:
    if run.status == RunStatus.INTERRUPTED:
        return "interrupted" if run.stop_requested else "success"
    return _RUN_STATUS[run.status]


def run_view(run: RunRecord, info: dict[str, Any] | None) -> dict[str, Any]:
    """A run as `GET /threads/{thread_id}/runs/{run_id}` returns it; `info` is what the API
    kept of its request (`ApiRecords.put_run`)."""
    info = info or {}
    return {
        "run_id": run.run_id,
        "thread_id": run.thread_id,
        "assistant_id": info.get("assistant_id", assistant_id(run.graph)),
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "status": run_status(run),
        "metadata": info.get("metadata", {}),
        "kwargs": info.get("kwargs", {}),
        "multitask_strategy": info.get("multitask_strategy", run.on_busy),
    }


def thread_status(latest: RunRecord | None, active: str | None) -> str:
    """`busy` while a run holds the thread; else what its latest run left."""
    if active is not None:
        return "busy"
    if latest is None:
        return "idle"
    if latest.status == RunStatus.INTERRUPTED and not latest.stop_requested:
        return "interrupted"
    if latest.status == RunStatus.FAILED:
        return "error"
    return "idle"


def checkpoint(config: dict[str, Any] | None) -> dict[str, Any] | None:
    conf = (config or {}).get("configurable") or {}
    if not conf.get("thread_id") or not conf.get("checkpoint_id"):
        return None
    out = {"thread_id": conf["thread_id"], "checkpoint_ns": conf.get("checkpoint_ns") or "",
           "checkpoint_id": conf["checkpoint_id"]}
    if "checkpoint_map" in conf:
        out["checkpoint_map"] = conf["checkpoint_map"]
    return out


def _interrupt(item: Any) -> dict[str, Any]:
    return {"id": item.id, "value": item.value}


def thread_state(snapshot: StateSnapshot) -> dict[str, Any]:
    """A state snapshot as `GET /threads/{thread_id}/state` returns it."""
    parent = checkpoint(snapshot.parent_config)
    return {
        "values": snapshot.values,
        "next": list(snapshot.next),
        "tasks": [{
            "id": t.id,
            "name": t.name,
            "path": list(t.path),
            "error": None if t.error is None else f"{type(t.error).__name__}: {t.error}",
            "interrupts": [_interrupt(i) for i in t.interrupts],
            "checkpoint": (t.state or {}).get("configurable")
            if isinstance(t.state, dict) else None,
            "state": thread_state(t.state) if isinstance(t.state, StateSnapshot) else None,
            "result": t.result,
        } for t in snapshot.tasks],
        "metadata": snapshot.metadata,
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint(snapshot.config),
        "parent_checkpoint": parent,
        "interrupts": [_interrupt(i) for i in snapshot.interrupts],
        "checkpoint_id": (snapshot.config.get("configurable") or {}).get("checkpoint_id"),
        "parent_checkpoint_id": parent["checkpoint_id"] if parent else None,
    }


def empty_state() -> dict[str, Any]:
    """The state of a thread no run has written to yet."""
    return {"values": {}, "next": [], "tasks": [], "metadata": None, "created_at": None,
            "checkpoint": None, "parent_checkpoint": None, "interrupts": [],
            "checkpoint_id": None, "parent_checkpoint_id": None}
