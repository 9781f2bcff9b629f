"""The node task: run one task of a superstep, and advance the run if it was the last.

The worker that completes a superstep's barrier advances the run itself (under the run's
lease), rather than sending a message to the scheduler queue and waiting for it: one broker
round trip less per superstep. When the next superstep is a single task bound for the queue
this message came from, that task runs here too (`CELERYGRAPH_CHAIN_IN_PLACE`).
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from graphdef.checkpoint.base import CheckpointTuple
from graphdef.loop import RunLoop
from worker.app import app
from worker.driver import KeptTask, with_run_lease
from worker.node import (
    ADVANCE_TASK,
    NODE_TASK,
    NODES_TASK,
    execute_node,
    execute_planned,
    prefetch_step,
)
from worker.resources import Resources, resources
from worker.store import StepView

log = logging.getLogger(__name__)

# How long a node worker waits for the run's lease before leaving the advance to the
# scheduler queue: a start or another advance holds it for milliseconds at most.
ADVANCE_LEASE_WAIT = 0.5


# A store outage must not turn into an acknowledged, lost task: retry until Redis answers.
RETRY_ON_STORE_ERRORS: dict[str, Any] = {
    "autoretry_for": (redis.RedisError,), "retry_backoff": 0.5, "retry_backoff_max": 5,
    "retry_jitter": False, "max_retries": None,
}


@app.task(name=NODE_TASK, bind=True, **RETRY_ON_STORE_ERRORS)
def run_node(self: Any, thread_id: str, run_id: str, checkpoint_id: str, task_id: str,
             path: list[Any] | None = None) -> None:
    """`path` ([kind, index or node]) lets the worker plan only its own task."""
    res = resources()
    res.load_graphs()
    _run_and_advance(res, thread_id, run_id, checkpoint_id, task_id, path,
                     _run_here(self, res))


@app.task(name=NODES_TASK, bind=True, **RETRY_ON_STORE_ERRORS)
def run_nodes(self: Any, thread_id: str, run_id: str, checkpoint_id: str,
              tasks: list[list[Any]]) -> None:
    """Several tasks of one superstep, `[[task_id, path], ...]`, one after the other; each
    keeps its own lease and memo, so a crash costs only the task it interrupts."""
    if not isinstance(tasks, list) or not all(
        isinstance(t, list) and len(t) == 2 and isinstance(t[0], str) for t in tasks
    ):
        log.warning("ignoring %s for run %r: malformed task list", NODES_TASK, run_id)
        return
    res = resources()
    res.load_graphs()
    run_here = _run_here(self, res)
    task_ids = [t for t, _ in tasks]
    view = res.store.step_view(thread_id, run_id, checkpoint_id, task_ids)
    prefetched = prefetch_step(res, thread_id, checkpoint_id, task_ids)
    for task_id, path in tasks:
        _run_and_advance(res, thread_id, run_id, checkpoint_id, task_id, path, run_here, view,
                         prefetched)


def _run_here(task: Any, res: Resources) -> str | None:
    """The queue this message came from, if lone next tasks bound for it may run here."""
    queue = (task.request.delivery_info or {}).get("routing_key")
    return queue if res.settings.chain_in_place else None


def _run_and_advance(res: Resources, thread_id: str, run_id: str, checkpoint_id: str,
                     task_id: str, path: list[Any] | None, run_here: str | None,
                     view: StepView | None = None,
                     prefetched: CheckpointTuple | None = None) -> None:
    """Run the task; if it completed its superstep, advance the run, and go on with the next
    step's task while the advance hands one back."""
    kept: KeptTask | None = None
    while True:
        finished = None
        if kept is not None and kept.loop is not None and kept.task is not None:
            finished = execute_planned(res, thread_id, run_id, checkpoint_id, kept.task,
                                       kept.loop)
            if finished is None:  # taken elsewhere meanwhile: its own loop is stale
                kept = None
        if finished is None:
            finished = execute_node(res, thread_id, run_id, checkpoint_id, task_id, path, view,
                                    prefetched)
        view = prefetched = None  # the batch's reads are of its own step only
        if not finished:
            return
        kept = _advance(res, thread_id, run_id, checkpoint_id, run_here,
                        kept.loop if kept is not None else None)
        if kept is None:
            return
        checkpoint_id, task_id, path = kept.checkpoint_id, kept.task_id, kept.path


def _advance(res: Resources, thread_id: str, run_id: str, checkpoint_id: str,
             run_here: str | None, loop: RunLoop | None) -> KeptTask | None:
    """Advance here; the next task if it is ours to run, None when nothing is left to do."""
    outcome = with_run_lease(
        res, app, thread_id, run_id,
        lambda d: d.advance(thread_id, run_id, checkpoint_id, loop=loop),
        run_here=run_here, wait=ADVANCE_LEASE_WAIT,
    )
    if outcome.status == "busy":
        app.send_task(ADVANCE_TASK, args=[thread_id, run_id, checkpoint_id],
                      queue=res.settings.scheduler_queue,
                      task_id=f"advance-{run_id}-{checkpoint_id}")
        return None
    return outcome.detail if isinstance(outcome.detail, KeptTask) else None
