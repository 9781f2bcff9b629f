"""Embedded engine vs LangGraph in-process: the same graphs, in-memory savers, `sync` durability.

Prints the median time per superstep of each and our/LangGraph ratio (target <= 0.5), for
sync graphs run with `invoke` and async graphs (async nodes) run with `ainvoke`.
Usage: python bench/embedded_vs_langgraph.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import operator
import statistics
import time
import types
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypedDict

CHAIN_LENGTH = 100
FAN_OUT = 100


class ChainState(TypedDict):
    x: int


class FanState(TypedDict):
    n: int
    results: Annotated[list, operator.add]


def load(name: str) -> types.SimpleNamespace:
    if name == "langgraph":
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.graph import END, START, StateGraph
        from langgraph.types import Send
    else:
        from graphdef import END, START, InMemorySaver, Send, StateGraph
    return types.SimpleNamespace(
        StateGraph=StateGraph, START=START, END=END, Send=Send, InMemorySaver=InMemorySaver
    )


async def _async_increment(state: ChainState) -> dict[str, int]:
    return {"x": state["x"] + 1}


async def _async_double(state: dict[str, int]) -> dict[str, list[int]]:
    return {"results": [state["n"] * 2]}


def chain(api: types.SimpleNamespace, node: Callable[..., Any] | None = None
          ) -> tuple[Any, Any, int]:
    graph = api.StateGraph(ChainState)
    names = [f"n{i}" for i in range(CHAIN_LENGTH)]
    for name in names:
        graph.add_node(name, node or (lambda s: {"x": s["x"] + 1}))
    graph.add_edge(api.START, names[0])
    for a, b in zip(names, names[1:], strict=False):
        graph.add_edge(a, b)
    graph.add_edge(names[-1], api.END)
    app = graph.compile(checkpointer=api.InMemorySaver())
    return app, {"x": 0}, CHAIN_LENGTH + 1


def fan_out(api: types.SimpleNamespace, node: Callable[..., Any] | None = None
            ) -> tuple[Any, Any, int]:
    graph = api.StateGraph(FanState)
    graph.add_node("work", node or (lambda s: {"results": [s["n"] * 2]}))
    graph.add_conditional_edges(
        api.START, lambda s: [api.Send("work", {"n": i}) for i in range(s["n"])], ["work"]
    )
    graph.add_edge("work", api.END)
    app = graph.compile(checkpointer=api.InMemorySaver())
    return app, {"n": FAN_OUT, "results": []}, 2


def async_chain(api: types.SimpleNamespace) -> tuple[Any, Any, int]:
    return chain(api, _async_increment)


def async_fan_out(api: types.SimpleNamespace) -> tuple[Any, Any, int]:
    return fan_out(api, _async_double)


def times_per_step(build: Callable[[Any], tuple[Any, Any, int]], apis: Sequence[Any],
                   runs: int, use_async: bool = False) -> list[float]:
    """Median time per superstep of each API's graph. The APIs take turns run by run, so a
    load that comes and goes on a shared machine weighs on each of them alike. Both share
    one heap: each timed run starts after a full collection, so neither pays for a
    collection of the other's garbage (the one that crossed gc's threshold would)."""
    apps = [build(api) for api in apis]
    samples: list[list[float]] = [[] for _ in apis]
    for i in range(runs + 1):
        for (app, inp, steps), out in zip(apps, samples, strict=True):
            config = {"configurable": {"thread_id": f"bench-{i}"}, "recursion_limit": 1000}
            gc.collect()
            start = time.perf_counter()
            if use_async:
                asyncio.run(app.ainvoke(inp, config, durability="sync"))
            else:
                app.invoke(inp, config, durability="sync")
            elapsed = time.perf_counter() - start
            if i:  # the first run warms imports and caches
                out.append(elapsed / steps)
    return [statistics.median(out) for out in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    ours, theirs = load("graphdef"), load("langgraph")
    print(f"{'workload':<28}{'graphdef':>14}{'langgraph':>14}{'ratio':>9}")
    workloads = (
        (f"chain of {CHAIN_LENGTH}", chain, False),
        (f"Send fan-out of {FAN_OUT}", fan_out, False),
        (f"async chain of {CHAIN_LENGTH}", async_chain, True),
        (f"async Send fan-out of {FAN_OUT}", async_fan_out, True),
    )
    for label, build, use_async in workloads:
        a, b = times_per_step(build, (ours, theirs), args.runs, use_async)
        print(f"{label:<28}{a * 1e3:>11.3f} ms{b * 1e3:>11.3f} ms{a / b:>9.2f}")
    print("time per superstep, median of", args.runs, "runs; ratio = graphdef / langgraph")


if __name__ == "__main__":
    main()
