"""The differential scenarios' api, with every compiled graph run distributed.

``InProcessCluster`` runs a private ``redis-server`` (broker and store) and a real Celery
worker in a thread of the test process, consuming both the node queue and the scheduler
queue, with the sweeper beside it. Scenario graphs are closures over in-memory counters, so
the worker must share the test process's memory: the ``threads`` pool runs every node task
and scheduler task in this process.

``distributed_api(cluster)`` is ``load_api("graphdef")`` with ``StateGraph.compile()`` and
``@entrypoint`` wrapped: the compiled graph is registered in the in-process graph registry
under a unique reference, and its top-level calls (``invoke``, ``stream``, their async
twins, ``get_state``, ``get_state_history``, ``update_state``) go through the cluster graph
object, ``Client.graph(ref)``, exactly as a user's program would. A call inside a running
node (a subgraph invoked by a node) stays in-process, as it does on a worker.

Features that have no distributed counterpart raise ``NotSupportedDistributed``, a
``BaseException`` so that scenarios' ``outcome()`` (which records ``Exception`` names) does
not swallow it; the test turns it into a skip.
"""

from __future__ import annotations

import builtins
import itertools
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace
from typing import Any

import graphdef
import graphdef.prebuilt
from graphdef import errors as graph_errors
from graphdef.func import EntrypointGraph
from graphdef.pregel import merge_configs
from graphdef.runtime import current_runtime_or_none

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


def revive(failure: graph_errors.NodeError) -> Exception:
    """A node error of a user's class, which the cluster graph reports as a NodeError
    keeping its name, as an exception of a class of that name (compared by name)."""
    try:
        return error_class(failure.type_name)(failure.message)
    except Exception:  # a class whose constructor wants other arguments: keep the name
        return type(failure.type_name, (Exception,), {})(failure.message)


def as_the_scenario_named(value: Any, run_prefix: str) -> Any:
    """An observation with the threads named as the scenario named them: the bindings'
    thread prefixes (`<run_prefix>-s0-`) taken off every string, and the thread id of a
    run the scenario gave no thread dropped from configs and metadata. LangGraph has no
    thread there; a run on the cluster always has one (README, "Deliberate differences")."""
    if isinstance(value, str):
        return re.sub(rf"{run_prefix}-[sg]\d+-", "", value)
    if isinstance(value, dict):
        return {k: as_the_scenario_named(v, run_prefix) for k, v in value.items()
                if not (k == "thread_id" and isinstance(v, str)
                        and re.fullmatch(rf"{run_prefix}-[sg]\d+-anonymous-\d+", v))}
    if isinstance(value, list):
        return [as_the_scenario_named(v, run_prefix) for v in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(as_the_scenario_named(v, run_prefix) for v in value)
    return value


@contextmanager
def node_errors_by_name() -> Iterator[None]:
    try:
        yield
    except graph_errors.NodeError as failure:
        raise revive(failure) from failure


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
    """Mixed into a compiled graph's class: top-level calls go through the cluster graph
    object (`Client.graph`), on the thread the binding gives the scenario's thread."""

    _binding: Binding

    def _top_level(self, checkpointer: Any = None) -> bool:
        """False inside a running node (a subgraph call) or for the engine's own calls,
        which pass the saver."""
        return current_runtime_or_none() is None and checkpointer is None

    def _cluster(self) -> Any:
        return self._binding.api.cluster.client.graph(self._binding.ref)

    def _run_config(self, config: dict[str, Any] | None, kwargs: dict[str, Any]
                    ) -> dict[str, Any]:
        if kwargs.get("durability") is None:
            kwargs.pop("durability", None)
        config = merge_configs(self.config, config)  # type: ignore[attr-defined]
        config["configurable"] = {**(config.get("configurable") or {}),
                                  "thread_id": self._binding.thread_id(config)}
        return config

    def invoke(self, input: Any, config: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if not self._top_level(kwargs.get("checkpointer")):
            return super().invoke(input, config, **kwargs)  # type: ignore[misc]
        config = self._run_config(config, kwargs)
        with node_errors_by_name():
            return self._cluster().invoke(input, config, **kwargs)

    def batch(self, inputs: Sequence[Any],
              config: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
              **kwargs: Any) -> list[Any]:
        """Through the cluster graph's `batch`, which spends `max_concurrency` on runs at
        once (a cluster run refuses it), each input on a thread of its own."""
        if not self._top_level(kwargs.get("checkpointer")):
            return super().batch(inputs, config, **kwargs)  # type: ignore[misc]
        configs = config if isinstance(config, Sequence) else [config] * len(inputs)
        with node_errors_by_name():
            return self._cluster().batch(
                inputs, [self._run_config(c, kwargs) for c in configs], **kwargs)

    async def ainvoke(self, input: Any, config: dict[str, Any] | None = None,
                      **kwargs: Any) -> Any:
        if not self._top_level(kwargs.get("checkpointer")):
            return await super().ainvoke(input, config, **kwargs)  # type: ignore[misc]
        config = self._run_config(config, kwargs)
        with node_errors_by_name():
            return await self._cluster().ainvoke(input, config, **kwargs)

    def stream(self, input: Any, config: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if not self._top_level(kwargs.get("checkpointer")):
            return super().stream(input, config, **kwargs)  # type: ignore[misc]
        return self._stream(input, config, kwargs)

    def _stream(self, input: Any, config: dict[str, Any] | None, kwargs: dict[str, Any]
                ) -> Iterator[Any]:
        if kwargs.get("stream_mode") is None:
            kwargs["stream_mode"] = self.stream_mode  # type: ignore[attr-defined]
        config = self._run_config(config, kwargs)
        with node_errors_by_name():
            yield from self._cluster().stream(input, config, **kwargs)

    async def astream(self, input: Any, config: dict[str, Any] | None = None,
                      **kwargs: Any) -> Any:
        if not self._top_level(kwargs.get("checkpointer")):
            async for chunk in super().astream(input, config, **kwargs):  # type: ignore[misc]
                yield chunk
            return
        if kwargs.get("stream_mode") is None:
            kwargs["stream_mode"] = self.stream_mode  # type: ignore[attr-defined]
        config = self._run_config(config, kwargs)
        with node_errors_by_name():
            async for chunk in self._cluster().astream(input, config, **kwargs):
                yield chunk

    async def aget_state(self, config: dict[str, Any], *, subgraphs: bool = False) -> Any:
        return self.get_state(config, subgraphs=subgraphs)

    async def aget_state_history(self, config: dict[str, Any], **kwargs: Any) -> Any:
        for snapshot in self.get_state_history(config, **kwargs):
            yield snapshot

    async def aupdate_state(self, config: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        return self.update_state(config, *args, **kwargs)

    def get_state(self, config: dict[str, Any], *, subgraphs: bool = False,
                  checkpointer: Any = None) -> Any:
        if self._top_level(checkpointer):
            return self._cluster().get_state(self._binding.state_config(config),
                                             subgraphs=subgraphs)
        return super().get_state(  # type: ignore[misc]
            config, subgraphs=subgraphs, checkpointer=checkpointer)

    def get_state_history(self, config: dict[str, Any], **kwargs: Any) -> Any:
        if self._top_level(kwargs.get("checkpointer")):
            return self._cluster().get_state_history(self._binding.state_config(config),
                                                     **kwargs)
        return super().get_state_history(config, **kwargs)  # type: ignore[misc]

    def update_state(self, config: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if not self._top_level(kwargs.get("checkpointer")):
            return super().update_state(config, *args, **kwargs)  # type: ignore[misc]
        return self._cluster().update_state(self._binding.state_config(config), *args,
                                            **kwargs)


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
        """Threads live per saver, as in LangGraph: graphs sharing one share threads. A
        saver is graphdef's, or LangGraph's for graphs converted from LangGraph."""
        if saver is None or isinstance(saver, bool):
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

        sqlite_files: dict[str, Any] = {}

        def sqlite_saver(path: str) -> Any:
            # Runs checkpoint in the cluster's Redis whatever the graph was compiled with; a
            # file stands for a saver, so graphs given the same file share threads.
            return sqlite_files.setdefault(path, graphdef.InMemorySaver())

        def create_react_agent(*args: Any, **kwargs: Any) -> Any:
            return api.bind(
                graphdef.prebuilt.create_react_agent(*args, **kwargs), kwargs.get("checkpointer")
            )

        names = {name: getattr(graphdef, name) for name in NAMES}
        names.update({name: getattr(graphdef.prebuilt, name) for name in PREBUILT})
        names.update(StateGraph=StateGraph, entrypoint=entrypoint,
                     create_react_agent=create_react_agent)
        return SimpleNamespace(name="distributed", sqlite_saver=sqlite_saver, **names)


def distributed_api(cluster: InProcessCluster) -> tuple[SimpleNamespace, str]:
    """A fresh api namespace whose graphs run on ``cluster``, with threads of its own, and
    the prefix of its threads (see `as_the_scenario_named`)."""
    api = DistributedApi(cluster)
    return api.namespace(), api.run_prefix
