"""`update_state`: write values into a thread as if a node had returned them.

It runs the node's writers (so edges out of `as_node` fire as they would have) and saves a
new checkpoint with source "update"; nothing else runs. Validation happens before any
write, so a rejected update leaves the thread as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from graphdef import algo
from graphdef.algo import Node, Task, TaskContext
from graphdef.channels import BaseChannel
from graphdef.checkpoint.base import (
    BaseCheckpointSaver,
    CheckpointTuple,
    empty_checkpoint,
    metadata_from_config,
    with_checkpoint_map,
)
from graphdef.constants import INTERRUPT, NS_END, NS_SEP, START
from graphdef.errors import InvalidUpdateError
from graphdef.runtime import TaskRuntime, bind_runtime, reset_runtime
from graphdef.types import Interrupt


class UpdatedGraph(Protocol):
    """What an update needs of the compiled graph (a `graphdef.pregel.Pregel`), declared
    here so that this module does not import the one that calls it."""

    nodes: dict[str, Node]
    channel_specs: dict[str, BaseChannel]
    trigger_to_nodes: dict[str, list[str]]
    stream_channels: str | list[str]


def infer_as_node(graph: UpdatedGraph, versions_seen: dict[str, dict[str, int]]) -> str | None:
    """The node that most recently ran alone; None when that is ambiguous (LangGraph's rule)."""
    if len(graph.nodes) == 1:
        return next(iter(graph.nodes))
    seen = {
        n: {c: v for c, v in s.items() if c != INTERRUPT}
        for n, s in versions_seen.items()
        if n in graph.nodes
    }
    if not any(v for s in seen.values() for v in s.values()):
        return START if START in graph.nodes else None
    last = sorted((v, n) for n, s in seen.items() for v in s.values())
    if len(last) == 1 or last[-1][0] != last[-2][0]:
        return last[-1][1]
    return None


def update_state(
    graph: UpdatedGraph,
    saver: BaseCheckpointSaver,
    config: dict[str, Any],
    values: Any,
    as_node: str | None,
) -> dict[str, Any]:
    """`graph` is the graph whose namespace `config` addresses (a subgraph's, for a config
    from `get_state().tasks[i].state`): its nodes plan the task ids and write the values."""
    conf = dict(config.get("configurable") or {})
    ns = conf.setdefault("checkpoint_ns", "")
    saved = saver.get_tuple({"configurable": conf})
    checkpoint = saved.checkpoint if saved else empty_checkpoint()
    step = saved.metadata.get("step", -1) if saved else -1
    checkpoint_config = saved.config if saved else {"configurable": conf}
    channels = algo.channels_from_checkpoint(graph.channel_specs, checkpoint)
    if as_node is None:
        as_node = infer_as_node(graph, checkpoint["versions_seen"])
    if as_node is None:
        raise InvalidUpdateError("Ambiguous update, specify as_node")
    if as_node not in graph.nodes:
        raise InvalidUpdateError(f"Node {as_node} does not exist")
    node = graph.nodes[as_node]
    _reject_unknown_keys(graph, values)
    pending = algo.prepare_next_tasks(
        checkpoint, channels, graph.nodes, step + 1, parent_ns=ns) if saved else {}
    task_id = next((t.id for t in pending.values() if t.name == as_node), None) or algo.task_id(
        checkpoint["id"], "update", as_node
    )
    task_ns = f"{ns}{NS_SEP}{as_node}" if ns else as_node
    task = Task(
        id=task_id, name=as_node, path=(INTERRUPT, 0), input=values, triggers=(INTERRUPT,),
        checkpoint_ns=f"{task_ns}{NS_END}{task_id}", node=node,
    )
    runtime = TaskRuntime(
        task=task, config=config, resume=[], take_null_resume=lambda: None,
        send=task.writes.extend,
    )
    token = bind_runtime(runtime)
    try:
        context = TaskContext(task, channels)
        for writer in node.writers:
            task.writes.extend(writer(values, context))
    finally:
        reset_runtime(token)
    working = algo.create_checkpoint(checkpoint, None, None, checkpoint_id=checkpoint["id"])
    previous_versions = dict(working["channel_versions"])
    updated = algo.apply_writes(working, channels, [task], graph.trigger_to_nodes)
    new_checkpoint = algo.create_checkpoint(working, channels, updated)
    new_versions = {
        k: v for k, v in new_checkpoint["channel_versions"].items()
        if v != previous_versions.get(k)
    }
    # A subgraph's update stays linked to the parent checkpoint its step ran from.
    metadata = {
        "source": "update", "step": step + 1,
        "parents": saved.metadata.get("parents", {}) if saved else {},
    }
    saved_config = saver.put(
        checkpoint_config,
        new_checkpoint,
        {**metadata, **{k: v for k, v in metadata_from_config(config).items()
                        if k not in metadata}},
        new_versions,
    )
    return with_checkpoint_map(saved_config, metadata) or saved_config


@dataclass
class Resumable:
    """What a `Command(resume=...)` at a checkpoint may answer."""

    interrupts: list[Interrupt] = field(default_factory=list)
    # Tasks planned at the checkpoint that re-run a node paused before an update: they take
    # an answer given without an interrupt id, as a task that paused itself does.
    reruns: set[str] = field(default_factory=set)


def resumable_interrupts(
    graph: UpdatedGraph, saver: BaseCheckpointSaver, saved: CheckpointTuple
) -> Resumable:
    """The interrupts pending at `saved`, or, when `update_state` wrote `saved` over a
    paused step ("edit, then approve"), those of that step whose nodes `saved` still plans:
    LangGraph re-runs such a node on the edited state and hands it the answer. An update as
    the paused node itself answered it, so nothing is left to resume there (README,
    "Deliberate differences", 1)."""
    pending = algo.pending_interrupts(saved.pending_writes)
    if pending or saved.metadata.get("source") != "update":
        return Resumable(pending)
    ns = saved.config["configurable"].get("checkpoint_ns", "")
    planned = {t.name: t for t in _plan(graph, saved, ns).values()}
    base: CheckpointTuple | None = saved
    while base is not None and base.metadata.get("source") == "update":
        base = saver.get_tuple(base.parent_config) if base.parent_config else None
    if base is None:
        return Resumable()
    paused = _plan(graph, base, ns)
    carried = Resumable()
    for tid, status in algo.task_statuses(base.pending_writes).items():
        rerun = planned.get(paused[tid].name) if tid in paused else None
        if rerun is not None and status.interrupts and not status.finished:
            carried.interrupts.extend(status.interrupts)
            carried.reruns.add(rerun.id)
    return carried


def _plan(graph: UpdatedGraph, saved: CheckpointTuple, ns: str) -> dict[str, Task]:
    channels = algo.channels_from_checkpoint(graph.channel_specs, saved.checkpoint)
    return algo.prepare_next_tasks(
        saved.checkpoint, channels, graph.nodes, saved.metadata.get("step", -1) + 1,
        parent_ns=ns,
    )


def _reject_unknown_keys(graph: UpdatedGraph, values: Any) -> None:
    """A deliberate difference from LangGraph, which drops unknown keys silently."""
    if not isinstance(values, dict):
        return
    unknown = sorted(k for k in values if k not in graph.channel_specs)
    if unknown:
        raise InvalidUpdateError(
            f"update_state got unknown state key(s) {unknown}; "
            f"the state has {sorted(graph.stream_channels)}"
        )
