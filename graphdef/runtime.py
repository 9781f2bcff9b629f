"""The running task's context: how `interrupt()`, `@task` calls, subgraphs and `get_runtime()`
find their task.

A context variable rather than an argument, because user code calls `interrupt()` from
anywhere inside a node, as it does with LangGraph.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from graphdef.algo import Task, Write, interrupt_id
from graphdef.channels import MISSING
from graphdef.checkpoint.base import BaseCheckpointSaver
from graphdef.constants import RESUME
from graphdef.errors import GraphInterrupt
from graphdef.store.base import BaseStore
from graphdef.types import Interrupt

StreamSink = Callable[[tuple[str, ...], str, Any], None]
StreamWriter = Callable[[Any], None]
ContextT = TypeVar("ContextT")


def _no_op_stream_writer(chunk: Any) -> None:
    """What `Runtime.stream_writer` is when no one streams `custom` chunks (as in LangGraph)."""


def _no_op_heartbeat() -> None:
    """LangGraph's `Runtime.heartbeat` feeds node idle timeouts, which graphdef does not have."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ExecutionInfo:
    """Read-only facts about the running node or task (LangGraph's names)."""

    checkpoint_id: str
    checkpoint_ns: str
    task_id: str
    thread_id: str | None = None
    run_id: str | None = None
    node_attempt: int = 1
    node_first_attempt_time: float | None = None

    def patch(self, **overrides: Any) -> ExecutionInfo:
        return replace(self, **overrides)


@dataclass(frozen=True, kw_only=True, slots=True)
class Runtime(Generic[ContextT]):
    """What a run hands every node, task and entrypoint that asks for `runtime` (LangGraph's
    `langgraph.runtime.Runtime`): the run's `context`, the store, the custom stream writer,
    the entrypoint's `previous` return value and facts about the running task.

    `server_info` and `control` are always None: graphdef has no LangGraph Server and no
    cooperative draining.
    """

    context: ContextT = field(default=None)  # type: ignore[assignment]
    store: BaseStore | None = None
    stream_writer: StreamWriter = _no_op_stream_writer
    heartbeat: Callable[[], None] = _no_op_heartbeat
    previous: Any = None
    execution_info: ExecutionInfo | None = None
    server_info: Any = None
    control: Any = None

    def merge(self, other: Runtime[ContextT]) -> Runtime[ContextT]:
        """`other`, with what it leaves unset taken from this one."""
        return Runtime(
            context=other.context or self.context,
            store=other.store or self.store,
            stream_writer=other.stream_writer
            if other.stream_writer is not _no_op_stream_writer else self.stream_writer,
            heartbeat=other.heartbeat
            if other.heartbeat is not _no_op_heartbeat else self.heartbeat,
            previous=self.previous if other.previous is None else other.previous,
            execution_info=other.execution_info or self.execution_info,
            server_info=other.server_info or self.server_info,
            control=other.control or self.control,
        )

    def override(self, **overrides: Any) -> Runtime[ContextT]:
        return replace(self, **overrides)

    @property
    def drain_requested(self) -> bool:
        return False

    @property
    def drain_reason(self) -> str | None:
        return None


@dataclass(frozen=True)
class RunScope:
    """What a run hands down to the graphs its tasks run as subgraphs, so that they save,
    stream and resume as part of it. It travels with the task's runtime, never in the
    config, which user code sees.

    `store`: the root graph's, which LangGraph gives its subgraphs even over their own.
    `context`: the run's `context=`, which subgraphs and `@task` calls see too.
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
    context: Any = None
    messages: Any = None


@dataclass
class TaskRuntime:
    """Per-task state that user code reaches through the context variable.

    `checkpoint_id` and `previous`: the checkpoint the task was planned from and its
    entrypoint's saved return value, for `Runtime`. `attempt` counts retries.
    """

    task: Task
    config: dict[str, Any]
    resume: list[Any]
    take_null_resume: Callable[[], Any]
    send: Callable[[list[Write]], None]
    call: Callable[..., Any] | None = None
    scope: RunScope = field(default_factory=RunScope)
    checkpoint_id: str = ""
    previous: Any = None
    attempt: int = 1
    first_attempt_time: float = field(default_factory=time.time)
    writer: Callable[[Any], None] = field(default=lambda chunk: None)
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


def get_runtime(context_schema: type[ContextT] | None = None) -> Runtime[ContextT]:
    """The running node's `Runtime`; `context_schema` only types the result, as in
    LangGraph."""
    return runtime_of(current_runtime())


def runtime_of(task_runtime: TaskRuntime) -> Runtime[Any]:
    """The `Runtime` a task's user code is given (its `runtime` parameter, `get_runtime()`)."""
    conf = task_runtime.config.get("configurable", {})
    return Runtime(
        context=task_runtime.scope.context,
        store=task_runtime.scope.store,
        stream_writer=task_runtime.writer,
        previous=task_runtime.previous,
        execution_info=ExecutionInfo(
            checkpoint_id=task_runtime.checkpoint_id,
            checkpoint_ns=task_runtime.task.checkpoint_ns,
            task_id=task_runtime.task.id,
            thread_id=conf.get("thread_id"),
            run_id=str(run_id) if (run_id := task_runtime.config.get("run_id")) else None,
            node_attempt=task_runtime.attempt,
            node_first_attempt_time=task_runtime.first_attempt_time,
        ),
    )


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
