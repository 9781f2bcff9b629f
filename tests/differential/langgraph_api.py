"""The differential scenarios with LangGraph's own names, their graphs converted to graphdef.

Both namespaces are ``load_api("langgraph")`` with ``StateGraph.compile()``, ``@entrypoint``
and ``create_react_agent`` wrapped: each compiled LangGraph graph is converted by
``celerygraph_langgraph`` and the LangGraph object's run and state methods hand over to
the conversion. The scenario keeps the object LangGraph gave it, so a compiled graph added
as another graph's node is a LangGraph subgraph to that builder, converted with it. Run
inputs (``Command(resume=...)``) and state edits cross to graphdef's types as a caller's
would.

- ``converted_api()`` runs conversions in-process (``convert``), each LangGraph saver
  standing for a graphdef one: the same for every graph compiled with it, as threads live
  per saver.
- ``langgraph_cluster_api(cluster)`` runs them on the in-process cluster: converted by
  ``for_cluster`` (what a worker does with the LangGraph graphs of its
  ``CELERYGRAPH_GRAPHS`` modules) and bound as ``distributed_api`` binds graphdef's graphs.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver as LgInMemorySaver
from langgraph.func import entrypoint as lg_entrypoint
from langgraph.graph import StateGraph as LgStateGraph

import graphdef
from celerygraph_langgraph import convert, for_cluster
from celerygraph_langgraph.values import to_graphdef

from .apis import load_api
from .distributed_api import DistributedApi, InProcessCluster


class Handover:
    """The run and state methods a LangGraph graph object is given, which go to its
    conversion. Set on the object itself, which stays what LangGraph made (a Pregel, so
    another builder takes it as a subgraph)."""

    def __init__(self, converted: Any) -> None:
        self._converted = converted

    def _to(self, method: str) -> Any:
        return getattr(self._converted, method)

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        return self._to("invoke")(to_graphdef(input), config, **kwargs)

    def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        return self._to("ainvoke")(to_graphdef(input), config, **kwargs)

    def stream(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        return self._to("stream")(to_graphdef(input), config, **kwargs)

    def astream(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        return self._to("astream")(to_graphdef(input), config, **kwargs)

    def batch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> Any:
        return self._to("batch")([to_graphdef(i) for i in inputs], config, **kwargs)

    def abatch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> Any:
        return self._to("abatch")([to_graphdef(i) for i in inputs], config, **kwargs)

    def update_state(self, config: Any, values: Any, *args: Any, **kwargs: Any) -> Any:
        return self._to("update_state")(config, to_graphdef(values), *args, **kwargs)

    def aupdate_state(self, config: Any, values: Any, *args: Any, **kwargs: Any) -> Any:
        return self._to("aupdate_state")(config, to_graphdef(values), *args, **kwargs)

    def __getattr__(self, method: str) -> Any:
        """The methods whose arguments need no crossing."""
        return lambda *args, **kwargs: self._to(method)(*args, **kwargs)


HANDED_OVER = (
    "invoke", "ainvoke", "stream", "astream", "batch", "abatch", "update_state",
    "aupdate_state", "get_state", "aget_state", "get_state_history", "aget_state_history",
    "with_config", "clear_cache", "aclear_cache",
)


def hand_over(graph: Any, converted: Any) -> Any:
    handover = Handover(converted)
    for name in HANDED_OVER:
        setattr(graph, name, getattr(handover, name))
    return graph


def namespace(bind: Any, sqlite_saver: Any) -> SimpleNamespace:
    """LangGraph's names, with compiled graphs passed to `bind(graph, saver)`."""
    base = load_api("langgraph")

    class StateGraph(LgStateGraph):
        def compile(self, checkpointer: Any = None, **kwargs: Any) -> Any:
            return bind(super().compile(checkpointer, **kwargs), checkpointer)

    class entrypoint(lg_entrypoint):  # noqa: N801 - LangGraph's name
        def __call__(self, func: Any) -> Any:
            return bind(super().__call__(func), self.checkpointer)

    def create_react_agent(*args: Any, **kwargs: Any) -> Any:
        return bind(base.create_react_agent(*args, **kwargs), kwargs.get("checkpointer"))

    return SimpleNamespace(**{
        **vars(base), "StateGraph": StateGraph, "entrypoint": entrypoint,
        "create_react_agent": create_react_agent, "sqlite_saver": sqlite_saver,
    })


class _InProcess:
    """The graphdef saver each LangGraph saver stands for."""

    def __init__(self) -> None:
        self._savers: dict[int, tuple[Any, Any]] = {}
        self._paths: dict[int, str] = {}

    def saver(self, saver: Any) -> Any:
        if saver is None or isinstance(saver, bool):
            return saver
        if id(saver) not in self._savers:
            ours = (graphdef.InMemorySaver() if isinstance(saver, LgInMemorySaver)
                    else graphdef.SqliteSaver(self._paths[id(saver)]))
            self._savers[id(saver)] = (saver, ours)
        return self._savers[id(saver)][1]

    def bind(self, graph: Any, saver: Any) -> Any:
        converted = convert(graph, checkpointer=self.saver(saver))
        return hand_over(graph, converted)

    def sqlite_saver(self, path: str) -> Any:
        saver = load_api("langgraph").sqlite_saver(path)
        self._paths[id(saver)] = path
        return saver


def converted_api() -> SimpleNamespace:
    """LangGraph's names; graphs run converted, in-process."""
    binder = _InProcess()
    return namespace(binder.bind, binder.sqlite_saver)


class _OnCluster(DistributedApi):
    def bind_langgraph(self, graph: Any, saver: Any) -> Any:
        converted = for_cluster(graph)
        self.bind(converted, saver)
        return hand_over(graph, converted)


def langgraph_cluster_api(cluster: InProcessCluster) -> tuple[SimpleNamespace, str]:
    """LangGraph's names; graphs run converted on ``cluster``, with threads of their own;
    and the prefix of those threads (see `distributed_api.as_the_scenario_named`)."""
    api = _OnCluster(cluster)
    sqlite_files: dict[str, Any] = {}

    def sqlite_saver(path: str) -> Any:
        # Runs checkpoint in the cluster's Redis whatever the graph was compiled with; a
        # file stands for a saver, so graphs given the same file share threads.
        return sqlite_files.setdefault(path, LgInMemorySaver())

    return namespace(api.bind_langgraph, sqlite_saver), api.run_prefix
