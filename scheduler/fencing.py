"""A saver wrapper that writes a checkpoint only on top of the head it was planned from.

Two schedulers that both try to advance one superstep both plan from the same head; the
compare-and-set lets exactly one of them write, and a stale writer cannot overwrite a
newer checkpoint.
"""

from __future__ import annotations

from typing import Any

from graphdef.checkpoint.redis import RedisSaver


class FencedSaver:
    """Delegates to a RedisSaver; `put` becomes a compare-and-set on the thread's head."""

    def __init__(self, saver: RedisSaver) -> None:
        self.saver = saver

    def __getattr__(self, name: str) -> Any:
        return getattr(self.saver, name)

    def put(self, config: dict[str, Any], checkpoint: Any, metadata: Any,
            new_versions: dict[str, int]) -> dict[str, Any]:
        expected = config["configurable"].get("checkpoint_id") or None
        return self.saver.put_if_head(config, checkpoint, metadata, new_versions,
                                      expected_head=expected)
