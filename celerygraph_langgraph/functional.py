"""A LangGraph `@entrypoint` as graphdef's: the same function, tasks and settings.

`langgraph.func.entrypoint` compiles a function to a `Pregel` with one node, fed by START
and writing END and PREVIOUS; the node's runnable holds the function. graphdef's
`entrypoint` makes the same shape from the same function, given the Pregel's store, cache,
context schema and policies. The `@task` functions the body calls stay LangGraph's: each
call reaches the function `bridge` installs, which runs it as a graphdef task call.
"""

from __future__ import annotations

import copy
from typing import Any

from langgraph._internal._runnable import RunnableCallable
from langgraph.pregel import Pregel as LgPregel

from celerygraph_langgraph import bridge
from celerygraph_langgraph.errors import ConversionError
from celerygraph_langgraph.inner import Convert, with_inner_graphs
from celerygraph_langgraph.values import cache_policy, retry_policies
from graphdef.constants import END, PREVIOUS, START, TASKS
from graphdef.func import EntrypointGraph, entrypoint

_CHANNELS = frozenset((START, END, PREVIOUS, TASKS))


def is_entrypoint(pregel: LgPregel[Any, Any, Any, Any]) -> bool:
    """Whether `pregel` has the shape `@entrypoint` gives a function."""
    nodes = list(pregel.nodes.values())
    return (set(pregel.channels) == _CHANNELS and len(nodes) == 1
            and isinstance(nodes[0].bound, RunnableCallable))


def entrypoint_graph(pregel: LgPregel[Any, Any, Any, Any], where: str, *, checkpointer: Any,
                     cache: Any, convert: Convert) -> EntrypointGraph:
    """The graphdef entrypoint of LangGraph's; `checkpointer` and `cache` already mapped,
    `convert` converts the graphs its function calls (inner.py)."""
    ((name, node),) = pregel.nodes.items()
    here = f"{where}entrypoint {name!r}"
    if node.timeout is not None:
        raise ConversionError(f"{here}: timeout is not supported")
    bound = copy.copy(node.bound)
    assert isinstance(bound, RunnableCallable)  # is_entrypoint checked it
    if bound.func is None:
        bound.afunc, _ = with_inner_graphs(bound.afunc, here, convert)
    else:
        bound.func, _ = with_inner_graphs(bound.func, here, convert)
    if bound.func is None:

        async def arun(value: Any) -> Any:
            return await bridge.arun(lambda config: bound.ainvoke(value, config))

        function = bridge.named_after(arun, bound.afunc)
    else:

        def run(value: Any) -> Any:
            return bridge.run(lambda config: bound.invoke(value, config))

        function = bridge.named_after(run, bound.func)
    return entrypoint(
        # Nodes reach the store through LangGraph's Runtime, as it is (bridge.py).
        checkpointer=checkpointer, store=pregel.store,  # type: ignore[arg-type]
        cache=cache,
        context_schema=pregel.context_schema, cache_policy=cache_policy(pregel.cache_policy),
        retry_policy=retry_policies(pregel.retry_policy),
    )(function)
