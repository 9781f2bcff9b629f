"""What a ReAct agent sends its model: the prompt applied to the state, and the model
with the agent's tools bound (unless the caller bound them already)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.runnables import Runnable, RunnableBinding, RunnableSequence
from langchain_core.tools import BaseTool

from graphdef.errors import NotImplementedFeatureError
from graphdef.state import accepts_param

INVALID_CHAT_HISTORY = (
    "\nFor troubleshooting, visit: https://docs.langchain.com/oss/python/langgraph/errors/"
    "INVALID_CHAT_HISTORY"
)


def state_value(state: Any, key: str, default: Any = None) -> Any:
    return state.get(key, default) if isinstance(state, dict) else getattr(state, key, default)


def check_prompt(prompt: Any) -> None:
    """Refuse, when the agent is built, a prompt kind LangGraph takes and we do not run."""
    if inspect.iscoroutinefunction(prompt):
        raise NotImplementedFeatureError(
            "create_react_agent(prompt=<async function>) is not supported by graphdef; "
            "pass a sync function"
        )
    if not (prompt is None or isinstance(prompt, str | SystemMessage | Runnable)
            or callable(prompt)):
        raise ValueError(f"Got unexpected type for `prompt`: {type(prompt)}")


def apply_prompt(prompt: Any, state: Any, config: dict[str, Any]) -> Any:
    """The model's input: the state's messages, after a system prompt, or whatever a
    prompt function or runnable makes of the whole state."""
    messages = state_value(state, "messages")
    if prompt is None:
        return messages
    if isinstance(prompt, str):
        return [SystemMessage(content=prompt), *messages]
    if isinstance(prompt, SystemMessage):
        return [prompt, *messages]
    if isinstance(prompt, Runnable):
        return prompt.invoke(state, config)
    if accepts_param(prompt, "config"):
        return prompt(state, config=config)
    return prompt(state)


def check_chat_history(messages: Sequence[BaseMessage]) -> None:
    """Every tool call must have its answer before the model is called again: providers
    reject such a history, and it happens when a run stopped between agent and tools."""
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    pending = [
        call
        for m in messages if isinstance(m, AIMessage)
        for call in m.tool_calls if call["id"] not in answered
    ]
    if pending:
        raise ValueError(
            "Found AIMessages with tool_calls that do not have a corresponding ToolMessage. "
            f"Here are the first few of those tool calls: {pending[:3]}.\n\n"
            "Every tool call (LLM requesting to call a tool) in the message history MUST "
            "have a corresponding ToolMessage (result of a tool invocation to return to the "
            "LLM) - this is required by most LLM providers." + INVALID_CHAT_HISTORY
        )


def _model_step(model: Any) -> Any:
    if isinstance(model, RunnableSequence):
        return next(
            (s for s in model.steps if isinstance(s, RunnableBinding | BaseChatModel)), model
        )
    return model


def _needs_binding(model: Any, tools: Sequence[BaseTool], builtin: int) -> bool:
    """False when the caller already bound exactly these tools (checked, not trusted)."""
    model = _model_step(model)
    if not isinstance(model, RunnableBinding) or "tools" not in model.kwargs:
        return True
    bound = model.kwargs["tools"]
    if len(tools) != len(bound) - builtin:
        raise ValueError(
            "Number of tools in the model.bind_tools() and tools passed to "
            f"create_react_agent must match Got {len(tools)} tools, expected "
            f"{len(bound) - builtin}"
        )
    bound_names = set()
    for spec in bound:
        if spec.get("type") == "function":
            bound_names.add(spec["function"]["name"])
        elif spec.get("name"):
            bound_names.add(spec["name"])
    if missing := {t.name for t in tools} - bound_names:
        raise ValueError(f"Missing tools '{missing}' in the model.bind_tools()")
    return False


def bind_tools(model: Any, tools: Sequence[BaseTool], builtin: Sequence[dict[str, Any]]) -> Any:
    """The model to call: a string names one for `init_chat_model` (needs `langchain`)."""
    if isinstance(model, str):
        try:
            from langchain.chat_models import init_chat_model  # type: ignore[import-not-found]
        except ImportError:
            raise ImportError(
                "Please install langchain (`pip install langchain`) to use "
                "'<provider>:<model>' string syntax for `model` parameter."
            ) from None
        model = init_chat_model(model)
    if _needs_binding(model, tools, len(builtin)) and (tools or builtin):
        model = model.bind_tools([*tools, *builtin])
    return model


def chat_model(model: Any) -> BaseChatModel:
    """The chat model under bindings, for `with_structured_output`."""
    model = _model_step(model)
    if isinstance(model, RunnableBinding):
        model = model.bound
    if not isinstance(model, BaseChatModel):
        raise TypeError(
            "Expected `model` to be a ChatModel or RunnableBinding (e.g. "
            f"model.bind_tools(...)), got {type(model)}"
        )
    return model
