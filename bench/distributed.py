"""Distributed engine vs bare Celery on the same broker and the same worker processes.

Starts a private redis-server (never 6379; broker, store and the peer's result backend) and a
local cluster: node workers (`celery -A worker worker -Q nodes`) and a scheduler
(`celery -A scheduler worker -Q scheduler`). The workers load `bench.bench_graphs`, which also
registers a trivial bare-Celery task (with a result backend) on them, sent to the same node
queue. Prints medians of several runs, both sides measured in the same run:

(a) a chain of one-node supersteps, `sync` durability: time per superstep vs one Celery
    `delay().get()` round trip (target <= 1.0);
(b) one superstep of N Send tasks vs Celery `group(...)().get()` of N (target <= 0.5);
(c) seconds from SIGKILL of a worker's process group mid-node to that node finishing on
    another worker (target <= 5 s);
(d) stream latency: from a node's `writer(...)` call on a worker to the producer reading the
    chunk from the run's Redis stream, p50 and p99 over `--chunks` chunks (aim: p50 <= 2 ms),
    beside the same run's chunks through graphdef's in-process `stream()`;
(e) token throughput of one `messages` stream end to end (first token read to last), beside
    the same model streamed in-process (aim: >= 20,000 chunks/s).

Usage: python bench/distributed.py [--runs N] [--quick] [--workers W] [--concurrency C]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from celery import group  # noqa: E402

from bench.bench_graphs import PEER_TASK, make_peer_app  # noqa: E402
from scheduler.localcluster import LocalCluster, RedisProcess  # noqa: E402

GRAPHS = "bench.bench_graphs"
LEASE_SECONDS = "2.0"  # the documented defaults (scheduler/settings.py)
SWEEP_SECONDS = "0.5"
VISIBILITY_TIMEOUT = "3600"  # Redis broker redelivery of unacked messages (Celery's default)


@dataclass
class Sizes:
    chain: int = 20
    fanout: int = 500
    chunks: int = 1000  # custom chunks per latency run, 1 ms apart
    tokens: int = 20_000  # words the fake model streams (a token and a space each)
    node_seconds: float = 1.0  # how long the killed node takes when it runs again
    kill_after: float = 0.3  # into the node, so the kill lands mid-node


@dataclass
class Samples:
    step: list[float] = field(default_factory=list)
    round_trip: list[float] = field(default_factory=list)
    fanout: list[float] = field(default_factory=list)
    group: list[float] = field(default_factory=list)
    worker_leg: list[float] = field(default_factory=list)
    scheduler_leg: list[float] = field(default_factory=list)
    recovered: list[float] = field(default_factory=list)
    restarted: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    local_latency: list[float] = field(default_factory=list)
    tokens_per_s: list[float] = field(default_factory=list)
    local_tokens_per_s: list[float] = field(default_factory=list)


class Bench:
    def __init__(self, workdir: Path, workers: int, concurrency: int, sizes: Sizes) -> None:
        self.redis = RedisProcess(workdir / "redis")
        self.workdir = workdir
        self.workers = workers
        self.concurrency = concurrency
        self.sizes = sizes
        self.cluster: LocalCluster | None = None
        self.generation = 0

    # ---- setup ----------------------------------------------------------------------------

    def start(self) -> None:
        self.redis.start()
        self.cluster = LocalCluster(
            self.workdir / "cluster", self.redis.url, graphs=GRAPHS,
            CELERYGRAPH_LEASE_SECONDS=LEASE_SECONDS, CELERYGRAPH_SWEEP_SECONDS=SWEEP_SECONDS,
            CELERYGRAPH_VISIBILITY_TIMEOUT=VISIBILITY_TIMEOUT,
        )
        # Started side by side: each start waits for its process to log " ready.".
        in_parallel(self.cluster.start_scheduler,
                    *(functools.partial(self.start_worker, f"w{i}")
                      for i in range(1, self.workers + 1)))
        self.client = self.cluster.client()
        settings = self.cluster.settings()
        self.peer = make_peer_app(settings.broker_url, self.redis.url, settings.node_queue)
        self.noop = self.peer.tasks[PEER_TASK]
        self.r = self.redis.client()

    def start_worker(self, name: str) -> None:
        assert self.cluster is not None
        self.cluster.start_worker(name, concurrency=self.concurrency)

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        self.redis.stop()

    def warm_up(self) -> None:
        """Imports, connections and pool children on both sides before anything is timed."""
        self.run_graph("chain", {"i": 0, "n": 3})
        self.run_graph("fanout", {"n": 4 * self.workers * self.concurrency, "done": 0})
        for _ in range(5):
            self.noop.delay(0).get(timeout=30)
        group(self.noop.s(i) for i in range(20))().get(timeout=30)

    # ---- measurements ---------------------------------------------------------------------

    def run_graph(self, name: str, run_input: dict[str, Any]) -> tuple[float, Any, Any]:
        thread_id = f"{name}-{uuid.uuid4().hex[:12]}"
        start = time.perf_counter()
        handle = self.client.submit(f"{GRAPHS}:{name}", run_input, thread_id=thread_id,
                                    durability="sync", config={"recursion_limit": 10_000})
        output = handle.result(timeout=120)
        return time.perf_counter() - start, output, handle

    def chain(self, samples: Samples) -> None:
        n = self.sizes.chain
        elapsed, output, handle = self.run_graph("chain", {"i": 0, "n": n})
        assert output["i"] == n, output
        samples.step.append(elapsed / n)
        worker, scheduler = legs(handle)
        samples.worker_leg.append(worker)
        samples.scheduler_leg.append(scheduler)
        start = time.perf_counter()
        for i in range(n):
            assert self.noop.delay(i).get(timeout=30) == i
        samples.round_trip.append((time.perf_counter() - start) / n)

    def fan_out(self, samples: Samples) -> None:
        n = self.sizes.fanout
        elapsed, output, _ = self.run_graph("fanout", {"n": n, "done": 0})
        assert output["done"] == n, output
        samples.fanout.append(elapsed)
        start = time.perf_counter()
        results = group(self.noop.s(i) for i in range(n))().get(timeout=120)
        samples.group.append(time.perf_counter() - start)
        assert results == list(range(n))

    def crash(self, samples: Samples) -> None:
        """SIGKILL the group of the worker running the node; time until it finished elsewhere."""
        assert self.cluster is not None
        thread_id = f"crash-{uuid.uuid4().hex[:12]}"
        handle = self.client.submit(f"{GRAPHS}:slow", {"sleep": self.sizes.node_seconds},
                                    thread_id=thread_id)
        pid, _ = self.wait_for(f"bench:started:{thread_id}", 1)[0]
        time.sleep(self.sizes.kill_after)
        victim = next(name for name, proc in self.cluster.procs.items()
                      if proc.pid == os.getpgid(pid))
        self.cluster.kill(victim)
        killed_at = time.time()
        assert handle.result(timeout=120)["log"] == ["slow"]
        finished = [(p, at) for p, at in self.wait_for(f"bench:finished:{thread_id}", 1)
                    if p != pid]
        restarts = [(p, at) for p, at in self.wait_for(f"bench:started:{thread_id}", 2)
                    if p != pid]
        samples.recovered.append(finished[0][1] - killed_at)
        samples.restarted.append(restarts[0][1] - killed_at)
        # Bring the pool back to its size (a new name: logs are per name and appended to).
        self.generation += 1
        self.start_worker(f"{victim}-r{self.generation}")

    def stream_latency(self, samples: Samples) -> None:
        from bench.bench_graphs import talker

        talk = {"n": self.sizes.chunks, "gap": 0.001}
        handle = self.client.submit(f"{GRAPHS}:talker", talk, stream_mode="custom")
        for part in handle.stream(timeout=120):
            if part.kind == "chunk":
                samples.latency.append(time.time() - part.data["t"])
        for chunk in talker.stream(talk, stream_mode="custom"):
            samples.local_latency.append(time.time() - chunk["t"])

    def token_throughput(self, samples: Samples) -> None:
        from bench.bench_graphs import speaker

        words = {"n": self.sizes.tokens}
        handle = self.client.submit(f"{GRAPHS}:speaker", words, stream_mode="messages")
        samples.tokens_per_s.append(tokens_per_second(
            part for part in handle.stream(timeout=300) if part.kind == "chunk"))
        samples.local_tokens_per_s.append(tokens_per_second(
            speaker.stream(words, stream_mode="messages")))

    def wait_for(self, key: str, count: int, timeout: float = 60) -> list[tuple[int, float]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = self.r.lrange(key, 0, -1)
            if len(raw) >= count:
                out = []
                for item in raw:
                    _, pid, at = item.decode().split("|")
                    out.append((int(pid), float(at)))
                return out
            time.sleep(0.005)
        raise TimeoutError(f"{key}: fewer than {count} entries after {timeout} s")


def legs(handle: Any) -> tuple[float, float]:
    """Mean (dispatch -> task finished on a worker) and (finished -> next dispatch) per step.

    From the run's event stream ids (Redis server milliseconds): the first leg is the node
    message, the worker's load/run/memo; the second is mark-done, the advance message and the
    scheduler's apply/checkpoint/plan.
    """
    events = [(int(e.id.split("-")[0]) / 1000, e.type) for e in handle.events()]
    dispatched = [at for at, kind in events if kind == "dispatched"]
    finished = [at for at, kind in events if kind == "task_finished"]
    worker = [f - d for d, f in zip(dispatched, finished, strict=False)]
    scheduler = [d - f for f, d in zip(finished, dispatched[1:], strict=False)]
    return (statistics.fmean(worker) if worker else float("nan"),
            statistics.fmean(scheduler) if scheduler else float("nan"))


def tokens_per_second(chunks: Any) -> float:
    """Chunks per second from the first chunk read to the last."""
    first = last = 0.0
    count = 0
    for _ in chunks:
        last = time.perf_counter()
        first = first or last
        count += 1
    return (count - 1) / (last - first) if count > 1 else float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def in_parallel(*calls: Any) -> None:
    errors: list[BaseException] = []

    def call(fn: Any) -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(fn,)) for fn in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(bench: Bench, samples: Samples, runs: int, elapsed: float) -> None:
    sizes = bench.sizes
    step, trip = med(samples.step), med(samples.round_trip)
    fan, grp = med(samples.fanout), med(samples.group)
    recovered, restarted = med(samples.recovered), med(samples.restarted)

    def verdict(value: float, target: float) -> str:
        return "ok" if value <= target else "MISSED"

    rows = [
        (f"(a) per superstep, chain of {sizes.chain}, sync", f"{step * 1e3:.1f} ms",
         f"{trip * 1e3:.1f} ms", f"{step / trip:.2f}", "<= 1.0", verdict(step / trip, 1.0)),
        (f"(b) superstep of {sizes.fanout} Sends vs group", f"{fan:.2f} s", f"{grp:.2f} s",
         f"{fan / grp:.2f}", "<= 0.5", verdict(fan / grp, 0.5)),
        ("(c) SIGKILL mid-node -> finished elsewhere", f"{recovered:.2f} s", "3600 s *", "",
         "<= 5 s", verdict(recovered, 5.0)),
    ]
    widths = (44, 13, 11, 7, 9, 8)
    header = ("measure", "celerygraph", "celery", "ratio", "target", "")
    print()
    print("".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in
                  enumerate(zip(header, widths, strict=True))))
    for row in rows:
        print("".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                      enumerate(zip(row, widths, strict=True))))
    lat, local = samples.latency, samples.local_latency
    print()
    print(f"(d) stream latency, writer() on a worker -> producer read ({len(lat)} chunks): "
          f"p50 {percentile(lat, 0.5) * 1e3:.2f} ms, p99 {percentile(lat, 0.99) * 1e3:.2f} ms "
          f"(aim: p50 <= 2 ms) {verdict(percentile(lat, 0.5), 0.002)}; in-process stream(): "
          f"p50 {percentile(local, 0.5) * 1e3:.3f} ms, p99 {percentile(local, 0.99) * 1e3:.3f} ms")
    tokens, local_tokens = med(samples.tokens_per_s), med(samples.local_tokens_per_s)
    print(f"(e) `messages` tokens end to end: {tokens:,.0f} chunks/s (aim: >= 20,000) "
          f"{'ok' if tokens >= 20_000 else 'MISSED'}; in-process: {local_tokens:,.0f} "
          f"chunks/s ({sizes.tokens:,} words, a token and a space each)")
    print()
    print(f"medians of {runs} run(s); each ratio = celerygraph / bare Celery, both measured in "
          "this run on the same broker and worker processes")
    print(f"(a) celery = one `delay().get()` round trip; per-step legs: dispatch -> node done "
          f"{med(samples.worker_leg) * 1e3:.1f} ms, node done -> next dispatch "
          f"{med(samples.scheduler_leg) * 1e3:.1f} ms")
    print("(b) times from submit to result, including the start and the final advance")
    print(f"(c) node re-started {restarted:.2f} s after the kill and ran "
          f"{sizes.node_seconds:.1f} s again (kill {sizes.kill_after:.1f} s into the node; "
          f"{len(samples.recovered)} kill(s))")
    print(f"    * a Redis broker's own redelivery of the unacked message waits for its "
          f"visibility timeout: {int(float(VISIBILITY_TIMEOUT))} s (one hour) by default")
    print()
    print(f"configuration: {bench.workers} node workers x concurrency {bench.concurrency} "
          f"(prefork, prefetch 1, late acks) serving both sides from queue 'nodes'; "
          f"1 scheduler (threads x 4); {os.cpu_count()} CPUs")
    print(f"  redis-server on 127.0.0.1:{bench.redis.port} (broker, store and the peer's "
          f"result backend; no persistence); lease {LEASE_SECONDS} s, sweep {SWEEP_SECONDS} s, "
          f"visibility timeout {VISIBILITY_TIMEOUT} s")
    print(f"  whole bench: {elapsed:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true",
                        help="one run, smaller sizes (a CI smoke, under a minute)")
    parser.add_argument("--workers", type=int, default=2, help="node worker processes (>= 2)")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size of each worker")
    args = parser.parse_args()
    if args.workers < 2:
        parser.error("--workers must be at least 2: a killed node must finish elsewhere")
    sizes = Sizes()
    runs = args.runs
    if args.quick:
        runs = 1
        sizes = Sizes(chain=10, fanout=100, chunks=100, tokens=500)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cg-bench-") as tmp:
        bench = Bench(Path(tmp), args.workers, args.concurrency, sizes)
        try:
            bench.start()
            print(f"cluster up in {time.perf_counter() - began:.1f} s; warming up", flush=True)
            bench.warm_up()
            samples = Samples()
            for i in range(runs):
                bench.chain(samples)
                bench.fan_out(samples)
                bench.stream_latency(samples)
                bench.token_throughput(samples)
                print(f"run {i + 1}/{runs}: step {samples.step[-1] * 1e3:.1f} ms vs "
                      f"{samples.round_trip[-1] * 1e3:.1f} ms; fan-out "
                      f"{samples.fanout[-1]:.2f} s vs {samples.group[-1]:.2f} s", flush=True)
            for i in range(runs):
                bench.crash(samples)
                print(f"kill {i + 1}/{runs}: finished elsewhere "
                      f"{samples.recovered[-1]:.2f} s after SIGKILL", flush=True)
            report(bench, samples, runs, time.perf_counter() - began)
        finally:
            with contextlib.suppress(Exception):
                bench.stop()


if __name__ == "__main__":
    main()
