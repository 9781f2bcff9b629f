"""`celerygraph serve` as a real process for tests, beside a test cluster (`tests.cluster`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
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


def server_fixtures(worker: str, server_env: Mapping[str, str] | None = None,
                    api_key: str = API_KEYS[0], own_broker: bool = False,
                    **env: str) -> tuple[Any, Any, Any]:
    """A test module's `cluster` (one worker named `worker`, a scheduler named `scheduler`;
    `env`: more settings, such as CELERYGRAPH_GRAPHS; `own_broker`: on the module's `broker`
    fixture, for a store Celery cannot use as its broker), the server's `url` beside it
    (`server_env`: the server's own settings, such as CELERYGRAPH_API_KEYS) and a sync SDK
    `client` of it with `api_key`: assign them to those names in the module."""
    @pytest.fixture(scope="module")
    def cluster(redis_server, tmp_path_factory, request):  # noqa: ANN001, ANN202
        broker_url = request.getfixturevalue("broker").url if own_broker else None
        running = Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url, broker_url,
                          **env)
        try:
            running.start(worker, concurrency=2)
            running.start_scheduler()
            yield running
        finally:
            running.stop()

    @pytest.fixture(scope="module")
    def url(cluster):  # noqa: ANN001, ANN202
        return start_server(cluster, **(server_env or {}))

    @pytest.fixture
    def client(url):  # noqa: ANN001, ANN202
        return get_sync_client(url=url, api_key=api_key)

    return cluster, url, client


def eventually(check: Callable[[], Any], timeout: float = 180.0) -> Any:
    """`check()` once truthy; the timeout only bounds a broken run, nothing is timed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition never held")
