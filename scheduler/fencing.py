"""A saver wrapper that writes a checkpoint only on top of the head it was planned from.

Two schedulers that both try to advance one superstep both plan from the same head; the
compare-and-set lets exactly one of them write, and a stale writer cannot overwrite a
newer checkpoint.
"""

from __future__ import annotations

from graphdef.checkpoint.base import Checkpoint, CheckpointMetadata, Config
from graphdef.checkpoint.delegate import DelegatingSaver
from graphdef.checkpoint.redis import RedisSaver


class FencedSaver(DelegatingSaver):
    """Delegates to a RedisSaver; `put` becomes a compare-and-set on the thread's head."""

    def __init__(self, saver: RedisSaver) -> None:
        super().__init__(saver)
        self.saver = saver

    def put(self, config: Config, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: dict[str, int]) -> Config:
        expected = config["configurable"].get("checkpoint_id") or None
        return self.saver.put_if_head(config, checkpoint, metadata, new_versions,
                                      expected_head=expected)
