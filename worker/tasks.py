"""The node task: run one task of a superstep, and advance the run if it was the last.

The worker that completes a superstep's barrier advances the run itself (under the run's
lease), rather than sending a message to the scheduler queue and waiting for it: one broker
round trip less per superstep. When the next superstep is a single task bound for the queue
this message came from, that task runs here too (`CELERYGRAPH_CHAIN_IN_PLACE`).
"""

from __future__ import annotations

from typing import Any

import redis

from worker.app import app
from worker.driver import KeptTask, with_run_lease
from worker.node import ADVANCE_TASK, NODE_TASK, execute_node
from worker.resources import Resources, resources

# How long a node worker waits for the run's lease before leaving the advance to the
# scheduler queue: a start or another advance holds it for milliseconds at most.
ADVANCE_LEASE_WAIT = 0.5


# A store outage must not turn into an acknowledged, lost task: retry until Redis answers.
@app.task(name=NODE_TASK, bind=True, autoretry_for=(redis.RedisError,), retry_backoff=0.5,
          retry_backoff_max=5, retry_jitter=False, max_retries=None)
def run_node(self: Any, thread_id: str, run_id: str, checkpoint_id: str, task_id: str,
             path: list[Any] | None = None) -> None:
    """`path` ([kind, index or node]) lets the worker plan only its own task."""
    res = resources()
    res.load_graphs()
    queue = (self.request.delivery_info or {}).get("routing_key")
    run_here = queue if res.settings.chain_in_place else None
    while execute_node(res, thread_id, run_id, checkpoint_id, task_id, path):
        kept = _advance(res, thread_id, run_id, checkpoint_id, run_here)
        if kept is None:
            return
        checkpoint_id, task_id, path = kept.checkpoint_id, kept.task_id, kept.path


def _advance(res: Resources, thread_id: str, run_id: str, checkpoint_id: str,
             run_here: str | None) -> KeptTask | None:
    """Advance here; the next task if it is ours to run, None when nothing is left to do."""
    outcome = with_run_lease(
        res, app, thread_id, run_id, lambda d: d.advance(thread_id, run_id, checkpoint_id),
        run_here=run_here, wait=ADVANCE_LEASE_WAIT,
    )
    if outcome.status == "busy":
        app.send_task(ADVANCE_TASK, args=[thread_id, run_id, checkpoint_id],
                      queue=res.settings.scheduler_queue,
                      task_id=f"advance-{run_id}-{checkpoint_id}")
        return None
    return outcome.detail if isinstance(outcome.detail, KeptTask) else None
