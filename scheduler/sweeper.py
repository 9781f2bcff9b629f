"""Finds work whose process died and sends it again, within seconds.

A node task that started (it took a lease) but has neither a memo nor a live lease lost its
worker: it is re-dispatched at once instead of after the broker's visibility timeout. A
superstep whose tasks all finished but was never advanced (the scheduler died) is advanced
again, and a run that never started is started again. One sweeper runs at a time, elected
through a short Redis lease, in whichever worker process holds it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import redis
from celery import Celery

from scheduler import metrics
from scheduler.leases import run_lease
from scheduler.protocol import Advance, NodeRef, RunNodes, Sender, StartRun
from scheduler.records import RunRecord, RunStatus
from scheduler.resources import Resources

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, res: Resources, app: Celery) -> None:
        self.res = res
        self.send = Sender(app, res.settings.scheduler_queue)
        self.owner = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="celerygraph-sweeper",
                                        daemon=True)
        self.redispatched = 0
        self.published = False
        url = res.settings.redis_broker_url
        self.broker = redis.Redis.from_url(url) if url else None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        interval = self.res.settings.sweep_seconds
        while not self._stop.wait(interval):
            try:
                if not self.published:
                    self.res.publish_graphs()
                    self.published = True
                if self.res.store.try_sweeper(self.owner, interval * 4):
                    began = time.perf_counter()
                    self.sweep()
                    metrics.swept(time.perf_counter() - began)
            except Exception:  # a Redis blip (or a store not up yet) must not end the thread
                log.exception("sweep failed")

    def sweep(self) -> None:
        store = self.res.store
        grace = self.res.settings.lease_seconds
        now = time.time()
        for thread_id, run_id in store.active_runs():
            run = store.run(thread_id, run_id)
            if run is None or run.status.terminal:
                store.retire(thread_id, run_id)
                continue
            if store.lease_alive(thread_id, run_lease(run_id)):
                continue
            if run.status == RunStatus.QUEUED or (
                run.status == RunStatus.RUNNING and not run.step
            ):
                # Never started, or its start died before dispatching the first step.
                if now - run.updated_at > grace:
                    self._send_start(run)
                continue
            if run.status == RunStatus.WAITING:
                # Queued behind a run that ended before this one joined the queue.
                if store.active_run(thread_id) is None and store.claim_thread(thread_id, run_id):
                    store.unqueue(thread_id, run_id)
                    self._send_start(run)
                continue
            if run.step:
                self._sweep_step(run, run.step, now, grace)

    def _sweep_step(self, run: RunRecord, checkpoint_id: str, now: float,
                    grace: float) -> None:
        store = self.res.store
        thread_id, run_id = run.thread_id, run.run_id
        info = store.step_info(thread_id, run_id, checkpoint_id)
        advance_at = float(info.get("advance_at", 0) or 0)
        if advance_at:
            if now - advance_at > grace:
                log.warning("re-advancing run %s at %s", run_id, checkpoint_id)
                store.note_readvance(thread_id, run_id, checkpoint_id, now)
                self.send.advance(Advance(thread_id, run_id, checkpoint_id))
                metrics.redispatched("advance")
            return
        # A dispatch that died half-way: send again what never started.
        half_sent = not info.get("sent") and now - float(info.get("opened_at", now)) > grace
        for task_id, task in store.step_tasks(thread_id, run_id, checkpoint_id).items():
            if store.is_done(thread_id, run_id, checkpoint_id, task_id):
                continue
            if store.lease_alive(thread_id, task_id):
                continue
            started = store.was_started(thread_id, task_id)
            if not started and not (half_sent or self._taken_and_lost(task, now, grace)):
                continue
            if now - task.get("dispatched_at", now) < grace:
                continue
            if started:
                metrics.lease_expired()
            attempt = int(task.get("attempt", 1)) + 1
            store.note_redispatch(thread_id, run_id, checkpoint_id, task_id,
                                  {**task, "attempt": attempt, "dispatched_at": now})
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
        if half_sent:
            store.mark_sent(thread_id, run_id, checkpoint_id)

    def _taken_and_lost(self, task: dict[str, Any], now: float, grace: float) -> bool:
        """A never-started task no longer in its (Redis) queue: a consumer took it and died.

        Kombu's Redis transport would hand it back only after the visibility timeout. With
        the queue empty, a task still not started after a few lease lifetimes is not waiting
        behind others; sending it again is safe (lease and memo stop a second run).
        """
        if self.broker is None or now - task.get("dispatched_at", now) < 3 * grace:
            return False
        queue = task.get("queue") or self.res.settings.node_queue
        return int(self.broker.llen(queue)) == 0

    def _send_start(self, run: RunRecord) -> None:
        self.res.store.update_run(run.thread_id, run.run_id)
        self.send.start(StartRun(run.thread_id, run.run_id))
        metrics.redispatched("start")
