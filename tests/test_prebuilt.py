"""graphdef.prebuilt beyond the differential scenarios: what it refuses, where it deliberately
differs from LangGraph, ToolNode outside a graph, and agents checkpointed to SQLite."""

from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from graphdef import (
    START,
    GraphRecursionError,
    InMemoryStore,
    SqliteSaver,
    StateGraph,
    add_messages,
)
from graphdef.prebuilt import InjectedStore, RemainingSteps, ToolNode, create_react_agent
from tests.differential.fake_chat import ScriptedChatModel, asks, call, says


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def save(key: str, store: Annotated[Any, InjectedStore()]) -> str:
    """Save a key."""
    store.put(("saved",), key, {"k": key})
    return f"saved {key}"


def model(*replies: Any) -> ScriptedChatModel:
    return ScriptedChatModel(replies=list(replies))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("pre_model_hook", lambda state: state),
        ("post_model_hook", lambda state: state),
        ("context_schema", dict),
        ("debug", True),
        ("config_schema", dict),
    ],
)
def test_create_react_agent_refuses_what_it_does_not_implement(option, value):
    with pytest.raises(NotImplementedError, match=option):
        create_react_agent(model(), [add], **{option: value})


def test_create_react_agent_refuses_a_dynamic_model_and_an_async_prompt():
    with pytest.raises(NotImplementedError, match="dynamic model selection"):
        create_react_agent(lambda state, runtime: model(), [add])

    async def prompt(state):
        return state["messages"]

    with pytest.raises(NotImplementedError, match="async function"):
        create_react_agent(model(), [add], prompt=prompt)


def test_tool_node_refuses_options_and_tool_runtime():
    for option in ("tags", "wrap_tool_call", "awrap_tool_call"):
        with pytest.raises(NotImplementedError, match=option):
            ToolNode([add], **{option: ["x"]})

    @tool
    def needs_runtime(x: int, runtime: Any) -> int:
        """LangGraph would inject a ToolRuntime here."""
        return x

    with pytest.raises(NotImplementedError, match="'runtime'"):
        ToolNode([needs_runtime])


def test_agent_near_the_recursion_limit_answers_instead_of_failing():
    def looping() -> ScriptedChatModel:
        return model(*(asks(call("add", {"a": i, "b": i}, f"c{i}")) for i in range(10)))

    result = create_react_agent(looping(), [add]).invoke(
        {"messages": [("user", "loop")]}, {"recursion_limit": 6})
    assert result["messages"][-1].content == "Sorry, need more steps to process this request."
    with pytest.raises(GraphRecursionError):  # as in LangGraph: an odd limit is hit first
        create_react_agent(looping(), [add]).invoke(
            {"messages": [("user", "loop")]}, {"recursion_limit": 5})


def test_a_node_state_has_no_remaining_steps():
    """Deliberate difference (README, "Prebuilt agents"): LangGraph fills the
    `remaining_steps` managed value in every node's state; graphdef has no managed values
    and tells only the prebuilt agent how many steps are left."""

    class Steps(TypedDict):
        messages: Annotated[list, add_messages]
        remaining_steps: RemainingSteps

    seen = []
    builder = StateGraph(Steps)
    builder.add_node("look", lambda state: seen.append(state.get("remaining_steps")) or {})
    builder.add_edge(START, "look")
    builder.compile().invoke({"messages": [("user", "x")]})
    assert seen == [None]


def test_tool_node_outside_a_graph():
    node = ToolNode([add, save])
    asking = AIMessage("", tool_calls=[call("add", {"a": 1, "b": 2}, "c1"),
                                       call("save", {"key": "k"}, "c2")])
    store = InMemoryStore()
    replies = node.invoke([HumanMessage("hi"), asking], store=store)
    assert [(m.content, m.tool_call_id, m.status) for m in replies] == [
        ("3", "c1", "success"), ("saved k", "c2", "success")]
    assert store.get(("saved",), "k").value == {"k": "k"}
    only_add = node.invoke({"messages": [AIMessage("", tool_calls=[
        call("add", {"a": 2, "b": 2}, "c3")])]})
    assert isinstance(only_add["messages"][0], ToolMessage)
    assert only_add["messages"][0].content == "4"
    with pytest.raises(ValueError, match="please compile your graph with a store"):
        node.invoke([AIMessage("", tool_calls=[call("save", {"key": "k"}, "c4")])])


def test_agent_paused_before_tools_resumes_from_sqlite_in_a_new_saver(tmp_path):
    """The v2 agent's pending Sends carry each tool call and the state: they must survive
    a checkpoint file read back by another saver (a restarted process)."""
    path = tmp_path / "agent.sqlite"
    config = {"configurable": {"thread_id": "t"}}
    replies = (asks(call("add", {"a": 1, "b": 2}, "c1"), call("add", {"a": 5, "b": 5}, "c2")),
               says("3 and 10"))
    first = create_react_agent(model(*replies), [add], checkpointer=SqliteSaver(str(path)),
                               interrupt_before=["tools"])
    first.invoke({"messages": [("user", "sums")]}, config)
    resumed_model = model(*replies)
    resumed_model.seen.append([])  # the first reply was given before the restart
    second = create_react_agent(resumed_model, [add], checkpointer=SqliteSaver(str(path)),
                                interrupt_before=["tools"])
    assert second.get_state(config).next == ("tools", "tools")
    result = second.invoke(None, config)
    assert [m.content for m in result["messages"]] == ["sums", "", "3", "10", "3 and 10"]
