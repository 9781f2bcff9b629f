"""A run's events stream (`RunStore.events`): a step's events share one entry (one `XADD`),
and read back one by one with ids to read on from, as if each had an entry of its own."""

from __future__ import annotations

from scheduler.records import RunRecord, RunStatus
from scheduler.store import RunStore

THREAD, RUN = "events", "r1"


def test_a_steps_events_read_back_one_by_one_and_reading_on_from_any_skips_those_before(
        redis_server):
    client = redis_server.client()
    for key in client.scan_iter(match="cg:{events}*"):
        client.delete(key)
    store = RunStore(client)
    store.create_run(RunRecord(THREAD, RUN, "g", RunStatus.RUNNING), None)
    store.add_event(THREAD, RUN, "started", step=0)
    store.open_step(THREAD, RUN, "c1", {"t": {"node": "a", "queue": "q"}}, {},
                    events=[("task_finished", {"task_id": "t0"}), ("step", {"step": 1}),
                            ("dispatched", {"step": 1, "tasks": ["a"]})])
    store.add_event(THREAD, RUN, "done", step=1)

    events = list(store.events(THREAD, RUN))
    assert [(kind, data) for _, kind, data in events] == [
        ("started", {"step": 0}), ("task_finished", {"task_id": "t0"}), ("step", {"step": 1}),
        ("dispatched", {"step": 1, "tasks": ["a"]}), ("done", {"step": 1})]
    ids = [event_id for event_id, _, _ in events]
    step_entry = ids[1].removesuffix("/0")
    assert ids[1:4] == [f"{step_entry}/0", f"{step_entry}/1", f"{step_entry}/2"]
    assert "/" not in ids[0] + ids[4]  # a lone event's id is its entry's
    assert client.xlen(store.key(THREAD, "events", RUN)) == 3  # the step's three in one entry
    for i, event_id in enumerate(ids):
        assert list(store.events(THREAD, RUN, after=event_id)) == events[i + 1:]
