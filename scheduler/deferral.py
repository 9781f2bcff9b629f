"""Savers that hold a task's memo back, unwritten, for a script that writes it together with
what must land at the same moment: counting the task done (`RunStore.finish_task`), or the
next checkpoint and step of a kept task (`RunStore.advance_kept`).

A memo and its count in one script is one round trip a task less, and no crash can fall
between them; a crash before the script is a crash before the memo, so the task runs again,
as it always did then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from graphdef.checkpoint.base import Config
from graphdef.checkpoint.delegate import DelegatingSaver
from graphdef.checkpoint.redis import HeadPut, PreparedWrites, RedisSaver


@dataclass
class Deferred:
    """What a deferring saver held back: one task's memo, and, for a kept task's saver, the
    root checkpoint put after it (None: not made yet, or it cannot go in a caller's
    script)."""

    task_id: str
    memo_seen: bool = False
    # Another write went through to the root namespace meanwhile (an `@task` call's memo):
    # the step's writes hash is no longer known to be empty.
    passed_root: bool = False
    memo: PreparedWrites | None = None
    put: HeadPut | None = None
    put_seen: bool = False


class MemoDeferringSaver(DelegatingSaver):
    """Delegates to a RedisSaver, holding back the memo of the task it was told to `defer`."""

    def __init__(self, saver: RedisSaver) -> None:
        super().__init__(saver)
        self.saver = saver
        self.deferred: Deferred | None = None

    def defer(self, task_id: str) -> None:
        """Hold back the root namespace's next memo of `task_id` (prepared: a value that
        cannot be stored fails as it would have); a subgraph's writes and other tasks'
        memos (its `@task` calls') go through."""
        self.deferred = Deferred(task_id)

    def take_deferred_memo(self) -> PreparedWrites | None:
        """Stop holding back: the held-back memo, for the caller's script to write (the
        first memo still wins there), or None."""
        held, self.deferred = self.deferred, None
        return None if held is None else held.memo

    def put_writes(self, config: Config, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        held = self.deferred
        if (held is not None and held.task_id == task_id and not held.memo_seen
                and not config["configurable"].get("checkpoint_ns")):
            held.memo = self.saver.prepare_writes(config, writes, task_id, task_path)
            held.memo_seen = True
            return
        if held is not None and not config["configurable"].get("checkpoint_ns"):
            held.passed_root = True
        self.saver.put_writes(config, writes, task_id, task_path)
