"""Scale-out: 200 runs of a 5-node graph whose nodes wait 50 ms on I/O, on 1, 2 and 4 worker
processes; runs per second for each and the efficiency against linear scaling.

Each worker is one `celery -A worker worker -Q nodes -c 1` process, so the worker count is
the number of nodes that can wait on I/O at once. Runs are submitted all at once and timed
from the first submit to the last result. Loopback only, a private Redis.
Usage: python bench/scale_out.py [--runs 200] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from scheduler.localcluster import LocalCluster, RedisProcess

GRAPH = "bench.bench_graphs:io_pipeline"


def measure(workdir: Path, workers: int, runs: int) -> float:
    """Runs per second with `workers` single-process workers."""
    redis = RedisProcess(workdir / f"redis-{workers}").start()
    cluster = LocalCluster(workdir / f"cluster-{workers}", redis.url, graphs="bench.bench_graphs")
    try:
        cluster.start_scheduler()
        for i in range(workers):
            cluster.start_worker(f"w{i}", concurrency=1)
        client = cluster.client()
        client.submit(GRAPH, {"steps": []}, thread_id=f"warm-{uuid.uuid4().hex}").result(60)
        start = time.perf_counter()
        handles = [client.submit(GRAPH, {"steps": []}, thread_id=f"s-{uuid.uuid4().hex}")
                   for _ in range(runs)]
        for handle in handles:
            assert len(handle.result(timeout=600)["steps"]) == 5
        return runs / (time.perf_counter() - start)
    finally:
        cluster.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="cg-scale-"))
    rates = {n: measure(workdir, n, args.runs) for n in counts}
    base = rates[counts[0]] / counts[0]
    print(f"{'workers':>8}{'runs/s':>10}{'speed-up':>10}{'efficiency':>12}")
    for n, rate in rates.items():
        print(f"{n:>8}{rate:>10.2f}{rate / rates[counts[0]]:>10.2f}{rate / (base * n):>11.0%}")
    print(f"{args.runs} runs of a 5-node graph, nodes wait 50 ms on I/O; ideal is "
          f"{1 / 0.25:.0f} runs/s per worker (5 x 50 ms per run)")


if __name__ == "__main__":
    main()
