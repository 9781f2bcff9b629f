"""graphdef: LangGraph's graph API with durable execution, in-process or over Celery.

A LangGraph program ports by changing its imports to `graphdef`.
"""

from graphdef.cache import BaseCache, InMemoryCache
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
from graphdef.runtime import (
    Runtime,
    get_config,
    get_runtime,
    get_store,
    get_stream_writer,
    interrupt,
)
from graphdef.state import CompiledStateGraph, StateGraph
from graphdef.store import BaseStore, InMemoryStore, Item, SearchItem, SqliteStore
from graphdef.types import (
    CachePolicy,
    Command,
    Interrupt,
    Overwrite,
    RetryPolicy,
    Send,
    StateSnapshot,
)

__all__ = [
    "END",
    "START",
    "BaseCache",
    "BaseStore",
    "CachePolicy",
    "Command",
    "CompiledStateGraph",
    "EmptyInputError",
    "GraphRecursionError",
    "InMemoryCache",
    "InMemorySaver",
    "InMemoryStore",
    "Interrupt",
    "InvalidResumeError",
    "InvalidUpdateError",
    "Item",
    "MemorySaver",
    "MessagesState",
    "Overwrite",
    "Pregel",
    "RetryPolicy",
    "Runtime",
    "SearchItem",
    "Send",
    "SqliteSaver",
    "SqliteStore",
    "StateGraph",
    "StateSnapshot",
    "add_messages",
    "entrypoint",
    "get_config",
    "get_runtime",
    "get_store",
    "get_stream_writer",
    "interrupt",
    "task",
]
