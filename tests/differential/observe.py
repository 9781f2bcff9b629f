"""Helpers that turn what a graph run shows into plain, comparable observations.

Scenarios return dicts of observations; ``normalize`` then reduces them to dicts, lists,
tuples, strings and numbers, leaving out the parts that legitimately differ between
implementations (checkpoint ids, timestamps, interrupt ids, message ids).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any


class Counts:
    """Thread-safe call counter; nodes of parallel branches run on worker threads."""

    def __init__(self) -> None:
        self._counter: Counter[str] = Counter()
        self._lock = threading.Lock()

    def hit(self, name: str) -> int:
        """Count one call of ``name`` and return how many calls it has had so far."""
        with self._lock:
            self._counter[name] += 1
            return self._counter[name]

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counter.items()))


def normalize(value: Any) -> Any:
    """``value`` with interrupts, messages and dataclasses reduced to comparable parts."""
    if isinstance(value, dict):
        return {key: normalize(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalize(item) for item in value]
    if isinstance(value, tuple):
        return tuple(normalize(item) for item in value)
    if type(value).__name__ == "Interrupt":
        return {"interrupt": normalize(value.value)}
    if hasattr(value, "content") and hasattr(value, "type"):
        return {
            "message": value.type,
            "content": value.content,
            "has_id": bool(getattr(value, "id", None)),
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {type(value).__name__: normalize(dataclasses.asdict(value))}
    return value


def snapshot(graph: Any, config: dict[str, Any]) -> dict[str, Any]:
    """What ``get_state`` shows: values, next nodes, pending tasks and interrupts."""
    state = graph.get_state(config)
    return {
        "values": state.values,
        "next": tuple(state.next),
        "tasks": [(task.name, task_error(task.error)) for task in state.tasks],
        "interrupts": [item.value for item in state.interrupts],
        "source": (state.metadata or {}).get("source"),
        "step": (state.metadata or {}).get("step"),
    }


def history(graph: Any, config: dict[str, Any]) -> list[tuple[Any, ...]]:
    """``get_state_history``, newest first: (source, step, next, values) per checkpoint."""
    return [
        (
            state.metadata["source"],
            state.metadata["step"],
            tuple(state.next),
            state.values,
        )
        for state in graph.get_state_history(config)
    ]


def task_error(error: BaseException | str | None) -> str | None:
    """A task's error as LangGraph's get_state reports a saved one: the exception's repr."""
    return error if error is None or isinstance(error, str) else repr(error)


def outcome(call: Callable[[], Any]) -> dict[str, Any]:
    """Run ``call``; its result, or the name of the exception it raised."""
    try:
        return {"result": call()}
    except Exception as error:  # the exception type is the observation
        return {"error": type(error).__name__}


def stream_steps(graph: Any, graph_input: Any, config: Any = None, **kwargs: Any) -> list:
    """``stream_mode=["updates", "values"]`` grouped per superstep: (updates, values) pairs.

    LangGraph yields a task's update as soon as that task finishes, so the order of update
    chunks within one superstep follows thread scheduling; each step's updates are sorted.
    Updates after the last values chunk (an interrupt) form a last pair with values None.
    """
    steps: list = []
    updates: list = []
    chunks = graph.stream(graph_input, config, stream_mode=["updates", "values"], **kwargs)
    for mode, chunk in chunks:
        if mode == "updates":
            updates.append(normalize(chunk))
        else:
            steps.append((sorted(updates, key=repr), normalize(chunk)))
            updates = []
    if updates:
        steps.append((sorted(updates, key=repr), None))
    return steps
