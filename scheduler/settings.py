"""Configuration from environment variables, read once; the same names everywhere.

CELERYGRAPH_BROKER_URL         Celery broker, Redis or RabbitMQ (redis://127.0.0.1:6379/0)
CELERYGRAPH_STORE_URL          Redis for checkpoints, memos and runs (the broker if Redis);
                               redis+cluster://host:port[,host:port...]/0 for a Redis Cluster
CELERYGRAPH_GRAPHS             comma-separated modules whose graphs workers may run
CELERYGRAPH_NODE_QUEUE         default queue of node tasks (nodes)
CELERYGRAPH_SCHEDULER_QUEUE    queue of start-run and advance tasks (scheduler)
CELERYGRAPH_LEASE_SECONDS      a running task's heartbeat lifetime (2.0)
CELERYGRAPH_SWEEP_SECONDS      how often lost work is looked for (0.5)
CELERYGRAPH_VISIBILITY_TIMEOUT Redis broker redelivery of unacked messages (3600)
CELERYGRAPH_RUN_TTL            seconds a finished thread's keys live (unset: forever)
CELERYGRAPH_MAX_VALUE_BYTES    largest stored state value, task write or run input (16 MiB)
CELERYGRAPH_CHAIN_IN_PLACE     run a step's lone next task in the worker that finished the step,
                               when it is bound for the same queue (1; 0: one message per node)
CELERYGRAPH_STEP_MESSAGES      most messages one superstep sends to a queue; more tasks than this
                               go several to a message (64)
CELERYGRAPH_STREAM_MAX_LEN     most entries a run's chunk stream keeps, the oldest trimmed (100000)
CELERYGRAPH_STREAM_TTL         seconds a run's chunk stream lives once the run settled (3600)
CELERYGRAPH_METRICS_PORT       port of this worker or scheduler process's Prometheus /metrics
                               (unset: no metrics); processes on one host need one each
CELERYGRAPH_TASK_EVENTS        Celery task events, a Flower row per node run (1; 0: none, three
                               Redis PUBLISHes fewer per node for a deployment without Flower)

Each entry point (a worker's or the scheduler's Celery app, a Client, the CLI) reads them
once, through `Settings.from_env()`, and passes the result down. The fault suite's
CELERYGRAPH_FAULTS is read by the Celery entry points alone (`scheduler.faults`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from graphdef.redis_client import is_cluster_url, mask_password
from scheduler.faults import Faults


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    return float(raw) if raw else default


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """1 or 0; anything else is refused, not read as one or the other."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw not in ("0", "1"):
        raise ValueError(f"{name}={raw!r}: expected 1 or 0")
    return raw == "1"


def is_redis_url(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


@dataclass(frozen=True)
class Settings:
    broker_url: str
    store_url: str
    graph_modules: tuple[str, ...] = field(default_factory=tuple)
    node_queue: str = "nodes"
    scheduler_queue: str = "scheduler"
    lease_seconds: float = 2.0
    sweep_seconds: float = 0.5
    visibility_timeout: float = 3600.0
    run_ttl: float | None = None
    max_value_bytes: int = 16 * 1024 * 1024
    chain_in_place: bool = True
    step_messages: int = 64
    metrics_port: int | None = None
    stream_max_len: int = 100_000
    stream_ttl: float = 3600.0
    task_events: bool = True
    faults: Faults = field(default_factory=Faults)

    @property
    def redis_broker_url(self) -> str | None:
        """The broker's URL when it is Redis, whose queues are lists anyone can measure."""
        return self.broker_url if is_redis_url(self.broker_url) else None

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.__dict__.items() if k not in ("broker_url", "store_url")}
        return (f"Settings(broker_url={mask_password(self.broker_url)!r}, "
                f"store_url={mask_password(self.store_url)!r}, "
                + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings `env` (this process's environment by default) gives a process
        started with it."""
        env = os.environ if env is None else env
        broker = env.get("CELERYGRAPH_BROKER_URL", "redis://127.0.0.1:6379/0")
        if is_cluster_url(broker):
            raise ValueError(
                f"CELERYGRAPH_BROKER_URL={mask_password(broker)}: Celery cannot use a Redis "
                "Cluster as its broker; give it a single Redis or RabbitMQ (the store, "
                "CELERYGRAPH_STORE_URL, may be a cluster)")
        default_store = broker if is_redis_url(broker) else "redis://127.0.0.1:6379/0"
        modules = env.get("CELERYGRAPH_GRAPHS", "")
        ttl = env.get("CELERYGRAPH_RUN_TTL")
        metrics_port = env.get("CELERYGRAPH_METRICS_PORT")
        return cls(
            broker_url=broker,
            store_url=env.get("CELERYGRAPH_STORE_URL", default_store),
            graph_modules=tuple(m.strip() for m in modules.split(",") if m.strip()),
            node_queue=env.get("CELERYGRAPH_NODE_QUEUE", "nodes"),
            scheduler_queue=env.get("CELERYGRAPH_SCHEDULER_QUEUE", "scheduler"),
            lease_seconds=_float(env, "CELERYGRAPH_LEASE_SECONDS", 2.0),
            sweep_seconds=_float(env, "CELERYGRAPH_SWEEP_SECONDS", 0.5),
            visibility_timeout=_float(env, "CELERYGRAPH_VISIBILITY_TIMEOUT", 3600.0),
            run_ttl=float(ttl) if ttl else None,
            max_value_bytes=int(_float(env, "CELERYGRAPH_MAX_VALUE_BYTES", 16 * 1024 * 1024)),
            chain_in_place=env.get("CELERYGRAPH_CHAIN_IN_PLACE", "1") != "0",
            step_messages=max(1, int(_float(env, "CELERYGRAPH_STEP_MESSAGES", 64))),
            metrics_port=int(metrics_port) if metrics_port else None,
            stream_max_len=max(1, int(_float(env, "CELERYGRAPH_STREAM_MAX_LEN", 100_000))),
            stream_ttl=_float(env, "CELERYGRAPH_STREAM_TTL", 3600.0),
            task_events=_flag(env, "CELERYGRAPH_TASK_EVENTS", True),
        )
