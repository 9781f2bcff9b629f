"""A worker process's copies of the checkpoints its batch messages ran tasks on.

A wide superstep goes out as many messages (`CELERYGRAPH_STEP_MESSAGES`), and a worker
process often takes several of one step. Each read the step's checkpoint: a load script,
the row and every channel's blob, about eight Redis commands a message. A dispatched step's
checkpoint is immutable, and so are its null task's writes while the run that dispatched it
runs (a resume or a state edit belongs to another run, or waits for this one to end): one
copy per (thread, run, checkpoint) serves every later message of the step in this process.
It serves only tasks that never started before (`OwnWritesSaver`): a task's own writes are
read from the store, as ever.

Bounded by count: a step's messages come close together, so a few steps are enough.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from graphdef.checkpoint.base import CheckpointTuple

StepKey = tuple[str, str, str]  # thread, run, checkpoint


class StepCheckpoints:
    """The newest few steps' checkpoints (with their null task's writes only), by step."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._saved: OrderedDict[StepKey, CheckpointTuple] = OrderedDict()

    def get(self, key: StepKey) -> CheckpointTuple | None:
        with self._lock:
            saved = self._saved.get(key)
            if saved is not None:
                self._saved.move_to_end(key)
            return saved

    def put(self, key: StepKey, saved: CheckpointTuple) -> None:
        with self._lock:
            self._saved[key] = saved
            self._saved.move_to_end(key)
            while len(self._saved) > self.size:
                self._saved.popitem(last=False)


# One per process: a prefork child inherits its parent's, which never ran a task (empty).
step_checkpoints = StepCheckpoints()
