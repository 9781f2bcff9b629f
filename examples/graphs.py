"""Graphs for the local cluster (`make cluster`): `CELERYGRAPH_GRAPHS=examples.graphs`.

    celerygraph submit examples.graphs:orders --input '{"customer": "ada"}' --wait
    celerygraph submit examples.graphs:approval --input '{"amount": 120}'
    celerygraph resume <thread> '"approved"' --wait
"""

from __future__ import annotations

import operator
import time
from typing import Annotated, Any, TypedDict

from graphdef import END, START, Send, StateGraph, interrupt


class Orders(TypedDict, total=False):
    customer: str
    orders: list[dict[str, Any]]
    enriched: Annotated[list, operator.add]
    report: str


def fetch(state: Orders) -> dict[str, Any]:
    return {"orders": [{"id": i, "amount": 10 * i} for i in range(1, 6)]}


def enrich(order: dict[str, Any]) -> dict[str, Any]:
    time.sleep(0.2)  # an I/O call in real life
    return {"enriched": [{**order, "vat": order["amount"] // 5}]}


def summarize(state: Orders) -> dict[str, Any]:
    total = sum(o["amount"] + o["vat"] for o in state["enriched"])
    return {"report": f"{state['customer']}: {len(state['enriched'])} orders, total {total}"}


_orders = StateGraph(Orders)
_orders.add_node(fetch)
_orders.add_node(enrich)
_orders.add_node(summarize)
_orders.add_edge(START, "fetch")
_orders.add_conditional_edges("fetch", lambda s: [Send("enrich", o) for o in s["orders"]],
                              ["enrich"])
_orders.add_edge("enrich", "summarize")
_orders.add_edge("summarize", END)
orders = _orders.compile()


class Approval(TypedDict, total=False):
    amount: int
    decision: str


def review(state: Approval) -> dict[str, Any]:
    return {"decision": interrupt({"question": "approve this spend?", "amount": state["amount"]})}


_approval = StateGraph(Approval)
_approval.add_node(review)
_approval.add_edge(START, "review")
approval = _approval.compile()
