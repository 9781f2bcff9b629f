"""The scheduler's Celery tasks, on the `scheduler` queue.

`celerygraph.start_run` is the documented entry point for producers in any language: send
it with JSON keyword arguments `graph`, `input`, `thread_id` (and optionally `config`,
`durability`, `on_busy`, `routes`, `run_id`), or with just `thread_id` and `run_id` for a run that
`scheduler.Client` already stored.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

from scheduler.driver import Driver, Outcome
from scheduler.runs import create_run
from worker.app import app
from worker.heartbeat import Heartbeat
from worker.resources import resources

log = logging.getLogger(__name__)

START_TASK = "celerygraph.start_run"
ADVANCE_TASK = "celerygraph.advance"
# How long a scheduler task waits for another one working on the same run (a start still
# dispatching when the first task's advance arrives); past that, the sweeper takes over.
LEASE_WAIT_SECONDS = 5.0


def _with_run_lease(thread_id: str, run_id: str, action: Any) -> Outcome:
    """Only one scheduler works on a run at a time; a dead one's lease lapses in seconds."""
    res = resources()
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    name = f"run-{run_id}"
    deadline = time.monotonic() + LEASE_WAIT_SECONDS
    while not res.store.acquire_lease(thread_id, name, owner, res.settings.lease_seconds):
        if time.monotonic() > deadline:
            return Outcome("busy")
        time.sleep(0.01)
    with Heartbeat(res.store, thread_id, name, owner, res.settings.lease_seconds):
        return action(Driver(res, app))


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
    outcome = _with_run_lease(thread_id, run_id, lambda d: d.start(thread_id, run_id))
    return outcome.status


@app.task(name=ADVANCE_TASK)
def advance(thread_id: str, run_id: str, checkpoint_id: str) -> str:
    resources().load_graphs()
    outcome = _with_run_lease(thread_id, run_id,
                              lambda d: d.advance(thread_id, run_id, checkpoint_id))
    return outcome.status
