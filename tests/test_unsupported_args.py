"""What LangGraph accepts on its run methods and graphdef does not implement raises an error
naming it, never silence (README, "Deliberate differences" 7)."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

import pytest

from graphdef import START, StateGraph
from graphdef.errors import NotImplementedFeatureError


class State(TypedDict):
    log: Annotated[list, operator.add]


def graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("a", lambda state: {"log": ["a"]})
    builder.add_edge(START, "a")
    return builder.compile()


def run(method: str, **kwargs: Any) -> Any:
    """Call a run method to completion, sync or async."""
    app = graph()
    if method == "invoke":
        return app.invoke({"log": []}, **kwargs)
    if method == "stream":
        return list(app.stream({"log": []}, **kwargs))
    if method == "ainvoke":
        return asyncio.run(app.ainvoke({"log": []}, **kwargs))

    async def collect() -> list[Any]:
        return [chunk async for chunk in app.astream({"log": []}, **kwargs)]

    return asyncio.run(collect())


METHODS = ("invoke", "stream", "ainvoke", "astream")
UNSUPPORTED = {
    "print_mode": "updates",
    "output_keys": ["log"],
    "control": object(),
    "debug": True,
    "version": "v2",
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", UNSUPPORTED)
def test_unimplemented_argument_raises_naming_it(method, name):
    with pytest.raises(NotImplementedFeatureError, match=name):
        run(method, **{name: UNSUPPORTED[name]})


@pytest.mark.parametrize("method", METHODS)
def test_their_defaults_are_accepted(method):
    defaults = {"context": None, "print_mode": (), "output_keys": None, "control": None,
                "debug": False, "version": "v1"}
    assert run(method, **defaults)


@pytest.mark.parametrize("method", METHODS)
def test_unknown_keyword_is_a_type_error(method):
    with pytest.raises(TypeError, match="checkpoint_during"):
        run(method, checkpoint_during=True)


@pytest.mark.parametrize("method", ("stream", "astream"))
@pytest.mark.parametrize("mode", ["bogus", ["values", "bogus"]])
def test_unknown_stream_mode_raises(method, mode):
    # LangGraph streams nothing for a mode it does not know; a typo here is an error.
    with pytest.raises(ValueError, match="bogus"):
        run(method, stream_mode=mode)


@pytest.mark.parametrize("method", ("stream", "astream"))
def test_tools_stream_mode_is_not_implemented(method):
    with pytest.raises(NotImplementedFeatureError, match="tools"):
        run(method, stream_mode="tools")
