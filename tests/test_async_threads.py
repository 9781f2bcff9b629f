"""Under the async API, only sync nodes hop to a thread: a graph of async nodes runs on the
caller's loop alone, its start node included (a thread per run costs more than short nodes)."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from graphdef import END, START, InMemorySaver, StateGraph


class State(TypedDict):
    x: int


async def _async_step(state: State) -> dict[str, int]:
    return {"x": state["x"] + 1}


def _sync_step(state: State) -> dict[str, int]:
    return {"x": state["x"] + 1}


def _chain(node: Any) -> Any:
    graph = StateGraph(State)
    graph.add_node("a", node)
    graph.add_node("b", node)
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", END)
    return graph.compile(checkpointer=InMemorySaver())


def _run_and_check_executor(node: Any) -> tuple[Any, bool]:
    async def run() -> tuple[Any, bool]:
        out = await _chain(node).ainvoke({"x": 0}, {"configurable": {"thread_id": "t"}})
        return out, asyncio.get_running_loop()._default_executor is not None  # type: ignore[attr-defined]

    return asyncio.run(run())


def test_async_nodes_run_without_a_thread() -> None:
    assert _run_and_check_executor(_async_step) == ({"x": 2}, False)


def test_sync_nodes_under_the_async_api_run_in_threads() -> None:
    assert _run_and_check_executor(_sync_step) == ({"x": 2}, True)
