"""Arguments a tool receives from the graph rather than from the model.

`InjectedState` and `InjectedStore` derive from langchain-core's `InjectedToolArg`, so the
tool schema a model is shown leaves them out; `ToolNode` fills them in just before the
call, and drops any value the model supplied for them (a model must not forge state).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any

from langchain_core.tools import BaseTool, InjectedToolArg
from langchain_core.tools.base import (
    _DirectlyInjectedToolArg,
    _is_injected_arg_type,
    get_all_basemodel_annotations,
)

from graphdef.errors import NotImplementedFeatureError


class InjectedState(InjectedToolArg):
    """`Annotated[dict, InjectedState]` gets the whole graph state,
    `Annotated[str, InjectedState("key")]` one key of it."""

    def __init__(self, field: str | None = None) -> None:
        self.field = field


class InjectedStore(InjectedToolArg):
    """`Annotated[BaseStore, InjectedStore()]` gets the store the graph was compiled with."""


@dataclass(frozen=True)
class Injections:
    """What one tool wants injected: parameter -> state key (None: the whole state)."""

    state: dict[str, str | None] = field(default_factory=dict)
    store: str | None = None
    optional_state: frozenset[str] = frozenset()
    # Every injected parameter, including other InjectedToolArg kinds (a tool call id is
    # injected by langchain-core itself): the model's values for these are dropped.
    all_keys: frozenset[str] = frozenset()


def _marker(annotation: Any, kind: type) -> Any:
    """The `kind` marker inside `annotation` (an instance or the class itself), or None."""
    if isinstance(annotation, kind) or (
        isinstance(annotation, type) and issubclass(annotation, kind)
    ):
        return annotation
    if typing.get_origin(annotation) in (typing.Annotated, typing.Union):
        found = [m for m in (_marker(a, kind) for a in typing.get_args(annotation)) if m]
        if len(found) > 1:
            raise ValueError(
                f"A tool argument should not be annotated with {kind.__name__} more than "
                f"once. Found: {found}"
            )
        return found[0] if found else None
    return None


def _refuse_tool_runtime(tool: BaseTool, annotations: dict[str, Any]) -> None:
    """LangGraph injects a `ToolRuntime` into a parameter named `runtime`; we do not, and a
    tool expecting one would otherwise get whatever the model sent."""
    for name, annotation in annotations.items():
        if name == "runtime" or _marker(annotation, _DirectlyInjectedToolArg) is not None:
            raise NotImplementedFeatureError(
                f"graphdef.prebuilt does not inject ToolRuntime: tool {tool.name!r} has a "
                f"parameter {name!r} that LangGraph would fill with a ToolRuntime. Use "
                "InjectedState, InjectedStore or InjectedToolCallId instead."
            )


def find_injections(tool: BaseTool) -> Injections:
    """Read a tool's schema and function annotations once, when the ToolNode is built."""
    schema = tool.get_input_schema()
    func = getattr(tool, "func", None) or getattr(tool, "coroutine", None)
    annotations = {
        **(typing.get_type_hints(func, include_extras=True) if func else {}),
        **get_all_basemodel_annotations(schema),
    }
    annotations.pop("return", None)
    _refuse_tool_runtime(tool, annotations)
    state: dict[str, str | None] = {}
    optional: set[str] = set()
    store = None
    for name, annotation in annotations.items():
        marker = _marker(annotation, InjectedState)
        if marker is not None:
            key = marker.field if isinstance(marker, InjectedState) else None
            state[name] = key
            model_field = schema.model_fields.get(name)
            if key and model_field is not None and not model_field.is_required():
                optional.add(name)
        if _marker(annotation, InjectedStore) is not None:
            store = name
    injected = frozenset(n for n, a in annotations.items() if _is_injected_arg_type(a))
    return Injections(state, store, frozenset(optional), injected)
