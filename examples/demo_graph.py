"""The demos' workflow: fetch orders, enrich them in parallel, charge the customer once, publish.

`make demo-embedded` (crash_and_resume.py) compiles it with a SQLite checkpointer and runs it
in-process; `make demo` (distributed_demo.py) has Celery workers load `orders` from here
(`CELERYGRAPH_GRAPHS=examples.demo_graph`). Every function appends what it does to a journal,
and `charge_customer` appends to a ledger: the demos count what really ran from those files,
never from what they expect.
"""

from __future__ import annotations

import operator
import os
import time
from pathlib import Path
from typing import Annotated, TypedDict

from graphdef import END, START, Send, StateGraph, task

JOURNAL = Path(os.environ.get("DEMO_JOURNAL", "journal.log"))
LEDGER = Path(os.environ.get("DEMO_LEDGER", "ledger.log"))


def record(event: str) -> None:
    """Append `<pid> <parent pid> <event>`: the parent names the Celery worker of a pool
    process, which the distributed demo needs to know which worker to kill."""
    with JOURNAL.open("a") as f:
        f.write(f"{os.getpid()} {os.getppid()} {event}\n")


def read_journal(journal: Path) -> list[tuple[int, int, str]]:
    """The journal's lines as (pid, parent pid, event)."""
    entries = []
    for line in journal.read_text().splitlines():
        pid, ppid, event = line.split(" ", 2)
        entries.append((int(pid), int(ppid), event))
    return entries


class Order(TypedDict):
    id: int
    amount: int


class State(TypedDict):
    orders: list[Order]
    enriched: Annotated[list, operator.add]
    report: str


def fetch(state: State) -> dict:
    record("fetch")
    return {"orders": [{"id": i, "amount": 10 * i} for i in range(1, 4)]}


def fan_out(state: State) -> list[Send]:
    return [Send("enrich", order) for order in state["orders"]]


def enrich(order: Order) -> dict:
    record(f"enrich[{order['id']}]")
    return {"enriched": [{**order, "vat": order["amount"] // 5}]}


@task
def charge_customer(total: int) -> str:
    record("charge_customer")
    with LEDGER.open("a") as f:
        f.write(f"charged {total}\n")
    return f"receipt-{total}"


def summarize(state: State) -> dict:
    record("summarize")
    total = sum(o["amount"] + o["vat"] for o in state["enriched"])
    receipt = charge_customer(total).result()
    record("render-started")
    time.sleep(float(os.environ.get("DEMO_RENDER_SECONDS", "0.2")))
    return {"report": f"{len(state['enriched'])} orders, total {total}, {receipt}"}


def publish(state: State) -> dict:
    record("publish")
    return {}


def builder() -> StateGraph:
    """The workflow, not yet compiled: each demo picks its checkpointer."""
    graph = StateGraph(State)
    graph.add_node(fetch)
    graph.add_node(enrich)
    graph.add_node(summarize)
    graph.add_node(publish)
    graph.add_edge(START, "fetch")
    graph.add_conditional_edges("fetch", fan_out, ["enrich"])
    graph.add_edge("enrich", "summarize")
    graph.add_edge("summarize", "publish")
    graph.add_edge("publish", END)
    return graph


# For the workers: they checkpoint to Redis, so it is compiled without a checkpointer.
orders = builder().compile()
