"""The node task: run one planned task of a superstep and save its writes as a memo.

The message carries ids only. The worker re-plans the superstep from the stored
checkpoint (the same pure algorithm the scheduler used), finds its task by id, and runs
it unless a memo already exists. The Celery task around it is in `worker.tasks`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from celery import current_task

from graphdef import algo
from graphdef.checkpoint.base import CheckpointTuple, Config, Target, checkpoint_config
from graphdef.checkpoint.redis import RedisSaver
from graphdef.constants import NULL_TASK_ID
from graphdef.loop import RunLoop
from scheduler import metrics, registry, tracing
from scheduler.deferral import MemoDeferringSaver
from scheduler.driver import Driver, KeptTask, Outcome
from scheduler.errors import StaleTaskError
from scheduler.faults import Faults
from scheduler.leases import Heartbeat, new_owner, run_lease
from scheduler.protocol import shadow_name
from scheduler.records import RunRecord
from scheduler.resources import Resources
from scheduler.store import FIRST_START, STEP_ADVANCED, LeaseWanted, StepView, TaskMemo
from scheduler.streams import Publisher
from worker.rows import NodeResult, NodeRows, RowRunner
from worker.step_cache import StepReads, step_cache

log = logging.getLogger(__name__)


class OwnWritesSaver(MemoDeferringSaver):
    """The saver as one task sees it: the checkpoint with only its own and the null task's
    pending writes, so a task of a wide superstep does not fetch its siblings' memos. Its
    memo is held back, to be saved by the script that counts it (`RunStore.finish_task`).

    `prefetched`: the step's checkpoint as its batch (or a lone task with its step view)
    read it once, for a task that never started before (so it has no writes of its own to
    find); it answers for that checkpoint only, not for a subgraph's namespace that the
    task's nodes load through the same saver.
    """

    def __init__(self, saver: RedisSaver, task_id: str,
                 prefetched: CheckpointTuple | None = None) -> None:
        super().__init__(saver)
        self.task_ids = (task_id, NULL_TASK_ID)
        self.prefetched = prefetched
        self.defer(task_id)

    def get_tuple(self, config: Config) -> CheckpointTuple | None:
        if self.prefetched is not None and (
                Target.of(config) == Target.of(self.prefetched.config)):
            return _own_copy(self.prefetched)
        return self.saver.get_tuple_for_tasks(config, self.task_ids)


@dataclass
class TaskOutput:
    """Where a task's held-back memo (its saver's) and a streaming run's closing chunks of it
    (its publisher's, once it has one) wait for the script that counts the task."""

    saver: MemoDeferringSaver
    publisher: Publisher | None = None

    def take(self, ttl_ms: int) -> TaskMemo:
        chunks = self.publisher.take_held("task:") if self.publisher is not None else []
        return TaskMemo(self.saver.take_deferred_memo(), chunks, ttl_ms)


def batch_reads(res: Resources, thread_id: str, run_id: str, checkpoint_id: str,
                task_ids: list[str]) -> tuple[StepView, CheckpointTuple | None]:
    """What a batch of a step's tasks checks and runs on, read once for the batch: the step
    view (the run, the step's context, which of the tasks it was dispatched with) and the
    step's checkpoint with its null task's writes only. Of a step this process read for an
    earlier message (`worker.step_cache`), only the run's record is read. A task of the
    batch that left writes (a memo, an interrupt, a call's) started before, so it does not
    use the checkpoint (`OwnWritesSaver`)."""
    key = (thread_id, run_id, checkpoint_id)
    step = step_cache.get(key)
    if step is None:
        run, context, dispatched = res.store.run_and_step(thread_id, run_id, checkpoint_id)
        config = checkpoint_config(thread_id, "", checkpoint_id)
        step = StepReads(context or {}, dispatched,
                         res.saver.get_tuple_for_tasks(config, [NULL_TASK_ID])
                         if context is not None else None)
        if context is not None and step.checkpoint is not None:
            step_cache.put(key, step)
    else:
        run = res.store.run(thread_id, run_id)
    view = StepView(run, None, step.context, step.dispatched.intersection(task_ids))
    return view, step.checkpoint


def view_and_checkpoint(res: Resources, thread_id: str, run_id: str, checkpoint_id: str,
                        task_id: str) -> tuple[StepView, CheckpointTuple | None]:
    """The step view a lone task checks and its checkpoint, in one round trip: the
    checkpoint serves only a task whose lease is a first start (`OwnWritesSaver`), and is
    None, the task then loading its own, when the read finds writes other than the null
    task's or fails (a server that lacks the load script yet, a corrupt checkpoint: the
    task's own load reports what is wrong)."""
    config = checkpoint_config(thread_id, "", checkpoint_id)
    with res.store.r.pipeline(transaction=False) as pipe:
        view_of = res.store.queue_step_view(pipe, thread_id, run_id, checkpoint_id, [task_id],
                                            with_active=False)
        checkpoint_of = res.saver.queue_load_for_tasks(pipe, config, [task_id, NULL_TASK_ID])
        *replies, found = pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    view = view_of(replies)
    if isinstance(found, Exception):
        return view, None
    try:
        saved = checkpoint_of(found)
    except Exception:  # noqa: BLE001 - the task's own load raises it where it is handled
        return view, None
    if saved is None or any(w[0] != NULL_TASK_ID for w in saved.pending_writes):
        return view, None
    return view, saved


def _own_copy(saved: CheckpointTuple) -> CheckpointTuple:
    """What a loop may change (the checkpoint's maps, its lists of values) copied, so that
    the tasks of one batch cannot see each other's edits."""
    cp = saved.checkpoint
    checkpoint = cp.copy()
    checkpoint["channel_values"] = {k: list(v) if type(v) is list else v
                                    for k, v in cp["channel_values"].items()}
    checkpoint["channel_versions"] = dict(cp["channel_versions"])
    # A node's entry is replaced, never changed in place (`algo.apply_writes`).
    checkpoint["versions_seen"] = dict(cp["versions_seen"])
    return dataclasses.replace(saved, checkpoint=checkpoint, metadata=saved.metadata.copy(),
                               pending_writes=list(saved.pending_writes))


def _worker_name() -> str:
    """The Celery node name running this task (`worker1@host`, as Flower shows it), else the
    host name: a run's events then say where each of its tasks ran."""
    request = getattr(current_task, "request", None)
    return getattr(request, "hostname", None) or socket.gethostname()


def execute_node(res: Resources, thread_id: str, run_id: str, checkpoint_id: str,
                 task_id: str, path: list[Any] | None = None,
                 view: StepView | None = None,
                 prefetched: CheckpointTuple | None = None,
                 rows: NodeRows | None = None, kept_by: str | None = None,
                 lease: tuple[str, int] | None = None, advance_as: str | None = None,
                 beat: Heartbeat | None = None) -> int:
    """Run the task unless finished elsewhere; STEP_COMPLETED when this call completed the
    superstep, STEP_COMPLETED_AND_LEASED when counting it also took the run's lease for
    `advance_as` (the caller's advance then need not take it); else 0 (falsy).

    `view` and `prefetched`: the step and its checkpoint as read once for a whole batch of
    its tasks (`run_nodes`). Neither decides alone whether a task runs: the lease refuses a
    task counted done, and a task taken before (which may have left a memo since the batch
    read) loads its own writes. `rows`: the Flower rows of the message running it.
    `kept_by`: the trace context of the advance that kept the task to run here; `lease`:
    the task's lease owner and grant, when that advance (or the task's batch,
    `worker.batch_leases`) took it; `beat`: what keeps a lease its batch took, since then.
    """
    if view is None:
        view, prefetched = view_and_checkpoint(res, thread_id, run_id, checkpoint_id, task_id)
    run = view.run
    if run is None:
        log.warning("ignoring node task %s: thread %r has no run %r", task_id, thread_id, run_id)
        return 0
    if run.status.terminal:
        return 0
    if task_id not in view.dispatched:
        log.warning("ignoring node task %s: not dispatched for step %s of run %r",
                    task_id, checkpoint_id, run_id)
        return 0
    owner, grant = lease or _take_lease(res, thread_id, run_id, checkpoint_id, task_id)
    if not grant:
        log.info("task %s ran or is running elsewhere; leaving it", task_id)
        return 0
    saver = OwnWritesSaver(res.saver, task_id, prefetched if grant == FIRST_START else None)
    output = TaskOutput(saver)
    span = tracing.node_span(run.graph, thread_id, run_id, checkpoint_id, task_id,
                             run_traceparent=run.traceparent, kept_by=kept_by)
    return _run_leased(res, thread_id, run_id, checkpoint_id, task_id, owner,
                       lambda: _run_task(res, run, checkpoint_id, task_id, path,
                                         view.context, output, rows,
                                         restart=grant != FIRST_START, attempt=owner),
                       run.graph, span, advance_as, output, beat=beat)


def _take_lease(res: Resources, thread_id: str, run_id: str, checkpoint_id: str,
                task_id: str) -> tuple[str, int]:
    """The task's lease for a new owner, unless it is held or the step counts it done: the
    owner and `acquire_lease`'s grant."""
    owner = new_owner()
    return owner, res.store.acquire_lease(thread_id, task_id, owner, res.settings.lease_seconds,
                                          unless_done=(run_id, checkpoint_id), run_id=run_id)


def _run_leased(res: Resources, thread_id: str, run_id: str, checkpoint_id: str,
                task_id: str, owner: str, run: Callable[[], tuple[str, str]], graph: str,
                span: AbstractContextManager[tracing.NodeSpan],
                advance_as: str | None, output: TaskOutput,
                end_step: Callable[[str, str], int | None] | None = None,
                beat: Heartbeat | None = None) -> int:
    """Run a task whose lease `owner` holds, kept by this process's liveness and under its
    trace `span`, then count it (and hand the lease back) in one step; `run` returns its node
    and outcome. If counting it fails, the lease is given back rather than left to lapse:
    a lease the liveness adopted would not lapse while this process lives. `advance_as`:
    the owner for the run's lease, taken as the task is counted if it completes the step.
    `output`: what the task held back, saved by the count. `end_step`: tried first with
    the node and outcome (`InPlaceEnd`); what it returns, if not None, is the result, the
    lease handed back by it. `beat`: what keeps the lease already, if it was taken before
    its task's turn (a batch's, `worker.batch_leases`)."""
    beat = beat or Heartbeat(res.store, thread_id, run_id, task_id, owner,
                             res.settings.lease_seconds, hand_over=True)
    with beat, span as traced:
        began = time.perf_counter()
        node, outcome = run()
        metrics.node_ran(graph, node, outcome, time.perf_counter() - began)
        traced.ran(node, outcome)
    try:
        finished = None if end_step is None else end_step(node, outcome)
        if finished is None:
            wanted = None if advance_as is None else LeaseWanted(
                run_lease(run_id), advance_as, res.settings.lease_seconds)
            # A task that finished for good with a lease never adopted leaves it to lapse
            # (within a lease lifetime): its count stops any second run, and releasing it
            # would cost two commands. One that paused or failed releases it, for a resume
            # or a retry may take the same task again at once.
            release = beat.listed or outcome != "finished"
            finished = res.store.finish_task(thread_id, run_id, checkpoint_id, task_id,
                                             lease_owner=owner if release else None,
                                             run_lease=wanted,
                                             memo=output.take(res.saver.ttl_ms), node=node,
                                             outcome=outcome, worker=_worker_name())
            res.settings.faults.maybe_crash("memo_saved")
    except BaseException:
        with contextlib.suppress(redis.RedisError):
            beat.give_back()
        raise
    beat.handed_over()
    return finished


def _run_task(res: Resources, run: RunRecord, checkpoint_id: str, task_id: str,
              path: list[Any] | None, context: dict[str, Any],
              output: TaskOutput, rows: NodeRows | None, *,
              restart: bool, attempt: str) -> tuple[str, str]:
    """Run the task; returns its node and outcome: finished, interrupted, failed or skipped.
    `attempt`: this run of the task (its lease owner), which tags the chunks it streams.
    Its memo and closing chunks are held back in `output`, for the count to save."""
    graph = registry.resolve(run.graph)
    loop = RunLoop(
        graph, None, run.config_at(None),
        checkpointer=output.saver,
        durability="sync", interrupt_before=(), interrupt_after=(),
        stream_modes=run.stream_modes, stream_subgraphs=run.stream_subgraphs,
        resuming=bool(context.get("resuming")), resume_map=context.get("resume_map"),
        context=run.run_context(),
    )
    publisher = None
    if run.stream_modes:
        publisher = output.publisher = Publisher(
            res.store.chunk_stream(run.thread_id, run.run_id), loop.drain_chunks)
        publisher.hold()
        loop.listen(publisher.wake)
    loop.load(checkpoint_id)
    loop.apply_null_writes()
    if run.stop is not None:
        # The run's step limit, which nodes see as the steps left (`RemainingSteps`); a loop
        # loaded at a later checkpoint would count the recursion limit from there.
        loop.set_stop(run.stop)
    task = loop.plan_task(task_id, path)
    if task is None:
        raise StaleTaskError(f"checkpoint {checkpoint_id} does not plan task {task_id}")
    status = loop.task_status(task_id)
    if status is not None and (status.finished or (
            status.interrupts and not context.get("resuming"))):
        # It ran already: its process died after saving its result and before counting
        # it. Outside a resume, a saved interrupt is this dispatch's own: the task paused.
        # Either way it does not run again; what it streamed on saving is streamed again,
        # once (`scheduler.streams`).
        with streaming(publisher, loop, checkpoint_id, task_id, attempt):
            if publisher is not None:
                publisher.saved(task_id)
                loop.replay_task_chunks(task, status)
        return task.name, "skipped" if status.finished else "interrupted"
    if restart and publisher is not None:
        publisher.stream.abandon(task_id, attempt)
    if not loop.paused_before(task_id, history=res.saver):
        loop.drop_null_resume()
    row = None if rows is None else rows.row(shadow_name(run.graph, task.name),
                                             checkpoint_id, task, restart=restart)
    return task.name, run_on(loop, task, res.settings.faults, row,
                             streaming_then_closed(publisher, loop, checkpoint_id, task_id,
                                                   attempt))


@contextmanager
def streaming(publisher: Publisher | None, loop: RunLoop, checkpoint_id: str, task_id: str,
              attempt: str) -> Iterator[None]:
    """Stream what the task's loop emits while it runs, when its run streams."""
    if publisher is None:
        yield
        return
    loop.save_listener = publisher
    try:
        with publisher.streaming_task(task_id, attempt, f"task:{checkpoint_id}:{task_id}"):
            yield
    finally:
        loop.save_listener = None


@contextmanager
def streaming_then_closed(publisher: Publisher | None, loop: RunLoop, checkpoint_id: str,
                          task_id: str, attempt: str) -> Iterator[None]:
    """`streaming` a task whose loop ends with it: the loop is closed (waiting for `@task`
    calls still running, which may stream) before the task's closing chunks go out."""
    with streaming(publisher, loop, checkpoint_id, task_id, attempt):
        try:
            yield
        finally:
            loop.close(None)


def run_on(loop: RunLoop, task: algo.Task, faults: Faults, row: RowRunner | None = None,
           live: AbstractContextManager[None] | None = None) -> str:
    """Run a planned task on its loop, saving its memo, under its Flower `row` if it has
    one; its outcome: finished, interrupted or failed. `live`: its `streaming`, which ends
    (publishing the task's closing chunks) before the row's outcome event is sent: a
    producer waiting on the chunk does not wait on a broker publish for Flower too."""
    def node() -> NodeResult:
        faults.maybe_crash("node_started")
        with live or contextlib.nullcontext():
            errors, interrupts = loop.run_planned(
                [task], before_save=lambda: faults.maybe_crash("node_returned"),
                async_nodes=True)
        outcome = "failed" if errors else "interrupted" if interrupts else "finished"
        return outcome, errors[0] if errors else None

    return node()[0] if row is None else row(node)


def execute_planned(res: Resources, thread_id: str, run_id: str, checkpoint_id: str,
                    task: algo.Task, loop: RunLoop, saver: MemoDeferringSaver,
                    row: RowRunner | None = None, *, graph: str, trace_parent: str | None,
                    publisher: Publisher | None = None,
                    lease: tuple[str, int] | None = None,
                    advance_as: str | None = None,
                    in_place: InPlaceEnd | None = None) -> int | None:
    """Run a task that this process's advance just planned and kept (`KeptTask`), on the
    advance's own loop (writing through `saver`): no reload of what it holds in memory. As
    `execute_node` returns; None when another worker took the task meanwhile (this one
    stalled past the lease): what that one left, a memo perhaps, is only in the store, so
    run it with `execute_node`.
    `row`: its Flower row; `trace_parent`: the trace context of the advance that kept it;
    `publisher`: where the loop streams, when the run streams. `lease`: the task's lease
    owner and grant, when the advance took it as it opened the step. `in_place`: ends the
    task's step in one script if it can (STEP_ADVANCED, its next task in `in_place.next`)."""
    store = res.store
    owner, grant = lease or _take_lease(res, thread_id, run_id, checkpoint_id, task.id)
    if not grant:
        log.info("task %s ran or is running elsewhere; leaving it", task.id)
        return 0
    if grant != FIRST_START:
        store.release_lease(thread_id, task.id, owner)
        loop.close(None)
        return None

    def run() -> tuple[str, str]:
        try:
            return task.name, run_on(loop, task, res.settings.faults, row,
                                     streaming(publisher, loop, checkpoint_id, task.id, owner))
        except BaseException:
            loop.close(None)
            raise

    span = tracing.node_span(graph, thread_id, run_id, checkpoint_id, task.id,
                             run_traceparent=None, kept_by=trace_parent)
    saver.defer(task.id)
    if publisher is not None:
        publisher.hold()
    end_step = None
    if in_place is not None:
        in_place.owner = owner
        end_step = in_place.end
    output = TaskOutput(saver, publisher)
    return _run_leased(res, thread_id, run_id, checkpoint_id, task.id, owner, run, graph, span,
                       advance_as, output, end_step)


# What `InPlaceEnd.end` returns when the task's script ended its run: nothing follows.
RUN_ENDED = 0


class InPlaceEnd:
    """Ends the step of a kept task (`KeptTask.advances_in_place`) in one script
    (`Driver.advance_kept`): its memo and the next checkpoint are held back by its saver
    while it runs (and a streaming run's closing and step chunks by its publisher), and go
    with the next step's record when that step is again one task to run here, or with the
    run's end when no step follows (RUN_ENDED). Otherwise
    the task is counted (saving its memo and closing chunks) and its run advanced the long
    way: with a fresh loop (`loop_spent`) if the attempt got as far as changing the kept
    one."""

    def __init__(self, res: Resources, app: Any, kept: KeptTask, run_here: str | None) -> None:
        self.res, self.app, self.kept, self.run_here = res, app, kept, run_here
        self.owner = ""  # the task's lease owner, once it runs
        self.next: KeptTask | None = None
        self.loop_spent = False

    def end(self, node: str, outcome: str) -> int | None:
        kept = self.kept
        assert kept.saver is not None and kept.loop is not None
        if outcome == "finished":
            self.loop_spent = True
            event = {"task_id": kept.task_id, "node": node, "outcome": outcome,
                     "worker": _worker_name()}
            driver = Driver(self.res, self.app, run_here=self.run_here)
            advanced = driver.advance_kept(kept, self.owner, event)
            if advanced is not None:
                self.res.settings.faults.maybe_crash("memo_saved")
                if isinstance(advanced, Outcome):
                    return RUN_ENDED
                self.next = advanced
                return STEP_ADVANCED
        if self.loop_spent:
            kept.loop.close(None)
        return None  # counted the long way, saving what the task held back


# A store outage must not turn into an acknowledged, lost task: retry until Redis answers.
