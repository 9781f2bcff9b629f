"""A private ``redis-server`` for tests: a free port, a temp dir, no persistence.

Tests never touch a system Redis (6379): they start their own with ``redis_server()``::

    with redis_server() as server:              # or redis_server(password="pw")
        client = server.client()                 # redis.Redis bound to it
        RedisSaver(server.url)                   # redis://[:pw@]127.0.0.1:<port>/0

A session fixture typically wraps it once and calls ``server.flush()`` between tests.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

HOST = "127.0.0.1"
SYSTEM_PORT = 6379


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    password: str | None
    dir: Path
    process: subprocess.Popen

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, password=self.password, **kwargs)

    def flush(self) -> None:
        """Empty this private server (never call it on anything else)."""
        with self.client() as client:
            client.flushall()

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port != SYSTEM_PORT:
            return port


def _die_with_parent() -> None:
    """Have the kernel stop the server if the test process dies without cleaning up."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PDEATHSIG


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start(port: int, workdir: Path, password: str | None, extra: tuple[str, ...]) -> list[str]:
    args = [
        shutil.which("redis-server") or "redis-server",
        "--port",
        str(port),
        "--bind",
        HOST,
        "--dir",
        str(workdir),
        "--logfile",
        str(workdir / "redis.log"),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]
    if password is not None:
        args += ["--requirepass", password]
    return args + list(extra)


@contextlib.contextmanager
def redis_server(
    *extra_args: str, password: str | None = None, timeout: float = 10.0
) -> Iterator[RedisServer]:
    """Start a redis-server on a free port in a temp dir; stop it and remove the dir after."""
    workdir = Path(tempfile.mkdtemp(prefix="cg-redis-"))
    process: subprocess.Popen | None = None
    try:
        for _attempt in range(5):  # another process may grab the port before redis binds it
            port = _free_port()
            process = subprocess.Popen(
                _start(port, workdir, password, extra_args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
            server = RedisServer(HOST, port, password, workdir, process)
            if _wait_ready(server, timeout):
                break
            _stop(process)
        else:
            raise RuntimeError(f"redis-server did not start:\n{server.log()}")
        yield server
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_ready(server: RedisServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while server.process.poll() is None and time.monotonic() < deadline:
        try:
            with server.client(socket_connect_timeout=1) as client:
                client.ping()
            return True
        except redis.ConnectionError:
            time.sleep(0.01)
    return False
