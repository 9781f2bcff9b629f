"""The superstep algorithm, free of I/O: plan a step's tasks from a checkpoint, apply their writes.

The in-process runner and the distributed scheduler both call these functions; they differ
only in where a planned task runs and how its completion is awaited. Everything here is
deterministic in its inputs, so a re-planned superstep yields the same task ids and a task's
saved writes are found again after a crash.
"""

from __future__ import annotations

import hashlib
import inspect
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from graphdef.channels import MISSING, BaseChannel
from graphdef.checkpoint.base import Checkpoint, PendingWrite
from graphdef.checkpoint.ids import new_checkpoint_id
from graphdef.constants import (
    BRANCH_TO,
    CONTROL_WRITES,
    END,
    ERROR,
    INTERRUPT,
    NO_WRITES,
    NS_END,
    NS_SEP,
    NULL_TASK_ID,
    PULL,
    PUSH,
    RESERVED_WRITES,
    RESUME,
    TASKS,
)
from graphdef.errors import InvalidResumeError, revive_error
from graphdef.types import Command, Interrupt, RetryPolicy, Send

Write = tuple[str, Any]


@dataclass
class Node:
    """A compiled node: what triggers it, what it reads, how it runs and what it writes."""

    name: str
    triggers: list[str]
    reads: str | list[str]
    bound: Callable[[Any, dict[str, Any]], Any]
    # An async node's coroutine function; the async API awaits it (and runs `bound`, the
    # sync one, in a thread when there is none).
    abound: Callable[[Any, dict[str, Any]], Awaitable[Any]] | None = None
    writers: list[Callable[[Any, TaskContext], list[Write]]] = field(default_factory=list)
    mapper: Callable[[Any], Any] | None = None
    retry_policy: Sequence[RetryPolicy] = ()
    subgraph: Any = None
    hidden: bool = False
    queue: str | None = None
    cache_policy: Any = None
    cache_id: str = "__dynamic__"
    # Its function is a coroutine function: only `abound` runs it.
    is_async: bool = False

    def needs_event_loop(self) -> bool:
        """Whether running it takes an event loop: an async function or an async route, or
        a subgraph with such a node, however deep."""
        if self.is_async or any(inspect.iscoroutinefunction(w) for w in self.writers):
            return True
        nodes = getattr(self.subgraph, "nodes", None) or {}
        return any(node.needs_event_loop() for node in nodes.values())


@dataclass
class TaskContext:
    """What a writer may look at: the task's own writes and a fresh read of state."""

    task: Task
    channels: Mapping[str, BaseChannel]

    def read_fresh(self, keys: str | Sequence[str]) -> Any:
        """State as this task sees it after its own writes (conditional edges read this)."""
        own: dict[str, list[Any]] = defaultdict(list)
        for chan, value in self.task.writes:
            own[chan].append(value)
        local = {}
        for k in [keys] if isinstance(keys, str) else keys:
            if k not in self.channels:
                continue
            channel = self.channels[k].copy()
            if own.get(k):
                channel.update(own[k])
            local[k] = channel
        if isinstance(keys, str):
            return local[keys].get() if keys in local else None
        return {k: c.get() for k, c in local.items() if c.is_available()}


@dataclass
class Task:
    """One planned unit of work of a superstep; `writes` fills in as it runs or is restored."""

    id: str
    name: str
    path: tuple[Any, ...]
    input: Any
    triggers: tuple[str, ...]
    checkpoint_ns: str
    node: Node
    writes: list[Write] = field(default_factory=list)

    @property
    def path_key(self) -> str:
        return task_path_str(self.path)


def task_id(checkpoint_id: str, *parts: str) -> str:
    """A stable id for a task: same checkpoint and position, same id, on any machine."""
    digest = hashlib.blake2b(
        "\x00".join((checkpoint_id, *parts)).encode(), digest_size=16
    ).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


def interrupt_id(task_ns: str, answered: int) -> str:
    """An interrupt's id, keyed by the task namespace and the answer slot it waits for."""
    raw = f"{task_ns}{NS_SEP}{answered}" if answered else task_ns
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def task_path_str(path: Any) -> str:
    """Sort key for a task's position; pull tasks sort by node name, sends by index."""
    if isinstance(path, tuple | list):
        return "~" + ", ".join(task_path_str(p) for p in path)
    if isinstance(path, int):
        return f"{path:010d}"
    return str(path)


def read_values(channels: Mapping[str, BaseChannel], keys: str | Sequence[str]) -> Any:
    if isinstance(keys, str):
        return channels[keys].get() if channels[keys].is_available() else None
    return {k: channels[k].get() for k in keys if k in channels and channels[k].is_available()}


def channels_from_checkpoint(
    specs: Mapping[str, BaseChannel], checkpoint: Checkpoint
) -> dict[str, BaseChannel]:
    values = checkpoint["channel_values"]
    return {k: spec.from_checkpoint(values.get(k, MISSING)) for k, spec in specs.items()}


def create_checkpoint(
    checkpoint: Checkpoint,
    channels: Mapping[str, BaseChannel] | None,
    updated_channels: Iterable[str] | None,
    *,
    checkpoint_id: str | None = None,
    changed: Iterable[str] | None = None,
) -> Checkpoint:
    """Snapshot channels into a new checkpoint; `checkpoint_id` keeps the id (exit mode).

    `changed`: the channels whose versions moved since `checkpoint`'s values were the
    channels' own; only those are read again. A channel's value changes only with its version
    (`apply_writes` bumps the version of every channel an update, a consume, a clear or a
    finish changed), so the others' values carry over.
    """
    if channels is None:
        values = dict(checkpoint["channel_values"])
    elif changed is not None:
        values = dict(checkpoint["channel_values"])
        for k in changed:
            channel = channels.get(k)
            if channel is None:
                continue
            stored = channel.checkpoint()
            if stored is MISSING:
                values.pop(k, None)
            else:
                values[k] = stored
    else:
        values = {}
        for k, channel in channels.items():
            stored = channel.checkpoint()
            if stored is not MISSING:
                values[k] = stored
    return Checkpoint(
        v=1,
        id=checkpoint_id or new_checkpoint_id(),
        ts=datetime.now(UTC).isoformat(),
        channel_values=values,
        channel_versions=dict(checkpoint["channel_versions"]),
        # Shared with the checkpoint it follows: a node's entry is replaced, never changed in
        # place (`apply_writes`, `mark_interrupt_seen`).
        versions_seen=dict(checkpoint["versions_seen"]),
        updated_channels=sorted(updated_channels) if updated_channels is not None else None,
    )


def apply_writes(
    checkpoint: Checkpoint,
    channels: Mapping[str, BaseChannel],
    tasks: Iterable[Task | NullTask],
    trigger_to_nodes: Mapping[str, Sequence[str]],
    may_hold_values: Collection[str] | None = None,
) -> set[str]:
    """Apply one superstep's writes together, in task-path order, and bump versions.

    Returns the channels that changed, which decide the next step's candidate nodes. When
    none of them triggers a node, channels are told the run would finish (`finish`), which
    releases deferred nodes: a deferred node runs once, after all other pending work.

    A step with triggered tasks clears every channel an empty update clears (ephemeral
    values, topics) that is available and was not written now. `may_hold_values`: the only
    channels that can be available for that, from a caller that tracks them (of standard
    channels, only what an earlier call returned can hold a value, and a step with triggered
    tasks leaves only what it returned); None: every channel is looked at.
    """
    tasks = list(tasks)
    if len(tasks) > 1:
        tasks.sort(key=lambda t: task_path_str(t.path))
    bump_step = any(t.triggers for t in tasks)
    versions = checkpoint["channel_versions"]
    versions_seen = checkpoint["versions_seen"]
    for task in tasks:
        if task.triggers:
            versions_seen[task.name] = {
                **versions_seen.get(task.name, {}),
                **{c: versions[c] for c in task.triggers if c in versions},
            }

    next_version = (max(versions.values()) if versions else 0) + 1

    for chan in {c for t in tasks for c in t.triggers if c in channels}:
        if channels[chan].consume():
            versions[chan] = next_version

    by_channel: dict[str, list[Any]] = defaultdict(list)
    for task in tasks:
        for chan, value in task.writes:
            if chan in RESERVED_WRITES or chan not in channels:
                continue
            by_channel[chan].append(value)

    updated: set[str] = set()
    for chan, values in by_channel.items():
        if channels[chan].update(values):
            versions[chan] = next_version
            if channels[chan].is_available():
                updated.add(chan)

    if bump_step:
        candidates = channels.items() if may_hold_values is None else [
            (c, channels[c]) for c in may_hold_values if c in channels]
        for chan, channel in candidates:
            if chan not in updated and channel.is_available() and channel.update(()):
                versions[chan] = next_version
                if channel.is_available():
                    updated.add(chan)
    # Nothing left to trigger a node: this would be the last superstep, so deferred nodes'
    # triggers become available and they run now, once, after all other work.
    if bump_step and updated.isdisjoint(trigger_to_nodes):
        for chan, channel in channels.items():
            if channel.finish():
                versions[chan] = next_version
                if channel.is_available():
                    updated.add(chan)
    return updated


@dataclass
class NullTask:
    """Writes that belong to no task: run input, `update_state`, a Command's update."""

    name: str
    writes: list[Write]
    triggers: tuple[str, ...] = ()
    path: tuple[Any, ...] = ()


def _triggered(node: Node, channels: Mapping[str, BaseChannel], checkpoint: Checkpoint) -> bool:
    seen = checkpoint["versions_seen"].get(node.name)
    versions = checkpoint["channel_versions"]
    for chan in node.triggers:
        if not channels[chan].is_available():
            continue
        if seen is None or versions.get(chan, 0) > seen.get(chan, 0):
            return True
    return False


def _pull_input(node: Node, channels: Mapping[str, BaseChannel]) -> Any:
    if isinstance(node.reads, str):
        if not channels[node.reads].is_available():
            return MISSING
        value = channels[node.reads].get()
    else:
        value = read_values(channels, node.reads)
    return node.mapper(value) if node.mapper is not None else value


def prepare_next_tasks(
    checkpoint: Checkpoint,
    channels: Mapping[str, BaseChannel],
    nodes: Mapping[str, Node],
    step: int,
    *,
    parent_ns: str = "",
    updated_channels: set[str] | None = None,
    trigger_to_nodes: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Task]:
    """Plan the superstep that follows `checkpoint`: pending sends first, then triggered nodes."""
    paths: list[tuple[str, Any]] = []
    sends = channels.get(TASKS)
    if sends is not None and sends.is_available():
        paths.extend((PUSH, idx) for idx in range(len(sends.get())))
    if checkpoint["channel_versions"]:
        if updated_channels is not None and trigger_to_nodes is not None:
            candidates: Iterable[str] = sorted(
                {n for c in updated_channels for n in trigger_to_nodes.get(c, ())}
            )
        else:
            candidates = nodes.keys()
        paths.extend((PULL, name) for name in candidates)
    tasks = (prepare_task(checkpoint, channels, nodes, step, path, parent_ns) for path in paths)
    return {t.id: t for t in tasks if t is not None}


def prepare_task(
    checkpoint: Checkpoint,
    channels: Mapping[str, BaseChannel],
    nodes: Mapping[str, Node],
    step: int,
    path: tuple[str, Any],
    parent_ns: str = "",
) -> Task | None:
    """Plan the one task at `path` ((PUSH, send index) or (PULL, node)), if it would run.

    A worker that knows its task's path plans just that task instead of the whole superstep.
    """
    if path[0] == PUSH:
        sends = channels.get(TASKS)
        if sends is None or not sends.is_available() or path[1] >= len(sends.get()):
            return None
        packet = sends.get()[path[1]]
        if not isinstance(packet, Send) or packet.node not in nodes:
            return None
        return _make_task(
            checkpoint, nodes[packet.node], (PUSH, path[1]), packet.arg, (PUSH,),
            step, parent_ns, str(path[1]),
        )
    node = nodes.get(path[1])
    if node is None or not checkpoint["channel_versions"]:
        return None
    if not _triggered(node, channels, checkpoint):
        return None
    value = _pull_input(node, channels)
    if value is MISSING:
        return None
    triggers = tuple(sorted(node.triggers))
    return _make_task(checkpoint, node, (PULL, path[1]), value, triggers, step, parent_ns,
                      *triggers)


def _make_task(
    checkpoint: Checkpoint,
    node: Node,
    path: tuple[Any, ...],
    value: Any,
    triggers: tuple[str, ...],
    step: int,
    parent_ns: str,
    *id_parts: str,
) -> Task:
    ns = f"{parent_ns}{NS_SEP}{node.name}" if parent_ns else node.name
    tid = task_id(checkpoint["id"], ns, str(step), node.name, path[0], *id_parts)
    return Task(
        id=tid,
        name=node.name,
        path=path,
        input=value,
        triggers=triggers,
        checkpoint_ns=f"{ns}{NS_END}{tid}",
        node=node,
    )


def should_interrupt(
    checkpoint: Checkpoint, interrupt_nodes: Sequence[str] | str, tasks: Iterable[Task]
) -> list[Task]:
    """Tasks that hit a static breakpoint, unless nothing changed since the last pause."""
    seen = checkpoint["versions_seen"].get(INTERRUPT, {})
    changed = any(v > seen.get(c, 0) for c, v in checkpoint["channel_versions"].items())
    if not changed:
        return []
    return [
        t
        for t in tasks
        if (not t.node.hidden if interrupt_nodes == "*" else t.name in interrupt_nodes)
    ]


def mark_interrupt_seen(checkpoint: Checkpoint, channels: Iterable[str]) -> None:
    """Record that the caller has seen this state, so a breakpoint does not fire twice."""
    versions = checkpoint["channel_versions"]
    checkpoint["versions_seen"][INTERRUPT] = {
        **checkpoint["versions_seen"].get(INTERRUPT, {}),
        **{chan: versions[chan] for chan in channels if chan in versions},
    }


@dataclass
class TaskStatus:
    """What the saved writes say about one task of a superstep."""

    output: list[Write] = field(default_factory=list)
    interrupts: list[Interrupt] = field(default_factory=list)
    error: Any = None
    resume: list[Any] | None = None

    @property
    def finished(self) -> bool:
        return bool(self.output)


def task_statuses(pending_writes: Iterable[PendingWrite]) -> dict[str, TaskStatus]:
    """Group saved writes by task: finished tasks are skipped on resume, others re-run."""
    statuses: dict[str, TaskStatus] = {}
    for tid, chan, value in pending_writes:
        if tid == NULL_TASK_ID:
            continue
        status = statuses.setdefault(tid, TaskStatus())
        if chan == INTERRUPT:
            status.interrupts.extend(value if isinstance(value, list | tuple) else [value])
        elif chan == ERROR:
            status.error = revive_error(value)
        elif chan == RESUME:
            status.resume = value if isinstance(value, list) else [value]
        elif chan not in CONTROL_WRITES:
            status.output.append((chan, value))
    return statuses


def pending_interrupts(pending_writes: Iterable[PendingWrite]) -> list[Interrupt]:
    return [
        i
        for s in task_statuses(pending_writes).values()
        if not s.finished
        for i in s.interrupts
    ]


def resume_map(resume: Any) -> dict[str, Any] | None:
    """`Command(resume=...)` as answers by interrupt id, or None when it is one answer for
    the one pending interrupt. Interrupt ids are 32 hex characters, which tells a map of
    answers from an answer that happens to be a dict."""
    if isinstance(resume, dict) and resume and all(
        isinstance(k, str) and len(k) == 32 for k in resume
    ):
        return resume
    return None


def check_resume(resume: Any, pending: set[str], thread_id: Any) -> dict[str, Any] | None:
    """Raise InvalidResumeError unless `resume` answers the thread's `pending` interrupt
    ids unambiguously; returns its map of answers (see `resume_map`)."""
    if not pending:
        raise InvalidResumeError(f"Thread {thread_id!r} has no pending interrupt to resume")
    answers = resume_map(resume)
    if answers is not None:
        if unknown := sorted(set(answers) - pending):
            raise InvalidResumeError(
                f"Unknown or already answered interrupt id(s) {unknown}; "
                f"pending: {sorted(pending)}"
            )
    elif len(pending) > 1:
        raise InvalidResumeError(
            "When there are multiple pending interrupts, you must specify the "
            "interrupt id when resuming: Command(resume={interrupt_id: value})."
        )
    return answers


def goto_writes(cmd: Command) -> list[Write]:
    """The writes a Command's `goto` stands for: a Send, or a branch to a node."""
    writes: list[Write] = []
    for target in cmd.goto_targets():
        if isinstance(target, Send):
            writes.append((TASKS, target))
        elif target != END:
            writes.append((BRANCH_TO.format(target), None))
    return writes


def finished_marker(writes: list[Write]) -> list[Write]:
    """A task that wrote nothing still records that it finished, so it is not re-run."""
    if all(c in CONTROL_WRITES for c, _ in writes):
        return [*writes, (NO_WRITES, None)]
    return writes
