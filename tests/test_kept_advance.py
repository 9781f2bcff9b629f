"""A kept task's step ended in one script (`RunStore.advance_kept`, `Driver.advance_kept`).

On a real Redis: the script writes the memo, the next checkpoint and the next step's record
with its task's lease, or, when any of its checks fails, nothing at all; so does the one that
ends a run after its last kept task (`RunStore.end_kept`). On real workers: a chain run in
place goes that way from its first task (kept by its start on a node worker) to its end (its
steps have no done set: nobody counted them), with the same history and memos as
in-process.
"""

from __future__ import annotations

import pytest

from graphdef.checkpoint.base import empty_checkpoint
from graphdef.checkpoint.memory import InMemorySaver
from graphdef.checkpoint.redis import RedisSaver
from scheduler.records import RunRecord, RunStatus
from scheduler.store import FIRST_START, RESTART, KeptAdvance, KeptEnd, RunStore, started_field
from tests.cluster import Cluster
from tests.dist_graphs import straight_builder
from tests.test_distributed import runs

THREAD, RUN = "kept", "r1"
TASK, NEXT = "task-a", "task-b"


def config(checkpoint_id: str | None = None) -> dict:
    conf = {"thread_id": THREAD, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def checkpoint(checkpoint_id: str, value: int) -> dict:
    cp = empty_checkpoint()
    cp.update(id=checkpoint_id, channel_values={"x": value}, channel_versions={"x": value})
    return cp


@pytest.fixture
def setup(redis_server):
    """A run on step `c1` (the thread's head) whose one task `TASK` holds its lease; the
    store, the saver, and the arguments of the advance that ends the step."""
    client = redis_server.client()
    for key in client.scan_iter(match="cg:{kept}*"):
        client.delete(key)
    saver, store = RedisSaver(client), RunStore(client)
    saver.put(config(), checkpoint("c1", 1), {"step": 0}, {"x": 1})
    store.create_run(RunRecord(THREAD, RUN, "g", RunStatus.RUNNING, step="c1"), None)
    store.claim_thread(THREAD, RUN)
    store.open_step(THREAD, RUN, "c1", {TASK: {"node": "a", "queue": "q"}}, {})
    assert store.acquire_lease(THREAD, TASK, "owner", 30, run_id=RUN) == FIRST_START

    def advance() -> KeptAdvance:
        return KeptAdvance(
            checkpoint_id="c1", task_id=TASK, task_owner="owner",
            memo=saver.prepare_writes(config("c1"), [("x", 2)], TASK),
            put=saver.prepare_head_put(config("c1"), checkpoint("c2", 2), {"step": 1},
                                       {"x": 2}, "c1"),
            next_checkpoint_id="c2", tasks={NEXT: {"node": "b", "queue": "q"}},
            context={"resuming": False}, events=[("task_finished", {"task_id": TASK})],
            next_task_id=NEXT, next_owner="next-owner", seconds=30)

    yield store, saver, advance


def thread_keys(store: RunStore) -> dict[bytes, bytes]:
    """Every key of the thread, dumped (the deadlines index lives elsewhere)."""
    return {k: store.r.dump(k) for k in sorted(store.r.scan_iter(match="cg:{kept}*"))}


def test_it_writes_memo_checkpoint_step_and_the_next_tasks_lease_at_once(setup):
    store, saver, advance = setup
    assert store.advance_kept(THREAD, RUN, advance()) == FIRST_START
    assert saver.head(THREAD) == "c2"
    assert saver.get_tuple(config("c2")).checkpoint["channel_values"] == {"x": 2}
    memo = saver.get_tuple(config("c1")).pending_writes
    assert [(t, c, v) for t, c, v in memo] == [(TASK, "x", 2)]
    assert store.run(THREAD, RUN).step == "c2"
    assert store.r.get(store.key(THREAD, "lease", NEXT)) == b"next-owner"
    assert not store.r.exists(store.key(THREAD, "lease", TASK))
    assert store.step_view(THREAD, RUN, "c2", [NEXT]).dispatched == {NEXT}
    # The ended step's record is gone: nothing of it looks lost to a sweeper, and a late
    # message for its task finds it not dispatched.
    assert store.step_view(THREAD, RUN, "c1", [TASK]).dispatched == frozenset()
    assert [kind for _, kind, _ in store.events(THREAD, RUN)] == ["task_finished"]


@pytest.mark.parametrize("fresh", [False, True])
def test_a_memo_known_fresh_is_saved_without_reading_the_hash(setup, fresh):
    """`memo_fresh`: the caller knows the step's writes hash is empty, so the script does
    not read its length; the memo lands the same, first in the order writes are read."""
    store, saver, advance = setup
    prepared = advance()
    counted = store.r.info("commandstats").get("cmdstat_hlen", {}).get("calls", 0)
    assert store.advance_kept(THREAD, RUN, KeptAdvance(
        **{**prepared.__dict__, "memo_fresh": fresh})) == FIRST_START
    after = store.r.info("commandstats").get("cmdstat_hlen", {}).get("calls", 0)
    assert after - counted == (0 if fresh else 1)
    memo = saver.get_tuple(config("c1")).pending_writes
    assert [(t, c, v) for t, c, v in memo] == [(TASK, "x", 2)]


def test_the_next_task_started_is_in_the_step_record_and_a_redispatch_makes_it_a_restart(
        setup):
    """The next task's lease is taken without a `started` marker key: the step's record says
    it started. The sweeper, sending it again once its lease is gone, sets the key, so that
    the new taker hears it is a restart."""
    store, saver, advance = setup
    assert store.advance_kept(THREAD, RUN, advance()) == FIRST_START
    assert not store.r.exists(store.key(THREAD, "started", NEXT))
    info, tasks, done = store.step_state(THREAD, RUN, "c2")
    assert info[started_field(NEXT)] == "next-owner" and NEXT in tasks and not done
    store.r.delete(store.key(THREAD, "lease", NEXT))  # its process died; the lease lapsed
    store.note_redispatch(THREAD, RUN, "c2", NEXT, {**tasks[NEXT], "attempt": 2}, started=True)
    assert store.acquire_lease(THREAD, NEXT, "another", 30, unless_done=(RUN, "c2"),
                               run_id=RUN) == RESTART


def refuse_lease_lost(store, saver):
    store.r.set(store.key(THREAD, "lease", TASK), "another")


def refuse_lease_lapsed(store, saver):
    store.r.delete(store.key(THREAD, "lease", TASK))


def refuse_rolling_back(store, saver):
    store.update_run(THREAD, RUN, rolling_back="r2")


def refuse_cancelled(store, saver):
    store.update_run(THREAD, RUN, status=RunStatus.CANCELLED)


def refuse_stop_requested(store, saver):
    store.update_run(THREAD, RUN, stop_requested="r2")


def refuse_other_step(store, saver):
    store.update_run(THREAD, RUN, step="c0")


def refuse_run_ended(store, saver):
    """The thread is freed only with the run's end (`end_run`): the status refuses it."""
    assert store.end_run(THREAD, RUN, RunStatus.INTERRUPTED)
    assert store.active_run(THREAD) is None


def refuse_head_moved(store, saver):
    saver.put(config("c1"), checkpoint("c9", 9), {"step": 1}, {"x": 9})


@pytest.mark.parametrize("change", [
    refuse_lease_lost, refuse_lease_lapsed, refuse_rolling_back, refuse_cancelled,
    refuse_stop_requested, refuse_other_step, refuse_run_ended, refuse_head_moved,
])
def test_a_failed_check_writes_nothing(setup, change):
    store, saver, advance = setup
    prepared = advance()
    change(store, saver)
    before = thread_keys(store)
    assert store.advance_kept(THREAD, RUN, prepared) is None
    assert thread_keys(store) == before


def ending(saver: RedisSaver) -> KeptEnd:
    """The end of the run after `TASK`, its last step: memo, last checkpoint, output."""
    return KeptEnd(
        checkpoint_id="c1", task_id=TASK, task_owner="owner",
        memo=saver.prepare_writes(config("c1"), [("x", 2)], TASK),
        put=saver.prepare_head_put(config("c1"), checkpoint("c2", 2), {"step": 1},
                                   {"x": 2}, "c1"),
        output={"x": 2},
        events=[("task_finished", {"task_id": TASK}), ("step", {"step": 0})])


def test_the_last_kept_task_ends_the_run_in_its_script(setup):
    store, saver, _ = setup
    store.r.rpush(store.key(THREAD, "queue"), "r2")  # a run waiting for the thread
    assert store.end_kept(THREAD, RUN, ending(saver)) == 1
    assert saver.head(THREAD) == "c2"
    memo = saver.get_tuple(config("c1")).pending_writes
    assert [(t, c, v) for t, c, v in memo] == [(TASK, "x", 2)]
    run = store.run(THREAD, RUN)
    assert run.status == RunStatus.DONE and run.finished_at and run.step == "c1"
    assert store.output(THREAD, RUN) == {"x": 2}
    assert store.active_run(THREAD) is None
    assert [kind for _, kind, _ in store.events(THREAD, RUN)] == [
        "task_finished", "step", "done"]
    assert not store.r.exists(store.key(THREAD, "lease", TASK))
    assert store.step_view(THREAD, RUN, "c1", [TASK]).dispatched == frozenset()


@pytest.mark.parametrize("change", [
    refuse_lease_lost, refuse_lease_lapsed, refuse_rolling_back, refuse_cancelled,
    refuse_stop_requested, refuse_other_step, refuse_run_ended, refuse_head_moved,
])
def test_an_end_that_fails_a_check_writes_nothing(setup, change):
    store, saver, _ = setup
    prepared = ending(saver)
    change(store, saver)
    before = thread_keys(store)
    assert store.end_kept(THREAD, RUN, prepared) is None
    assert thread_keys(store) == before


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url)
    cluster.start("worker1", concurrency=2)
    cluster.start_scheduler()
    yield cluster
    cluster.stop()


def history(graph_or_client, thread_id: str) -> list:
    """What a history holds, bar ids and times: values, next, step, and each task's result."""
    return [(s.values, s.next, s.metadata["source"], s.metadata["step"],
             [(t.name, t.result) for t in s.tasks])
            for s in graph_or_client.get_state_history({"configurable": {"thread_id": thread_id}}
                                                       if hasattr(graph_or_client, "invoke")
                                                       else thread_id)]


def test_a_chain_run_in_place_ends_its_steps_in_one_script(cluster, redis_server, monkeypatch):
    client = cluster.client()
    handle = client.submit("tests.dist_graphs:straight", {"log": []}, thread_id="straight")
    names = [f"s{i}" for i in range(8)]
    assert handle.result(timeout=60) == {"log": names}
    assert runs(redis_server, "straight") == dict.fromkeys(names, 1)
    store = RunStore(redis_server.client())
    # The run started on a node worker (`runs.start_queue`), which kept its first task; the
    # last one ended the run in its script (`RunStore.end_kept`). No step was counted the
    # long way, and every step's record went with the script that ended the step.
    assert counted_steps(store, client, "straight", handle.id) == []
    assert list(redis_server.client().scan_iter(
        match=f"cg:{{straight}}:step:{handle.id}:*")) == []
    kinds = [e.type for e in handle.events()]
    assert kinds.count("task_finished") == 8 and kinds.count("dispatched") == 8
    assert kinds[-3:] == ["task_finished", "step", "done"]
    assert store.active_run("straight") is None
    assert store.output("straight", handle.id) == {"log": names}

    monkeypatch.setenv("CELERYGRAPH_STORE_URL", redis_server.url)
    local = straight_builder(8).compile(checkpointer=InMemorySaver())
    local.invoke({"log": []}, {"configurable": {"thread_id": "straight-local"}})
    assert history(client, "straight") == history(local, "straight-local")


def counted_steps(store: RunStore, client, thread_id: str, run_id: str) -> list[str]:
    """The checkpoints of a thread whose step someone counted done (the long way)."""
    return [cp for cp in (s.config["configurable"]["checkpoint_id"]
                          for s in client.get_state_history(thread_id))
            if store.r.exists(store.key(thread_id, "done", run_id, cp))]


def test_a_streamed_chain_in_place_streams_what_in_process_streams(cluster, redis_server,
                                                                    monkeypatch):
    """The task's closing chunks, the step's and the next step's plan are published by the
    same script (`Publisher.hold`): in the same order as in-process, each once."""
    client = cluster.client()
    graph = client.graph("tests.dist_graphs:straight")
    modes = ["values", "updates"]
    ours = list(graph.stream({"log": []}, {"configurable": {"thread_id": "straight-s"}},
                             stream_mode=modes))
    monkeypatch.setenv("CELERYGRAPH_STORE_URL", redis_server.url)
    local = straight_builder(8).compile(checkpointer=InMemorySaver())
    assert ours == list(local.stream({"log": []}, {"configurable": {"thread_id": "local-s"}},
                                     stream_mode=modes))
    run_id = client.store.runs_of("straight-s")[-1]
    # Only the last step is counted: a streaming run ends the long way (its stream's end).
    assert len(counted_steps(RunStore(redis_server.client()), client, "straight-s",
                             run_id)) == 1
