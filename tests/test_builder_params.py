"""Nothing LangGraph's builders accept is silently ignored: every parameter of LangGraph 1.x's
StateGraph, add_node, compile, entrypoint and task exists here too, and each either works or
raises an error that names it. LangGraph's signatures are read from the installed package,
so a parameter a new release adds fails `test_every_langgraph_parameter_is_known`."""

from __future__ import annotations

import inspect
import operator
import warnings
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import langgraph.func
import langgraph.graph
import pytest

from graphdef import CachePolicy, InMemoryCache, RetryPolicy, StateGraph, entrypoint, task
from graphdef.errors import NotImplementedFeatureError


class Log(TypedDict):
    log: Annotated[list, operator.add]


def node(state: Log) -> dict[str, Any]:
    return {"log": ["ran"]}


def builder() -> StateGraph:
    graph = StateGraph(Log)
    graph.add_node("node", node)
    graph.add_edge("__start__", "node")
    return graph


PAIRS: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
    ("StateGraph", langgraph.graph.StateGraph.__init__, StateGraph.__init__),
    ("add_node", langgraph.graph.StateGraph.add_node, StateGraph.add_node),
    ("compile", langgraph.graph.StateGraph.compile, StateGraph.compile),
    ("entrypoint", langgraph.func.entrypoint.__init__, entrypoint.__init__),
    ("task", langgraph.func.task, task),
]


def named(func: Callable[..., Any]) -> list[str]:
    return [p.name for p in inspect.signature(func).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


@pytest.mark.parametrize("name,theirs,ours", PAIRS, ids=[p[0] for p in PAIRS])
def test_every_langgraph_parameter_is_known(name: str, theirs: Callable[..., Any],
                                            ours: Callable[..., Any]) -> None:
    missing = [p for p in named(theirs) if p not in named(ours)
               and p != "__func_or_none__"]  # task's positional function is our `func`
    assert missing == [], f"{name} lacks LangGraph's {missing}"


@pytest.mark.parametrize("call,name", [
    (lambda: builder().add_node("x", node, error_handler=node), "error_handler"),
    (lambda: builder().add_node("x", node, timeout=5), "timeout"),
    (lambda: builder().add_node("x", node, trace_policy=object()), "trace_policy"),
    (lambda: builder().compile(debug=True), "debug"),
    (lambda: builder().compile(transformers=[lambda ns: None]), "transformers"),
    (lambda: entrypoint(timeout=3), "timeout"),
    (lambda: task(timeout=3), "timeout"),
])
def test_unsupported_parameters_raise_naming_them(call: Callable[[], Any], name: str) -> None:
    with pytest.raises(NotImplementedFeatureError, match=repr(name)):
        call()


@pytest.mark.parametrize("call", [
    lambda: StateGraph(Log, nonsense=1),
    lambda: builder().add_node("x", node, queue_name="gpu"),
    lambda: builder().compile(cache_policy=CachePolicy()),
    lambda: entrypoint(nonsense=1),
    lambda: task(nonsense=1),
])
def test_unknown_keyword_arguments_are_a_type_error(call: Callable[[], Any]) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        call()


def test_deprecated_names_work_with_a_warning() -> None:
    class Ctx(TypedDict):
        user: str

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = StateGraph(Log, config_schema=Ctx, input=Log, output=Log)
        graph.add_node("node", node, retry=RetryPolicy(max_attempts=2), input=Log)

        @task(retry=RetryPolicy())
        def double(n: int) -> int:
            return n * 2

        @entrypoint(config_schema=Ctx, retry=RetryPolicy())
        def main(n: int) -> int:
            return double(n).result()

    assert graph.context_schema is Ctx and graph.nodes["node"].retry_policy[0].max_attempts == 2
    assert main.context_schema is Ctx and double.retry_policy and main.nodes["main"].retry_policy
    deprecated = [str(w.message).split("`")[1] for w in caught
                  if issubclass(w.category, DeprecationWarning)]
    assert sorted(deprecated) == ["config_schema", "config_schema", "input", "input", "output",
                                  "retry", "retry", "retry"]


def test_the_parameters_that_work_are_taken_in_langgraph_order() -> None:
    cache = InMemoryCache()

    @entrypoint(None, None, cache, None, CachePolicy())  # checkpointer, store, cache, ...
    def main(n: int) -> int:
        return n

    assert main.cache is cache and main.nodes["main"].cache_policy is not None
    graph = builder()
    graph.add_node("deferred", node, defer=True, cache_policy=CachePolicy(ttl=5))
    graph.add_edge("node", "deferred")
    compiled = graph.compile(cache=cache)
    assert compiled.cache is cache and compiled.nodes["deferred"].cache_policy.ttl == 5
    assert compiled.invoke({"log": []}) == {"log": ["ran", "ran"]}
