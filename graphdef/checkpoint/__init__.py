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
    "SqliteSaver",
    "empty_checkpoint",
]
