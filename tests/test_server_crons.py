"""Crons and webhooks of `celerygraph serve`, driven by the real `langgraph-sdk` client
against real workers, a scheduler, two `celery beat` replicas (RedBeat, schedule in Redis),
the server process, a Redis of their own and a real HTTP receiver for webhooks."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from scheduler.cron_fire import fire
from scheduler.protocol import CRON_TASK
from scheduler.server.backend import Backend, assistant_id
from scheduler.server.config import ServerSettings
from tests.server import eventually, server_fixtures
from tests.webhook_receiver import Receiver

APPROVAL = "tests.dist_graphs:approval"
CHAIN = "tests.dist_graphs:chain"
FAILING = "tests.dist_graphs:failing"


cluster, url, client = server_fixtures("cron-w1")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver(failures=2)
    yield running
    running.close()


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
        client.crons.create(CHAIN, schedule="0 * * * *", timezone="Mars/Olympus_Mons")
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


def _next_wall_clock(hour: int, minute: int, zone: ZoneInfo, now: datetime) -> datetime:
    """The next `hour:minute` on `zone`'s clock after `now`, in UTC (worked out here
    without `scheduler.beat`)."""
    local = now.astimezone(zone)
    at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at <= local:
        at += timedelta(days=1)  # the same wall-clock time, that day's offset
    return at.astimezone(UTC)


def test_a_cron_with_a_timezone_ticks_on_that_zones_clock(cluster, client, redis_server):
    new_york = ZoneInfo("America/New_York")
    before = datetime.now(UTC)
    cron = client.crons.create(CHAIN, schedule="0 9 * * *", timezone="America/New_York",
                               input={"log": []})
    after = datetime.now(UTC)
    assert cron["timezone"] == "America/New_York"
    assert datetime.fromisoformat(cron["next_run_date"]) in {
        _next_wall_clock(9, 0, new_york, before), _next_wall_clock(9, 0, new_york, after)}
    # Its beat entry (UTC) fires on the schedule's minutes every hour: whole-hour offsets.
    definition = orjson.loads(redis_server.client().hget(
        f"cg:beat:cron:{cron['cron_id']}", "definition"))
    assert (definition["schedule"]["minute"], definition["schedule"]["hour"]) == ("0", "*")

    kolkata = ZoneInfo("Asia/Kolkata")
    updated = client.crons.update(cron["cron_id"], timezone="Asia/Kolkata",
                                  schedule="30 9 * * *")
    tick = datetime.fromisoformat(updated["next_run_date"])
    assert tick.astimezone(kolkata).strftime("%H:%M") == "09:30"
    assert tick == _next_wall_clock(9, 30, kolkata, tick - timedelta(days=1))
    definition = orjson.loads(redis_server.client().hget(
        f"cg:beat:cron:{cron['cron_id']}", "definition"))
    assert definition["schedule"]["minute"] == "*"  # +05:30: every minute may be a tick
    assert client.crons.search(select=["cron_id", "timezone"], limit=100).count(
        {"cron_id": cron["cron_id"], "timezone": "Asia/Kolkata"}) == 1
    client.crons.delete(cron["cron_id"])

    # Fired at given instants (as beat's task fires it): a run for each tick on the zone's
    # clock, once, none for a tick before the cron was made.
    thread_id = client.threads.create()["thread_id"]
    cron = client.crons.create_for_thread(thread_id, CHAIN, schedule="30 9 * * *",
                                          timezone="Asia/Kolkata", input={"log": []})
    tick = datetime.fromisoformat(cron["next_run_date"])
    backend = Backend.connect(cluster.settings(), ServerSettings())
    assert fire(backend, cron["cron_id"], datetime.now(UTC)) is None
    first = fire(backend, cron["cron_id"], tick + timedelta(seconds=20))
    assert first is not None
    assert fire(backend, cron["cron_id"], tick + timedelta(seconds=40)) is None
    assert fire(backend, cron["cron_id"], tick + timedelta(hours=3)) is None  # no new tick
    second = fire(backend, cron["cron_id"], tick + timedelta(days=1, seconds=5))
    assert second is not None
    assert [r["run_id"] for r in client.runs.list(thread_id)] == [second, first]
    for run_id in (first, second):
        client.runs.join(thread_id, run_id)
    client.crons.delete(cron["cron_id"])
    with pytest.raises(UnprocessableEntityError, match="timezone"):
        client.crons.create(CHAIN, schedule="0 9 * * *", timezone="Nowhere/Else")


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
    # A zone whose offset is not whole hours: its beat entry fires every minute.
    zoned_thread = client.threads.create()["thread_id"]
    zoned = client.crons.create_for_thread(zoned_thread, CHAIN, schedule="* * * * *",
                                           timezone="Asia/Kolkata", input={"log": []})

    def thread_runs() -> list[dict[str, Any]]:
        return client.runs.list(thread_id, limit=100)

    eventually(lambda: len(thread_runs()) >= 1)
    cluster.kill("beat-a")
    cluster.kill("beat-b")
    cluster.start_beat("beat-c")
    eventually(lambda: len(thread_runs()) >= 2)
    client.crons.delete(on_thread["cron_id"])
    client.crons.delete(stateless["cron_id"])
    client.crons.delete(zoned["cron_id"])
    cluster.kill("beat-c")
    zoned_minutes = [_minute(r["created_at"])
                     for r in client.runs.list(zoned_thread, limit=100)]
    assert zoned_minutes and Counter(zoned_minutes).most_common(1)[0][1] == 1, zoned_minutes

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
                                if a["body"]["metadata"].get("by") == "stateless"] or None)
    stateless_minutes = [_minute(h["created_at"]) for h in hooks]
    assert Counter(stateless_minutes).most_common(1)[0][1] == 1, stateless_minutes
    assert len({h["thread_id"] for h in hooks}) == len(hooks)
    assert all(h["status"] == "success" for h in hooks)
