"""Crons and webhooks of `celerygraph serve`, driven by the real `langgraph-sdk` client
against real workers, a scheduler, two `celery beat` replicas (RedBeat, schedule in Redis),
the server process, a Redis of their own and a real HTTP receiver for webhooks."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from scheduler.protocol import CRON_TASK
from scheduler.server.backend import assistant_id
from tests.cluster import Cluster
from tests.server import API_KEYS, start_server
from tests.webhook_receiver import Receiver

APPROVAL = "tests.dist_graphs:approval"
CHAIN = "tests.dist_graphs:chain"
FAILING = "tests.dist_graphs:failing"


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url)
    try:
        running.start("cron-w1", concurrency=2)
        running.start_scheduler()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def url(cluster: Cluster) -> str:
    return start_server(cluster)


@pytest.fixture
def client(url: str) -> Any:
    return get_sync_client(url=url, api_key=API_KEYS[0])


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver(failures=2)
    yield running
    running.close()


def eventually(check: Callable[[], Any], timeout: float = 180.0) -> Any:
    """`check()` once truthy; the timeout only bounds a broken run, nothing is timed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition never held")


# ---- webhooks -------------------------------------------------------------------------------

def test_webhook_is_retried_until_taken_and_delivered_once(client, receiver):
    thread_id = client.threads.create()["thread_id"]
    out = client.runs.wait(thread_id, CHAIN, input={"log": []}, webhook=receiver.url)
    run = client.runs.list(thread_id)[0]
    delivered = eventually(lambda: receiver.for_run(run["run_id"]))
    body = delivered[0]["body"]
    assert body["status"] == "success" and body["thread_id"] == thread_id
    assert body["assistant_id"] == assistant_id(CHAIN)
    assert body["values"] == out
    assert body["run_started_at"] and body["run_ended_at"] and body["webhook_sent_at"]
    assert "error" not in body
    assert delivered[0]["key"] == run["run_id"]
    assert receiver.attempts[run["run_id"]] == 3  # two refused, then taken
    assert run["kwargs"]["webhook"] == receiver.url
    # A further poll of the finished run delivers nothing more.
    client.runs.join(thread_id, run["run_id"])
    assert len(receiver.for_run(run["run_id"])) == 1


def test_webhook_on_interrupt_and_on_error(client, receiver):
    thread_id = client.threads.create()["thread_id"]
    paused = client.runs.create(thread_id, APPROVAL, input={"log": []}, webhook=receiver.url)
    body = eventually(lambda: receiver.for_run(paused["run_id"]))[0]["body"]
    # Paused at its interrupt: the webhook reports the run as `GET` on it does.
    assert body["status"] == client.runs.get(thread_id, paused["run_id"])["status"]
    assert client.threads.get(thread_id)["status"] == "interrupted"
    failing = client.runs.create(None, FAILING, input={"log": []}, webhook=receiver.url)
    body = eventually(lambda: receiver.for_run(failing["run_id"]))[0]["body"]
    assert body["status"] == "error" and body["error"]


@pytest.mark.parametrize("hook", ["/relative/path", "ftp://example.com/x", "http://"])
def test_bad_webhook_is_refused_and_stores_nothing(client, hook):
    thread_id = client.threads.create()["thread_id"]
    with pytest.raises(UnprocessableEntityError, match="webhook"):
        client.runs.create(thread_id, CHAIN, input={"log": []}, webhook=hook)
    assert client.runs.list(thread_id) == []


# ---- crons: the API ------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", ["not a cron", "61 * * * *", "* * * *", "* * * * * *"])
def test_bad_schedule_is_refused_and_stores_nothing(client, schedule):
    before = client.crons.count()
    with pytest.raises(UnprocessableEntityError, match="schedule"):
        client.crons.create(CHAIN, schedule=schedule, input={"log": []})
    assert client.crons.count() == before


def test_cron_refusals_store_nothing(client):
    before = client.crons.count()
    with pytest.raises(NotFoundError):
        client.crons.create_for_thread(str(uuid.uuid4()), CHAIN, schedule="0 * * * *")
    with pytest.raises(NotFoundError):
        client.crons.create(str(uuid.uuid4()), schedule="0 * * * *")
    with pytest.raises(UnprocessableEntityError, match="timezone"):
        client.crons.create(CHAIN, schedule="0 * * * *", timezone="Europe/Paris")
    with pytest.raises(UnprocessableEntityError, match="webhook"):
        client.crons.create(CHAIN, schedule="0 * * * *", webhook="/relative")
    with pytest.raises(UnprocessableEntityError, match="feedback_keys|Unknown field"):
        client.http.post("/runs/crons", json={"assistant_id": CHAIN, "schedule": "0 * * * *",
                                              "feedback_keys": ["x"]})
    assert client.crons.count() == before


def test_cron_create_search_update_delete(client):
    thread_id = client.threads.create()["thread_id"]
    cron = client.crons.create_for_thread(thread_id, CHAIN, schedule="0 9 * * 1",
                                          input={"log": []}, metadata={"team": "a"})
    assert cron["thread_id"] == thread_id and cron["schedule"] == "0 9 * * 1"
    assert cron["assistant_id"] == assistant_id(CHAIN) and cron["enabled"] is True
    assert cron["payload"]["input"] == {"log": []} and cron["metadata"] == {"team": "a"}
    assert datetime.fromisoformat(cron["next_run_date"]).weekday() == 0
    stateless = client.crons.create(CHAIN, schedule="30 * * * *", on_run_completed="keep")
    assert stateless["thread_id"] is None and stateless["on_run_completed"] == "keep"

    found = client.crons.search(thread_id=thread_id)
    assert [c["cron_id"] for c in found] == [cron["cron_id"]]
    assert client.crons.count(thread_id=thread_id) == 1
    assert {c["cron_id"] for c in client.crons.search(assistant_id=CHAIN, limit=100)} >= {
        cron["cron_id"], stateless["cron_id"]}
    assert [c["cron_id"] for c in client.crons.search(metadata={"team": "a"})] == [
        cron["cron_id"]]
    # `select` keeps the named fields (the reference's list; the SDK's `now` is not one).
    assert client.crons.search(thread_id=thread_id, select=["cron_id", "schedule"]) == [
        {"cron_id": cron["cron_id"], "schedule": "0 9 * * 1"}]
    for bad in (["now"], ["cron_id", "nope"]):
        with pytest.raises(UnprocessableEntityError, match="select"):
            client.crons.search(thread_id=thread_id, select=bad)
    with pytest.raises(UnprocessableEntityError, match="select"):
        client.http.post("/runs/crons/count", json={"select": ["cron_id"]})

    updated = client.crons.update(cron["cron_id"], schedule="15 10 * * *", enabled=False)
    assert updated["schedule"] == "15 10 * * *" and updated["enabled"] is False
    assert client.crons.search(thread_id=thread_id, enabled=False)[0]["cron_id"] == cron[
        "cron_id"]
    with pytest.raises(UnprocessableEntityError, match="schedule"):
        client.crons.update(cron["cron_id"], schedule="bad")
    assert client.crons.search(thread_id=thread_id)[0]["schedule"] == "15 10 * * *"

    client.crons.delete(cron["cron_id"])
    client.crons.delete(stateless["cron_id"])
    assert client.crons.search(thread_id=thread_id) == []
    with pytest.raises(NotFoundError):
        client.crons.delete(cron["cron_id"])


def test_deleting_a_thread_deletes_its_crons(cluster, client, redis_server):
    thread_id = client.threads.create()["thread_id"]
    cron = client.crons.create_for_thread(thread_id, CHAIN, schedule="0 0 * * *")
    entry = f"cg:beat:cron:{cron['cron_id']}"
    assert redis_server.client().exists(entry)
    client.threads.delete(thread_id)
    assert client.crons.search(thread_id=thread_id) == []
    with pytest.raises(NotFoundError):
        client.crons.delete(cron["cron_id"])
    # Its next tick removes the record and beat's entry, and starts nothing.
    cluster.client().app.send_task(CRON_TASK, args=[cron["cron_id"]], queue="scheduler")
    eventually(lambda: not redis_server.client().exists(entry))
    assert not redis_server.client().exists(f"cg:api:cron:{cron['cron_id']}")
    assert cluster.client().store.runs_of(thread_id) == []


# ---- crons: fired by beat ------------------------------------------------------------------

def test_a_tick_delivered_twice_starts_one_run(cluster, client):
    """A beat message for a tick that already fired (a beat replaced between sending and
    recording it) starts nothing: the scheduler claims each tick once."""
    thread_id = client.threads.create()["thread_id"]
    cron = client.crons.create_for_thread(thread_id, CHAIN, schedule="0 0 * * *",
                                          input={"log": []})
    producer = cluster.client().app
    for _ in range(2):
        producer.send_task(CRON_TASK, args=[cron["cron_id"]], queue="scheduler")
    eventually(lambda: any(cron["cron_id"] in line and "already fired" in line
                           for line in cluster.log("scheduler").splitlines()))
    client.crons.delete(cron["cron_id"])
    [run] = client.runs.list(thread_id)
    assert client.runs.join(thread_id, run["run_id"]) == {"log": ["a", "b", "slow", "d"]}


def _minute(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%dT%H:%M")


def _consecutive(minutes: list[str]) -> bool:
    stamps = sorted(datetime.fromisoformat(m).timestamp() for m in minutes)
    return all(b - a == 60 for a, b in zip(stamps, stamps[1:], strict=False))


def test_crons_fire_once_per_tick_with_two_beats_and_survive_a_restart(cluster, client,
                                                                        receiver):
    """Two beat replicas run; each tick starts one run per cron. Then both beats are
    SIGKILLed and a new one started: the schedule, kept in Redis, goes on."""
    cluster.start_beat("beat-a")
    cluster.start_beat("beat-b")
    thread_id = client.threads.create()["thread_id"]
    on_thread = client.crons.create_for_thread(thread_id, CHAIN, schedule="* * * * *",
                                               input={"log": []}, metadata={"by": "cron"})
    stateless = client.crons.create(CHAIN, schedule="* * * * *", input={"log": []},
                                    webhook=receiver.url, metadata={"by": "stateless"})

    def thread_runs() -> list[dict[str, Any]]:
        return client.runs.list(thread_id, limit=100)

    eventually(lambda: len(thread_runs()) >= 1)
    cluster.kill("beat-a")
    cluster.kill("beat-b")
    cluster.start_beat("beat-c")
    eventually(lambda: len(thread_runs()) >= 2)
    client.crons.delete(on_thread["cron_id"])
    client.crons.delete(stateless["cron_id"])
    cluster.kill("beat-c")

    found = thread_runs()
    for run in found:
        client.runs.join(thread_id, run["run_id"])
    minutes = [_minute(r["created_at"]) for r in found]
    assert Counter(minutes).most_common(1)[0][1] == 1, minutes  # never twice in a tick
    assert _consecutive(minutes), minutes  # no tick lost across the restart
    for run in found:
        assert run["assistant_id"] == assistant_id(CHAIN)
        assert run["metadata"] == {"created_by": "system", "graph_id": CHAIN,
                                   "assistant_id": assistant_id(CHAIN), "by": "cron"}
        assert run["kwargs"]["input"] == {"log": []}
    assert client.runs.get(thread_id, found[0]["run_id"])["status"] == "success"
    # Each fired run added to the thread's state, as a run posted to the thread would.
    assert client.threads.get_state(thread_id)["values"] == {
        "log": ["a", "b", "slow", "d"] * len(found)}

    # The stateless cron's runs, each on a thread of its own, reported by their webhooks.
    hooks = eventually(lambda: [a["body"] for a in list(receiver.accepted)
                                if a["body"]["metadata"] == {"by": "stateless"}] or None)
    stateless_minutes = [_minute(h["created_at"]) for h in hooks]
    assert Counter(stateless_minutes).most_common(1)[0][1] == 1, stateless_minutes
    assert len({h["thread_id"] for h in hooks}) == len(hooks)
    assert all(h["status"] == "success" for h in hooks)
