"""The producers' API: submit runs, wait on them, stream their events, resume, cancel, read state.

A producer needs Redis and the broker, not the graph code: graphs are named by reference
(`package.module:attr`) and checked against what workers published. Reading state as
snapshots imports the graph module, since snapshots need the graph's channels.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from celery import Celery

from graphdef import algo
from graphdef.checkpoint.redis import RedisSaver
from graphdef.errors import InvalidResumeError, NodeError
from graphdef.pregel import Pregel
from graphdef.types import Command, StateSnapshot
from scheduler.runs import ThreadBusyError, check_graph, create_run
from scheduler.tasks import START_TASK
from worker import registry
from worker.app import app as default_app
from worker.app import make_app
from worker.settings import Settings
from worker.store import TERMINAL, RunStore, new_run_id

SETTLED = TERMINAL | {"interrupted"}


class RunFailedError(RuntimeError):
    """The run failed; `error` holds the failing node's error type and message."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('type')}: {error.get('message')}")
        self.error = error

    def as_node_error(self) -> NodeError:
        return NodeError(str(self.error.get("type")), str(self.error.get("message")))


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]


class RunHandle:
    """A submitted run: poll it, wait for it, replay its events from any point."""

    def __init__(self, client: Client, thread_id: str, run_id: str) -> None:
        self.client = client
        self.thread_id = thread_id
        self.id = run_id

    def __repr__(self) -> str:
        return f"RunHandle(thread_id={self.thread_id!r}, id={self.id!r})"

    def info(self) -> dict[str, Any]:
        run = self.client.store.run(self.thread_id, self.id)
        if run is None:
            raise LookupError(f"no run {self.id!r} on thread {self.thread_id!r}")
        return run

    def status(self) -> str:
        return str(self.info()["status"])

    def events(self, after: str = "0-0", *, follow: bool = False,
               timeout: float | None = None) -> Iterator[Event]:
        """Events after `after`; with `follow`, keep reading until the run settles."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = after
        while True:
            block = 200 if follow else None
            got = False
            for event_id, kind, data in self.client.store.events(
                self.thread_id, self.id, last, block_ms=block
            ):
                got = True
                last = event_id
                yield Event(event_id, kind, data)
                if follow and kind in SETTLED:
                    return
            if not follow:
                return
            if not got and self.status() in SETTLED:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.id} did not settle within {timeout} s")

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run is done, interrupted, failed, cancelled or rejected."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = "0-0"
        while True:
            status = self.status()
            if status in SETTLED:
                return status
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"run {self.id} still {status} after {timeout} s")
            block = 200 if remaining is None else max(1, min(200, int(remaining * 1000)))
            for event_id, _, _ in self.client.store.events(self.thread_id, self.id, last,
                                                           block_ms=block):
                last = event_id

    def result(self, timeout: float | None = None) -> Any:
        """The run's output (with `__interrupt__` when paused); raises if it failed."""
        status = self.wait(timeout)
        info = self.info()
        if status == "failed":
            raise RunFailedError(info.get("error") or {})
        if status == "rejected":
            raise ThreadBusyError((info.get("error") or {}).get("message", "thread busy"))
        if status == "cancelled":
            raise RuntimeError(f"run {self.id} was cancelled")
        return self.client.store.output(self.thread_id, self.id)


class Client:
    """Submit and manage distributed runs."""

    def __init__(self, settings: Settings | None = None, *, app: Celery | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.app = app or (make_app(settings) if settings is not None else default_app)
        self.saver = RedisSaver.from_url(self.settings.store_url)
        self.saver.max_value_bytes = self.settings.max_value_bytes
        self.store = RunStore(self.saver.client, max_value_bytes=self.settings.max_value_bytes)

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
    ) -> RunHandle:
        """Start a run of `graph` on `thread_id` (a new thread if None) and return its handle.

        With `on_busy="reject"` a thread that is running another run raises ThreadBusyError
        and nothing is stored; with `"enqueue"` the run starts when the thread is free.
        """
        check_graph(self.store, graph)
        thread_id = thread_id or new_run_id()
        run_id = new_run_id()
        claimed = self.store.claim_thread(thread_id, run_id)
        if not claimed and on_busy == "reject":
            raise ThreadBusyError(
                f"thread {thread_id!r} is busy with run {self.store.active_run(thread_id)}"
            )
        try:
            create_run(self.store, graph=graph, run_input=input, thread_id=thread_id,
                       config=config, durability=durability, on_busy=on_busy,
                       run_id=run_id, routes=routes)
        except BaseException:
            self.store.release_thread(thread_id, run_id)
            raise
        if claimed:
            self.app.send_task(START_TASK, kwargs={"thread_id": thread_id, "run_id": run_id},
                               queue=self.settings.scheduler_queue)
        else:
            self.store.enqueue(thread_id, run_id)
            self.store.update_run(thread_id, run_id, status="waiting")
            self.store.add_event(thread_id, run_id, "waiting",
                                 behind=self.store.active_run(thread_id))
        return RunHandle(self, thread_id, run_id)

    def resume(self, thread_id: str, command: Command | Any, *, durability: str = "async",
               on_busy: str = "reject") -> RunHandle:
        """Answer the thread's pending interrupt(s); a bare value means Command(resume=value)."""
        if not isinstance(command, Command):
            command = Command(resume=command)
        runs = self.store.runs_of(thread_id)
        if not runs:
            raise InvalidResumeError(f"Thread {thread_id!r} has no runs to resume")
        graph = self.store.run(thread_id, runs[-1])["graph"]
        if command.resume is not None:
            head = self.saver.get_tuple({"configurable": {"thread_id": thread_id,
                                                          "checkpoint_ns": ""}})
            pending = {i.id for i in algo.pending_interrupts(head.pending_writes if head else [])}
            if not pending:
                raise InvalidResumeError(
                    f"Thread {thread_id!r} has no pending interrupt to resume"
                )
            is_map = isinstance(command.resume, dict) and bool(command.resume) and all(
                isinstance(k, str) and len(k) == 32 for k in command.resume
            )
            if is_map and (unknown := sorted(set(command.resume) - pending)):
                raise InvalidResumeError(f"Unknown or already answered interrupt id(s) {unknown}")
            if not is_map and len(pending) > 1:
                raise InvalidResumeError(
                    "When there are multiple pending interrupts, you must specify the "
                    "interrupt id when resuming: Command(resume={interrupt_id: value})."
                )
        return self.submit(graph, command, thread_id=thread_id, durability=durability,
                           on_busy=on_busy)

    def cancel(self, thread_id: str, run_id: str) -> None:
        """Stop a run after the tasks already running; no further superstep is dispatched."""
        run = self.store.run(thread_id, run_id)
        if run is None:
            raise LookupError(f"no run {run_id!r} on thread {thread_id!r}")
        if run["status"] in TERMINAL:
            return
        self.store.end_run(thread_id, run_id, "cancelled")

    def run(self, thread_id: str, run_id: str) -> RunHandle:
        return RunHandle(self, thread_id, run_id)

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
                "run_id": last["run_id"] if last else None,
                "graph": last["graph"] if last else None,
                "status": last["status"] if last else None,
            })
        return out

    def _graph_of(self, thread_id: str) -> Pregel:
        runs = self.store.runs_of(thread_id)
        if not runs:
            raise LookupError(f"no runs on thread {thread_id!r}")
        ref = self.store.run(thread_id, runs[-1])["graph"]
        try:
            return registry.resolve(ref)
        except registry.UnknownGraphError:
            module, _, attr = ref.partition(":")
            # A run record can be forged by anyone who can send start_run: import only the
            # modules this process is configured to run graphs from.
            if module not in self.settings.graph_modules:
                raise
            return getattr(importlib.import_module(module), attr)

    def _config(self, thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}}

    def get_state(self, thread_id: str) -> StateSnapshot:
        return self._graph_of(thread_id).get_state(self._config(thread_id),
                                                   checkpointer=self.saver)

    def get_state_history(self, thread_id: str, limit: int | None = None) -> list[StateSnapshot]:
        graph = self._graph_of(thread_id)
        return list(graph.get_state_history(self._config(thread_id), limit=limit,
                                            checkpointer=self.saver))
