"""Flower rows for node runs that have no Celery message of their own.

A message's own task gets its task events from Celery. A node run in place (the lone next
task of a chain) or as one task of a `run_nodes` batch would otherwise be invisible: it
sends the same events itself (task-received, -started, -succeeded, -failed, -retried) under
an id of its own, so Flower lists it as `<graph>.<node>` with its state, runtime, arguments
and worker, as if it had been its own `run_node` message. The events go through Celery's
own event dispatcher, with the worker's node name, so Flower's state machine takes them
like any worker's.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis
from celery import Celery
from celery.events.dispatcher import EventDispatcher
from celery.utils.saferepr import saferepr

from graphdef import algo
from scheduler.errors import NodeFailedError
from scheduler.protocol import node_message_id

log = logging.getLogger(__name__)

# What running a node returns: its outcome (finished, interrupted, failed) and its error.
NodeResult = tuple[str, BaseException | None]
# Runs a node (given as a call that runs it) under its row; returns the node's outcome.
RowRunner = Callable[[Callable[[], NodeResult]], str]


class NodeRows:
    """The rows of the node runs one message carries.

    `own_task_id`: the task the message itself stands for (a `run_node` message's), whose
    row is the message's; None for a batch, whose message row names its nodes but whose
    tasks each get a row here. Its events go out through the process's `RowEvents`; `flush`
    before the message ends, so that Celery's own outcome event for the message's row comes
    after the one sent for its node (the row then keeps the message's runtime).
    """

    def __init__(self, app: Celery, request: Any, thread_id: str, run_id: str,
                 own_task_id: str | None) -> None:
        self.app = app
        self.hostname: str | None = getattr(request, "hostname", None)
        self.message_id: str | None = getattr(request, "id", None)
        self.root_id: str | None = getattr(request, "root_id", None) or self.message_id
        self.thread_id = thread_id
        self.run_id = run_id
        self.own_task_id = own_task_id
        self.own_error: BaseException | None = None
        self.enabled = bool(app.conf.worker_send_task_events)

    def row(self, name: str, checkpoint_id: str, task: algo.Task, *,
            restart: bool = False) -> RowRunner:
        """What runs `task` under its row named `name`. `restart`: the task ran before (its
        worker died), so its row gets an id of its own too instead of overwriting the lost
        run's."""
        return lambda node: self.run(name, checkpoint_id, task, restart=restart, node=node)

    def run(self, name: str, checkpoint_id: str, task: algo.Task, *, restart: bool,
            node: Callable[[], NodeResult]) -> str:
        """Run `node` under its row; returns its outcome.

        The message's own task has its row from Celery, which marks it finished only when
        the message is, after the nodes it then ran in place: its outcome is sent as soon as
        its node ends, so a worker killed in a later node does not leave it started.
        """
        own = task.id == self.own_task_id and self.message_id is not None
        if own:
            self.own_task_id = None  # a task runs once per message: later ones are in place
            row_id = str(self.message_id)
        else:
            row_id = node_message_id(self.run_id, task.id)
            if restart:
                row_id += f"-r{uuid.uuid4().hex[:6]}"
            args = [self.thread_id, self.run_id, checkpoint_id, task.id, list(task.path)]
            # Two events, as a message's task has: Flower's workers page counts task-received
            # as Processed, and its prefetched-tasks gauge falls on a task-started of a row
            # whose received time it knows, so one merged event would skew both.
            # Ids and a path: plain `repr` gives what Celery's `saferepr` would, without
            # its generic walk (which showed in a chain step's profile).
            self._send("task-received", row_id, name=name, args=repr(args), kwargs="{}",
                       root_id=self.root_id, parent_id=self.message_id, retries=0, eta=None,
                       expires=None)
            self._send("task-started", row_id)
        began = time.monotonic()
        try:
            outcome, error = node()
        except redis.RedisError as exc:
            # The message is retried (RETRY_ON_STORE_ERRORS); the sweeper sends this task
            # again, as it does any task that started and lost its lease.
            if not own:
                self._send("task-retried", row_id, exception=saferepr(exc),
                           traceback=traceback.format_exc())
            raise
        except Exception as exc:
            if not own:
                self._send("task-failed", row_id, exception=saferepr(exc),
                           traceback=traceback.format_exc())
            raise
        runtime = time.monotonic() - began
        if error is not None:
            self._send("task-failed", row_id, exception=saferepr(error),
                       traceback="".join(traceback.format_exception(error)))
            if own:
                self.own_error = error
        else:
            self._send("task-succeeded", row_id, result=repr(outcome), runtime=runtime)
        return outcome

    def raise_own_failure(self) -> None:
        """Fail the message's own task when its node failed, so that its row says so (the
        failure is already saved: the run has dealt with it)."""
        if self.own_error is not None:
            error = self.own_error
            raise NodeFailedError(f"{type(error).__name__}: {error}") from error

    def flush(self) -> None:
        """Wait (a little, at most) until this message's row events are out."""
        if self.enabled:
            row_events(self.app, self.hostname).flush(RowEvents.FLUSH_AT_EXIT_SECONDS)

    def _send(self, kind: str, row_id: str, **fields: Any) -> None:
        """Hand the event to the process's sender, stamped now; an event lost to a broker
        blip costs a row's detail, never the node."""
        if self.enabled:
            row_events(self.app, self.hostname).send(kind, row_id, time.time(), fields)


class RowEvents:
    """A process's thread that publishes row events in the order they were sent, through
    one event dispatcher of its own (a kombu producer is not to be shared between
    threads). `flush` waits until everything sent so far is out, and runs at exit.

    What was sent while the thread published, or within `LINGER_SECONDS` of the first
    event it woke for (a `flush` cuts that short), goes out as one message of Celery's
    multi-event form (a list body,
    routing key `task.multi`), which every Celery event receiver, Flower's too, takes event
    by event: a chain step's row is its received, started and succeeded events in about one
    `PUBLISH` instead of three. Flower sees a row up to `LINGER_SECONDS` later.
    """

    FLUSH_AT_EXIT_SECONDS = 2.0
    LINGER_SECONDS = 0.02
    MAX_BATCH = 200

    def __init__(self, app: Celery, hostname: str | None) -> None:
        self.app = app
        self.hostname = hostname
        self.pid = os.getpid()
        self._queue: queue.Queue[tuple[str, str, float, dict[str, Any]]] = queue.Queue()
        self._dispatcher: EventDispatcher | None = None
        self._hurry = threading.Event()  # a flush waits: linger no longer
        self._stack = contextlib.ExitStack()
        threading.Thread(target=self._run, name="celerygraph-row-events", daemon=True).start()
        atexit.register(self.flush, self.FLUSH_AT_EXIT_SECONDS)

    def send(self, kind: str, row_id: str, timestamp: float, fields: dict[str, Any]) -> None:
        self._queue.put((kind, row_id, timestamp, fields))

    def flush(self, timeout: float | None = None) -> bool:
        """Whether everything sent before the call went out (or failed) within `timeout`."""
        done = threading.Event()
        self._queue.put(("", "", 0.0, {"done": done}))
        self._hurry.set()
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            if batch[0][0]:
                # Linger asleep, not woken by each event sent meanwhile (a chain step sends
                # three, and each wake takes the GIL from the node's thread).
                self._hurry.wait(self.LINGER_SECONDS)
            self._hurry.clear()
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._publish([event for event in batch if event[0]])
            for kind, _, _, fields in batch:
                if not kind:
                    fields["done"].set()

    def _publish(self, events: list[tuple[str, str, float, dict[str, Any]]]) -> None:
        """Publish `events` as one message; on failure they are lost (see `NodeRows._send`)."""
        if not events:
            return
        try:
            dispatcher = self._dispatcher or self._stack.enter_context(self._open())
            self._dispatcher = dispatcher
            for kind, row_id, timestamp, fields in events:
                dispatcher.send(kind, uuid=row_id, timestamp=timestamp, **fields)
            dispatcher.flush(errors=False)
        except Exception:  # noqa: BLE001 - see NodeRows._send
            log.warning("could not send %d row event(s), from %s for %s", len(events),
                        events[0][0], events[0][1], exc_info=True)
            with contextlib.suppress(Exception):
                self._stack.close()
            self._dispatcher = None

    @contextlib.contextmanager
    def _open(self) -> Iterator[EventDispatcher]:
        """A dispatcher that buffers the `task` group's events until `flush` (what
        `app.events.default_dispatcher` gives, buffering added)."""
        events = self.app.events
        with (self.app.amqp.producer_pool.acquire(block=True) as producer,
              events.Dispatcher(producer.connection, self.hostname, True, producer.channel,
                                False, buffer_group=("task",),
                                buffer_limit=self.MAX_BATCH + 1) as dispatcher):
            yield dispatcher


_senders: dict[tuple[int, str | None], RowEvents] = {}
_senders_lock = threading.Lock()


def row_events(app: Celery, hostname: str | None) -> RowEvents:
    """This process's sender for `app`'s events under `hostname`; a forked child (a prefork
    pool process) starts its own."""
    key = (id(app), hostname)
    with _senders_lock:
        sender = _senders.get(key)
        if sender is None or sender.pid != os.getpid():
            sender = _senders[key] = RowEvents(app, hostname)
        return sender
