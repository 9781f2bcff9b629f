"""Reads a worker reuses instead of repeating must not make a finished task run again: a
batch of a wide superstep's tasks (`celerygraph.run_nodes`) reads its step and checkpoint
once, a lone task reads its checkpoint with its step view, and a task kept in place runs on
the loop of the advance that planned it. A task that finished, or saved its memo, elsewhere
after such a read is not run again.

Driven in-process against a private Redis (the driver's messages are recorded, not sent), so
the interleaving is forced rather than hoped for.
"""

from __future__ import annotations

import pytest

import tests.dist_graphs as dist_graphs
from graphdef.checkpoint.redis import RedisSaver
from graphdef.constants import NULL_TASK_ID
from scheduler import registry
from scheduler.driver import Driver
from scheduler.protocol import NodeRef
from scheduler.resources import Resources
from scheduler.runs import create_run
from scheduler.settings import Settings
from scheduler.store import RunStore
from tests.recording_app import RecordingApp
from tests.redis_server import redis_server
from worker import tasks
from worker.node import batch_reads, execute_node, execute_planned, view_and_checkpoint


@pytest.fixture
def res(monkeypatch):
    with redis_server() as server:
        monkeypatch.setenv("CELERYGRAPH_STORE_URL", server.url)
        monkeypatch.setattr(dist_graphs, "_client", None)
        settings = Settings(broker_url=server.url, store_url=server.url, step_messages=1)
        saver = RedisSaver.from_url(server.url)
        yield Resources(settings, saver, RunStore(saver.client), loaded=True)
        monkeypatch.setattr(dist_graphs, "_client", None)


def memo_then_die(res: Resources):  # noqa: ANN201 - a stand-in for RunStore.finish_task
    """A `finish_task` that saves the task's memo and dies before counting it: a worker of
    a release that saved the memo apart from its count (one script since), met during a
    rolling upgrade."""
    def finish_task(store, *args, memo=None, **kwargs):  # noqa: ANN001, ANN003, ANN202
        res.saver.write_prepared(memo.writes)
        raise ConnectionError("died after the memo")

    return finish_task


def started_fanout(res: Resources, thread_id: str, n: int):  # noqa: ANN201 - a test helper
    """A fan-out of `n` started, its step sent as one message: the app that recorded it, the
    run id and the one (task name, args) sent."""
    registry.register("tests.dist_graphs:fanout", dist_graphs.fanout)
    app = RecordingApp()
    run_id = create_run(res.store, graph="tests.dist_graphs:fanout", run_input={"n": n},
                        thread_id=thread_id, validate=False)
    assert Driver(res, app).start(thread_id, run_id).status == "running"
    [sent] = app.sent
    return app, run_id, sent


def runs_per_task(res: Resources, thread_id: str) -> dict[str, int]:
    raw = res.store.r.hgetall(f"runs:{thread_id}")
    return {k.decode(): int(v) for k, v in raw.items()}


def test_tasks_finished_after_the_batch_read_its_step_do_not_run_again(res, monkeypatch):
    app, run_id, (name, (thread_id, _, checkpoint_id, batch)) = started_fanout(res, "batch", 4)
    assert name == "celerygraph.run_nodes" and len(batch) == 4
    ids = [task_id for task_id, _ in batch]
    view, prefetched = batch_reads(res, thread_id, run_id, checkpoint_id, ids)
    assert prefetched is not None
    # After the batch's reads: another worker finishes task 0, and another saves the memo
    # of task 1 and dies before counting it (its lease lapses): a worker of a release that
    # saved the memo apart from its count, during a rolling upgrade (now one script).
    assert not execute_node(res, thread_id, run_id, checkpoint_id, *batch[0])
    with monkeypatch.context() as dying:
        dying.setattr(RunStore, "finish_task", memo_then_die(res))
        with pytest.raises(ConnectionError):
            execute_node(res, thread_id, run_id, checkpoint_id, *batch[1])
    res.store.r.delete(res.store.key(thread_id, "lease", ids[1]))
    before = runs_per_task(res, thread_id)
    assert sorted(before.values()) == [1, 1]
    for task_id, path in batch:
        tasks.run_and_advance(res, app, thread_id, run_id, checkpoint_id,
                              NodeRef(task_id, path), "nodes", view, prefetched)
    outcomes = [e[2]["outcome"] for e in res.store.events(thread_id, run_id)
                if e[1] == "task_finished"]
    assert outcomes == ["finished", "skipped", "finished", "finished", "finished"]
    after = runs_per_task(res, thread_id)
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(after.values()) == [1, 1, 1, 1, 1]  # four `work` and the `total` step
    assert res.store.run(thread_id, run_id).status == "done"


def test_a_kept_task_taken_elsewhere_meanwhile_is_not_run_again(res, monkeypatch):
    registry.register("tests.dist_graphs:chain", dist_graphs.chain)
    app = RecordingApp()
    run_id = create_run(res.store, graph="tests.dist_graphs:chain", run_input={"log": []},
                        thread_id="kept", validate=False)
    assert Driver(res, app).start("kept", run_id).status == "running"
    [(_, (thread_id, _, checkpoint_id, batch))] = app.sent  # `a` and `b`, one message
    assert [execute_node(res, thread_id, run_id, checkpoint_id, *t) for t in batch] == [
        False, True]
    outcome = Driver(res, app, run_here="nodes").advance(thread_id, run_id, checkpoint_id)
    kept = outcome.kept
    assert kept.loop is not None and kept.task.name == "slow"
    # This worker stalls past the lease; the sweeper sends `slow` elsewhere, where it saves
    # its memo and dies before counting it (a worker of an earlier release, as above).
    with monkeypatch.context() as dying:
        dying.setattr(RunStore, "finish_task", memo_then_die(res))
        with pytest.raises(ConnectionError):
            execute_node(res, thread_id, run_id, kept.checkpoint_id, kept.task_id, kept.path)
    res.store.r.delete(res.store.key(thread_id, "lease", kept.task_id))
    # Back, this worker must not run `slow` on the loop it kept: it goes the ordinary way,
    # which finds the memo.
    assert execute_planned(res, thread_id, run_id, kept.checkpoint_id, kept.task,
                           kept.loop, kept.saver, graph=kept.graph,
                           trace_parent=kept.trace_parent) is None
    assert execute_node(res, thread_id, run_id, kept.checkpoint_id, kept.task_id, kept.path)
    runs = {field.split("|")[0]: n for field, n in runs_per_task(res, thread_id).items()}
    assert runs == {"a": 1, "b": 1, "slow": 1}


def ran(res: Resources, thread_id: str) -> dict[str, int]:
    """How many times each node ran on the thread."""
    return {field.split("|")[0]: n for field, n in runs_per_task(res, thread_id).items()}


def started_single(res: Resources, thread_id: str) -> tuple[str, str, str]:
    """A run of `single` started: its run id, its step's checkpoint and its one task."""
    registry.register("tests.dist_graphs:single", dist_graphs.single)
    app = RecordingApp()
    run_id = create_run(res.store, graph="tests.dist_graphs:single", run_input={"log": []},
                        thread_id=thread_id, validate=False)
    assert Driver(res, app).start(thread_id, run_id).status == "running"
    [(name, (_, _, checkpoint_id, task_id, _))] = app.sent
    assert name == "celerygraph.run_node"
    return run_id, checkpoint_id, task_id


def test_a_lone_task_reads_its_checkpoint_with_its_step_view(res, monkeypatch):
    run_id, checkpoint_id, task_id = started_single(res, "lone")
    config = {"configurable": {"thread_id": "lone", "checkpoint_ns": "",
                               "checkpoint_id": checkpoint_id}}
    # Read first the usual way, which loads the script on this new Redis.
    expected = res.saver.get_tuple_for_tasks(config, [task_id, NULL_TASK_ID])
    view, saved = view_and_checkpoint(res, "lone", run_id, checkpoint_id, task_id)
    assert view == res.store.step_view("lone", run_id, checkpoint_id, [task_id],
                                       with_active=False)
    assert task_id in view.dispatched
    assert saved is not None and saved == expected
    loads: list[object] = []
    real_load = RedisSaver.get_tuple_for_tasks
    monkeypatch.setattr(RedisSaver, "get_tuple_for_tasks",
                        lambda self, *a: loads.append(a) or real_load(self, *a))
    assert execute_node(res, "lone", run_id, checkpoint_id, task_id)
    assert ran(res, "lone") == {"one": 1}
    assert loads == []  # the node ran on the checkpoint read with its step view


def test_a_lone_task_whose_memo_is_saved_loads_its_own_checkpoint(res, monkeypatch):
    """Its process died after the memo (`memo_then_die`): the read with the view is not
    used, the task's own load finds the memo, and the task is counted without running
    again."""
    run_id, checkpoint_id, task_id = started_single(res, "memo")
    with monkeypatch.context() as dying:
        dying.setattr(RunStore, "finish_task", memo_then_die(res))
        with pytest.raises(ConnectionError):
            execute_node(res, "memo", run_id, checkpoint_id, task_id)
    res.store.r.delete(res.store.key("memo", "lease", task_id))
    # The script is loaded (the task loaded its checkpoint): the read finds the memo.
    assert view_and_checkpoint(res, "memo", run_id, checkpoint_id, task_id)[1] is None
    assert execute_node(res, "memo", run_id, checkpoint_id, task_id)
    assert ran(res, "memo") == {"one": 1}


def test_a_lone_task_on_a_redis_without_the_load_script_loads_its_own(res):
    """A Redis that restarted (or flushed its scripts) answers the read with NOSCRIPT: the
    view is used, the checkpoint is not, and the task's own load loads the script."""
    run_id, checkpoint_id, task_id = started_single(res, "noscript")
    res.store.r.script_flush()
    view, saved = view_and_checkpoint(res, "noscript", run_id, checkpoint_id, task_id)
    assert task_id in view.dispatched and saved is None
    assert execute_node(res, "noscript", run_id, checkpoint_id, task_id)
    assert ran(res, "noscript") == {"one": 1}


def test_later_messages_of_a_step_read_no_checkpoint_in_the_same_process(res, monkeypatch):
    """A step sent as several messages: the process that runs the first reads the step's
    record and checkpoint once (`worker.step_cache`); its later messages read only the
    run's record, and every task runs once and the run ends as one message would have it."""
    from scheduler.protocol import RunNodes

    app, run_id, (_, (thread_id, _, checkpoint_id, batch)) = started_fanout(res, "cached", 6)
    loads, steps = [], []
    real_load, real_step = res.saver.get_tuple_for_tasks, res.store.run_and_step
    monkeypatch.setattr(res.saver, "get_tuple_for_tasks",
                        lambda config, ids: loads.append(list(ids)) or real_load(config, ids))
    monkeypatch.setattr(res.store, "run_and_step",
                        lambda *args: steps.append(args) or real_step(*args))
    for part in (batch[:2], batch[2:4], batch[4:]):
        refs = tuple(NodeRef(task_id, path) for task_id, path in part)
        tasks.run_message(res, app, RunNodes(thread_id, run_id, checkpoint_id, refs), "nodes")
    assert loads.count([NULL_TASK_ID]) == 1 and len(steps) == 1
    assert sorted(runs_per_task(res, thread_id).values()) == [1] * 7  # six `work`, `total`
    assert res.store.run(thread_id, run_id).status == "done"
