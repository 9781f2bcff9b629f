"""The differential scenarios' api, with every compiled graph run distributed.

``InProcessCluster`` runs a private ``redis-server`` (broker and store) and a real Celery
worker in a thread of the test process, consuming both the node queue and the scheduler
queue, with the sweeper beside it. Scenario graphs are closures over in-memory counters, so
the worker must share the test process's memory: the ``threads`` pool runs every node task
and scheduler task in this process.

``distributed_api(cluster)`` is ``load_api("graphdef")`` with ``StateGraph.compile()`` and
``@entrypoint`` wrapped: the compiled graph is registered in the in-process graph registry
under a unique reference, and its top-level ``invoke`` goes through ``scheduler.Client``
(submit, resume, wait, result). ``get_state`` and ``get_state_history`` read the Redis
saver. A call inside a running node (a subgraph invoked by a node) stays in-process, as it
does on a worker.

Features that have no distributed counterpart raise ``NotSupportedDistributed``, a
``BaseException`` so that scenarios' ``outcome()`` (which records ``Exception`` names) does
not swallow it; the test turns it into a skip.
"""

from __future__ import annotations

import builtins
import itertools
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace
from typing import Any

import graphdef
import graphdef.prebuilt
from graphdef import errors as graph_errors
from graphdef.checkpoint.base import BaseCheckpointSaver
from graphdef.func import EntrypointGraph
from graphdef.runtime import current_runtime_or_none
from graphdef.types import Command

from ..redis_server import redis_server
from .apis import NAMES, PREBUILT

RESULT_TIMEOUT = 60.0
REF_MODULE = "tests.differential.distributed"


class NotSupportedDistributed(BaseException):  # noqa: N818 - a skip signal, not an error
    """A scenario uses a feature that has no meaning for a distributed run."""


# ---- the cluster: private Redis, in-process Celery worker, sweeper ------------------------


class InProcessCluster:
    """What a distributed run needs, all in this process except ``redis-server``."""

    def __init__(self, settings: Any, client: Any, worker: Any, sweeper: Any) -> None:
        self.settings = settings
        self.client = client
        self.worker = worker
        self.sweeper = sweeper
        self._lock = threading.Lock()
        self._graph_counter = itertools.count()

    def next_ref(self) -> str:
        with self._lock:
            return f"{REF_MODULE}:graph{next(self._graph_counter)}"


@contextmanager
def in_process_cluster(concurrency: int = 4) -> Iterator[InProcessCluster]:
    """A private Redis, a Celery worker thread on a worker app and a sweeper."""
    with ExitStack() as stack:
        server = stack.enter_context(redis_server())
        url = server.url
        from celery.contrib.testing.worker import start_worker

        from scheduler import resources as resources_module
        from scheduler.client import Client
        from scheduler.settings import Settings
        from scheduler.sweeper import Sweeper
        from worker.celery_app import create_app

        settings = Settings(broker_url=url, store_url=url, lease_seconds=1.5, sweep_seconds=0.25)
        # The worker app runs the node tasks and the scheduler's start-run and advance tasks;
        # they send their follow-up messages through that same app.
        app = create_app(settings)
        res = resources_module.resources(settings)

        # celery.contrib.testing.worker.start_worker is what pytest-celery's
        # `celery.contrib.pytest` `celery_worker` fixture uses: a real WorkController in a
        # thread. The threads pool keeps node tasks in this process (shared memory);
        # concurrency > 1 so that parallel branches run in parallel, as on a real cluster.
        # No ping check: the app has no result backend.
        worker_controller = stack.enter_context(
            start_worker(
                app,
                pool="threads",
                concurrency=concurrency,
                queues=[settings.node_queue, settings.scheduler_queue],
                perform_ping_check=False,
                loglevel="WARNING",
                shutdown_timeout=30.0,
            )
        )
        # The sweeper starts on `worker_ready`, which the test WorkController never sends
        # (the `celery worker` command's Worker class does): start it here.
        sweeper = Sweeper(res, app)
        sweeper.start()
        stack.callback(sweeper.stop)
        yield InProcessCluster(settings, Client(settings, app=app), worker_controller, sweeper)


# ---- errors ---------------------------------------------------------------------------------

_ERROR_CLASSES: dict[str, type[Exception]] = {}
_GRAPH_ERRORS = {
    name: value
    for name, value in vars(graph_errors).items()
    if isinstance(value, type) and issubclass(value, Exception)
}


def error_class(name: str) -> type[Exception]:
    """An exception class called ``name``: a builtin or graphdef one, else one made up."""
    known = getattr(builtins, name, None) or _GRAPH_ERRORS.get(name)
    if isinstance(known, type) and issubclass(known, Exception):
        return known
    return _ERROR_CLASSES.setdefault(name, type(name, (Exception,), {}))


def run_error(failure: Exception) -> tuple[str, str]:
    """A failed run's (error type, message)."""
    error = getattr(failure, "error", {}) or {}
    return str(error.get("type", "Exception")), str(error.get("message", ""))


def revive(failure: Exception) -> Exception:
    """A failed run's error as an exception of the node's error type (compared by name)."""
    name, message = run_error(failure)
    try:
        return error_class(name)(message)
    except Exception:  # a class whose constructor wants other arguments: keep the name
        return type(name, (Exception,), {})(message)


# ---- graphs that run distributed ------------------------------------------------------------


class Binding:
    """How one compiled graph runs distributed: its reference and its threads' prefix."""

    def __init__(self, api: DistributedApi, ref: str, prefix: str) -> None:
        self.api = api
        self.ref = ref
        self.prefix = prefix
        self._anonymous = itertools.count()

    def thread_id(self, config: dict[str, Any] | None) -> str:
        conf = (config or {}).get("configurable") or {}
        if conf.get("checkpoint_id"):
            raise NotSupportedDistributed(
                "time travel (invoke or update_state from a checkpoint_id) is not a "
                "distributed operation: Client.submit always continues a thread's head"
            )
        if conf.get("thread_id") is None:
            # No thread: LangGraph keeps nothing; a run needs a thread of its own here.
            return f"{self.prefix}anonymous-{next(self._anonymous)}"
        thread_id = str(conf["thread_id"])
        # A config read back from get_state (a subgraph's, from `tasks[i].state`) already
        # names the stored thread.
        return thread_id if thread_id.startswith(self.prefix) else f"{self.prefix}{thread_id}"

    def state_config(self, config: dict[str, Any]) -> dict[str, Any]:
        conf = dict(config.get("configurable") or {})
        conf["thread_id"] = self.thread_id(config)
        return {**config, "configurable": conf}


class DistributedGraph:
    """Mixed into a compiled graph's class: top-level calls go through the cluster."""

    _binding: Binding

    def _top_level(self, checkpointer: Any = None) -> bool:
        """False inside a running node (a subgraph call) or for the engine's own calls,
        which pass the saver."""
        return current_runtime_or_none() is None and checkpointer is None

    def invoke(
        self,
        input: Any,
        config: dict[str, Any] | None = None,
        *,
        stream_mode: str = "values",
        durability: str | None = None,
        interrupt_before: Any = None,
        interrupt_after: Any = None,
        context: Any = None,
    ) -> Any:
        if not self._top_level():
            return super().invoke(  # type: ignore[misc]
                input,
                config,
                stream_mode=stream_mode,
                durability=durability,
                interrupt_before=interrupt_before,
                interrupt_after=interrupt_after,
                context=context,
            )
        if stream_mode != "values":
            raise NotSupportedDistributed("invoke(stream_mode=...) streams chunks")
        if interrupt_before is not None or interrupt_after is not None:
            raise NotSupportedDistributed(
                "interrupt_before/after passed to invoke: a distributed run takes the "
                "graph's compiled static interrupts only"
            )
        binding = self._binding
        client = binding.api.cluster.client
        thread_id = binding.thread_id(config)
        run_config = {k: v for k, v in (config or {}).items()
                      if k in ("recursion_limit", "metadata")}
        if extra := {k: v for k, v in ((config or {}).get("configurable") or {}).items()
                     if k != "thread_id"}:
            run_config["configurable"] = extra
        mode = durability or "async"
        if isinstance(input, Command) and input.resume is not None:
            # Client.resume checks the answer against the pending interrupts, then submits
            # the whole command (an update or goto beside the resume goes with it).
            handle = client.resume(thread_id, input, durability=mode, context=context)
        else:
            handle = client.submit(
                binding.ref, input, thread_id=thread_id, durability=mode,
                config=run_config or None, context=context,
            )
        from scheduler.errors import RunFailedError

        try:
            return handle.result(timeout=RESULT_TIMEOUT)
        except RunFailedError as failure:
            raise revive(failure) from failure

    def stream(self, input: Any, config: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if not self._top_level(kwargs.get("checkpointer")):
            return super().stream(input, config, **kwargs)  # type: ignore[misc]
        raise NotSupportedDistributed(
            "stream(): a distributed run reports progress as run events, not stream chunks"
        )

    def get_state(self, config: dict[str, Any], *, subgraphs: bool = False,
                  checkpointer: Any = None) -> Any:
        if self._top_level(checkpointer):
            config = self._binding.state_config(config)
            checkpointer = self._binding.api.cluster.client.saver
        return super().get_state(  # type: ignore[misc]
            config, subgraphs=subgraphs, checkpointer=checkpointer)

    def get_state_history(self, config: dict[str, Any], **kwargs: Any) -> Any:
        if self._top_level(kwargs.get("checkpointer")):
            config = self._binding.state_config(config)
            kwargs["checkpointer"] = self._binding.api.cluster.client.saver
        return super().get_state_history(config, **kwargs)  # type: ignore[misc]

    def update_state(self, config: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if not self._top_level():
            return super().update_state(config, *args, **kwargs)  # type: ignore[misc]
        raise NotSupportedDistributed(
            "update_state: the producers' API has no state edits (Client has no update_state)"
        )


_CLASSES: dict[type, type] = {}


def distributed_class(base: type) -> type:
    cls = _CLASSES.get(base)
    if cls is None:
        cls = _CLASSES[base] = type(f"Distributed{base.__name__}", (DistributedGraph, base), {})
    return cls


class DistributedApi:
    """Binds compiled graphs to the cluster; one per scenario run, so threads are its own."""

    def __init__(self, cluster: InProcessCluster) -> None:
        self.cluster = cluster
        self.run_prefix = uuid.uuid4().hex[:12]
        self._savers: dict[int, tuple[Any, str]] = {}
        self._count = itertools.count()

    def _prefix(self, saver: Any) -> str:
        """Threads live per saver, as in LangGraph: graphs sharing one share threads."""
        if not isinstance(saver, BaseCheckpointSaver):
            return f"{self.run_prefix}-g{next(self._count)}-"
        kept = self._savers.get(id(saver))
        if kept is None:
            kept = self._savers[id(saver)] = (saver, f"{self.run_prefix}-s{next(self._count)}-")
        return kept[1]

    def bind(self, graph: Any, saver: Any) -> Any:
        from scheduler import registry

        # The scenario's InMemorySaver is not used: runs checkpoint in the cluster's Redis.
        graph.checkpointer = None
        ref = self.cluster.next_ref()
        registry.register(ref, graph)
        graph.__class__ = distributed_class(type(graph))
        graph._binding = Binding(self, ref, self._prefix(saver))
        return graph

    def namespace(self) -> SimpleNamespace:
        api = self

        class StateGraph(graphdef.StateGraph):
            def compile(self, checkpointer: Any = None, **kwargs: Any) -> Any:
                return api.bind(super().compile(checkpointer, **kwargs), checkpointer)

        class entrypoint(graphdef.entrypoint):  # noqa: N801 - LangGraph's name
            def __call__(self, func: Any) -> EntrypointGraph:
                return api.bind(super().__call__(func), self.checkpointer)

        def sqlite_saver(path: str) -> Any:
            raise NotSupportedDistributed(
                "SqliteSaver across processes: distributed runs checkpoint in Redis"
            )

        def create_react_agent(*args: Any, **kwargs: Any) -> Any:
            return api.bind(
                graphdef.prebuilt.create_react_agent(*args, **kwargs), kwargs.get("checkpointer")
            )

        names = {name: getattr(graphdef, name) for name in NAMES}
        names.update({name: getattr(graphdef.prebuilt, name) for name in PREBUILT})
        names.update(StateGraph=StateGraph, entrypoint=entrypoint,
                     create_react_agent=create_react_agent)
        return SimpleNamespace(name="distributed", sqlite_saver=sqlite_saver, **names)


def distributed_api(cluster: InProcessCluster) -> SimpleNamespace:
    """A fresh api namespace whose graphs run on ``cluster``, with threads of its own."""
    return DistributedApi(cluster).namespace()
