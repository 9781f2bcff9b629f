"""Finds work whose process died and sends it again, within seconds.

A node task that started (it took a lease) but has neither a memo nor a live lease lost its
worker: it is re-dispatched at once instead of after the broker's visibility timeout. A
superstep whose tasks all finished but was never advanced (the scheduler died) is advanced
again, and a run that never started is started again.

What it reads is only what is due (`scheduler.deadlines`): runs whose look came due, and
worker processes that stopped beating, whose adopted leases it revokes before it looks at
their runs. A run whose tasks are all kept by live processes costs nothing while it runs:
the sweep no longer reads every active run every pass (6 commands per run, and at 1,000
running nodes a pass of 0.5-1.7 s, longer than its interval, so that its election lapsed
and three sweepers ran at once).

Every worker process runs a sweeper thread; the live sweepers split the index's shards by
rank, so several share the work and a dead sweeper's shards are taken over within seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Any

import redis
from celery import Celery

from scheduler import metrics
from scheduler.deadlines import SHARDS, parse
from scheduler.leases import run_lease
from scheduler.protocol import Advance, NodeRef, RunNodes, Sender, StartRun
from scheduler.records import RunRecord, RunStatus
from scheduler.resources import Resources
from scheduler.store import started_field

log = logging.getLogger(__name__)

LOOKS_PER_PASS = 256  # members of a shard taken per pass; more wait for the next
# A run claimed for a look is set this many lease lifetimes ahead (`scheduler.deadlines`,
# "Claims"); a look slower than half of that keeps its runs due rather than drop any.
CLAIM_LIFETIMES = 4
WAIT_LOOK_MAX = 5  # lease lifetimes: the longest gap between looks at work in a queue


class Sweeper:
    def __init__(self, res: Resources, app: Celery) -> None:
        self.res = res
        self.index = res.store.deadlines
        self.send = Sender(app, res.settings.scheduler_queue)
        self.owner = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="celerygraph-sweeper",
                                        daemon=True)
        self.redispatched = 0
        self.published = False
        self.owned: list[int] = []  # the shards this sweeper sweeps
        self._next_view = 0.0
        url = res.settings.redis_broker_url
        self.broker = redis.Redis.from_url(url) if url else None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(redis.RedisError):
            self.index.leave(self.owner)

    def _loop(self) -> None:
        interval = self.res.settings.sweep_seconds
        while not self._stop.wait(interval):
            try:
                if not self.published:
                    self.res.publish_graphs()
                    self.published = True
                self.follow_peers()
                if self.owned:
                    began = time.perf_counter()
                    self.sweep()
                    metrics.swept(time.perf_counter() - began)
            except Exception:  # a Redis blip (or a store not up yet) must not end the thread
                log.exception("sweep failed")

    # ---- shards -----------------------------------------------------------------------------

    def follow_peers(self) -> None:
        """Every half claim lifetime: say this sweeper is alive, and take the shards its rank
        among the live sweepers gives it. A sweeper that died drops out of the count within a
        lifetime and its shards go to the others; views that differ for a moment make two
        sweepers look at a shard, or none for a pass: a look is safe to repeat."""
        ttl = self.res.settings.sweep_seconds * 4
        now = time.monotonic()
        if now < self._next_view:
            return
        self._next_view = now + ttl / 2
        live = self.index.sweepers(self.owner, int(ttl * 1000))
        if self.owner not in live:  # its own entry lapsed while it stalled: back next time
            self.owned = []
            return
        rank = live.index(self.owner)
        self.owned = [k for k in range(SHARDS) if k % len(live) == rank]

    def sweep(self, shards: range | list[int] | None = None) -> None:
        """One pass over the shards this sweeper holds (or `shards`)."""
        for shard in self.owned if shards is None else shards:
            self.sweep_shard(shard)

    def sweep_shard(self, shard: int) -> None:
        index = self.index
        now_ms = index.clock.now_ms()
        due = index.due(shard, now_ms, LOOKS_PER_PASS)
        if not due:
            return
        holders = {m: -1 for m in due if parse(m)[0] == "h"}
        for member in index.claim(shard, now_ms, holders):
            self._bury(shard, parse(member)[1])
        lifetime_ms = int(self.res.settings.lease_seconds * 1000)
        claim_ms = now_ms + CLAIM_LIFETIMES * lifetime_ms
        runs = index.claim(shard, now_ms, {m: claim_ms for m in due if m not in holders})
        began = time.monotonic()
        looks: dict[bytes, int | None] = {}
        for member in runs:
            _, thread_id, run_id = parse(member)
            try:
                after = self.look(thread_id, run_id)
            except Exception:  # one bad run must not stop the others: look again later
                log.exception("look at run %s of thread %r failed", run_id, thread_id)
                after = self.res.settings.lease_seconds
            looks[member] = None if after is None else index.clock.now_ms() + int(after * 1000)
        if (time.monotonic() - began) * 1000 > CLAIM_LIFETIMES * lifetime_ms / 2:
            # A push this late could be at or past the claim score, so that the settle would
            # not see it: drop nothing, look again next pass.
            looks = {m: now_ms if at is None else at for m, at in looks.items()}
        index.settle(shard, claim_ms, looks)

    def _bury(self, shard: int, holder: str) -> None:
        """A process stopped beating: revoke the leases it adopted, then look at their runs
        (revoked first, so the look sees them gone), then forget them, then the process."""
        members = self.index.held(shard, holder)
        if members:
            held = [parse(m) for m in members]
            log.warning("worker process %s stopped beating; revoking its %d leases",
                        holder, len(held))
            self.res.store.revoke_leases([(t, name, owner) for t, _, name, owner in held])
            for thread_id, run_id, _, _ in held:
                self.index.look_by(thread_id, run_id, 0)
            self.index.forget_held(shard, holder, members)
        self.index.retire(shard, holder)

    # ---- a look at one run ------------------------------------------------------------------

    def look(self, thread_id: str, run_id: str) -> float | None:
        """Act on what the run waits on; seconds until the next look, None when its lease
        holders' liveness watches all that is left (or nothing is)."""
        store = self.res.store
        grace = self.res.settings.lease_seconds
        now = time.time()
        run, lease_ms, driven = store.run_and_lease(thread_id, run_id, run_lease(run_id))
        if run is None or run.status.settled:
            # Ended, or paused (nothing happens until a resume, which is a run of its own):
            # `end_run` retires it after its transaction, and this look is what retires it
            # when the process died in between.
            store.retire(thread_id, run_id)
            return None
        if lease_ms != -2:
            # A driver starts or advances it; if it dies, its lease lapses or is revoked.
            return lease_ms / 1000 if lease_ms > 0 else grace
        if run.status == RunStatus.WAITING:
            # Queued behind a run that ended before this one joined the queue.
            if store.active_run(thread_id) is None and store.claim_thread(thread_id, run_id):
                store.unqueue(thread_id, run_id)
                self._send_start(run)
                return grace
            return _waiting(now - run.updated_at, grace)
        if not run.step:
            # Queued: never started, or running: its start died before dispatching the first
            # step.
            age = now - run.updated_at
            if age <= grace:
                return grace - age
            if not driven and self._queue_length(self.res.settings.scheduler_queue, {}):
                # No driver ever took it: its start message waits behind others (1,000 runs
                # submitted at once). Another copy would only lengthen the queue. A start
                # sent to a node queue (`runs.start_queue`) gets its copy on the scheduler
                # queue all the same: no worker may be taking that queue at all.
                return _waiting(age, grace)
            self._send_start(run)
            return grace
        return self._look_step(run, run.step, now, grace)

    def _look_step(self, run: RunRecord, checkpoint_id: str, now: float,
                   grace: float) -> float | None:
        store = self.res.store
        thread_id, run_id = run.thread_id, run.run_id
        info, tasks, done = store.step_state(thread_id, run_id, checkpoint_id)
        advance_at = float(info.get("advance_at", 0) or 0)
        if advance_at:
            if now - advance_at > grace:
                log.warning("re-advancing run %s at %s", run_id, checkpoint_id)
                store.note_readvance(thread_id, run_id, checkpoint_id, now)
                self.send.advance(Advance(thread_id, run_id, checkpoint_id))
                metrics.redispatched("advance")
                return grace
            return advance_at + grace - now
        # A dispatch that died half-way: send again what never started.
        opened_at = float(info.get("opened_at", now))
        half_sent = not info.get("sent") and now - opened_at > grace
        undone = [t for t in tasks if t not in done]
        leases = store.task_leases(thread_id, undone)
        queues: dict[str, int] = {}
        after: float | None = None
        for task_id in undone:
            task = tasks[task_id]
            ttl_ms, started = leases[task_id]
            started = started or started_field(task_id) in info
            if ttl_ms == -1:
                continue  # adopted: its holder's liveness watches it
            dispatched_at = float(task.get("dispatched_at", now))
            if ttl_ms > 0:
                wait = ttl_ms / 1000  # fresh: look when it would have lapsed
            elif not started and not (half_sent or self._taken_and_lost(task, now, grace,
                                                                        queues)):
                wait = _waiting(now - dispatched_at, grace)  # in its queue
                if not info.get("sent"):
                    wait = min(wait, opened_at + grace - now)
            elif now - dispatched_at < grace:
                wait = dispatched_at + grace - now
            else:
                self._redispatch(run, checkpoint_id, task_id, task, now, started)
                wait = grace
            after = wait if after is None else min(after, wait)
        if half_sent:
            store.mark_sent(thread_id, run_id, checkpoint_id)
        return None if after is None else max(after, 0.0)

    def _redispatch(self, run: RunRecord, checkpoint_id: str, task_id: str,
                    task: dict[str, Any], now: float, started: bool) -> None:
        store = self.res.store
        thread_id, run_id = run.thread_id, run.run_id
        if started:
            metrics.lease_expired()
        attempt = int(task.get("attempt", 1)) + 1
        store.note_redispatch(thread_id, run_id, checkpoint_id, task_id,
                              {**task, "attempt": attempt, "dispatched_at": now}, started)
        store.add_event(thread_id, run_id, "task_redispatched", task_id=task_id,
                        node=task.get("node"), attempt=attempt)
        log.warning("re-dispatching lost task %s (%s), attempt %d",
                    task_id, task.get("node"), attempt)
        self.redispatched += 1
        self.send.nodes(
            RunNodes(thread_id, run_id, checkpoint_id, (NodeRef(task_id, task.get("path")),)),
            queue=task.get("queue") or self.res.settings.node_queue,
            shadow=task.get("shadow"), attempt=attempt,
        )
        metrics.redispatched("node")

    def _taken_and_lost(self, task: dict[str, Any], now: float, grace: float,
                        queues: dict[str, int]) -> bool:
        """A never-started task no longer in its (Redis) queue: a consumer took it and died.

        Kombu's Redis transport would hand it back only after the visibility timeout. With
        the queue empty, a task still not started after a few lease lifetimes is not waiting
        behind others; sending it again is safe (lease and memo stop a second run).
        `queues`: lengths already read in this look.
        """
        if self.broker is None or now - task.get("dispatched_at", now) < 3 * grace:
            return False
        return self._queue_length(task.get("queue") or self.res.settings.node_queue,
                                  queues) == 0

    def _queue_length(self, queue: str, queues: dict[str, int]) -> int | None:
        """Messages waiting in a Redis broker's queue (None with another broker); `queues`:
        lengths already read in this look."""
        if self.broker is None:
            return None
        if queue not in queues:
            queues[queue] = int(self.broker.llen(queue))
        return queues[queue]

    def _send_start(self, run: RunRecord) -> None:
        self.res.store.update_run(run.thread_id, run.run_id)
        self.send.start(StartRun(run.thread_id, run.run_id))
        metrics.redispatched("start")


def _waiting(age: float, grace: float) -> float:
    """When to look again at something waiting in a queue for `age` seconds: soon at first,
    then less often the longer it waits (half its age, at most WAIT_LOOK_MAX lifetimes), so
    that a backlog does not cost a read per queued item per pass."""
    return min(max(grace, age / 2), WAIT_LOOK_MAX * grace)
