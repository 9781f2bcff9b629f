"""A private ``redis-server`` for tests: a free port, a temp dir, no persistence.

Tests never touch a system Redis (6379): they start their own with ``redis_server()``::

    with redis_server() as server:              # or redis_server(password="pw")
        client = server.client()                 # redis.Redis bound to it
        RedisSaver(server.url)                   # redis://[:pw@]127.0.0.1:<port>/0
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from scheduler.localcluster import RedisProcess


class RedisServer(RedisProcess):
    def flush(self) -> None:
        """Empty this private server (never call it on anything else)."""
        with self.client() as client:
            client.flushall()


@contextlib.contextmanager
def redis_server(
    *extra_args: str, password: str | None = None, timeout: float = 10.0
) -> Iterator[RedisServer]:
    """Start a redis-server on a free port in a temp dir; stop it and remove the dir after."""
    workdir = Path(tempfile.mkdtemp(prefix="cg-redis-"))
    server = RedisServer(workdir, password=password, extra_args=extra_args)
    try:
        server.start(timeout)
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
