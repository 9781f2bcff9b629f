"""`add_messages` and `MessagesState`: a chat history merged by message id.

With langchain-core installed, messages become LangChain message objects, exactly as in
LangGraph; without it they stay plain dicts (`{"role": ..., "content": ..., "id": ...}`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, TypedDict

from graphdef import serde

try:
    from langchain_core import messages as _lc
    from langchain_core.messages import (
        BaseMessage,
        BaseMessageChunk,
        RemoveMessage,
        convert_to_messages,
        message_chunk_to_message,
    )
except ImportError:  # pragma: no cover - exercised where langchain-core is absent
    _lc = None
    BaseMessage = BaseMessageChunk = RemoveMessage = None  # type: ignore[assignment,misc]
    convert_to_messages = message_chunk_to_message = None  # type: ignore[assignment]
else:
    # Any process may read a checkpoint holding messages, not only the one that wrote it.
    for _name in (
        "AIMessage", "HumanMessage", "SystemMessage", "ToolMessage", "ChatMessage",
        "FunctionMessage", "RemoveMessage", "AIMessageChunk", "HumanMessageChunk",
        "SystemMessageChunk", "ToolMessageChunk", "ChatMessageChunk", "FunctionMessageChunk",
    ):
        if isinstance(getattr(_lc, _name, None), type):
            serde.register(getattr(_lc, _name))

REMOVE_ALL = "__remove_all__"
REMOVE_ALL_MESSAGES = REMOVE_ALL  # LangGraph's name


def _as_list(value: Any) -> list[Any]:
    # Only a list is a list of messages: a tuple is one ("role", "content") message.
    return list(value) if isinstance(value, list) else [value]


def _normalise(messages: list[Any]) -> list[Any]:
    if convert_to_messages is not None:
        converted = [
            message_chunk_to_message(m) if isinstance(m, BaseMessageChunk) else m
            for m in convert_to_messages(messages)
        ]
        for m in converted:
            if m.id is None:
                m.id = str(uuid.uuid4())
        return converted
    out = []
    for m in messages:
        if isinstance(m, str):
            m = {"role": "user", "content": m}
        elif isinstance(m, tuple) and len(m) == 2:
            m = {"role": m[0], "content": m[1]}
        if not isinstance(m, dict):
            raise TypeError(f"Message must be a dict or str, got {type(m).__name__}")
        out.append(m if m.get("id") else {**m, "id": str(uuid.uuid4())})
    return out


def _id(message: Any) -> str:
    return message["id"] if isinstance(message, dict) else message.id


def _is_remove(message: Any) -> bool:
    if isinstance(message, dict):
        return message.get("type") == "remove"
    return RemoveMessage is not None and isinstance(message, RemoveMessage)


def add_messages(left: Any, right: Any) -> list[Any]:
    """Append new messages; a message whose id exists replaces it; a remove deletes it."""
    merged = _normalise(_as_list(left))
    incoming = _normalise(_as_list(right))
    if any(_is_remove(m) and _id(m) == REMOVE_ALL for m in incoming):
        last = max(i for i, m in enumerate(incoming) if _is_remove(m) and _id(m) == REMOVE_ALL)
        return incoming[last + 1 :]
    index = {_id(m): i for i, m in enumerate(merged)}
    removed: set[str] = set()
    for m in incoming:
        mid = _id(m)
        if mid in index:
            if _is_remove(m):
                removed.add(mid)
            else:
                merged[index[mid]] = m
                removed.discard(mid)
        elif _is_remove(m):
            raise ValueError(
                f"Attempting to delete a message with an ID that doesn't exist ('{mid}')"
            )
        else:
            index[mid] = len(merged)
            merged.append(m)
    return [m for m in merged if _id(m) not in removed]


class MessagesState(TypedDict):
    messages: Annotated[list, add_messages]
