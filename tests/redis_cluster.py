"""A private Redis Cluster for tests: masters on free loopback ports, no replicas, no
persistence, their files in one temp dir removed after.

    with redis_cluster() as cluster:            # 3 masters
        cluster.url                             # redis+cluster://127.0.0.1:p1,...,p3/0
        cluster.client()                        # a RedisCluster bound to it

Made as an operator makes one: each node is `redis-server --cluster-enabled yes`, and
`redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes` splits the slots; the
redis-cli beside the redis-server binary is used, so the two are of one version.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from redis.cluster import RedisCluster

from graphdef.redis_client import connect
from scheduler.localcluster import HOST, RedisProcess, free_port
from scheduler.redis_binary import redis_server_binary

SLOTS = 16384
# A node's cluster bus listens on its port + 10000, which must be a port too, and free.
BUS_OFFSET = 10_000
CLUSTER_ARGS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000")


class RedisClusterProcesses:
    """The masters of one cluster; `url` in the store URL's cluster form."""

    def __init__(self, workdir: Path, masters: int, extra_args: tuple[str, ...]) -> None:
        self.nodes = [RedisProcess(workdir / f"node{i}", port=_free_node_port(),
                                   extra_args=(*CLUSTER_ARGS, *extra_args))
                      for i in range(masters)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{n.port}" for n in self.nodes) + "/0"

    def client(self) -> RedisCluster:
        return connect(self.url)  # type: ignore[return-value]

    def start(self, timeout: float) -> None:
        for node in self.nodes:
            node.start(timeout)
        if len(self.nodes) == 1:
            # redis-cli wants 3 masters at least; one takes every slot itself.
            with self.nodes[0].client() as client:
                client.execute_command("CLUSTER", "ADDSLOTS", *range(SLOTS))
        else:
            cli = str(Path(redis_server_binary()).with_name("redis-cli"))
            done = subprocess.run([cli, "--cluster", "create",
                                   *(f"{HOST}:{n.port}" for n in self.nodes),
                                   "--cluster-replicas", "0", "--cluster-yes"],
                                  capture_output=True, text=True, timeout=timeout)
            if done.returncode:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}"
                                   f"{done.stderr}")
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Every node says the cluster is ok and knows every master: before that a client's
        first CLUSTER SLOTS may see a partial map."""
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for node in self.nodes:
                with node.client() as c:
                    info = c.cluster("info")
                states.append(info["cluster_state"] == "ok"
                              and int(info["cluster_known_nodes"]) == len(self.nodes))
            if all(states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster did not settle: {states}")
            time.sleep(0.05)

    def flush(self) -> None:
        """Empty this private cluster (never call it on anything else)."""
        for node in self.nodes:
            with node.client() as c:
                c.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _free_node_port() -> int:
    """A free port whose bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port + BUS_OFFSET))
            except OSError:
                continue
        return port


@contextlib.contextmanager
def redis_cluster(masters: int = 3, *extra_args: str,
                  timeout: float = 30.0) -> Iterator[RedisClusterProcesses]:
    """Start a Redis Cluster of `masters` masters (1, or 3 and more as redis-cli requires);
    stop it and remove its files after."""
    workdir = Path(tempfile.mkdtemp(prefix="cg-rcluster-"))
    cluster = RedisClusterProcesses(workdir, masters, extra_args)
    try:
        cluster.start(timeout)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
