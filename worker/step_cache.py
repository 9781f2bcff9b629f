"""A worker process's copies of what its batch messages read of their step.

A wide superstep goes out as many messages (`CELERYGRAPH_STEP_MESSAGES`), and a worker
process often takes several of one step. Each read the step: its context and which tasks it
was dispatched with (the step's record), and its checkpoint (a load script, the row and
every channel's blob): about ten Redis commands a message. All of it is fixed once the step
is dispatched, for the run that dispatched it: a checkpoint never changes, its null task's
writes change only by a resume or a state edit, which belong to another run or wait for
this one to end, and a step's record gains no task. One copy per (thread, run, checkpoint)
serves every later message of the step in this process, which then reads only the run's
record (is it still running?). The checkpoint serves only tasks that never started before
(`OwnWritesSaver`): a task's own writes are read from the store, as ever.

Bounded by count: a step's messages come close together, so a few steps are enough.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from graphdef.checkpoint.base import CheckpointTuple

StepKey = tuple[str, str, str]  # thread, run, checkpoint


@dataclass(frozen=True)
class StepReads:
    """What a step's messages read of it: its context, the tasks it was dispatched with,
    and its checkpoint with the null task's writes only (None: not stored)."""

    context: dict[str, Any]
    dispatched: frozenset[str]
    checkpoint: CheckpointTuple | None


class StepCache:
    """The newest few steps' reads, by step."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._steps: OrderedDict[StepKey, StepReads] = OrderedDict()

    def get(self, key: StepKey) -> StepReads | None:
        with self._lock:
            step = self._steps.get(key)
            if step is not None:
                self._steps.move_to_end(key)
            return step

    def put(self, key: StepKey, step: StepReads) -> None:
        with self._lock:
            self._steps[key] = step
            self._steps.move_to_end(key)
            while len(self._steps) > self.size:
                self._steps.popitem(last=False)


# One per process: a prefork child inherits its parent's, which never ran a task (empty).
step_cache = StepCache()
