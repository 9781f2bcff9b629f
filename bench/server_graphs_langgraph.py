"""`bench.server_graphs.three` written with LangGraph, for the reference server that
`langgraph dev` starts in `bench/server.py` (it imports this file by path)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import START, StateGraph


class Three(TypedDict, total=False):
    log: Annotated[list, operator.add]


def node(name: str) -> Any:
    def run(state: Three) -> dict[str, Any]:
        return {"log": [name]}

    run.__name__ = name
    return run


builder = StateGraph(Three)
for name in ("one", "two", "three"):
    builder.add_node(name, node(name))
builder.add_edge(START, "one")
builder.add_edge("one", "two")
builder.add_edge("two", "three")
three = builder.compile()
