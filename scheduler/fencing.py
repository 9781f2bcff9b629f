"""A saver wrapper that writes a checkpoint only on top of the head it was planned from, and
only while its driver holds the run's lease.

Two schedulers that both try to advance one superstep both plan from the same head; the
compare-and-set lets exactly one of them write, and a stale writer cannot overwrite a
newer checkpoint. The lease check covers a driver that stalled (paused, starved) past its
lease while another took the run over and moved it on: the head it reads when it wakes is
current, but it no longer owns the run, so it writes nothing.

A kept task's memo and the checkpoint that ends its step can also be held back (`defer`),
to go with the next step's record in one script (`RunStore.advance_kept`).
"""

from __future__ import annotations

from collections.abc import Callable

from graphdef.checkpoint.base import (
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    Config,
    checkpoint_config,
)
from graphdef.checkpoint.redis import RedisSaver
from scheduler.deferral import MemoDeferringSaver


class FencedSaver(MemoDeferringSaver):
    """Delegates to a RedisSaver; `put` becomes a compare-and-set on the thread's head. Told
    to `defer` a kept task's memo, it holds back the root checkpoint put after it too."""

    def __init__(self, saver: RedisSaver, lease: tuple[str, str] | None = None) -> None:
        super().__init__(saver)
        self.lease = lease
        # Called with the expected head just before each write: a streaming run's chunks
        # of the step land before the checkpoint that ends it (`Driver._attach`).
        self.before_put: Callable[[str | None], None] | None = None
        self._head_once: tuple[str | None] | None = None
        self._none_once = False

    def fence(self, lease: tuple[str, str] | None) -> None:
        """Write only while `lease` (its key, its owner) is held: a loop kept across
        advances is fenced by each advance's own lease."""
        self.lease = lease

    def expect_head_once(self, head: str | None) -> None:
        """The next write goes on top of `head`, not of the checkpoint its config names: a
        run forked from a past checkpoint writes its first checkpoint over the head."""
        self._head_once = (head,)

    def expect_none_once(self) -> None:
        """The next read finds no checkpoint without asking the store: its caller read the
        thread's head as none just before, holding the thread (a start on a new thread: one
        round trip less before its first node is sent). Were one written meanwhile, the
        next write's compare-and-set on no head fails, as any stale writer's does."""
        self._none_once = True

    def deferred_written(self) -> None:
        """The caller's script stored what was held back: stop holding back, and let the
        saver's caches learn the put (the next put goes on it in one script)."""
        held, self.deferred = self.deferred, None
        if held is not None and held.put is not None:
            self.saver.finish_head_put(held.put, b"ok")

    def get_tuple(self, config: Config) -> CheckpointTuple | None:
        if self._none_once:
            self._none_once = False
            return None
        return self.saver.get_tuple(config)

    def put(self, config: Config, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: dict[str, int]) -> Config:
        expected = config["configurable"].get("checkpoint_id") or None
        if self._head_once is not None:
            (expected,), self._head_once = self._head_once, None
        if self.before_put is not None:
            self.before_put(expected)
        held = self.deferred
        if held is not None and held.memo_seen and not held.put_seen and not (
                config["configurable"].get("checkpoint_ns")):
            held.put_seen = True
            held.put = self.saver.prepare_head_put(config, checkpoint, metadata, new_versions,
                                                   expected)
            conf = config["configurable"]
            return checkpoint_config(conf["thread_id"], "", checkpoint["id"])
        return self.saver.put_if_head(config, checkpoint, metadata, new_versions,
                                      expected_head=expected, guard=self.lease)
