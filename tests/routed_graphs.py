"""Graphs for the routing tests on real workers (CELERYGRAPH_GRAPHS=tests.routed_graphs).

Every node records where it ran (the Celery worker's node name, its pid and its process
group) in the private Redis, so a test can tell which worker process took which node.
"""

from __future__ import annotations

import json
import operator
import os
from typing import Annotated, Any, TypedDict

import redis

from graphdef import END, START, StateGraph, get_config

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["CELERYGRAPH_STORE_URL"])
    return _client


def record(node: str) -> None:
    """Append `{node, hostname, pid, pgid}` to the list `where:<thread>`."""
    from celery import current_task

    request = getattr(current_task, "request", None)
    conf = get_config()["configurable"]
    _redis().rpush(f"where:{conf['thread_id']}", json.dumps({
        "node": node,
        "hostname": getattr(request, "hostname", None),
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
    }))


class Log(TypedDict, total=False):
    log: Annotated[list, operator.add]


def step(name: str) -> Any:
    def node(state: Log) -> dict[str, Any]:
        record(name)
        return {"log": [name]}

    node.__name__ = name
    return node


def _routed(routes: dict[str, str] | None = None) -> Any:
    """`light` and `heavy` run in the same superstep; `heavy` goes to the `gpu` queue."""
    builder = StateGraph(Log)
    builder.add_node("light", step("light"))
    builder.add_node("heavy", step("heavy"), queue="gpu")
    builder.add_node("report", step("report"))
    builder.add_edge(START, "light")
    builder.add_edge(START, "heavy")
    builder.add_edge(["light", "heavy"], "report")
    builder.add_edge("report", END)
    return builder.compile(routes=routes)


routed = _routed()
