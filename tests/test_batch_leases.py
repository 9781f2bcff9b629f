"""A batch message's tasks (`celerygraph.run_nodes`) take their leases in one script
(`RunStore.acquire_leases`, `worker.batch_leases`), each task still its own lease and
`started` marker; memo and count stay at each task's own end. These pin what that must keep:
every lease taken before the first task runs and watched by the run's look, a task counted
done or held elsewhere refused, a message that fails half-way giving back what it did not
run (and only unfinished tasks running again), and the commands a batch costs.

Driven in-process against a private Redis (the driver's messages are recorded, not sent).
The SIGKILL of a worker inside a batch, with real processes, is in `test_distributed`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import tests.dist_graphs as dist_graphs
from graphdef.checkpoint.redis import RedisSaver
from scheduler import registry
from scheduler.deadlines import run_member
from scheduler.driver import Driver
from scheduler.protocol import NodeRef, RunNodes
from scheduler.resources import Resources
from scheduler.runs import create_run
from scheduler.settings import Settings
from scheduler.store import FIRST_START, RESTART, RunStore
from tests.recording_app import RecordingApp
from tests.redis_server import redis_server
from worker import node, tasks

GRAPH = "tests.dist_graphs:fanout"


@pytest.fixture
def res(monkeypatch: pytest.MonkeyPatch) -> Iterator[Resources]:
    with redis_server() as server:
        monkeypatch.setenv("CELERYGRAPH_STORE_URL", server.url)
        monkeypatch.setattr(dist_graphs, "_client", None)
        settings = Settings(broker_url=server.url, store_url=server.url, step_messages=1)
        saver = RedisSaver.from_url(server.url)
        registry.register(GRAPH, dist_graphs.fanout)
        yield Resources(settings, saver, RunStore(saver.client), loaded=True)
        monkeypatch.setattr(dist_graphs, "_client", None)


def started_batch(res: Resources, thread_id: str, n: int) -> tuple[RecordingApp, RunNodes]:
    """A fan-out of `n` started: its one message, as the driver sent it."""
    app = RecordingApp()
    run_id = create_run(res.store, graph=GRAPH, run_input={"n": n}, thread_id=thread_id,
                        validate=False)
    assert Driver(res, app).start(thread_id, run_id).status == "running"
    [(name, (_, _, checkpoint_id, batch))] = app.sent
    assert name == "celerygraph.run_nodes" and len(batch) == n
    app.sent.clear()
    refs = tuple(NodeRef(task_id, path) for task_id, path in batch)
    return app, RunNodes(thread_id, run_id, checkpoint_id, refs)


def lease_of(res: Resources, thread_id: str, task_id: str) -> bytes | None:
    return res.store.r.get(res.store.key(thread_id, "lease", task_id))


def work_runs(res: Resources, thread_id: str) -> list[int]:
    raw = res.store.r.hgetall(f"runs:{thread_id}")
    return sorted(int(v) for k, v in raw.items() if k.startswith(b"work|"))


def test_one_script_takes_each_tasks_own_lease_and_marker(res):
    store = res.store
    _, message = started_batch(res, "grants", 4)
    thread_id, run_id, checkpoint_id = message.thread_id, message.run_id, message.checkpoint_id
    ids = [t.task_id for t in message.tasks]
    # The first task counted done, the second's lease held elsewhere, the third's taken
    # and released before (a task that may have left writes).
    store.finish_task(thread_id, run_id, checkpoint_id, ids[0], node="work",
                      outcome="finished")
    assert store.acquire_lease(thread_id, ids[1], "elsewhere", 30, run_id=run_id)
    assert store.acquire_lease(thread_id, ids[2], "before", 30, run_id=run_id)
    store.release_lease(thread_id, ids[2], "before")
    store.r.zrem(store.deadlines.due_key_of_thread(thread_id), run_member(thread_id, run_id))
    owners = [(task_id, f"owner-{i}") for i, task_id in enumerate(ids)]
    before = store.deadlines.clock.now_ms()
    grants = store.acquire_leases(thread_id, run_id, checkpoint_id, owners, 2.0)
    assert grants == [0, 0, RESTART, FIRST_START]
    assert [lease_of(res, thread_id, t) for t in ids] == [
        None, b"elsewhere", b"owner-2", b"owner-3"]
    for task_id, owner in owners[2:]:
        assert store.r.get(store.key(thread_id, "started", task_id)) == owner.encode()
        assert 0 < store.r.pttl(store.key(thread_id, "lease", task_id)) <= 2000
    # Watched: the run's look is due no later than the leases' expiry.
    look = store.r.zscore(store.deadlines.due_key_of_thread(thread_id),
                          run_member(thread_id, run_id))
    assert look is not None and before + 2000 <= look <= store.deadlines.clock.now_ms() + 2000
    # Taken once: asked again, every lease is held or the task done.
    assert store.acquire_leases(thread_id, run_id, checkpoint_id, owners, 2.0) == [0] * 4


def test_every_lease_is_taken_before_the_first_task_runs(res, monkeypatch):
    app, message = started_batch(res, "before", 4)
    thread_id = message.thread_id
    ids = [t.task_id for t in message.tasks]
    seen: list[list[bytes | None]] = []
    real_run_on = node.run_on

    def run_on(*args: Any, **kwargs: Any) -> str:
        seen.append([lease_of(res, thread_id, t) for t in ids])
        return real_run_on(*args, **kwargs)

    monkeypatch.setattr(node, "run_on", run_on)
    tasks.run_message(res, app, message, "nodes")
    # Each `work` found its own and the later tasks' leases held, each by an owner of its
    # own; then `total` ran in place. The earlier tasks' leases, never adopted, were left
    # to lapse by their counts (a task counted done is never run again): each still there
    # has an expiry.
    for i, leases in enumerate(seen[:4]):
        assert None not in leases[i:] and len(set(leases[i:])) == 4 - i
    assert len(seen) == 5
    done = res.store.r.smembers(res.store.key(thread_id, "done", message.run_id,
                                              message.checkpoint_id))
    assert done == {t.encode() for t in ids}
    for task_id in ids:
        assert res.store.r.pttl(res.store.key(thread_id, "lease", task_id)) in range(-2, 2001)
        assert res.store.r.pttl(res.store.key(thread_id, "lease", task_id)) != -1
    assert work_runs(res, thread_id) == [1] * 4
    assert res.store.run(thread_id, message.run_id).status == "done"


def test_a_message_failing_half_way_gives_back_what_it_did_not_run(res, monkeypatch):
    """The store fails as the second task is counted (Celery retries the message): the
    first task stays counted and is not run again, the second runs again (its memo was
    not saved), and the third and fourth, never run, get their leases back at once
    rather than a lease lifetime later."""
    app, message = started_batch(res, "half", 4)
    thread_id = message.thread_id
    ids = [t.task_id for t in message.tasks]
    real_finish = RunStore.finish_task
    calls = Counter[str]()

    def finish_task(store: RunStore, *args: Any, **kwargs: Any) -> int:
        calls["finish"] += 1
        if calls["finish"] == 2:
            raise redis.ConnectionError("the store went away")
        return real_finish(store, *args, **kwargs)

    with monkeypatch.context() as failing:
        failing.setattr(RunStore, "finish_task", finish_task)
        with pytest.raises(redis.ConnectionError):
            tasks.run_message(res, app, message, "nodes")
    # The first, counted, left its lease to lapse; the others' were given back.
    assert 0 < res.store.r.pttl(res.store.key(thread_id, "lease", ids[0])) <= 2000
    assert [lease_of(res, thread_id, t) for t in ids[1:]] == [None] * 3
    assert res.store.done_count(thread_id, message.run_id, message.checkpoint_id) == 1
    assert work_runs(res, thread_id) == [1, 1]
    tasks.run_message(res, app, message, "nodes")  # the retry
    assert work_runs(res, thread_id) == [1, 1, 1, 2]
    done = {e[2]["task_id"]: e[2]["outcome"] for e in res.store.events(thread_id, message.run_id)
            if e[1] == "task_finished" and e[2]["task_id"] in ids}
    assert done == dict.fromkeys(ids, "finished")
    assert res.store.run(thread_id, message.run_id).status == "done"


def counted_message(res: Resources, thread_id: str, n: int) -> Counter[str]:
    """Commands Redis ran (`INFO commandstats`) for one message of a fan-out of `n` that
    runs the step and ends the run, less the test graph's own count of its runs."""
    app, message = started_batch(res, thread_id, n)
    r = res.store.r
    r.config_resetstat()
    tasks.run_message(res, app, message, "nodes")
    calls = Counter({k.removeprefix("cmdstat_"): int(v["calls"])
                     for k, v in r.info("commandstats").items()
                     if k != "cmdstat_info" and not k.startswith("cmdstat_config")})
    assert res.store.run(thread_id, message.run_id).status == "done"
    calls.subtract({"hincrby": n + 1, "rpush": n + 1})  # `dist_graphs.count`, `total` too
    return calls


def test_a_batch_task_costs_its_lease_and_its_count(res):
    """What one task more in a message costs, counted by Redis: one SET for its lease and
    one `_FINISH_TASK` (memo, count; its lease, never adopted, left to lapse), where it
    also cost a look, an HEXISTS
    and a lease script of its own (five more: ZADD, HEXISTS, EVALSHA, SISMEMBER, and the
    SET of its started marker); the message's lease script and the HMGET of its step view
    are one each, whatever its size."""
    counted_message(res, "warm", 2)  # scripts loaded: no NOSCRIPT retries counted
    small, large = counted_message(res, "small", 10), counted_message(res, "large", 20)
    for calls in (small, large):
        assert calls["smismember"] == calls["mget"] == calls["mset"] == 1
        assert calls["sismember"] == 0 and calls["hexists"] <= 1  # the advance's put, once
    more = large - small
    assert more["set"] == 10 and more["zadd"] == 0 and more["hexists"] == 0
    # SET, and `_FINISH_TASK`: EVALSHA, the memo (HLEN, and HMGET and HSET for this graph's
    # write), XADD of its event, SADD and HINCRBY of its count.
    assert more["get"] == more["del"] == 0
    assert sum(more.values()) == 10 * 8, sorted(more.items())
