"""Fixtures shared by the test modules that run real worker processes."""

from __future__ import annotations

import pytest

from tests.cluster import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A private redis-server for one test module (modules that restart Redis or need AOF
    define their own)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
