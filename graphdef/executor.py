"""Running one superstep's tasks in this process: threads or an event loop, retries, and
their writes."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from graphdef.algo import Task, TaskContext
from graphdef.errors import GraphInterrupt, ParentCommand
from graphdef.retry import arun_with_retry, run_with_retry
from graphdef.runtime import TaskRuntime, bind_runtime, reset_runtime
from graphdef.stream_messages import bind_langchain_config, reset_langchain_config
from graphdef.types import Command


def step_threads(max_concurrency: int | None) -> int:
    """How many sync tasks of a step run at once: the config's `max_concurrency`, else what
    LangGraph's executor takes by default (Python's thread pool default). More threads than
    that only contend for the GIL: a wide fan-out of short nodes ran slower on 32."""
    return max_concurrency or min(32, (os.cpu_count() or 1) + 4)


def _subgraph_command(task: Task, exc: ParentCommand) -> Command:
    """A subgraph node's `Command(graph=PARENT)` is the parent node's own output."""
    if task.node.subgraph is None:
        raise exc
    cmd = exc.command
    return Command(update=cmd.update, goto=cmd.goto, resume=cmd.resume)


def _clearer(task: Task, runtime: TaskRuntime) -> Callable[[], None]:
    def clear() -> None:
        runtime.attempt += 1
        task.writes.clear()
        runtime.interrupt_counter = type(runtime.interrupt_counter)()
        runtime.call_counter = type(runtime.call_counter)()

    return clear


def execute_task(task: Task, runtime: TaskRuntime, channels: Any) -> None:
    """Run a task's node under its retry policy and collect its writes into `task.writes`."""
    messages = runtime.scope.messages

    def attempt() -> None:
        token = bind_runtime(runtime)
        lc_token = bind_langchain_config(runtime.config)
        try:
            if messages is not None:
                messages.node_started(runtime.config["metadata"], task.input)
            try:
                output = task.node.bound(task.input, runtime.config)
            except ParentCommand as exc:
                output = _subgraph_command(task, exc)
            if messages is not None:
                messages.node_finished(runtime.config["metadata"], output)
            context = TaskContext(task, channels)
            for writer in task.node.writers:
                writes = writer(output, context)
                if inspect.isawaitable(writes):
                    _refuse_async(writes, writer)
                task.writes.extend(writes)
        finally:
            reset_langchain_config(lc_token)
            reset_runtime(token)

    if task.node.retry_policy:
        run_with_retry(attempt, task.node.retry_policy, before_retry=_clearer(task, runtime))
    else:
        attempt()  # nothing to retry: a failure is final, as `run_with_retry` would find


def _refuse_async(awaitable: Any, writer: Any) -> None:
    """A sync run met an async conditional edge: LangGraph's error, as for an async node."""
    if inspect.iscoroutine(awaitable):
        awaitable.close()
    name = getattr(writer, "__name__", "branch")
    raise TypeError(
        f'No synchronous function provided to "{name}".\nEither initialize with a '
        "synchronous function or invoke via the async API (ainvoke, astream, etc.)"
    )


async def aexecute_task(task: Task, runtime: TaskRuntime, channels: Any) -> None:
    """`execute_task` on an event loop: an async node is awaited, a sync one runs in a
    thread (with this task's context), as LangGraph runs them under `ainvoke`."""
    messages = runtime.scope.messages

    async def attempt() -> None:
        token = bind_runtime(runtime)
        lc_token = bind_langchain_config(runtime.config)
        try:
            if messages is not None:
                messages.node_started(runtime.config["metadata"], task.input)
            try:
                if task.node.abound is not None:
                    output = await task.node.abound(task.input, runtime.config)
                else:
                    context = contextvars.copy_context()
                    output = await asyncio.get_running_loop().run_in_executor(
                        None, context.run, task.node.bound, task.input, runtime.config
                    )
            except ParentCommand as exc:
                output = _subgraph_command(task, exc)
            if messages is not None:
                messages.node_finished(runtime.config["metadata"], output)
            writer_context = TaskContext(task, channels)
            for writer in task.node.writers:
                writes: Any = writer(output, writer_context)
                if inspect.isawaitable(writes):
                    writes = await writes
                task.writes.extend(writes)
        finally:
            reset_langchain_config(lc_token)
            reset_runtime(token)

    if task.node.retry_policy:
        await arun_with_retry(attempt, task.node.retry_policy,
                              before_retry=_clearer(task, runtime))
    else:
        await attempt()  # nothing to retry: a failure is final, as `run_with_retry` would find


def _outcomes(
    tasks: Sequence[Task], outcomes: dict[str, BaseException | None]
) -> tuple[list[BaseException], list[Any]]:
    errors: list[BaseException] = []
    interrupts: list[Any] = []
    for task in tasks:
        exc = outcomes.get(task.id)
        if isinstance(exc, GraphInterrupt):
            interrupts.extend(exc.interrupts)
        elif exc is not None:
            errors.append(exc)
    return errors, interrupts


def _record(
    task: Task, outcome: BaseException | None,
    on_finished: Callable[[Task, BaseException | None], None],
    outcomes: dict[str, BaseException | None],
) -> None:
    try:
        on_finished(task, outcome)
    except Exception as exc:  # its writes could not be saved (e.g. not serializable)
        outcome = exc
        on_finished(task, exc)
    outcomes[task.id] = outcome


def run_step(
    tasks: Sequence[Task],
    make_runtime: Callable[[Task], TaskRuntime],
    on_finished: Callable[[Task, BaseException | None], None],
    channels: Any,
    threads: StepThreads | None = None,
) -> tuple[list[BaseException], list[Any]]:
    """Run every task to completion; a failure does not cut its siblings short.

    Returns the failures and the interrupts raised, in task order, for the loop to act on.
    `threads`: kept across an in-process run's steps; without them, threads for this step.
    """
    outcomes: dict[str, BaseException | None] = {}

    def run_one(task: Task) -> None:
        runtime = make_runtime(task)
        outcome: BaseException | None = None
        try:
            execute_task(task, runtime, channels)
        except BaseException as exc:  # noqa: BLE001 - every outcome is recorded, then re-raised
            outcome = exc
        _record(task, outcome, on_finished, outcomes)

    if len(tasks) == 1:
        run_one(tasks[0])
    elif threads is not None:
        threads.run(run_one, tasks)
    else:
        # A worker's batch of one message: up to 32 threads, as many as a Celery worker's
        # thread pool commonly has, for nodes that wait on the network.
        step_threads = StepThreads(min(32, len(tasks)))
        try:
            step_threads.run(run_one, tasks)
        finally:
            step_threads.close()
    return _outcomes(tasks, outcomes)


class StepThreads:
    """At most `width` threads running a step's sync tasks, each task in its own copy of the
    caller's context.

    Each thread takes the step's next task when it finishes one, so a thread wakes once a
    step, not once a task: with a future and a wake-up per task, a wide fan-out of short
    nodes spent more on handing tasks over than on running them, and more still while
    other processes shared the cores."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._pool = ThreadPoolExecutor(width, "graphdef-node")

    def run(self, run_one: Callable[[Task], None], tasks: Sequence[Task]) -> None:
        caller = contextvars.copy_context()
        left = deque(tasks)

        def take_tasks() -> None:
            while True:
                try:
                    task = left.popleft()  # atomic: each task is taken once
                except IndexError:
                    return
                caller.copy().run(run_one, task)

        takers = [self._pool.submit(take_tasks) for _ in range(min(self.width, len(tasks)))]
        for taker in takers:
            taker.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


async def arun_step(
    tasks: Sequence[Task],
    make_runtime: Callable[[Task], TaskRuntime],
    on_finished: Callable[[Task, BaseException | None], None],
    channels: Any,
    max_concurrency: int | None = None,
) -> tuple[list[BaseException], list[Any]]:
    """`run_step` on an event loop: the step's tasks run concurrently (at most
    `max_concurrency` at once), each in a context of its own (asyncio tasks copy it), and a
    cancelled step cancels its tasks."""
    outcomes: dict[str, BaseException | None] = {}

    async def run_one(task: Task) -> None:
        runtime = make_runtime(task)
        outcome: BaseException | None = None
        try:
            await aexecute_task(task, runtime, channels)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every outcome is recorded, then re-raised
            outcome = exc
        _record(task, outcome, on_finished, outcomes)

    if len(tasks) == 1:
        await run_one(tasks[0])
    elif max_concurrency is not None and max_concurrency < len(tasks):
        slots = asyncio.Semaphore(max_concurrency)

        async def run_in_slot(task: Task) -> None:
            async with slots:
                await run_one(task)

        await asyncio.gather(*(run_in_slot(task) for task in tasks))
    else:
        await asyncio.gather(*(run_one(task) for task in tasks))
    return _outcomes(tasks, outcomes)

