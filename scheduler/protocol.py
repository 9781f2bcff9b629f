"""The message contract between producers, the scheduler and node workers.

Every message celerygraph publishes is built and sent here, so a task's first dispatch and
the sweeper's re-dispatch of it cannot drift apart, and the README's wire format for
producers in other languages has one source. Messages are JSON, Celery protocol 2, and
carry ids only: state travels through Redis. Argument order is part of the contract, since
workers of the previous release may still read what an upgraded producer sends.

- `celerygraph.start_run`, on the scheduler queue: kwargs `thread_id`, and `run_id` of a
  stored run, or `graph` and `input` (optional `config`, `durability`, `on_busy`, `routes`,
  `run_id`).
- `celerygraph.start_and_run`, on a node queue: args `[thread_id, run_id]` of a stored run;
  a node worker starts it and runs its first task in place when it is bound for that queue
  (`runs.start_queue`), or passes the start on to the scheduler queue.
- `celerygraph.advance`, on the scheduler queue: args `[thread_id, run_id, checkpoint_id]`.
- `celerygraph.run_node`, on the node's queue: args
  `[thread_id, run_id, checkpoint_id, task_id, path]`.
- `celerygraph.run_nodes`, on the nodes' queue: args
  `[thread_id, run_id, checkpoint_id, [[task_id, path], ...]]`.
- `celerygraph.fire_cron`, on the scheduler queue: args `[cron_id]` (sent by Celery beat,
  `scheduler.beat`, at each of the HTTP API's cron ticks).
- `celerygraph.deliver_webhook`, on the scheduler queue: args `[thread_id, run_id, url]`,
  kwargs `attempt` and `polls` (sent by the HTTP API and by the task itself,
  `scheduler.webhooks`).

When a trace is current, every message carries its context in W3C headers (`traceparent`,
`tracestate`; `scheduler.tracing`). Node messages carry the headers `celerygraph_run` and
`celerygraph_thread`, and Celery's `shadow` name `<graph>.<node>`, which Flower lists them
by; a batch of N tasks is `<graph>.<node>+<other node>(xN)`, and each of its tasks sends
task events of its own under its node's name (`worker.rows`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from celery import Celery

from scheduler import tracing

START_TASK = "celerygraph.start_run"
START_AND_RUN_TASK = "celerygraph.start_and_run"
CRON_TASK = "celerygraph.fire_cron"
WEBHOOK_TASK = "celerygraph.deliver_webhook"
ADVANCE_TASK = "celerygraph.advance"
NODE_TASK = "celerygraph.run_node"
NODES_TASK = "celerygraph.run_nodes"

RUN_HEADER = "celerygraph_run"
THREAD_HEADER = "celerygraph_thread"

# A task's place in its superstep, `[kind, index or node]`: enough for a worker to plan that
# one task instead of the whole step. None: plan the step and pick the task by id.
TaskPath = list[Any] | None


@dataclass(frozen=True)
class StartRun:
    """Start a stored run (`thread_id`, `run_id`), or create one first (`graph`, `input`)."""

    thread_id: str
    run_id: str | None = None
    graph: str | None = None
    input: Any = None
    config: dict[str, Any] | None = None
    durability: str = "async"
    on_busy: str = "reject"
    routes: dict[str, str] | None = None
    context: Any = None

    def kwargs(self) -> dict[str, Any]:
        """Only what differs from the defaults: a stored run's start is its two ids."""
        defaults = asdict(StartRun(self.thread_id))
        return {k: v for k, v in asdict(self).items() if k == "thread_id" or v != defaults[k]}


@dataclass(frozen=True)
class Advance:
    """Apply a finished superstep's writes and go on with the run."""

    thread_id: str
    run_id: str
    checkpoint_id: str


@dataclass(frozen=True)
class NodeRef:
    """One task of a superstep, as a node message names it."""

    task_id: str
    path: TaskPath = None


@dataclass(frozen=True)
class RunNodes:
    """Tasks of one superstep to run on one queue; each keeps its own lease and memo."""

    thread_id: str
    run_id: str
    checkpoint_id: str
    tasks: tuple[NodeRef, ...]


def node_message_id(run_id: str, task_id: str) -> str:
    """The Celery task id of a task's first `run_node` message, and of its Flower row when
    it runs without one (in place, or in a batch)."""
    return f"{run_id[:8]}-{task_id}"


def shadow_name(graph_ref: str, node: str) -> str:
    """`<graph>.<node>`, the name Flower lists a node task by (`graph_ref` is
    `package.module:attribute`)."""
    return f"{graph_ref.rsplit(':', 1)[-1]}.{node}"


def parse_node_refs(raw: Any) -> tuple[NodeRef, ...] | None:
    """The task list of a `run_nodes` message, or None if it is not `[[task_id, path], ...]`."""
    if not isinstance(raw, list) or not all(
        isinstance(t, list) and len(t) == 2 and isinstance(t[0], str) for t in raw
    ):
        return None
    return tuple(NodeRef(task_id, path) for task_id, path in raw)


class Sender:
    """Publishes celerygraph's messages on a Celery app; the only caller of `send_task`."""

    def __init__(self, app: Celery, scheduler_queue: str) -> None:
        self.app = app
        self.scheduler_queue = scheduler_queue

    def start(self, message: StartRun) -> None:
        self.app.send_task(START_TASK, kwargs=message.kwargs(), queue=self.scheduler_queue,
                           headers=tracing.message_headers() or None)

    def start_and_run(self, thread_id: str, run_id: str, queue: str) -> None:
        """Start a stored run on a node worker of `queue` (`runs.start_queue`)."""
        self.app.send_task(START_AND_RUN_TASK, args=[thread_id, run_id], queue=queue,
                           headers=tracing.message_headers() or None)

    def advance(self, message: Advance, *, deduplicate: bool = False) -> None:
        """`deduplicate`: a worker's hand-over, one per step, gets a task id of its own."""
        task_id = (f"advance-{message.run_id}-{message.checkpoint_id}" if deduplicate
                   else None)
        self.app.send_task(ADVANCE_TASK, args=[message.thread_id, message.run_id,
                                               message.checkpoint_id],
                           queue=self.scheduler_queue, task_id=task_id,
                           headers=tracing.message_headers() or None)

    def webhook(self, thread_id: str, run_id: str, url: str, *, attempt: int, polls: int,
                countdown: float) -> None:
        """The run's webhook task, `countdown` seconds from now."""
        self.app.send_task(WEBHOOK_TASK, args=[thread_id, run_id, url],
                           kwargs={"attempt": attempt, "polls": polls},
                           queue=self.scheduler_queue, countdown=countdown)

    def nodes(self, message: RunNodes, *, queue: str, shadow: str | None,
              attempt: int = 1) -> None:
        """One task goes as `run_node`, several as `run_nodes`; `attempt` > 1 marks a
        re-dispatch, whose Celery task id differs from the lost one's."""
        first = message.tasks[0]
        task_id = node_message_id(message.run_id, first.task_id)
        if len(message.tasks) > 1:
            task_id += f"-x{len(message.tasks)}"
        if attempt > 1:
            task_id += f"-{attempt}"
        head = [message.thread_id, message.run_id, message.checkpoint_id]
        if len(message.tasks) == 1:
            name, args = NODE_TASK, [*head, first.task_id, first.path]
        else:
            name, args = NODES_TASK, [*head, [[t.task_id, t.path] for t in message.tasks]]
        self.app.send_task(name, args=args, queue=queue, task_id=task_id, shadow=shadow,
                           headers={RUN_HEADER: message.run_id,
                                    THREAD_HEADER: message.thread_id,
                                    **tracing.message_headers()})
