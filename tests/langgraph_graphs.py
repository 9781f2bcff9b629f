"""Graphs written for LangGraph, imports and all, that workers load unchanged
(CELERYGRAPH_GRAPHS=tests.langgraph_graphs; tests/test_langgraph_workers.py).

Nothing here imports celerygraph: the worker's registry converts the module's LangGraph
graphs when it loads it. Nodes count their runs in Redis, keyed by thread, so a test can
tell what ran how often across processes.
"""

from __future__ import annotations

import operator
import os
from typing import Annotated, Literal, TypedDict

import redis
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_config
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy, Send, interrupt


def count(name: str) -> None:
    """One run of `name` on the current thread: the `runs:<thread>` hash."""
    thread = get_config()["configurable"]["thread_id"]
    redis.Redis.from_url(os.environ["CELERYGRAPH_STORE_URL"]).hincrby(f"runs:{thread}", name, 1)


def failed_before(name: str) -> bool:
    """Whether `name` already ran on this thread (its first attempt fails: a retry)."""
    thread = get_config()["configurable"]["thread_id"]
    client = redis.Redis.from_url(os.environ["CELERYGRAPH_STORE_URL"])
    return client.hincrby(f"attempts:{thread}", name, 1) > 1


class Review(TypedDict):
    items: list[int]
    scores: Annotated[list[int], operator.add]
    verdict: str


class Item(TypedDict):
    item: int


def fan_out(state: Review) -> list[Send]:
    return [Send("score", {"item": item}) for item in state["items"]]


def score(state: Item) -> dict:
    count(f"score {state['item']}")
    if state["item"] == 3 and not failed_before("score 3"):
        raise ConnectionError("flaky scorer")
    return {"scores": [state["item"] * 10]}


def approve(state: Review) -> Command[Literal["publish", "__end__"]]:
    count("approve")
    verdict = interrupt({"question": "publish?", "total": sum(state["scores"])})
    return Command(update={"verdict": verdict},
                   goto="publish" if verdict == "ship" else END)


def publish(state: Review) -> dict:
    count("publish")
    return {"verdict": f"published {sorted(state['scores'])}"}


review_builder = StateGraph(Review)
review_builder.add_node("score", score, retry_policy=RetryPolicy(initial_interval=0.01))
review_builder.add_node("approve", approve)
review_builder.add_node("publish", publish)
review_builder.add_conditional_edges(START, fan_out, ["score"])
review_builder.add_edge("score", "approve")
# The saver workers do not use: runs checkpoint in the cluster's Redis.
saver = InMemorySaver()
review = review_builder.compile(checkpointer=saver)


@task
def double(x: int) -> int:
    count(f"double {x}")
    return 2 * x


@entrypoint(checkpointer=InMemorySaver())
def doubled(numbers: list[int]) -> list[int]:
    count("doubled")
    return [future.result() for future in [double(n) for n in numbers]]
