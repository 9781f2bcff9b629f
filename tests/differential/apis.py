"""The two implementations under comparison, behind one set of names.

Scenarios only touch ``api.<name>``, so the same scenario code runs on real LangGraph and on
graphdef. ``GRAPHDEF`` is built on first access so that this module imports while graphdef
is still incomplete.
"""

from __future__ import annotations

import functools
import sqlite3
from types import SimpleNamespace

NAMES = (
    "StateGraph",
    "START",
    "END",
    "Send",
    "Command",
    "interrupt",
    "Interrupt",
    "RetryPolicy",
    "entrypoint",
    "task",
    "MessagesState",
    "add_messages",
    "GraphRecursionError",
    "InvalidUpdateError",
    "EmptyInputError",
    "InMemorySaver",
    "BaseStore",
    "InMemoryStore",
    "get_store",
    "get_stream_writer",
    "Runtime",
    "get_runtime",
    "CachePolicy",
    "InMemoryCache",
)


def _langgraph() -> SimpleNamespace:
    from langgraph.cache.memory import InMemoryCache
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.config import get_store, get_stream_writer
    from langgraph.errors import EmptyInputError, GraphRecursionError, InvalidUpdateError
    from langgraph.func import entrypoint, task
    from langgraph.graph import END, START, MessagesState, StateGraph, add_messages
    from langgraph.runtime import Runtime, get_runtime
    from langgraph.store.base import BaseStore
    from langgraph.store.memory import InMemoryStore
    from langgraph.types import CachePolicy, Command, Interrupt, RetryPolicy, Send, interrupt

    def sqlite_saver(path: str) -> SqliteSaver:
        return SqliteSaver(sqlite3.connect(path, check_same_thread=False))

    return SimpleNamespace(
        name="langgraph",
        sqlite_saver=sqlite_saver,
        StateGraph=StateGraph,
        START=START,
        END=END,
        Send=Send,
        Command=Command,
        interrupt=interrupt,
        Interrupt=Interrupt,
        RetryPolicy=RetryPolicy,
        entrypoint=entrypoint,
        task=task,
        MessagesState=MessagesState,
        add_messages=add_messages,
        GraphRecursionError=GraphRecursionError,
        InvalidUpdateError=InvalidUpdateError,
        EmptyInputError=EmptyInputError,
        InMemorySaver=InMemorySaver,
        BaseStore=BaseStore,
        InMemoryStore=InMemoryStore,
        get_store=get_store,
        get_stream_writer=get_stream_writer,
        Runtime=Runtime,
        get_runtime=get_runtime,
        CachePolicy=CachePolicy,
        InMemoryCache=InMemoryCache,
    )


def _graphdef() -> SimpleNamespace:
    import graphdef

    return SimpleNamespace(
        name="graphdef",
        sqlite_saver=graphdef.SqliteSaver,
        **{name: getattr(graphdef, name) for name in NAMES},
    )


@functools.cache
def load_api(name: str) -> SimpleNamespace:
    """The api namespace called ``name`` ("langgraph" or "graphdef")."""
    loaders = {"langgraph": _langgraph, "graphdef": _graphdef}
    return loaders[name]()


LANGGRAPH = load_api("langgraph")


def __getattr__(attr: str) -> SimpleNamespace:
    if attr == "GRAPHDEF":
        return load_api("graphdef")
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
