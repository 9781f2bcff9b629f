"""CELERYGRAPH_TASK_EVENTS: Celery's task events (a Flower row per node run) on by default,
off for a deployment without Flower, on real workers; a value that is neither 1 nor 0 is
refused rather than read as one of them."""

from __future__ import annotations

import threading
import time

import pytest

from scheduler.settings import Settings
from tests.cluster import Cluster


def task_event_channels(redis_server, tmp_path, **env: str) -> set[str]:
    """The pub/sub channels task events went out on while a chain of 8 ran in place."""
    cluster = Cluster(tmp_path, redis_server.url, **env)
    seen: set[str] = set()
    pubsub = redis_server.client().pubsub()
    pubsub.psubscribe("*")
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.1)
            if message and message["type"] == "pmessage":
                seen.add(message["channel"].decode())

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        cluster.start("worker1", concurrency=2)
        cluster.start_scheduler()
        handle = cluster.client().submit("tests.dist_graphs:straight", {"log": []},
                                         thread_id=f"events-{env}")
        assert handle.wait(timeout=60) == "done"
        time.sleep(0.5)  # events are sent as the rows close, just before the run ends
    finally:
        stop.set()
        listener.join()
        pubsub.close()
        cluster.stop()
    return {c for c in seen if ".task" in c or "task." in c}


def test_task_events_go_out_by_default(redis_server, tmp_path):
    assert task_event_channels(redis_server, tmp_path)


def test_task_events_off_sends_none(redis_server, tmp_path):
    assert task_event_channels(redis_server, tmp_path, CELERYGRAPH_TASK_EVENTS="0") == set()


@pytest.mark.parametrize("value", ["yes", "false", "2"])
def test_a_task_events_value_other_than_1_or_0_is_refused(value):
    with pytest.raises(ValueError, match="CELERYGRAPH_TASK_EVENTS"):
        Settings.from_env({"CELERYGRAPH_TASK_EVENTS": value})


def test_row_events_go_out_in_order_with_the_time_they_happened(redis_server):
    """A node's row events are published by a thread of the process (`RowEvents`), off the
    node's path: in the order sent, each stamped when it was sent, all out after `flush`,
    those sent together in one message of Celery's multi-event form."""
    import base64
    import json

    from scheduler.settings import Settings as Configured
    from worker.celery_app import create_app
    from worker.rows import RowEvents

    app = create_app(Configured.from_env({"CELERYGRAPH_BROKER_URL": redis_server.url}))
    pubsub = redis_server.client().pubsub()
    pubsub.psubscribe("*task.*")
    pubsub.get_message(timeout=1)  # the subscription's confirmation
    sender = RowEvents(app, "w@test")
    stamps = [time.time() - 100 + i for i in range(20)]
    for i, stamp in enumerate(stamps):
        sender.send("task-started", f"row-{i}", stamp, {})
    assert sender.flush(timeout=10)
    got = []
    while (message := pubsub.get_message(timeout=1)) is not None:
        if message["type"] == "pmessage":
            envelope = json.loads(message["data"])
            body = envelope["body"]
            if envelope["properties"].get("body_encoding") == "base64":
                body = base64.b64decode(body)
            events = json.loads(body)
            got.append(events if isinstance(events, list) else [events])
    pubsub.close()
    assert [(e["uuid"], e["timestamp"], e["hostname"]) for batch in got for e in batch] == [
        (f"row-{i}", stamp, "w@test") for i, stamp in enumerate(stamps)]
    # Sent back to back, they went out together: fewer messages than events.
    assert len(got) < len(stamps)
