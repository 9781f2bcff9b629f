"""Creating a run: every check a producer's mistake can fail happens before anything is stored."""

from __future__ import annotations

from typing import Any

from graphdef import serde
from graphdef.pregel import DURABILITY_MODES
from graphdef.stream import check_modes
from scheduler import registry
from scheduler.errors import UnknownGraphError
from scheduler.records import RunRecord, RunStatus, encode_context
from scheduler.store import RunStore, new_run_id

# What a run does when its thread is busy (LangGraph's `multitask_strategy`): fail, wait,
# stop the active run at its next superstep boundary, or cancel and discard it.
BUSY_POLICIES = ("reject", "enqueue", "interrupt", "rollback")


def check_graph(store: RunStore, ref: str) -> None:
    if ":" not in ref:
        raise UnknownGraphError(
            f"Graph reference {ref!r} must look like 'package.module:attribute'"
        )
    if ref in registry.known() or store.graph_known(ref):
        return
    raise UnknownGraphError(
        f"Unknown graph {ref!r}: no worker loads it (set CELERYGRAPH_GRAPHS on the workers); "
        f"known graphs: {store.published_graphs() or sorted(registry.known())}"
    )


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
) -> str:
    """Validate, then store the run record and input in one transaction; returns the run id.
    `context`: the run's `Runtime.context`, kept in the record. `stream_mode`: the modes
    its chunks are streamed in (`RunHandle.stream`); None streams nothing."""
    if validate:
        check_graph(store, graph)
    if durability not in DURABILITY_MODES:
        raise ValueError(f"durability must be one of {DURABILITY_MODES}, got {durability!r}")
    if on_busy not in BUSY_POLICIES:
        raise ValueError(f"on_busy must be one of {BUSY_POLICIES}, got {on_busy!r}")
    modes = [] if stream_mode is None else check_modes(stream_mode)
    serde.check_serializable(run_input, root="input")
    serde.check_serializable(config or {}, root="config")
    run_id = run_id or new_run_id()
    store.create_run(
        RunRecord(thread_id=thread_id, run_id=run_id, graph=graph, status=RunStatus.QUEUED,
                  durability=durability, on_busy=on_busy, config=config or {},
                  routes=routes or {}, context=encode_context(context),
                  stream_modes=modes, stream_subgraphs=bool(stream_subgraphs and modes)),
        run_input,
    )
    return run_id
