"""`ToolNode` and `tools_condition`: run the tool calls of a model's last message.

Behaviour follows LangGraph's `langgraph.prebuilt.ToolNode` (message shapes, error texts,
what is injected, how Commands from tools combine), so an agent graph ports unchanged.
Tools run through langchain-core's `BaseTool.invoke` with the whole tool call, which is
what gives a tool its `InjectedToolCallId` and turns its result into a `ToolMessage`.
"""

from __future__ import annotations

import contextvars
import copy
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    RemoveMessage,
    ToolCall,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as as_tool
from langchain_core.tools.base import TOOL_MESSAGE_BLOCK_TYPES
from pydantic import ValidationError

from graphdef.errors import GraphBubbleUp, NotImplementedFeatureError
from graphdef.messages import REMOVE_ALL_MESSAGES
from graphdef.prebuilt.injection import Injections, find_injections
from graphdef.prebuilt.tool_errors import (
    INVALID_TOOL,
    ErrorHandling,
    ToolInvocationError,
    default_handler,
    error_content,
    handled_types,
)
from graphdef.runtime import current_runtime_or_none
from graphdef.store.base import BaseStore
from graphdef.types import Command, Send

InputType = Literal["list", "dict", "tool_calls"]
# The payload create_react_agent sends to "tools", one tool call each (LangGraph's shape).
WITH_CONTEXT = "tool_call_with_context"


def _content(output: Any) -> Any:
    """A ToolMessage's content: text or content blocks as they are, anything else as JSON."""
    if isinstance(output, str) or (
        isinstance(output, list)
        and all(isinstance(x, dict) and x.get("type") in TOOL_MESSAGE_BLOCK_TYPES for x in output)
    ):
        return output
    try:
        return json.dumps(output, ensure_ascii=False)
    except Exception:
        return str(output)


def _with_content(message: ToolMessage) -> ToolMessage:
    message.content = _content(message.content)
    return message


class ToolNode:
    """A graph node that runs every tool call of the last AIMessage, in parallel.

    Input: a state with a `messages` key (or `messages_key`), a list of messages, a list of
    tool calls, or one call sent by `create_react_agent`. Output: `{"messages": [...]}` (a
    list for list input), or, when a tool returns a `Command`, a list of updates and
    Commands the graph applies together.
    """

    def __init__(
        self,
        tools: Sequence[BaseTool | Callable[..., Any]],
        *,
        name: str = "tools",
        tags: list[str] | None = None,
        handle_tool_errors: ErrorHandling = default_handler,
        messages_key: str = "messages",
        wrap_tool_call: Any = None,
        awrap_tool_call: Any = None,
    ) -> None:
        for option, value in (("tags", tags), ("wrap_tool_call", wrap_tool_call),
                              ("awrap_tool_call", awrap_tool_call)):
            if value is not None:
                raise NotImplementedFeatureError(
                    f"ToolNode({option}=...) is not supported by graphdef"
                )
        self.name = name
        self.messages_key = messages_key
        self.handle_tool_errors = handle_tool_errors
        self.tools_by_name: dict[str, BaseTool] = {}
        self._injections: dict[str, Injections] = {}
        for item in tools:
            tool = item if isinstance(item, BaseTool) else as_tool(item)
            self.tools_by_name[tool.name] = tool
            self._injections[tool.name] = find_injections(tool)

    # ---- as a node and as a runnable ------------------------------------------------------

    def __call__(self, input: Any) -> Any:
        runtime = current_runtime_or_none()
        config = runtime.config if runtime is not None else {}
        store = runtime.scope.store if runtime is not None else None
        return self.invoke(input, config, store=store)

    def invoke(
        self, input: Any, config: dict[str, Any] | None = None, *, store: BaseStore | None = None
    ) -> Any:
        """Run the tool calls found in `input`; outside a graph, pass the store yourself."""
        calls, input_type, state = self._parse(input)
        config = config or {}

        def run(call: ToolCall) -> Any:
            return self._run_one(call, input_type, state, store, config)

        if len(calls) == 1:  # a call sent on its own (version "v2"): no thread needed
            outputs = [run(calls[0])]
        else:
            # Each call runs in a copy of this context, so that interrupt() and the store
            # reach the running task from the pool's threads. Pool size as LangGraph's:
            # `max_concurrency` from the config, else the executor's default.
            contexts = [contextvars.copy_context() for _ in calls]
            with ThreadPoolExecutor(max_workers=config.get("max_concurrency")) as pool:
                outputs = list(pool.map(lambda c, ctx: ctx.run(run, c), calls, contexts))
        return self._combine(outputs, input_type)

    # ---- input ----------------------------------------------------------------------------

    def _parse(self, input: Any) -> tuple[list[ToolCall], InputType, Any]:
        if isinstance(input, list) and input and isinstance(input[-1], dict) \
                and input[-1].get("type") == "tool_call":
            return list(input), "tool_calls", None
        if isinstance(input, dict) and input.get("__type") == WITH_CONTEXT:
            return [input["tool_call"]], "tool_calls", input["state"]
        input_type: InputType = "dict"
        if isinstance(input, list):
            input_type, messages = "list", input
        elif isinstance(input, dict):
            messages = input.get(self.messages_key, [])
        else:
            messages = getattr(input, self.messages_key, [])
        if not messages:
            raise ValueError("No message found in input")
        last_ai = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
        if last_ai is None:
            raise ValueError("No AIMessage found in input")
        return list(last_ai.tool_calls), input_type, input

    # ---- one call -------------------------------------------------------------------------

    def _run_one(
        self, call: ToolCall, input_type: InputType, state: Any, store: BaseStore | None,
        config: dict[str, Any],
    ) -> Any:
        tool = self.tools_by_name.get(call["name"])
        if tool is None:
            content = INVALID_TOOL.format(
                requested_tool=call["name"], available_tools=", ".join(self.tools_by_name)
            )
            return ToolMessage(content, name=call["name"], tool_call_id=call["id"],
                               status="error")
        injections = self._injections[tool.name]
        args = self._inject(call, injections, state, store)
        try:
            try:
                response = tool.invoke({**call, "args": args, "type": "tool_call"}, config)
            except ValidationError as error:
                raise ToolInvocationError(
                    call["name"], error, call["args"], frozenset(injections.all_keys)
                ) from error
            return self._checked_response(response, call, input_type)
        except GraphBubbleUp:
            raise
        except Exception as error:
            flag = self.handle_tool_errors
            if not flag or not isinstance(error, handled_types(flag)):
                raise
            return ToolMessage(content=error_content(error, flag), name=call["name"],
                               tool_call_id=call["id"], status="error")

    def _inject(
        self, call: ToolCall, injections: Injections, state: Any, store: BaseStore | None
    ) -> dict[str, Any]:
        """The model's arguments minus any injected ones it sent, plus the real values."""
        args = {k: v for k, v in call["args"].items() if k not in injections.all_keys}
        if injections.state:
            if state is None:
                raise NotImplementedFeatureError(
                    f"Tool {call['name']} needs InjectedState, but ToolNode was given bare "
                    "tool calls: graphdef has no state to read for them; pass the state "
                    "(or a list of messages) instead"
                )
            if isinstance(state, list):
                fields = list(injections.state.values())
                if (len(fields) == 1 and fields[0] == self.messages_key) or fields[0] is None:
                    state = {self.messages_key: state}
                else:
                    message = (f"Invalid input to ToolNode. Tool {call['name']} requires "
                               "graph state dict as input.")
                    if any(fields):
                        named = ", ".join(f for f in fields if f)
                        message += f" State should contain fields {named}."
                    raise ValueError(message)
            for param, key in injections.state.items():
                if not key:
                    args[param] = state
                elif isinstance(state, dict):
                    if key in state:
                        args[param] = state[key]
                    elif param not in injections.optional_state:
                        raise KeyError(key)
                elif hasattr(state, key):
                    args[param] = getattr(state, key)
                elif param not in injections.optional_state:
                    raise AttributeError(key)
        if injections.store:
            if store is None:
                raise ValueError(
                    "Cannot inject store into tools with InjectedStore annotations - "
                    "please compile your graph with a store."
                )
            args[injections.store] = store
        return args

    # ---- output ---------------------------------------------------------------------------

    def _checked_response(self, response: Any, call: ToolCall, input_type: InputType) -> Any:
        if isinstance(response, Command):
            return self._checked_command(response, call, input_type, require_reply=True)
        if isinstance(response, ToolMessage):
            return _with_content(response)
        if isinstance(response, list):
            if not all(isinstance(r, Command | ToolMessage) for r in response):
                raise TypeError(
                    f"Tool {call['name']} returned a list with invalid element types: "
                    "expected all Command or ToolMessage"
                )
            replies = sum(
                1
                for item in response
                for m in ([item] if isinstance(item, ToolMessage) else
                          (item.update or {}).get(self.messages_key, [])
                          if isinstance(item.update, dict) else [])
                if isinstance(m, ToolMessage) and m.tool_call_id == call["id"]
            )
            if replies != 1:
                raise ValueError(
                    f"Tool {call['name']} returned a list with {replies} messages bound to "
                    f"tool_call_id {call['id']!r}; expected exactly one terminating ToolMessage."
                )
            return [
                self._checked_command(item, call, input_type, require_reply=False)
                if isinstance(item, Command) else _with_content(item)
                for item in response
            ]
        raise TypeError(f"Tool {call['name']} returned unexpected type: {type(response)}")

    def _checked_command(
        self, command: Command, call: ToolCall, input_type: InputType, *, require_reply: bool
    ) -> Command:
        """A Command from a tool must answer its tool call with a ToolMessage (unless it
        goes to a parent graph): a model provider rejects a history with a call unanswered."""
        if isinstance(command.update, dict):
            if input_type not in ("dict", "tool_calls"):
                raise ValueError(
                    "Tools can provide a dict in Command.update only when using dict with "
                    f"'{self.messages_key}' key as ToolNode input, got: {command.update} for "
                    f"tool '{call['name']}'"
                )
            command = copy.deepcopy(command)
            replies = command.update.get(self.messages_key, [])
        elif isinstance(command.update, list):
            if input_type != "list":
                raise ValueError(
                    "Tools can provide a list of messages in Command.update only when using "
                    f"list of messages as ToolNode input, got: {command.update} for tool "
                    f"'{call['name']}'"
                )
            command = copy.deepcopy(command)
            replies = command.update
        else:
            return command
        messages = convert_to_messages(replies)
        if messages == [RemoveMessage(id=REMOVE_ALL_MESSAGES)]:
            return command
        answered = False
        for message in messages:
            if isinstance(message, ToolMessage) and message.tool_call_id == call["id"]:
                message.name = call["name"]
                answered = True
        if require_reply and command.graph is None and not answered:
            example = (
                '`Command(update={"messages": [ToolMessage("Success", '
                'tool_call_id=tool_call_id), ...]}, ...)`'
                if input_type == "dict"
                else '`Command(update=[ToolMessage("Success", tool_call_id=tool_call_id), '
                "...], ...)`"
            )
            raise ValueError(
                "Expected to have a matching ToolMessage in Command.update for tool "
                f"'{call['name']}', got: {messages}. Every tool call (LLM requesting to call "
                "a tool) in the message history MUST have a corresponding ToolMessage. You "
                f"can fix it by modifying the tool to return {example}."
            )
        return command

    def _combine(self, outputs: list[Any], input_type: InputType) -> Any:
        """Plain replies become one update; with Commands, each reply is an update of its
        own beside them, and Sends to the parent graph merge into one parent Command."""
        flat = [o for out in outputs for o in (out if isinstance(out, list) else [out])]
        if not any(isinstance(o, Command) for o in flat):
            return flat if input_type == "list" else {self.messages_key: flat}
        combined: list[Any] = []
        parent_sends: list[Send] = []
        for output in flat:
            if not isinstance(output, Command):
                combined.append([output] if input_type == "list"
                                else {self.messages_key: [output]})
            elif output.graph == Command.PARENT and isinstance(output.goto, list) \
                    and all(isinstance(s, Send) for s in output.goto):
                parent_sends.extend(output.goto)
            else:
                combined.append(output)
        if parent_sends:
            combined.append(Command(graph=Command.PARENT, goto=parent_sends))
        return combined


def tools_condition(state: Any, messages_key: str = "messages") -> Literal["tools", "__end__"]:
    """Route to "tools" when the last message asks for tool calls, else end."""
    if isinstance(state, list):
        last = state[-1]
    elif (isinstance(state, dict) and (messages := state.get(messages_key, []))) or (
        messages := getattr(state, messages_key, [])
    ):
        last = messages[-1]
    else:
        raise ValueError(f"No messages found in input state to tool_edge: {state}")
    return "tools" if getattr(last, "tool_calls", None) else "__end__"
