"""Running one superstep's tasks in this process: threads, retries, and their writes."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from graphdef.algo import Task, TaskContext
from graphdef.errors import GraphInterrupt, ParentCommand
from graphdef.retry import run_with_retry
from graphdef.runtime import TaskRuntime, bind_runtime, reset_runtime
from graphdef.types import Command


def execute_task(task: Task, runtime: TaskRuntime, channels: Any) -> None:
    """Run a task's node under its retry policy and collect its writes into `task.writes`."""

    def attempt() -> None:
        token = bind_runtime(runtime)
        try:
            try:
                output = task.node.bound(task.input, runtime.config)
            except ParentCommand as exc:
                if task.node.subgraph is None:
                    raise
                cmd = exc.command
                output = Command(update=cmd.update, goto=cmd.goto, resume=cmd.resume)
            context = TaskContext(task, channels)
            for writer in task.node.writers:
                task.writes.extend(writer(output, context))
        finally:
            reset_runtime(token)

    def clear() -> None:
        runtime.attempt += 1
        task.writes.clear()
        runtime.interrupt_counter = type(runtime.interrupt_counter)()
        runtime.call_counter = type(runtime.call_counter)()

    run_with_retry(attempt, task.node.retry_policy, before_retry=clear)


def run_step(
    tasks: Sequence[Task],
    make_runtime: Callable[[Task], TaskRuntime],
    on_finished: Callable[[Task, BaseException | None], None],
    channels: Any,
) -> tuple[list[BaseException], list[Any]]:
    """Run every task to completion; a failure does not cut its siblings short.

    Returns the failures and the interrupts raised, in task order, for the loop to act on.
    """
    outcomes: dict[str, BaseException | None] = {}

    def run_one(task: Task) -> None:
        runtime = make_runtime(task)
        outcome: BaseException | None = None
        try:
            execute_task(task, runtime, channels)
        except BaseException as exc:  # noqa: BLE001 - every outcome is recorded, then re-raised
            outcome = exc
        try:
            on_finished(task, outcome)
        except Exception as exc:  # its writes could not be saved (e.g. not serializable)
            outcome = exc
            on_finished(task, exc)
        outcomes[task.id] = outcome

    if len(tasks) == 1:
        run_one(tasks[0])
    else:
        with ThreadPoolExecutor(max_workers=min(32, len(tasks))) as pool:
            futures = [
                pool.submit(contextvars.copy_context().run, run_one, task) for task in tasks
            ]
            for fut in futures:
                fut.result()
    errors: list[BaseException] = []
    interrupts: list[Any] = []
    for task in tasks:
        exc = outcomes.get(task.id)
        if isinstance(exc, GraphInterrupt):
            interrupts.extend(exc.interrupts)
        elif exc is not None:
            errors.append(exc)
    return errors, interrupts
