"""Redis commands and Redis CPU per unit of work, counted by Redis itself.

Seconds move with machine noise; command counts do not, and they decide how many nodes one
Redis can carry (DESIGN.md, "Store cost"). Starts a private redis-server (never 6379) that is
broker, store and the peer's result backend, one prefork node worker (queue `nodes`), a
threads-pool worker for parked nodes (queue `park`) and a scheduler, all with default
settings. Each phase starts with `CONFIG RESETSTAT` and reads `INFO commandstats` (calls per
command) and `INFO cpu` (used_cpu_sys + used_cpu_user of redis-server) at its end:

- a chain of one-node supersteps run in place (`sync`): commands and CPU per superstep, beside
  one bare Celery `delay().get()` round trip (the peer of `bench/bench_graphs.py`);
- one superstep of N `Send` tasks (500, 200, 20): commands and CPU per task;
- idle: commands/s and CPU with nothing running, then with N nodes parked (blocked in a
  node) for each N, and per parked node above the idle baseline; with them parked, the time
  of one `Sweeper.sweep()` pass over every shard of the sweep's index, run from this process
  (what is due then, besides what the cluster's own sweepers take).

The bench's own commands are left out: INFO and CONFIG, and the HGETALL of each poll of a
run's record while it waits for the run (a producer's wait is its own choice of cost).

Usage: python bench/store_cost.py [--runs R] [--parked 0,200] [--window S] [--quick]
(the README's figures: --parked 0,200,1000, about 70 s on 2 cores)

`--shards`: instead, supersteps per second with the store on a Redis Cluster of one master
vs three, workers held constant (`bench/shards.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_graphs import PEER_TASK, RELEASE_CHANNEL, make_peer_app  # noqa: E402
from bench.shards import main_shards  # noqa: E402
from scheduler.celery_app import make_app  # noqa: E402
from scheduler.deadlines import SHARDS  # noqa: E402
from scheduler.localcluster import LocalCluster, RedisProcess  # noqa: E402
from scheduler.resources import Resources  # noqa: E402
from scheduler.sweeper import Sweeper  # noqa: E402

GRAPHS = "bench.bench_graphs"
POLL_SECONDS = 0.01
STALL_SECONDS = 10.0
PARK_QUEUE = "park"
# After the last node parked, before counting: the starts' last writes and acks settle, and
# each new run's one look (due a lease lifetime, 2 s, after its lease was taken: it finds the
# lease adopted and forgets the run) is over. The idle window then counts what parked nodes
# cost for as long as they stay parked, not what parking them cost once.
SETTLE_SECONDS = 3.0


@dataclass
class Sizes:
    chain: int = 50
    fanouts: tuple[int, ...] = (500, 200, 20)
    parked: tuple[int, ...] = (0, 200)
    window: float = 5.0  # seconds an idle phase is counted over
    sweeps: int = 3


@dataclass
class Phase:
    """What Redis did during one phase, divided by the phase's units of work."""

    calls: Counter[str]
    cpu: float  # seconds of redis-server CPU
    units: float

    @property
    def per_unit(self) -> float:
        return sum(self.calls.values()) / self.units

    @property
    def cpu_per_unit(self) -> float:
        return self.cpu / self.units


class Counted:
    """Redis's own counters around a block of work on the private server."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def cpu(self) -> float:
        info = self.r.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def measure(self, work: Callable[[], Counter[str]], units: float) -> Phase:
        """Run `work`, which returns the commands it issued itself (left out of the count)."""
        self.r.config_resetstat()
        cpu = self.cpu()
        own = work()
        self.settle()
        cpu = self.cpu() - cpu
        calls = self.calls()
        calls.subtract(own)
        return Phase(+calls, cpu, units)

    def calls(self) -> Counter[str]:
        calls: Counter[str] = Counter()
        for name, stats in self.r.info("commandstats").items():
            command = name.removeprefix("cmdstat_")
            if command == "info" or command.startswith("config"):
                continue
            calls[command] = int(stats["calls"])
        return calls

    def settle(self, quiet: float = 0.15, most: float = 3.0) -> None:
        """Wait until no `PUBLISH` lands for `quiet` seconds (at most `most`): a worker
        publishes its node rows' task events from a thread of its own, which can still be
        sending when a run's result is read, and they belong to the work, not to the
        phase after it."""
        deadline = time.monotonic() + most
        last = self.calls()["publish"]
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.calls()["publish"]
            if now == last:
                return
            last = now


class Bench:
    def __init__(self, workdir: Path, sizes: Sizes) -> None:
        self.redis = RedisProcess(workdir / "redis")
        self.workdir = workdir
        self.sizes = sizes
        self.cluster: LocalCluster | None = None

    def start(self) -> None:
        self.redis.start()
        self.cluster = LocalCluster(self.workdir / "cluster", self.redis.url, graphs=GRAPHS)
        self.cluster.start_scheduler()
        self.cluster.start_worker("w1", concurrency=2)
        # Parked nodes wait on I/O: threads, one per node that may be parked at once.
        self.cluster.start_worker("park", queues=PARK_QUEUE, pool="threads",
                                  concurrency=max(1, *self.sizes.parked))
        self.client = self.cluster.client()
        settings = self.cluster.settings()
        self.peer = make_peer_app(settings.broker_url, self.redis.url, settings.node_queue)
        self.noop = self.peer.tasks[PEER_TASK]
        self.r = self.redis.client()
        self.counted = Counted(self.r)
        self.sweeper = Sweeper(Resources.connect(settings), make_app(settings))

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        self.redis.stop()

    def warm_up(self) -> None:
        """Imports, connections and pool children on both sides before anything is counted."""
        self.wait([self.submit("chain", {"i": 0, "n": 3})])
        self.wait([self.submit("fanout", {"n": 8, "done": 0})])
        self.park(2)
        for i in range(5):
            self.noop.delay(i).get(timeout=30)

    # ---- runs -------------------------------------------------------------------------

    def submit(self, graph: str, run_input: dict[str, Any]) -> Any:
        return self.client.submit(f"{GRAPHS}:{graph}", run_input,
                                  thread_id=f"{graph}-{uuid.uuid4().hex[:12]}",
                                  durability="sync", config={"recursion_limit": 10_000})

    def wait(self, handles: list[Any], timeout: float = 120) -> Counter[str]:
        """Poll each run's record (one HGETALL) until it settles; return the polls made."""
        polls = 0
        deadline = time.monotonic() + timeout
        for handle in handles:
            while True:
                polls += 1
                record = self.client.store.run(handle.thread_id, handle.id)
                if record is not None and record.status.settled:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"run {handle.id} not settled after {timeout} s")
                time.sleep(POLL_SECONDS)
        return Counter(hgetall=polls)

    # ---- phases -----------------------------------------------------------------------

    def chain(self) -> Phase:
        n = self.sizes.chain
        handles: list[Any] = []

        def work() -> Counter[str]:
            handles.append(self.submit("chain", {"i": 0, "n": n}))
            return self.wait(handles)

        phase = self.counted.measure(work, n)
        assert handles[0].result(timeout=5)["i"] == n
        return phase

    def round_trips(self) -> Phase:
        n = self.sizes.chain

        def work() -> Counter[str]:
            for i in range(n):
                assert self.noop.delay(i).get(timeout=30) == i
            return Counter()

        return self.counted.measure(work, n)

    def fan_out(self, n: int) -> Phase:
        handles: list[Any] = []

        def work() -> Counter[str]:
            handles.append(self.submit("fanout", {"n": n, "done": 0}))
            return self.wait(handles)

        phase = self.counted.measure(work, n)
        assert handles[0].result(timeout=5)["done"] == n
        return phase

    def idle(self, n: int) -> tuple[Phase, list[float], int]:
        """Redis's work over the window with `n` nodes parked (and how many really were);
        then timed sweep passes."""
        with self.parked(n) as held:
            phase = self.counted.measure(self.stand_by, self.sizes.window)
            sweeps = []
            for _ in range(self.sizes.sweeps):
                began = time.perf_counter()
                self.sweeper.sweep(range(SHARDS))
                sweeps.append(time.perf_counter() - began)
        return phase, sweeps, held

    def stand_by(self) -> Counter[str]:
        """The idle window: the bench itself issues nothing while Redis counts."""
        time.sleep(self.sizes.window)
        return Counter()

    def park(self, n: int) -> None:
        with self.parked(n):
            pass

    @contextlib.contextmanager
    def parked(self, n: int) -> Any:
        """`n` runs, each blocked in its one node until the block ends, then run to the end;
        yields how many nodes parked.

        A node that failed on its way in (a worker's Redis pool exhausted by a wide threads
        pool) never parks: once the count stops growing, the bench goes on with those that did
        rather than wait out the timeout.
        """
        tag = uuid.uuid4().hex[:12]
        timeout = 60 + self.sizes.window + n * 0.05
        handles = [self.submit("park", {"tag": tag, "timeout": timeout}) for _ in range(n)]
        deadline = time.monotonic() + timeout
        held, grew = 0, time.monotonic()
        while held < n:
            now = time.monotonic()
            if now > deadline or (held and now - grew > STALL_SECONDS):
                print(f"  only {held} of {n} nodes parked", flush=True)
                break
            time.sleep(0.1)
            count = int(self.r.get(f"bench:parked:{tag}") or 0)
            if count > held:
                held, grew = count, time.monotonic()
        time.sleep(SETTLE_SECONDS)
        try:
            yield held
        finally:
            self.r.publish(RELEASE_CHANNEL, tag)
            self.wait(handles, timeout=timeout)
            twice = int(self.r.get(f"bench:parked:{tag}") or 0) - n
            if twice > 0:
                # A lapsed lease let the sweeper send a running node again: worth seeing.
                print(f"  {twice} of {n} parked nodes ran a second time", flush=True)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def med_calls(phases: list[Phase]) -> dict[str, float]:
    names = {name for p in phases for name in p.calls}
    return {name: med([p.calls[name] / p.units for p in phases]) for name in names}


def report(bench: Bench, results: dict[str, list[Phase]], sweeps: dict[int, list[float]],
           held: dict[int, int], runs: int, elapsed: float) -> None:
    sizes = bench.sizes
    step, trip = results["step"], results["round trip"]
    trip_cmds = med([p.per_unit for p in trip])
    trip_cpu = med([p.cpu_per_unit for p in trip])

    def row(label: str, phases: list[Phase], unit: str, target: str = "") -> tuple[str, ...]:
        cmds, cpu = med([p.per_unit for p in phases]), med([p.cpu_per_unit for p in phases])
        return (label, f"{cmds:.1f}/{unit}", f"{cpu * 1e6:.0f} us/{unit}",
                f"{cmds / trip_cmds:.2f}", f"{cpu / trip_cpu:.2f}" if trip_cpu else "", target)

    rows = [
        row(f"one-node superstep (chain of {sizes.chain}, sync)", step, "step", "<= 20"),
        row("bare Celery delay().get() round trip", trip, "trip"),
    ]
    for n in sizes.fanouts:
        rows.append(row(f"superstep of {n} Sends", results[f"fanout {n}"], "task", "<= 10"))
    base = results.get("idle 0")
    base_rate = med([p.per_unit for p in base]) if base else 0.0
    base_cpu = med([p.cpu_per_unit for p in base]) if base else 0.0
    for n in sizes.parked:
        phases = results[f"idle {n}"]
        rate, cpu = med([p.per_unit for p in phases]), med([p.cpu_per_unit for p in phases])
        label = "idle, nothing running" if n == 0 else f"idle, {held[n]} nodes parked"
        rows.append((label, f"{rate:.1f}/s", f"{cpu * 1e3:.1f} ms/s", "", "", ""))
        if n:
            rows.append((f"  per parked node (above idle), sweep {med(sweeps[n]) * 1e3:.0f} ms",
                         f"{(rate - base_rate) / held[n]:.4f}/s",
                         f"{(cpu - base_cpu) / held[n] * 1e6:.0f} "
                         "us/s", "", "", "<= 0.5/s"))
        else:
            rows.append((f"  sweep pass, no active run: {med(sweeps[0]) * 1e3:.1f} ms",
                         "", "", "", "", ""))

    widths = (52, 12, 13, 10, 10, 10)
    header = ("measure", "commands", "redis CPU", "cmd ratio", "cpu ratio", "target")
    print()
    for line in (header, *rows):
        print("".join(c.ljust(w) if i == 0 else c.rjust(w)
                      for i, (c, w) in enumerate(zip(line, widths, strict=True))))
    print()
    print("ratios are to one bare Celery round trip measured in the same run on the same Redis")
    fanouts = [(f"{n}-Send task", results[f"fanout {n}"]) for n in sizes.fanouts]
    for label, phases in (("superstep", step), ("round trip", trip), *fanouts):
        calls = sorted(med_calls(phases).items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{name} {count:.2f}" for name, count in calls if count >= 0.05)
        print(f"per {label}: {shown}")
    if sizes.parked[-1]:
        n = sizes.parked[-1]
        calls = sorted(med_calls(results[f"idle {n}"]).items(), key=lambda kv: -kv[1])
        print(f"per second with {held[n]} parked: "
              + ", ".join(f"{name} {count:.1f}" for name, count in calls if count >= 0.05))
    print()
    print(f"medians of {runs} run(s) (idle: of {runs} window(s) of {sizes.window:.0f} s; "
          f"sweep: of {sizes.sweeps} passes timed from the bench process)")
    print("commands exclude the bench's own INFO, CONFIG and run-record polls; the chain and "
          "fan-out include the run's submit and start, spread over its steps or tasks")
    print(f"configuration: 1 node worker (prefork x 2, queue 'nodes', also serving the peer), "
          f"1 park worker (threads x {max(1, *sizes.parked)}), 1 scheduler (threads x 4), "
          f"default settings; redis-server 127.0.0.1:{bench.redis.port}; "
          f"{os.cpu_count()} CPUs; whole bench {elapsed:.0f} s")


def parse_sizes(text: str) -> tuple[int, ...]:
    return tuple(sorted({int(part) for part in text.split(",") if part.strip()} | {0}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parked", type=parse_sizes, default=Sizes.parked,
                        help="numbers of parked nodes, comma-separated (0 is always measured)")
    parser.add_argument("--window", type=float, default=Sizes.window,
                        help="seconds each idle phase is counted over")
    parser.add_argument("--quick", action="store_true", help="one run, tiny sizes (a smoke)")
    parser.add_argument("--shards", action="store_true",
                        help="only supersteps/s on a Redis Cluster of 1 master vs 3")
    args = parser.parse_args()
    if args.shards:
        with tempfile.TemporaryDirectory(prefix="cg-shards-") as tmp:
            chains, steps = (2, 5) if args.quick else (16, 40)
            main_shards(Path(tmp), chains, steps, 1 if args.quick else args.runs)
        return
    sizes = Sizes(parked=args.parked, window=args.window)
    runs = args.runs
    if args.quick:
        runs = 1
        sizes = Sizes(chain=5, fanouts=(10, 3), parked=(0, 5), window=1.0, sweeps=1)
    began = time.perf_counter()
    results: dict[str, list[Phase]] = {}
    sweeps: dict[int, list[float]] = {}
    held: dict[int, int] = {}

    def add(name: str, phase: Phase) -> None:
        results.setdefault(name, []).append(phase)

    with tempfile.TemporaryDirectory(prefix="cg-store-cost-") as tmp:
        bench = Bench(Path(tmp), sizes)
        try:
            bench.start()
            print(f"cluster up in {time.perf_counter() - began:.1f} s; warming up", flush=True)
            bench.warm_up()
            for i in range(runs):
                add("step", bench.chain())
                add("round trip", bench.round_trips())
                for n in sizes.fanouts:
                    add(f"fanout {n}", bench.fan_out(n))
                print(f"run {i + 1}/{runs}: {results['step'][-1].per_unit:.1f} commands per "
                      f"superstep vs {results['round trip'][-1].per_unit:.1f} per round trip",
                      flush=True)
            for n in sizes.parked:
                for _ in range(runs if n == 0 else 1):
                    phase, passes, held[n] = bench.idle(n)
                    add(f"idle {n}", phase)
                    sweeps.setdefault(n, []).extend(passes)
                print(f"idle with {n} parked: {results[f'idle {n}'][-1].per_unit:.1f} "
                      f"commands/s", flush=True)
            report(bench, results, sweeps, held, runs, time.perf_counter() - began)
        finally:
            with contextlib.suppress(Exception):
                bench.stop()


if __name__ == "__main__":
    main()
