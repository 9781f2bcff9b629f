"""LangGraph's prebuilt agent pieces (`langgraph.prebuilt`): `ToolNode`, `tools_condition`,
`create_react_agent`, `InjectedState`, `InjectedStore`.

Needs langchain-core (`pip install celerygraph[agents]`); the rest of graphdef does not.
A tool gets its call's id with langchain-core's own `InjectedToolCallId`.
"""

try:
    import langchain_core  # noqa: F401
except ImportError as missing:  # pragma: no cover - exercised where langchain-core is absent
    raise ImportError(
        "graphdef.prebuilt needs langchain-core: pip install 'celerygraph[agents]'"
    ) from missing

from graphdef.prebuilt.injection import InjectedState, InjectedStore
from graphdef.prebuilt.react_agent import (
    AgentState,
    AgentStateWithStructuredResponse,
    RemainingSteps,
    create_react_agent,
)
from graphdef.prebuilt.tool_errors import ToolInvocationError
from graphdef.prebuilt.tool_node import ToolNode, tools_condition

__all__ = [
    "AgentState",
    "AgentStateWithStructuredResponse",
    "InjectedState",
    "InjectedStore",
    "RemainingSteps",
    "ToolInvocationError",
    "ToolNode",
    "create_react_agent",
    "tools_condition",
]
