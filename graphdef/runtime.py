"""The running task's context: how `interrupt()`, `@task` calls and subgraphs find their task.

A context variable rather than an argument, because user code calls `interrupt()` from
anywhere inside a node, as it does with LangGraph.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from graphdef.algo import Task, Write, interrupt_id
from graphdef.channels import MISSING
from graphdef.checkpoint.base import BaseCheckpointSaver
from graphdef.constants import RESUME
from graphdef.errors import GraphInterrupt
from graphdef.store.base import BaseStore
from graphdef.types import Interrupt

StreamSink = Callable[[tuple[str, ...], str, Any], None]


@dataclass(frozen=True)
class RunScope:
    """What a run hands down to the graphs its tasks run as subgraphs, so that they save,
    stream and resume as part of it. It travels with the task's runtime, never in the
    config, which user code sees.

    `store`: the root graph's, which LangGraph gives its subgraphs even over their own.
    `resuming`: None when the run has no say (past its first superstep), so a subgraph
    decides from its own input; `resume_map` answers interrupts by id at any depth.
    `messages`: the run's `messages` stream handler
    (`graphdef.stream_messages.StreamMessagesHandler`), which subgraphs' nodes report to.
    """

    checkpointer: BaseCheckpointSaver | None = None
    durability: str = "async"
    sink: StreamSink | None = None
    stream_modes: Sequence[str] = ()
    resuming: bool | None = None
    resume_map: Mapping[str, Any] | None = None
    store: BaseStore | None = None
    messages: Any = None


@dataclass
class TaskRuntime:
    """Per-task state that user code reaches through the context variable."""

    task: Task
    config: dict[str, Any]
    resume: list[Any]
    take_null_resume: Callable[[], Any]
    send: Callable[[list[Write]], None]
    call: Callable[..., Any] | None = None
    scope: RunScope = field(default_factory=RunScope)
    writer: Callable[[Any], None] = field(default=lambda chunk: None)
    # Supersteps left before the recursion limit (LangGraph's RemainingSteps), which the
    # prebuilt agent reads to stop with an answer instead of failing the run.
    remaining_steps: int | None = None
    interrupt_counter: itertools.count = field(default_factory=itertools.count)
    call_counter: itertools.count = field(default_factory=itertools.count)
    subgraph_counter: itertools.count = field(default_factory=itertools.count)


_current: ContextVar[TaskRuntime | None] = ContextVar("graphdef_task", default=None)


def current_runtime() -> TaskRuntime:
    runtime = _current.get()
    if runtime is None:
        raise RuntimeError("Called outside of a running graph node or task")
    return runtime


def current_runtime_or_none() -> TaskRuntime | None:
    return _current.get()


def bind_runtime(runtime: TaskRuntime | None) -> Any:
    return _current.set(runtime)


def reset_runtime(token: Any) -> None:
    _current.reset(token)


def get_config() -> dict[str, Any]:
    """The running task's config (thread id, checkpoint namespace, user configurable)."""
    return current_runtime().config


def get_store() -> BaseStore | None:
    """The store of the running graph (the root graph's, in a subgraph), or None."""
    return current_runtime().scope.store

def get_stream_writer() -> Callable[[Any], None]:
    """The running task's `custom` stream writer; it drops what it is given when the run
    does not stream `custom`, so a node need not know how it is run."""
    return current_runtime().writer


def interrupt(value: Any) -> Any:
    """Pause the run and hand `value` to the caller; returns the answer once resumed.

    The node re-runs from its top on resume; earlier `interrupt()` calls in it return
    their stored answers in call order.
    """
    runtime = current_runtime()
    idx = next(runtime.interrupt_counter)
    if idx < len(runtime.resume):
        runtime.send([(RESUME, runtime.resume[: idx + 1])])
        return runtime.resume[idx]
    answer = runtime.take_null_resume()
    if answer is not MISSING:
        runtime.resume.append(answer)
        runtime.send([(RESUME, list(runtime.resume))])
        return answer
    raise GraphInterrupt(
        [Interrupt(value=value, id=interrupt_id(runtime.task.checkpoint_ns, len(runtime.resume)))]
    )
