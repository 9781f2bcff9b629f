"""Exceptions a graph author or caller can see, named as LangGraph names them.

Every error celerygraph raises derives from `CeleryGraphError`, and also from the built-in
class LangGraph's own error of that name has (RecursionError, RuntimeError, ...), so code
written against LangGraph catches them as before.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any


class CeleryGraphError(Exception):
    """The base of every error celerygraph raises: `except CeleryGraphError` catches ours."""


class GraphRecursionError(CeleryGraphError, RecursionError):
    """The run took more supersteps than `recursion_limit` allows."""


class InvalidUpdateError(CeleryGraphError):
    """A node, command or `update_state` wrote something the state cannot accept."""


class EmptyInputError(CeleryGraphError):
    """A run was started with nothing to start from."""


class EmptyChannelError(CeleryGraphError):
    """A channel was read before anything was written to it."""


class InvalidResumeError(CeleryGraphError, RuntimeError):
    """A resume that does not match the interrupts the thread is waiting on.

    A RuntimeError subclass because LangGraph raises RuntimeError for the ambiguous case.
    """


class GraphBubbleUp(CeleryGraphError):
    """Control flow that must pass through user code and reach the run loop."""


class GraphInterrupt(GraphBubbleUp):
    """A node paused on `interrupt()`; carries the interrupts it raised."""

    def __init__(self, interrupts: Sequence[Any] = ()) -> None:
        super().__init__(tuple(interrupts))

    @property
    def interrupts(self) -> tuple[Any, ...]:
        return self.args[0]


class ParentCommand(GraphBubbleUp):
    """A subgraph node returned `Command(graph=Command.PARENT)`."""

    def __init__(self, command: Any) -> None:
        super().__init__(command)

    @property
    def command(self) -> Any:
        return self.args[0]


class NodeError(CeleryGraphError):
    """A node failure read back from storage, where the original class is not trusted.

    Savers never revive arbitrary exception classes; this keeps the name and message.
    """

    def __init__(self, type_name: str, message: str, args: Sequence[Any] | None = None) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.original_args = tuple(args) if args is not None else (message,)

    def __repr__(self) -> str:
        return f"{self.type_name}({', '.join(repr(a) for a in self.original_args)})"


class StaleCheckpointError(CeleryGraphError, RuntimeError):
    """A compare-and-set write found another newest checkpoint than the one expected."""


class NotImplementedFeatureError(CeleryGraphError, NotImplementedError):
    """A parameter or stream mode LangGraph accepts that graphdef does not implement: named
    in the message, because ignoring it would change what the caller gets without a word."""


def revive_error(record: Any) -> BaseException:
    """Turn a stored error record back into an exception, never importing user classes.

    Built-in exception types come back as themselves; anything else as a NodeError that
    keeps the original name and message.
    """
    if isinstance(record, BaseException):
        return record
    if not isinstance(record, dict):
        return NodeError("Exception", str(record))
    name, message = str(record.get("type", "Exception")), str(record.get("message", ""))
    args = record.get("args")
    builtin = getattr(builtins, name, None)
    if isinstance(builtin, type) and issubclass(builtin, Exception):
        try:
            return builtin(*args) if isinstance(args, list) else builtin(message)
        except Exception:
            return NodeError(name, message, args)
    return NodeError(name, message, args)
