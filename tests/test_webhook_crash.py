"""A webhook whose sender (the scheduler) is SIGKILLed mid-POST is delivered again by the
scheduler that replaces it, with the same idempotency key, and then never again: at least
once, never lost. Real workers, schedulers, server, Redis and HTTP receiver; the broker's
visibility timeout is short so the dead scheduler's message comes back within seconds."""

from __future__ import annotations

from tests.server import eventually, server_fixtures
from tests.webhook_receiver import Receiver

CHAIN = "tests.dist_graphs:chain"

cluster, url, client = server_fixtures("hook-w1", CELERYGRAPH_VISIBILITY_TIMEOUT="5")


def test_webhook_survives_its_sender_dying_mid_post(cluster, client, redis_server):
    receiver = Receiver(failures=0, hold_first=True)
    try:
        thread_id = client.threads.create()["thread_id"]
        client.runs.wait(thread_id, CHAIN, input={"log": []}, webhook=receiver.url)
        run_id = client.runs.list(thread_id)[0]["run_id"]
        assert receiver.holding.wait(timeout=120)
        cluster.kill("scheduler")  # SIGKILL while its POST is in the receiver
        receiver.release.set()  # the receiver takes it; nobody records that it did
        cluster.start_scheduler("scheduler2")

        marker = cluster.client().store.key(thread_id, "api", "webhook", run_id)
        eventually(lambda: redis_server.client().get(marker) == b"delivered", timeout=240)
        taken = receiver.for_run(run_id)
        assert len(taken) == 2, taken  # the first (its sender died) and the one recorded
        assert [t["key"] for t in taken] == [run_id, run_id]
        assert all(t["body"]["status"] == "success" for t in taken)
        assert taken[0]["body"]["values"] == taken[1]["body"]["values"]
    finally:
        receiver.close()
