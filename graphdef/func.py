"""The functional API: `@entrypoint` workflows whose `@task` calls are memoized durably.

On resume the entrypoint body runs again from its top; each `@task` call is identified by
its position among the calls of that run, so calls that finished return their saved
results instead of running again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from graphdef.algo import Node, TaskContext, Write
from graphdef.channels import EphemeralValue, LastValue, Topic
from graphdef.checkpoint.base import BaseCheckpointSaver
from graphdef.constants import END, PREVIOUS, START, TASKS
from graphdef.pregel import Pregel
from graphdef.runtime import current_runtime, current_runtime_or_none, get_store
from graphdef.state import (
    accepts_param,
    accepts_store,
    is_async_callable,
    no_sync_function,
    with_store,
)
from graphdef.store.base import BaseStore
from graphdef.types import RetryPolicy

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")


class TaskFunction(Generic[T]):
    """A function whose calls inside an entrypoint run as durable, memoized tasks."""

    def __init__(
        self, func: Callable[..., T], *, name: str | None = None,
        retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
    ) -> None:
        self.func = with_store(func)
        self.name = name or func.__name__
        if isinstance(retry_policy, RetryPolicy):
            self.retry_policy: Sequence[RetryPolicy] = (retry_policy,)
        else:
            self.retry_policy = tuple(retry_policy or ())
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Future[T]:
        runtime = current_runtime_or_none()
        if runtime is None or runtime.call is None:
            raise RuntimeError(
                f"Task {self.name!r} was called outside of an @entrypoint; call it from one"
            )
        return runtime.call(self, args, kwargs)


def task(
    func: Callable[..., T] | None = None,
    *,
    name: str | None = None,
    retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
) -> Any:
    """Mark a function as a durable task: `@task` or `@task(name=..., retry_policy=...)`."""
    if func is None:
        return lambda f: TaskFunction(f, name=name, retry_policy=retry_policy)
    return TaskFunction(func, name=name, retry_policy=retry_policy)


class entrypoint:  # noqa: N801 - LangGraph's name
    """Turn a function into a durable workflow graph with one node and memoized tasks."""

    @dataclass(frozen=True)
    class final(Generic[R, S]):  # noqa: N801 - LangGraph's name
        """Return `value` to the caller but save `save` as the next run's `previous`."""

        value: R
        save: S

    def __init__(
        self,
        checkpointer: BaseCheckpointSaver | None = None,
        *,
        store: BaseStore | None = None,
        retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
        **_unused: Any,
    ) -> None:
        self.checkpointer = checkpointer
        self.store = store
        if isinstance(retry_policy, RetryPolicy):
            self.retry_policy: Sequence[RetryPolicy] = (retry_policy,)
        else:
            self.retry_policy = tuple(retry_policy or ())

    def __call__(self, func: Callable[..., Any]) -> EntrypointGraph:
        return EntrypointGraph(func, self.checkpointer, self.retry_policy, self.store)


def _final_writes(output: Any, context: TaskContext) -> list[Write]:
    if isinstance(output, entrypoint.final):
        return [(END, output.value), (PREVIOUS, output.save)]
    return [(END, output), (PREVIOUS, output)]


class EntrypointGraph(Pregel):
    """The graph an `@entrypoint` function compiles to."""

    def __init__(
        self, func: Callable[..., Any], checkpointer: BaseCheckpointSaver | None,
        retry_policy: Sequence[RetryPolicy],
        store: BaseStore | None = None,
    ) -> None:
        self.func = func
        wants_previous = accepts_param(func, "previous")
        wants_config = accepts_param(func, "config")
        wants_store = accepts_store(func)
        wants_writer = accepts_param(func, "writer")

        def call(value: dict[str, Any], config: dict[str, Any]) -> Any:
            kwargs: dict[str, Any] = {}
            if wants_previous:
                kwargs["previous"] = value.get(PREVIOUS)
            if wants_config:
                kwargs["config"] = config
            if wants_store:
                kwargs["store"] = get_store()
            if wants_writer:
                kwargs["writer"] = current_runtime().writer
            return func(value[START], **kwargs)

        name = func.__name__
        asynchronous = is_async_callable(func)
        super().__init__(
            nodes={
                name: Node(
                    name=name, triggers=[START], reads=[START, PREVIOUS],
                    bound=no_sync_function(name) if asynchronous else call,
                    abound=call if asynchronous else None, is_async=asynchronous,
                    writers=[_final_writes], retry_policy=retry_policy,
                )
            },
            channels={
                START: EphemeralValue(START),
                END: LastValue(END),
                PREVIOUS: LastValue(PREVIOUS),
                TASKS: Topic(TASKS),
            },
            input_channels=START,
            output_channels=END,
            checkpointer=checkpointer,
            name=name,
            store=store,
        )
        functools.update_wrapper(self, func)
        self.stream_mode = "updates"
