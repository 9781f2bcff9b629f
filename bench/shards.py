"""Supersteps per second with the store on one Redis Cluster shard vs three, workers held
constant (`bench/store_cost.py --shards`).

Each layout is a private Redis Cluster (`tests/redis_cluster.py`: 1 or 3 masters, no
replicas) holding the store, a private plain Redis as Celery's broker (Celery has no cluster
transport), and the same processes: one prefork node worker, one scheduler. The same client
code runs against both, so the only difference is how many masters share the keys. The
work: `chains` concurrent chains of `steps` one-node supersteps (`sync`, run in place); the
figure is supersteps finished per second of wall time, and each master's Redis CPU per
superstep (`INFO cpu`, reset before with `CONFIG RESETSTAT`), which shows how the load
spreads: where the masters saturate first is what a shard count buys, and on a machine whose
cores the workers already fill, wall-time throughput cannot show it.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from scheduler.localcluster import LocalCluster, RedisProcess
from tests.redis_cluster import RedisClusterProcesses, redis_cluster

GRAPH = "bench.bench_graphs:chain"


@dataclass
class ShardRun:
    masters: int
    supersteps: int
    seconds: float
    cpu_per_master: list[float]  # seconds of redis-server CPU during the run, per master

    @property
    def per_second(self) -> float:
        return self.supersteps / self.seconds

    def cpu_per_step_us(self) -> list[float]:
        return [cpu / self.supersteps * 1e6 for cpu in self.cpu_per_master]


def _cpu(cluster: RedisClusterProcesses) -> list[float]:
    out = []
    for node in cluster.nodes:
        with node.client() as client:
            info = client.info("cpu")
        out.append(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]))
    return out


def _run_chains(processes: LocalCluster, chains: int, steps: int) -> None:
    client = processes.client()
    handles = [client.submit(GRAPH, {"i": 0, "n": steps}, thread_id=f"shard-{uuid.uuid4().hex}",
                             durability="sync", config={"recursion_limit": 10_000})
               for _ in range(chains)]
    for handle in handles:
        assert handle.result(timeout=300)["i"] == steps


def measure(workdir: Path, masters: int, chains: int, steps: int, runs: int) -> list[ShardRun]:
    """`runs` timed runs of the workload on a cluster of `masters` masters."""
    out = []
    with redis_cluster(masters) as store:
        broker = RedisProcess(workdir / f"broker{masters}").start()
        processes = LocalCluster(workdir / f"cluster{masters}", store.url, broker.url,
                                 graphs="bench.bench_graphs")
        try:
            processes.start_scheduler()
            processes.start_worker("w1", concurrency=2)
            _run_chains(processes, 2, 3)  # imports, connections, pool children
            for _ in range(runs):
                before = _cpu(store)
                began = time.perf_counter()
                _run_chains(processes, chains, steps)
                seconds = time.perf_counter() - began
                used = [after - b for after, b in zip(_cpu(store), before, strict=True)]
                out.append(ShardRun(masters, chains * steps, seconds, used))
        finally:
            processes.stop()
            broker.stop()
    return out


def report(results: dict[int, list[ShardRun]], chains: int, steps: int) -> None:
    print()
    print(f"{'store':<28}{'supersteps/s':>14}{'redis CPU/step, per master':>32}")
    for masters, found in results.items():
        rate = statistics.median(r.per_second for r in found)
        per_master = [statistics.median(r.cpu_per_step_us()[i] for r in found)
                      for i in range(masters)]
        shown = " / ".join(f"{us:.0f}" for us in per_master)
        print(f"{f'Redis Cluster, {masters} master(s)':<28}{rate:>14.1f}{shown + ' us':>32}")
    print(f"workload: {chains} concurrent chains x {steps} one-node supersteps (sync, in place); "
          "1 node worker (prefork x 2), 1 scheduler (threads x 4), a plain Redis broker; "
          f"medians of {len(next(iter(results.values())))} run(s)")


def main_shards(workdir: Path, chains: int, steps: int, runs: int) -> dict[int, list[ShardRun]]:
    results = {masters: measure(workdir, masters, chains, steps, runs) for masters in (1, 3)}
    report(results, chains, steps)
    return results

