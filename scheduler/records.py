"""What the run store keeps about a run, typed: its status and its record.

A run record is a Redis hash of JSON values (`RunStore.run`). Fields that a record of an
older release lacks take their defaults here, and unknown fields are ignored, so records
written before an upgrade still read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, TypedDict

import orjson

from graphdef import serde
from graphdef.pregel import DEFAULT_RECURSION_LIMIT


class RunStatus(StrEnum):
    """A run's status; stored as its plain string value."""

    QUEUED = "queued"  # stored, its start message sent
    WAITING = "waiting"  # queued behind the thread's active run (`on_busy="enqueue"`)
    RUNNING = "running"
    INTERRUPTED = "interrupted"  # paused on an interrupt; a resume is a new run
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # its thread was busy, with `on_busy="reject"`

    @property
    def terminal(self) -> bool:
        """Nothing more happens to the run."""
        return self in TERMINAL

    @property
    def settled(self) -> bool:
        """Nothing more happens until someone acts: a producer stops waiting."""
        return self in SETTLED


TERMINAL = frozenset({RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELLED,
                      RunStatus.REJECTED})
SETTLED = TERMINAL | {RunStatus.INTERRUPTED}


class ErrorInfo(TypedDict):
    """A failure as stored and reported: the exception's class name and message."""

    type: str
    message: str


@dataclass
class RunRecord:
    """One run of a graph on a thread, as the run store keeps it."""

    thread_id: str
    run_id: str
    graph: str
    status: RunStatus
    durability: str = "async"
    on_busy: str = "reject"
    config: dict[str, Any] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    # The checkpoint id of the superstep dispatched last; None before the first one.
    step: str | None = None
    # The step number past which the run stops (its recursion limit).
    stop: int | None = None
    # The thread's head when the run took its input: an `exit` run compacts what it added
    # after it, and a start that died half-way knows whether its input was applied.
    base_head: str | None = None
    error: ErrorInfo | None = None
    finished_at: float | None = None
    # The run's trace context (W3C traceparent) when traced: its superstep and node spans
    # hang from it, in whichever process (`scheduler.tracing`).
    traceparent: str | None = None
    # Whether `base_head` was recorded (None is a valid head: the thread was empty).
    has_base_head: bool = field(default=False, repr=False)
    # The run's `context=` (LangGraph's `Runtime.context`) in the serde's JSON form, so that
    # the record stays plain JSON and every loop of the run reads it with the record.
    context: Any = None
    # The stream modes a producer asked for (`stream(stream_mode=...)`), and whether with
    # subgraphs' chunks; no modes: nothing is streamed and no stream key is written.
    stream_modes: list[str] = field(default_factory=list)
    stream_subgraphs: bool = False
    # The run asked to take this one's thread with `multitask_strategy="interrupt"`: this
    # run stops at its next superstep boundary (`Driver._drive`).
    stop_requested: str | None = None
    # The run `roll_back` is cancelling, and for whom: no kept task of it ends its step in
    # place from then on (`RunStore.advance_kept`).
    rolling_back: str | None = None
    # The run's own pause points (LangGraph's `invoke(..., interrupt_before=...)`): node
    # names or "*"; None: the compiled graph's.
    interrupt_before: list[str] | str | None = None
    interrupt_after: list[str] | str | None = None

    def run_context(self) -> Any:
        """The run's context as the producer gave it; loops coerce it to the graph's
        `context_schema`."""
        return None if self.context is None else serde.loads(orjson.dumps(self.context))

    @classmethod
    def from_fields(cls, values: dict[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if k in known}
        kept["status"] = RunStatus(kept.get("status", RunStatus.QUEUED))
        kept["has_base_head"] = "base_head" in values
        return cls(**kept)

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON values (the CLI and `RunHandle.info()` show this)."""
        return {k: v for k, v in asdict(self).items()
                if v is not None and k != "has_base_head"}

    @property
    def fork_point(self) -> str | None:
        """The past checkpoint this run starts from (a fork, time travel); None: the head."""
        return (self.config.get("configurable") or {}).get("checkpoint_id")

    def config_at(self, checkpoint_id: str | None) -> dict[str, Any]:
        """The config the run's loops use at `checkpoint_id` (None: the thread's head): the
        producer's config, pinned to the thread. The run's fork point addresses only its
        start (`fork_point`): after that, the run goes on from its own checkpoints."""
        conf = {**{k: v for k, v in self.config.get("configurable", {}).items()
                   if k != "checkpoint_id"},
                "thread_id": self.thread_id, "checkpoint_ns": ""}
        if checkpoint_id is not None:
            conf["checkpoint_id"] = checkpoint_id
        return {**self.config, "configurable": conf,
                "recursion_limit": self.config.get("recursion_limit", DEFAULT_RECURSION_LIMIT)}


def encode_context(context: Any) -> Any:
    """`context` as a run record keeps it (see `RunRecord.context`); None stays None."""
    return None if context is None else orjson.loads(serde.dumps(context, root="context"))
