"""The SDK surface of issue 2, item by item, checked against LangGraph where an API mirrors it.

Graph behaviour (outputs, counts, history) is compared in tests/differential; this file covers
the pieces a differential scenario does not reach: names and types, RetryPolicy and its
default retry rule, Mermaid drawing, add_messages on its own, and messages read back from
SQLite by another process, and behaviours an audit found missing (now fixed, or pinned as a
deliberate difference).
"""

import copy
import operator
import subprocess
import sys
import textwrap
import urllib.error
from pathlib import Path
from typing import Annotated, Literal, TypedDict

import httpx
import langgraph.errors
import langgraph.func
import langgraph.graph
import langgraph.types
import pytest
import requests
from langchain_core.messages import AIMessageChunk, HumanMessage, RemoveMessage
from langgraph._internal._retry import default_retry_on as langgraph_default_retry_on
from langgraph.graph.message import add_messages as langgraph_add_messages

import graphdef
from graphdef import messages as graphdef_messages
from graphdef.errors import CeleryGraphError
from graphdef.types import default_retry_on
from tests.differential.apis import load_api
from tests.differential.observe import normalize

ROOT = Path(__file__).resolve().parent.parent


class LogState(TypedDict):
    log: Annotated[list, operator.add]
    route: str


def note(name: str):
    def node(state):
        return {"log": [name]}

    return node


# ---- errors and exported names ------------------------------------------------------------


@pytest.mark.parametrize("name", ["GraphRecursionError", "InvalidUpdateError", "EmptyInputError"])
def test_errors_are_exported_with_langgraphs_bases(name):
    """LangGraph's bases, in LangGraph's order, plus the project's one base."""
    ours, theirs = getattr(graphdef, name), getattr(langgraph.errors, name)
    assert CeleryGraphError in ours.__mro__
    assert [c.__name__ for c in ours.__mro__ if c is not CeleryGraphError] == [
        c.__name__ for c in theirs.__mro__]
    assert name in graphdef.__all__


def test_graph_recursion_error_is_raised_and_names_the_setting():
    builder = graphdef.StateGraph(LogState)
    builder.add_node("loop", note("loop"))
    builder.add_edge(graphdef.START, "loop")
    builder.add_edge("loop", "loop")
    with pytest.raises(graphdef.GraphRecursionError, match="recursion_limit"):
        builder.compile().invoke({"log": []}, {"recursion_limit": 3})


def test_generic_types_are_subscriptable_like_langgraphs():
    # Annotations LangGraph programs write, evaluated at definition time without
    # `from __future__ import annotations`.
    assert graphdef.Command[Literal["a", "b"]] is not None
    assert graphdef.entrypoint.final[int, str] is not None
    assert graphdef.Command.PARENT == langgraph.types.Command.PARENT


def test_command_and_send_fields_match_langgraph():
    command = graphdef.Command(update={"x": 1}, goto=["a", graphdef.Send("b", 2)], resume="r")
    assert (command.graph, command.update, command.resume) == (None, {"x": 1}, "r")
    assert command.goto_targets() == ["a", graphdef.Send("b", 2)]
    assert graphdef.Send("b", 2) == graphdef.Send("b", 2)
    theirs = langgraph.types.Command()
    ours = graphdef.Command()
    assert (ours.graph, ours.update, ours.resume, tuple(ours.goto)) == (
        theirs.graph, theirs.update, theirs.resume, tuple(theirs.goto),
    )


def test_builder_shortcuts_chain_like_langgraphs():
    builder = graphdef.StateGraph(LogState)
    builder.add_node("a", note("a"))
    assert builder.set_entry_point("a") is builder
    assert builder.set_finish_point("a") is builder
    assert builder.set_conditional_entry_point(lambda s: "a") is builder


# ---- RetryPolicy ----------------------------------------------------------------------------


def test_retry_policy_fields_and_defaults_equal_langgraphs():
    ours, theirs = graphdef.RetryPolicy(), langgraph.types.RetryPolicy()
    assert ours._fields == theirs._fields
    assert ours._asdict() | {"retry_on": None} == theirs._asdict() | {"retry_on": None}
    assert ours.retry_on is default_retry_on
    assert graphdef.RetryPolicy(max_attempts=5, jitter=False)[3:5] == (5, False)


class CustomError(Exception):
    pass


class CustomValueError(ValueError):
    pass


def httpx_status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://example.invalid/")
    response = httpx.Response(status, request=request)
    return httpx.HTTPStatusError("status", request=request, response=response)


def requests_http_error(status: int | None) -> requests.HTTPError:
    if status is None:
        return requests.HTTPError("no response")
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError("status", response=response)


RETRY_TABLE = {
    "Exception": Exception("x"),
    "CustomError": CustomError(),
    "CustomValueError": CustomValueError(),
    "ValueError": ValueError(),
    "TypeError": TypeError(),
    "KeyError": KeyError("k"),
    "IndexError": IndexError(),
    "ZeroDivisionError": ZeroDivisionError(),
    "ImportError": ImportError(),
    "ModuleNotFoundError": ModuleNotFoundError(),
    "NameError": NameError(),
    "AttributeError": AttributeError(),
    "AssertionError": AssertionError(),
    "SyntaxError": SyntaxError(),
    "RuntimeError": RuntimeError(),
    "NotImplementedError": NotImplementedError(),
    "RecursionError": RecursionError(),
    "ReferenceError": ReferenceError(),
    "StopIteration": StopIteration(),
    "StopAsyncIteration": StopAsyncIteration(),
    "OSError": OSError(),
    "FileNotFoundError": FileNotFoundError(),
    "TimeoutError": TimeoutError(),
    "ConnectionError": ConnectionError(),
    "ConnectionResetError": ConnectionResetError(),
    "BrokenPipeError": BrokenPipeError(),
    "urllib HTTPError": urllib.error.HTTPError("u", 503, "unavailable", None, None),
    "httpx 500": httpx_status_error(500),
    "httpx 503": httpx_status_error(503),
    "httpx 404": httpx_status_error(404),
    "httpx ConnectError": httpx.ConnectError("refused"),
    "httpx ReadTimeout": httpx.ReadTimeout("slow"),
    "requests 500": requests_http_error(500),
    "requests 404": requests_http_error(404),
    "requests 200": requests_http_error(200),
    "requests no response": requests_http_error(None),
    "requests ConnectionError": requests.ConnectionError(),
    "requests Timeout": requests.Timeout(),
}


@pytest.mark.parametrize("case", RETRY_TABLE)
def test_default_retry_on_decides_as_langgraph(case):
    exc = RETRY_TABLE[case]
    assert default_retry_on(exc) == langgraph_default_retry_on(exc)


# ---- get_graph().draw_mermaid() -------------------------------------------------------------


def drawable(api):
    """Every node reachable, so LangGraph's drawing (a dry run) sees every edge too.

    This module has no `from __future__ import annotations`: `jump`'s return annotation names
    a local, so it must be evaluated where it is written.
    """

    def router(state) -> Literal["b", "c"]:
        return "b"

    def jump(state) -> api.Command[Literal["e", "__end__"]]:
        return api.Command(goto="e")

    builder = api.StateGraph(LogState)
    for name in ("a", "b", "c", "d", "e", "my node"):
        builder.add_node(name, note(name))
    builder.add_node("jump", jump)
    builder.add_edge(api.START, "a")
    builder.add_conditional_edges("a", lambda s: s["route"], {"x": "b", "y": "c", "z": api.END})
    builder.add_edge(["b", "c"], "d")
    builder.add_conditional_edges("d", router)
    builder.add_edge("d", "jump")
    builder.add_edge("e", "my node")
    builder.add_edge("my node", api.END)
    return builder.compile()


def test_draw_mermaid_has_langgraphs_edges():
    theirs = {
        (e.source, e.target, e.conditional, e.data)
        for e in drawable(load_api("langgraph")).get_graph().edges
    }
    ours = set(drawable(graphdef).get_graph().edges)
    assert ours == theirs


def test_draw_mermaid_is_well_formed():
    text = drawable(graphdef).get_graph().draw_mermaid()
    lines = text.splitlines()
    assert lines[0] == "graph TD;"
    body = [line.strip() for line in lines[1:]]
    for name in ("a", "b", "c", "d", "e", "jump"):
        assert f"{name}({name})" in body
    assert "my\\20node(my node)" in body  # ids escaped as langchain-core does, label kept
    assert "__start__([<p>__start__</p>]):::first" in body
    assert "__end__([<p>__end__</p>]):::last" in body
    for solid in ("__start__ --> a;", "b --> d;", "c --> d;", "d --> jump;",
                  "e --> my\\20node;", "my\\20node --> __end__;"):
        assert solid in body
    for dotted in ("a -. &nbsp;x&nbsp; .-> b;", "a -. &nbsp;z&nbsp; .-> __end__;",
                   "d -.-> b;", "d -.-> c;", "jump -.-> e;", "jump -.-> __end__;"):
        assert dotted in body
    edge_lines = [line for line in body if "->" in line]
    assert len(edge_lines) == len(drawable(graphdef).get_graph().edges)
    assert all(line.endswith(";") for line in edge_lines)


def test_draw_mermaid_without_declared_destinations():
    # A path function with no path map and no Literal return may go anywhere: drawn as
    # dotted edges to every node and END. A node without out-edges ends the run.
    builder = graphdef.StateGraph(LogState)
    builder.add_node("a", note("a"))
    builder.add_node("b", note("b"))
    builder.add_node("fans", note("fans"), destinations={"a": "retry", "b": "next"})
    builder.add_edge(graphdef.START, "fans")
    builder.add_conditional_edges("a", lambda s: s["route"])
    edges = set(builder.compile().get_graph().edges)
    assert {("a", "a", True, None), ("a", "b", True, None), ("a", "fans", True, None),
            ("a", "__end__", True, None)} <= edges
    assert {("fans", "a", True, "retry"), ("fans", "b", True, "next")} <= edges
    assert ("b", "__end__", False, None) in edges


def test_unknown_destination_is_rejected_at_compile():
    builder = graphdef.StateGraph(LogState)
    builder.add_node("a", note("a"), destinations=("nowhere",))
    builder.add_edge(graphdef.START, "a")
    with pytest.raises(ValueError, match="nowhere"):
        builder.compile()


# ---- add_messages and MessagesState -------------------------------------------------------


def msg(role: str, content: str, id: str | None = None) -> dict:
    return {"role": role, "content": content} | ({"id": id} if id else {})


ADD_MESSAGES_TABLE = {
    "append dicts": ([msg("user", "hi", "1")], [msg("assistant", "yo")]),
    "replace by id": ([msg("user", "hi", "1"), msg("ai", "x", "2")], [msg("user", "new", "1")]),
    "remove": ([msg("user", "hi", "1"), msg("ai", "x", "2")], [RemoveMessage(id="1")]),
    "remove then re-add": (
        [msg("user", "hi", "1")], [RemoveMessage(id="1"), msg("user", "back", "1")]
    ),
    "remove all": (
        [msg("user", "hi", "1")],
        [msg("user", "dropped", "d"), RemoveMessage(id="__remove_all__"), msg("user", "n", "n")],
    ),
    "remove unknown id": ([msg("user", "hi", "1")], [RemoveMessage(id="missing")]),
    "single dict": ([HumanMessage("x", id="1")], msg("assistant", "y", "2")),
    "single tuple": ([], ("assistant", "hello")),
    "tuple left": (("user", "hi"), []),
    "list of tuples": ([], [("user", "a"), ("assistant", "b")]),
    "string": ([], "hello"),
    "chunk": ([], [AIMessageChunk(content="part", id="c")]),
    "tool message": ([], [{"role": "tool", "content": "r", "tool_call_id": "t1", "id": "t"}]),
    "bad dict": ([], [{"text": "no role"}]),
}


def merged(add, left, right):
    try:
        result = add(left, right)
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc)[:60])
    # Generated ids differ between runs; only whether one was set is compared.
    return [(type(m).__name__, m.content, m.id if len(m.id) < 8 else bool(m.id)) for m in result]


@pytest.mark.parametrize("case", ADD_MESSAGES_TABLE)
def test_add_messages_equals_langgraphs(case):
    left, right = ADD_MESSAGES_TABLE[case]
    expected = merged(langgraph_add_messages, copy.deepcopy(left), copy.deepcopy(right))
    assert merged(graphdef.add_messages, copy.deepcopy(left), copy.deepcopy(right)) == expected


def test_add_messages_without_langchain_keeps_plain_dicts(monkeypatch):
    monkeypatch.setattr(graphdef_messages, "convert_to_messages", None)
    monkeypatch.setattr(graphdef_messages, "RemoveMessage", None)
    left = graphdef.add_messages([msg("user", "hi", "1")], [("assistant", "yo"), "plain"])
    assert [(m["role"], m["content"]) for m in left] == [
        ("user", "hi"), ("assistant", "yo"), ("user", "plain"),
    ]
    assert all(m["id"] for m in left)
    replaced = graphdef.add_messages(left, [msg("user", "edited", "1")])
    assert replaced[0]["content"] == "edited" and len(replaced) == 3
    removed = graphdef.add_messages(replaced, [{"type": "remove", "id": "1"}])
    assert [m["content"] for m in removed] == ["yo", "plain"]
    assert graphdef.add_messages(removed, [{"type": "remove", "id": "__remove_all__"}]) == []


def test_messages_state_reads_back_in_another_process(tmp_path):
    """LangChain messages in a SQLite checkpoint decode in a process that never wrote one."""
    program = textwrap.dedent(
        """
        import sys
        from graphdef import START, MessagesState, SqliteSaver, StateGraph

        builder = StateGraph(MessagesState)
        builder.add_node("reply", lambda s: {"messages": [("assistant", "hi back")]})
        builder.add_edge(START, "reply")
        graph = builder.compile(checkpointer=SqliteSaver(sys.argv[2]))
        config = {"configurable": {"thread_id": "t"}}
        if sys.argv[1] == "write":
            graph.invoke({"messages": [{"role": "user", "content": "hi"}]}, config)
        else:
            messages = graph.get_state(config).values["messages"]
            print([(type(m).__name__, m.content) for m in messages])
        """
    )
    db = str(tmp_path / "messages.sqlite")
    for step in ("write", "read"):
        result = subprocess.run(
            [sys.executable, "-c", program, step, db],
            capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
        )
        assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('HumanMessage', 'hi'), ('AIMessage', 'hi back')]"


# ---- behaviours once found missing in an audit against LangGraph ----------------------------


class Overall(TypedDict):
    question: str
    scratch: str
    answer: str


class QuestionIn(TypedDict):
    question: str


class AnswerOut(TypedDict):
    answer: str


def io_schema_observations(api) -> dict:
    def think(state: QuestionIn):
        return {"scratch": f"thinking about {state['question']}"}

    def answer(state: Overall):
        return {"answer": state["scratch"].upper()}

    builder = api.StateGraph(Overall, input_schema=QuestionIn, output_schema=AnswerOut)
    builder.add_sequence([("think", think), ("answer", answer)])
    builder.add_edge(api.START, "think")
    graph = builder.compile(checkpointer=api.InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}

    def streamed(mode: str, thread_id: str) -> list:
        config = {"configurable": {"thread_id": thread_id}}
        return list(graph.stream({"question": "q"}, config, stream_mode=mode))

    return normalize({
        "invoke": graph.invoke({"question": "q"}, config),
        "values": streamed("values", "values"),
        "updates": streamed("updates", "updates"),
        "state": graph.get_state(config).values,
    })


def test_output_schema_limits_only_invoke_result():
    assert io_schema_observations(graphdef) == io_schema_observations(load_api("langgraph"))


def subgraph_invoked_in_node_observations(api) -> list:
    class Sub(TypedDict):
        log: Annotated[list, operator.add]

    sub_builder = api.StateGraph(Sub)
    sub_builder.add_node("inner", note("inner"))
    sub_builder.add_edge(api.START, "inner")
    sub = sub_builder.compile()

    def call_sub(state):
        return {"log": sub.invoke({"log": ["x"]})["log"]}

    builder = api.StateGraph(LogState)
    builder.add_node("call_sub", call_sub)
    builder.add_edge(api.START, "call_sub")
    chunks = builder.compile().stream({"log": []}, stream_mode="updates", subgraphs=True)
    return [(tuple(p.split(":")[0] for p in ns), chunk) for ns, chunk in chunks]


def test_subgraph_invoke_inside_node_while_streaming_subgraphs():
    expected = subgraph_invoked_in_node_observations(load_api("langgraph"))
    assert subgraph_invoked_in_node_observations(graphdef) == expected


def unknown_route_outcome(api):
    builder = api.StateGraph(LogState)
    builder.add_node("a", note("a"))
    builder.add_edge(api.START, "a")
    builder.add_conditional_edges("a", lambda s: "nope")
    try:
        return builder.compile().invoke({"log": [], "route": ""})
    except Exception as exc:
        return type(exc).__name__


def test_conditional_edge_to_unknown_node_is_an_error():
    """Deliberate difference (README): LangGraph logs a warning and ends the branch; a typo
    in a route silently ending a run is worse than a clear error."""
    assert unknown_route_outcome(graphdef) == "InvalidUpdateError"
    assert unknown_route_outcome(load_api("langgraph")) == {"log": ["a"], "route": ""}


def test_entrypoint_final_generic_matches_langgraph_arity():
    assert len(graphdef.entrypoint.final.__parameters__) == len(
        langgraph.func.entrypoint.final.__parameters__
    )


def test_messages_state_shape_equals_langgraphs():
    ours = graphdef.MessagesState.__annotations__
    theirs = langgraph.graph.MessagesState.__annotations__
    assert set(ours) == set(theirs) == {"messages"}
    assert graphdef_messages.REMOVE_ALL_MESSAGES == "__remove_all__"


def test_langgraph_saver_spellings_port_unchanged(tmp_path):
    """`MemorySaver` and `SqliteSaver.from_conn_string` are how many LangGraph programs begin."""
    assert graphdef.MemorySaver is graphdef.InMemorySaver
    with graphdef.SqliteSaver.from_conn_string(str(tmp_path / "x.db")) as saver:
        builder = graphdef.StateGraph(LogState)
        builder.add_node("a", note("a"))
        builder.add_edge(graphdef.START, "a")
        graph = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "t"}}
        assert graph.invoke({"log": []}, config)["log"] == ["a"]
        assert graph.get_state(config).values["log"] == ["a"]
