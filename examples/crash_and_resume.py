"""`make demo`: a durable workflow is SIGKILLed mid-node, then resumed in a new process.

The workflow fetches orders, enriches them in parallel (a Send fan-out), then a `summarize`
node charges the customer through a `@task` (a side effect that must never repeat) and
renders a report slowly. The parent process kills the first run while it renders, starts a
second process on the same SQLite file, and reports which work was skipped because its
result was already saved and which ran again.
"""

from __future__ import annotations

import operator
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, TypedDict

from graphdef import END, START, Send, SqliteSaver, StateGraph, task

JOURNAL = Path(os.environ.get("DEMO_JOURNAL", "journal.log"))
LEDGER = Path(os.environ.get("DEMO_LEDGER", "ledger.log"))


def record(event: str) -> None:
    with JOURNAL.open("a") as f:
        f.write(f"{os.getpid()} {event}\n")


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


def build(db_path: str):
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
    return graph.compile(checkpointer=SqliteSaver(db_path))


CONFIG = {"configurable": {"thread_id": "order-batch-42"}}


def child(mode: str, db_path: str) -> None:
    app = build(db_path)
    result = app.invoke({"orders": []} if mode == "start" else None, CONFIG)
    print(f"  result: {result['report']}")


def runs_by_process(journal: Path) -> dict[str, list[str]]:
    runs: dict[str, list[str]] = {}
    for line in journal.read_text().splitlines():
        pid, event = line.split(" ", 1)
        runs.setdefault(pid, []).append(event)
    return runs


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="celerygraph-demo-"))
    db = workdir / "checkpoints.sqlite"
    env = {
        **os.environ,
        "DEMO_JOURNAL": str(workdir / "journal.log"),
        "DEMO_LEDGER": str(workdir / "ledger.log"),
        "PYTHONUNBUFFERED": "1",
    }
    journal = workdir / "journal.log"
    print(f"Checkpoints in {db}\n")
    print("Run 1: start the workflow, SIGKILL it while `summarize` renders its report")
    first = subprocess.Popen(
        [sys.executable, __file__, "start", str(db)],
        env={**env, "DEMO_RENDER_SECONDS": "60"},
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and "render-started" in journal.read_text():
            break
        if first.poll() is not None:
            print("  the first run ended before it could be killed")
            return 1
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    print(f"  killed process {first.pid} (exit {first.returncode})\n")

    print("Run 2: a new process resumes the same thread from its last checkpoint")
    second = subprocess.run([sys.executable, __file__, "resume", str(db)], env=env, check=False)
    if second.returncode != 0:
        return second.returncode

    runs = runs_by_process(journal)
    before, after = runs[str(first.pid)], next(v for k, v in runs.items() if k != str(first.pid))
    done_before = [e for e in before if e != "render-started"]
    skipped = [e for e in done_before if e not in after]
    again = [e for e in done_before if e in after]
    new = [e for e in after if e not in done_before and e != "render-started"]
    charges = (workdir / "ledger.log").read_text().splitlines()
    print("\nWhat happened")
    print(f"  ran before the kill:          {', '.join(done_before)}")
    print(f"  skipped, results were saved:  {', '.join(skipped)}")
    print(f"  ran again (killed mid-node):  {', '.join(again)}")
    print(f"  ran for the first time:       {', '.join(new)}")
    print(f"  customer charged {len(charges)} time(s): {'; '.join(charges)}")
    return 0 if len(charges) == 1 and "charge_customer" in skipped else 1


if __name__ == "__main__":
    if len(sys.argv) == 3:
        child(sys.argv[1], sys.argv[2])
    else:
        sys.exit(main())
