"""A scripted chat model for agent scenarios: no network, same answers on every run.

It returns its `replies` in order (an AIMessage, or a callable of the messages it got),
records what it was sent, and accepts `bind_tools`, so it stands in for a tool-calling
model under both LangGraph's and graphdef's prebuilt agents. `with_structured_output` is
langchain-core's own, on top of `bind_tools`: a reply whose tool call is named after the
schema becomes the structured response.
"""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, PrivateAttr


class ScriptedChatModel(BaseChatModel):
    replies: list[Any]
    seen: list[list[tuple[str, Any]]] = Field(default_factory=list)
    bound: list[list[str]] = Field(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        with self._lock:
            self.seen.append([(m.type, m.content) for m in messages])
            reply = self.replies[len(self.seen) - 1]
        message = reply(messages) if callable(reply) else reply.model_copy(deep=True)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        self.bound.append(sorted(getattr(t, "name", None) or getattr(t, "__name__", str(t))
                                 for t in tools))
        return self


def call(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def asks(*calls: dict[str, Any], content: str = "") -> AIMessage:
    """A reply that asks for tool calls."""
    return AIMessage(content=content, tool_calls=list(calls))


def says(content: str) -> AIMessage:
    return AIMessage(content=content)
