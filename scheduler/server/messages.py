"""The Agent Server's `messages` stream mode, made from the run's `messages` chunks (the
(message chunk, metadata) pairs LangGraph streams, which `messages-tuple` passes on as
they are), the way the reference server makes it: the first chunk of a message announces
it (`messages/metadata`, `{id: {"metadata": ...}}`), then each chunk sends the message
accumulated so far (`messages/partial`), or the whole message for one that came complete
(`messages/complete`).

Accumulating is per consumer and deterministic: a consumer that reconnects mid-run
(`Last-Event-ID`) first replays the chunks before its position silently (`prime`), so
it gets the same accumulated messages a consumer that never left got.
"""

from __future__ import annotations

from typing import Any


class MessageAccumulator:
    """Messages by id, each the sum of its chunks so far."""

    def __init__(self) -> None:
        self.messages: dict[str, Any] = {}

    def prime(self, data: Any) -> None:
        """Take in a chunk already sent to this consumer (before its reconnect)."""
        self.events(data)

    def events(self, data: Any) -> list[tuple[str, Any]]:
        """The SSE events (name, data) one `messages` chunk gives."""
        from langchain_core.messages import (
            AIMessageChunk,
            BaseMessageChunk,
            ToolMessageChunk,
            convert_to_messages,
            message_chunk_to_message,
        )

        message, metadata = data
        as_chunk = False  # a chunk that came as a dict stays a chunk, as there
        if isinstance(message, dict):
            kind = f"{message.get('type', '')} {message.get('role', '')}".lower()
            if "chunk" in kind:
                as_chunk = True
                chunk_type = ToolMessageChunk if "tool" in kind else AIMessageChunk
                message = chunk_type(**{k: v for k, v in message.items() if k != "type"})
            else:
                message = convert_to_messages([message])[0]
        out: list[tuple[str, Any]] = []
        if message.id in self.messages:
            self.messages[message.id] += message
        else:
            self.messages[message.id] = message
            out.append(("messages/metadata", {message.id: {"metadata": metadata}}))
        so_far = self.messages[message.id]
        name = ("messages/partial" if isinstance(message, BaseMessageChunk)
                else "messages/complete")
        out.append((name, [so_far if as_chunk else message_chunk_to_message(so_far)]))
        return out
