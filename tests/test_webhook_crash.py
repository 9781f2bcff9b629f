"""A webhook whose sender (the scheduler) is SIGKILLed mid-POST is delivered again by the
scheduler that replaces it, with the same idempotency key, and then never again: at least
once, never lost. Real workers, schedulers, server, Redis and HTTP receiver; the broker's
visibility timeout is short so the dead scheduler's message comes back within seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from langgraph_sdk import get_sync_client

from tests.cluster import Cluster
from tests.server import API_KEYS, start_server
from tests.webhook_receiver import Receiver

CHAIN = "tests.dist_graphs:chain"


def eventually(check: Callable[[], Any], timeout: float = 240.0) -> Any:
    """`check()` once truthy; the timeout only bounds a broken run, nothing is timed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition never held")


def test_webhook_survives_its_sender_dying_mid_post(redis_server, tmp_path):
    receiver = Receiver(failures=0, hold_first=True)
    cluster = Cluster(tmp_path, redis_server.url, CELERYGRAPH_VISIBILITY_TIMEOUT="5")
    try:
        cluster.start("hook-w1")
        cluster.start_scheduler("scheduler1")
        client = get_sync_client(url=start_server(cluster), api_key=API_KEYS[0])
        thread_id = client.threads.create()["thread_id"]
        client.runs.wait(thread_id, CHAIN, input={"log": []}, webhook=receiver.url)
        run_id = client.runs.list(thread_id)[0]["run_id"]
        assert receiver.holding.wait(timeout=120)
        cluster.kill("scheduler1")  # SIGKILL while its POST is in the receiver
        receiver.release.set()  # the receiver takes it; nobody records that it did
        cluster.start_scheduler("scheduler2")

        marker = cluster.client().store.key(thread_id, "api", "webhook", run_id)
        eventually(lambda: redis_server.client().get(marker) == b"delivered")
        taken = receiver.for_run(run_id)
        assert len(taken) == 2, taken  # the first (its sender died) and the one recorded
        assert [t["key"] for t in taken] == [run_id, run_id]
        assert all(t["body"]["status"] == "success" for t in taken)
        assert taken[0]["body"]["values"] == taken[1]["body"]["values"]
    finally:
        cluster.stop()
        receiver.close()
