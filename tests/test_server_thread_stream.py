"""The thread stream (`GET /threads/{thread_id}/stream`, the SDK's
`client.threads.join_stream`) of `celerygraph serve`, driven by the real `langgraph-sdk`
client on real workers: a listener joined live sees every later run of the thread and its
state edits, in the reference server's shapes; `Last-Event-ID` resumes it; modes narrow it;
deleting the thread ends it; refusals are 4xx naming what is wrong."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from scheduler.server.sse import id_order
from tests.server import API_KEYS, server_fixtures

CHAIN = "tests.dist_graphs:chain"
FAILING = "tests.dist_graphs:failing"

cluster, url, client = server_fixtures("thread-stream-w1")

Event = tuple[str, Any, str | None]


class Listener:
    """A `join_stream` consumed on a thread of its own until `enough(events)` holds."""

    def __init__(self, stream: Any, enough: Callable[[list[Event]], bool]) -> None:
        self.events: list[Event] = []
        self._stream = stream
        self._enough = enough
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for part in self._stream:
            self.events.append((part.event, part.data, part.id))
            if self._enough(self.events):
                return

    def finish(self) -> list[Event]:
        """The events, once the listener stopped; the timeout only bounds a broken run."""
        self._thread.join(180)
        assert not self._thread.is_alive(), f"listener still waiting, got {self.events}"
        return self.events


def run_done(run_id: str) -> tuple[str, Any]:
    return "metadata", {"status": "run_done", "run_id": run_id}


def done_count(n: int) -> Callable[[list[Event]], bool]:
    return lambda events: sum(1 for e in events if isinstance(e[1], dict)
                              and e[1].get("status") == "run_done") >= n


def eventually(check: Callable[[], Any], act: Callable[[], Any]) -> None:
    """`act()` until `check()` holds; the deadline only bounds a broken run."""
    deadline = time.monotonic() + 180
    while not check():
        assert time.monotonic() < deadline, "condition never held"
        act()
        time.sleep(0.1)


def run_events(client: Any, thread_id: str, run_id: str) -> list[tuple[str, Any]]:
    """The run's chunk events as its own stream replays them (no `metadata`)."""
    return [(p.event, p.data) for p in client.runs.join_stream(thread_id, run_id,
                                                               last_event_id="-1")
            if p.event != "metadata"]


def without_ids(events: list[Event]) -> list[tuple[str, Any]]:
    return [(name, data) for name, data, _ in events]


def test_a_live_listener_sees_later_runs_and_state_edits_as_the_reference(client):
    thread_id = client.threads.create()["thread_id"]
    before = client.runs.create(thread_id, CHAIN, input={"log": []})
    client.runs.join(thread_id, before["run_id"])

    listener = Listener(client.threads.join_stream(
        thread_id, stream_mode=["run_modes", "state_update"]), done_count(2))
    # The listener has joined once it sees a state edit made after it connected.
    eventually(lambda: any(e[0] == "state_update" for e in listener.events),
               lambda: client.threads.update_state(thread_id, {"log": ["edit"]}))

    first = client.runs.create(thread_id, CHAIN, input={"log": []},
                               stream_mode=["updates", "values"])
    second = client.runs.create(thread_id, FAILING, input={"log": []})
    client.runs.join(thread_id, first["run_id"])
    client.runs.join(thread_id, second["run_id"])
    events = listener.finish()

    edits = [e for e in events if e[0] == "state_update"]
    assert events[:len(edits)] == edits  # every edit came before the runs
    assert all(data["thread_id"] == thread_id and data["state"]["values"]["log"][-1] == "edit"
               and data["state"]["checkpoint"]["thread_id"] == thread_id
               for _, data, _ in edits)
    assert before["run_id"] not in str(events)  # it ended before the listener joined

    runs = without_ids(events[len(edits):])
    error = runs[-2]
    assert error[0] == "error" and error[1]["error"] == "ValueError"
    assert runs == [
        ("metadata", {"run_id": first["run_id"], "attempt": 1}),
        *run_events(client, thread_id, first["run_id"]),
        run_done(first["run_id"]),
        ("metadata", {"run_id": second["run_id"], "attempt": 1}),
        *run_events(client, thread_id, second["run_id"]),
        run_done(second["run_id"]),
    ]
    assert {name for name, _ in run_events(client, thread_id, first["run_id"])} == {
        "updates", "values"}
    # Ids: every event its own, in order across the streams (as the reference's).
    ids = [i for _, _, i in events]
    assert all(ids) and ids == sorted(ids, key=id_order) and len(ids) == len(set(ids))


def test_last_event_id_resumes_after_a_runs_start_and_its_error(client):
    """The reference gives a run's start `metadata` and a failed run's `error` ids of their
    own: a reconnect after either goes on right after it, without it again."""
    thread_id = client.threads.create()["thread_id"]
    run_ids = []
    for graph in (CHAIN, FAILING, CHAIN):
        run = client.runs.create(thread_id, graph, input={"log": []})
        client.runs.join(thread_id, run["run_id"])
        run_ids.append(run["run_id"])
    whole = Listener(client.threads.join_stream(thread_id, last_event_id="-1"),
                     done_count(3)).finish()
    ids = [i for _, _, i in whole]
    assert all(ids) and ids == sorted(ids, key=id_order) and len(ids) == len(set(ids))
    starts = [n for n, (name, data, _) in enumerate(whole)
              if name == "metadata" and "attempt" in data]
    [error] = [n for n, (name, _, _) in enumerate(whole) if name == "error"]
    assert len(starts) == 3 and whole[error + 1][:2] == run_done(run_ids[1])
    for at in (*starts, error):
        left = sum(1 for e in whole[at + 1:] if e[1] in [run_done(r)[1] for r in run_ids])
        rest = Listener(client.threads.join_stream(thread_id, last_event_id=whole[at][2]),
                        done_count(left)).finish()
        assert rest == whole[at + 1:], whole[at]

    # Under `lifecycle` alone there is no `error`: the failed run's `run_done` has the id
    # its end entry gave the `error` above, and a reconnect after it goes on after it.
    lifecycle = Listener(client.threads.join_stream(thread_id, stream_mode="lifecycle",
                                                    last_event_id="-1"),
                         done_count(3)).finish()
    assert [e for e in whole if e[0] == "metadata" and "attempt" in e[1]] == [
        e for e in lifecycle if "attempt" in e[1]]
    assert (*run_done(run_ids[1]), whole[error][2]) in lifecycle
    rest = Listener(client.threads.join_stream(thread_id, stream_mode="lifecycle",
                                               last_event_id=whole[error][2]),
                    done_count(1)).finish()
    assert rest == lifecycle[-2:]


def test_last_event_id_resumes_and_modes_narrow(client):
    thread_id = client.threads.create()["thread_id"]
    run_ids = []
    for _ in range(2):
        run = client.runs.create(thread_id, CHAIN, input={"log": []})
        client.runs.join(thread_id, run["run_id"])
        run_ids.append(run["run_id"])

    lifecycle = Listener(client.threads.join_stream(thread_id, stream_mode="lifecycle",
                                                    last_event_id="-1"), done_count(2))
    events = lifecycle.finish()
    assert without_ids(events) == [
        ("metadata", {"run_id": run_ids[0], "attempt": 1}), run_done(run_ids[0]),
        ("metadata", {"run_id": run_ids[1], "attempt": 1}), run_done(run_ids[1])]

    # From the first run's end on: the second run whole, nothing of the first.
    resumed = Listener(client.threads.join_stream(thread_id, last_event_id=events[1][2]),
                       done_count(1))
    assert without_ids(resumed.finish()) == [
        ("metadata", {"run_id": run_ids[1], "attempt": 1}),
        *run_events(client, thread_id, run_ids[1]), run_done(run_ids[1])]

    # From inside the second run: the rest of it, no start again.
    whole = Listener(client.threads.join_stream(thread_id, last_event_id="-1"),
                     done_count(2)).finish()
    middle = without_ids(whole).index(("metadata", {"run_id": run_ids[1], "attempt": 1})) + 2
    assert whole[middle][0] == "values" and whole[middle][2]
    rest = Listener(client.threads.join_stream(thread_id, last_event_id=whole[middle][2]),
                    done_count(1)).finish()
    assert rest == whole[middle + 1:]

    # `stream_modes` (the reference's parameter) wins over the SDK's `stream_mode`.
    only_edits = Listener(client.threads.join_stream(
        thread_id, last_event_id="-1", params={"stream_modes": "state_update"}),
        lambda events: bool(events))
    client.threads.update_state(thread_id, {"log": ["edit"]})
    assert [e[0] for e in only_edits.finish()] == ["state_update"]


def test_a_run_whose_stream_expired_is_left_out(client, cluster, redis_server):
    thread_id = client.threads.create()["thread_id"]
    old = client.runs.create(thread_id, CHAIN, input={"log": []})
    client.runs.join(thread_id, old["run_id"])
    redis_server.client().delete(cluster.client().store.key(thread_id, "chunks",
                                                            old["run_id"]))
    listener = Listener(client.threads.join_stream(
        thread_id, stream_mode=["run_modes", "state_update"], last_event_id="-1"),
        done_count(1))
    eventually(lambda: any(e[0] == "state_update" for e in listener.events),
               lambda: client.threads.update_state(thread_id, {"log": ["edit"]}))
    new = client.runs.create(thread_id, CHAIN, input={"log": []})
    events = listener.finish()
    assert old["run_id"] not in str(events)
    assert without_ids(events)[-1] == run_done(new["run_id"])


def test_deleting_the_thread_ends_its_stream(client):
    thread_id = client.threads.create()["thread_id"]
    client.runs.wait(thread_id, CHAIN, input={"log": []})
    events: list[Event] = []
    joined = threading.Event()

    def listen() -> None:
        for part in client.threads.join_stream(thread_id, stream_mode="lifecycle",
                                               last_event_id="-1"):
            events.append((part.event, part.data, part.id))
            joined.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert joined.wait(180)
    client.threads.delete(thread_id)
    listener.join(180)
    assert not listener.is_alive()
    assert [e[1].get("status") for e in events] == [None, "run_done"]


@pytest.mark.parametrize(("query", "headers", "status", "named"), [
    ({"stream_mode": "events"}, {}, 422, "events"),
    ({"stream_modes": "run_modes,values"}, {}, 422, "values"),
    ({"stream_mode": "run_modes", "resumable": "true"}, {}, 422, "resumable"),
    ({}, {"Last-Event-ID": "not-an-id"}, 422, "not-an-id"),
])
def test_refusals_name_what_is_wrong(client, url, query, headers, status, named):
    thread_id = client.threads.create()["thread_id"]
    answer = httpx.get(f"{url}/threads/{thread_id}/stream", params=query,
                       headers={"x-api-key": API_KEYS[0], **headers})
    assert answer.status_code == status and named in answer.json()["detail"]


def test_unknown_threads(url):
    unknown = httpx.get(f"{url}/threads/{uuid.uuid4()}/stream",
                        headers={"x-api-key": API_KEYS[0]})
    assert unknown.status_code == 404
    malformed = httpx.get(f"{url}/threads/nope/stream", headers={"x-api-key": API_KEYS[0]})
    assert malformed.status_code == 422
