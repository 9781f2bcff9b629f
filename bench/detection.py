"""Lost-node detection under load: how long until a SIGKILLed worker's parked nodes run again
elsewhere, while thousands of other nodes stay parked on the same Redis (DESIGN.md, "Store
cost"; the aim: within 5 s at 5,000 running nodes).

Starts a private redis-server (broker and store), a scheduler (whose sweepers find lost
leases), a `doomed` threads worker holding `--victims` parked nodes and a `keeper` threads
worker holding the other nodes, with room for the victims. Once every node is parked, the
doomed worker's process group is SIGKILLed; each victim's node counts as detected when it
starts again (on the keeper: the only one left). Each start is stamped in Redis by the node
itself, on the same clock as the kill. Then every node is released, and the bench checks
that each run finished with its node's one result (the victims' second run counted once).

With the default settings: leases of 2 s (`CELERYGRAPH_LEASE_SECONDS`), adopted after a sixth
of that and kept by one heartbeat per process; a lapse is seen by the sweeper's next pass.

Usage: python bench/detection.py [--nodes N] [--victims V] [--runs R]
(the README's figures: --nodes 5000 --victims 20 --runs 3; about 4 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_graphs import RELEASE_CHANNEL  # noqa: E402
from scheduler.localcluster import LocalCluster, RedisProcess  # noqa: E402

GRAPHS = "bench.bench_graphs"
PARK_QUEUE = "park"
PARK_SECONDS = 600.0  # a parked node's own timeout: far past any measurement


class Detection:
    def __init__(self, workdir: Path, nodes: int, victims: int) -> None:
        self.workdir = workdir
        self.nodes = nodes
        self.victims = victims
        self.redis = RedisProcess(workdir / "redis")
        self.cluster: LocalCluster | None = None

    def start(self) -> None:
        self.redis.start()
        self.cluster = LocalCluster(self.workdir / "cluster", self.redis.url, graphs=GRAPHS)
        self.cluster.start_scheduler()
        self.client = self.cluster.client()
        self.r = self.redis.client()

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        self.redis.stop()

    def submit(self, tag: str, n: int) -> list[Any]:
        return [self.client.submit(f"{GRAPHS}:park",
                                   {"tag": tag, "timeout": PARK_SECONDS, "stamp": True},
                                   thread_id=f"park-{uuid.uuid4().hex[:12]}")
                for _ in range(n)]

    def wait_parked(self, tag: str, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while int(self.r.get(f"bench:parked:{tag}") or 0) < n:
            if time.monotonic() > deadline:
                held = int(self.r.get(f"bench:parked:{tag}") or 0)
                raise TimeoutError(f"only {held} of {n} nodes of {tag} parked")
            time.sleep(0.1)

    def starts(self, tag: str) -> list[float]:
        return [float(t) for t in self.r.lrange(f"bench:starts:{tag}", 0, -1)]

    def once(self) -> tuple[list[float], int]:
        """Seconds from the kill to each victim's second start; and how many of the other
        nodes started twice (a false detection)."""
        assert self.cluster is not None
        doomed, kept = f"doomed-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"
        # The victims first, on the only worker of the queue; then the keeper, with room
        # for every node and the victims' second runs.
        self.cluster.start_worker("doomed", queues=PARK_QUEUE, pool="threads",
                                  concurrency=self.victims)
        handles = self.submit(doomed, self.victims)
        self.wait_parked(doomed, self.victims, timeout=60)
        others = self.nodes - self.victims
        self.cluster.start_worker("keeper", queues=PARK_QUEUE, pool="threads",
                                  concurrency=others + self.victims)
        handles += self.submit(kept, others)
        self.wait_parked(kept, others, timeout=120 + others * 0.05)
        time.sleep(3.0)  # every lease adopted: the steady state a lost node is found in
        killed_at = time.time()
        self.cluster.kill("doomed")
        deadline = time.monotonic() + 120
        while len(self.starts(doomed)) < 2 * self.victims:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.starts(doomed)) - self.victims} of "
                                   f"{self.victims} victims ran again in 120 s")
            time.sleep(0.05)
        again = sorted(t - killed_at for t in self.starts(doomed) if t > killed_at)
        twice = len(self.starts(kept)) - others
        self.r.publish(RELEASE_CHANNEL, doomed)
        self.r.publish(RELEASE_CHANNEL, kept)
        for handle in handles:
            assert handle.result(timeout=120)["log"] == ["park"]
        self.cluster.kill("keeper")
        return again, twice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--victims", type=int, default=20)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    if not 0 < args.victims < args.nodes:
        parser.error("--victims must be between 0 and --nodes")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cg-detect-") as tmp:
        bench = Detection(Path(tmp), args.nodes, args.victims)
        try:
            bench.start()
            medians, worsts, doubles = [], [], []
            for i in range(args.runs):
                again, twice = bench.once()
                medians.append(statistics.median(again))
                worsts.append(again[-1])
                doubles.append(twice)
                print(f"run {i + 1}/{args.runs}: {args.victims} lost nodes ran again after "
                      f"median {medians[-1]:.2f} s, last {worsts[-1]:.2f} s; "
                      f"{twice} of {args.nodes - args.victims} others ran twice", flush=True)
        finally:
            bench.stop()
    print()
    print(f"{args.nodes} nodes running (parked), {args.victims} of them on a worker SIGKILLed: "
          f"each ran again elsewhere after median {statistics.median(medians):.2f} s, "
          f"the last after {statistics.median(worsts):.2f} s (medians of {args.runs} run(s); "
          f"aim: within 5 s); others run twice: {max(doubles)}")
    print(f"configuration: 1 scheduler (threads x 4), workers on a threads pool, default "
          f"settings; {args.nodes} nodes on one private redis-server; whole bench "
          f"{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
