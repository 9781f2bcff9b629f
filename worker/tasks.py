"""The node tasks: run tasks of a superstep, and advance the run after the last one.

The worker that completes a superstep's barrier advances the run itself (under the run's
lease), rather than sending a message to the scheduler queue and waiting for it: one broker
round trip less per superstep. When the next superstep is a single task bound for the queue
this message came from, that task runs here too (`CELERYGRAPH_CHAIN_IN_PLACE`). So does a
run's first task when the run's start came to this queue (`start_and_run`).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Celery

from graphdef.checkpoint.base import CheckpointTuple
from scheduler import registry, tracing
from scheduler.celery_app import CeleryGraphApp
from scheduler.driver import KeptTask, Stopped, with_run_lease
from scheduler.leases import new_owner
from scheduler.protocol import (
    NODE_TASK,
    NODES_TASK,
    START_AND_RUN_TASK,
    Advance,
    NodeRef,
    RunNodes,
    Sender,
    StartRun,
    TaskPath,
    parse_node_refs,
)
from scheduler.resources import Resources, resources
from scheduler.store import STEP_COMPLETED_AND_LEASED, StepView
from worker.batch_leases import BatchLeases, TakenLease
from worker.node import InPlaceEnd, batch_reads, execute_node, execute_planned
from worker.rows import NodeRows

log = logging.getLogger(__name__)

# How long a node worker waits for the run's lease before leaving the advance to the
# scheduler queue: a start or another advance holds it for milliseconds at most.
ADVANCE_LEASE_WAIT = 0.5


# A store outage must not turn into an acknowledged, lost task: retry until Redis answers.
RETRY_ON_STORE_ERRORS: dict[str, Any] = {
    "autoretry_for": (redis.RedisError,), "retry_backoff": 0.5, "retry_backoff_max": 5,
    "retry_jitter": False, "max_retries": None,
}


def register_node_tasks(app: CeleryGraphApp) -> None:
    """Put `run_node` and `run_nodes` on `app`, with the settings `app` carries."""

    @app.task(name=NODE_TASK, bind=True, shared=False, **RETRY_ON_STORE_ERRORS)
    def run_node(self: Any, thread_id: str, run_id: str, checkpoint_id: str, task_id: str,
                 path: TaskPath = None) -> None:
        message = RunNodes(thread_id, run_id, checkpoint_id, (NodeRef(task_id, path),))
        rows = NodeRows(app, self.request, thread_id, run_id, own_task_id=task_id)
        try:
            with tracing.from_message(self.request):
                run_message(resources(app.settings), app, message, _run_here(self, app), rows)
        finally:
            rows.flush()
        rows.raise_own_failure()

    @app.task(name=NODES_TASK, bind=True, shared=False, **RETRY_ON_STORE_ERRORS)
    def run_nodes(self: Any, thread_id: str, run_id: str, checkpoint_id: str,
                  tasks: Any) -> None:
        refs = parse_node_refs(tasks)
        if not refs:
            log.warning("ignoring %s for run %r: malformed task list", NODES_TASK, run_id)
            return
        message = RunNodes(thread_id, run_id, checkpoint_id, refs)
        rows = NodeRows(app, self.request, thread_id, run_id, own_task_id=None)
        try:
            with tracing.from_message(self.request):
                run_message(resources(app.settings), app, message, _run_here(self, app),
                            rows)
        finally:
            rows.flush()

    @app.task(name=START_AND_RUN_TASK, bind=True, shared=False, **RETRY_ON_STORE_ERRORS)
    def start_and_run(self: Any, thread_id: str, run_id: str) -> None:
        rows = NodeRows(app, self.request, thread_id, run_id, own_task_id=None)
        try:
            with tracing.from_message(self.request):
                start_in_place(resources(app.settings), app, thread_id, run_id,
                               _run_here(self, app), rows)
        finally:
            rows.flush()


def start_in_place(res: Resources, app: Celery, thread_id: str, run_id: str,
                   run_here: str | None, rows: NodeRows | None = None) -> None:
    """Start a run whose start came to this node queue (`runs.start_queue`), and run its
    first task here if it is a lone task bound for this queue, as an advance's kept task.

    The run's record is read first: a message for no run writes nothing, and a process that
    does not load the run's graph passes the start on to the scheduler queue. One that
    finds the run's lease held leaves the run to its holder: a start, or the sweeper's look,
    which sends the start again if that holder dies (`Sweeper.look`). Starting is safe to
    repeat: a start of a started run does nothing (`RunStore.claim_thread_to_start`).
    """
    res.load_graphs()
    run = res.store.run(thread_id, run_id)
    if run is None:
        log.warning("ignoring %s: thread %r has no run %r", START_AND_RUN_TASK, thread_id,
                    run_id)
        return
    if run.graph not in registry.known():
        log.info("run %s: graph %r is not loaded here; the scheduler starts it", run_id,
                 run.graph)
        Sender(app, res.settings.scheduler_queue).start(StartRun(thread_id, run_id))
        return
    outcome = with_run_lease(res, app, thread_id, run_id,
                             lambda d: d.start(thread_id, run_id), run_here=run_here, wait=0)
    kept = outcome.kept
    if kept is not None:
        run_and_advance(res, app, thread_id, run_id, kept.checkpoint_id,
                        NodeRef(kept.task_id, kept.path), run_here, rows=rows, kept=kept)


def run_message(res: Resources, app: Celery, message: RunNodes,
                run_here: str | None, rows: NodeRows | None = None) -> None:
    """Run a message's tasks one after the other; each keeps its own lease and memo, so a
    crash costs only the task it interrupts. A batch reads its step and checkpoint once,
    and takes its tasks' leases at once (`worker.batch_leases`), giving back those of the
    tasks it did not get to. `rows`: the Flower rows of the tasks that are not the
    message's own."""
    res.load_graphs()
    thread_id, run_id, checkpoint_id = message.thread_id, message.run_id, message.checkpoint_id
    if len(message.tasks) == 1:
        run_and_advance(res, app, thread_id, run_id, checkpoint_id, message.tasks[0],
                        run_here, rows=rows)
        return
    task_ids = [t.task_id for t in message.tasks]
    view, prefetched = batch_reads(res, thread_id, run_id, checkpoint_id, task_ids)
    leases = BatchLeases(res, thread_id, run_id, checkpoint_id, task_ids, view)
    try:
        for ref in message.tasks:
            run_and_advance(res, app, thread_id, run_id, checkpoint_id, ref, run_here, view,
                            prefetched, rows, leases.take(ref.task_id))
    finally:
        leases.drop_rest()


def _run_here(task: Any, app: CeleryGraphApp) -> str | None:
    """The queue this message came from, if lone next tasks bound for it may run here."""
    queue = (task.request.delivery_info or {}).get("routing_key")
    return queue if app.settings.chain_in_place else None


def run_and_advance(res: Resources, app: Celery, thread_id: str, run_id: str,
                    checkpoint_id: str, ref: NodeRef, run_here: str | None,
                    view: StepView | None = None,
                    prefetched: CheckpointTuple | None = None,
                    rows: NodeRows | None = None, taken: TakenLease | None = None,
                    kept: KeptTask | None = None) -> None:
    """Run the task; if it completed its superstep, advance the run, and go on with the next
    step's task while the advance hands one back. `taken`: the task's lease, if its batch
    took it (`worker.batch_leases`); `kept`: the task, as a start here handed it back."""
    task_id, path = ref.task_id, ref.path
    while True:
        finished: int | None = None
        advance_as = new_owner()  # the run's lease, if counting the task takes it
        lease = None if kept is None else kept.lease
        beat = None
        if taken is not None:
            lease, beat, taken = (taken.owner, taken.grant), taken.beat, None
        if kept is not None and kept.loop is not None and kept.task is not None:
            row = None if rows is None else rows.row(kept.shadow, checkpoint_id, kept.task)
            in_place = InPlaceEnd(res, app, kept, run_here) if kept.advances_in_place else None
            assert kept.saver is not None  # a warm loop comes with its saver
            finished = execute_planned(res, thread_id, run_id, checkpoint_id, kept.task,
                                       kept.loop, kept.saver, row, graph=kept.graph,
                                       trace_parent=kept.trace_parent,
                                       publisher=kept.publisher, lease=lease,
                                       advance_as=advance_as, in_place=in_place)
            if finished is None:  # taken before: its own loop is stale, its lease given back
                kept, lease = None, None
            elif in_place is not None and in_place.next is not None:
                kept = in_place.next
                checkpoint_id, task_id, path = kept.checkpoint_id, kept.task_id, kept.path
                continue
            elif in_place is not None and in_place.loop_spent:
                kept = None  # the long way from here, on a fresh loop
        if finished is None:
            finished = execute_node(res, thread_id, run_id, checkpoint_id, task_id, path, view,
                                    prefetched, rows,
                                    kept_by=kept.trace_parent if kept is not None else None,
                                    lease=lease, advance_as=advance_as, beat=beat)
        view = prefetched = None  # the batch's reads are of its own step only
        if not finished:
            return
        leased = advance_as if finished == STEP_COMPLETED_AND_LEASED else None
        kept = _advance(res, app, thread_id, run_id, checkpoint_id, run_here, kept, leased)
        if kept is None:
            return
        checkpoint_id, task_id, path = kept.checkpoint_id, kept.task_id, kept.path


def _advance(res: Resources, app: Celery, thread_id: str, run_id: str,
             checkpoint_id: str, run_here: str | None, kept: KeptTask | None,
             leased: str | None) -> KeptTask | None:
    """Advance here; the next task if it is ours to run, None when nothing is left to do.
    `leased`: the owner of the run's lease, when counting the task took it."""
    outcome = with_run_lease(
        res, app, thread_id, run_id,
        lambda d: d.advance(thread_id, run_id, checkpoint_id, kept=kept),
        run_here=run_here, wait=ADVANCE_LEASE_WAIT, owner=leased,
    )
    if outcome.status == Stopped.BUSY:
        Sender(app, res.settings.scheduler_queue).advance(
            Advance(thread_id, run_id, checkpoint_id), deduplicate=True)
        return None
    return outcome.kept
