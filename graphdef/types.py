"""Values graph authors construct or receive: Send, Command, Interrupt, RetryPolicy, snapshots."""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from graphdef.cache.keys import default_cache_key

N = TypeVar("N", bound=Hashable)
KeyFuncT = TypeVar("KeyFuncT", bound=Callable[..., str | bytes])


@dataclass(frozen=True)
class Send:
    """Run `node` in the next superstep with `arg` as its whole input (map-reduce fan-out)."""

    node: str
    arg: Any


@dataclass(frozen=True)
class Interrupt:
    """A pause raised by `interrupt(value)`; answer it with `Command(resume=...)`."""

    value: Any
    id: str = ""


@dataclass(frozen=True)
class Command(Generic[N]):
    """Update state, route, and/or answer interrupts, from a node or as run input.

    Generic like LangGraph's, so that `-> Command[Literal["a", "b"]]` annotates a node.
    """

    graph: str | None = None
    update: Any = None
    resume: Any = None
    goto: str | Send | Sequence[str | Send] = ()

    PARENT: ClassVar[str] = "__parent__"

    def update_as_tuples(self) -> list[tuple[str, Any]]:
        if self.update is None:
            return []
        if isinstance(self.update, dict):
            return list(self.update.items())
        if isinstance(self.update, list | tuple) and all(
            isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], str) for t in self.update
        ):
            return list(self.update)
        fields = getattr(type(self.update), "__dataclass_fields__", None) or getattr(
            type(self.update), "model_fields", None
        )
        if fields:
            return [(k, getattr(self.update, k)) for k in fields]
        return [("__root__", self.update)]

    def goto_targets(self) -> list[str | Send]:
        if isinstance(self.goto, str | Send):
            return [self.goto]
        return list(self.goto)


@dataclass(frozen=True)
class Overwrite:
    """Write a value to a reducer key, bypassing its reducer."""

    value: Any


def default_retry_on(exc: Exception) -> bool:
    """Retry what is likely transient; never programming errors (LangGraph's rule).

    httpx and requests errors are recognised only if their library is already imported,
    so graphdef imports neither.
    """
    if isinstance(exc, ConnectionError):
        return True
    httpx_error = getattr(sys.modules.get("httpx"), "HTTPStatusError", None)
    if isinstance(httpx_error, type) and isinstance(exc, httpx_error):
        return 500 <= exc.response.status_code < 600
    requests_error = getattr(sys.modules.get("requests"), "HTTPError", None)
    if isinstance(requests_error, type) and isinstance(exc, requests_error):
        # LangGraph's exact rule: a Response is falsy for status >= 400, so any HTTPError
        # carrying an error response (or none) is retried.
        response = exc.response
        return 500 <= response.status_code < 600 if response else True
    return not isinstance(
        exc,
        ValueError
        | TypeError
        | ArithmeticError
        | ImportError
        | LookupError
        | NameError
        | SyntaxError
        | RuntimeError
        | ReferenceError
        | StopIteration
        | StopAsyncIteration
        | OSError,
    )


class RetryPolicy(NamedTuple):
    """How often and how patiently a failing node is retried."""

    initial_interval: float = 0.5
    backoff_factor: float = 2.0
    max_interval: float = 128.0
    max_attempts: int = 3
    jitter: bool = True
    retry_on: (
        type[Exception] | Sequence[type[Exception]] | Callable[[Exception], bool]
    ) = default_retry_on


@dataclass(kw_only=True, slots=True, frozen=True)
class CachePolicy(Generic[KeyFuncT]):
    """Cache a node's (or task's) writes under `key_func(input)` for `ttl` seconds (None:
    until cleared), so that a later run with an equal input skips the node."""

    key_func: KeyFuncT = default_cache_key  # type: ignore[assignment]
    ttl: int | None = None


class PregelTask(NamedTuple):
    """A task planned from a checkpoint, as `StateSnapshot.tasks` reports it."""

    id: str
    name: str
    path: tuple[Any, ...]
    error: Exception | None = None
    interrupts: tuple[Interrupt, ...] = ()
    state: Any = None
    result: Any = None


class StateSnapshot(NamedTuple):
    """A thread's state at one checkpoint, and what would run next from it."""

    values: Any
    next: tuple[str, ...]
    config: dict[str, Any]
    metadata: dict[str, Any] | None
    created_at: str | None
    parent_config: dict[str, Any] | None
    tasks: tuple[PregelTask, ...]
    interrupts: tuple[Interrupt, ...] = ()
