"""Fault injection for the fault suite: die at a named point of a task's life.

Set `CELERYGRAPH_FAULTS="memo_saved=0.2,node_started=0.1"` and a process SIGKILLs itself
with that probability each time it passes the point. Unset (the default), this is one
dictionary lookup. Points: `node_started` (the node is running), `node_returned` (it
returned; its memo is not saved yet), `memo_saved` (memo saved; the barrier is not marked),
`advance_checkpointed` (the next checkpoint is written; its tasks are not dispatched).
"""

from __future__ import annotations

import os
import random
import signal

POINTS = ("node_started", "node_returned", "memo_saved", "advance_checkpointed")


def _parse(spec: str) -> dict[str, float]:
    rates: dict[str, float] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        name, _, rate = part.partition("=")
        if name.strip() not in POINTS:
            raise ValueError(f"unknown fault point {name!r}; known: {POINTS}")
        rates[name.strip()] = float(rate or 1.0)
    return rates


_RATES = _parse(os.environ.get("CELERYGRAPH_FAULTS", ""))


def maybe_crash(point: str) -> None:
    """SIGKILL this process at `point` with the configured probability."""
    rate = _RATES.get(point)
    if rate and random.random() < rate:
        os.kill(os.getpid(), signal.SIGKILL)
