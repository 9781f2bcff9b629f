"""Stream modes: which ones a run accepts and the payloads of `tasks`, `checkpoints` and
`debug`, in LangGraph's shapes so that code reading LangGraph's stream reads ours.

Kept apart from the run loop, which only decides when a payload is due.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from graphdef import algo
from graphdef.algo import Task, Write
from graphdef.channels import BaseChannel
from graphdef.checkpoint.base import EXCLUDED_METADATA_KEYS, with_checkpoint_map
from graphdef.constants import ERROR, INTERRUPT, NS_END, NS_SEP, PUSH, RETURN
from graphdef.errors import NotImplementedFeatureError

STREAM_MODES = frozenset(
    ("values", "updates", "custom", "messages", "debug", "tasks", "checkpoints")
)
# Modes LangGraph streams that graphdef does not: asking for one is an error, never silence.
UNSUPPORTED_MODES = frozenset(("tools",))
# Configurable keys LangGraph copies into a run's metadata (`ensure_config`), so its tasks'
# metadata carry them.
METADATA_FROM_CONFIGURABLE = (
    "thread_id", "checkpoint_id", "checkpoint_ns", "task_id", "run_id", "assistant_id",
    "graph_id",
)



def check_modes(stream_mode: str | Sequence[str]) -> list[str]:
    """The requested modes as a list. LangGraph yields nothing for a misspelt mode; a
    misspelling here raises, so a typo cannot read as an empty stream."""
    modes = [stream_mode] if isinstance(stream_mode, str) else list(stream_mode)
    for mode in modes:
        if mode in UNSUPPORTED_MODES:
            raise NotImplementedFeatureError(f"stream_mode={mode!r} is not supported by graphdef")
        if mode not in STREAM_MODES:
            raise ValueError(
                f"Unknown stream_mode {mode!r}; expected one of {sorted(STREAM_MODES)}"
            )
    return modes


def namespace(checkpoint_ns: str) -> tuple[str, ...]:
    """A chunk's namespace from a task's checkpoint namespace: the graph the task runs in."""
    return tuple(checkpoint_ns.split(NS_SEP)[:-1]) if checkpoint_ns else ()


def config_metadata(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's metadata as LangGraph's `ensure_config` makes it: its config's `metadata`,
    with the `configurable` values of `METADATA_FROM_CONFIGURABLE` it lacks (a server
    run's `run_id`, `graph_id`, `assistant_id`), which tracers and `tasks` payloads read."""
    metadata = dict(config.get("metadata") or {})
    conf = config.get("configurable") or {}
    for key in METADATA_FROM_CONFIGURABLE:
        if key not in metadata and conf.get(key):
            metadata[key] = conf[key]
    return metadata


def task_start(task: Task, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The `tasks` payload of a task about to run; a `@task` call's input is (args, kwargs)."""
    payload: dict[str, Any] = {
        "id": task.id, "name": task.name, "input": task.input, "triggers": task.triggers,
    }
    user = {k: v for k, v in metadata.items() if k not in EXCLUDED_METADATA_KEYS}
    if user:
        payload["metadata"] = user
    return payload


def task_result(
    task: Task, writes: Sequence[Write], keys: str | Sequence[str],
    error: BaseException | None = None,
) -> dict[str, Any]:
    """The `tasks` payload of a finished, failed or paused task."""
    wanted = {keys} if isinstance(keys, str) else set(keys)
    result: dict[str, Any] = {}
    for chan, value in writes:
        if chan in wanted or chan == RETURN:
            result[chan] = _fold(result[chan], value) if chan in result else value
    interrupts = [
        interrupt_payload(i) for c, v in writes if c == INTERRUPT
        for i in (v if isinstance(v, list | tuple) else [v])
    ]
    return {
        "id": task.id,
        "name": task.name,
        "error": error if error is not None else next((v for c, v in writes if c == ERROR), None),
        "result": result,
        "interrupts": interrupts,
    }


def interrupt_payload(interrupt: Any) -> dict[str, Any]:
    """An interrupt in a payload, with LangGraph's fields (graphdef's interrupts take no
    response schema, so it is always None)."""
    return {**dataclasses.asdict(interrupt), "response_schema": None}


def _fold(existing: Any, value: Any) -> dict[str, list[Any]]:
    """Several writes to one channel, as LangGraph folds them: {'$writes': [...]}."""
    if isinstance(existing, dict) and isinstance(existing.get("$writes"), list):
        return {"$writes": [*existing["$writes"], value]}
    return {"$writes": [existing, value]}


def checkpoint(
    config: dict[str, Any],
    parent_config: dict[str, Any] | None,
    channels: Mapping[str, BaseChannel],
    stream_keys: str | Sequence[str],
    metadata: Mapping[str, Any],
    tasks: Iterable[Task],
    pending_writes: Sequence[tuple[str, str, Any]],
    output_keys: str | Sequence[str],
) -> dict[str, Any]:
    """The `checkpoints` payload: a saved checkpoint as `get_state` shows it, with the tasks
    planned from it and what their saved writes say."""
    tasks = list(tasks)
    conf = config["configurable"]
    statuses = algo.task_statuses(pending_writes)
    entries = []
    for task in tasks:
        status = statuses.get(task.id, algo.TaskStatus())
        state = None
        if task.node.subgraph is not None:
            parent_ns = conf.get("checkpoint_ns", "")
            task_ns = f"{task.name}{NS_END}{task.id}"
            state = {"configurable": {
                "thread_id": conf.get("thread_id"),
                "checkpoint_ns": f"{parent_ns}{NS_SEP}{task_ns}" if parent_ns else task_ns,
            }}
        interrupts = tuple(interrupt_payload(i) for i in status.interrupts)
        result = _snapshot_result(status, output_keys) if status.finished else None
        if status.error is not None:
            entries.append({"id": task.id, "name": task.name, "error": status.error,
                            "state": state})
        elif result:
            entries.append({"id": task.id, "name": task.name, "result": result,
                            "interrupts": interrupts, "state": state})
        else:
            entries.append({"id": task.id, "name": task.name, "interrupts": interrupts,
                            "state": state})
    return {
        "config": with_checkpoint_map(config, metadata),
        "parent_config": with_checkpoint_map(parent_config, metadata),
        "values": algo.read_values(channels, stream_keys),
        "metadata": dict(metadata),
        "next": [t.name for t in tasks],
        "tasks": entries,
    }


def _snapshot_result(status: algo.TaskStatus, keys: str | Sequence[str]) -> Any:
    for chan, value in status.output:
        if chan == RETURN:
            return value
    wanted = {keys} if isinstance(keys, str) else set(keys)
    result: dict[str, Any] = {}
    for chan, value in status.output:
        if chan in wanted:
            result[chan] = _fold(result[chan], value) if chan in result else value
    if isinstance(keys, str):
        return result.get(keys)
    return result


def debug(mode: str, step: int, payload: dict[str, Any]) -> dict[str, Any]:
    """A `tasks` or `checkpoints` payload wrapped as LangGraph's `debug` mode shows it."""
    if mode == "checkpoints":
        kind = "checkpoint"
    else:
        kind = "task_result" if "result" in payload else "task"
    return {
        "step": step,
        "timestamp": datetime.now(UTC).isoformat(),
        "type": kind,
        "payload": payload,
    }


def langgraph_path(path: tuple[Any, ...]) -> tuple[Any, ...]:
    """A task's path as LangGraph's `langgraph_path` metadata spells it: a Send's ends in
    False, a `@task` call's in True (so a handler can tell the call's graph)."""
    if path and path[0] == PUSH:
        if len(path) == 4:
            return (PUSH, langgraph_path(path[1]), path[2], True)
        return (*path[:2], False)
    return tuple(path)
