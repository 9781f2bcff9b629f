"""A step's count of finished tasks (`RunStore.finish_task`), on a real Redis.

Each task counts itself down the step's `left` instead of comparing `total` with the done
set's size (one command a task fewer); these pin what the count must still do: complete a
step exactly once, ignore repeats, handle a step recorded before `left` existed, and leave
nothing behind for a step whose record is gone.
"""

from __future__ import annotations

from scheduler.store import STEP_COMPLETED, RunStore

TASKS = {f"t{i}": {"node": "n"} for i in range(3)}


def finish(store: RunStore, checkpoint_id: str, task_id: str) -> int:
    return store.finish_task("th", "r", checkpoint_id, task_id, node="n", outcome="finished")


def test_the_last_distinct_task_completes_the_step_once(redis_server):
    store = RunStore(redis_server.client())
    store.open_step("th", "r", "cp", TASKS, {})
    assert [finish(store, "cp", t) for t in ("t0", "t1", "t0")] == [0, 0, 0]
    assert finish(store, "cp", "t2") == STEP_COMPLETED
    assert [finish(store, "cp", t) for t in ("t2", "t1")] == [0, 0]
    assert store.done_count("th", "r", "cp") == 3


def test_a_step_recorded_without_left_counts_its_done_set(redis_server):
    """A step opened by the code before `left` (a run in flight across an upgrade)."""
    store = RunStore(redis_server.client())
    store.open_step("th", "r", "old", TASKS, {})
    store.r.hdel(store.key("th", "step", "r", "old"), "left")
    assert [finish(store, "old", t) for t in ("t0", "t1")] == [0, 0]
    assert finish(store, "old", "t2") == STEP_COMPLETED
    assert finish(store, "old", "t2") == 0


def test_a_reopened_step_counts_from_the_start_again(redis_server):
    """A step recorded again (by an advancer that stalled between its put and the record,
    after another carried on from its head): its count and done set start over together."""
    store = RunStore(redis_server.client())
    store.open_step("th", "r", "again", TASKS, {})
    assert finish(store, "again", "t0") == 0
    store.open_step("th", "r", "again", TASKS, {})
    assert store.done_count("th", "r", "again") == 0
    assert [finish(store, "again", t) for t in ("t0", "t1", "t2")] == [0, 0, STEP_COMPLETED]


def test_a_finish_for_a_step_whose_record_is_gone_leaves_no_record(redis_server):
    store = RunStore(redis_server.client())
    assert finish(store, "gone", "t0") == 0
    assert not store.r.exists(store.key("th", "step", "r", "gone"))


def test_the_memo_and_closing_chunks_land_with_the_count(redis_server):
    """A task's held-back memo and closing chunks are saved by the script that counts it:
    one round trip, nothing between them for a crash to fall in."""
    from graphdef.checkpoint.base import empty_checkpoint
    from graphdef.checkpoint.redis import RedisSaver
    from scheduler.store import TaskMemo
    from scheduler.streams import chunk_fields

    client = redis_server.client()
    store, saver = RunStore(client), RedisSaver(client)
    thread = {"thread_id": "memo", "checkpoint_ns": ""}
    saver.put({"configurable": thread}, {**empty_checkpoint(), "id": "cp"}, {}, {})
    store.open_step("memo", "r", "cp", {"t0": {"node": "n"}}, {})
    config = {"configurable": {**thread, "checkpoint_id": "cp"}}
    chunks = [("task:cp:t0", [chunk_fields(((), "updates", {"n": {"x": 1}}), "t0", "a1")])]
    memo = TaskMemo(saver.prepare_writes(config, [("x", 1)], "t0"), chunks)
    done = store.finish_task("memo", "r", "cp", "t0", memo=memo, node="n", outcome="finished")
    assert done == STEP_COMPLETED
    assert saver.get_tuple_for_tasks(config, ["t0"]).pending_writes == [("t0", "x", 1)]
    stream = store.chunk_stream("memo", "r")
    assert [(p.kind, p.mode, p.data) for p in stream.read()] == [
        ("chunk", "updates", {"n": {"x": 1}})]
    # A repeat (a stale copy of the task) changes neither the memo nor the stream.
    again = TaskMemo(saver.prepare_writes(config, [("x", 2)], "t0"), chunks)
    assert store.finish_task("memo", "r", "cp", "t0", memo=again, node="n",
                             outcome="finished") == 0
    assert saver.get_tuple_for_tasks(config, ["t0"]).pending_writes == [("t0", "x", 1)]
    assert len(stream.read()) == 1
