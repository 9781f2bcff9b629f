"""A real local cluster for integration tests: a private Redis, worker and scheduler processes.

Every process is started in a session of its own, so a test can SIGKILL a worker's whole
process group (the Celery parent and its pool children) as a crash would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own, on a free port, in a temp dir; never the system one."""

    def __init__(self, workdir: Path, *, password: str | None = None,
                 appendonly: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.password = password
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(workdir), "--save", "", "--daemonize", "no",
                "--appendonly", "yes" if appendonly else "no"]
        if appendonly:
            args += ["--appendfsync", "always"]
        if password:
            args += ["--requirepass", password]
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self) -> None:
        log = open(self.workdir / f"redis-{self.port}.log", "ab")  # noqa: SIM115 - owned by proc
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Cluster:
    """Worker and scheduler processes against one Redis (and optionally another broker)."""

    def __init__(self, workdir: Path, redis_url: str, broker_url: str | None = None,
                 **env: str) -> None:
        self.workdir = workdir
        self.redis_url = redis_url
        self.broker_url = broker_url or redis_url
        self.env = {
            **os.environ,
            "CELERYGRAPH_BROKER_URL": self.broker_url,
            "CELERYGRAPH_STORE_URL": redis_url,
            "CELERYGRAPH_GRAPHS": "tests.dist_graphs",
            "CELERYGRAPH_LEASE_SECONDS": "1.5",
            "CELERYGRAPH_SWEEP_SECONDS": "0.25",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def settings(self):  # noqa: ANN201 - keeps worker imports out of module import time
        from worker.settings import Settings

        return Settings(broker_url=self.broker_url, store_url=self.redis_url,
                        graph_modules=("tests.dist_graphs",), lease_seconds=1.5,
                        sweep_seconds=0.25)

    def client(self):  # noqa: ANN201
        from scheduler.client import Client

        return Client(self.settings())

    def start(self, name: str, *, app: str = "worker", queues: str = "nodes",
              concurrency: int = 1, pool: str = "prefork") -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        cmd = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues,
               "-c", str(concurrency), "-P", pool, "-n", f"{name}@%h", "--loglevel", "INFO",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        self.logs[name] = log
        self._wait_ready(name)
        return proc

    def start_scheduler(self, name: str = "scheduler") -> subprocess.Popen[bytes]:
        return self.start(name, app="scheduler", queues="scheduler", pool="threads",
                          concurrency=4)

    def _wait_ready(self, name: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.logs[name].read_bytes():
                return
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.logs[name].read_text()[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{name} not ready:\n{self.logs[name].read_text()[-3000:]}")

    def kill(self, name: str) -> None:
        """SIGKILL the process group: the Celery parent and every pool child at once."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        procs = list(self.procs.values())
        self.procs.clear()
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            proc.wait()

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")
