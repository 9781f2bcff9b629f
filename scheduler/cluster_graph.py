"""A graph on the cluster with a compiled graph's methods: `Client().graph("pkg.mod:attr")`.

LangGraph's `RemoteGraph` is the model: a program moves a graph to the cluster by swapping
the graph object and nothing else. `invoke`, `stream` and `batch` run on the workers (chunks
come through the run's Redis stream, `scheduler.streams`); `get_state`,
`get_state_history`, `update_state` and `get_graph` read and write the cluster's Redis
saver here, with the graph's code (the producer imports the graph's module for them, as
building a snapshot needs its channels). The async twins run the sync methods in a thread:
the work happens on the cluster, the caller's event loop only waits.

A run on a thread follows the thread's single-run rule: `multitask_strategy` says what a
run submitted to a busy thread does (`reject`, `enqueue`), and `update_state` holds the
thread while it writes, so it never lands between two supersteps of a run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Protocol, cast

from graphdef import errors as graph_errors
from graphdef.checkpoint.redis import RedisSaver
from graphdef.constants import INTERRUPT
from graphdef.errors import revive_error
from graphdef.mermaid import GraphView
from graphdef.pregel import Pregel, batch_calls, merge_configs, reject_unsupported
from graphdef.stream import check_modes
from graphdef.types import Command, StateSnapshot
from scheduler import registry
from scheduler.errors import (
    ThreadBusyError,
    UnknownCheckpointError,
    UnknownGraphError,
    UnknownRunError,
)
from scheduler.records import RunRecord, RunStatus
from scheduler.store import RunStore
from scheduler.streams import StreamPart


class RunHandle(Protocol):
    """What this module uses of `scheduler.client.RunHandle` (which imports this module)."""

    id: str
    thread_id: str

    def stream(self, after: str = ..., *, timeout: float | None = ...
               ) -> Iterator[StreamPart]: ...

    def wait(self, timeout: float | None = ...) -> RunStatus: ...

    def record(self) -> RunRecord: ...


class Client(Protocol):
    """What this module uses of `scheduler.client.Client`."""

    store: RunStore
    saver: RedisSaver

    def submit(self, graph: str, input: Any, *, thread_id: str | None = ...,
               durability: str = ..., config: dict[str, Any] | None = ...,
               on_busy: str = ..., routes: dict[str, str] | None = ..., context: Any = ...,
               stream_mode: str | list[str] | tuple[str, ...] | None = ...,
               stream_subgraphs: bool = ..., run_id: str | None = ...,
               interrupt_before: list[str] | str | None = ...,
               interrupt_after: list[str] | str | None = ...,
               require_graph: bool = ...) -> RunHandle: ...

    def resume(self, thread_id: str, command: Any, *, durability: str = ...,
               on_busy: str = ..., context: Any = ..., config: dict[str, Any] | None = ...,
               stream_mode: str | list[str] | tuple[str, ...] | None = ...,
               stream_subgraphs: bool = ..., run_id: str | None = ...,
               interrupt_before: list[str] | str | None = ...,
               interrupt_after: list[str] | str | None = ...,
               graph: str | None = ..., require_graph: bool = ...) -> RunHandle: ...

# LangGraph's `multitask_strategy` values and the busy-thread policy each one is here.
MULTITASK_STRATEGIES = {name: name for name in ("reject", "enqueue", "interrupt", "rollback")}
# Configurable keys that address a thread's checkpoints rather than travel with a run.
ADDRESS_KEYS = ("thread_id", "checkpoint_ns", "checkpoint_map")


def _busy_policy(strategy: str) -> str:
    if strategy not in MULTITASK_STRATEGIES:
        raise ValueError(f"Unknown multitask_strategy {strategy!r}; expected one of "
                         f"{sorted(MULTITASK_STRATEGIES)}")
    return MULTITASK_STRATEGIES[strategy]


def _shape(part: StreamPart, single: bool, subgraphs: bool) -> Any:
    """A stream entry as LangGraph yields a chunk of these modes (see `Pregel.stream`)."""
    if single:
        return (part.ns, part.data) if subgraphs else part.data
    return (part.ns, part.mode, part.data) if subgraphs else (part.mode, part.data)


def run_error(error: Mapping[str, Any]) -> BaseException:
    """A failed run's error as the exception the same run raises in-process: graphdef's own
    errors (a recursion limit, an invalid update) and built-in ones by class, any other (a
    user's class, never imported) as a NodeError keeping its name and message."""
    own = getattr(graph_errors, str(error.get("type")), None)
    if isinstance(own, type) and issubclass(own, graph_errors.CeleryGraphError) and issubclass(
            own, Exception):
        try:
            return own(str(error.get("message", "")))
        except TypeError:
            pass
    return revive_error(dict(error))


def _raise_for(run_id: str, status: str, error: Mapping[str, Any] | None) -> None:
    """What an in-process run raises where this one ended: its node's error, a busy thread."""
    if status == RunStatus.FAILED:
        raise run_error(error or {})
    if status == RunStatus.REJECTED:
        raise ThreadBusyError(str((error or {}).get("message", "thread busy")))
    if status == RunStatus.CANCELLED:
        raise RuntimeError(f"run {run_id} was cancelled")


class ClusterGraph:
    """`ref`'s graph, run by the cluster `client` talks to; `config` is bound to every call
    (`with_config`), merged as LangChain merges a bound config with a call's."""

    def __init__(self, client: Client, ref: str, config: dict[str, Any] | None = None) -> None:
        self.client = client
        self.ref = ref
        self.config = config or {}
        self._graph: Pregel | None = None

    def __repr__(self) -> str:
        return f"ClusterGraph({self.ref!r})"

    def __call__(self, state: Any, config: dict[str, Any]) -> Any:
        """Run as a node of a local graph (`builder.add_node("remote", client.graph(ref))`),
        as LangGraph's `RemoteGraph` does: on the cluster, on the local run's thread id (a
        thread of the cluster's store), returning the remote graph's output as the node's
        update."""
        thread_id = (config.get("configurable") or {}).get("thread_id")
        output = self.invoke(state, {"configurable": {"thread_id": thread_id}}
                             if thread_id is not None else None)
        if isinstance(output, dict) and INTERRUPT in output:
            raise NotImplementedError(
                f"{self.ref} paused on an interrupt while running as a node of a local graph: "
                "a cluster graph used as a node cannot be resumed through the local graph")
        return output

    def with_config(self, config: dict[str, Any] | None = None, **kwargs: Any) -> ClusterGraph:
        return ClusterGraph(self.client, self.ref,
                            merge_configs(self.config, {**(config or {}), **kwargs}))

    # ---- the graph's code, for state reads and edits ---------------------------------------

    @property
    def graph(self) -> Pregel:
        """The compiled graph, from this process's registry or its module."""
        if self._graph is None:
            try:
                self._graph = registry.resolve(self.ref)
            except UnknownGraphError:
                module, _, attr = self.ref.partition(":")
                registry.load_modules([module])
                self._graph = registry.resolve(self.ref)
        return self._graph

    def get_graph(self, config: dict[str, Any] | None = None, *, xray: bool = False
                  ) -> GraphView:
        if xray:
            raise NotImplementedError("get_graph(xray=True) is not supported by graphdef")
        return self.graph.get_graph()

    # ---- runs ------------------------------------------------------------------------------

    def _config(self, config: dict[str, Any] | None) -> dict[str, Any]:
        return merge_configs(self.config, config)

    def _thread(self, config: dict[str, Any]) -> str:
        thread_id = (config.get("configurable") or {}).get("thread_id")
        # No thread: LangGraph keeps nothing between calls; a run needs a thread of its own.
        return str(thread_id) if thread_id is not None else f"anonymous-{uuid.uuid4().hex}"

    @staticmethod
    def _run_config(config: dict[str, Any]) -> dict[str, Any] | None:
        """What of a call's config travels with the run: recursion limit, metadata, tags and
        configurable values other than the thread's address."""
        run = {k: v for k, v in config.items()
               if k in ("recursion_limit", "metadata", "tags", "run_name")}
        extra = {k: v for k, v in (config.get("configurable") or {}).items()
                 if k not in ADDRESS_KEYS}
        if extra:
            run["configurable"] = extra
        return run or None

    def submit(
        self,
        input: Any,
        config: dict[str, Any] | None = None,
        *,
        stream_mode: str | Sequence[str] | None = None,
        subgraphs: bool = False,
        durability: str | None = None,
        context: Any = None,
        multitask_strategy: str = "reject",
        interrupt_before: Any = None,
        interrupt_after: Any = None,
        run_id: str | None = None,
        require_graph: bool = True,
        **unsupported: Any,
    ) -> RunHandle:
        """Start a run as `invoke`/`stream` would and return its handle at once; `run_id`:
        the run's id, if the caller picks it. `interrupt_before`/`interrupt_after` (node
        names or `"*"`): pause this run before/after those nodes instead of where the
        compiled graph pauses, as LangGraph's `invoke(..., interrupt_before=...)`.
        `require_graph=False`: a graph no worker publishes is not refused; the run's start
        fails it (`Client.submit`)."""
        reject_unsupported(unsupported)
        on_busy = _busy_policy(multitask_strategy)
        config = self._config(config)
        if config.get("max_concurrency") is not None:
            raise NotImplementedError(
                "max_concurrency: a cluster run's tasks take the workers' free slots; bound "
                "them by routing nodes to a queue with fewer (README, 'Deliberate "
                "differences'). In `batch` it bounds the runs at once.")
        conf = config.get("configurable") or {}
        modes = None if stream_mode is None else list(check_modes(stream_mode))
        thread_id = self._thread(config)
        fork = conf.get("checkpoint_id")
        if fork:
            self._check_fork_point(thread_id, conf)
        run_config = self._run_config(config)
        mode = durability or "async"
        if isinstance(input, Command) and input.resume is not None and not fork:
            return self.client.resume(thread_id, input, durability=mode, on_busy=on_busy,
                                      context=context, config=run_config, stream_mode=modes,
                                      stream_subgraphs=subgraphs, run_id=run_id,
                                      interrupt_before=interrupt_before,
                                      interrupt_after=interrupt_after, graph=self.ref,
                                      require_graph=require_graph)
        return self.client.submit(self.ref, input, thread_id=thread_id, durability=mode,
                                  config=run_config, on_busy=on_busy, context=context,
                                  stream_mode=modes, stream_subgraphs=subgraphs, run_id=run_id,
                                  interrupt_before=interrupt_before,
                                  interrupt_after=interrupt_after, require_graph=require_graph)

    def _check_fork_point(self, thread_id: str, conf: dict[str, Any]) -> None:
        """A run from a past checkpoint: of the root graph, and one the thread has."""
        if conf.get("checkpoint_ns"):
            raise NotImplementedError(
                "a run from a subgraph's checkpoint (checkpoint_ns) is not supported on the "
                "cluster: fork from a checkpoint of the root graph")
        found = self.client.saver.get_tuple({"configurable": {
            "thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": conf["checkpoint_id"]}})
        if found is None:
            raise UnknownCheckpointError(
                f"thread {thread_id!r} has no checkpoint {conf['checkpoint_id']!r}")

    def stream(
        self,
        input: Any,
        config: dict[str, Any] | None = None,
        *,
        stream_mode: str | Sequence[str] | None = None,
        subgraphs: bool = False,
        **kwargs: Any,
    ) -> Iterator[Any]:
        """Run on the cluster, yielding chunks as LangGraph's `stream` does, as workers
        produce them. A node attempt that died mid-stream left its chunks in the stream;
        its re-run streams again (see `scheduler.streams`; `RunHandle.stream` shows the
        attempts)."""
        if stream_mode is None:
            stream_mode = "values"
        handle = self.submit(input, config, stream_mode=stream_mode, subgraphs=subgraphs,
                             **kwargs)
        single = isinstance(stream_mode, str)
        for part in handle.stream():
            if part.kind == "chunk":
                yield _shape(part, single, subgraphs)
            elif part.kind == "end":
                _raise_for(handle.id, part.status, part.error)

    def invoke(self, input: Any, config: dict[str, Any] | None = None, *,
               stream_mode: str = "values", **kwargs: Any) -> Any:
        """The run's output (with `__interrupt__` when it paused), or, for another
        `stream_mode`, its chunks in a list, as LangGraph's `invoke`."""
        if stream_mode != "values":
            return list(self.stream(input, config, stream_mode=stream_mode, **kwargs))
        handle = self.submit(input, config, **kwargs)
        status = handle.wait()
        _raise_for(handle.id, status, cast(Mapping[str, Any] | None, handle.record().error))
        return self.client.store.output(handle.thread_id, handle.id)

    def batch(self, inputs: Sequence[Any],
              config: dict[str, Any] | Sequence[dict[str, Any]] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """`invoke` on each input, the runs side by side on the cluster (at most the
        config's `max_concurrency`, else 16, waiting at once); outputs in order."""
        def invoke_one(input: Any, config: dict[str, Any] | None, **kwargs: Any) -> Any:
            # Spent on the runs at once; a run's own tasks are bounded by the workers.
            run_config = {k: v for k, v in (config or {}).items() if k != "max_concurrency"}
            return self.invoke(input, run_config, **kwargs)

        return batch_calls(invoke_one, inputs, config, return_exceptions=return_exceptions,
                           default_workers=min(len(inputs), 16), **kwargs)

    # ---- state -----------------------------------------------------------------------------

    def _state_config(self, config: dict[str, Any]) -> dict[str, Any]:
        config = self._config(config)
        if (config.get("configurable") or {}).get("thread_id") is None:
            raise ValueError("get_state and update_state need a thread_id in the config")
        return config

    def get_state(self, config: dict[str, Any], *, subgraphs: bool = False) -> StateSnapshot:
        return self.graph.get_state(self._state_config(config), subgraphs=subgraphs,
                                    checkpointer=self.client.saver)

    def get_state_history(self, config: dict[str, Any], *, filter: dict[str, Any] | None = None,
                          before: dict[str, Any] | None = None, limit: int | None = None
                          ) -> Iterator[StateSnapshot]:
        return self.graph.get_state_history(self._state_config(config), filter=filter,
                                            before=before, limit=limit,
                                            checkpointer=self.client.saver)

    def update_state(self, config: dict[str, Any], values: Any, as_node: str | None = None
                     ) -> dict[str, Any]:
        """Edit the thread's state as node `as_node` (LangGraph's `update_state`), holding
        the thread meanwhile: a busy thread raises ThreadBusyError and nothing is written,
        and a thread that never ran here raises UnknownRunError."""
        config = self._state_config(config)
        thread_id = str(config["configurable"]["thread_id"])
        store = self.client.store
        if not store.runs_of(thread_id) and self.client.saver.head(thread_id) is None:
            raise UnknownRunError(f"thread {thread_id!r} has no runs and no checkpoints")
        holder = f"update-{uuid.uuid4().hex}"
        if not store.claim_thread(thread_id, holder):
            raise ThreadBusyError(
                f"thread {thread_id!r} is busy with run {store.active_run(thread_id)}")
        try:
            return self.graph.update_state(config, values, as_node,
                                           checkpointer=self.client.saver)
        finally:
            store.release_thread(thread_id, holder)

    # ---- async twins: the cluster does the work, the caller's loop waits --------------------

    async def ainvoke(self, input: Any, config: dict[str, Any] | None = None,
                      **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.invoke, input, config, **kwargs)

    async def abatch(self, inputs: Sequence[Any],
                     config: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
                     **kwargs: Any) -> list[Any]:
        return await asyncio.to_thread(self.batch, inputs, config, **kwargs)

    async def astream(self, input: Any, config: dict[str, Any] | None = None,
                      **kwargs: Any) -> AsyncIterator[Any]:
        chunks = self.stream(input, config, **kwargs)
        done = object()
        while True:
            chunk = await asyncio.to_thread(next, chunks, done)
            if chunk is done:
                return
            yield chunk

    async def aget_state(self, config: dict[str, Any], *, subgraphs: bool = False
                         ) -> StateSnapshot:
        return await asyncio.to_thread(self.get_state, config, subgraphs=subgraphs)

    async def aget_state_history(self, config: dict[str, Any], **kwargs: Any
                                 ) -> AsyncIterator[StateSnapshot]:
        for snapshot in await asyncio.to_thread(
                lambda: list(self.get_state_history(config, **kwargs))):
            yield snapshot

    async def aupdate_state(self, config: dict[str, Any], values: Any,
                            as_node: str | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self.update_state, config, values, as_node)
