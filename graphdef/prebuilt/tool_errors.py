"""What a ToolNode does with a failing tool: `handle_tool_errors`, as LangGraph reads it.

The texts are LangGraph's, word for word, because the model reads them: an agent ported
from LangGraph must see the same error messages to behave the same.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Union

from langchain_core.tools import ToolException
from pydantic import ValidationError

from graphdef.errors import CeleryGraphError

ErrorHandling = Union[  # noqa: UP007 - spelled as LangGraph spells it
    bool, str, Callable[..., str], type[Exception], tuple[type[Exception], ...]
]

CALL_ERROR = "Error: {error}\n Please fix your mistakes."
INVOCATION_ERROR = (
    "Error invoking tool '{tool_name}' with kwargs {tool_kwargs} with error:\n"
    " {error}\n"
    " Please fix the error and try again."
)
INVALID_TOOL = "Error: {requested_tool} is not a valid tool, try one of [{available_tools}]."


class ToolInvocationError(ToolException, CeleryGraphError):
    """The model called a tool with arguments its schema rejects; only the arguments the
    model controls are named, since it cannot fix injected ones."""

    def __init__(
        self, tool_name: str, source: ValidationError, tool_kwargs: dict[str, Any],
        injected: frozenset[str],
    ) -> None:
        details = [
            f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'Unknown error')}"
            for e in source.errors()
            if e["loc"] and e["loc"][0] not in injected
        ]
        self.message = INVOCATION_ERROR.format(
            tool_name=tool_name, tool_kwargs=tool_kwargs, error="\n".join(details)
        )
        self.tool_name = tool_name
        self.tool_kwargs = tool_kwargs
        self.source = source
        super().__init__(self.message)


def default_handler(error: Exception) -> str:
    """By default only bad arguments go back to the model; any other failure fails the
    node, so a broken tool is not hidden behind a chat message."""
    if isinstance(error, ToolInvocationError):
        return error.message
    raise error


def _handled_by_annotation(handler: Callable[..., str]) -> tuple[type[Exception], ...]:
    """A handler `def h(e: ValueError)` handles only ValueError; unannotated, everything."""
    params = list(inspect.signature(handler).parameters.values())
    if not params:
        return (Exception,)
    first = params[1] if params[0].name in ("self", "cls") and len(params) == 2 else params[0]
    hints = typing.get_type_hints(handler)
    if first.name not in hints:
        return (Exception,)
    hint = hints[first.name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
        if all(isinstance(m, type) and issubclass(m, Exception) for m in members):
            return members
        raise ValueError(
            "All types in the error handler error annotation must be Exception types. "
            "For example, `def custom_handler(e: Union[ValueError, TypeError])`. "
            f"Got '{first.annotation}' instead."
        )
    if isinstance(hint, type) and issubclass(hint, Exception):
        return (hint,)
    raise ValueError(
        "Arbitrary types are not supported in the error handler signature. Please annotate "
        "the error with either a specific Exception type or a union of Exception types. "
        "For example, `def custom_handler(e: ValueError)` or "
        "`def custom_handler(e: Union[ValueError, TypeError])`. "
        f"Got '{hint}' instead."
    )


def handled_types(flag: ErrorHandling) -> tuple[type[Exception], ...]:
    """The exception types `flag` turns into an error ToolMessage (none when False)."""
    if flag is False:
        return ()
    if isinstance(flag, type) and issubclass(flag, Exception):
        return (flag,)
    if isinstance(flag, tuple):
        return flag
    if callable(flag) and not isinstance(flag, type):
        return _handled_by_annotation(flag)
    return (Exception,)


def error_content(error: Exception, flag: ErrorHandling) -> str:
    """The ToolMessage content for a handled error."""
    if isinstance(flag, bool | tuple) or (isinstance(flag, type) and issubclass(flag, Exception)):
        return CALL_ERROR.format(error=repr(error))
    if isinstance(flag, str):
        return flag
    if callable(flag):
        return flag(error)
    raise ValueError(
        "Got unexpected type of `handle_tool_error`. Expected bool, str or callable. "
        f"Received: {flag}"
    )
