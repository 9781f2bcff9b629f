"""Leases: who works on a task or a run right now, and how a dead worker's work is found.

A lease is a key of the thread (`cg:{<thread>}:lease:<name>`) that holds its owner. It is
taken with an expiry of `lease_seconds`, so work that ends quickly (most tasks, every advance)
costs nothing more: no refresh, no bookkeeping. A lease still held after a sixth of that is
*adopted* by its process's `Liveness`: listed in the process's `held` set
(`scheduler.deadlines`), then made to outlive its expiry. From then on one heartbeat per
process, whatever the number of leases it holds, keeps them all: a threads or gevent worker
with 1,000 nodes parked on model calls beats once per beat, not 1,000 times.

Why not refresh each lease, as before: a refresh was a round trip per lease (3 commands, 4.5
a second per running node), and one thread could not keep up with many. With 1,000 nodes
parked in one threads worker on 2 cores, each round trip took 1-2 ms under the GIL of 1,000
threads; a pass over the leases took 1-2.3 s, past the 2 s they lived. Leases lapsed while
their nodes ran (some before their first refresh), the sweeper sent those nodes again, and
about half of 1,000 parked nodes ran twice. Here a beat is one command, and adopting any
number of new leases two round trips.

Crash reasoning:
- a process dies holding a fresh lease: it lapses within `lease_seconds`, and its run's look
  was pushed to no later than that when the lease was taken (`RunStore.acquire_lease`);
- a process dies holding adopted leases: its holder deadline passes within `lease_seconds`
  of its last beat; the sweeper revokes what its `held` set lists and looks at those runs;
- a process stalls (SIGSTOP, starvation) past its deadline: the same. When it wakes its
  leases are gone: its checkpoint writes are fenced (`scheduler.fencing`), its late memo
  loses to the first, and counting its task done again changes nothing;
- adopting is "list in `held`, then drop the expiry": dying between the two leaves a fresh
  lease that lapses, never one without an expiry that no `held` set lists;
- an adopted lease is released only after its run's look is pushed (what its release leaves
  open, such as the advance of a step it completed, is watched again), and forgotten in
  `held` only after the release; a release that fails is retried by the heartbeat thread.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import weakref
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType

import redis

from scheduler.deadlines import held_member
from scheduler.store import RunStore

log = logging.getLogger(__name__)

ADOPT_AFTER = 1 / 6  # of its lifetime: a lease held longer is adopted
BEATS_PER_LIFETIME = 3
RETRY_SECONDS = 0.1  # after a failed beat: the deadline does not wait for the next one


_owner_prefix = ""
_owner_pid = 0
_owner_count = itertools.count()


def new_owner() -> str:
    """A lease holder's id: which host and process holds it, unique per holding.

    A process (a forked pool child too) draws a random token once, then counts: ids are
    taken twice a step of a chain, where a host lookup and a uuid each time showed in the
    profile. The token keeps apart two processes that had the same pid."""
    global _owner_prefix, _owner_pid
    pid = os.getpid()
    if pid != _owner_pid:
        _owner_prefix, _owner_pid = f"{socket.gethostname()}:{pid}:{os.urandom(4).hex()}", pid
    return f"{_owner_prefix}:{next(_owner_count):x}"


def run_lease(run_id: str) -> str:
    """The lease a driver holds while it starts or advances a run (tasks' are their ids)."""
    return f"run-{run_id}"


class State(Enum):
    FRESH = "fresh"  # lapses by itself
    LISTED = "listed"  # in the holder's `held` set; being adopted, or its adoption failed
    ADOPTED = "adopted"  # kept by the holder's beat
    LOST = "lost"  # lapsed or taken before it could be adopted


@dataclass(eq=False)
class Hold:
    """One lease this process holds, as its liveness tracks it."""

    thread_id: str
    run_id: str
    name: str
    owner: str
    seconds: float
    since: float = field(default_factory=time.monotonic)
    state: State = State.FRESH

    @property
    def member(self) -> bytes:
        return held_member(self.thread_id, self.run_id, self.name, self.owner)

    @property
    def lease(self) -> tuple[str, str, str]:
        return self.thread_id, self.name, self.owner


class Liveness:
    """A process's one heartbeat for every lease it holds on one store.

    The holder entry exists only while the process holds an adopted lease; a process running
    short work never beats. Its own connections: node threads that exhausted the shared
    pool must not stop the beat (which would cost every lease of the process at once).
    """

    def __init__(self, store: RunStore) -> None:
        self.store = store.dedicated()
        self.holder = new_owner()
        self.pid = os.getpid()
        self._holds: set[Hold] = set()
        self._forget: list[bytes] = []  # members of released adopted leases
        self._unreleased: list[Hold] = []  # adopted leases whose release failed
        self._last_beat = 0.0
        self._retry_at = 0.0
        self._wake_at: float | None = None  # when the thread wakes next (None: when told)
        self._changed = threading.Condition()
        threading.Thread(target=self._run, name="celerygraph-liveness", daemon=True).start()

    def hold(self, hold: Hold) -> None:
        """Keep `hold`; the thread is woken only if it would wake too late to adopt it: a
        chain takes a lease a step, and waking the thread each time costs the node's thread
        a turn at the GIL."""
        with self._changed:
            self._holds.add(hold)
            if self._wake_at is None or hold.since + hold.seconds * ADOPT_AFTER < self._wake_at:
                self._changed.notify()

    def let_go(self, hold: Hold) -> bool:
        """Stop keeping `hold`; True if it is listed in `held` (adopted, or being adopted):
        the caller then pushes the run's look, releases the lease and calls `released`."""
        with self._changed:
            self._holds.discard(hold)
            return hold.state is not State.FRESH

    def released(self, hold: Hold, ok: bool) -> None:
        """A listed lease was released (`ok`), or could not be and is left to the beat."""
        with self._changed:
            if ok:
                self._forget.append(hold.member)
            else:
                self._unreleased.append(hold)
            self._changed.notify()

    # ---- the heartbeat thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._changed:
                while (wait := self._wait()) != 0.0:
                    self._wake_at = None if wait is None else time.monotonic() + wait
                    self._changed.wait(wait)
                self._wake_at = time.monotonic()
                now = time.monotonic()
                adopt = [h for h in self._holds if h.state is State.LISTED or (
                    h.state is State.FRESH and now - h.since >= h.seconds * ADOPT_AFTER)]
                for h in adopt:
                    h.state = State.LISTED
                forget, self._forget = self._forget, []
                unreleased, self._unreleased = self._unreleased, []
                lifetime = min((h.seconds for h in self._holds if h.state is not State.FRESH),
                               default=None)
            try:
                self._beat(adopt, forget, unreleased, lifetime)
            except Exception as exc:  # noqa: BLE001 - a Redis blip must not end the heartbeat
                log.warning("liveness beat of %s failed (%r); retrying", self.holder, exc)
                with self._changed:
                    self._forget[:0] = forget
                    self._unreleased[:0] = unreleased
                    self._retry_at = time.monotonic() + RETRY_SECONDS
            else:
                self._last_beat = now

    def _wait(self) -> float | None:
        """Seconds until the thread has work (0.0: now; None: nothing held). Under the lock."""
        now = time.monotonic()
        if now < self._retry_at:
            return self._retry_at - now
        if self._forget or self._unreleased:
            return 0.0
        wake = None
        for h in self._holds:
            if h.state is State.FRESH:
                at = h.since + h.seconds * ADOPT_AFTER
            elif h.state is State.LISTED:
                at = now
            else:
                at = self._last_beat + h.seconds / BEATS_PER_LIFETIME
            wake = at if wake is None else min(wake, at)
        return None if wake is None else max(wake - now, 0.0)

    def _beat(self, adopt: list[Hold], forget: list[bytes], unreleased: list[Hold],
              lifetime: float | None) -> None:
        store, index = self.store, self.store.deadlines
        if unreleased:
            now_ms = index.clock.now_ms()
            for h in unreleased:
                index.look_by(h.thread_id, h.run_id, now_ms)
            store.revoke_leases([h.lease for h in unreleased])
            forget = forget + [h.member for h in unreleased]
        if lifetime is None and not forget:
            return
        deadline = index.clock.now_ms() + int((lifetime or 0) * 1000)
        adds = [h.member for h in adopt]
        if not adopt:
            index.hold(self.holder, deadline, adds, forget)
            return
        # One round trip: few turns at the GIL for this thread, when node threads hold it.
        kept = store.adopt_leases(
            [h.lease for h in adopt],
            listing=lambda pipe: index.hold(self.holder, deadline, adds, forget, pipe))
        with self._changed:
            for h, ok in zip(adopt, kept, strict=True):
                h.state = State.ADOPTED if ok else State.LOST


_lock = threading.Lock()
_by_store: weakref.WeakKeyDictionary[RunStore, Liveness] = weakref.WeakKeyDictionary()


def liveness(store: RunStore) -> Liveness:
    """This process's liveness on `store`; a forked child (prefork pool) starts its own."""
    with _lock:
        live = _by_store.get(store)
        if live is None or live.pid != os.getpid():
            live = _by_store[store] = Liveness(store)
        return live


class Heartbeat:
    """Hold a taken lease in this process's liveness until the `with` block ends, then
    release it; with `hand_over`, a block that ends without an error leaves the release to
    the caller's next write (`RunStore.finish_task`, one round trip less), after which the
    caller calls `handed_over` (or `give_back` if that write failed).

    A lease taken before its task runs (a batch message's, `RunStore.acquire_leases`) is
    kept from the moment it is taken (`keep`), the block entered when its task runs; one
    whose task will not run here after all is `drop`ped."""

    def __init__(self, store: RunStore, thread_id: str, run_id: str, name: str, owner: str,
                 seconds: float, *, hand_over: bool = False):
        self.store = store
        self.hand_over = hand_over
        self.hold = Hold(thread_id, run_id, name, owner, seconds)
        self._listed = False
        self._kept = False

    def keep(self) -> Heartbeat:
        """Have this process's liveness keep the lease, from now until the block ends."""
        if not self._kept:
            liveness(self.store).hold(self.hold)
            self._kept = True
        return self

    def __enter__(self) -> Heartbeat:
        return self.keep()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._let_go()
        if exc_type is None and self.hand_over:
            return
        self.give_back()

    def drop(self) -> None:
        """Stop keeping a kept lease whose task will not run here, and release it; nothing
        if its block ran (which let it go)."""
        if self._kept:
            self._let_go()
            self.give_back()

    def _let_go(self) -> None:
        """Stop keeping the lease; if it was listed, first push its run's look."""
        hold = self.hold
        live = liveness(self.store)
        self._kept = False
        self._listed = live.let_go(hold)
        if self._listed:
            # Its holder's beat no longer covers what this lease covered: look again soon.
            try:
                self.store.deadlines.look_by(hold.thread_id, hold.run_id,
                                             self.store.deadlines.clock.now_ms()
                                             + int(hold.seconds * 1000))
            except redis.RedisError:
                live.released(hold, ok=False)  # the beat pushes the look, then releases
                raise

    @property
    def listed(self) -> bool:
        """Whether the lease was listed in its holder's `held` set when the block ended (it
        may have been adopted: it does not lapse by itself, so it must be released)."""
        return self._listed

    def handed_over(self) -> None:
        """The caller's write released the lease."""
        if self._listed:
            liveness(self.store).released(self.hold, ok=True)

    def give_back(self) -> None:
        """Release the lease now; if Redis refuses, a listed one is left to the heartbeat
        thread (it must not outlive this holding), a fresh one lapses by itself."""
        hold = self.hold
        try:
            self.store.release_lease(hold.thread_id, hold.name, hold.owner)
        except redis.RedisError:
            if self._listed:
                liveness(self.store).released(hold, ok=False)
            raise
        if self._listed:
            liveness(self.store).released(hold, ok=True)
