"""`celerygraph serve` as a real process for tests, beside a test cluster (`tests.cluster`)."""

from __future__ import annotations

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
