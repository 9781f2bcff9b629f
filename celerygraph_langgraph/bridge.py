"""LangGraph's in-node API, answered by the graphdef task that runs the node.

User code in a LangGraph node calls `langgraph.types.interrupt`, `langgraph.config.get_config`,
`get_store`, `get_stream_writer`, `langgraph.runtime.get_runtime` and `@task` functions.
Each reads the run from LangChain's config context variable (`var_child_runnable_config`):
`interrupt` the task's scratchpad, send function and namespace, the getters its `Runtime`,
a `@task` call its call function. Those calls happen in the middle of user code, where no
boundary could map them afterwards, so a node converted from LangGraph runs under a config
they can read, built from graphdef's running task (`TaskRuntime`): the answers `interrupt`
returns, the writes it records and the `@task` calls it makes are graphdef's, so a resume,
a memo and a re-run behave as for a node written for graphdef.

User functions are called through LangGraph's own `RunnableCallable.invoke`, so the
parameters LangGraph fills (`config`, `writer`, `store`, `runtime`, `previous`) are filled
by LangGraph's rules, from that config. What crosses back is mapped at the boundary:
LangGraph's `GraphInterrupt` becomes graphdef's, with graphdef's interrupt id (the one a
resume is matched against), and returned `Command`, `Send`, `Overwrite` and
`entrypoint.final` become graphdef's (values.py).

The config keys are LangGraph's private `__pregel_*` names and `RunnableCallable` is
LangGraph's internal class: imported from `langgraph._internal` rather than written out, so
that a change there fails at import, and the differential suite
(tests/differential/test_langgraph_on_cluster.py) checks the behaviour against the
installed LangGraph.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph._internal._constants import (
    CONFIG_KEY_CALL,
    CONFIG_KEY_CHECKPOINT_NS,
    CONFIG_KEY_RUNTIME,
    CONFIG_KEY_SCRATCHPAD,
    CONFIG_KEY_SEND,
)
from langgraph._internal._runnable import RunnableCallable
from langgraph.errors import GraphInterrupt as LgGraphInterrupt
from langgraph.runtime import ExecutionInfo as LgExecutionInfo
from langgraph.runtime import Runtime as LgRuntime

from celerygraph_langgraph.values import cache_policy, retry_policies, to_graphdef
from graphdef.algo import interrupt_id
from graphdef.channels import MISSING
from graphdef.errors import GraphInterrupt, NotImplementedFeatureError
from graphdef.inject import is_async_callable
from graphdef.runtime import TaskRuntime, current_runtime, runtime_of
from graphdef.types import Interrupt


class Scratchpad:
    """The part of LangGraph's task scratchpad that user code reaches, backed by graphdef's
    task: what `interrupt()` reads and writes (the task's answers, its interrupt counter,
    an answer given without an interrupt id) and what managed values such as
    `RemainingSteps` read (`step`, `stop`)."""

    def __init__(self, task: TaskRuntime) -> None:
        self._task = task
        self.step: int = int((task.config.get("metadata") or {}).get("langgraph_step", 0))
        self.stop: int = self.step + (task.remaining_steps or 0)

    @property
    def resume(self) -> list[Any]:
        return self._task.resume

    def interrupt_counter(self) -> int:
        return int(next(self._task.interrupt_counter))

    def get_null_resume(self, consume: bool = False) -> Any:
        """The answer a `Command(resume=v)` gave no interrupt id, taken. LangGraph's
        `interrupt` is the only caller and always takes it (`consume=True`)."""
        answer = self._task.take_null_resume()
        return None if answer is MISSING else answer


def scratchpad(config: RunnableConfig) -> Scratchpad:
    """The scratchpad in a config `run` built."""
    return cast(Scratchpad, config["configurable"][CONFIG_KEY_SCRATCHPAD])


def _runtime(task: TaskRuntime) -> LgRuntime[Any]:
    """LangGraph's `Runtime` of the task: what `runtime` parameters and `get_runtime()`,
    `get_store()` and `get_stream_writer()` give user code."""
    ours = runtime_of(task)
    info = ours.execution_info
    return LgRuntime(
        # The store the graph was compiled with, LangGraph's or graphdef's, as it is.
        context=ours.context, store=ours.store,  # type: ignore[arg-type]
        stream_writer=ours.stream_writer,
        heartbeat=ours.heartbeat, previous=ours.previous,
        execution_info=None if info is None else LgExecutionInfo(
            checkpoint_id=info.checkpoint_id, checkpoint_ns=info.checkpoint_ns,
            task_id=info.task_id, thread_id=info.thread_id, run_id=info.run_id,
            node_attempt=info.node_attempt,
            node_first_attempt_time=info.node_first_attempt_time,
        ),
    )


def _config(task: TaskRuntime) -> RunnableConfig:
    """The task's config (what `config` parameters and `get_config()` give user code), with
    the entries LangGraph's in-node functions read."""
    conf = {
        **(task.config.get("configurable") or {}),
        CONFIG_KEY_CHECKPOINT_NS: task.task.checkpoint_ns,
        CONFIG_KEY_SCRATCHPAD: Scratchpad(task),
        CONFIG_KEY_SEND: task.send,
        CONFIG_KEY_RUNTIME: _runtime(task),
    }
    if task.call is not None:
        conf[CONFIG_KEY_CALL] = functools.partial(_call, task.call)
    return cast(RunnableConfig, {**task.config, "configurable": conf,
                                 "callbacks": task.config.get("callbacks")})


def _interrupt(task: TaskRuntime, raised: LgGraphInterrupt) -> GraphInterrupt:
    """LangGraph's interrupt as graphdef's, with the id graphdef gives an interrupt of this
    task waiting for its next answer."""
    ident = interrupt_id(task.task.checkpoint_ns, len(task.resume))
    return GraphInterrupt([Interrupt(value=item.value, id=ident) for item in raised.args[0]])


def run(call: Callable[[RunnableConfig], Any]) -> Any:
    """Call user code (`call(config)`) in the running graphdef task as LangGraph would: under
    the task's LangGraph config; its result with graphdef's control values."""
    task = current_runtime()
    config = _config(task)
    token = var_child_runnable_config.set(config)
    try:
        return to_graphdef(call(config))
    except LgGraphInterrupt as raised:
        raise _interrupt(task, raised) from None
    finally:
        var_child_runnable_config.reset(token)


async def arun(call: Callable[[RunnableConfig], Awaitable[Any]]) -> Any:
    """`run` for async user code."""
    task = current_runtime()
    config = _config(task)
    token = var_child_runnable_config.set(config)
    try:
        return to_graphdef(await call(config))
    except LgGraphInterrupt as raised:
        raise _interrupt(task, raised) from None
    finally:
        var_child_runnable_config.reset(token)


def named_after(function: Callable[..., Any], original: Any) -> Callable[..., Any]:
    """`function` named as `original`: graphdef files a node's or task's cached results
    under its module and qualified name. Not `functools.wraps`: graphdef reads a function's
    signature (through `__wrapped__`) to decide what to pass it, and must see this one's."""
    function.__name__ = getattr(original, "__name__", type(original).__name__)
    function.__qualname__ = getattr(original, "__qualname__", type(original).__qualname__)
    function.__module__ = getattr(original, "__module__", None) or function.__module__
    return function


class TaskCall:
    """A LangGraph `@task` function as graphdef's loop runs one (`graphdef.loop.TaskCall`):
    its name and policies, and `func`, which calls it as LangGraph does (its arguments,
    plus what it asks for by name) in the call's own graphdef task."""

    def __init__(self, func: Callable[..., Any], retry_policy: Any, cache: Any) -> None:
        self.name: str = getattr(func, "__name__", type(func).__name__)
        self.retry_policy = retry_policies(retry_policy)
        self.cache_policy = cache_policy(cache)
        if is_async_callable(func):
            runnable = RunnableCallable(None, func, name=self.name, trace=False, recurse=False,
                                        explode_args=True)

            async def acall(*args: Any, **kwargs: Any) -> Any:
                return await arun(lambda config: runnable.ainvoke((args, kwargs), config))

            self.func = named_after(acall, func)
        else:
            runnable = RunnableCallable(func, name=self.name, trace=False, recurse=False,
                                        explode_args=True)

            def call(*args: Any, **kwargs: Any) -> Any:
                return run(lambda config: runnable.invoke((args, kwargs), config))

            self.func = named_after(call, func)


def _call(caller: Callable[..., Any], func: Callable[..., Any], arguments: tuple[Any, Any], *,
          retry_policy: Any = None, cache_policy: Any = None, callbacks: Any = None,
          timeout: Any = None) -> Future[Any]:
    """What a LangGraph `@task` call inside a node or entrypoint reaches (LangGraph's call
    function, `caller` the graphdef task's): a graphdef task call, memoized like graphdef's
    own. `callbacks` are the config's, which graphdef's task already runs under."""
    if timeout is not None:
        raise NotImplementedFeatureError(
            f"@task {getattr(func, '__name__', func)!r}: timeout is not implemented")
    args, kwargs = arguments
    return cast(Future[Any], caller(TaskCall(func, retry_policy, cache_policy), args, kwargs))
