"""Fault injection for the fault suite: die at a named point of a task's life.

Set `CELERYGRAPH_FAULTS="memo_saved=0.2,node_started=0.1"` and a process SIGKILLs itself
with that probability each time it passes the point. Unset (the default), passing a point
is one lookup in an empty mapping. Points: `node_started` (the node is running),
`node_returned` (it returned; its memo is not saved yet), `memo_saved` (memo saved and
counted in the barrier by one script, or with the next step by a kept task's; the run not
advanced yet), `advance_checkpointed` (the next checkpoint is written; its tasks are not
dispatched).
"""

from __future__ import annotations

import os
import random
import signal
from dataclasses import dataclass

POINTS = ("node_started", "node_returned", "memo_saved", "advance_checkpointed")


@dataclass(frozen=True)
class Faults:
    """Where this process kills itself, and how often (`Settings.faults`)."""

    rates: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Faults:
        rates: dict[str, float] = {}
        for part in spec.split(","):
            if not part.strip():
                continue
            name, _, rate = part.partition("=")
            if name.strip() not in POINTS:
                raise ValueError(f"unknown fault point {name!r}; known: {POINTS}")
            rates[name.strip()] = float(rate or 1.0)
        return cls(tuple(rates.items()))

    @classmethod
    def from_env(cls) -> Faults:
        return cls.parse(os.environ.get("CELERYGRAPH_FAULTS", ""))

    def maybe_crash(self, point: str) -> None:
        """SIGKILL this process at `point` with the configured probability."""
        for name, rate in self.rates:
            if name == point and random.random() < rate:
                os.kill(os.getpid(), signal.SIGKILL)
