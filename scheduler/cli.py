"""`celerygraph`: submit and manage distributed runs, or run a graph in-process.

Configuration comes from the same CELERYGRAPH_* environment variables as the workers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from graphdef.types import Command


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: input is not valid JSON: {exc}") from exc


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=_plain))


def _plain(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        return value._asdict()
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return repr(value)


def _load_graph(ref: str) -> Any:
    if ":" not in ref:
        raise SystemExit(f"error: graph must look like 'package.module:attribute', got {ref!r}")
    module, attr = ref.split(":", 1)
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"error: cannot load graph {ref!r}: {exc}") from exc


def _client() -> Any:
    from scheduler.client import Client

    return Client()


def _snapshot(state: Any) -> dict[str, Any]:
    return {
        "values": state.values,
        "next": list(state.next),
        "step": (state.metadata or {}).get("step"),
        "source": (state.metadata or {}).get("source"),
        "checkpoint_id": state.config["configurable"].get("checkpoint_id"),
        "interrupts": [{"id": i.id, "value": i.value} for i in state.interrupts],
    }


def cmd_submit(args: argparse.Namespace) -> int:
    routes = {}
    for route in args.route or ():
        node, sep, queue = route.partition("=")
        if not sep or not node or not queue:
            raise SystemExit(f"error: --route wants NODE=QUEUE, got {route!r}")
        routes[node] = queue
    handle = _client().submit(
        args.graph, _json(args.input), thread_id=args.thread, durability=args.durability,
        on_busy=args.on_busy, routes=routes or None,
    )
    if args.wait:
        return _report(handle, args.timeout)
    _print({"run_id": handle.id, "thread_id": handle.thread_id})
    return 0


def _report(handle: Any, timeout: float | None) -> int:
    status = handle.wait(timeout)
    info = handle.info()
    out: dict[str, Any] = {"run_id": handle.id, "thread_id": handle.thread_id, "status": status}
    if status in ("done", "interrupted"):
        out["output"] = handle.result()
    elif info.get("error"):
        out["error"] = info["error"]
    _print(out)
    return 0 if status in ("done", "interrupted") else 1


def cmd_status(args: argparse.Namespace) -> int:
    _print(_client().run(args.thread, args.run_id).info())
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    return _report(_client().run(args.thread, args.run_id), args.timeout)


def cmd_resume(args: argparse.Namespace) -> int:
    handle = _client().resume(args.thread, Command(resume=_json(args.value)))
    if args.wait:
        return _report(handle, args.timeout)
    _print({"run_id": handle.id, "thread_id": handle.thread_id})
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    _client().cancel(args.thread, args.run_id)
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    _print(_snapshot(_client().get_state(args.thread)))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    _print([_snapshot(s) for s in _client().get_state_history(args.thread, limit=args.limit)])
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from scheduler.watch import watch

    progress = watch(_client().run(args.thread, args.run_id), timeout=args.timeout)
    return 0 if progress.status in ("done", "interrupted") else 1


def cmd_threads(args: argparse.Namespace) -> int:
    threads = _client().threads()
    if args.status:
        threads = [t for t in threads if t["status"] == args.status]
    _print(threads)
    return 0


def cmd_graph_draw(args: argparse.Namespace) -> int:
    print(_load_graph(args.graph).get_graph().draw_mermaid(), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from graphdef.checkpoint.sqlite import SqliteSaver

    graph = _load_graph(args.graph)
    config = {"configurable": {"thread_id": args.thread}}
    run_input = Command(resume=_json(args.resume)) if args.resume else _json(args.input)
    _print(graph.invoke(run_input, config, durability=args.durability,
                        checkpointer=SqliteSaver(args.db)))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from scheduler.server.app import serve

    serve(args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="celerygraph", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("submit", help="start a distributed run")
    p.add_argument("graph", help="package.module:attribute")
    p.add_argument("--input", help="run input as JSON")
    p.add_argument("--thread", help="thread id (default: a new thread)")
    p.add_argument("--durability", default="async", choices=["sync", "async", "exit"])
    p.add_argument("--on-busy", default="reject", choices=["reject", "enqueue"])
    p.add_argument("--route", action="append", metavar="NODE=QUEUE",
                   help="send a node to a queue for this run (repeatable)")
    p.add_argument("--wait", action="store_true", help="wait and print the result")
    p.add_argument("--timeout", type=float)
    p.set_defaults(func=cmd_submit)

    for name, func, help_text in (("status", cmd_status, "a run's record"),
                                  ("wait", cmd_wait, "wait for a run and print its result"),
                                  ("cancel", cmd_cancel, "cancel a run")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("thread")
        p.add_argument("run_id")
        p.add_argument("--timeout", type=float)
        p.set_defaults(func=func)

    p = sub.add_parser("resume", help="answer a thread's pending interrupt")
    p.add_argument("thread")
    p.add_argument("value", help="the answer as JSON")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", type=float)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("state", help="a thread's current state")
    p.add_argument("thread")
    p.set_defaults(func=cmd_state)

    p = sub.add_parser("history", help="a thread's checkpoints, newest first")
    p.add_argument("thread")
    p.add_argument("--limit", type=int)
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("watch", help="live progress of a run")
    p.add_argument("thread")
    p.add_argument("run_id")
    p.add_argument("--timeout", type=float)
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("threads", help="threads and their latest run's status")
    p.add_argument("--status", help="only threads in this status, e.g. interrupted")
    p.set_defaults(func=cmd_threads)

    p = sub.add_parser("graph", help="inspect a graph")
    graph_sub = p.add_subparsers(dest="graph_command", required=True)
    draw = graph_sub.add_parser("draw", help="print the graph as Mermaid")
    draw.add_argument("graph", help="package.module:attribute")
    draw.set_defaults(func=cmd_graph_draw)

    p = sub.add_parser("run", help="run a graph in this process on a SQLite file")
    p.add_argument("graph", help="package.module:attribute")
    p.add_argument("--input", help="run input as JSON")
    p.add_argument("--resume", help="answer a pending interrupt (JSON)")
    p.add_argument("--thread", default="main")
    p.add_argument("--db", default="celerygraph.sqlite")
    p.add_argument("--durability", default="async", choices=["sync", "async", "exit"])
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="serve the LangGraph Agent Server HTTP API")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; anything but loopback needs CELERYGRAPH_API_KEYS")
    p.add_argument("--port", type=int, default=2024)
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (LookupError, ValueError, RuntimeError, TimeoutError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
