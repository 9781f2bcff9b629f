"""A saver that hands every call to another one.

The distributed side narrows or guards a few calls of a Redis saver (a compare-and-set
`put`, a read of one task's writes) and must still hand the run loop a real saver: a
subclass of this one overrides just those calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from graphdef.checkpoint.base import (
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    Config,
)


class DelegatingSaver(BaseCheckpointSaver):
    def __init__(self, inner: BaseCheckpointSaver) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.codec = inner.codec  # one size limit and one decode cache with the inner saver

    def get_tuple(self, config: Config) -> CheckpointTuple | None:
        return self.inner.get_tuple(config)

    def head(self, thread_id: str, ns: str = "") -> str | None:
        return self.inner.head(thread_id, ns)

    def list(
        self,
        config: Config | None,
        *,
        filter: dict[str, Any] | None = None,
        before: Config | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self.inner.list(config, filter=filter, before=before, limit=limit)

    def put(self, config: Config, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: dict[str, int]) -> Config:
        return self.inner.put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config: Config, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        self.inner.put_writes(config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self.inner.delete_thread(thread_id)

    def prune(self, thread_id: str, *, keep_last: int) -> None:
        self.inner.prune(thread_id, keep_last=keep_last)

    def stored_bytes(self, thread_id: str | None = None) -> int:
        return self.inner.stored_bytes(thread_id)

    def get_next_version(self, current: int | None) -> int:
        return self.inner.get_next_version(current)
