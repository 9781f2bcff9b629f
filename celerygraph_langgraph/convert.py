"""LangGraph graphs as graphdef graphs: a `StateGraph` builder, a compiled graph or an
`@entrypoint` becomes the graph graphdef runs the same way, in-process or on the cluster.

The conversion reads LangGraph's public builder attributes (`nodes` (StateNodeSpec),
`edges`, `waiting_edges`, `branches` (BranchSpec), `schemas`, `channels`, the state, input,
output and context schemas) and the compiled graph's (`checkpointer`, `store`, `cache`,
interrupt lists, `name`, `config`), and rebuilds the graph with graphdef's own builder, so
that graphdef validates and compiles it as one of its own; the state keeps the user's
schema classes, whose annotations both read the same reducers (checked key by key).
Node, route, task and entrypoint functions run as LangGraph calls them (bridge.py). A part
with no graphdef counterpart stops the conversion with a ConversionError naming it.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from collections.abc import Callable
from typing import Any, cast

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph._internal._runnable import RunnableCallable
from langgraph.cache.base import BaseCache as LgBaseCache
from langgraph.channels.binop import BinaryOperatorAggregate as LgBinaryOperatorAggregate
from langgraph.channels.last_value import LastValue as LgLastValue
from langgraph.checkpoint.memory import InMemorySaver as LgInMemorySaver
from langgraph.graph import StateGraph as LgStateGraph
from langgraph.graph.state import CompiledStateGraph as LgCompiledStateGraph
from langgraph.managed.base import is_managed_value
from langgraph.pregel import Pregel as LgPregel

from celerygraph_langgraph import bridge
from celerygraph_langgraph.cache import LangGraphCache
from celerygraph_langgraph.errors import ConversionError
from celerygraph_langgraph.functional import entrypoint_graph, is_entrypoint
from celerygraph_langgraph.inner import with_inner_graphs
from celerygraph_langgraph.values import cache_policy, retry_policies
from graphdef.cache.base import BaseCache
from graphdef.channels import BinaryOperatorAggregate, LastValue
from graphdef.checkpoint.base import BaseCheckpointSaver
from graphdef.checkpoint.memory import InMemorySaver
from graphdef.pregel import Pregel
from graphdef.state import CompiledStateGraph, StateGraph

AnyLgPregel = LgPregel[Any, Any, Any, Any]
Checkpointer = BaseCheckpointSaver | bool | None


class Saver(enum.Enum):
    """`convert(checkpointer=Saver.MAPPED)`: the graph's own checkpointer, mapped."""

    MAPPED = "mapped"


def is_graph(value: Any) -> bool:
    """Whether `value` is a LangGraph graph `convert` takes."""
    return isinstance(value, LgStateGraph | LgPregel)


def convert(graph: Any, *, checkpointer: Checkpointer | Saver = Saver.MAPPED) -> Pregel:
    """The graphdef graph of a LangGraph `StateGraph` builder (compiled first, by LangGraph),
    compiled graph or `@entrypoint`.

    Its checkpointer: LangGraph's `InMemorySaver` becomes a graphdef `InMemorySaver`, a
    graphdef saver, None and False stay; any other raises ConversionError, unless
    `checkpointer=` names the one to use instead.
    """
    return _Converter().graph(graph, "", checkpointer)


def for_cluster(value: Any) -> Pregel | None:
    """What workers run for a `CELERYGRAPH_GRAPHS` module attribute built with LangGraph:
    its conversion without a checkpointer of its own (runs checkpoint in the cluster's
    Redis), or None for a LangGraph object that is no graph (a saver, a store, ...)."""
    return convert(value, checkpointer=None) if is_graph(value) else None


def _name(value: Any) -> str:
    return getattr(value, "__name__", None) or type(value).__name__


class _Converter:
    """The conversion of one graph and the graphs it holds."""

    def graph(self, graph: Any, where: str, checkpointer: Checkpointer | Saver) -> Pregel:
        if isinstance(graph, LgStateGraph):
            # LangGraph validates the builder and applies its node defaults as it compiles.
            graph = graph.compile()
        if not isinstance(graph, LgPregel):
            raise ConversionError(f"{where}{_name(graph)} is not a LangGraph graph")
        saver = (self._saver(graph.checkpointer, where) if checkpointer is Saver.MAPPED
                 else checkpointer)
        if graph.debug:
            raise ConversionError(f"{where}debug=True is not supported")
        if graph.stream_transformers:
            raise ConversionError(f"{where}transformers are not supported")
        if isinstance(graph, LgCompiledStateGraph):
            converted: Pregel = self._state_graph(graph, where, saver)
        elif is_entrypoint(graph):
            converted = entrypoint_graph(graph, where, checkpointer=saver,
                                         cache=self._cache(graph.cache, where),
                                         convert=self._inner)
        else:
            raise ConversionError(
                f"{where}{graph.name!r}: a Pregel built by hand (not by StateGraph or "
                "@entrypoint) is not supported")
        return converted.with_config(dict(graph.config)) if graph.config else converted

    # ---- compile-time objects -------------------------------------------------------------

    @staticmethod
    def _saver(saver: Any, where: str) -> Checkpointer:
        if saver is None or saver is False or isinstance(saver, BaseCheckpointSaver):
            return cast(Checkpointer, saver)
        if saver is True:
            raise ConversionError(
                f"{where}checkpointer=True (a subgraph keeping its own state from one call "
                "to the next) is not supported")
        if isinstance(saver, LgInMemorySaver):
            return InMemorySaver()
        raise ConversionError(
            f"{where}checkpointer {type(saver).__name__} has no graphdef counterpart; "
            "convert(graph, checkpointer=...) names the saver to use (on the cluster, runs "
            "checkpoint in its Redis)")

    @staticmethod
    def _cache(cache: Any, where: str) -> BaseCache[Any] | None:
        if cache is None or isinstance(cache, BaseCache):
            return cache
        if isinstance(cache, LgBaseCache):
            return LangGraphCache(cache)
        raise ConversionError(f"{where}cache {type(cache).__name__} is not a cache")

    # ---- StateGraph -----------------------------------------------------------------------

    def _state_graph(self, compiled: LgCompiledStateGraph[Any, Any, Any, Any], where: str,
                     checkpointer: Checkpointer) -> CompiledStateGraph:
        builder = compiled.builder
        if compiled.retry_policy or compiled.cache_policy:
            raise ConversionError(f"{where}a graph-wide retry or cache policy is not supported")
        for name, spec in builder.nodes.items():
            if spec.error_handler_node is not None:
                raise ConversionError(f"{where}node {name!r}: error_handler is not supported")
        ours = StateGraph(builder.state_schema, builder.context_schema,
                          input_schema=builder.input_schema, output_schema=builder.output_schema)
        inner = {name: self._node(ours, builder, name, spec, where)
                 for name, spec in builder.nodes.items()}
        for start, end in sorted(builder.edges):
            ours.add_edge(start, end)
        for starts, end in sorted(builder.waiting_edges):
            ours.add_edge(list(starts), end)
        for source, branches in builder.branches.items():
            for label, branch in branches.items():
                here = f"{where}conditional edge {label!r} from {source!r}"
                reads = branch.input_schema or (
                    builder.nodes[source].input_schema if source in builder.nodes
                    else builder.state_schema)
                if reads is not builder.state_schema:
                    raise ConversionError(
                        f"{here}: its path reads {_name(reads)}, not the state schema; "
                        "graphdef routes on the whole state")
                path, _ = self._function(branch.path, here, self._managed(builder, reads))
                ours.add_conditional_edges(source, path, branch.ends)
        graph = ours.compile(
            checkpointer, cache=self._cache(compiled.cache, where),
            # Nodes reach the store through LangGraph's Runtime, as it is (bridge.py).
            store=compiled.store,  # type: ignore[arg-type]
            interrupt_before=compiled.interrupt_before_nodes,
            interrupt_after=compiled.interrupt_after_nodes, name=compiled.name,
        )
        _check_channels(builder, graph, where)
        for name, graphs in inner.items():
            # graphdef finds a subgraph a node calls in the node function's closure; this
            # one's is the converted function's, so it is named here (get_state(subgraphs=)).
            if graph.nodes[name].subgraph is None:
                graph.nodes[name].subgraph = next(
                    (g for g in graphs if g.checkpointer is not False), None)
        return graph

    def _node(self, ours: StateGraph, builder: LgStateGraph[Any, Any, Any, Any], name: str,
              spec: Any, where: str) -> list[Pregel]:
        """Add the node; returns the graphs its function calls inside it, converted."""
        here = f"{where}node {name!r}"
        for option in ("timeout", "trace_policy"):
            if getattr(spec, option, None) is not None:
                raise ConversionError(f"{here}: {option} is not supported")
        runnable = spec.runnable
        inner: list[Pregel] = []
        if isinstance(runnable, LgPregel):
            action: Any = self.graph(runnable, f"{where}subgraph {name!r} > ", Saver.MAPPED)
        else:
            action, inner = self._function(runnable, here,
                                           self._managed(builder, spec.input_schema))
        ours.add_node(
            name, action, defer=spec.defer, metadata=spec.metadata,
            input_schema=spec.input_schema, retry_policy=retry_policies(spec.retry_policy),
            cache_policy=cache_policy(spec.cache_policy), destinations=spec.ends or None,
        )
        return inner

    @staticmethod
    def _managed(builder: LgStateGraph[Any, Any, Any, Any], schema: Any) -> dict[str, Any]:
        """The managed values (`RemainingSteps`, ...) a schema declares: LangGraph computes
        them into a node's or route's input rather than storing them."""
        return {key: spec for key, spec in builder.schemas[schema].items()
                if is_managed_value(spec)}

    def _inner(self, graph: Any, where: str) -> Pregel:
        """A graph a function calls inside itself (inner.py), converted as a subgraph."""
        return self.graph(graph, where, Saver.MAPPED)

    def _function(self, runnable: Any, where: str,
                  managed: dict[str, Any]) -> tuple[Callable[..., Any], list[Pregel]]:
        """A node's or route's runnable as the function graphdef calls with the input, and
        the graphs it calls inside it, converted (inner.py)."""
        if not isinstance(runnable, Runnable):
            raise ConversionError(f"{where}: {_name(runnable)} is not a runnable")
        original: Any = runnable
        inner: list[Pregel] = []
        if isinstance(runnable, RunnableCallable):
            original = runnable.func or runnable.afunc
            swapped, inner = with_inner_graphs(original, where, self._inner)
            if swapped is not original:
                runnable = copy.copy(runnable)
                if runnable.func is None:
                    runnable.afunc = swapped
                else:
                    runnable.func = swapped

        def prepared(value: Any, config: RunnableConfig) -> Any:
            return _with_managed(value, managed, config) if managed else value

        if isinstance(runnable, RunnableCallable) and runnable.func is None:

            async def arun(value: Any) -> Any:
                return await bridge.arun(
                    lambda config: runnable.ainvoke(prepared(value, config), config))

            return bridge.named_after(arun, original), inner

        def run(value: Any) -> Any:
            return bridge.run(lambda config: runnable.invoke(prepared(value, config), config))

        return bridge.named_after(run, original), inner


def _with_managed(state: Any, managed: dict[str, Any], config: RunnableConfig) -> Any:
    """`state` with its managed values computed, as LangGraph hands them to user code."""
    pad = bridge.scratchpad(config)
    values = {key: spec.get(pad) for key, spec in managed.items()}
    if isinstance(state, dict):
        return {**state, **values}
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return dataclasses.replace(state, **values)
    return state.model_copy(update=values)


def _check_channels(builder: LgStateGraph[Any, Any, Any, Any], graph: CompiledStateGraph,
                    where: str) -> None:
    """Each state key holds what LangGraph reads from its annotation: a last value, or a
    reducer, the same function in both."""
    for key, channel in builder.channels.items():
        here = f"{where}state key {key!r}"
        if key == "__root__":
            raise ConversionError(f"{where}state schema {_name(builder.state_schema)}: a "
                                  "state that is not keys and values is not supported")
        ours = graph.channel_specs.get(key)
        if isinstance(channel, LgBinaryOperatorAggregate):
            same = (isinstance(ours, BinaryOperatorAggregate)
                    and ours.operator is channel.operator)
        elif type(channel) is LgLastValue:
            same = type(ours) is LastValue
        else:
            raise ConversionError(f"{here}: LangGraph channel {type(channel).__name__} "
                                  "is not supported")
        if not same:
            raise ConversionError(f"{here}: graphdef reads another reducer from its "
                                  f"annotation than LangGraph ({type(channel).__name__})")
