"""`celerygraph serve` as a real process for tests, beside a test cluster (`tests.cluster`)."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph_sdk import get_sync_client

from scheduler.localcluster import free_port
from tests.cluster import Cluster

API_KEYS = ("key-one", "key-two")


def start_server(cluster: Cluster, name: str = "server", **env: str) -> str:
    """Start the HTTP server on a free loopback port with the cluster's settings, the test
    graphs loaded and `API_KEYS`; returns its URL once uvicorn says it is listening."""
    port = free_port()
    cluster.start_server(port, name=name, env={"CELERYGRAPH_API_KEYS": ",".join(API_KEYS),
                                               "CELERYGRAPH_API_STORE_PREFIX": "test-kv",
                                               **env})
    return f"http://127.0.0.1:{port}"


def server_fixtures(worker: str, **env: str) -> tuple[Any, Any, Any]:
    """A test module's `cluster` (one worker named `worker`, a scheduler; `env`: more
    settings, such as CELERYGRAPH_GRAPHS), the server's `url` beside it and a sync SDK
    `client` of it: assign them to those names in the module."""
    @pytest.fixture(scope="module")
    def cluster(redis_server, tmp_path_factory):  # noqa: ANN001, ANN202
        running = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url, **env)
        try:
            running.start(worker, concurrency=2)
            running.start_scheduler()
            yield running
        finally:
            running.stop()

    @pytest.fixture(scope="module")
    def url(cluster):  # noqa: ANN001, ANN202
        return start_server(cluster)

    @pytest.fixture
    def client(url):  # noqa: ANN001, ANN202
        return get_sync_client(url=url, api_key=API_KEYS[0])

    return cluster, url, client
