"""`create_react_agent`: a model that calls tools in a loop until it answers.

The graph is LangGraph's (nodes "agent", "tools" and "generate_structured_response", the
same edges, one `Send` per tool call in version "v2"), so checkpoints, interrupts
(`interrupt_before=["tools"]`) and node names in streams read as they do there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, NotRequired, TypedDict, get_type_hints

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

from graphdef.checkpoint.base import BaseCheckpointSaver
from graphdef.constants import END
from graphdef.errors import NotImplementedFeatureError
from graphdef.messages import add_messages
from graphdef.prebuilt.model_input import (
    apply_prompt,
    bind_tools,
    chat_model,
    check_chat_history,
    check_prompt,
    state_value,
)
from graphdef.prebuilt.tool_node import WITH_CONTEXT, ToolNode
from graphdef.runtime import current_runtime, get_config
from graphdef.state import CompiledStateGraph, StateGraph
from graphdef.store.base import BaseStore
from graphdef.types import Send


class _StepsLeft:
    """Marks `RemainingSteps`. LangGraph computes the key for every node (a managed value);
    graphdef has no managed values: the agent reads the steps left from its task instead,
    and the key exists so that state schemas port (README, "Prebuilt agents")."""


RemainingSteps = Annotated[int, _StepsLeft]
SORRY = "Sorry, need more steps to process this request."


class AgentState(TypedDict):
    """The agent's state: the conversation, and LangGraph's `remaining_steps` key."""

    messages: Annotated[Sequence[BaseMessage], add_messages]
    remaining_steps: NotRequired[RemainingSteps]


class AgentStateWithStructuredResponse(AgentState):
    structured_response: Any


# LangGraph accepts these; we raise rather than build an agent that ignores them.
_NOT_SUPPORTED = ("pre_model_hook", "post_model_hook", "context_schema")


def _refuse_unsupported(options: dict[str, Any], deprecated: dict[str, Any]) -> None:
    for option in _NOT_SUPPORTED:
        if options[option] is not None:
            raise NotImplementedFeatureError(
                f"create_react_agent({option}=...) is not supported by graphdef"
            )
    if options["debug"]:
        raise NotImplementedFeatureError(
            "create_react_agent(debug=True) is not supported by graphdef"
        )
    if "config_schema" in deprecated:
        raise NotImplementedFeatureError(
            "create_react_agent(config_schema=...) is not supported by graphdef"
        )
    if deprecated:
        raise TypeError(f"create_react_agent() got unexpected keyword arguments: {deprecated}")


def _out_of_steps(response: Any, remaining: int | None, return_direct: set[str]) -> bool:
    """Whether the loop cannot finish before the recursion limit: tool calls need two more
    steps (tools, then agent), a direct return one. Answering beats failing the run."""
    if remaining is None or not isinstance(response, AIMessage):
        return False
    if remaining < 1 and all(call["name"] in return_direct for call in response.tool_calls):
        return True
    return remaining < 2 and bool(response.tool_calls)


def _check_state_schema(state_schema: Any, response_format: Any) -> Any:
    if state_schema is None:
        return AgentStateWithStructuredResponse if response_format is not None else AgentState
    required = {"messages", "remaining_steps"} | (
        {"structured_response"} if response_format is not None else set()
    )
    if missing := required - set(get_type_hints(state_schema)):
        raise ValueError(f"Missing required key(s) {missing} in state_schema")
    return state_schema


def create_react_agent(
    model: Any,
    tools: Sequence[BaseTool | Callable[..., Any] | dict[str, Any]] | ToolNode,
    *,
    prompt: str | SystemMessage | Callable[..., Any] | Runnable[Any, Any] | None = None,
    response_format: Any = None,
    pre_model_hook: Any = None,
    post_model_hook: Any = None,
    state_schema: Any = None,
    context_schema: Any = None,
    checkpointer: BaseCheckpointSaver | None | bool = None,
    store: BaseStore | None = None,
    interrupt_before: list[str] | None = None,
    interrupt_after: list[str] | None = None,
    debug: bool = False,
    version: Literal["v1", "v2"] = "v2",
    name: str | None = None,
    **deprecated_kwargs: Any,
) -> CompiledStateGraph:
    """Build and compile the agent graph. `model` is a chat model (or a `provider:model`
    string, with `langchain` installed); `tools` a list of tools or a ToolNode."""
    _refuse_unsupported(
        {"pre_model_hook": pre_model_hook, "post_model_hook": post_model_hook,
         "context_schema": context_schema, "debug": debug},
        deprecated_kwargs,
    )
    if version not in ("v1", "v2"):
        raise ValueError(f"Invalid version {version}. Supported versions are 'v1' and 'v2'.")
    if callable(model) and not isinstance(model, str | Runnable):
        raise NotImplementedFeatureError(
            "create_react_agent(model=<callable>) (dynamic model selection) is not "
            "supported by graphdef; pass a chat model"
        )
    check_prompt(prompt)
    state_schema = _check_state_schema(state_schema, response_format)
    if isinstance(tools, ToolNode):
        tool_node, builtin = tools, []
    else:
        builtin = [t for t in tools if isinstance(t, dict)]
        tool_node = ToolNode([t for t in tools if not isinstance(t, dict)])
    tool_list = list(tool_node.tools_by_name.values())
    bound = bind_tools(model, tool_list, builtin)
    return_direct = {t.name for t in tool_list if t.return_direct}

    def call_model(state: Any) -> dict[str, Any]:
        check_chat_history(state_value(state, "messages"))
        runtime = current_runtime()
        response = bound.invoke(apply_prompt(prompt, state, runtime.config), runtime.config)
        response.name = name
        if _out_of_steps(response, runtime.remaining_steps, return_direct):
            return {"messages": [AIMessage(id=response.id, content=SORRY)]}
        return {"messages": [response]}

    def generate_structured_response(state: Any) -> dict[str, Any]:
        messages = list(state_value(state, "messages"))
        schema = response_format
        if isinstance(response_format, tuple):
            system_prompt, schema = response_format
            messages = [SystemMessage(content=system_prompt), *messages]
        structured = chat_model(bound).with_structured_output(schema)
        return {"structured_response": structured.invoke(messages, get_config())}

    def should_continue(state: Any) -> str | list[Send]:
        last = state_value(state, "messages")[-1]
        if not isinstance(last, AIMessage) or not last.tool_calls:
            return END if response_format is None else "generate_structured_response"
        if version == "v1":
            return "tools"
        return [
            Send("tools", {"__type": WITH_CONTEXT, "tool_call": call, "state": state})
            for call in last.tool_calls
        ]

    def route_tool_responses(state: Any) -> str:
        message: Any = None
        for message in reversed(state_value(state, "messages")):
            if not isinstance(message, ToolMessage):
                break
            if message.name in return_direct:
                return END
        if isinstance(message, AIMessage) and message.tool_calls and any(
            call["name"] in return_direct for call in message.tool_calls
        ):
            return END
        return "agent"

    workflow = StateGraph(state_schema)
    workflow.add_node("agent", call_model, input_schema=state_schema)
    workflow.set_entry_point("agent")
    if response_format is not None:
        workflow.add_node("generate_structured_response", generate_structured_response)
    if tool_list:
        workflow.add_node("tools", tool_node)
        finish = END if response_format is None else "generate_structured_response"
        workflow.add_conditional_edges("agent", should_continue, ["tools", finish])
        if return_direct:
            workflow.add_conditional_edges("tools", route_tool_responses, ["agent", END])
        else:
            workflow.add_edge("tools", "agent")
    elif response_format is not None:
        workflow.add_edge("agent", "generate_structured_response")
    return workflow.compile(
        checkpointer=checkpointer,
        store=store,
        interrupt_before=interrupt_before,
        interrupt_after=interrupt_after,
        name=name,
    )
