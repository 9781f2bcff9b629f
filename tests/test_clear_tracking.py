"""A loop that tracks which channels may hold a value (`RunLoop.may_hold_values`) clears
exactly what looking at every channel clears: each checkpoint of a run, values and versions,
is the same with the tracking on and off."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest

from graphdef import END, START, InMemorySaver, Send, StateGraph
from graphdef import loop as loop_module


class State(TypedDict, total=False):
    n: int
    log: Annotated[list, operator.add]


def _looping() -> Any:
    builder = StateGraph(State)
    builder.add_node("step", lambda s: {"n": s["n"] + 1, "log": ["step"]})
    builder.add_node("done", lambda s: {"log": ["done"]})
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: "step" if s["n"] < 4 else "done",
                                  ["step", "done"])
    builder.add_edge("done", END)
    return builder


def _fan_out_join_defer() -> Any:
    builder = StateGraph(State)
    builder.add_node("split", lambda s: {"log": ["split"]})
    builder.add_node("work", lambda s: {"log": [f"work{s['n']}"]})
    builder.add_node("a", lambda s: {"log": ["a"]})
    builder.add_node("b", lambda s: {"log": ["b"]})
    builder.add_node("joined", lambda s: {"log": ["joined"]})
    builder.add_node("last", lambda s: {"log": ["last"]}, defer=True)
    builder.add_edge(START, "split")
    builder.add_conditional_edges(
        "split", lambda s: [Send("work", {"n": i}) for i in range(3)] + ["a", "b"],
        ["work", "a", "b"])
    builder.add_edge(["a", "b"], "joined")
    builder.add_edge("work", "last")
    builder.add_edge("joined", "last")
    builder.add_edge("last", END)
    return builder


def _history(builder: Any, tracking: bool, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    if not tracking:
        monkeypatch.setattr(loop_module, "STANDARD_CHANNELS", frozenset())
    saver = InMemorySaver()
    graph = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "t"}}
    output = graph.invoke({"n": 0, "log": []}, config)
    monkeypatch.undo()
    return [output] + [(c.checkpoint["channel_values"], c.checkpoint["channel_versions"],
                        c.metadata.get("step")) for c in saver.list(config)]


@pytest.mark.parametrize("build", [_looping, _fan_out_join_defer])
def test_tracking_clears_what_a_full_look_clears(build: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tracked = _history(build(), True, monkeypatch)
    looked = _history(build(), False, monkeypatch)
    assert tracked == looked
    assert len(tracked) > 4  # several steps, each with ephemeral channels set and cleared
