"""A private Redis with one replica watched by a Redis Sentinel, for tests: free loopback
ports, no persistence, files in one temp dir removed after.

    with redis_sentinel() as group:              # master, replica, one sentinel
        group.url                                # redis+sentinel://127.0.0.1:<s>/cg-store/0
        group.master_port()                      # where the sentinel says the master is

Made as an operator makes one: the replica is `redis-server --replicaof`, the sentinel is
`redis-server <conf> --sentinel` monitoring the master with a quorum of one, so killing
the master fails over to the replica in about `DOWN_AFTER_MS` and a second.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from scheduler.localcluster import HOST, RedisProcess, free_port
from scheduler.redis_binary import redis_server_binary

SERVICE = "cg-store"
DOWN_AFTER_MS = 1000


class SentinelGroup:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.master = RedisProcess(workdir / "a")
        self.replica = RedisProcess(workdir / "b",
                                    extra_args=("--replicaof", HOST, str(self.master.port)))
        self.sentinel_port = free_port()
        self.sentinel: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://{HOST}:{self.sentinel_port}/{SERVICE}/0"

    def sentinel_client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.sentinel_port, decode_responses=True)

    def master_port(self) -> int:
        with self.sentinel_client() as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(port)

    def servers(self) -> list[RedisProcess]:
        return [self.master, self.replica]

    def start(self, timeout: float = 15.0) -> None:
        self.master.start(timeout)
        self.replica.start(timeout)
        conf = self.workdir / "sentinel.conf"
        conf.write_text("\n".join((
            f"port {self.sentinel_port}",
            f"bind {HOST}",
            f"dir {self.workdir}",
            f"logfile {self.workdir / 'sentinel.log'}",
            f"sentinel monitor {SERVICE} {HOST} {self.master.port} 1",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} 5000",
        )) + "\n")
        self.sentinel = subprocess.Popen(
            [redis_server_binary(), str(conf), "--sentinel"], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait(self._replica_in_sync, timeout, "the replica's first sync")
        self.wait(lambda: self._replicas_known() >= 1, timeout, "the sentinel to see the replica")

    def _replica_in_sync(self) -> bool:
        with self.replica.client(decode_responses=True) as client:
            return client.info("replication").get("master_link_status") == "up"

    def _replicas_known(self) -> int:
        try:
            with self.sentinel_client() as client:
                replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
        except redis.RedisError:
            return 0
        return sum(1 for r in replicas if "s_down" not in str(r) and "disconnected" not in str(r))

    def wait(self, ready: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}:\n{self.log()}")

    def kill_master_and_wait_for_failover(self, timeout: float = 30.0) -> int:
        """SIGKILL whichever server is master now, once the replica has all it wrote (a
        write the replica had not received would be lost: Redis replicates asynchronously);
        returns the port of the new master."""
        old = self.master_port()
        [dying] = [s for s in self.servers() if s.port == old]
        with dying.client() as client:
            client.execute_command("WAIT", 1, 5000)
        dying.kill()
        self.wait(lambda: self.master_port() != old, timeout, "the failover")
        return self.master_port()

    def stop(self) -> None:
        if self.sentinel is not None and self.sentinel.poll() is None:
            self.sentinel.terminate()
            self.sentinel.wait(timeout=10)
        for server in self.servers():
            server.stop()

    def log(self) -> str:
        path = self.workdir / "sentinel.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def redis_sentinel(timeout: float = 15.0) -> Iterator[SentinelGroup]:
    workdir = Path(tempfile.mkdtemp(prefix="cg-sentinel-"))
    group = SentinelGroup(workdir)
    try:
        group.start(timeout)
        yield group
    finally:
        group.stop()
        shutil.rmtree(workdir, ignore_errors=True)
