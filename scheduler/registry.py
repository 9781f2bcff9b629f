"""Which graphs this process may run, by reference `package.module:attr`.

A worker runs only graphs from the modules it was configured to load, so a message cannot
make it import arbitrary code; workers publish what they loaded so producers can reject an
unknown graph before anything is stored.

A module may hold graphs built with LangGraph (a `StateGraph` builder, a compiled graph, an
`@entrypoint`): they are converted to graphdef graphs by `celerygraph_langgraph`, imported
only when a module attribute's class comes from `langgraph`, so that a process whose
modules hold none never needs LangGraph.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from graphdef.pregel import Pregel
from scheduler.errors import GraphModuleError, UnknownGraphError

_lock = threading.Lock()
_graphs: dict[str, Pregel] = {}


def _from_langgraph(value: object) -> bool:
    return any(cls.__module__.partition(".")[0] == "langgraph" for cls in type(value).__mro__)


def as_graph(value: object) -> Pregel | None:
    """`value` as a graph this process can run: a graphdef graph as it is, a LangGraph one
    converted (ConversionError names what cannot be), None for anything else."""
    if isinstance(value, Pregel):
        return value
    if not _from_langgraph(value):
        return None
    from celerygraph_langgraph.convert import for_cluster

    return for_cluster(value)


def register(ref: str, graph: object) -> None:
    """Make `graph` (graphdef's, or LangGraph's: converted) runnable under `ref` in this
    process (tests, embedded schedulers)."""
    runnable = as_graph(graph)
    if runnable is None:
        raise TypeError(f"{ref!r} is not a compiled graph")
    with _lock:
        _graphs[ref] = runnable


def load_modules(modules: tuple[str, ...] | list[str]) -> dict[str, Pregel]:
    """Import the configured modules and register every compiled graph at their top level."""
    found: dict[str, Pregel] = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # a syntax error, a missing name: anything the module raises
            raise GraphModuleError(
                f"graph module {name!r} (CELERYGRAPH_GRAPHS) failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        for attr, value in vars(module).items():
            if attr.startswith("_"):
                continue
            try:
                graph = as_graph(value)
            except Exception as exc:  # a LangGraph graph that does not convert
                raise GraphModuleError(
                    f"graph module {name!r} (CELERYGRAPH_GRAPHS): {attr!r} does not convert: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if graph is not None:
                found[f"{name}:{attr}"] = graph
    with _lock:
        _graphs.update(found)
    return found


def known() -> dict[str, Pregel]:
    with _lock:
        return dict(_graphs)


def resolve(ref: str) -> Pregel:
    with _lock:
        graph = _graphs.get(ref)
    if graph is None:
        raise UnknownGraphError(
            f"Unknown graph {ref!r}: not in any module this worker loads "
            f"(CELERYGRAPH_GRAPHS); known: {sorted(known())}"
        )
    return graph


def describe(graph: Pregel) -> dict[str, Any]:
    """What producers may learn about a graph without importing it."""
    return {
        "nodes": [n for n in graph.nodes if not graph.nodes[n].hidden],
        "queues": {n: node.queue for n, node in graph.nodes.items() if node.queue},
    }
