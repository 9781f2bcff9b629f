"""The fault storm: many runs on real processes while workers, schedulers and Redis die.

`python -m tests.faults.storm --runs 300 --minutes 8` (or `make faults`) starts a private
Redis (AOF, fsync always, its own port and directory), node workers and schedulers that
load `tests.faults.storm_graphs`, and submits the runs, a bounded number at a time. While
they run it injects faults on a schedule:

- SIGKILLs a random node worker (its whole process group) about every `--kill-every`
  seconds and starts a new one; now and then a scheduler instead;
- starts some replacement workers and schedulers with `CELERYGRAPH_FAULTS`, one point each,
  so that processes die exactly at a step boundary (node started, node returned, memo saved,
  advance checkpointed);
- restarts Redis (SIGKILL or SIGTERM, then the same port and directory) `--redis-restarts`
  times, spread over the storm;
- SIGSTOPs a worker or scheduler for longer than the lease, then SIGCONTs it.

Then it checks what the design promises:

- every run finished (approval runs are resumed once interrupted) with the output and state
  of a fault-free in-process run of the same graph object (graphdef + InMemorySaver), and
  with the interrupt values that run saw; a run still unsettled at the end is *lost*;
- *memoized duplicates*: every node checks, as it starts, whether its task's writes (not just
  an interrupt) are saved already; such a start is a duplicate unless its process had just
  been SIGSTOPped (a stale copy, which README's crash table allows and reports apart);
- every extra run of a task (beyond the fault-free count) is explained by a fault that hit
  an earlier run of it: its worker SIGKILLed mid-node or less than MEMO_WINDOW after the node
  returned; its pool process killed at `node_returned` (seen as it dies, in /proc, and in the
  worker's log); its process paused; Redis down around it. A kill that lands on a process's
  later task does not count, nor does a `node_started` or `memo_saved` kill. Unexplained
  extra runs, tasks that ran less than expected, and tasks the reference run does not have
  are reported;
- nothing is left: node and scheduler queues empty, the active-runs set empty, no `lease`
  keys, no thread locks, every barrier of every settled run complete.

It prints one summary line (kills by kind, pauses, re-dispatches = `task_redispatched`
events, tasks that ran more than once and why), then the details of anything that failed,
and exits 1 if anything did. `--workdir DIR` keeps logs, the Redis AOF and `report.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import redis

from graphdef import Command, InMemorySaver
from scheduler.localcluster import ROOT, LocalCluster, RedisProcess
from scheduler.store import RunStore
from tests.faults import storm_graphs

T = TypeVar("T")

GRAPHS_MODULE = "tests.faults.storm_graphs"
NODE_POINTS = ("node_started", "node_returned", "memo_saved")
SCHEDULER_POINTS = ("advance_checkpointed",)
# A kill this long after a node returned is taken to have missed the return-to-memo window.
MEMO_WINDOW = 1.0
# A stale copy starts its node at most this long after its process was continued.
STALE_START = 1.0
_CHILD_DIED = re.compile(
    rb"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): ERROR/MainProcess\] Process '[^']+' "
    rb"pid:(\d+) exited with 'signal 9 \(SIGKILL\)'", re.MULTILINE)


@dataclass
class StormConfig:
    runs: int = 300
    minutes: float = 8.0  # the storm (faults and submissions) lasts at most this long
    settle_seconds: float = 60.0  # then runs still going get this long without new faults
    stall_seconds: float = 60.0  # the storm also ends when no run settled for this long
    quiesce_seconds: float = 20.0  # then leases may lapse and queues drain for this long
    in_flight: int = 20
    workers: int = 3
    concurrency: int = 2
    schedulers: int = 2
    kill_every: float = 1.0
    scheduler_kill_share: float = 0.12
    pause_share: float = 0.12
    redis_restarts: int = 2
    fault_workers: float = 0.5  # share of replacement processes started with a fault point
    fault_rate: float = 0.08
    lease_seconds: float = 1.5
    sweep_seconds: float = 0.25
    seed: int = 1
    workdir: str | None = None
    keep: bool = False
    verbose: bool = False


# ---- the runs -----------------------------------------------------------------------------


@dataclass
class RunSpec:
    index: int
    graph: str
    input: dict[str, Any]
    thread_id: str

    @property
    def ref(self) -> str:
        return f"{GRAPHS_MODULE}:{self.graph}"


@dataclass
class Expected:
    output: dict[str, Any]
    interrupts: list[Any]
    tasks_per_node: dict[str, int]  # distinct tasks of each node
    runs_per_task: dict[str, int]  # how often each task of the node runs fault-free


@dataclass
class RunResult:
    spec: RunSpec
    run_ids: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    interrupts: list[Any] = field(default_factory=list)
    output: Any = None
    state: Any = None
    error: str | None = None
    finished_at: float | None = None


def make_specs(count: int, seed: int) -> list[RunSpec]:
    rng = random.Random(seed)
    specs = []
    for i in range(count):
        graph = rng.choices(["pipeline", "fanout", "approval"], weights=[4, 3, 3])[0]
        run_input: dict[str, Any] = {"seed": rng.randrange(10**6), "log": []}
        if graph == "fanout":
            run_input["n"] = rng.randint(8, 12)
        specs.append(RunSpec(i, graph, run_input, f"storm-{i:04d}-{graph}"))
    return specs


def reference(spec: RunSpec) -> Expected:
    """The fault-free in-process run of the same graph object (graphdef + InMemorySaver)."""
    graph = storm_graphs.GRAPHS[spec.graph]
    config = {"configurable": {"thread_id": spec.thread_id}}
    saver = InMemorySaver()
    with storm_graphs.use_recorder(storm_graphs.MemoryRecorder()) as rec:
        output = graph.invoke(spec.input, config, checkpointer=saver)
        interrupts = [i.value for i in output.get("__interrupt__", [])]
        if interrupts:
            output = graph.invoke(Command(resume=storm_graphs.answer_for(spec.input["seed"])),
                                  config, checkpointer=saver)
    per_node: dict[str, list[int]] = defaultdict(list)
    for (_, node, _), runs in rec.counts.items():
        per_node[node].append(runs)
    for node, runs in per_node.items():
        if len(set(runs)) != 1:  # the harness compares per node: keep the graphs uniform
            raise AssertionError(f"{spec.graph}: tasks of {node} run unequally often: {runs}")
    return Expected(output, interrupts, {n: len(r) for n, r in per_node.items()},
                    {n: r[0] for n, r in per_node.items()})


# ---- processes ----------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    role: str  # "worker" or "scheduler"
    faults: str  # CELERYGRAPH_FAULTS, "" for none
    popen: subprocess.Popen[bytes]
    log: Path
    started_at: float
    ready: bool = False
    paused: tuple[float, float] | None = None  # (stopped at, continue at)
    ended_at: float | None = None
    end: str | None = None  # how it ended: sigkill, or self-kill at a fault point

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def point(self) -> str:
        return self.faults.split("=", 1)[0] if self.faults else ""


@dataclass
class FaultLog:
    """What the harness did, with wall-clock times (time.time(), as the nodes record)."""

    group_kills: dict[int, float] = field(default_factory=dict)  # pgid -> when
    pauses: dict[int, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    outages: list[tuple[float, float]] = field(default_factory=list)  # Redis down .. up again
    # Pool children that killed themselves: (pid, when, fault point, worker name).
    child_kills: list[tuple[int, float, str, str]] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)


class Storm:
    def __init__(self, config: StormConfig) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.workdir = Path(config.workdir or tempfile.mkdtemp(prefix="cg-storm-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisProcess(self.workdir / "redis", appendonly=True, tie_to_parent=False)
        self.cluster: LocalCluster | None = None
        self.procs: list[Proc] = []  # every process ever started, in order
        self.faults = FaultLog()
        self.counter = 0
        self.point_turn = 0
        # Producers (this process) do not submit while Redis is down on purpose: the storm
        # is about the engine's processes, not about a producer seeing a connection error.
        self.gate = threading.Condition()
        self.redis_up = True
        self.submitting = 0
        self.abandon = threading.Event()
        self.local = threading.local()
        self._detector: storm_graphs.RedisRecorder | None = None
        self.children: dict[int, set[int]] = {}  # worker group -> its live pool processes
        self.child_deaths: list[tuple[int, float, Proc]] = []  # seen, not yet confirmed
        self.children_seen_at = 0.0
        self.settled = 0
        self.settled_lock = threading.Lock()

    # ---- helpers ----------------------------------------------------------------------------

    def say(self, text: str) -> None:
        if self.cfg.verbose:
            print(f"[storm {time.strftime('%H:%M:%S')}] {text}", flush=True)

    def r(self) -> redis.Redis:
        return self.redis.client(socket_timeout=5, socket_connect_timeout=2)

    def retry(self, action: Callable[[], T], seconds: float = 30.0) -> T:
        deadline = time.monotonic() + seconds
        while True:
            try:
                return action()
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                if time.monotonic() > deadline or self.abandon.is_set():
                    raise
                time.sleep(0.2)

    @contextlib.contextmanager
    def producing(self) -> Iterator[None]:
        with self.gate:
            self.gate.wait_for(lambda: self.redis_up)
            self.submitting += 1
        try:
            yield
        finally:
            with self.gate:
                self.submitting -= 1
                self.gate.notify_all()

    def client(self) -> Any:
        client = getattr(self.local, "client", None)
        if client is None:
            assert self.cluster is not None
            client = self.local.client = self.cluster.client()
        return client

    # ---- processes --------------------------------------------------------------------------

    def start_proc(self, role: str, faults: str = "") -> Proc:
        assert self.cluster is not None
        self.counter += 1
        name = f"{'w' if role == 'worker' else 's'}{self.counter:03d}"
        if role == "worker":
            cmd = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", "nodes",
                   "-c", str(self.cfg.concurrency), "-P", "prefork"]
        else:
            cmd = [sys.executable, "-m", "celery", "-A", "scheduler", "worker", "-Q",
                   "scheduler", "-c", "4", "-P", "threads"]
        cmd += ["-n", f"{name}@%h", "--loglevel", "INFO", "--without-gossip",
                "--without-mingle"]
        env = {**self.cluster.env, "CELERYGRAPH_FAULTS": faults}
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, role, faults, popen, log, time.time())
        self.procs.append(proc)
        self.say(f"started {role} {name} pid {popen.pid} faults={faults or '-'}")
        return proc

    def replacement_faults(self, role: str) -> str:
        if self.rng.random() >= self.cfg.fault_workers:
            return ""
        if role == "scheduler":
            point = SCHEDULER_POINTS[0]
        else:
            point = NODE_POINTS[self.point_turn % len(NODE_POINTS)]
            self.point_turn += 1
        return f"{point}={self.cfg.fault_rate}"

    def alive(self, role: str) -> list[Proc]:
        return [p for p in self.procs if p.role == role and p.ended_at is None]

    def usable(self, role: str) -> list[Proc]:
        return [p for p in self.alive(role) if p.ready and p.paused is None]

    def maintain(self, *, faults_allowed: bool = True) -> None:
        """Notice readiness and deaths, continue paused processes, keep the counts up."""
        now = time.time()
        for proc in self.alive("worker") + self.alive("scheduler"):
            if proc.popen.poll() is not None:
                proc.ended_at = now
                if proc.role == "scheduler" and proc.point and proc.popen.returncode == -9:
                    proc.end = proc.point  # it killed itself at its fault point
                    self.faults.kinds[proc.point] += 1
                    self.faults.group_kills[proc.pid] = now
                else:
                    proc.end = f"exited {proc.popen.returncode}"
                    # Celery processes with a task in flight exit when the broker connection
                    # drops (kombu; see test_regressions): a death caused by the restart.
                    after_restart = any(down <= now <= up + 10
                                        for down, up in self.faults.outages)
                    self.faults.kinds["exit_on_redis_restart" if after_restart
                                      else "unexpected_exit"] += 1
                    self.say(f"{proc.name} exited by itself ({proc.popen.returncode})")
                continue
            if not proc.ready:
                with contextlib.suppress(OSError):
                    proc.ready = b" ready." in proc.log.read_bytes()
                if not proc.ready and now - proc.started_at > 60:
                    raise RuntimeError(f"{proc.name} not ready:\n{proc.log.read_text()[-2000:]}")
            if proc.paused and now >= proc.paused[1]:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
                self.faults.pauses[proc.pid].append((proc.paused[0], time.time()))
                self.say(f"continued {proc.name}")
                proc.paused = None
        if now - self.children_seen_at >= 0.1:
            self._watch_children(now)
        for role, want in (("worker", self.cfg.workers), ("scheduler", self.cfg.schedulers)):
            while len(self.alive(role)) < want:
                self.start_proc(role, self.replacement_faults(role) if faults_allowed else "")

    def _watch_children(self, now: float) -> None:
        """Notice pool processes that died while their worker lives: they killed themselves
        at a fault point. (The worker logs that too, but late or not at all when the whole
        worker is SIGKILLed soon after.)"""
        self.children_seen_at = now
        if not os.path.isdir("/proc"):
            return
        groups = {p.pid: p for p in self.alive("worker")
                  if p.ready and p.popen.poll() is None}
        stats: dict[int, tuple[bytes, bytes, int, int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_bytes()
            except OSError:
                continue
            comm = stat[stat.index(b"(") + 1:stat.rindex(b")")]
            state, ppid, pgid = stat[stat.rindex(b")") + 2:].split()[:3]
            stats[int(entry.name)] = (comm, state, int(ppid), int(pgid))
        current: dict[int, set[int]] = defaultdict(set)
        for pid, (comm, state, ppid, pgid) in stats.items():
            # Pool processes: forks of the worker (same command name), not helpers it ran.
            if (pgid in groups and ppid == pgid and pid != pgid and state != b"Z"
                    and comm == stats.get(pgid, (b"",))[0]):
                current[pgid].add(pid)
        for pgid, proc in groups.items():
            for pid in self.children.get(pgid, set()) - current[pgid]:
                self.child_deaths.append((pid, now, proc))
        self.children = current
        self._confirm_child_deaths(now)

    def _confirm_child_deaths(self, now: float, *, final: bool = False) -> None:
        """A pool process that died while its worker went on killed itself; one that died as
        its worker shut itself down (a Celery 'Unrecoverable error') did not."""
        pending = []
        for pid, when, proc in self.child_deaths:
            if proc.end is None and not final and now - when < 1.0:
                pending.append((pid, when, proc))
            elif proc.end is None or (proc.end == "sigkill" and when < (proc.ended_at or 0)):
                point = proc.point or "unexpected_child_death"
                self.faults.child_kills.append((pid, when, point, proc.name))
        self.child_deaths = pending

    def sigkill(self, proc: Proc) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.popen.wait()
        proc.ended_at = time.time()
        proc.end = "sigkill"
        self.faults.group_kills[proc.pid] = proc.ended_at
        self.faults.kinds[f"{proc.role}_sigkill"] += 1
        self.say(f"SIGKILLed {proc.role} {proc.name}")

    def pause(self, proc: Proc) -> None:
        seconds = self.cfg.lease_seconds + self.rng.uniform(0.5, 2.0)
        os.killpg(proc.pid, signal.SIGSTOP)
        proc.paused = (time.time(), time.time() + seconds)
        self.faults.kinds[f"{proc.role}_sigstop"] += 1
        self.say(f"SIGSTOPped {proc.role} {proc.name} for {seconds:.1f} s")

    def restart_redis(self) -> None:
        with self.gate:
            self.redis_up = False
            self.gate.wait_for(lambda: self.submitting == 0)
        hard = self.faults.kinds["redis_sigkill"] <= self.faults.kinds["redis_sigterm"]
        down = time.time()
        if hard:
            self.redis.kill()
        else:
            self.redis.stop()
        self.faults.kinds["redis_sigkill" if hard else "redis_sigterm"] += 1
        time.sleep(self.rng.uniform(0.3, 1.5))
        self.redis.start(timeout=60)
        self.faults.outages.append((down, time.time()))
        self.say(f"restarted Redis ({'SIGKILL' if hard else 'SIGTERM'}), "
                 f"down {time.time() - down:.1f} s")
        with self.gate:
            self.redis_up = True
            self.gate.notify_all()

    def inject(self) -> None:
        """One scheduled fault: mostly a worker SIGKILL, sometimes a scheduler or a pause."""
        roll = self.rng.random()
        workers, schedulers = self.usable("worker"), self.usable("scheduler")
        if roll < self.cfg.pause_share:
            pick = workers if len(workers) > 1 and self.rng.random() < 0.8 else schedulers
            if pick:
                self.pause(self.rng.choice(pick))
        elif roll < self.cfg.pause_share + self.cfg.scheduler_kill_share:
            if schedulers:
                self.sigkill(self.rng.choice(schedulers))
        elif len(workers) > 1:
            self.sigkill(self.rng.choice(workers))

    # ---- the runs ---------------------------------------------------------------------------

    def await_settled(self, handle: Any) -> str:
        while not self.abandon.is_set():
            try:
                return handle.wait(timeout=2.0)
            except TimeoutError:
                continue
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                time.sleep(0.2)
        return "lost"

    def drive(self, spec: RunSpec) -> RunResult:
        result = RunResult(spec)
        try:
            self._drive(spec, result)
        except Exception as exc:  # a harness error must show, not hang the pool
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            result.finished_at = time.time()
            with self.settled_lock:
                self.settled += 1
        return result

    def _drive(self, spec: RunSpec, result: RunResult) -> None:
        client = self.client()
        with self.producing():
            handle = client.submit(spec.ref, spec.input, thread_id=spec.thread_id)
        result.run_ids.append(handle.id)
        status = self.await_settled(handle)
        result.statuses.append(status)
        if spec.graph == "approval" and status == "interrupted":
            output = self.retry(lambda: client.store.output(spec.thread_id, handle.id))
            result.interrupts = [i.value for i in (output or {}).get("__interrupt__", [])]
            answer = storm_graphs.answer_for(spec.input["seed"])
            with self.producing():
                handle = client.resume(spec.thread_id, answer)
            result.run_ids.append(handle.id)
            status = self.await_settled(handle)
            result.statuses.append(status)
        if status == "done":
            result.output = self.retry(lambda: client.store.output(spec.thread_id, handle.id))
            result.state = self.retry(lambda: client.get_state(spec.thread_id).values)
        elif status == "failed":
            info = self.retry(handle.info)
            result.error = f"run failed: {info.get('error')}"

    # ---- the storm --------------------------------------------------------------------------

    def run(self) -> Report:
        cfg = self.cfg
        specs = make_specs(cfg.runs, cfg.seed)
        expected = {s.index: reference(s) for s in specs}
        self.redis.start()
        started = time.time()
        try:
            self.cluster = LocalCluster(
                self.workdir, self.redis.url, graphs=GRAPHS_MODULE,
                CELERYGRAPH_LEASE_SECONDS=str(cfg.lease_seconds),
                CELERYGRAPH_SWEEP_SECONDS=str(cfg.sweep_seconds),
            )
            self.maintain(faults_allowed=False)
            while not all(p.ready for p in self.alive("worker") + self.alive("scheduler")):
                time.sleep(0.05)
                self.maintain(faults_allowed=False)
            self.say(f"cluster ready in {time.time() - started:.1f} s; {cfg.runs} runs")
            results = self._storm(specs)
            quiet = self._quiesce(cfg.quiesce_seconds)
            report = self._report(specs, expected, results, quiet, time.time() - started)
            if cfg.workdir or cfg.keep:
                Path(self.workdir, "report.json").write_text(
                    json.dumps(report.as_dict(), indent=2, default=str))
            return report
        finally:
            self.abandon.set()
            for proc in self.alive("worker") + self.alive("scheduler"):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.popen.wait()
            self.redis.kill()
            if not cfg.keep and cfg.workdir is None:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _storm(self, specs: list[RunSpec]) -> list[RunResult]:
        cfg = self.cfg
        pool = ThreadPoolExecutor(cfg.in_flight, thread_name_prefix="storm-run")
        futures: list[Future[RunResult]] = [pool.submit(self.drive, s) for s in specs]
        start = time.monotonic()
        storm_end = start + cfg.minutes * 60
        next_fault = start + self._interval()
        restarts_done = 0
        next_note = start
        try:
            last_settled, last_progress = 0, start
            while not all(f.done() for f in futures) and time.monotonic() < storm_end:
                if self.settled != last_settled:
                    last_settled, last_progress = self.settled, time.monotonic()
                elif time.monotonic() - last_progress > cfg.stall_seconds:
                    self.say(f"no run settled for {cfg.stall_seconds:.0f} s")
                    break
                self.maintain()
                now = time.monotonic()
                if now >= next_fault:
                    self.inject()
                    next_fault = now + self._interval()
                with self.settled_lock:
                    progress = self.settled / len(specs)
                if self.cfg.verbose and time.monotonic() >= next_note:
                    next_note = time.monotonic() + 10
                    self.say(f"{self.settled}/{len(specs)} runs settled; "
                             f"kills so far {dict(self.faults.kinds)}")
                if (restarts_done < cfg.redis_restarts
                        and progress >= (restarts_done + 1) / (cfg.redis_restarts + 1) * 0.9):
                    self.restart_redis()
                    restarts_done += 1
                time.sleep(0.05)
            self.say(f"storm over after {time.monotonic() - start:.0f} s; settling")
            settle_end = time.monotonic() + cfg.settle_seconds
            while not all(f.done() for f in futures) and time.monotonic() < settle_end:
                for proc in self.alive("worker") + self.alive("scheduler"):
                    if proc.paused:
                        proc.paused = (proc.paused[0], 0.0)
                self.maintain(faults_allowed=False)
                time.sleep(0.05)
        finally:
            self.abandon.set()
            pool.shutdown(wait=True)
        for proc in self.alive("worker") + self.alive("scheduler"):
            if proc.paused:
                proc.paused = (proc.paused[0], 0.0)
        self.maintain(faults_allowed=False)
        return [f.result() for f in futures]

    def _interval(self) -> float:
        return self.cfg.kill_every * self.rng.uniform(0.6, 1.4)

    def _quiesce(self, seconds: float) -> dict[str, int]:
        """Wait for leases to lapse and queues to drain; return what is left."""
        deadline = time.monotonic() + seconds
        left = self._leftovers()
        while any(left.values()) and time.monotonic() < deadline:
            self.maintain(faults_allowed=False)
            time.sleep(0.25)
            left = self._leftovers()
        return left

    def _leftovers(self) -> dict[str, int]:
        r = self.r()
        queued = 0
        for pattern in ("nodes*", "scheduler*"):
            for k in r.scan_iter(match=pattern):
                if r.type(k) == b"list":
                    queued += r.llen(k)
        return {
            "queued": queued,
            "active_runs": RunStore(r).active_run_count(),
            "leases": sum(1 for _ in r.scan_iter(match="cg:{*}:lease:*")),
            "thread_locks": sum(1 for _ in r.scan_iter(match="cg:{*}:active")),
        }

    # ---- the checks -------------------------------------------------------------------------

    def _where_it_stopped(self, thread_id: str, result: RunResult) -> str:
        """A lost run's record, events and the thread's holder, for finding out why."""
        store = self.client().store
        queue = store.r.lrange(store.key(thread_id, "queue"), 0, -1)
        lines = [f"active={store.active_run(thread_id)} queue={queue}"]
        for run_id in result.run_ids or store.runs_of(thread_id):
            record = store.run(thread_id, run_id)
            lines.append(f"run {run_id}: {record.as_dict() if record else None}")
            lines.extend(f"  {e.type} {e.data}" for e in self.client().run(thread_id, run_id)
                         .events())
        return "\n    ".join(lines)

    def _report(self, specs: list[RunSpec], expected: dict[int, Expected],
                results: list[RunResult], left: dict[str, int], seconds: float) -> Report:
        r = self.r()
        report = Report(runs=len(specs), seconds=seconds, left=left, workdir=str(self.workdir))
        report.kills = Counter(self.faults.kinds)
        self._confirm_child_deaths(time.time(), final=True)
        self._child_kills()
        report.kills.update(k[2] for k in self.faults.child_kills)
        report.unacked = int(r.hlen("unacked"))
        report.fault_log = {
            "group_kills": self.faults.group_kills, "pauses": dict(self.faults.pauses),
            "outages": self.faults.outages, "child_kills": self.faults.child_kills,
            "procs": [(p.name, p.role, p.pid, p.faults, p.started_at, p.ended_at, p.end)
                      for p in self.procs],
        }
        client = self.client()
        for result in results:
            spec = result.spec
            exp = expected[spec.index]
            for run_id in result.run_ids:
                report.redispatches += sum(1 for e in client.run(spec.thread_id, run_id).events()
                                           if e.type == "task_redispatched")
            final = result.statuses[-1] if result.statuses else "lost"
            self._check_tasks(r, spec, exp, report, finished=final == "done")
            if final == "lost":
                report.lost.append(f"{spec.thread_id}: {result.statuses} {result.error or ''}"
                                   f"\n    {self._where_it_stopped(spec.thread_id, result)}")
                continue
            if final != "done" or result.error:
                report.wrong.append(f"{spec.thread_id}: {result.statuses} {result.error}")
                continue
            report.done += 1
            if result.output != exp.output or result.state != exp.output:
                report.wrong.append(f"{spec.thread_id}: output {result.output} state "
                                    f"{result.state}, expected {exp.output}")
            if result.interrupts != exp.interrupts:
                report.wrong.append(f"{spec.thread_id}: interrupts {result.interrupts}, "
                                    f"expected {exp.interrupts}")
            report.open_barriers += self._open_barriers(r, spec.thread_id, result.run_ids)
        return report

    def _memo_detector(self) -> storm_graphs.RedisRecorder:
        if self._detector is None:
            self._detector = storm_graphs.RedisRecorder(self.redis.url)
        return self._detector

    def _child_kills(self) -> None:
        """Add the pool deaths only the worker logs saw, and take the earlier of the two
        times for those both saw (the log lags when the machine is busy; /proc by <0.1 s)."""
        seen = {k[0]: i for i, k in enumerate(self.faults.child_kills)}
        for proc in self.procs:
            if proc.role != "worker":
                continue
            for when, raw_pid in _CHILD_DIED.findall(proc.log.read_bytes()):
                pid = int(raw_pid)
                at = datetime.strptime(when.decode(), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                if pid in seen:
                    known = self.faults.child_kills[seen[pid]]
                    self.faults.child_kills[seen[pid]] = (pid, min(at, known[1]), *known[2:])
                    continue
                if (proc.end or "").startswith("exited") and at > (proc.ended_at or 0) - 5:
                    continue  # the worker was shutting itself down
                point = proc.point or "unexpected_child_death"
                self.faults.child_kills.append((pid, at, point, proc.name))

    def _open_barriers(self, r: redis.Redis, thread_id: str, run_ids: list[str]) -> int:
        open_ = 0
        for run_id in run_ids:
            for k in r.scan_iter(match=f"cg:{{{thread_id}}}:step:{run_id}:*"):
                total = int(r.hget(k, "total") or 0)
                done = r.scard(k.replace(b":step:", b":done:", 1))
                if done < total or not r.hexists(k, "advance_at"):
                    open_ += 1
        return open_

    def _check_tasks(self, r: redis.Redis, spec: RunSpec, exp: Expected, report: Report,
                     *, finished: bool) -> None:
        raw_starts = r.hgetall(storm_graphs.key(spec.thread_id, "starts"))
        returns = {k: float(v) for k, v in
                   r.hgetall(storm_graphs.key(spec.thread_id, "returns")).items()}
        by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for token, raw in raw_starts.items():
            start = orjson.loads(raw)
            start["ret"] = returns.get(token)
            by_task[start["ns"]].append(start)
        detector = self._memo_detector()
        for ns in by_task if finished else ():
            # Self-test of the memo check the nodes run at their start: every task of a
            # finished run has its memo saved, so the check must say so now.
            if not storm_graphs.retrying(
                    lambda ns=ns: detector.memo_saved(spec.thread_id, ns.rsplit(":", 1)[-1])):
                report.harness.append(f"{spec.thread_id} {ns}: memo check finds no memo for a "
                                      "finished task (saver layout changed?)")
        tasks_per_node = Counter(starts[0]["node"] for starts in by_task.values())
        if finished and dict(tasks_per_node) != exp.tasks_per_node:
            report.phantom.append(f"{spec.thread_id}: tasks per node {dict(tasks_per_node)}, "
                                  f"expected {exp.tasks_per_node}")
        pid_starts: dict[int, list[float]] = defaultdict(list)
        for starts in by_task.values():
            for s in starts:
                pid_starts[s["pid"]].append(s["t"])
        for ns, starts in by_task.items():
            starts.sort(key=lambda s: s["t"])
            node = starts[0]["node"]
            want = exp.runs_per_task.get(node, 1)
            reasons = [self._disruption(s, pid_starts[s["pid"]]) for s in starts]
            for s, why in zip(starts, reasons, strict=True):
                if s["memo"]:
                    if why == "paused":
                        report.stale_copies += 1
                    else:
                        report.memo_duplicates.append(
                            f"{spec.thread_id} {ns}: started at {s['t']:.3f} (pid {s['pid']}) "
                            f"after its memo was saved; starts {self._fmt(starts, reasons)}")
            extra = len(starts) - want
            if extra < 0 and finished:
                report.missing.append(f"{spec.thread_id} {ns}: ran {len(starts)}x, want {want}")
                continue
            if extra <= 0:
                continue
            report.tasks_rerun += 1
            report.reruns.append(f"{spec.thread_id} {ns}: ran {len(starts)}x (want {want}); "
                                 f"starts {self._fmt(starts, reasons)}")
            # A kill explains a re-run only if somebody ran the task after it; a pause also
            # explains a stale copy that starts (or goes on) after its re-dispatch.
            last = len(starts) - 1
            explained = [w for i, w in enumerate(reasons) if w and (w == "paused" or i < last)]
            for why in explained[:extra]:
                report.rerun_why[why] += 1
            if extra > len(explained):
                report.unexplained.append(
                    f"{spec.thread_id} {ns}: ran {len(starts)}x (want {want}); starts "
                    f"{self._fmt(starts, reasons)}")

    @staticmethod
    def _fmt(starts: list[dict[str, Any]], reasons: list[str | None]) -> str:
        return "; ".join(
            f"t={s['t']:.3f} pid={s['pid']} pg={s['pgid']} ret="
            f"{'-' if s['ret'] is None else format(s['ret'], '.3f')} memo={s['memo']} "
            f"why={w}" for s, w in zip(starts, reasons, strict=True))

    def _disruption(self, s: dict[str, Any], same_pid_starts: list[float]) -> str | None:
        """The first fault that could have kept this run of a task from saving its memo."""
        t, ret, pid, pgid = s["t"], s["ret"], s["pid"], s["pgid"]
        end = float("inf") if ret is None else ret
        found: list[tuple[float, str]] = []

        def last_start_before(when: float) -> bool:
            # A pool process runs one task at a time: a kill hits only its latest start.
            return not any(t < other < when for other in same_pid_starts)

        killed = self.faults.group_kills.get(pgid)
        if killed is not None and killed >= t and last_start_before(killed):
            if ret is None:
                found.append((killed, "sigkill_mid_node"))
            elif killed - ret < MEMO_WINDOW:
                found.append((killed, "sigkill_after_return"))
        for child, when, point, _ in self.faults.child_kills:
            if (child == pid and point == "node_returned" and ret is not None
                    and when >= t and last_start_before(when)):
                found.append((when, "node_returned"))
        for stopped, resumed in self.faults.pauses.get(pgid, []):
            # As a kill: a pause that begins after the node returned and before its memo was
            # saved (within MEMO_WINDOW) keeps its lease from being released in time.
            if stopped <= end + MEMO_WINDOW and resumed + STALE_START >= t:
                found.append((stopped, "paused"))
        for down, up in self.faults.outages:
            if down <= end + MEMO_WINDOW and up >= t - 2 * self.cfg.lease_seconds:
                found.append((down, "redis_restart"))
        return min(found)[1] if found else None


@dataclass
class Report:
    runs: int
    seconds: float
    left: dict[str, int]
    workdir: str
    done: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    redispatches: int = 0
    unacked: int = 0
    open_barriers: int = 0
    tasks_rerun: int = 0
    stale_copies: int = 0
    rerun_why: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    memo_duplicates: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    phantom: list[str] = field(default_factory=list)
    reruns: list[str] = field(default_factory=list)  # every task that ran more than once
    harness: list[str] = field(default_factory=list)  # the harness's own checks failed
    fault_log: dict[str, Any] = field(default_factory=dict)

    @property
    def total_kills(self) -> int:
        return sum(n for kind, n in self.kills.items() if "sigstop" not in kind)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.wrong or self.memo_duplicates or self.unexplained
                    or self.missing or self.phantom or self.harness or any(self.left.values())
                    or self.open_barriers)

    def summary(self) -> str:
        kills = " ".join(f"{k}={v}" for k, v in sorted(self.kills.items())
                         if v and "sigstop" not in k)
        pauses = sum(v for k, v in self.kills.items() if "sigstop" in k)
        why = " ".join(f"{k}={v}" for k, v in sorted(self.rerun_why.items()))
        left = " ".join(f"{k}={v}" for k, v in self.left.items())
        return (
            f"storm: runs={self.runs} done={self.done} lost={len(self.lost)} "
            f"wrong={len(self.wrong)} | kills={self.total_kills} ({kills}) pauses={pauses} | "
            f"redispatches={self.redispatches} | memoized_duplicates={len(self.memo_duplicates)}"
            f" | tasks_run_more_than_once={self.tasks_rerun} ({why}) "
            f"unexplained={len(self.unexplained)} stale_copies_after_sigstop="
            f"{self.stale_copies} | left: {left} open_barriers={self.open_barriers} "
            f"unacked_messages={self.unacked} | {self.seconds:.0f}s"
            + (f" | HARNESS ERRORS={len(self.harness)}" if self.harness else "")
        )

    def details(self) -> str:
        out = []
        for name in ("lost", "wrong", "memo_duplicates", "unexplained", "missing", "phantom",
                     "harness"):
            items = getattr(self, name)
            if items:
                out.append(f"{name} ({len(items)}):")
                out.extend(f"  {item}" for item in items[:20])
        return "\n".join(out)

    def as_dict(self) -> dict[str, Any]:
        data = {k: dict(v) if isinstance(v, Counter) else v for k, v in vars(self).items()}
        data["ok"] = self.ok
        data["summary"] = self.summary()
        return data


def run_storm(config: StormConfig) -> Report:
    return Storm(config).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.storm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = StormConfig()
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true")
        elif value is None:
            parser.add_argument(flag, dest=name, default=None)
        else:
            parser.add_argument(flag, dest=name, type=type(value), default=value)
    args = parser.parse_args(argv)
    config = StormConfig(**vars(args))
    report = run_storm(config)
    print(report.summary())
    if details := report.details():
        print(details)
    if config.workdir or config.keep:
        print(f"logs, Redis AOF and report.json in {report.workdir}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
