"""The differential suite again, with graphdef's runs distributed over a real Celery worker
and a real Redis: every scenario that makes sense distributed must observe what LangGraph
observes in-process.

The worker is pytest-celery's in-process kind (``celery.contrib.testing.worker.start_worker``,
what ``celery.contrib.pytest``'s ``celery_worker`` fixture runs) in a thread of this process,
because scenario graphs count their calls in memory; see ``distributed_api``. The crash
tests use ``celery worker`` subprocesses instead (tests/test_crash.py).

pytest-celery's own plugin (entry point ``celery`` -> ``pytest_celery.plugin``) builds its
fixtures on Docker, which this suite never requests; it loads without complaint. Should it
ever fail to load where Docker is missing, run with ``-p no:celery`` to disable it.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .apis import load_api
from .distributed_api import (
    NotSupportedDistributed,
    as_the_scenario_named,
    distributed_api,
    in_process_cluster,
)
from .observe import normalize
from .scenarios_graph import LogState
from .test_differential import DELIBERATE, SCENARIOS, assert_same, rename_errors

# Scenarios built on features a distributed run does not have; not run at all.
UNSUPPORTED: dict[str, str] = {
    "sqlite_resume_in_new_process": (
        "SqliteSaver shared with a child process; distributed runs checkpoint in Redis and "
        "resuming from another process is covered by tests/test_distributed.py"
    ),
    "max_concurrency_limits_a_steps_tasks": (
        "a cluster run's tasks take the workers' free slots: `max_concurrency` on a run is "
        "refused (tests/test_cluster_stream.py pins the error)"
    ),
}

SYNC_OVER_ASYNC = (
    "the sync methods of a cluster graph run a graph with async nodes (its workers await "
    "them) where LangGraph's refuse it with TypeError (README, 'Deliberate differences')"
)
# Where a run on the cluster deliberately differs from LangGraph in-process.
CLUSTER_DELIBERATE: dict[str, str] = {
    name: SYNC_OVER_ASYNC for name in (
        "async_conditional_edge", "async_node_under_sync_invoke", "async_functional_api",
        "stream_modes_in_steps",
    )
}
CLUSTER_DELIBERATE.update({
    "stream_checkpoints_mode": (
        "a graph compiled without a checkpointer still checkpoints on the cluster (the "
        "workers share state through Redis), so its run streams `checkpoints` chunks where "
        "LangGraph's streams none"
    ),
    "stream_react_agent_messages_and_updates": (
        "a `messages` chunk is the message as the model returned it, encoded when it "
        "streams; the prebuilt agent names the message afterwards, which LangGraph's "
        "consumer sees on the same object in memory and a cluster consumer does not"
    ),
})


@pytest.fixture(scope="module")
def cluster():
    with in_process_cluster() as running:
        yield running


def cluster_params(expected_to_differ: dict[str, str]) -> list:
    """Every scenario: skipped if it cannot run distributed, a strict xfail where the run
    on the cluster is expected to differ."""
    out = []
    for name in SCENARIOS:
        marks = []
        if name in UNSUPPORTED:
            marks.append(pytest.mark.skip(reason=f"not distributed: {UNSUPPORTED[name]}"))
        elif name in expected_to_differ:
            marks.append(pytest.mark.xfail(strict=True, reason=expected_to_differ[name]))
        out.append(pytest.param(name, marks=marks))
    return out


def check_on_cluster(scenario: str, api: Any, run_prefix: str, tmp_path: Path,
                     label: str) -> None:
    """Run `scenario` with `api` (graphs bound to the cluster), then on LangGraph
    in-process, and compare what both observed."""
    candidate_dir = tmp_path / "on-cluster"
    candidate_dir.mkdir()
    try:
        actual = normalize(as_the_scenario_named(SCENARIOS[scenario](api, candidate_dir),
                                                 run_prefix))
    except NotSupportedDistributed as reason:
        pytest.skip(f"not distributed: {reason}")
    reference_dir = tmp_path / "langgraph"
    reference_dir.mkdir()
    expected = normalize(SCENARIOS[scenario](load_api("langgraph"), reference_dir))
    assert_same(expected, rename_errors(actual), ("langgraph", label))


@pytest.mark.parametrize("scenario", cluster_params({**DELIBERATE, **CLUSTER_DELIBERATE}))
def test_distributed_matches_langgraph(scenario, cluster, tmp_path):
    api, run_prefix = distributed_api(cluster)
    check_on_cluster(scenario, api, run_prefix, tmp_path, "distributed")


def test_registries_name_scenarios():
    for name in UNSUPPORTED:
        assert name in SCENARIOS, name


def test_failed_run_reports_the_node_error_type(cluster):
    from scheduler.errors import RunFailedError

    api, _ = distributed_api(cluster)

    class Transient(Exception):
        pass

    def boom(state):
        raise Transient("boom")

    builder = api.StateGraph(LogState)
    builder.add_node("boom", boom)
    builder.add_edge(api.START, "boom")
    graph = builder.compile()
    handle = cluster.client.submit(graph._binding.ref, {"log": []}, thread_id=uuid.uuid4().hex)
    with pytest.raises(RunFailedError) as failure:
        handle.result(timeout=30)
    assert failure.value.error == {"type": "Transient", "message": "boom"}


def test_settled_run_frees_its_thread(cluster, monkeypatch):
    """Forces the race: the run's ending is delayed, as on a loaded machine."""
    import scheduler.driver

    end = scheduler.driver.Driver._end

    def slow_end(self, run, status, **data):
        time.sleep(0.3)
        end(self, run, status, **data)

    monkeypatch.setattr(scheduler.driver.Driver, "_end", slow_end)
    api, _ = distributed_api(cluster)

    def ask(state):
        return {"log": [api.interrupt("q?")]}

    builder = api.StateGraph(LogState)
    builder.add_node("ask", ask)
    builder.add_edge(api.START, "ask")
    graph = builder.compile()
    thread_id = uuid.uuid4().hex
    cluster.client.submit(graph._binding.ref, {"log": []}, thread_id=thread_id).result(30)
    assert cluster.client.resume(thread_id, "yes").result(30) == {"log": ["yes"]}
