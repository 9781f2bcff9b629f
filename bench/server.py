"""`celerygraph serve` vs the reference server (`langgraph dev`), side by side in one run,
the same 3-node graph (`bench/server_graphs.py`), the same `langgraph-sdk` client calls:

(a) runs per second through `runs.wait` (stateless), `--concurrency` client threads at once
    (aim: >= 1.0x the reference with two workers);
(b) time to the first streamed chunk (`runs.stream`, `updates`): from the call to the first
    event after `metadata`, median of `--streams` runs one after another (aim: <= 2x).

Ours: a private redis-server (never 6379), `--workers` node workers, a scheduler and the
server, all on loopback. The reference: `langgraph dev` from langgraph-cli with
langgraph-runtime-inmem (`--langgraph`, default `langgraph` on PATH; it is not in
`make venv`: `pip install "langgraph-cli[inmem]"` into any venv with LangGraph), its
defaults otherwise. Without it, its column says why it did not run.

Both servers are up at once and measured in turns (`--rounds`: each measure is split into
that many rounds, ours then the reference's in each): on a machine shared with other work,
a burst of it then falls on both sides rather than on whichever ran at the time.

Usage: python bench/server.py [--runs N] [--concurrency C] [--streams S] [--workers W]
                              [--rounds R] [--langgraph PATH] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from langgraph_sdk import get_sync_client  # noqa: E402

from scheduler.localcluster import LocalCluster, RedisProcess, free_port  # noqa: E402

GRAPH = "three"  # an attribute name both servers accept as the assistant
EXPECTED = {"log": ["one", "two", "three"]}


@contextlib.contextmanager
def ours(workdir: Path, workers: int) -> Iterator[str]:
    redis_server = RedisProcess(workdir / "redis").start()
    cluster = LocalCluster(workdir / "cluster", redis_server.url, graphs="bench.server_graphs")
    try:
        for i in range(workers):
            cluster.start_worker(f"bench-w{i}", concurrency=2)
        cluster.start_scheduler()
        port = free_port()
        cluster.start_server(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        cluster.stop()
        redis_server.stop()


@contextlib.contextmanager
def reference(workdir: Path, langgraph: str) -> Iterator[str]:
    config = workdir / "langgraph.json"
    config.write_text(json.dumps({
        "dependencies": [str(ROOT / "bench")],
        "graphs": {GRAPH: f"{ROOT / 'bench' / 'server_graphs_langgraph.py'}:three"},
    }))
    port = free_port()
    log = open(workdir / "langgraph-dev.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([langgraph, "dev", "--no-browser", "--no-reload", "--port",
                             str(port), "--config", str(config)], cwd=workdir, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("langgraph dev did not start:\n"
                                   + (workdir / "langgraph-dev.log").read_text()[-2000:])
            time.sleep(0.2)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


class Side:
    """One server under measurement: its clients, kept across rounds, and what they took."""

    def __init__(self, url: str, concurrency: int) -> None:
        self.clients = [get_sync_client(url=url) for _ in range(concurrency)]
        self.runs = 0
        self.seconds = 0.0
        self.first_chunks: list[float] = []
        for i in range(concurrency):  # warm up: imports, connections
            self.wait(i)
        for _ in range(2):
            self.first_chunk()

    def wait(self, i: int) -> None:
        out = self.clients[i % len(self.clients)].runs.wait(None, GRAPH, input={"log": []})
        assert out == EXPECTED, out

    def throughput_round(self, runs: int) -> None:
        """`runs` runs through `runs.wait`, all the clients at once."""
        started = time.perf_counter()
        with ThreadPoolExecutor(len(self.clients)) as pool:
            list(pool.map(self.wait, range(runs)))
        self.seconds += time.perf_counter() - started
        self.runs += runs

    def first_chunk(self) -> float:
        """Seconds from `runs.stream` to its first event after `metadata`."""
        started = time.perf_counter()
        for part in self.clients[0].runs.stream(None, GRAPH, input={"log": []},
                                                stream_mode="updates"):
            if part.event != "metadata":
                return time.perf_counter() - started
        raise AssertionError("the stream ended without a chunk")

    def first_chunk_round(self, streams: int) -> None:
        self.first_chunks += [self.first_chunk() for _ in range(streams)]

    @property
    def rate(self) -> float:
        return self.runs / self.seconds

    @property
    def first_chunk_median(self) -> float:
        return statistics.median(self.first_chunks)


def shares(total: int, rounds: int) -> list[int]:
    """`total` split into `rounds` near-equal parts, none empty."""
    rounds = max(1, min(rounds, total))
    return [total // rounds + (1 if i < total % rounds else 0) for i in range(rounds)]


def measure_in_turns(sides: list[Side], args: argparse.Namespace) -> None:
    for runs in shares(args.runs, args.rounds):
        for side in sides:
            side.throughput_round(runs)
    for streams in shares(args.streams, args.rounds):
        for side in sides:
            side.first_chunk_round(streams)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5,
                        help="turns each measure is split into, ours then the reference's")
    parser.add_argument("--langgraph", default=shutil.which("langgraph") or "langgraph")
    parser.add_argument("--quick", action="store_true", help="a few runs: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.concurrency, args.streams, args.rounds = 10, 2, 3, 2
    load_before = os.getloadavg()[0]
    why = ""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as up:
        mine = Side(up.enter_context(ours(Path(tmp) / "ours", args.workers)),
                    args.concurrency)
        theirs: Side | None = None
        if shutil.which(args.langgraph) is None:
            why = f"not run: {args.langgraph!r} not found (pip install 'langgraph-cli[inmem]')"
        else:
            (Path(tmp) / "ref").mkdir()
            try:
                theirs = Side(up.enter_context(reference(Path(tmp) / "ref", args.langgraph)),
                              args.concurrency)
            except RuntimeError as exc:
                why = f"not run: {str(exc).splitlines()[0]}"
        measure_in_turns([mine] if theirs is None else [mine, theirs], args)
    print(f"{args.runs} runs.wait, {args.concurrency} at once; first chunk: median of "
          f"{args.streams}; {args.workers} workers; in {args.rounds} rounds, the two servers "
          f"in turns; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
          f"(on {os.cpu_count()} cores: other work skews both)")
    print(f"{'measure':<34}{'celerygraph':>14}{'reference':>14}{'ratio':>10}")
    rows = [("runs/s (runs.wait, 3 nodes)", mine.rate, theirs.rate if theirs else None,
             "aim >= 1.0"),
            ("first streamed chunk, ms", mine.first_chunk_median * 1000,
             theirs.first_chunk_median * 1000 if theirs else None, "aim <= 2.0")]
    for name, ours_, other, aim in rows:
        if other is None:
            print(f"{name:<34}{ours_:>14.1f}{why:>14}")
        else:
            print(f"{name:<34}{ours_:>14.1f}{other:>14.1f}{ours_ / other:>9.2f}x  ({aim})")


if __name__ == "__main__":
    main()
