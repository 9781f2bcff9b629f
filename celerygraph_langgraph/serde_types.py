"""What LangGraph programs store, made known to graphdef's serde (tagged JSON, never pickle).

Both doors use it: the saver (checkpoints hold ``Send``, ``Interrupt``, ``Command``, LangChain
messages) and the store (items often hold messages). A resumed thread or a stored item is
often read by a process that never encoded it, so the registration cannot wait for an encode.
"""

from __future__ import annotations

import functools

from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.types import Command, Interrupt, Overwrite, Send

from graphdef import serde


@functools.cache
def register_langgraph_types() -> None:
    """Once per process. ``Send`` and ``_DeltaSnapshot`` have no natural form; LangChain's
    messages are pydantic models from one allowed module (data classes only: decoding
    validates fields, it runs no code chosen by the data)."""
    serde.register(Interrupt)
    serde.register(Command)
    serde.register(Overwrite)
    serde.register(
        Send,
        name="langgraph.types:Send",
        encode=lambda send: {"node": send.node, "arg": send.arg},
        decode=lambda doc: Send(doc["node"], doc["arg"]),
    )
    serde.register(
        _DeltaSnapshot,
        name="langgraph.checkpoint.serde.types:_DeltaSnapshot",
        encode=lambda snapshot: snapshot.value,
        decode=_DeltaSnapshot,
    )
    serde.allow_module("langchain_core.messages")
