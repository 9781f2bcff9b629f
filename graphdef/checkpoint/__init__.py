"""Checkpoint savers: where a thread's state and its tasks' finished writes are kept."""

from graphdef.checkpoint.base import (
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    empty_checkpoint,
)
from graphdef.checkpoint.memory import InMemorySaver
from graphdef.checkpoint.sqlite import SqliteSaver

__all__ = [
    "BaseCheckpointSaver",
    "Checkpoint",
    "CheckpointMetadata",
    "CheckpointTuple",
    "InMemorySaver",
    "RedisSaver",
    "SqliteSaver",
    "empty_checkpoint",
]


def __getattr__(name: str):  # RedisSaver on first use: importing redis costs ~0.1 s
    if name == "RedisSaver":
        from graphdef.checkpoint.redis import RedisSaver

        return RedisSaver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
