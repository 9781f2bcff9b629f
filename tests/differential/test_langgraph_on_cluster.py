"""The differential suite with LangGraph's own names, on the cluster: every scenario's
LangGraph graphs are converted (``celerygraph_langgraph``) and run on a real Celery worker
and Redis, and what the scenario observes must equal what LangGraph observes in-process.

The cluster, and what it cannot run or deliberately does otherwise (``UNSUPPORTED``,
``CLUSTER_DELIBERATE``), are the distributed suite's; ``test_langgraph_converted.py`` runs
every scenario converted in-process. Every scenario's graphs convert; the parts the
converter refuses, each with a ConversionError naming it, are pinned in
tests/test_langgraph_convert.py, and a worker subprocess loading a module of LangGraph
graphs in tests/test_langgraph_workers.py.
"""

from __future__ import annotations

import pytest

from .apis import load_api
from .distributed_api import NotSupportedDistributed, as_the_scenario_named, in_process_cluster
from .langgraph_api import langgraph_cluster_api
from .observe import normalize
from .test_differential import DELIBERATE, SCENARIOS, assert_same, rename_errors
from .test_distributed_differential import CLUSTER_DELIBERATE, UNSUPPORTED

# graphdef's deliberate differences that a converted graph shows too; strict xfail, as in
# the other suites. Not "remaining_steps_in_a_node": a converted node's input gets
# LangGraph's managed values (RemainingSteps, ...) computed in, as in LangGraph.
STILL_DIFFERENT = {
    **{name: reason for name, reason in DELIBERATE.items()
       if name != "remaining_steps_in_a_node"},
    **CLUSTER_DELIBERATE,
}


@pytest.fixture(scope="module")
def cluster():
    with in_process_cluster() as running:
        yield running


def params() -> list:
    out = []
    for name in SCENARIOS:
        marks = []
        if name in UNSUPPORTED:
            marks.append(pytest.mark.skip(reason=f"not distributed: {UNSUPPORTED[name]}"))
        elif name in STILL_DIFFERENT:
            marks.append(pytest.mark.xfail(strict=True, reason=STILL_DIFFERENT[name]))
        out.append(pytest.param(name, marks=marks))
    return out


@pytest.mark.parametrize("scenario", params())
def test_langgraph_graph_on_cluster_matches_langgraph(scenario, cluster, tmp_path):
    candidate_dir = tmp_path / "on-cluster"
    candidate_dir.mkdir()
    api, run_prefix = langgraph_cluster_api(cluster)
    try:
        actual = normalize(as_the_scenario_named(SCENARIOS[scenario](api, candidate_dir),
                                                 run_prefix))
    except NotSupportedDistributed as reason:
        pytest.skip(f"not distributed: {reason}")
    reference_dir = tmp_path / "langgraph"
    reference_dir.mkdir()
    expected = normalize(SCENARIOS[scenario](load_api("langgraph"), reference_dir))
    assert_same(expected, rename_errors(actual), ("langgraph", "langgraph on the cluster"))
