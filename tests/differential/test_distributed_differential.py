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

import pytest

from .apis import load_api
from .distributed_api import NotSupportedDistributed, distributed_api, in_process_cluster
from .observe import normalize
from .scenarios_async_stream import NOT_DISTRIBUTED
from .scenarios_graph import LogState
from .test_differential import DELIBERATE, SCENARIOS, assert_same, rename_errors

STREAM = (
    "observes stream() chunks; a distributed run reports progress as run events "
    "(RunHandle.events), not stream chunks"
)
UPDATE_STATE = "update_state: the producers' API (scheduler.Client) edits no state"

# Scenarios built on features a distributed run does not have; not run at all.
UNSUPPORTED: dict[str, str] = {
    "chain": STREAM,
    "add_sequence": STREAM,
    "parallel_reducer_order": STREAM,
    "conditional_edge_returns_list": STREAM,
    "loop_until_counter": STREAM,
    "send_from_start": STREAM,
    "stream_modes": STREAM,
    "subgraph_shared_keys": STREAM + " (subgraphs=True)",
    "stream_updates_and_values_with_subgraphs": STREAM + " (subgraphs=True)",
    "command_goto_list_with_sends": STREAM,
    "interrupt_stream_and_resume": STREAM,
    "entrypoint_stream_sequential_tasks": STREAM,
    "cache_hits_and_misses": STREAM + " (the cached update's metadata)",
    "defer_with_conditional_edges": STREAM,
    "runtime_stream_writer_streams_custom": STREAM,
    "overwrite_bypasses_reducer": UPDATE_STATE,
    "update_state_then_continue": UPDATE_STATE,
    "fork_from_old_checkpoint": UPDATE_STATE + "; time travel from a checkpoint_id",
    "time_travel_replay": (
        "time travel: invoke(None, {checkpoint_id}) forks an old checkpoint; "
        "Client.submit always continues a thread's head"
    ),
    **{
        name: UPDATE_STATE + " (Client.resume after an update made on the cluster's saver: "
        "tests/test_distributed.py::test_edit_then_approve_through_the_client)"
        for name in (
            "subgraph_update_as_node_via_its_config", "subgraph_edit_then_resume",
            "subgraph_edit_then_resume_sqlite", "update_state_metadata_from_its_config",
            "edit_then_resume_root", "edit_sibling_of_paused_branch",
        )
    },
    "history_filtered_by_run_metadata": (
        "the resume run has a config of its own; Client.resume takes none (a resume runs "
        "with no run metadata: history_filtered_by_one_runs_metadata covers a submit's)"
    ),
    "sqlite_resume_in_new_process": (
        "SqliteSaver shared with a child process; distributed runs checkpoint in Redis and "
        "resuming from another process is covered by tests/test_distributed.py"
    ),
    **{
        name: NOT_DISTRIBUTED
        for name in SCENARIOS
        if name.startswith(("async_", "stream_", "node_config_", "with_config_"))
    },
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
        elif name in DELIBERATE:
            marks.append(pytest.mark.xfail(strict=True, reason=DELIBERATE[name]))
        out.append(pytest.param(name, marks=marks))
    return out


@pytest.mark.parametrize("scenario", params())
def test_distributed_matches_langgraph(scenario, cluster, tmp_path):
    candidate_dir = tmp_path / "distributed"
    candidate_dir.mkdir()
    try:
        actual = normalize(SCENARIOS[scenario](distributed_api(cluster), candidate_dir))
    except NotSupportedDistributed as reason:
        pytest.skip(f"not distributed: {reason}")
    reference_dir = tmp_path / "langgraph"
    reference_dir.mkdir()
    expected = normalize(SCENARIOS[scenario](load_api("langgraph"), reference_dir))
    actual = rename_errors(actual)
    assert_same(expected, actual, ("langgraph", "distributed"))


def test_registries_name_scenarios():
    for name in UNSUPPORTED:
        assert name in SCENARIOS, name


def test_failed_run_reports_the_node_error_type(cluster):
    from scheduler.errors import RunFailedError

    api = distributed_api(cluster)

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
    api = distributed_api(cluster)

    def ask(state):
        return {"log": [api.interrupt("q?")]}

    builder = api.StateGraph(LogState)
    builder.add_node("ask", ask)
    builder.add_edge(api.START, "ask")
    graph = builder.compile()
    thread_id = uuid.uuid4().hex
    cluster.client.submit(graph._binding.ref, {"log": []}, thread_id=thread_id).result(30)
    assert cluster.client.resume(thread_id, "yes").result(30) == {"log": ["yes"]}
