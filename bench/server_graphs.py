"""The graph `bench/server.py` runs through both servers, written twice: with graphdef for
our workers (`three`, loaded by CELERYGRAPH_GRAPHS=bench.server_graphs), with LangGraph for
the reference server (`bench/server_graphs_langgraph.py`). Three nodes in a chain, each
appending its name: the cost measured is the servers' and the engines', not the nodes'."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from graphdef import START, StateGraph


class Three(TypedDict, total=False):
    log: Annotated[list, operator.add]


def node(name: str) -> Any:
    def run(state: Three) -> dict[str, Any]:
        return {"log": [name]}

    run.__name__ = name
    return run


def _three() -> Any:
    builder = StateGraph(Three)
    for name in ("one", "two", "three"):
        builder.add_node(name, node(name))
    builder.add_edge(START, "one")
    builder.add_edge("one", "two")
    builder.add_edge("two", "three")
    return builder.compile()


three = _three()
