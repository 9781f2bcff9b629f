"""Run lifecycle: start a run, advance it one superstep at a time, dispatch its tasks.

The driver uses the same run loop as the in-process engine (`graphdef.loop.RunLoop`) for
everything but execution: it loads the checkpoint, applies the finished superstep's
memoized writes, writes the next checkpoint, plans the next superstep, and sends its
tasks to workers instead of running them. No process keeps a run in memory between
supersteps; every step here can be repeated after a crash and reaches the same result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from celery import Celery

from graphdef import algo, serde
from graphdef.errors import (
    GraphInterrupt,
    GraphRecursionError,
    NodeError,
    StaleCheckpointError,
    revive_error,
)
from graphdef.loop import RunLoop
from graphdef.pregel import Pregel
from scheduler import metrics, registry, tracing
from scheduler.errors import UnknownRunError
from scheduler.fencing import FencedSaver
from scheduler.leases import Heartbeat, new_owner, run_lease
from scheduler.protocol import NodeRef, RunNodes, Sender, StartRun, shadow_name
from scheduler.records import ErrorInfo, RunRecord, RunStatus
from scheduler.resources import Resources
from scheduler.store import (
    BUSY,
    FIRST_START,
    STARTED_ALREADY,
    HandOver,
    KeptAdvance,
    KeptEnd,
    RunStore,
)
from scheduler.streams import Publisher

log = logging.getLogger(__name__)

# How long a driver waits for another one working on the same run (a start still
# dispatching when the first task's advance arrives); past that, the caller hands the
# advance to the scheduler queue, or the sweeper takes over.
LEASE_WAIT_SECONDS = 5.0


class Stopped(StrEnum):
    """Why a drive did nothing to its run."""

    BUSY = "busy"  # another driver held the run's lease
    STALE = "stale"  # the step was dealt with already, or the run is over
    MISSING = "missing"  # no such run


@dataclass(frozen=True)
class KeptTask:
    """The next superstep's one task, left to the caller to run in place of a message."""

    checkpoint_id: str
    task_id: str
    path: list[Any]
    shadow: str  # its Flower name, `<graph>.<node>`
    graph: str
    # The traceparent of the superstep span that kept it: its node span's parent.
    trace_parent: str | None = None
    # The advance's own loop and plan of the task, when the step starts from a fresh
    # checkpoint (no pending writes): the task runs on them without a reload.
    loop: RunLoop | None = None
    task: algo.Task | None = None
    # The loop's saver, which the next advance fences with its own lease.
    saver: FencedSaver | None = None
    # Where the loop's chunks go, when the run streams.
    publisher: Publisher | None = None
    # The task's lease, when it was taken for this process as the step was opened
    # (`HandOver`): its owner and grant (0: someone else holds it).
    lease: tuple[str, int] | None = None
    # The step's context as its record holds it (`RunStore.open_step`): whether it resumes.
    resuming: bool = False
    # The run as the advance that kept the task read it; what can change while it runs
    # (status, step, a stop asked of it) is checked again by whatever advances it.
    run: RunRecord | None = None
    # The step's checkpoint had no pending writes as the step opened (its loop had none).
    fresh_writes: bool = False

    @property
    def advances_in_place(self) -> bool:
        """Whether its step can end in one script (`Driver.advance_kept`): a warm loop, a
        lease taken for the task's first start, and a streaming run's chunks at hand (its
        publisher holds them back to go with the step's writes)."""
        return (self.loop is not None and self.task is not None and self.saver is not None
                and self.lease is not None and self.lease[1] == FIRST_START
                and self.run is not None
                and (self.publisher is not None) == bool(self.run.stream_modes))


@dataclass(frozen=True)
class Outcome:
    """Where a drive stopped: the run's status (`running`: waiting on workers), or why it
    did nothing; with what the run returned, how it failed, or the task kept to run here."""

    status: RunStatus | Stopped
    output: Any = None
    error: ErrorInfo | None = None
    kept: KeptTask | None = None


def with_run_lease(res: Resources, app: Celery, thread_id: str, run_id: str,
                   action: Callable[[Driver], Outcome], *, run_here: str | None = None,
                   wait: float = LEASE_WAIT_SECONDS, owner: str | None = None) -> Outcome:
    """Only one driver works on a run at a time; a dead one's lease lapses in seconds.
    `owner`: the run's lease is held already, by this owner (taken as the caller counted
    the task that completed the step, `RunStore.finish_task`)."""
    name = run_lease(run_id)
    if owner is None:
        owner = new_owner()
        deadline = time.monotonic() + wait
        while not res.store.acquire_lease(thread_id, name, owner, res.settings.lease_seconds,
                                          run_id=run_id):
            if time.monotonic() > deadline:
                return Outcome(Stopped.BUSY)
            time.sleep(0.01)
    lease = (res.store.key(thread_id, "lease", name), owner)
    driver = Driver(res, app, run_here=run_here, lease=lease)
    with Heartbeat(res.store, thread_id, run_id, name, owner, res.settings.lease_seconds,
                   hand_over=True) as beat:
        outcome = action(driver)
    if driver.handed_over:
        beat.handed_over()
    else:
        beat.give_back()
    return outcome


class Driver:
    """Starts and advances runs; one instance per call, stateless between calls.

    `run_here` names the queue of the node task that is advancing the run: a next superstep
    of one task bound for that same queue is not sent but handed back (`KeptTask`), so a
    chain of single-node steps costs no broker round trip per step. `lease` (its key and
    owner) fences every checkpoint this driver writes: once it lapses, nothing is written.
    """

    def __init__(self, res: Resources, app: Celery, run_here: str | None = None,
                 lease: tuple[str, str] | None = None) -> None:
        self.res = res
        self.send = Sender(app, res.settings.scheduler_queue)
        self.lease = lease
        self.saver = FencedSaver(res.saver, lease)
        self.store = res.store
        self.run_here = run_here
        # Events of supersteps finished without a dispatch, sent with the next store write.
        self.pending_events: list[tuple[str, dict[str, Any]]] = []
        # Where the drive's loop streams to, when its run streams (`_attach`).
        self.publisher: Publisher | None = None
        # The run's lease went with the drive's last write (`RunStore.open_step`).
        self.handed_over = False

    # ---- entry points ---------------------------------------------------------------------

    def start(self, thread_id: str, run_id: str) -> Outcome:
        """Take the thread, apply the run's input or command, and dispatch the first step."""
        # The thread's head, read with the claim: a start that takes the thread needs it.
        claim, run, head = self.store.claim_thread_to_start(
            thread_id, run_id, lambda pipe: self.res.saver.queue_head(pipe, thread_id))
        if run is None:
            raise UnknownRunError(f"no run {run_id!r} on thread {thread_id!r}")
        if claim == STARTED_ALREADY:
            # It dispatched its first step (another start did) or settled: nothing to do.
            return Outcome(run.status)
        if claim == BUSY:
            return self._busy(run)
        with tracing.run_span(run.graph, thread_id, run_id, run.traceparent) as traceparent:
            run.traceparent = traceparent
            return self._start_claimed(run, head)

    def _start_claimed(self, run: RunRecord, head: str | None) -> Outcome:
        """`start`, once the run holds its thread (whose head was `head` then)."""
        thread_id, run_id = run.thread_id, run.run_id
        run.base_head, run_input = self.store.record_base_head(thread_id, run_id, head)
        try:
            graph = registry.resolve(run.graph)
            if head != run.base_head:
                # A start that died after taking its input: carry on from what it wrote.
                loop = self._loop(graph, None, run, checkpoint_id=None)
                loop.load()
                loop.apply_null_writes()
            else:
                loop = self._loop(graph, run_input, run, checkpoint_id=run.fork_point)
                if run.fork_point is not None:
                    self.saver.expect_head_once(run.base_head)
                elif head is None:
                    self.saver.expect_none_once()
                loop.enter()
        except StaleCheckpointError:
            return Outcome(Stopped.STALE)  # this start's lease lapsed; another took the run on
        except Exception as exc:
            return self._fail(run, exc)
        traced = {"traceparent": run.traceparent} if run.traceparent else {}
        if not self.store.mark_running(thread_id, run_id, loop.step, stop=loop.stop, **traced):
            # Cancelled while starting (the cancel freed the thread), or taken over and moved
            # on by another start: nothing is dispatched, and the thread is left as it is. It
            # is held by run id, so freeing it here would free it under the run the other
            # start carried on, whose every advance would then stop, finding it gone.
            now = self.store.run(thread_id, run_id)
            return Outcome(now.status if now else Stopped.MISSING)
        metrics.run_started(run.graph)
        return self._drive(run, loop, after_barrier=False)

    def advance(self, thread_id: str, run_id: str, checkpoint_id: str,
                kept: KeptTask | None = None) -> Outcome:
        """Called once a superstep's tasks all finished: apply them and go on.

        `kept`: the step's one task as an earlier advance in this process handed it back and
        this process ran it; its loop already holds everything a reload would give.
        """
        loop = kept.loop if kept is not None else None
        if kept is not None and kept.saver is not None:
            kept.saver.fence(self.lease)
            self.saver = kept.saver
            self.publisher = kept.publisher
        # A kept task's loop comes with the step's context: this process recorded it.
        warm = kept is not None and loop is not None
        view = self.store.step_view(thread_id, run_id, checkpoint_id, with_context=not warm)
        run = view.run
        if run is None:
            return Outcome(Stopped.MISSING)
        if run.status != RunStatus.RUNNING:
            return Outcome(run.status)
        if run.step != checkpoint_id or view.active_run != run_id:
            # A late or repeated advance: this step was dealt with, or the run is over and
            # the thread's checkpoints now belong to the next run.
            return Outcome(Stopped.STALE)
        if loop is not None:
            # A head that moved meanwhile fails the compare-and-set of the next checkpoint.
            after_barrier = True
        else:
            # The head moved past the step only if an advance wrote the next checkpoint and
            # died before dispatching from it: then carry on from the head, dispatching its
            # tasks.
            after_barrier = self.res.saver.head(thread_id) == checkpoint_id
            graph = registry.resolve(run.graph)
            loop = self._loop(graph, None, run, checkpoint_id=None)
            loop.load()
            loop.apply_null_writes()
        if run.stop is not None:
            loop.set_stop(run.stop)
        if after_barrier:
            loop.set_resuming(kept.resuming if kept is not None and warm
                              else bool(view.context.get("resuming")))
        return self._drive(run, loop, after_barrier=after_barrier)

    def advance_kept(self, kept: KeptTask, task_owner: str,
                     finished: dict[str, Any]) -> KeptTask | Outcome | None:
        """End the step of a kept task that finished, whose memo and next checkpoint its
        saver held back (`FencedSaver.defer`), in one script with the next step's record,
        when the next step is again one task to run here (`RunStore.advance_kept`): the next
        step's task, kept. When no step follows, the run ends in one script too
        (`_end_kept`): its Outcome. None when neither (the run fans out, pauses, fails, or
        another process moved it): nothing is written, and the caller goes the long way
        from the held-back memo on, with a fresh loop. `finished`: the task's
        `task_finished` event. Needs no run lease (the task's is the fence), so none is
        taken: three round trips fewer a step than `advance` after counting."""
        loop, saver, run, publisher = kept.loop, kept.saver, kept.run, kept.publisher
        assert loop is not None and saver is not None and run is not None
        assert saver.deferred is not None
        step = loop.step
        try:
            if run.stop is not None:
                loop.set_stop(run.stop)
            loop.set_resuming(kept.resuming)
            if not loop.prepare_step() or any(not t.writes for t in loop.tasks.values()):
                return None
            if publisher is not None:
                publisher.discard()  # the step's plan, streamed when it was dispatched
            loop.finish_step()
            last = not loop.prepare_step()
        except Exception:  # noqa: BLE001 - the long way meets it again, and reports it
            return None
        if last:
            return self._end_kept(kept, task_owner, [
                ("task_finished", finished),
                ("step", {"step": step, "checkpoint_id": loop.checkpoint["id"]})])
        todo = [t for t in loop.tasks.values() if not t.writes]
        held = saver.deferred
        if len(todo) != 1 or todo[0].node.hidden or held.put is None:
            return None
        task, checkpoint_id = todo[0], loop.checkpoint["id"]
        infos = self._task_infos(run, todo)
        if infos[task.id]["queue"] != self.run_here:
            return None
        if publisher is not None:
            publisher.publish_once(f"dispatch:{checkpoint_id}")
        metrics.superstep(run.graph)
        with tracing.superstep_span(run.graph, run.thread_id, run.run_id, loop.step,
                                    checkpoint_id, run.traceparent) as traceparent:
            next_owner = new_owner()
            grant = self.store.advance_kept(run.thread_id, run.run_id, KeptAdvance(
                checkpoint_id=kept.checkpoint_id, task_id=kept.task_id, task_owner=task_owner,
                memo=held.memo, put=held.put,
                next_checkpoint_id=checkpoint_id, tasks=infos,
                context={"resuming": bool(loop.resuming), "resume_map": loop.resume_map},
                events=[("task_finished", finished),
                        ("step", {"step": step, "checkpoint_id": checkpoint_id}),
                        ("dispatched", {"step": loop.step, "tasks": [task.name]})],
                next_task_id=task.id, next_owner=next_owner,
                seconds=self.res.settings.lease_seconds,
                chunks=publisher.held or () if publisher is not None else (),
                memo_fresh=kept.fresh_writes and not held.passed_root))
        if grant is None:
            return None
        saver.deferred_written()
        if publisher is not None:
            publisher.held = None
        return KeptTask(checkpoint_id, task.id, list(task.path), infos[task.id]["shadow"],
                        graph=run.graph, trace_parent=traceparent, loop=loop, task=task,
                        saver=saver, publisher=publisher, lease=(next_owner, grant),
                        resuming=bool(loop.resuming), run=run,
                        fresh_writes=not loop.pending_writes)

    def _end_kept(self, kept: KeptTask, task_owner: str,
                  events: list[tuple[str, dict[str, Any]]]) -> Outcome | None:
        """`advance_kept` when the step after the kept task's plans nothing and the run is
        done: its memo, last checkpoint, output and end go in one script
        (`RunStore.end_kept`), where `_drive` and `_finish` would take a dozen round trips
        after counting it. None (nothing written) for a run that ends otherwise (out of
        steps), streams (its stream's end entry goes the long way) or compacts at its end
        (`exit` durability), or that another process moved meanwhile."""
        loop, saver, run = kept.loop, kept.saver, kept.run
        assert loop is not None and saver is not None and run is not None
        held = saver.deferred
        if (loop.status != "done" or held is None or held.put is None or run.stream_modes
                or run.durability == "exit"):
            return None
        try:
            loop.close(None)
            end = KeptEnd(checkpoint_id=kept.checkpoint_id, task_id=kept.task_id,
                          task_owner=task_owner, memo=held.memo, put=held.put,
                          output=loop.output, events=events,
                          memo_fresh=kept.fresh_writes and not held.passed_root)
            queued = self.store.end_kept(run.thread_id, run.run_id, end)
        except serde.SerdeError:
            return None  # the long way fails the run, naming what could not be stored
        if queued is None:
            return None
        saver.deferred_written()
        metrics.run_ended(run.graph, RunStatus.DONE)
        self._after_end(run.thread_id, queued=bool(queued))
        return Outcome(RunStatus.DONE, output=loop.output)

    # ---- the drive ------------------------------------------------------------------------

    def _loop(self, graph: Pregel, run_input: Any, run: RunRecord,
              checkpoint_id: str | None) -> RunLoop:
        loop = RunLoop(
            graph, run_input, run.config_at(checkpoint_id),
            checkpointer=self.saver, durability="sync",
            interrupt_before=graph.interrupt_before if run.interrupt_before is None
            else run.interrupt_before,
            interrupt_after=graph.interrupt_after if run.interrupt_after is None
            else run.interrupt_after,
            stream_modes=run.stream_modes, stream_subgraphs=run.stream_subgraphs,
            context=run.run_context(),
        )
        self._attach(loop, run)
        return loop

    def _attach(self, loop: RunLoop, run: RunRecord) -> None:
        """Stream the loop's chunks to the run's stream, if the run streams: each batch
        under a key naming the checkpoint it follows from (`scheduler.streams`), the step's
        chunks just before the checkpoint that ends the step is written."""
        if not run.stream_modes:
            return
        publisher = self.publisher = Publisher(
            self.store.chunk_stream(run.thread_id, run.run_id), loop.drain_chunks)
        loop.listen(publisher.wake)
        self.saver.before_put = publisher.before_checkpoint

    def _publish(self, key: str) -> None:
        if self.publisher is not None:
            self.publisher.publish_once(key)

    def _drive(self, run: RunRecord, loop: RunLoop, *, after_barrier: bool) -> Outcome:
        run_id = run.run_id
        try:
            while loop.prepare_step():
                if after_barrier and self.publisher is not None:
                    # This step's plan was streamed when it was dispatched.
                    self.publisher.discard()
                todo = [t for t in loop.tasks.values() if not t.writes]
                if inline := [t for t in todo if t.node.hidden]:
                    # `__start__` only maps the input to state: not worth a worker round trip.
                    loop.run_planned(inline, async_nodes=True)
                    todo = [t for t in todo if not t.writes]
                if todo:
                    if after_barrier:
                        self._raise_step_outcome(loop, todo)
                    if run.stop_requested:
                        # A run sent with multitask_strategy="interrupt" waits for this
                        # thread: stop here, every finished step kept, and let it start.
                        loop.close(None)
                        return self._finish(run, loop, RunStatus.INTERRUPTED)
                    return self._dispatch(run, loop, todo)
                loop.finish_step()
                self.res.settings.faults.maybe_crash("advance_checkpointed")
                after_barrier = False
                self.pending_events.append(
                    ("step", {"step": loop.step - 1, "checkpoint_id": loop.checkpoint["id"]}))
            if loop.status == "out_of_steps":
                raise GraphRecursionError(
                    f"Recursion limit of {loop.config['recursion_limit']} reached "
                    "without hitting a stop condition."
                )
        except GraphInterrupt as exc:
            loop.close(exc)
            return self._finish(run, loop, RunStatus.INTERRUPTED)
        except StaleCheckpointError:
            log.info("run %s: another scheduler advanced this step first", run_id)
            return Outcome(Stopped.STALE)
        except Exception as exc:
            loop.close(exc)
            return self._fail(run, exc)
        loop.close(None)
        return self._finish(run, loop, RunStatus.DONE)

    def _raise_step_outcome(self, loop: RunLoop, todo: list[algo.Task]) -> None:
        """After a superstep's barrier: a failed task fails the run, interrupts pause it."""
        statuses = algo.task_statuses(loop.pending_writes)
        for task in todo:
            status = statuses.get(task.id)
            if status is not None and status.error is not None:
                raise revive_error(status.error)
        interrupts = [i for t in todo if (s := statuses.get(t.id)) for i in s.interrupts]
        if interrupts:
            raise GraphInterrupt(interrupts)

    def _dispatch(self, run: RunRecord, loop: RunLoop, todo: list[algo.Task]) -> Outcome:
        checkpoint_id = loop.checkpoint["id"]
        metrics.superstep(run.graph)
        with tracing.superstep_span(run.graph, run.thread_id, run.run_id, loop.step,
                                    checkpoint_id, run.traceparent) as traceparent:
            return self._send_step(run, loop, todo, traceparent)

    def _send_step(self, run: RunRecord, loop: RunLoop, todo: list[algo.Task],
                   traceparent: str | None) -> Outcome:
        thread_id, run_id = run.thread_id, run.run_id
        checkpoint_id = loop.checkpoint["id"]
        infos = self._task_infos(run, todo)
        context = {"resuming": bool(loop.resuming), "resume_map": loop.resume_map}
        events = [*self.pending_events,
                  ("dispatched", {"step": loop.step, "tasks": [t.name for t in todo]})]
        self.pending_events.clear()
        self._publish(f"dispatch:{checkpoint_id}")
        if len(todo) == 1 and self.run_here and infos[todo[0].id]["queue"] == self.run_here:
            # Not marked sent: if the caller dies before running the task, its lease lapses
            # and the sweeper sends it as it does the rest of a dispatch that died half-way.
            # The step's record releases this run lease and takes the task's, in one script.
            task_owner = new_owner()
            hand_over = None if self.lease is None else HandOver(
                run_lease(run_id), self.lease[1], todo[0].id, task_owner,
                self.res.settings.lease_seconds)
            grant = self.store.open_step(thread_id, run_id, checkpoint_id, infos, context,
                                         events, hand_over=hand_over)
            self.handed_over = hand_over is not None
            warm = not loop.pending_writes
            # The task runs under its own lease, not this run lease: what it writes on the
            # loop (a subgraph's checkpoints) is not fenced by this advance.
            self.saver.fence(None)
            return Outcome(RunStatus.RUNNING, kept=KeptTask(
                checkpoint_id, todo[0].id, list(todo[0].path), infos[todo[0].id]["shadow"],
                graph=run.graph, trace_parent=traceparent,
                loop=loop if warm else None, task=todo[0] if warm else None,
                saver=self.saver if warm else None,
                publisher=self.publisher if warm else None,
                lease=(task_owner, grant) if hand_over is not None else None,
                resuming=bool(loop.resuming), run=run, fresh_writes=warm,
            ))
        self.store.open_step(thread_id, run_id, checkpoint_id, infos, context, events)
        for queue, batch in self._batches(todo, infos):
            refs = tuple(NodeRef(t.id, infos[t.id]["path"]) for t in batch)
            self.send.nodes(RunNodes(thread_id, run_id, checkpoint_id, refs), queue=queue,
                            shadow=self._message_shadow(run, batch))
        self.store.mark_sent(thread_id, run_id, checkpoint_id)
        return Outcome(RunStatus.RUNNING)

    def _task_infos(self, run: RunRecord, todo: list[algo.Task]) -> dict[str, dict[str, Any]]:
        """What a step's record says of each task: its node, queue, Flower name and path."""
        infos: dict[str, dict[str, Any]] = {}
        for task in todo:
            queue = run.routes.get(task.name) or task.node.queue or self.res.settings.node_queue
            infos[task.id] = {"node": task.name, "queue": queue,
                              "shadow": shadow_name(run.graph, task.name),
                              "path": list(task.path)}
        return infos

    @staticmethod
    def _message_shadow(run: RunRecord, batch: list[algo.Task]) -> str:
        """A lone task's message is its node's Flower row; a batch's is named apart
        (`<graph>.<nodes>(xN)`) from the rows its tasks get of their own (`worker.rows`)."""
        if len(batch) == 1:
            return shadow_name(run.graph, batch[0].name)
        names = "+".join(sorted({t.name for t in batch}))
        return f"{shadow_name(run.graph, names)}(x{len(batch)})"

    def _batches(self, todo: list[algo.Task], infos: dict[str, dict[str, Any]]
                 ) -> list[tuple[str, list[algo.Task]]]:
        """Per queue, at most `step_messages` messages: a wide superstep of quick tasks would
        otherwise pay a broker round trip per task; a narrow one keeps one task per message
        so that its tasks run side by side."""
        by_queue: dict[str, list[algo.Task]] = {}
        for task in todo:
            by_queue.setdefault(infos[task.id]["queue"], []).append(task)
        out = []
        for queue, tasks in by_queue.items():
            size = -(-len(tasks) // self.res.settings.step_messages)
            out += [(queue, tasks[i:i + size]) for i in range(0, len(tasks), size)]
        return out

    # ---- endings --------------------------------------------------------------------------

    def _finish(self, run: RunRecord, loop: RunLoop, status: RunStatus) -> Outcome:
        self.store.set_output(run.thread_id, run.run_id, loop.output)
        self._end(run, status, output=loop.output,
                  interrupts=list(loop.interrupts))
        return Outcome(status, output=loop.output)

    def _fail(self, run: RunRecord, exc: BaseException) -> Outcome:
        error: ErrorInfo
        if isinstance(exc, NodeError):
            error = {"type": exc.type_name, "message": exc.message}
        else:
            error = {"type": type(exc).__name__, "message": str(exc)}
        self._end(run, RunStatus.FAILED, error=error)
        return Outcome(RunStatus.FAILED, error=error)

    def _end(self, run: RunRecord, status: RunStatus, **data: Any) -> None:
        """The status, its event and the thread's release land together (`RunStore.end_run`):
        a producer that resumes the moment it sees the result finds the thread free."""
        thread_id, run_id = run.thread_id, run.run_id
        self._compact(run)
        for kind, earlier in self.pending_events:
            self.store.add_event(thread_id, run_id, kind, **earlier)
        self.pending_events.clear()
        self._publish("end")
        if self.store.end_run(thread_id, run_id, status, streaming=bool(run.stream_modes),
                              **data):
            metrics.run_ended(run.graph, status)
        self._after_end(thread_id)

    def _after_end(self, thread_id: str, *, queued: bool = True) -> None:
        """What follows a run's end: the run waiting on its thread starts (`queued`: one
        may be waiting), and a finished thread's keys get their lifetime (CELERYGRAPH_RUN_TTL)."""
        if queued:
            self._start_queued(thread_id)
        if self.res.settings.run_ttl:
            self.store.expire_thread(thread_id, self.res.settings.run_ttl)

    def _compact(self, run: RunRecord) -> None:
        """`exit` durability: workers need every checkpoint while the run goes, but history
        keeps only the last one this run wrote, as in-process."""
        if run.durability != "exit":
            return
        ids = self.res.saver.checkpoint_ids(run.thread_id)
        base = run.base_head
        written = ids[ids.index(base) + 1:] if base in ids else ids
        self.res.saver.drop_checkpoints(run.thread_id, written[:-1])

    def _busy(self, run: RunRecord) -> Outcome:
        """A start that found its thread busy: reject it, or queue it behind the active run,
        which stops at its next superstep boundary (`interrupt`) or is cancelled and its
        checkpoints discarded (`rollback`) first."""
        thread_id, run_id = run.thread_id, run.run_id
        if run.on_busy in ("enqueue", "interrupt", "rollback"):
            self.store.wait_behind_active(thread_id, run_id)
            active = self.store.active_run(thread_id)
            if active is not None and run.on_busy == "interrupt":
                self.store.update_run(thread_id, active, stop_requested=run_id)
            elif active is not None and run.on_busy == "rollback":
                roll_back(self.res, self.send, thread_id, active, by=run_id)
            return Outcome(RunStatus.WAITING)
        error: ErrorInfo = {
            "type": "ThreadBusyError",
            "message": f"thread {thread_id!r} is running {self.store.active_run(thread_id)}",
        }
        self.store.update_run(thread_id, run_id, status=RunStatus.REJECTED, error=error)
        self.store.add_event(thread_id, run_id, "rejected", error=error)
        if run.stream_modes:
            self.store.end_stream(thread_id, run_id, RunStatus.REJECTED, error)
        self.store.retire(thread_id, run_id)
        metrics.run_ended(run.graph, RunStatus.REJECTED)
        return Outcome(RunStatus.REJECTED, error=error)

    def _start_queued(self, thread_id: str) -> None:
        start_queued(self.store, self.send, thread_id)


def start_queued(store: RunStore, send: Sender, thread_id: str) -> None:
    """Start the next run waiting on the thread, if any (the sweeper does it if we die).

    A run cancelled while it waited is passed over, and the thread goes to the one behind
    it: its status moves to `queued` only if it has not ended (`RunStore.mark_queued`), so a
    cancel that lands between the claim and the start is kept too."""
    while (next_run := store.pop_queued(thread_id)) is not None:
        if not store.claim_thread(thread_id, next_run):
            store.requeue_front(thread_id, next_run)
            return
        if store.mark_queued(thread_id, next_run):
            send.start(StartRun(thread_id, next_run))
            return
        store.release_thread(thread_id, next_run)


def roll_back(res: Resources, send: Sender, thread_id: str, run_id: str, *, by: str) -> bool:
    """Cancel the thread's active run `run_id` and discard the checkpoints it wrote, then
    start the run queued behind it (`multitask_strategy="rollback"`); False if it ended
    meanwhile (whoever ended it starts the queued run).

    Under the run's lease, so that no advance of it writes meanwhile; a lease held by a
    dead process lapses in seconds. The checkpoints go before the run ends: until it
    ends it holds the thread, so no other run writes on it in between. A task of the
    cancelled run still running on a worker may save its memo afterwards, under a
    checkpoint id that no longer exists: nothing reads it, and its advance finds the run
    cancelled and does nothing.
    """
    owner = new_owner()
    name = run_lease(run_id)
    while not res.store.acquire_lease(thread_id, name, owner, res.settings.lease_seconds,
                                      run_id=run_id):
        time.sleep(0.01)
    with Heartbeat(res.store, thread_id, run_id, name, owner, res.settings.lease_seconds):
        run = res.store.run(thread_id, run_id)
        if run is None or run.status.terminal:
            return False
        # Before the read of what to drop: from here no kept task ends its step in place
        # (`RunStore.advance_kept` does not read the run's lease), and what one put before
        # is among what is read.
        res.store.update_run(thread_id, run_id, rolling_back=by)
        ids = res.saver.checkpoint_ids(thread_id)
        base = run.base_head
        written = ids[ids.index(base) + 1:] if base in ids else (ids if base is None else [])
        res.saver.drop_checkpoints(thread_id, written)
        if not res.store.end_run(thread_id, run_id, RunStatus.CANCELLED,
                                 streaming=bool(run.stream_modes), rolled_back_by=by):
            return False
        metrics.run_ended(run.graph, RunStatus.CANCELLED)
    start_queued(res.store, send, thread_id)
    return True
