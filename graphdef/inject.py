"""What graphdef passes to user functions that ask for it by parameter name, LangGraph's rules.

A node, a route, an `@entrypoint` or a `@task` gets `store` and `runtime` (and a node or
entrypoint `config`) only when its signature names them, so functions that do not are
called as written.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

from graphdef.runtime import current_runtime, get_store, runtime_of
from graphdef.store.base import BaseStore

_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def accepts_param(func: Callable[..., Any], name: str) -> bool:
    """Whether a user function takes `name`, so it is passed only to those that want it."""
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _param(func: Callable[..., Any], name: str) -> inspect.Parameter | None:
    try:
        param = inspect.signature(func).parameters.get(name)
    except (TypeError, ValueError):
        return None
    return param if param is not None and param.kind in _KINDS else None


_STORE_ANNOTATIONS: tuple[Any, ...] = (
    inspect.Parameter.empty, BaseStore, "BaseStore", typing.Optional[BaseStore],  # noqa: UP045
    "Optional[BaseStore]",
)


def accepts_store(func: Callable[..., Any]) -> bool:
    """LangGraph's rule for injecting the store: a parameter named `store` (positional or
    keyword, not *args) annotated `BaseStore`, `Optional[BaseStore]` or not at all. Other
    annotations, `BaseStore | None` among them, get nothing, as in LangGraph."""
    param = _param(func, "store")
    return param is not None and any(
        param.annotation is a or param.annotation == a for a in _STORE_ANNOTATIONS
    )


def accepts_runtime(func: Callable[..., Any]) -> bool:
    """LangGraph's rule for `runtime`: the parameter's name decides, whatever its annotation."""
    return _param(func, "runtime") is not None


def is_async_callable(func: Any) -> bool:
    """Whether calling `func` gives a coroutine: an async function, a partial of one, or an
    object whose `__call__` is one."""
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - a callable object's method
    )


def with_injected(func: Callable[..., Any]) -> Callable[..., Any]:
    """`func`, given the running graph's store as `store` and the task's `Runtime` as
    `runtime` if it asks for them and the caller did not pass them; async stays async."""
    wants_store, wants_runtime = accepts_store(func), accepts_runtime(func)
    if not (wants_store or wants_runtime):
        return func

    def inject(kwargs: dict[str, Any]) -> dict[str, Any]:
        if wants_store and "store" not in kwargs:
            kwargs["store"] = get_store()
        if wants_runtime and "runtime" not in kwargs:
            kwargs["runtime"] = runtime_of(current_runtime())
        return kwargs

    if is_async_callable(func):

        @functools.wraps(func)
        async def acall(*args: Any, **kwargs: Any) -> Any:
            return await func(*args, **inject(kwargs))

        return acall

    @functools.wraps(func)  # keeps its name: the cache files a task's results under it
    def call(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **inject(kwargs))

    return call
