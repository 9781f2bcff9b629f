"""Graphs the HTTP server's tests stream from real workers, beside `tests.dist_graphs`: a
chat model's tokens (`messages-tuple`), a subgraph's chunks (`stream_subgraphs`), and a
greeter whose typed schemas and context an assistant's config reaches."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from typing_extensions import TypedDict as SchemaTypedDict

from graphdef import START, Runtime, StateGraph, get_config


class Chat(TypedDict, total=False):
    text: str
    reply: str


def model(state: Chat) -> dict[str, Any]:
    """A chat model that streams `text` word by word."""
    fake = GenericFakeChatModel(messages=iter([AIMessage(content=state["text"])]))
    return {"reply": fake.invoke("hi").content}


def _chatty() -> Any:
    builder = StateGraph(Chat)
    builder.add_node("model", model)
    builder.add_edge(START, "model")
    return builder.compile()


chatty = _chatty()


class Log(TypedDict, total=False):
    log: Annotated[list, operator.add]


def talk(state: Log, writer: Any) -> dict[str, Any]:
    writer({"said": "inside"})
    return {"log": ["talked"]}


def _inner() -> Any:
    builder = StateGraph(Log)
    builder.add_node("talk", talk)
    builder.add_edge(START, "talk")
    return builder.compile()


def after(state: Log) -> dict[str, Any]:
    return {"log": ["after"]}


def _nested() -> Any:
    builder = StateGraph(Log)
    builder.add_node("inner", _inner())
    builder.add_node("after", after)
    builder.add_edge(START, "inner")
    builder.add_edge("inner", "after")
    return builder.compile()


nested = _nested()


# `typing_extensions.TypedDict`, which pydantic can describe on Python 3.11 (a
# `typing.TypedDict` there has no JSON schema, as with the reference server).
class Who(SchemaTypedDict):
    user: str


class Greeting(SchemaTypedDict, total=False):
    log: Annotated[list[str], operator.add]
    greeting: str


class Greeted(SchemaTypedDict):
    greeting: str


def greet(state: Greeting, runtime: Runtime[Who]) -> dict[str, Any]:
    """Greets the run's context user, in the tone its config asks for."""
    tone = get_config()["configurable"].get("tone", "plain")
    return {"greeting": f"{tone} hi {runtime.context['user']}", "log": ["greet"]}


def _greeter() -> Any:
    builder = StateGraph(Greeting, context_schema=Who, output_schema=Greeted)
    builder.add_node("greet", greet)
    builder.add_edge(START, "greet")
    return builder.compile()


greeter = _greeter()


class Seen(TypedDict, total=False):
    text: str
    seen: Annotated[list, operator.add]


def look(state: Seen) -> dict[str, Any]:
    """Records the metadata its config carries and has a chat model say `text`, whose
    `messages` chunks carry that metadata too."""
    fake = GenericFakeChatModel(messages=iter([AIMessage(content=state.get("text", "hi"))]))
    fake.invoke("hi")
    return {"seen": [dict(get_config()["metadata"])]}


def _looker() -> Any:
    builder = StateGraph(Seen)
    builder.add_node("look", look)
    builder.add_edge(START, "look")
    return builder.compile()


looker = _looker()
