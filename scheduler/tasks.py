"""The scheduler's Celery tasks, on the `scheduler` queue.

`celerygraph.start_run` is the documented entry point for producers in any language: send
it with JSON keyword arguments `graph`, `input`, `thread_id` (and optionally `config`,
`durability`, `on_busy`, `routes`, `run_id`), or with just `thread_id` and `run_id` for a run that
`scheduler.Client` already stored. `celerygraph.advance` takes the steps a node worker could
not advance itself (another driver held the run) and the sweeper's re-advances.
"""

from __future__ import annotations

from typing import Any

from scheduler.runs import create_run
from worker.app import app
from worker.driver import START_TASK, with_run_lease
from worker.node import ADVANCE_TASK
from worker.resources import resources

__all__ = ["ADVANCE_TASK", "START_TASK", "advance", "start_run"]


@app.task(name=START_TASK)
def start_run(
    thread_id: str,
    run_id: str | None = None,
    graph: str | None = None,
    input: Any = None,
    config: dict[str, Any] | None = None,
    durability: str = "async",
    on_busy: str = "reject",
    routes: dict[str, str] | None = None,
) -> str:
    res = resources()
    res.load_graphs()
    if run_id is None or res.store.run(thread_id, run_id) is None:
        run_id = create_run(res.store, graph=graph or "", run_input=input, thread_id=thread_id,
                            config=config, durability=durability, on_busy=on_busy,
                            run_id=run_id, routes=routes, validate=False)
    outcome = with_run_lease(res, app, thread_id, run_id, lambda d: d.start(thread_id, run_id))
    return outcome.status


@app.task(name=ADVANCE_TASK)
def advance(thread_id: str, run_id: str, checkpoint_id: str) -> str:
    res = resources()
    res.load_graphs()
    outcome = with_run_lease(res, app, thread_id, run_id,
                             lambda d: d.advance(thread_id, run_id, checkpoint_id))
    return outcome.status
