"""The leases of a batch message's tasks (`run_nodes`), taken together before they run.

Each task keeps a lease and a `started` marker of its own, so the sweeper sees a batch's
tasks as it sees lone ones; what changes is the cost: one script takes them all, after one
push of the run's look (`RunStore.acquire_leases`), where each task took its own with a
look and a script of its own (5 commands a task; now 1, plus 5 a message). A lease taken
before its task's turn is kept by this process's liveness from the moment it is taken, as
a running task's is, and given back if the message ends before its turn
(`RunStore.acquire_leases` has the crash reasoning).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import redis

from scheduler.leases import Heartbeat, new_owner
from scheduler.resources import Resources
from scheduler.store import StepView


@dataclass(frozen=True)
class TakenLease:
    """A task's lease as its batch took it: its owner, its grant (`acquire_lease`'s; 0:
    not taken), and the heartbeat keeping it since (None when not taken)."""

    owner: str
    grant: int
    beat: Heartbeat | None


class BatchLeases:
    """The leases of one message's tasks, taken once its step view says its run is live and
    which of its tasks the step was dispatched with (the others are left to `execute_node`,
    which refuses them)."""

    def __init__(self, res: Resources, thread_id: str, run_id: str, checkpoint_id: str,
                 task_ids: list[str], view: StepView) -> None:
        self._taken: dict[str, TakenLease] = {}
        self._beats: list[Heartbeat] = []
        if view.run is None or view.run.status.terminal:
            return
        # A task named twice in one message gets one lease: the second finds none here
        # and asks for its own, which its count (or the first's lease) refuses.
        owners = [(t, new_owner()) for t in dict.fromkeys(task_ids) if t in view.dispatched]
        seconds = res.settings.lease_seconds
        grants = res.store.acquire_leases(thread_id, run_id, checkpoint_id, owners, seconds)
        for (task_id, owner), grant in zip(owners, grants, strict=True):
            beat = None
            if grant:
                beat = Heartbeat(res.store, thread_id, run_id, task_id, owner, seconds,
                                 hand_over=True).keep()
                self._beats.append(beat)
            self._taken[task_id] = TakenLease(owner, grant, beat)

    def take(self, task_id: str) -> TakenLease | None:
        """The task's lease as the batch took it, once; None if the batch took none for it."""
        return self._taken.pop(task_id, None)

    def drop_rest(self) -> None:
        """Give back every lease whose task did not run (the message ended early). One that
        Redis refuses to release is not lost: a fresh one lapses by itself, a listed one is
        left to the heartbeat thread (`Heartbeat.drop`); the others are given back still."""
        for beat in self._beats:
            with contextlib.suppress(redis.RedisError):
                beat.drop()
