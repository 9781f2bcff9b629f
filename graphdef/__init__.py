"""graphdef: LangGraph's graph API with durable execution, in-process or over Celery.

A LangGraph program ports by changing its imports to `graphdef`.
"""

from graphdef.checkpoint.memory import InMemorySaver, MemorySaver
from graphdef.checkpoint.sqlite import SqliteSaver
from graphdef.constants import END, START
from graphdef.errors import (
    EmptyInputError,
    GraphRecursionError,
    InvalidResumeError,
    InvalidUpdateError,
)
from graphdef.func import entrypoint, task
from graphdef.messages import MessagesState, add_messages
from graphdef.pregel import Pregel
from graphdef.runtime import get_config, get_stream_writer, interrupt
from graphdef.state import CompiledStateGraph, StateGraph
from graphdef.types import Command, Interrupt, Overwrite, RetryPolicy, Send, StateSnapshot

__all__ = [
    "END",
    "START",
    "Command",
    "CompiledStateGraph",
    "EmptyInputError",
    "GraphRecursionError",
    "InMemorySaver",
    "Interrupt",
    "InvalidResumeError",
    "InvalidUpdateError",
    "MemorySaver",
    "MessagesState",
    "Overwrite",
    "Pregel",
    "RetryPolicy",
    "Send",
    "SqliteSaver",
    "StateGraph",
    "StateSnapshot",
    "add_messages",
    "entrypoint",
    "get_config",
    "get_stream_writer",
    "interrupt",
    "task",
]
