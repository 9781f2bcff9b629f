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

from .distributed_api import in_process_cluster
from .langgraph_api import langgraph_cluster_api
from .test_differential import DELIBERATE
from .test_distributed_differential import CLUSTER_DELIBERATE, check_on_cluster, cluster_params

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


@pytest.mark.parametrize("scenario", cluster_params(STILL_DIFFERENT))
def test_langgraph_graph_on_cluster_matches_langgraph(scenario, cluster, tmp_path):
    api, run_prefix = langgraph_cluster_api(cluster)
    check_on_cluster(scenario, api, run_prefix, tmp_path, "langgraph on the cluster")
