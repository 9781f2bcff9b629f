"""Checkpoint bytes after 400 supersteps that each append 1 KB, against the final state size.

Runs the same loop graph on each saver and prints what it stored, over the bytes of the
final state (target for graphdef's savers: <= 3x; LangGraph's SqliteSaver: about 200x):

- graphdef's SqliteSaver and LangGraph's SqliteSaver: the bytes of every stored column
  value, and the file after a VACUUM;
- LangGraph's InMemorySaver: the bytes and strings it keeps (serialized values, ids);
- Redis savers, each on a private redis-server of its own: graphdef's RedisSaver (the
  distributed backend's), our LangGraphRedisSaver (celerygraph_langgraph) and the published
  langgraph-checkpoint-redis (its RedisSaver) where it can run: stored bytes (key names and
  contents, as the SQLite columns are counted) and Redis memory (MEMORY USAGE of its keys,
  plus RediSearch's indexes); `bench/redis_bytes.py` says how and why. langgraph-checkpoint-redis
  needs RedisJSON and RediSearch: without them its row says why it did not run.

Usage: python bench/storage_growth.py [--steps N]
"""

from __future__ import annotations

import argparse
import operator
import os
import secrets
import sqlite3
import sys
import tempfile
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.redis_bytes import (  # noqa: E402
    Skipped,
    module_redis,
    private_redis,
    redis_memory,
    stored_bytes,
)

# Random text, so that no saver gains from compressing a repeated character.
PAYLOAD = secrets.token_hex(512)

Measure = tuple[int, int | None, int]  # stored bytes, file or Redis memory, final state bytes


class State(TypedDict):
    chunks: Annotated[list, operator.add]
    n: int


def _langgraph_api() -> Any:
    from langgraph.graph import END, START, StateGraph

    return types.SimpleNamespace(StateGraph=StateGraph, START=START, END=END)


def run_graph(api: Any, saver: Any, steps: int) -> int:
    """Run the loop on `saver`; the final state's bytes."""
    graph = api.StateGraph(State)
    graph.add_node("append", lambda s: {"chunks": [PAYLOAD], "n": s["n"] + 1})
    graph.add_edge(api.START, "append")
    graph.add_conditional_edges(
        "append", lambda s: api.END if s["n"] >= steps else "append", ["append", api.END]
    )
    app = graph.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "growth"}, "recursion_limit": steps * 2 + 10}
    final = app.invoke({"chunks": [], "n": 0}, config, durability="sync")
    return len(orjson.dumps(final))


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


def _sqlite_path() -> str:
    return os.path.join(tempfile.mkdtemp(prefix="cg-storage-"), "checkpoints.sqlite")


def graphdef_sqlite(steps: int) -> Measure:
    import graphdef

    path = _sqlite_path()
    with graphdef.SqliteSaver(path) as saver:
        state = run_graph(graphdef, saver, steps)
    return (*database_bytes(path), state)


def langgraph_sqlite(steps: int) -> Measure:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = _sqlite_path()
    conn = sqlite3.connect(path, check_same_thread=False)
    state = run_graph(_langgraph_api(), SqliteSaver(conn), steps)
    conn.close()
    return (*database_bytes(path), state)


def held_bytes(value: Any) -> int:
    """Bytes and strings (as UTF-8) held in nested dicts, lists and tuples."""
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        return sum(held_bytes(k) + held_bytes(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(held_bytes(v) for v in value)
    return 0


def langgraph_memory(steps: int) -> Measure:
    from langgraph.checkpoint.memory import InMemorySaver

    saver = InMemorySaver()
    state = run_graph(_langgraph_api(), saver, steps)
    kept = held_bytes(dict(saver.storage)) + held_bytes(saver.writes) + held_bytes(saver.blobs)
    return kept, None, state


def _in_redis(server_cm: Any, make_saver: Callable[[str], Any], api: Any, steps: int) -> Measure:
    """Run on a fresh private Redis; (stored bytes, Redis memory, state bytes)."""
    with server_cm as server, server.client() as client:
        state = run_graph(api, make_saver(server.url), steps)
        return stored_bytes(client), redis_memory(client), state


def graphdef_redis(steps: int) -> Measure:
    import graphdef
    from graphdef.checkpoint.redis import RedisSaver

    return _in_redis(private_redis(), RedisSaver, graphdef, steps)


def ours_in_langgraph(steps: int) -> Measure:
    from celerygraph_langgraph import LangGraphRedisSaver

    return _in_redis(private_redis(), LangGraphRedisSaver.from_url, _langgraph_api(), steps)


def langgraph_checkpoint_redis(steps: int) -> Measure:
    try:
        from langgraph.checkpoint.redis import RedisSaver
    except ImportError as error:
        raise Skipped(f"not installed ({error.name}); pip install -e '.[bench-redis-modules]'"
                      ) from error

    def make(url: str) -> Any:
        saver = RedisSaver(url)
        saver.setup()  # its RediSearch indexes: part of what it costs
        return saver

    return _in_redis(module_redis(), make, _langgraph_api(), steps)


SAVERS: list[tuple[str, str, Callable[[int], Measure]]] = [
    ("graphdef SqliteSaver", "file (VACUUM)", graphdef_sqlite),
    ("LangGraph SqliteSaver", "file (VACUUM)", langgraph_sqlite),
    ("LangGraph InMemorySaver", "", langgraph_memory),
    ("graphdef RedisSaver", "Redis memory", graphdef_redis),
    ("LangGraphRedisSaver (ours)", "Redis memory", ours_in_langgraph),
    ("langgraph-checkpoint-redis", "Redis memory", langgraph_checkpoint_redis),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    print(f"{'saver':<28}{'stored bytes':>14}{'footprint':>14}  {'(of)':<14}{'final state':>12}"
          f"{'stored/state':>14}{'footprint/state':>17}")
    for label, footprint_kind, measure in SAVERS:
        try:
            stored, footprint, state = measure(args.steps)
        except Skipped as why:
            print(f"{label:<28}not run: {why}")
            continue
        shown, ratio = (f"{footprint:,}", f"{footprint / state:.1f}x") if footprint else ("-", "-")
        print(f"{label:<28}{stored:>14,}{shown:>14}  {footprint_kind:<14}{state:>12,}"
              f"{stored / state:>13.1f}x{ratio:>17}")
    print(f"{args.steps} supersteps, each appending {len(PAYLOAD)} bytes to a list")


if __name__ == "__main__":
    main()
