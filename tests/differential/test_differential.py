"""Differential tests: every scenario runs on real LangGraph and on graphdef, and what each
run observes must be equal. LangGraph is the reference.

``pytest tests/differential -k langgraph`` runs only the LangGraph self-check.
"""

from __future__ import annotations

import difflib
import pprint
from pathlib import Path

import pytest

from . import (
    scenarios_async_stream,
    scenarios_cache,
    scenarios_durable,
    scenarios_functional,
    scenarios_graph,
    scenarios_interrupt,
    scenarios_prebuilt,
    scenarios_runtime,
    scenarios_store,
    scenarios_substate,
)
from .apis import load_api
from .observe import normalize

SCENARIOS = {
    name.removeprefix("scenario_"): function
    for module in (
        scenarios_graph, scenarios_durable, scenarios_interrupt, scenarios_functional,
        scenarios_store, scenarios_async_stream, scenarios_runtime, scenarios_cache,
        scenarios_prebuilt, scenarios_substate,
    )
    for name, function in vars(module).items()
    if name.startswith("scenario_")
}


# Where graphdef deliberately differs from LangGraph (README, "Deliberate differences"); each
# is pinned by tests/test_bad_input.py. Strict xfail: if one starts to match, the test fails.
DELIBERATE = {
    "resume_without_pending_interrupt": (
        "Command(resume=...) with no pending interrupt raises InvalidResumeError; LangGraph "
        "returns the final values, or on a new thread runs the graph with no input"
    ),
    "stream_unknown_mode": (
        "an unknown stream_mode raises ValueError; LangGraph streams nothing for it"
    ),
    "remaining_steps_in_a_node": (
        "graphdef has no managed values: a node's state has no remaining_steps (only the "
        "prebuilt agent is told the steps left); LangGraph fills it in every node"
    ),
}
# graphdef's InvalidResumeError subclasses the RuntimeError LangGraph raises for the same case.
RENAMED_ERRORS = {"InvalidResumeError": "RuntimeError"}


def rename_errors(value: object) -> object:
    if isinstance(value, dict):
        return {
            k: RENAMED_ERRORS.get(v, v) if k == "error" else rename_errors(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(rename_errors(v) for v in value)
    return value


def observe(api_name: str, scenario: str, tmp_path: Path, run: str) -> object:
    """Run ``scenario`` on one api in a fresh directory of its own; its observations."""
    directory = tmp_path / f"{api_name}-{run}"
    directory.mkdir()
    return normalize(SCENARIOS[scenario](load_api(api_name), directory))


def assert_same(expected: object, actual: object, labels: tuple[str, str]) -> None:
    if expected != actual:
        diff = difflib.unified_diff(
            pprint.pformat(expected, width=60).splitlines(),
            pprint.pformat(actual, width=60).splitlines(),
            *labels,
            lineterm="",
        )
        pytest.fail("observations differ:\n" + "\n".join(diff), pytrace=False)


def test_enough_scenarios():
    assert len(SCENARIOS) >= 30


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_langgraph_deterministic(scenario, tmp_path):
    first = observe("langgraph", scenario, tmp_path, "first")
    second = observe("langgraph", scenario, tmp_path, "second")
    assert_same(first, second, ("first run", "second run"))


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=DELIBERATE[name]))
        if name in DELIBERATE
        else name
        for name in SCENARIOS
    ],
)
def test_graphdef_matches(scenario, tmp_path):
    expected = observe("langgraph", scenario, tmp_path, "reference")
    actual = rename_errors(observe("graphdef", scenario, tmp_path, "candidate"))
    assert_same(expected, actual, ("langgraph", "graphdef"))
