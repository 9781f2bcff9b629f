"""A private ``redis-server`` for tests: a free port, a temp dir, no persistence.

Tests never touch a system Redis (6379): they start their own with ``redis_server()``::

    with redis_server() as server:              # or redis_server(password="pw")
        client = server.client()                 # redis.Redis bound to it
        RedisSaver(server.url)                   # redis://[:pw@]127.0.0.1:<port>/0
"""

from __future__ import annotations

import contextlib
import os
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


def path_without_redis_server(bin_dir: Path, keep: tuple[str, ...] = ()) -> str:
    """PATH with every directory that holds a redis-server left out, so that the packaged
    one is used: the case of a machine with only Python. The tools named in `keep` (found
    on the full PATH) stay reachable through links in `bin_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in keep:
        found = shutil.which(tool)
        if found is None:
            raise FileNotFoundError(f"{tool} is not on PATH")
        (bin_dir / tool).symlink_to(found)
    kept = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not os.access(os.path.join(d, "redis-server"), os.X_OK)]
    path = os.pathsep.join([*kept, str(bin_dir)])
    assert shutil.which("redis-server", path=path) is None, path
    return path
