"""Graphs for the CLI's embedded `run` mode: no Redis, no workers."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from graphdef import START, StateGraph, interrupt


class Log(TypedDict):
    log: Annotated[list, operator.add]


def ask(state: Log) -> dict[str, Any]:
    return {"log": [f"answer:{interrupt('approve?')}"]}


builder = StateGraph(Log)
builder.add_node("prepare", lambda s: {"log": ["prepare"]})
builder.add_node("ask", ask)
builder.add_node("finish", lambda s: {"log": ["finish"]})
builder.add_edge(START, "prepare")
builder.add_edge("prepare", "ask")
builder.add_edge("ask", "finish")
approval = builder.compile()
