"""Creating a run: every check a producer's mistake can fail happens before anything is stored."""

from __future__ import annotations

from typing import Any

from graphdef import serde
from graphdef.pregel import DURABILITY_MODES
from graphdef.stream import check_modes
from scheduler import registry
from scheduler.errors import UnknownGraphError
from scheduler.records import RunRecord, RunStatus, encode_context
from scheduler.settings import Settings
from scheduler.store import RunStore, new_run_id

# What a run does when its thread is busy (LangGraph's `multitask_strategy`): fail, wait,
# stop the active run at its next superstep boundary, or cancel and discard it.
BUSY_POLICIES = ("reject", "enqueue", "interrupt", "rollback")


def check_graph(store: RunStore, ref: str) -> dict[str, Any]:
    """What a producer may know of `ref` (`registry.describe`): this process's own view of a
    graph it loads, else what the workers published; an error naming it if neither."""
    if ":" not in ref:
        raise UnknownGraphError(
            f"Graph reference {ref!r} must look like 'package.module:attribute'"
        )
    loaded = registry.known().get(ref)
    if loaded is not None:
        return registry.describe(loaded)
    published = store.graph_description(ref)
    if published is not None:
        return published
    raise UnknownGraphError(
        f"Unknown graph {ref!r}: no worker loads it (set CELERYGRAPH_GRAPHS on the workers); "
        f"known graphs: {store.published_graphs() or sorted(registry.known())}"
    )


def start_queue(described: dict[str, Any], routes: dict[str, str] | None,
                settings: Settings) -> str | None:
    """The node queue a run of the `described` graph starts on (`worker.tasks`,
    `start_and_run`), or None for the scheduler queue.

    A node worker that starts a run runs its first task in place when that task is bound for
    the worker's own queue: a broker round trip and a cold first step less than a start on
    the scheduler, which sends the first task on. Only the default node queue is chosen, and
    only when a node of the graph is served there under this run's `routes`: the workers on
    it then load the graph. One that does not (a graph whose only node there is never
    reached) passes the start on to the scheduler queue.
    """
    if not settings.chain_in_place:
        return None
    routes = routes or {}
    queues = described.get("queues") or {}
    home = settings.node_queue
    nodes = described.get("nodes") or []
    return home if any((routes.get(n) or queues.get(n) or home) == home for n in nodes) else None


def check_interrupt_nodes(store: RunStore, ref: str, name: str, nodes: Any
                          ) -> list[str] | str | None:
    """A run's `interrupt_before`/`interrupt_after`: None, `"*"`, or names of the graph's
    nodes (those the workers published, or the graph's own where it is loaded here); a
    name the graph lacks would never pause, so it is an error naming it."""
    if nodes is None or nodes == "*":
        return nodes  # type: ignore[no-any-return]
    if isinstance(nodes, str):
        nodes = [nodes]
    if not isinstance(nodes, list | tuple) or not all(isinstance(n, str) for n in nodes):
        raise ValueError(f"{name} must be '*' or a list of node names, got {nodes!r}")
    known = set(store.graph_nodes(ref) or ())
    if ref in registry.known():
        known |= set(registry.resolve(ref).nodes)
    unknown = sorted(set(nodes) - known)
    if known and unknown:
        raise ValueError(f"{name} names nodes graph {ref!r} does not have: "
                         f"{', '.join(unknown)}; its nodes: {', '.join(sorted(known))}")
    return list(nodes) or None  # as LangGraph: an empty list leaves the graph's


def create_run(
    store: RunStore,
    *,
    graph: str,
    run_input: Any,
    thread_id: str,
    config: dict[str, Any] | None = None,
    durability: str = "async",
    on_busy: str = "reject",
    run_id: str | None = None,
    routes: dict[str, str] | None = None,
    validate: bool = True,
    context: Any = None,
    stream_mode: str | list[str] | tuple[str, ...] | None = None,
    stream_subgraphs: bool = False,
    interrupt_before: list[str] | str | None = None,
    interrupt_after: list[str] | str | None = None,
) -> str:
    """Validate, then store the run record and input in one transaction; returns the run id.
    `context`: the run's `Runtime.context`, kept in the record. `stream_mode`: the modes
    its chunks are streamed in (`RunHandle.stream`); None streams nothing.
    `interrupt_before`/`interrupt_after`: the run's own pause points (node names or "*"),
    checked against the graph's nodes where this process knows them."""
    if validate:
        check_graph(store, graph)
    if durability not in DURABILITY_MODES:
        raise ValueError(f"durability must be one of {DURABILITY_MODES}, got {durability!r}")
    if on_busy not in BUSY_POLICIES:
        raise ValueError(f"on_busy must be one of {BUSY_POLICIES}, got {on_busy!r}")
    modes = [] if stream_mode is None else check_modes(stream_mode)
    serde.check_serializable(run_input, root="input")
    serde.check_serializable(config or {}, root="config")
    interrupt_before = check_interrupt_nodes(store, graph, "interrupt_before",
                                             interrupt_before)
    interrupt_after = check_interrupt_nodes(store, graph, "interrupt_after", interrupt_after)
    run_id = run_id or new_run_id()
    store.create_run(
        RunRecord(thread_id=thread_id, run_id=run_id, graph=graph, status=RunStatus.QUEUED,
                  durability=durability, on_busy=on_busy, config=config or {},
                  routes=routes or {}, context=encode_context(context),
                  stream_modes=modes, stream_subgraphs=bool(stream_subgraphs and modes),
                  interrupt_before=interrupt_before, interrupt_after=interrupt_after),
        run_input,
    )
    return run_id
