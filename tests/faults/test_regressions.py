"""Minimal reproductions of the bugs the fault storm found, one test per bug.

Each is marked `xfail(strict=True)` until its fix lands; the fix's commit removes the mark.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import pytest
import redis

from scheduler.leases import Heartbeat
from scheduler.localcluster import LocalCluster
from scheduler.records import RunRecord, RunStatus
from scheduler.store import RunStore
from tests.cluster import Cluster, RedisServer
from tests.faults import storm_graphs


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis", appendonly=True)
    yield server
    server.kill()


def wait_until(check, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# A consumer that takes one message from the `nodes` queue the way a Celery worker does (not
# acknowledged, so the Redis transport parks it in `unacked`) and dies before doing anything.
_TAKE_AND_DIE = """
import os, signal, sys
import kombu
with kombu.Connection(sys.argv[1]) as conn:
    queue = conn.SimpleQueue("nodes")
    message = queue.get(timeout=20)
    print(message.headers.get("id"), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_task_whose_consumer_died_before_its_lease_is_redispatched(redis_server, tmp_path):
    cluster = Cluster(tmp_path, redis_server.url)
    try:
        cluster.start_scheduler()
        handle = cluster.client().submit("tests.dist_graphs:single", {"log": []},
                                         thread_id="taken-then-died")
        r = redis_server.client()
        wait_until(lambda: r.llen("nodes") == 1, what="the node task in the queue")
        taker = subprocess.run([sys.executable, "-c", _TAKE_AND_DIE, redis_server.url],
                               capture_output=True, text=True, timeout=60)
        assert taker.returncode == -9 and taker.stdout.strip(), taker.stderr
        assert r.llen("nodes") == 0 and r.hlen("unacked") == 1
        cluster.start("w1")
        # A worker died holding the task before it started: like a worker that died
        # mid-node, it must be sent again within seconds (lease 1.5 s, sweep 0.25 s).
        assert handle.result(timeout=15)["log"] == ["one"]
    finally:
        cluster.stop()


def test_liveness_survives_a_failed_beat(redis_server):
    """A Redis blip must not end a process's heartbeat: every lease it adopted would then be
    revoked while its node still ran."""
    class Blip(RunStore):
        failures = 1

        def adopt_leases(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if Blip.failures:
                Blip.failures -= 1
                raise redis.ConnectionError("Connection closed by server.")
            return super().adopt_leases(*args, **kwargs)

    store = Blip(redis_server.client())
    assert store.acquire_lease("t", "task", "me", 0.3, run_id="r")
    errors: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        with Heartbeat(store, "t", "r", "task", "me", 0.3):
            time.sleep(1.2)  # four lease lifetimes: only the liveness keeps the lease
            ttl = store.r.pttl(store.key("t", "lease", "task"))
    finally:
        threading.excepthook = previous
    assert Blip.failures == 0, "the failing adoption was never tried"
    assert ttl == -1, f"lease not kept (PTTL {ttl}) while its holder ran; errors: {errors}"
    assert not store.r.exists(store.key("t", "lease", "task")), "not released at the end"


def test_interrupted_task_is_not_rerun_after_dying_before_its_barrier(redis_server, tmp_path):
    cluster = LocalCluster(tmp_path, redis_server.url, graphs="tests.faults.storm_graphs",
                           CELERYGRAPH_LEASE_SECONDS="1.5", CELERYGRAPH_SWEEP_SECONDS="0.25")
    try:
        cluster.start_scheduler()
        cluster.env["CELERYGRAPH_FAULTS"] = "memo_saved=1"  # dies right after saving
        cluster.start_worker("doomed")
        cluster.env["CELERYGRAPH_FAULTS"] = ""
        handle = cluster.client().submit("tests.faults.storm_graphs:ask_first",
                                         {"seed": 1, "log": []}, thread_id="ask-crash")
        wait_until(lambda: "exited with 'signal 9" in cluster.log("doomed"),
                   what="the worker to die after saving the interrupt")
        cluster.kill("doomed")
        cluster.start_worker("w2")
        assert handle.wait(timeout=30) == "interrupted"
        runs = redis_server.client().hgetall(storm_graphs.key("ask-crash", "runs"))
        assert list(runs.values()) == [b"1"], runs
    finally:
        cluster.stop()


RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def rabbit_queues():
    """Queue names of this test's own on the machine's RabbitMQ, deleted afterwards."""
    import uuid

    import kombu

    suffix = uuid.uuid4().hex[:8]
    names = {"nodes": f"cg-faults-nodes-{suffix}", "scheduler": f"cg-faults-sched-{suffix}"}
    with kombu.Connection(RABBITMQ_URL, connect_timeout=3) as conn:
        conn.ensure_connection(max_retries=1)
    yield names
    with kombu.Connection(RABBITMQ_URL) as conn:
        channel = conn.channel()
        for name in names.values():
            channel.queue_delete(name)


def test_node_task_failing_on_redis_before_its_lease_is_sent_again(redis_server, tmp_path,
                                                                   rabbit_queues):
    cluster = Cluster(tmp_path, redis_server.url, broker_url=RABBITMQ_URL,
                      CELERYGRAPH_NODE_QUEUE=rabbit_queues["nodes"],
                      CELERYGRAPH_SCHEDULER_QUEUE=rabbit_queues["scheduler"])
    try:
        cluster.start("scheduler", app="scheduler", queues=rabbit_queues["scheduler"],
                      pool="threads", concurrency=4)
        handle = cluster.client().submit("tests.dist_graphs:single", {"log": []},
                                         thread_id="blip-before-lease")
        store = RunStore(redis_server.client())

        def sent() -> bool:
            step = getattr(store.run("blip-before-lease", handle.id), "step", None)
            return bool(step) and "sent" in store.step_state("blip-before-lease", handle.id,
                                                             step)[0]

        wait_until(sent, what="the node task to be sent")
        redis_server.kill()  # the store is down when a worker takes the task
        cluster.start("w1", queues=rabbit_queues["nodes"])
        # Celery retries a node task that hits a store error (it used to ack it as failed).
        wait_until(lambda: "Retry in" in cluster.log("w1") or "raised unexpected"
                   in cluster.log("w1"), what="the node task to hit the store outage")
        redis_server.start()
        assert handle.result(timeout=20)["log"] == ["one"]
    finally:
        cluster.stop()


def test_worker_started_while_the_store_is_down_sweeps_once_it_is_back(redis_server, tmp_path,
                                                                       rabbit_queues):
    cluster = Cluster(tmp_path, redis_server.url, broker_url=RABBITMQ_URL,
                      CELERYGRAPH_NODE_QUEUE=rabbit_queues["nodes"],
                      CELERYGRAPH_SCHEDULER_QUEUE=rabbit_queues["scheduler"])
    try:
        redis_server.kill()
        cluster.start("w1", queues=rabbit_queues["nodes"])
        redis_server.start()
        r = redis_server.client()
        # The sweeper says it is alive every 0.5 s; the graphs are published once.
        wait_until(lambda: r.exists("cg:{~sweep.peers}:sweepers") and r.exists("cg:graphs"),
                   timeout=10,
                   what="the worker to sweep and publish its graphs")
    finally:
        cluster.stop()


def test_late_advance_of_an_interrupted_and_resumed_run_changes_nothing(redis_server,
                                                                        tmp_path):
    cluster = Cluster(tmp_path, redis_server.url)
    try:
        cluster.start("w1")
        cluster.start_scheduler()
        client = cluster.client()
        first = client.submit("tests.dist_graphs:approval", {"log": []}, thread_id="late")
        assert first.wait(timeout=30) == "interrupted"
        step = first.info()["step"]
        assert client.resume("late", "yes").result(timeout=30)["log"][-1] == "finish"
        # The advance of the interrupted step again, as the sweeper re-sends it.
        client.app.send_task("celerygraph.advance", args=["late", first.id, step],
                             queue="scheduler")
        time.sleep(2.0)
        kinds = [e.type for e in first.events()]
        assert kinds[-1] == "interrupted", kinds
        assert first.info()["status"] == "interrupted" and first.info()["step"] == step
    finally:
        cluster.stop()


class _Died(BaseException):
    """The scheduler process dies here (raised in-process instead of a SIGKILL)."""


def _scheduler_messages(r: redis.Redis) -> list[tuple[str, list, dict]]:
    """Take every message off the `scheduler` queue: (task name, args, kwargs)."""
    import base64
    import json

    out = []
    while (raw := r.rpop("scheduler")) is not None:
        message = json.loads(raw)
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        out.append((message["headers"]["task"], args, kwargs))
    return out


def test_scheduler_dying_inside_finish_does_not_interleave_runs(redis_server, tmp_path):
    from graphdef.checkpoint.redis import RedisSaver
    from scheduler.celery_app import make_app
    from scheduler.driver import Driver
    from scheduler.resources import Resources

    cluster = Cluster(tmp_path, redis_server.url)
    try:
        cluster.start("w1")
        settings = cluster.settings()
        saver = RedisSaver.from_url(settings.store_url)
        res = Resources(settings, saver, RunStore(saver.client))
        res.load_graphs()
        end_run = res.store.end_run

        def end_then_die(*args: object, **kwargs: object) -> None:
            end_run(*args, **kwargs)  # type: ignore[arg-type]
            raise _Died

        res.store.end_run = end_then_die  # type: ignore[method-assign]
        driver = Driver(res, make_app(settings))
        client = cluster.client()
        first = client.submit("tests.dist_graphs:chain", {"log": [], "sleep": 0.0},
                              thread_id="finish-crash")
        r = redis_server.client()
        # Play the scheduler in this process until it dies inside the run's _finish (right
        # after ending the run), or the run ends.
        deadline = time.monotonic() + 30
        died = False
        while not died and first.status() != "done" and time.monotonic() < deadline:
            for name, args, kwargs in _scheduler_messages(r):
                try:
                    if name == "celerygraph.start_run":
                        driver.start(kwargs["thread_id"], kwargs["run_id"])
                    else:
                        driver.advance(*args)
                except _Died:
                    died = True
            time.sleep(0.02)
        assert died or first.status() == "done"
        # The next run on the thread (a slow one), then the real scheduler and its sweeper.
        second = client.submit("tests.dist_graphs:chain", {"log": [], "sleep": 3.0},
                               thread_id="finish-crash")
        cluster.start_scheduler()
        assert second.result(timeout=60)["log"][-4:] == ["a", "b", "slow", "d"]
        wait_until(lambda: first.status() != "running", timeout=20, what="the first run")
        dispatched = [e.data["tasks"] for e in first.events() if e.type == "dispatched"]
        assert dispatched == [["a", "b"], ["slow"], ["d"]], dispatched
        assert first.status() == "done"
    finally:
        cluster.stop()


def test_a_run_that_ends_after_it_was_cancelled_stays_cancelled(redis_server):
    """An advance that read the run as running just before a cancel must not overwrite the
    cancel with its own `done` (seen as a flaky `celerygraph cancel` test)."""
    store = RunStore(redis_server.client())
    store.create_run(RunRecord("t", "r", graph="g", status=RunStatus.RUNNING), None)
    assert store.claim_thread("t", "r")
    assert store.end_run("t", "r", "cancelled")
    assert not store.end_run("t", "r", "done", output={"log": []})
    assert store.run("t", "r").status == "cancelled"
    assert [kind for _, kind, _ in store.events("t", "r")] == ["cancelled"]
    assert store.active_run("t") is None and ("t", "r") not in store.active_runs()


def test_a_kept_task_already_counted_done_is_not_taken_again(redis_server):
    """A worker that stalled between keeping a task and taking its lease, while the sweeper
    sent the task elsewhere and it finished there, must not run it a second time."""
    store = RunStore(redis_server.client())
    store.open_step("t", "r", "cp", {"task": {"node": "n"}}, {})
    assert store.finish_task("t", "r", "cp", "task", node="n", outcome="finished")
    assert not store.acquire_lease("t", "task", "late", 2.0, unless_done=("r", "cp"),
                                   run_id="r")
    assert store.acquire_lease("t", "other", "late", 2.0, unless_done=("r", "cp"), run_id="r")


def test_a_run_cancelled_while_it_starts_stays_cancelled(redis_server, monkeypatch):
    """The start used to mark the run `running` unconditionally, undoing a cancel that landed
    while it applied the input; the run then went on as if never cancelled."""
    from graphdef.checkpoint.redis import RedisSaver
    from scheduler import registry
    from scheduler.driver import Driver
    from scheduler.resources import Resources
    from scheduler.runs import create_run
    from scheduler.settings import Settings
    from tests import dist_graphs
    from tests.recording_app import RecordingApp

    settings = Settings(broker_url=redis_server.url, store_url=redis_server.url)
    saver = RedisSaver.from_url(redis_server.url)
    res = Resources(settings, saver, RunStore(saver.client), loaded=True)
    registry.register("tests.dist_graphs:chain", dist_graphs.chain)
    run_id = create_run(res.store, graph="tests.dist_graphs:chain", run_input={"log": []},
                        thread_id="t", validate=False)
    resolve = registry.resolve

    def resolve_while_cancelled(ref: str):  # noqa: ANN202 - the cancel lands mid-start
        res.store.end_run("t", run_id, "cancelled")
        return resolve(ref)

    monkeypatch.setattr(registry, "resolve", resolve_while_cancelled)
    app = RecordingApp()
    assert Driver(res, app).start("t", run_id).status == "cancelled"
    assert res.store.run("t", run_id).status == "cancelled"
    assert app.sent == [] and res.store.active_run("t") is None
    assert [kind for _, kind, _ in res.store.events("t", run_id)] == ["cancelled"]


def _paused_run_setup(redis_server, thread_id: str):  # noqa: ANN202
    """A run stored as `Client.submit` stores it (thread claimed, start not yet taken) of a
    graph whose only node interrupts, and the resources a driver of it uses."""
    from graphdef import END, START, StateGraph, interrupt
    from graphdef.checkpoint.redis import RedisSaver
    from scheduler import registry
    from scheduler.resources import Resources
    from scheduler.runs import create_run
    from scheduler.settings import Settings

    builder = StateGraph(dict)
    builder.add_node("ask", lambda state: {"answer": interrupt("approve?")})
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    registry.register("tests.regressions:ask", builder.compile())
    settings = Settings(broker_url=redis_server.url, store_url=redis_server.url)
    saver = RedisSaver.from_url(redis_server.url)
    res = Resources(settings, saver, RunStore(saver.client), loaded=True)
    run_id = uuid.uuid4().hex
    assert res.store.claim_thread(thread_id, run_id)
    create_run(res.store, graph="tests.regressions:ask", run_input={}, thread_id=thread_id,
               run_id=run_id, validate=False)
    return res, run_id


def test_a_start_that_read_the_run_before_it_paused_changes_nothing(redis_server):
    """Found by the fault storm (a resume refused with ThreadBusyError): a scheduler paused
    between reading a queued run and claiming its thread, while another start ran the run to
    its interrupt and freed the thread. Waking, it took the thread again and re-opened the
    paused run. A start now reads the run in the script that claims its thread, so there is
    no earlier read to be stale: a late start finds the run paused and changes nothing, the
    thread stays free for the resume."""
    from scheduler.driver import Driver
    from scheduler.protocol import NODE_TASK, NodeRef, RunNodes
    from tests.recording_app import RecordingApp
    from worker.tasks import run_message

    thread_id = f"stale-start-{uuid.uuid4().hex[:6]}"
    res, run_id = _paused_run_setup(redis_server, thread_id)
    app = RecordingApp()
    assert Driver(res, app).start(thread_id, run_id).status == "running"
    [(name, args)] = app.sent
    assert name == NODE_TASK
    run_message(res, app, RunNodes(*args[:3], (NodeRef(args[3], args[4]),)), run_here=None)
    assert res.store.run(thread_id, run_id).status == "interrupted"
    assert res.store.active_run(thread_id) is None
    head = res.saver.head(thread_id)

    late = RecordingApp()
    assert Driver(res, late).start(thread_id, run_id).status == "interrupted"
    assert late.sent == []
    assert res.store.active_run(thread_id) is None
    assert res.store.run(thread_id, run_id).status == "interrupted"
    assert res.saver.head(thread_id) == head


def test_a_start_whose_lease_lapsed_writes_no_checkpoint(redis_server):
    """A start that stalled past its run lease while another driver took the run over must
    not write: its checkpoint writes are fenced by the lease it held."""
    from scheduler.driver import Driver, Stopped
    from scheduler.leases import run_lease
    from tests.recording_app import RecordingApp

    thread_id = f"lapsed-{uuid.uuid4().hex[:6]}"
    res, run_id = _paused_run_setup(redis_server, thread_id)
    key = res.store.key(thread_id, "lease", run_lease(run_id))
    assert res.store.acquire_lease(thread_id, run_lease(run_id), "the-new-holder", 5.0,
                                   run_id=run_id)
    stalled = RecordingApp()
    outcome = Driver(res, stalled, lease=(key, "the-stalled-one")).start(thread_id, run_id)
    assert outcome.status == Stopped.STALE
    assert stalled.sent == [] and res.saver.head(thread_id) is None
    assert res.store.run(thread_id, run_id).status == "queued"
    holder = RecordingApp()
    assert Driver(res, holder, lease=(key, "the-new-holder")).start(
        thread_id, run_id).status == "running"
    assert len(holder.sent) == 1


def test_a_start_taken_over_before_it_marked_the_run_leaves_the_thread_held(redis_server):
    """Found by the fault storm (a run lost, `running` on a step whose task had finished,
    its thread free): a start stalled between its first checkpoint and marking the run
    running while another start carried the run on and dispatched its first step. Waking,
    the stalled one found the run moved on and freed the thread, which the run still held
    (a thread is held by run id); the run's advance then found it without its thread and
    stopped. A refused start now leaves the thread as it is: a cancel frees it itself."""
    from scheduler.driver import Driver
    from tests.recording_app import RecordingApp

    thread_id = f"taken-over-{uuid.uuid4().hex[:6]}"
    res, run_id = _paused_run_setup(redis_server, thread_id)
    mark_running = res.store.mark_running
    other = RecordingApp()

    def another_start_first(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        res.store.mark_running = mark_running
        assert Driver(res, other).start(thread_id, run_id).status == "running"
        return mark_running(*args, **kwargs)

    res.store.mark_running = another_start_first
    stalled = RecordingApp()
    assert Driver(res, stalled).start(thread_id, run_id).status == "running"
    assert stalled.sent == [] and len(other.sent) == 1
    assert res.store.active_run(thread_id) == run_id
