"""Checkpoint bytes after 400 supersteps that each append 1 KB, against the final state size.

Runs the same loop graph on our SqliteSaver and on LangGraph's SqliteSaver and prints, for
each, the bytes of every stored column value and the size of the SQLite file after a
VACUUM, each over the bytes of the final state (target for ours: both <= 3x; LangGraph's:
about 200x).
Usage: python bench/storage_growth.py [--steps N]
"""

from __future__ import annotations

import argparse
import operator
import os
import secrets
import sqlite3
import tempfile
from typing import Annotated, Any, TypedDict

import orjson

# Random text, so that no saver gains from compressing a repeated character.
PAYLOAD = secrets.token_hex(512)


class State(TypedDict):
    chunks: Annotated[list, operator.add]
    n: int


def build(api: Any, steps: int, saver: Any) -> Any:
    graph = api.StateGraph(State)
    graph.add_node("append", lambda s: {"chunks": [PAYLOAD], "n": s["n"] + 1})
    graph.add_edge(api.START, "append")
    graph.add_conditional_edges(
        "append", lambda s: api.END if s["n"] >= steps else "append", ["append", api.END]
    )
    return graph.compile(checkpointer=saver)


def database_bytes(path: str) -> tuple[int, int]:
    """(bytes of every stored column value, bytes of the file after a vacuum).

    The first is what the saver chose to store, measured the same way for both savers; the
    second adds SQLite's own page and index overhead.
    """
    conn = sqlite3.connect(path)
    try:
        conn.execute("VACUUM")
        logical = 0
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            total = " + ".join(f"COALESCE(LENGTH({c}), 0)" for c in columns)
            logical += conn.execute(f"SELECT COALESCE(SUM({total}), 0) FROM {table}").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    return logical, pages * size


def run(label: str, steps: int) -> tuple[tuple[int, int], int]:
    workdir = tempfile.mkdtemp(prefix="cg-storage-")
    path = os.path.join(workdir, "checkpoints.sqlite")
    if label == "graphdef":
        import graphdef as api

        saver = api.SqliteSaver(path)
    else:
        import types

        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.graph import END, START, StateGraph

        api = types.SimpleNamespace(StateGraph=StateGraph, START=START, END=END)
        saver = SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    app = build(api, steps, saver)
    config = {"configurable": {"thread_id": "growth"}, "recursion_limit": steps * 2 + 10}
    final = app.invoke({"chunks": [], "n": 0}, config, durability="sync")
    state_bytes = len(orjson.dumps(final))
    if hasattr(saver, "close"):
        saver.close()
    return database_bytes(path), state_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    print(f"{'saver':<12}{'stored bytes':>14}{'file (VACUUM)':>15}{'final state':>13}"
          f"{'stored/state':>14}{'file/state':>12}")
    for label in ("graphdef", "langgraph"):
        (stored, on_disk), state = run(label, args.steps)
        print(f"{label:<12}{stored:>14,}{on_disk:>15,}{state:>13,}"
              f"{stored / state:>13.1f}x{on_disk / state:>11.1f}x")
    print(f"{args.steps} supersteps, each appending {len(PAYLOAD)} bytes to a list")


if __name__ == "__main__":
    main()
