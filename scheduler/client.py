"""The producers' API: submit runs, wait on them, stream their events, resume, cancel, read state.

A producer needs Redis and the broker, not the graph code: graphs are named by reference
(`package.module:attr`) and checked against what workers published. Reading state as
snapshots imports the graph module, since snapshots need the graph's channels.

A client that loads the graph's code itself may start its runs in place (`start_here`, what
the HTTP server does): the start the scheduler would do, without the broker hop to it.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import redis
from celery import Celery

from graphdef import algo
from graphdef.errors import InvalidResumeError
from graphdef.pregel import Pregel
from graphdef.types import Command, StateSnapshot
from graphdef.update import resumable_interrupts
from scheduler import registry
from scheduler.celery_app import make_app
from scheduler.cluster_graph import ClusterGraph
from scheduler.driver import Stopped, with_run_lease
from scheduler.errors import RunFailedError, ThreadBusyError, UnknownGraphError, UnknownRunError
from scheduler.protocol import Sender, StartRun
from scheduler.records import SETTLED, RunRecord, RunStatus
from scheduler.resources import Resources
from scheduler.runs import check_graph, create_run, start_queue
from scheduler.settings import Settings
from scheduler.store import new_run_id
from scheduler.streams import StreamPart, stream_is_over

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]


# How long a producer waiting on a run pauses when the store does not answer, before it
# reads again.
STORE_AWAY_PAUSE = 0.2

T = TypeVar("T")


def read_again(read: Callable[[], T], away: T) -> T:
    """`read()`, or `away` after a short pause if the store does not answer (restarting,
    or failing over to a replica). A producer following a run only reads, so it loses
    nothing by reading again from where it was once the store is back; its caller's
    timeout still bounds the wait."""
    try:
        return read()
    except redis.ConnectionError:
        time.sleep(STORE_AWAY_PAUSE)
        return away


class RunHandle:
    """A submitted run: poll it, wait for it, replay its events from any point."""

    def __init__(self, client: Client, thread_id: str, run_id: str) -> None:
        self.client = client
        self.thread_id = thread_id
        self.id = run_id

    def __repr__(self) -> str:
        return f"RunHandle(thread_id={self.thread_id!r}, id={self.id!r})"

    def record(self) -> RunRecord:
        run = self.client.store.run(self.thread_id, self.id)
        if run is None:
            raise UnknownRunError(f"no run {self.id!r} on thread {self.thread_id!r}")
        return run

    def info(self) -> dict[str, Any]:
        """The run's record as plain JSON values."""
        return self.record().as_dict()

    def status(self) -> RunStatus:
        return self.record().status

    def events(self, after: str = "0-0", *, follow: bool = False,
               timeout: float | None = None) -> Iterator[Event]:
        """Events after `after`; with `follow`, keep reading until the run settles, across
        a store outage too (`read_again`)."""
        if not follow:
            for event_id, kind, data in self.client.store.events(self.thread_id, self.id,
                                                                 after):
                yield Event(event_id, kind, data)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        last = after
        none_yet: tuple[list[tuple[str, str, dict[str, Any]]], bool] = ([], False)
        while True:
            found, settled = read_again(partial(self._next_events, last), none_yet)
            for event_id, kind, data in found:
                last = event_id
                yield Event(event_id, kind, data)
                if kind in SETTLED:
                    return
            if settled:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.id} did not settle within {timeout} s")

    def _next_events(self, after: str) -> tuple[list[tuple[str, str, dict[str, Any]]], bool]:
        """The events after `after` (waiting up to 200 ms for one), and whether the run
        settled when there were none (its settling event is then older than `after`)."""
        found = list(self.client.store.events(self.thread_id, self.id, after, block_ms=200))
        return found, not found and self.status().settled

    def stream(self, after: str = "0-0", *, timeout: float | None = None
               ) -> Iterator[StreamPart]:
        """The run's stream entries after id `after`, as they come, up to its end entry
        (`scheduler.streams`): reconnect with the last id seen to get the rest exactly once.
        Only a run submitted with a `stream_mode` streams. Reads across a store outage
        (`read_again`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = after
        none_yet: tuple[list[StreamPart], bool] = ([], False)
        while True:
            parts, over = read_again(partial(self._next_parts, last), none_yet)
            for part in parts:
                last = part.id
                yield part
                if part.kind == "end":
                    return
            if over:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.id} did not end within {timeout} s")

    def _next_parts(self, after: str) -> tuple[list[StreamPart], bool]:
        """The stream entries after `after` (waiting up to 200 ms for one), and whether
        nothing more will come when there were none."""
        chunks = self.client.store.chunk_stream(self.thread_id, self.id)
        parts = chunks.read(after, block_ms=200)
        run = None if parts else self.client.store.run(self.thread_id, self.id)
        # A run not recorded yet may still start (a producer that chose its run id).
        over = run is not None and stream_is_over(
            run, bool(self.client.store.r.exists(chunks.key)))
        return parts, over

    def wait(self, timeout: float | None = None) -> RunStatus:
        """Block until the run is done, interrupted, failed, cancelled or rejected; across
        a store outage too (`read_again`), within the timeout.

        A run not recorded yet is waited for too: a producer that chose its run id (any
        language, `start_run` with `run_id`) may wait before the scheduler took its message.
        """
        return self._settled(timeout).status

    def _settled(self, timeout: float | None) -> RunRecord:
        deadline = None if timeout is None else time.monotonic() + timeout
        last = "0-0"
        run: RunRecord | None = None
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                state = f"still {run.status}" if run is not None else (
                    f"not recorded on thread {self.thread_id!r}")
                raise TimeoutError(f"run {self.id} {state} after {timeout} s")
            block = 200 if remaining is None else max(1, min(200, int(remaining * 1000)))
            run, last = read_again(partial(self._progress, last, block, run), (run, last))
            if run is not None and run.status.settled:
                return run

    def _progress(self, after: str, block_ms: int, run: RunRecord | None
                  ) -> tuple[RunRecord | None, str]:
        """The id of the run's newest event after `after` once one comes (within
        `block_ms`), and its record, read first and then again only when an event that
        settles a run came (every settling writes one: `RunStore.end_run`) or none came in
        time: a waiting producer costs one read per step's events, not two. `run`: the
        record as read last."""
        if after == "0-0":
            run = self.client.store.run(self.thread_id, self.id)
            if run is not None and run.status.settled:
                return run, after
        came = settling = False
        for event_id, kind, _ in self.client.store.events(self.thread_id, self.id, after,
                                                          block_ms=block_ms):
            after, came = event_id, True
            settling = settling or kind in SETTLED
        if settling or not came:
            run = self.client.store.run(self.thread_id, self.id)
        return run, after

    def result(self, timeout: float | None = None) -> Any:
        """The run's output (with `__interrupt__` when paused); raises if it failed."""
        run = self._settled(timeout)
        status, error = run.status, run.error
        if status == RunStatus.FAILED:
            raise RunFailedError(error or {})
        if status == RunStatus.REJECTED:
            raise ThreadBusyError(error["message"] if error else "thread busy")
        if status == RunStatus.CANCELLED:
            raise RuntimeError(f"run {self.id} was cancelled")
        return self.client.store.output(self.thread_id, self.id)


class Client:
    """Submit and manage distributed runs."""

    def __init__(self, settings: Settings | None = None, *, app: Celery | None = None,
                 start_here: bool = False) -> None:
        self.settings = settings or Settings.from_env()
        self.app = app or make_app(self.settings)
        self.send = Sender(self.app, self.settings.scheduler_queue)
        self.res = Resources.connect(self.settings)
        self.saver = self.res.saver
        self.store = self.res.store
        # Start runs of graphs loaded here in this process (`_start`).
        self.start_here = start_here

    # ---- submitting -----------------------------------------------------------------------

    def submit(
        self,
        graph: str,
        input: Any,
        *,
        thread_id: str | None = None,
        durability: str = "async",
        config: dict[str, Any] | None = None,
        on_busy: str = "reject",
        routes: dict[str, str] | None = None,
        context: Any = None,
        stream_mode: str | list[str] | tuple[str, ...] | None = None,
        stream_subgraphs: bool = False,
        run_id: str | None = None,
        interrupt_before: list[str] | str | None = None,
        interrupt_after: list[str] | str | None = None,
        require_graph: bool = True,
    ) -> RunHandle:
        """Start a run of `graph` on `thread_id` (a new thread if None) and return its handle.

        With `on_busy="reject"` a thread that is running another run raises ThreadBusyError
        and nothing is stored; with `"enqueue"` the run starts when the thread is free.
        `context`: what its nodes read as `runtime.context` (`invoke(..., context=...)`).
        `stream_mode` (LangGraph's modes, one or a list) and `stream_subgraphs`: stream the
        run's chunks in those modes (`RunHandle.stream`); by default nothing is streamed.
        `run_id`: the run's id, chosen by the caller (the HTTP server's are UUIDs); a new one
        by default. `interrupt_before`/`interrupt_after`: node names (or `"*"`) this run
        pauses before/after, in place of the compiled graph's (None: the graph's).
        `require_graph=False` stores the run even if no worker publishes `graph`: its start
        fails it (UnknownGraphError), as the Agent Server fails a run of an assistant whose
        graph left its registry, in the thread's turn.
        """
        queue = None
        if require_graph:
            queue = start_queue(check_graph(self.store, graph), routes, self.settings)
        thread_id = thread_id or new_run_id()
        run_id = run_id or new_run_id()
        claimed = self.store.claim_thread(thread_id, run_id)
        if not claimed and on_busy == "reject":
            raise ThreadBusyError(
                f"thread {thread_id!r} is busy with run {self.store.active_run(thread_id)}"
            )
        try:
            create_run(self.store, graph=graph, validate=False,  # checked above
                       run_input=input, thread_id=thread_id,
                       config=config, durability=durability, on_busy=on_busy,
                       run_id=run_id, routes=routes, context=context,
                       stream_mode=stream_mode, stream_subgraphs=stream_subgraphs,
                       interrupt_before=interrupt_before, interrupt_after=interrupt_after)
        except BaseException:
            self.store.release_thread(thread_id, run_id)
            raise
        if claimed:
            self._start(graph, thread_id, run_id, queue)
        elif on_busy in ("interrupt", "rollback"):
            # A busy thread: the start finds it so, and stops or rolls back the active run.
            self.send.start(StartRun(thread_id, run_id))
        else:
            self.store.wait_behind_active(thread_id, run_id)
        return RunHandle(self, thread_id, run_id)

    def _start(self, graph: str, thread_id: str, run_id: str, queue: str | None) -> None:
        """Start a run that holds its thread: here, when `start_here` and this process loads
        `graph` (the scheduler's start without the broker hop to it: 4-5 ms less before the
        first node is sent), else by a message to a node worker of `queue`, which runs the
        first task in place (`runs.start_queue`), or, with no such queue, to the scheduler.

        Crash reasoning, as for a scheduler that dies mid-start: the run was stored (and
        its look scheduled, `RunStore.create_run`) before this; a process killed here leaves
        it queued or running without a step, under a run lease that lapses, and the sweeper
        sends its start then (`Sweeper.look`); that start carries on from what this one
        wrote (`Driver._start_claimed`). A start here that raises, or finds the run's lease
        held, leaves the run to the scheduler the same way, at once: a repeated start of a
        started run does nothing (`RunStore.claim_thread_to_start`).
        """
        if self.start_here and graph in registry.known():
            try:
                outcome = with_run_lease(self.res, self.app, thread_id, run_id,
                                         lambda d: d.start(thread_id, run_id), wait=0)
            except Exception:  # noqa: BLE001 - the scheduler's start finishes what this began
                log.warning("run %s: starting it here failed; the scheduler starts it",
                            run_id, exc_info=True)
            else:
                if outcome.status is not Stopped.BUSY:
                    return
        if queue is not None:
            self.send.start_and_run(thread_id, run_id, queue)
        else:
            self.send.start(StartRun(thread_id, run_id))

    def resume(self, thread_id: str, command: Command[Any] | Any, *, durability: str = "async",
               on_busy: str = "reject", context: Any = None,
               config: dict[str, Any] | None = None,
               stream_mode: str | list[str] | tuple[str, ...] | None = None,
               stream_subgraphs: bool = False, run_id: str | None = None,
               interrupt_before: list[str] | str | None = None,
               interrupt_after: list[str] | str | None = None,
               graph: str | None = None, require_graph: bool = True) -> RunHandle:
        """Answer the thread's pending interrupt(s); a bare value means Command(resume=value).
        `context` is not carried over from the paused run: pass it again, as with LangGraph.
        `config`, `stream_mode`, `stream_subgraphs`, `interrupt_before`, `interrupt_after`:
        the resuming run's, as for `submit`. `graph`: the graph that resumes (default: the
        thread's latest run's; a thread copied from another has checkpoints but no runs).
        `require_graph`: as for `submit`."""
        if not isinstance(command, Command):
            command = Command(resume=command)
        if graph is None:
            runs = self.store.runs_of(thread_id)
            if not runs:
                raise InvalidResumeError(f"Thread {thread_id!r} has no runs to resume")
            graph = self._run_of(thread_id, runs[-1]).graph
        if command.resume is not None:
            head = self.saver.get_tuple({"configurable": {"thread_id": thread_id,
                                                          "checkpoint_ns": ""}})
            interrupts = algo.pending_interrupts(head.pending_writes) if head else []
            if head is not None and not interrupts and head.metadata.get("source") == "update":
                # As the run's loop will judge it: an update_state over a paused step (edit,
                # then approve) leaves the paused node's interrupt to answer. Only this case
                # needs the graph's code, to plan the steps.
                interrupts = resumable_interrupts(
                    self._graph_named(graph), self.saver, head).interrupts
            algo.check_resume(command.resume, {i.id for i in interrupts}, thread_id)
        return self.submit(graph, command, thread_id=thread_id, durability=durability,
                           on_busy=on_busy, context=context, config=config,
                           stream_mode=stream_mode, stream_subgraphs=stream_subgraphs,
                           run_id=run_id, interrupt_before=interrupt_before,
                           interrupt_after=interrupt_after, require_graph=require_graph)

    def cancel(self, thread_id: str, run_id: str) -> None:
        """Stop a run after the tasks already running; no further superstep is dispatched."""
        run = self._run_of(thread_id, run_id)
        if run.status.terminal:
            return
        self.store.end_run(thread_id, run_id, RunStatus.CANCELLED,
                           streaming=bool(run.stream_modes))

    def graph(self, ref: str, config: dict[str, Any] | None = None) -> ClusterGraph:
        """`ref`'s graph with a compiled graph's methods, run on the cluster (see
        `scheduler.cluster_graph`): swap it for the local graph object, nothing else."""
        check_graph(self.store, ref)
        return ClusterGraph(self, ref, config)

    def run(self, thread_id: str, run_id: str) -> RunHandle:
        return RunHandle(self, thread_id, run_id)

    def _run_of(self, thread_id: str, run_id: str) -> RunRecord:
        run = self.store.run(thread_id, run_id)
        if run is None:
            raise UnknownRunError(f"no run {run_id!r} on thread {thread_id!r}")
        return run

    # ---- reading --------------------------------------------------------------------------

    def threads(self) -> list[dict[str, Any]]:
        """Every thread with its latest run's status (`interrupted` waits on a human)."""
        out = []
        for thread_id in self.store.threads():
            runs = self.store.runs_of(thread_id)
            last = self.store.run(thread_id, runs[-1]) if runs else None
            out.append({
                "thread_id": thread_id,
                "runs": len(runs),
                "run_id": last.run_id if last else None,
                "graph": last.graph if last else None,
                "status": last.status if last else None,
            })
        return out

    def _graph_of(self, thread_id: str) -> Pregel:
        runs = self.store.runs_of(thread_id)
        if not runs:
            raise UnknownRunError(f"no runs on thread {thread_id!r}")
        return self._graph_named(self._run_of(thread_id, runs[-1]).graph)

    def _graph_named(self, ref: str) -> Pregel:
        try:
            return registry.resolve(ref)
        except UnknownGraphError:
            module, _, attr = ref.partition(":")
            # A run record can be forged by anyone who can send start_run: import only the
            # modules this process is configured to run graphs from.
            if module not in self.settings.graph_modules:
                raise
            # A graph built with LangGraph is converted, as the workers converted it.
            graph = registry.as_graph(getattr(importlib.import_module(module), attr, None))
            if graph is None:
                raise
            return graph

    def _config(self, thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}}

    def get_state(self, thread_id: str) -> StateSnapshot:
        return self._graph_of(thread_id).get_state(self._config(thread_id),
                                                   checkpointer=self.saver)

    def get_state_history(self, thread_id: str, limit: int | None = None) -> list[StateSnapshot]:
        graph = self._graph_of(thread_id)
        return list(graph.get_state_history(self._config(thread_id), limit=limit,
                                            checkpointer=self.saver))
