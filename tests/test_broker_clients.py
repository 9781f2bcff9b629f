"""A Redis broker channel reuses one redis-py client (`scheduler.broker_clients`), on a
real Redis: what it sends still arrives, and a channel whose pool was replaced after a lost
connection gets a client of the new pool."""

from __future__ import annotations

from kombu import Queue

from scheduler.celery_app import CeleryGraphApp
from scheduler.settings import Settings
from scheduler.transport import guard_envelopes
from tests.redis_server import redis_server


def test_a_channel_reuses_its_client_and_its_messages_arrive() -> None:
    with redis_server() as server:
        app = CeleryGraphApp(Settings(broker_url=server.url, store_url=server.url))
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            first = channel._create_client()
            assert channel._create_client() is first
            queue = Queue("reuse-test", channel=channel)
            queue.declare()
            with conn.Producer() as producer:
                for i in range(3):
                    producer.publish({"n": i}, routing_key="reuse-test", serializer="json")
            assert server.client().llen("reuse-test") == 3
            assert [queue.get(no_ack=True).payload["n"] for _ in range(3)] == [0, 1, 2]
            channel._disconnect_pools()  # what a lost connection does
            second = channel._create_client()
            assert second is not first and second.connection_pool is channel.pool
            assert second.ping()


def test_a_pooled_clone_and_a_consumer_transport_keep_it() -> None:
    """Producer pools clone their connection; the consumer's transport also refuses
    envelopes that are not JSON (`guard_envelopes`): both kinds of channel reuse."""
    with redis_server() as server:
        app = CeleryGraphApp(Settings(broker_url=server.url, store_url=server.url))
        with app.pool.acquire(block=True) as conn:
            channel = conn.default_channel
            assert channel._create_client() is channel._create_client()
        with app.connection_for_read() as conn:
            guard_envelopes(conn.transport)
            channel = conn.channel()
            assert "BRPOP" in channel.handlers
            assert channel._create_client() is channel._create_client()
            channel.close()
        assert app.connection_for_write().as_uri().startswith("redis://")
