"""Prometheus metrics of runs, supersteps, nodes and the sweeper, served by each worker and
scheduler process on `CELERYGRAPH_METRICS_PORT`.

Celery's prefork pool runs tasks in child processes, each with counters of its own. With
prometheus_client's multiprocess mode every process writes its samples to files in
`PROMETHEUS_MULTIPROC_DIR`, which the main process sums when it is scraped. prometheus_client
picks its storage when it is first imported, so this module imports it only inside functions
and `serve` chooses the directory at `worker_init`, before the pool forks.

Only a process tree whose worker serves metrics records them: elsewhere (producers, a worker
without the setting) each event costs one global check. Counting costs a few increments in
memory; queue depth and active runs are read when scraped (an LLEN per queue, one SCARD),
never on a run's path.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

import redis
from celery import Celery

from scheduler import registry
from scheduler.settings import Settings
from scheduler.store import RunStore

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Nodes run from milliseconds (a state update) to many minutes (a model call).
NODE_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 60, 300, 900, 3600)
SWEEP_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 1, 5)


class _Metrics:
    """The metric objects of one process, made on its first event (in a pool child, after
    the fork, so each child writes files of its own)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.runs_started: Counter = Counter(
            "celerygraph_runs_started", "Runs a driver started", ["graph"])
        self.runs_ended: Counter = Counter(
            "celerygraph_runs_ended",
            "Runs that ended or paused, by status (done, failed, interrupted, rejected)",
            ["graph", "status"])
        self.supersteps: Counter = Counter(
            "celerygraph_supersteps", "Supersteps dispatched to workers", ["graph"])
        self.node_seconds: Histogram = Histogram(
            "celerygraph_node_duration_seconds",
            "Time a node task ran on a worker, by outcome (finished, failed, interrupted, "
            "skipped: its memo was saved already)",
            ["graph", "node", "outcome"], buckets=NODE_BUCKETS)
        self.lease_expiries: Counter = Counter(
            "celerygraph_lease_expiries",
            "Node tasks the sweeper found started, unfinished and with a lapsed lease")
        self.redispatches: Counter = Counter(
            "celerygraph_redispatches",
            "Messages the sweeper sent again, by kind (node, advance, start)", ["kind"])
        self.sweep_seconds: Histogram = Histogram(
            "celerygraph_sweep_duration_seconds", "Time one sweep for lost work took",
            buckets=SWEEP_BUCKETS)


_serving = False  # set by `serve` in a worker's main process; pool children inherit it
_lock = threading.Lock()
_metrics: _Metrics | None = None


def _get() -> _Metrics | None:
    global _metrics
    if not _serving:
        return None
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


def run_started(graph: str) -> None:
    if m := _get():
        m.runs_started.labels(graph).inc()


def run_ended(graph: str, status: str) -> None:
    if m := _get():
        m.runs_ended.labels(graph, status).inc()


def superstep(graph: str) -> None:
    if m := _get():
        m.supersteps.labels(graph).inc()


def node_ran(graph: str, node: str, outcome: str, seconds: float) -> None:
    if m := _get():
        m.node_seconds.labels(graph, node, outcome).observe(seconds)


def lease_expired() -> None:
    if m := _get():
        m.lease_expiries.inc()


def redispatched(kind: str) -> None:
    if m := _get():
        m.redispatches.labels(kind).inc()


def swept(seconds: float) -> None:
    if m := _get():
        m.sweep_seconds.observe(seconds)


class Backlog:
    """Queue depth and active runs, read from the broker and the run store when scraped.

    Every process that serves metrics reports them, the same numbers: aggregate them with
    `max`, not `sum`. The queues are the settings' two and those the loaded graphs name; a
    queue only a submit-time route names is not seen.
    """

    def __init__(self, settings: Settings, app: Celery, store: RunStore) -> None:
        self.settings = settings
        self.app = app
        self.store = store
        url = settings.redis_broker_url
        self.redis_broker = redis.Redis.from_url(url) if url else None

    def queues(self) -> list[str]:
        named = {node.queue for graph in registry.known().values()
                 for node in graph.nodes.values() if node.queue}
        return sorted({self.settings.node_queue, self.settings.scheduler_queue} | named)

    def depths(self, queues: Iterable[str]) -> Iterator[tuple[str, int]]:
        if self.redis_broker is not None:
            with self.redis_broker.pipeline(transaction=False) as pipe:
                names = list(queues)
                for queue in names:
                    pipe.llen(queue)
                yield from zip(names, (int(n) for n in pipe.execute()), strict=True)
            return
        # RabbitMQ: a passive declare reports a queue's ready messages without creating it.
        with self.app.connection_for_read() as conn:
            channel: Any = conn.default_channel  # an AMQP channel, typed by kombu as any
            for queue in queues:
                try:
                    declared = channel.queue_declare(queue=queue, passive=True)
                except Exception:  # noqa: BLE001 - not declared yet: nothing to report
                    continue
                yield queue, int(declared.message_count)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily("celerygraph_queue_depth",
                                  "Messages waiting in a queue (read from the broker)",
                                  labels=["queue"])
        try:
            for queue, count in self.depths(self.queues()):
                depth.add_metric([queue], count)
        except Exception:  # noqa: BLE001 - a broker outage must not fail the whole scrape
            log.warning("metrics: could not read queue depths from the broker", exc_info=True)
        yield depth
        try:
            active = self.store.active_run_count()
        except redis.RedisError:
            log.warning("metrics: could not read active runs from the store", exc_info=True)
            return
        yield GaugeMetricFamily("celerygraph_active_runs",
                                "Runs not ended yet (read from the run store)", value=active)


def serve(settings: Settings, app: Celery, store: RunStore) -> None:
    """Start this worker's /metrics on `settings.metrics_port`, and record from now on in it
    and in the pool children it forks later.

    A port already taken is logged and leaves the worker running without metrics: a second
    process on a host with the same port must not stop nodes from running.
    """
    global _serving
    if settings.metrics_port is None:
        return
    try:
        directory = _multiprocess_dir()
    except OSError as exc:
        log.error("metrics: cannot write samples to PROMETHEUS_MULTIPROC_DIR (%s); this "
                  "process serves no metrics and runs nodes as usual", exc)
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    scraped = CollectorRegistry()
    MultiProcessCollector(scraped, path=directory)  # type: ignore[no-untyped-call]
    # The registry only calls `collect` on what it is given.
    scraped.register(cast("Collector", Backlog(settings, app, store)))
    try:
        start_http_server(settings.metrics_port, registry=scraped)
    except OSError as exc:
        log.error("metrics: cannot listen on port %d (CELERYGRAPH_METRICS_PORT): %s; this "
                  "process serves no metrics and runs nodes as usual. Give each process on "
                  "a host a port of its own.", settings.metrics_port, exc)
        return
    _serving = True
    log.info("metrics: serving /metrics on port %d", settings.metrics_port)


def _multiprocess_dir() -> str:
    """The directory every process of this worker writes its samples to: the operator's
    PROMETHEUS_MULTIPROC_DIR, else a fresh one, removed when this process exits (a directory
    left by an earlier process would add its counts to ours)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="celerygraph-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        _remove_at_exit(directory)
    # Checked here: a pool child finding it unusable would fail its node at the first count.
    os.makedirs(directory, exist_ok=True)
    if not os.access(directory, os.W_OK):
        raise PermissionError(f"{directory!r} is not writable")
    import prometheus_client.values as values

    # Imported before the directory was set (by a graph module, say): metric objects made
    # from now on must still write to files.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return directory


def _remove_at_exit(directory: str) -> None:
    import atexit

    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # pool children inherit the hook; only this process owns it
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
