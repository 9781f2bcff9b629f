"""User mistakes: each gets a clear error, and a mistake made on a live thread changes nothing
stored in it (its checkpoints and pending writes read back exactly as before)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest

from graphdef import (
    END,
    START,
    Command,
    InMemorySaver,
    InvalidResumeError,
    InvalidUpdateError,
    SqliteSaver,
    StateGraph,
    interrupt,
)
from graphdef.serde import NotSerializableError


class State(TypedDict):
    log: Annotated[list, operator.add]
    value: Any


@pytest.fixture(params=["memory", "sqlite"])
def saver(request, tmp_path):
    if request.param == "memory":
        return InMemorySaver()
    return SqliteSaver(str(tmp_path / "bad-input.sqlite"))


def stored(saver, thread_id: str) -> list[tuple]:
    """Everything the saver holds for a thread, in a comparable form."""
    return [
        (t.config, t.checkpoint, t.metadata, t.parent_config, t.pending_writes)
        for t in saver.list({"configurable": {"thread_id": thread_id}})
    ]


def asking(name: str):
    def node(state: State) -> dict:
        return {"log": [f"{name}:{interrupt(name + '?')}"]}

    return node


def parallel_interrupt_graph(saver):
    builder = StateGraph(State)
    builder.add_node("left", asking("left"))
    builder.add_node("right", asking("right"))
    builder.add_edge(START, "left")
    builder.add_edge(START, "right")
    return builder.compile(checkpointer=saver)


def chain_graph(saver):
    builder = StateGraph(State)
    builder.add_node("a", lambda s: {"log": ["a"]})
    builder.add_node("b", lambda s: {"log": ["b"]})
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", END)
    return builder.compile(checkpointer=saver)


CONFIG = {"configurable": {"thread_id": "t"}}


def test_edge_from_unknown_node_is_rejected_at_compile():
    builder = StateGraph(State)
    builder.add_node("a", lambda s: {})
    builder.add_edge(START, "a")
    builder.add_edge("missing", "a")
    with pytest.raises(ValueError, match="unknown node 'missing'"):
        builder.compile()


def test_edge_to_unknown_node_is_rejected_at_compile():
    builder = StateGraph(State)
    builder.add_node("a", lambda s: {})
    builder.add_edge(START, "a")
    builder.add_edge("a", "missing")
    with pytest.raises(ValueError, match="unknown node `missing`"):
        builder.compile()


def test_graph_without_entry_is_rejected_at_compile():
    builder = StateGraph(State)
    builder.add_node("a", lambda s: {})
    with pytest.raises(ValueError, match="entrypoint"):
        builder.compile()


def test_update_to_unknown_key_changes_nothing(saver):
    graph = chain_graph(saver)
    graph.invoke({"log": []}, CONFIG)
    before = stored(saver, "t")
    with pytest.raises(InvalidUpdateError, match="unknown state key"):
        graph.update_state(CONFIG, {"lgo": ["typo"]}, as_node="a")
    assert stored(saver, "t") == before


def test_update_as_unknown_node_changes_nothing(saver):
    graph = chain_graph(saver)
    graph.invoke({"log": []}, CONFIG)
    before = stored(saver, "t")
    with pytest.raises(InvalidUpdateError, match="does not exist"):
        graph.update_state(CONFIG, {"log": ["x"]}, as_node="nope")
    assert stored(saver, "t") == before


def test_non_serializable_input_names_the_key_and_stores_nothing(saver):
    graph = chain_graph(saver)
    graph.invoke({"log": []}, CONFIG)
    before = stored(saver, "t")
    with pytest.raises(NotSerializableError, match=r"\['value'\]\['deep'\]\[1\]"):
        graph.invoke({"value": {"deep": [1, object()]}}, CONFIG)
    assert stored(saver, "t") == before


def test_non_serializable_node_output_fails_the_node_not_the_thread(saver):
    builder = StateGraph(State)
    builder.add_node("bad", lambda s: {"value": {"fn": print}})
    builder.add_edge(START, "bad")
    graph = builder.compile(checkpointer=saver)
    with pytest.raises(NotSerializableError, match=r"state\['value'\]\['fn'\]"):
        graph.invoke({"log": ["start"]}, CONFIG)
    state = graph.get_state(CONFIG)
    assert state.next == ("bad",)
    assert state.values == {"log": ["start"]}
    assert "not serializable" in str(state.tasks[0].error)


def test_resume_with_nothing_pending_changes_nothing(saver):
    graph = chain_graph(saver)
    graph.invoke({"log": []}, CONFIG)
    before = stored(saver, "t")
    with pytest.raises(InvalidResumeError, match="no pending interrupt"):
        graph.invoke(Command(resume="yes"), CONFIG)
    assert stored(saver, "t") == before


def test_resume_on_a_new_thread_is_rejected(saver):
    graph = chain_graph(saver)
    with pytest.raises(InvalidResumeError, match="no pending interrupt"):
        graph.invoke(Command(resume="yes"), {"configurable": {"thread_id": "new"}})
    assert stored(saver, "new") == []


def asking_chain(saver):
    builder = StateGraph(State)
    builder.add_node("before", lambda s: {"log": ["before"]})
    builder.add_node("ask", asking("ask"))
    builder.add_node("after", lambda s: {"log": ["after"]})
    builder.add_edge(START, "before")
    builder.add_edge("before", "ask")
    builder.add_edge("ask", "after")
    return builder.compile(checkpointer=saver)


def test_resume_after_an_update_as_the_paused_node_is_rejected(saver):
    """Difference 1 after "edit, then approve": an update as the paused node answers it, so
    a resume finds nothing pending (LangGraph runs on and returns the final values)."""
    graph = asking_chain(saver)
    graph.invoke({"log": []}, CONFIG)
    graph.update_state(CONFIG, {"log": ["by hand"]}, as_node="ask")
    before = stored(saver, "t")
    with pytest.raises(InvalidResumeError, match="no pending interrupt"):
        graph.invoke(Command(resume="yes"), CONFIG)
    assert stored(saver, "t") == before
    assert graph.invoke(None, CONFIG) == {"log": ["before", "by hand", "after"]}


def test_resume_after_an_update_that_ends_the_paused_step_is_rejected(saver):
    """An update as the finished sibling of a paused branch ends that step: nothing is left
    to resume (LangGraph returns the values; see the differential
    edit_sibling_of_paused_branch)."""
    builder = StateGraph(State)
    builder.add_node("start", lambda s: {"log": ["start"]})
    builder.add_node("left", asking("left"))
    builder.add_node("right", lambda s: {"log": ["right"]})
    builder.add_edge(START, "start")
    builder.add_edge("start", "left")
    builder.add_edge("start", "right")
    graph = builder.compile(checkpointer=saver)
    graph.invoke({"log": []}, CONFIG)
    graph.update_state(CONFIG, {"log": ["edited"]}, as_node="right")
    before = stored(saver, "t")
    with pytest.raises(InvalidResumeError, match="no pending interrupt"):
        graph.invoke(Command(resume="yes"), CONFIG)
    assert stored(saver, "t") == before


def test_ambiguous_resume_value_changes_nothing(saver):
    graph = parallel_interrupt_graph(saver)
    result = graph.invoke({"log": []}, CONFIG)
    assert len(result["__interrupt__"]) == 2
    before = stored(saver, "t")
    with pytest.raises(InvalidResumeError, match="multiple pending interrupts"):
        graph.invoke(Command(resume="same answer for both"), CONFIG)
    assert stored(saver, "t") == before
    assert isinstance(InvalidResumeError("x"), RuntimeError)


def test_resume_map_with_unknown_id_changes_nothing(saver):
    graph = parallel_interrupt_graph(saver)
    graph.invoke({"log": []}, CONFIG)
    before = stored(saver, "t")
    with pytest.raises(InvalidResumeError, match="Unknown or already answered"):
        graph.invoke(Command(resume={"0" * 32: "x"}), CONFIG)
    assert stored(saver, "t") == before


def test_resume_map_answers_each_interrupt(saver):
    graph = parallel_interrupt_graph(saver)
    interrupts = graph.invoke({"log": []}, CONFIG)["__interrupt__"]
    answers = {i.id: f"answer-{i.value}" for i in interrupts}
    result = graph.invoke(Command(resume=answers), CONFIG)
    assert result == {"log": ["left:answer-left?", "right:answer-right?"]}


def test_unknown_durability_is_rejected(saver):
    graph = chain_graph(saver)
    with pytest.raises(ValueError, match="durability"):
        graph.invoke({"log": []}, CONFIG, durability="eventually")
    assert stored(saver, "t") == []


class PaymentDeclined(Exception):
    """A user exception class: never imported back from storage."""


def test_node_errors_read_back_as_builtins_or_node_error(saver):
    from graphdef.errors import NodeError

    def declined(state: State) -> dict:
        raise PaymentDeclined("card declined")

    def invalid(state: State) -> dict:
        raise ValueError("bad amount", 3)

    def stored_error(name, node, error):
        builder = StateGraph(State)
        builder.add_node(name, node)
        builder.add_edge(START, name)
        graph = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": name}}
        with pytest.raises(error):  # the caller sees the original exception
            graph.invoke({"log": []}, config)
        return graph.get_state(config).tasks[0].error

    stored_declined = stored_error("declined", declined, PaymentDeclined)
    assert isinstance(stored_declined, NodeError)
    assert not isinstance(stored_declined, PaymentDeclined)
    assert stored_declined.type_name == "PaymentDeclined"
    assert "card declined" in str(stored_declined)
    stored_invalid = stored_error("invalid", invalid, ValueError)
    assert type(stored_invalid) is ValueError
    assert stored_invalid.args == ("bad amount", 3)


def test_value_over_the_saver_limit_fails_the_node_and_stores_no_state(saver):
    from graphdef.serde import ValueTooLargeError

    saver.max_value_bytes = 10_000
    builder = StateGraph(State)
    builder.add_node("grow", lambda s: {"log": ["z" * 20_000]})
    builder.add_edge(START, "grow")
    graph = builder.compile(checkpointer=saver)
    with pytest.raises(ValueTooLargeError, match=r"state\['log'\] is \d+ bytes, over the limit"):
        graph.invoke({"log": ["start"]}, CONFIG)
    state = graph.get_state(CONFIG)
    assert state.values == {"log": ["start"]} and state.next == ("grow",)
    # A list that grows past the limit by appends is caught too, not just one big value.
    builder = StateGraph(State)
    builder.add_node("step", lambda s: {"log": ["y" * 3_000]})
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: END if len(s["log"]) > 10 else "step")
    looping = builder.compile(checkpointer=saver)
    with pytest.raises(ValueTooLargeError):
        looping.invoke({"log": []}, {"configurable": {"thread_id": "loop"}})
