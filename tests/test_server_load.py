"""200 runs streamed at once through `celerygraph serve` on loopback, with the async SDK:
every run's chunks arrive complete and in order, nothing lost, nothing doubled.

The server holds a stream without a thread (`XREAD BLOCK` on an asyncio Redis client), so
200 open streams cost 200 sockets, not 200 threads. The SDK's HTTP client pools at most 100
connections, so the streams go through several clients, as several browsers would.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from langgraph_sdk import get_client

from tests.cluster import Cluster
from tests.server import API_KEYS, start_server

TALKER = "tests.dist_graphs:talker"
RUNS = 200
CLIENTS = 4
CHUNKS = 5


@pytest.fixture(scope="module")
def url(redis_server, tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url)
    try:
        cluster.start("load-w1", concurrency=4, pool="threads")
        cluster.start("load-w2", concurrency=4, pool="threads")
        cluster.start_scheduler()
        yield start_server(cluster)
    finally:
        cluster.stop()


def test_200_concurrent_streamed_runs_lose_nothing(url):
    async def one(client, i):
        parts = [p async for p in client.runs.stream(
            None, TALKER, input={"log": [f"run-{i}"], "n": CHUNKS},
            stream_mode=["custom", "values"])]
        return parts

    async def scenario():
        clients = [get_client(url=url, api_key=API_KEYS[0], timeout=300)
                   for _ in range(CLIENTS)]
        return await asyncio.gather(*(one(clients[i % CLIENTS], i) for i in range(RUNS)))

    started = time.monotonic()
    results = asyncio.run(scenario())
    elapsed = time.monotonic() - started
    run_ids = set()
    for i, parts in enumerate(results):
        assert parts[0].event == "metadata"
        run_ids.add(parts[0].data["run_id"])
        assert [p.data["said"] for p in parts if p.event == "custom"] == list(range(CHUNKS))
        values = [p.data for p in parts if p.event == "values"]
        assert values[0] == {"log": [f"run-{i}"], "n": CHUNKS}
        assert values[-1]["log"] == [f"run-{i}", "intro", "talked"]
        ids = [p.id for p in parts[1:]]
        assert len(ids) == len(set(ids)) and None not in ids
    assert len(run_ids) == RUNS
    print(f"{RUNS} streamed runs in {elapsed:.1f} s")
