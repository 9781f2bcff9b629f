"""The functional API: `@entrypoint` workflows whose `@task` calls are memoized durably.

On resume the entrypoint body runs again from its top; each `@task` call is identified by
its position among the calls of that run, so calls that finished return their saved
results instead of running again.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from graphdef import serde
from graphdef.algo import Node, TaskContext, Write
from graphdef.cache.base import BaseCache
from graphdef.cache.keys import CACHE_NS_WRITES, identifier
from graphdef.channels import EphemeralValue, LastValue, Topic
from graphdef.checkpoint.base import BaseCheckpointSaver
from graphdef.constants import END, PREVIOUS, START, TASKS
from graphdef.inject import (
    accepts_param,
    accepts_runtime,
    accepts_store,
    is_async_callable,
    with_injected,
)
from graphdef.params import deprecated, refuse
from graphdef.pregel import Pregel
from graphdef.runtime import current_runtime, current_runtime_or_none, get_store, runtime_of
from graphdef.state import no_sync_function
from graphdef.store.base import BaseStore
from graphdef.types import CachePolicy, RetryPolicy

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")


class TaskFunction(Generic[T]):
    """A function whose calls inside an entrypoint run as durable, memoized tasks."""

    def __init__(
        self, func: Callable[..., T], *, name: str | None = None,
        retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
        cache_policy: CachePolicy[Any] | None = None,
    ) -> None:
        self.func = with_injected(func)
        self.name = name or func.__name__
        self.cache_policy = cache_policy
        if isinstance(retry_policy, RetryPolicy):
            self.retry_policy: Sequence[RetryPolicy] = (retry_policy,)
        else:
            self.retry_policy = tuple(retry_policy or ())
        functools.update_wrapper(self, func)

    def clear_cache(self, cache: BaseCache[Any]) -> None:
        """Forget this task's cached results in `cache` (LangGraph's signature)."""
        if self.cache_policy is not None:
            cache.clear([(CACHE_NS_WRITES, identifier(self.func))])

    async def aclear_cache(self, cache: BaseCache[Any]) -> None:
        self.clear_cache(cache)

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
    cache_policy: CachePolicy[Any] | None = None,
    timeout: Any = None,
    **kwargs: Any,
) -> Any:
    """Mark a function as a durable task: `@task` or `@task(name=..., retry_policy=...)`.

    `cache_policy`: with the entrypoint's `cache`, a call with equal arguments returns the
    cached result without running. `timeout` raises NotImplementedFeatureError.
    """
    refuse("task", timeout=timeout)
    retry_policy = deprecated("task", kwargs, {"retry": "retry_policy"},
                              {"retry_policy": retry_policy})["retry_policy"]
    if func is None:
        return lambda f: TaskFunction(f, name=name, retry_policy=retry_policy,
                                      cache_policy=cache_policy)
    return TaskFunction(func, name=name, retry_policy=retry_policy, cache_policy=cache_policy)


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
        store: BaseStore | None = None,
        cache: BaseCache[Any] | None = None,
        context_schema: Any = None,
        cache_policy: CachePolicy[Any] | None = None,
        retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> None:
        """LangGraph's parameters, positional in its order. `cache_policy` applies to the
        entrypoint and to its tasks that have none of their own; `timeout` raises
        NotImplementedFeatureError."""
        refuse("entrypoint", timeout=timeout)
        given = deprecated("entrypoint", kwargs, {"config_schema": "context_schema",
                                                  "retry": "retry_policy"},
                           {"context_schema": context_schema, "retry_policy": retry_policy})
        context_schema, retry_policy = given["context_schema"], given["retry_policy"]
        self.checkpointer = checkpointer
        self.store = store
        self.cache = cache
        self.context_schema = context_schema
        self.cache_policy = cache_policy
        if isinstance(retry_policy, RetryPolicy):
            self.retry_policy: Sequence[RetryPolicy] = (retry_policy,)
        else:
            self.retry_policy = tuple(retry_policy or ())

    def __call__(self, func: Callable[..., Any]) -> EntrypointGraph:
        schema = self.context_schema
        if dataclasses.is_dataclass(schema) or hasattr(schema, "model_fields"):
            serde.register(schema)  # a distributed run's context is decoded by workers
        return EntrypointGraph(func, self.checkpointer, self.retry_policy, self.store,
                               cache=self.cache, cache_policy=self.cache_policy,
                               context_schema=self.context_schema)


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
        *,
        cache: BaseCache[Any] | None = None,
        cache_policy: CachePolicy[Any] | None = None,
        context_schema: Any = None,
    ) -> None:
        self.func = func
        wants_previous = accepts_param(func, "previous")
        wants_config = accepts_param(func, "config")
        wants_store = accepts_store(func)
        wants_runtime = accepts_runtime(func)
        wants_writer = accepts_param(func, "writer")

        def call(value: dict[str, Any], config: dict[str, Any]) -> Any:
            kwargs: dict[str, Any] = {}
            if wants_previous:
                kwargs["previous"] = value.get(PREVIOUS)
            if wants_config:
                kwargs["config"] = config
            if wants_store:
                kwargs["store"] = get_store()
            if wants_runtime:
                kwargs["runtime"] = runtime_of(current_runtime())
            if wants_writer:
                kwargs["writer"] = current_runtime().writer
            return func(value[START], **kwargs)

        name = func.__name__
        asynchronous = is_async_callable(func)
        # The node reads the input and `previous`; its cache key is of the input alone, as
        # LangGraph's entrypoint node reads only its input.
        super().__init__(
            nodes={
                name: Node(
                    name=name, triggers=[START], reads=[START, PREVIOUS],
                    bound=no_sync_function(name) if asynchronous else call,
                    abound=call if asynchronous else None, is_async=asynchronous,
                    writers=[_final_writes], retry_policy=retry_policy,
                    cache_policy=None if cache_policy is None else CachePolicy(
                        key_func=lambda value: cache_policy.key_func(value[START]),
                        ttl=cache_policy.ttl),
                    cache_id=identifier(func),
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
            cache=cache,
            cache_policy=cache_policy,
            context_schema=context_schema,
        )
        functools.update_wrapper(self, func)
        self.stream_mode = "updates"
